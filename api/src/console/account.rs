//! One's own account: changing one's password (the current one first) and the list of one's
//! sessions, any of which can be ended.

use super::layout::{page, Flash};
use super::session::{Posted, Staff};
use crate::passwords;
use crate::server::Shared;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use caseflow_engine::service::accounts::{self, PasswordRecord};
use maud::html;

fn render(state: &Shared, staff: &Staff, flash: Vec<Flash>, status: StatusCode) -> Response {
    let tz = state.engine.rules().calendar.time_zone;
    let mine: Vec<_> = accounts::sessions(state.engine.store())
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, s)| s.user == staff.actor.id)
        .collect();
    let body = html! {
        h1 { "Account" }
        @for f in &flash { (f) }
        p { (staff.name) " · " code { (staff.actor.id) } " · roles: " (staff.actor.roles.join(", ")) }
        h2 { "Change your password" }
        form.password method="post" action="/ui/account/password" {
            input type="hidden" name="_csrf" value=(staff.csrf);
            label { "Current password" input type="password" name="current" autocomplete="current-password" required; }
            label { "New password (" (passwords::MIN_CHARS) " characters or more)" input type="password" name="new" autocomplete="new-password" required; }
            label { "New password again" input type="password" name="again" autocomplete="new-password" required; }
            button type="submit" { "Change it" }
        }
        p.hint { "Changing it signs you out everywhere else." }
        h2 { "Your sessions" }
        form method="post" action="/ui/account/sessions" {
            input type="hidden" name="_csrf" value=(staff.csrf);
            table.sessions {
                thead { tr { th { "Signed in" } th { "Last seen" } th { "From" } th {} } }
                @for (digest, s) in &mine {
                    @let this = *digest == staff.digest;
                    tr {
                        td { (s.created_at.with_timezone(&tz).format("%Y-%m-%d %H:%M")) }
                        td { (s.last_seen_at.with_timezone(&tz).format("%Y-%m-%d %H:%M")) }
                        td { (s.address.as_deref().unwrap_or("?")) " " small { (s.user_agent.as_deref().unwrap_or("")) } }
                        td { @if this { em { "this one" } } @else { button name="end" value=(hex::encode(digest)) { "End" } } }
                    }
                }
            }
            button name="end" value="others" { "End all others" }
        }
    };
    (status, page("Account", Some(staff), body)).into_response()
}

pub async fn account_page(State(state): State<Shared>, staff: Staff) -> Response {
    let s = state.clone();
    tokio::task::spawn_blocking(move || render(&s, &staff, Vec::new(), StatusCode::OK))
        .await
        .unwrap_or_else(|_| super::layout::error_page(StatusCode::INTERNAL_SERVER_ERROR, "the request failed"))
}

pub async fn change_password(State(state): State<Shared>, posted: Posted) -> Response {
    let s = state.clone();
    tokio::task::spawn_blocking(move || {
        let staff = &posted.staff;
        let (current, new, again) =
            (posted.get("current").unwrap_or(""), posted.get("new").unwrap_or(""), posted.get("again").unwrap_or(""));
        let refuse = |m: String| render(&s, staff, vec![Flash::Error(m)], StatusCode::UNPROCESSABLE_ENTITY);
        let record = match accounts::password(s.engine.store(), &staff.actor.id) {
            Ok(r) => r,
            Err(e) => return refuse(format!("the store failed: {e}")),
        };
        if !record.as_ref().is_some_and(|r| passwords::verify(current, &r.phc)) {
            s.console.failed_signins.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return refuse("The current password is not right.".into());
        }
        if new != again {
            return refuse("The two new passwords differ.".into());
        }
        if let Some(why) = passwords::refusal(&staff.actor.id, new) {
            return refuse(format!("The new password is refused: {why}."));
        }
        let record =
            PasswordRecord { phc: passwords::hash(new), set_at: s.clock.now(), set_by: staff.actor.id.clone() };
        match accounts::set_password(s.engine.store(), &staff.actor.id, &record, Some(&staff.digest)) {
            Ok(()) => render(&s, staff, vec![Flash::Info("Your password is changed.".into())], StatusCode::OK),
            Err(e) => refuse(format!("the store failed: {e}")),
        }
    })
    .await
    .unwrap_or_else(|_| super::layout::error_page(StatusCode::INTERNAL_SERVER_ERROR, "the request failed"))
}

pub async fn end_sessions(State(state): State<Shared>, posted: Posted) -> Response {
    let s = state.clone();
    tokio::task::spawn_blocking(move || {
        let staff = &posted.staff;
        let which = posted.get("end").unwrap_or("");
        let mine: Vec<[u8; 32]> = accounts::sessions(s.engine.store())
            .unwrap_or_default()
            .into_iter()
            .filter(|(d, r)| r.user == staff.actor.id && *d != staff.digest)
            .map(|(d, _)| d)
            .collect();
        // Only one's own sessions: a digest of someone else's is not among `mine`.
        let ending: Vec<[u8; 32]> =
            if which == "others" { mine } else { mine.into_iter().filter(|d| hex::encode(d) == which).collect() };
        let flash = match accounts::end_sessions(s.engine.store(), &ending) {
            Ok(()) => Flash::Info(format!("{} session(s) ended.", ending.len())),
            Err(e) => Flash::Error(format!("the store failed: {e}")),
        };
        render(&s, staff, vec![flash], StatusCode::OK)
    })
    .await
    .unwrap_or_else(|_| super::layout::error_page(StatusCode::INTERNAL_SERVER_ERROR, "the request failed"))
}
