//! `/admin/users`: people's console accounts, for administrators: setting (resetting) a
//! person's password, and listing and ending their sessions. A person changes their own
//! password in the console.

use super::auth::{require_admin, Caller};
use super::error::ApiError;
use super::extract::Body;
use super::{blocking, Shared};
use crate::passwords;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use caseflow_engine::service::accounts::{self, PasswordRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"password": "a long passphrase"}))]
pub(crate) struct PasswordRequest {
    /// At least 10 characters, not the user name, no space at either end.
    password: String,
}

/// A person's console session (the token itself is never stored or shown).
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    /// The SHA-256 of the session's token, as hex: names the session.
    pub id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub last_seen_at: String,
    pub address: Option<String>,
    pub user_agent: Option<String>,
}

/// A person's sessions, oldest first.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"sessions": [{"id": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "created_at": "2026-11-23T02:00:00+00:00", "last_seen_at": "2026-11-23T02:30:00+00:00", "address": "10.0.0.7", "user_agent": "Mozilla/5.0"}]}))]
pub struct Sessions {
    pub sessions: Vec<SessionView>,
}

fn known_person(state: &Shared, user: &str) -> Result<(), ApiError> {
    if state.engine.rules().users.contains_key(user) {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "unknown-user", format!("`{user}` is not a person in the rules")))
    }
}

/// Set a person's console password
///
/// Sets (or resets) the password a person signs in to the console with, and ends their
/// sessions. Administrators only. The person must be in the rules' people.
#[utoipa::path(
    put,
    path = "/admin/users/{user}/password",
    params(("user" = String, Path, description = "A person of the rules' people.toml")),
    request_body = PasswordRequest,
    responses(
        (status = 204, description = "Set; the person's sessions ended"),
        (status = 403, description = "Administrators only"),
        (status = 404, description = "No such person in the rules"),
        (status = 422, description = "The password is refused (too short, the user name, ...)")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn set_password(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
    Path(user): Path<String>,
    Body(req): Body<PasswordRequest>,
) -> Result<StatusCode, ApiError> {
    require_admin(&actor)?;
    known_person(&state, &user)?;
    if let Some(why) = passwords::refusal(&user, &req.password) {
        let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-field", why);
        e.field = Some("password".into());
        return Err(e);
    }
    let s = state.clone();
    blocking(move || {
        let record =
            PasswordRecord { phc: passwords::hash(&req.password), set_at: s.clock.now(), set_by: actor.id.clone() };
        accounts::set_password(s.engine.store(), &user, &record, None)?;
        tracing::info!(user = %user, by = %actor.id, "console password set");
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// A person's console sessions
///
/// Every session of the person (where and when they signed in, when last seen). Administrators only.
#[utoipa::path(
    get,
    path = "/admin/users/{user}/sessions",
    params(("user" = String, Path, description = "A person of the rules' people.toml")),
    responses(
        (status = 200, description = "The sessions", body = Sessions),
        (status = 403, description = "Administrators only"),
        (status = 404, description = "No such person in the rules")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_sessions(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
    Path(user): Path<String>,
) -> Result<axum::Json<Sessions>, ApiError> {
    require_admin(&actor)?;
    known_person(&state, &user)?;
    let s = state.clone();
    blocking(move || {
        let mut sessions: Vec<_> =
            accounts::sessions(s.engine.store())?.into_iter().filter(|(_, r)| r.user == user).collect();
        sessions.sort_by_key(|(_, r)| r.created_at);
        let sessions = sessions
            .into_iter()
            .map(|(digest, r)| SessionView {
                id: hex::encode(digest),
                created_at: r.created_at.to_rfc3339(),
                last_seen_at: r.last_seen_at.to_rfc3339(),
                address: r.address,
                user_agent: r.user_agent,
            })
            .collect();
        Ok(axum::Json(Sessions { sessions }))
    })
    .await
}

/// End a person's console sessions
///
/// Signs the person out everywhere: their next request goes to the sign-in page. Administrators only.
#[utoipa::path(
    delete,
    path = "/admin/users/{user}/sessions",
    params(("user" = String, Path, description = "A person of the rules' people.toml")),
    responses(
        (status = 204, description = "Ended"),
        (status = 403, description = "Administrators only"),
        (status = 404, description = "No such person in the rules")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn end_sessions(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
    Path(user): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&actor)?;
    known_person(&state, &user)?;
    let s = state.clone();
    blocking(move || {
        let mine: Vec<[u8; 32]> =
            accounts::sessions(s.engine.store())?.into_iter().filter(|(_, r)| r.user == user).map(|(d, _)| d).collect();
        accounts::end_sessions(s.engine.store(), &mine)?;
        tracing::info!(user = %user, by = %actor.id, sessions = mine.len(), "console sessions ended");
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}
