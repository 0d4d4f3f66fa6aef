//! One's own account: changing one's password (the current one first) and the list of one's
//! sessions, any of which can be ended.

use super::i18n::Lang;
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
    let l = staff.lang;
    let body = html! {
        h1 { (l.t("nav-account")) }
        @for f in &flash { (f) }
        p { (staff.name) " · " code { (staff.actor.id) } " · " (l.t("roles")) ": " (staff.actor.roles.join(", ")) }
        h2 { (l.t("change-password")) }
        form.password method="post" action="/ui/account/password" {
            input type="hidden" name="_csrf" value=(staff.csrf);
            label { (l.t("current-password")) input type="password" name="current" autocomplete="current-password" required; }
            label { (l.f("new-password", &[("min", passwords::MIN_CHARS.into())])) input type="password" name="new" autocomplete="new-password" required; }
            label { (l.t("new-password-again")) input type="password" name="again" autocomplete="new-password" required; }
            button type="submit" { (l.t("change-it")) }
        }
        p.hint { (l.t("change-password-hint")) }
        h2 { (l.t("your-sessions")) }
        form method="post" action="/ui/account/sessions" {
            input type="hidden" name="_csrf" value=(staff.csrf);
            table.sessions {
                thead { tr { th { (l.t("signed-in-at")) } th { (l.t("last-seen")) } th { (l.t("from")) } th {} } }
                @for (digest, s) in &mine {
                    @let this = *digest == staff.digest;
                    tr {
                        td { (s.created_at.with_timezone(&tz).format("%Y-%m-%d %H:%M")) }
                        td { (s.last_seen_at.with_timezone(&tz).format("%Y-%m-%d %H:%M")) }
                        td { (s.address.as_deref().unwrap_or("?")) " " small { (s.user_agent.as_deref().unwrap_or("")) } }
                        td { @if this { em { (l.t("this-session")) } } @else { button name="end" value=(hex::encode(digest)) { (l.t("end")) } } }
                    }
                }
            }
            button name="end" value="others" { (l.t("end-all-others")) }
        }
    };
    (status, page(l, &l.t("nav-account"), Some(staff), body)).into_response()
}

/// The page when the blocking task itself failed.
fn failed(l: Lang) -> Response {
    super::layout::error_page(l, StatusCode::INTERNAL_SERVER_ERROR, &l.t("request-failed"))
}

pub async fn account_page(State(state): State<Shared>, staff: Staff) -> Response {
    let s = state.clone();
    let l = staff.lang;
    tokio::task::spawn_blocking(move || render(&s, &staff, Vec::new(), StatusCode::OK))
        .await
        .unwrap_or_else(|_| failed(l))
}

pub async fn change_password(State(state): State<Shared>, posted: Posted) -> Response {
    let s = state.clone();
    let l = posted.staff.lang;
    tokio::task::spawn_blocking(move || {
        let staff = &posted.staff;
        let (current, new, again) =
            (posted.get("current").unwrap_or(""), posted.get("new").unwrap_or(""), posted.get("again").unwrap_or(""));
        let refuse = |m: String| render(&s, staff, vec![Flash::Error(m)], StatusCode::UNPROCESSABLE_ENTITY);
        let record = match accounts::password(s.engine.store(), &staff.actor.id) {
            Ok(r) => r,
            Err(e) => return refuse(l.f("store-failed", &[("error", e.to_string().into())])),
        };
        if !record.as_ref().is_some_and(|r| passwords::verify(current, &r.phc)) {
            s.console.failed_signins.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return refuse(l.t("current-password-wrong"));
        }
        if new != again {
            return refuse(l.t("new-passwords-differ"));
        }
        if let Some(why) = passwords::refusal(&staff.actor.id, new) {
            return refuse(l.f("new-password-refused", &[("why", why.to_string().into())]));
        }
        let record =
            PasswordRecord { phc: passwords::hash(new), set_at: s.clock.now(), set_by: staff.actor.id.clone() };
        match accounts::set_password(s.engine.store(), &staff.actor.id, &record, Some(&staff.digest)) {
            Ok(()) => render(&s, staff, vec![Flash::Info(l.t("password-changed"))], StatusCode::OK),
            Err(e) => refuse(l.f("store-failed", &[("error", e.to_string().into())])),
        }
    })
    .await
    .unwrap_or_else(|_| failed(l))
}

pub async fn end_sessions(State(state): State<Shared>, posted: Posted) -> Response {
    let s = state.clone();
    let l = posted.staff.lang;
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
            Ok(()) => Flash::Info(l.f("sessions-ended", &[("n", ending.len().into())])),
            Err(e) => Flash::Error(l.f("store-failed", &[("error", e.to_string().into())])),
        };
        render(&s, staff, vec![flash], StatusCode::OK)
    })
    .await
    .unwrap_or_else(|_| failed(l))
}
