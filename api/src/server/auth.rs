//! Who is calling: the `Caller` extractor (placed first in every handler, so a request
//! without a valid token is 401 whatever its body) and the permission checks.

use super::error::ApiError;
use super::{AppState, Shared};
use crate::config::sha256_hex;
use axum::http::{header, HeaderMap, StatusCode};
use caseflow_core::case::Actor;

/// Who the bearer token says the caller is.
pub(crate) fn caller(state: &AppState, headers: &HeaderMap) -> Result<(Actor, bool), ApiError> {
    let unauthorized = |why: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", why);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("no token: send `Authorization: Bearer TOKEN`"))?
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not text: send `Authorization: Bearer TOKEN`"))?;
    let token =
        value.strip_prefix("Bearer ").ok_or_else(|| unauthorized("the Authorization header is not `Bearer TOKEN`"))?;
    let hash = sha256_hex(token.trim());
    // Every configured digest is compared, each in constant time: how long the answer takes
    // says nothing about how close a guess came.
    let entry = state
        .tokens
        .iter()
        .fold(None, |found, t| {
            let equal = subtle::ConstantTimeEq::ct_eq(t.sha256.to_ascii_lowercase().as_bytes(), hash.as_bytes());
            if bool::from(equal) && found.is_none() {
                Some(t)
            } else {
                found
            }
        })
        .ok_or_else(|| unauthorized("the token is not one this server knows (mistyped, or revoked)"))?;
    Ok((Actor { id: entry.user.clone(), roles: entry.roles.clone(), admin: entry.admin }, entry.service))
}

/// The caller named by the request's bearer token, and whether it is a service token: an
/// extractor, placed first so that a request without a valid token is answered 401 before its
/// input is looked at.
pub struct Caller(pub Actor, pub bool);

#[axum::async_trait]
impl axum::extract::FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &Shared) -> Result<Self, ApiError> {
        let (actor, service) = caller(state, &parts.headers)?;
        Ok(Caller(actor, service))
    }
}

/// Administrators, or holders of a role the rules' `[permissions]` grant `action` to.
pub(crate) fn require_permission(state: &AppState, actor: &Actor, action: &str, doing: &str) -> Result<(), ApiError> {
    if state.engine.rules().permits(actor, action) {
        return Ok(());
    }
    Err(ApiError::forbidden(format!("{doing} needs the `{action}` permission")))
}

pub(crate) fn require_admin(actor: &Actor) -> Result<(), ApiError> {
    if actor.admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("{} is not an administrator", actor.id)))
    }
}
