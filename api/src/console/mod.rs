//! The console at `/ui`: the staff's pages (sign-in, the inbox, a task's form, a case), served
//! as HTML by the same binary, over the same engine and by the same rules as the API. Pages
//! are rendered on the server with maud (every value escaped); a small script adds live
//! updates and keys, and every page works without it.
//!
//! - `session.rs` — sign-in, the session cookie, `Staff` (the signed-in person, an extractor)
//!   and `Posted` (a form from them: same origin, CSRF token checked);
//! - `live.rs` — live updates: one listener to the engine wakes the inboxes a change concerns;
//! - `inbox.rs` — the inbox, ordered by working time left, and claim / release / reassign /
//!   delegate, one by one or in bulk;
//! - `task.rs` — a task's form, generated from the step's `asks`, and completing it;
//! - `case.rs` — a case: fields, links, history and the diagram with where it is;
//! - `cases.rs` — the list of cases by process and status, and its CSV;
//! - `team.rs` — a manager's team: work per person and role, who is away, reassigning all;
//! - `account.rs` — one's password and sessions;
//! - `layout.rs` — the page frame, the assets and error pages;
//! - `i18n.rs` — the words in Chinese and English (`messages/*.ftl`) and choosing the language.
//!
//! What a person may see and do is decided by the engine (`Actor` from `rules/people.toml`), as
//! for an API token: a page hides what is not allowed, and a forged request is refused anyway.

mod account;
mod case;
mod cases;
mod i18n;
mod inbox;
mod layout;
mod live;
mod session;
mod task;
mod team;

use crate::server::Shared;
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, NaiveDate, Utc};
pub use session::{ConsoleSettings, ConsoleState};

/// Midnight of `day` in `tz`, as a time (the earliest, if a clock change repeats it).
pub(crate) fn start_of_day(day: NaiveDate, tz: chrono_tz::Tz) -> DateTime<Utc> {
    use chrono::TimeZone;
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    tz.from_local_datetime(&midnight).earliest().map(|t| t.with_timezone(&Utc)).unwrap_or_else(|| midnight.and_utc())
}

/// The console's routes, under `/ui`.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/ui", get(|| async { axum::response::Redirect::to("/ui/inbox") }))
        .route("/ui/", get(|| async { axum::response::Redirect::to("/ui/inbox") }))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/inbox", get(inbox::inbox))
        .route("/ui/inbox/act", post(inbox::act))
        .route("/ui/events", get(inbox::events))
        .route("/ui/views", post(inbox::save_view))
        .route("/ui/views/delete", post(inbox::delete_view))
        .route("/ui/tasks/:id", get(task::task_page).post(task::complete))
        .route("/ui/tasks/:id/start", post(task::start_work))
        .route("/ui/tasks/:id/draft", post(task::save_draft))
        .route("/ui/cases", get(cases::cases))
        .route("/ui/cases.csv", get(cases::cases_csv))
        .route("/ui/cases/:id", get(case::case_page))
        .route("/ui/cases/:id/act", post(case::act))
        .route("/ui/cases/:id/fields", post(case::update_fields))
        .route("/ui/team", get(team::team))
        .route("/ui/team/reassign", post(team::reassign_all))
        .route("/ui/account", get(account::account_page))
        .route("/ui/account/password", post(account::change_password))
        .route("/ui/account/sessions", post(account::end_sessions))
        .route("/ui/lang/:tag", get(layout::switch_language))
        .route("/ui/assets/console.css", get(layout::css))
        .route("/ui/assets/console.js", get(layout::js))
        .layer(axum::middleware::map_response(layout::security_headers))
}
