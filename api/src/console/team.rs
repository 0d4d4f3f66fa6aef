//! The manager's team page: per person who reports to them, and per role those people hold,
//! the open, due-today and overdue work; who is away or off duty today (the rules' absences
//! and roster); and "give all of X's open tasks to Y" (the `reassign` permission, as
//! `POST /admin/users/{user}/reassign`).

use super::i18n::Lang;
use super::layout::{self, page, Flash};
use super::session::{Posted, Staff};
use crate::server::{blocking, ApiError, Shared};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use std::collections::BTreeMap;

#[derive(Default, Clone, Copy)]
struct Work {
    open: usize,
    due_today: usize,
    overdue: usize,
}

fn render(state: &Shared, staff: &Staff, flash: Vec<Flash>) -> Result<Response, ApiError> {
    let l: Lang = staff.lang;
    if !state.engine.rules().permits(&staff.actor, "reassign") {
        return Ok(layout::error_page(l, StatusCode::FORBIDDEN, &l.t("team-forbidden")));
    }
    let rules = state.engine.rules();
    let tz = rules.calendar.time_zone;
    let now = state.clock.now();
    let today = now.with_timezone(&tz).date_naive();
    let team: Vec<&caseflow_core::rules::User> =
        rules.users.values().filter(|u| u.reports_to.as_deref() == Some(staff.actor.id.as_str())).collect();
    let mut per_person = BTreeMap::new();
    let mut per_role: BTreeMap<String, Work> = BTreeMap::new();
    // Today in the calendar's zone, as times: what "due today" counts.
    let day_start = super::start_of_day(today, tz);
    let day_end = today.succ_opt().map_or(day_start + chrono::Duration::days(1), |d| super::start_of_day(d, tz));
    for u in &team {
        // From the index alone (the engine's count, and two ranges of deadlines): a person's
        // thousand open tasks are not read to count them.
        let c = state.engine.inbox_counts(&u.id, now, day_start, day_end)?;
        let w = Work { open: c.open, due_today: c.due, overdue: c.overdue };
        for r in &u.roles {
            let e = per_role.entry(r.clone()).or_default();
            e.open += w.open;
            e.overdue += w.overdue;
            e.due_today += w.due_today;
        }
        per_person.insert(u.id.clone(), w);
    }
    let body = html! {
        h1 { (l.t("nav-team")) }
        @for f in &flash { (f) }
        @if team.is_empty() { p.empty { (l.t("team-empty")) } }
        table.team {
            thead { tr {
                th { (l.t("person")) } th { (l.t("roles")) } th { (l.t("today")) } th { (l.t("open-count")) }
                th { (l.t("due-today-heading")) } th { (l.t("overdue-heading")) }
            } }
            tbody {
                @for u in &team {
                    @let w = per_person[&u.id];
                    @let away = rules.is_away(&u.id, today);
                    @let on_duty = rules.on_duty(&u.id, today);
                    tr {
                        td { (u.name.as_deref().unwrap_or(&u.id)) " " small { "(" (u.id) ")" } }
                        td { (u.roles.join(", ")) }
                        td { @if away { span.mark.overdue { (l.t("away")) } } @else if !on_duty { span.mark { (l.t("off-duty")) } } @else { (l.t("working")) } }
                        td { (w.open) }
                        td { (w.due_today) }
                        td class=[(w.overdue > 0).then_some("overdue")] { (w.overdue) }
                    }
                }
            }
        }
        // One form for the page, not one per person: a list of everyone per row weighed 2 MB
        // for a team of 50 in an organisation of 1,000.
        @let holding: Vec<_> = team.iter().filter(|u| per_person[&u.id].open > 0).collect();
        @if !holding.is_empty() {
            h2 { (l.t("give-all-heading")) }
            form.filters method="post" action="/ui/team/reassign" {
                input type="hidden" name="_csrf" value=(staff.csrf);
                label { (l.t("from-whom")) " " select name="from" required {
                    @for u in &holding { option value=(u.id) { (u.name.as_deref().unwrap_or(&u.id)) " (" (u.id) ")" } }
                } }
                label { (l.t("to-whom")) " " select name="to" required {
                    option value="" { (l.t("to-whom-choose")) }
                    @for other in rules.users.values().filter(|o| !rules.is_away(&o.id, today)) {
                        option value=(other.id) { (other.name.as_deref().unwrap_or(&other.id)) " (" (other.id) ")" }
                    }
                } }
                label { (l.t("reason")) " " input name="reason" required; }
                button type="submit" { (l.t("reassign-all")) }
            }
        }
        @if !per_role.is_empty() {
            h2 { (l.t("by-role")) }
            table.team {
                thead { tr { th { (l.t("role")) } th { (l.t("open-count")) } th { (l.t("due-today-heading")) } th { (l.t("overdue-heading")) } } }
                tbody { @for (r, w) in &per_role { tr { td { (r) } td { (w.open) } td { (w.due_today) } td { (w.overdue) } } } }
            }
            p.hint { (l.t("by-role-hint")) }
        }
    };
    Ok(page(l, &l.t("nav-team"), Some(staff), body).into_response())
}

pub async fn team(State(state): State<Shared>, staff: Staff) -> Response {
    let s = state.clone();
    let l = staff.lang;
    blocking(move || render(&s, &staff, Vec::new())).await.unwrap_or_else(|e| layout::api_error_page(l, e))
}

/// Gives all of a person's open tasks to another (the engine checks the permission).
pub async fn reassign_all(State(state): State<Shared>, posted: Posted) -> Response {
    let from = posted.get("from").unwrap_or("").to_string();
    let to = posted.get("to").unwrap_or("").to_string();
    let reason = posted.get("reason").unwrap_or("").trim().to_string();
    let staff = posted.staff;
    let l = staff.lang;
    let s = state.clone();
    blocking(move || {
        let flash = if to.is_empty() || reason.is_empty() {
            Flash::Error(l.t("choose-to-whom-and-why"))
        } else if !s.engine.rules().permits(&staff.actor, "reassign") {
            Flash::Error(l.f("may-not-reassign", &[("who", staff.actor.id.as_str().into())]))
        } else {
            match s.engine.reassign_all(&from, &to, &staff.actor, &reason, s.clock.now()) {
                Ok(n) => Flash::Info(l.f(
                    "reassigned-all",
                    &[("n", n.into()), ("from", from.as_str().into()), ("to", to.as_str().into())],
                )),
                Err(e) => Flash::Error(ApiError::from(e).detail),
            }
        };
        render(&s, &staff, vec![flash])
    })
    .await
    .unwrap_or_else(|e| layout::api_error_page(l, e))
}
