//! The manager's team page: per person who reports to them, and per role those people hold,
//! the open, due-today and overdue work; who is away or off duty today (the rules' absences
//! and roster); and "give all of X's open tasks to Y" (the `reassign` permission, as
//! `POST /admin/users/{user}/reassign`).

use super::layout::{self, page, Flash};
use super::session::{Posted, Staff};
use crate::server::{blocking, ApiError, Shared};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use std::collections::BTreeMap;

/// Open tasks counted per person at most (a person's own inbox, by the index).
const COUNTED_MAX: usize = 1_000;

#[derive(Default, Clone, Copy)]
struct Work {
    open: usize,
    due_today: usize,
    overdue: usize,
}

fn may_reassign(state: &Shared, staff: &Staff) -> bool {
    state
        .engine
        .rules()
        .permissions
        .get("reassign")
        .is_some_and(|roles| roles.iter().any(|r| staff.actor.roles.contains(r)))
}

fn render(state: &Shared, staff: &Staff, flash: Vec<Flash>) -> Result<Response, ApiError> {
    if !may_reassign(state, staff) {
        return Ok(layout::error_page(
            StatusCode::FORBIDDEN,
            "the team page is for those who may reassign work (the `reassign` permission)",
        ));
    }
    let rules = state.engine.rules();
    let tz = rules.calendar.time_zone;
    let now = state.clock.now();
    let today = now.with_timezone(&tz).date_naive();
    let team: Vec<&caseflow_core::rules::User> =
        rules.users.values().filter(|u| u.reports_to.as_deref() == Some(staff.actor.id.as_str())).collect();
    let mut per_person = BTreeMap::new();
    let mut per_role: BTreeMap<String, Work> = BTreeMap::new();
    for u in &team {
        let page = state.engine.tasks_page(Some(&u.id), None, None, COUNTED_MAX)?;
        let mut w = Work::default();
        for t in &page.tasks {
            w.open += 1;
            w.overdue += usize::from(t.task.overdue);
            w.due_today += usize::from(t.task.due_at.is_some_and(|d| d.with_timezone(&tz).date_naive() == today));
        }
        for r in &u.roles {
            let e = per_role.entry(r.clone()).or_default();
            e.open += w.open;
            e.overdue += w.overdue;
            e.due_today += w.due_today;
        }
        per_person.insert(u.id.clone(), (w, page.next_cursor.is_some()));
    }
    let body = html! {
        h1 { "Team" }
        @for f in &flash { (f) }
        @if team.is_empty() { p.empty { "Nobody reports to you in the rules (`reports_to` in people.toml)." } }
        table.team {
            thead { tr { th { "Person" } th { "Roles" } th { "Today" } th { "Open" } th { "Due today" } th { "Overdue" } th { "Give all their open tasks to" } } }
            tbody {
                @for u in &team {
                    @let (w, more) = per_person[&u.id];
                    @let away = rules.is_away(&u.id, today);
                    @let on_duty = rules.on_duty(&u.id, today);
                    tr {
                        td { (u.name.as_deref().unwrap_or(&u.id)) " " small { "(" (u.id) ")" } }
                        td { (u.roles.join(", ")) }
                        td { @if away { span.mark.overdue { "away" } } @else if !on_duty { span.mark { "off duty" } } @else { "working" } }
                        td { (w.open) @if more { "+" } }
                        td { (w.due_today) }
                        td class=[(w.overdue > 0).then_some("overdue")] { (w.overdue) }
                        td {
                            @if w.open > 0 {
                                form.inline method="post" action="/ui/team/reassign" {
                                    input type="hidden" name="_csrf" value=(staff.csrf);
                                    input type="hidden" name="from" value=(u.id);
                                    select name="to" aria-label=(format!("to whom, from {}", u.id)) required {
                                        option value="" { "to…" }
                                        @for other in rules.users.values().filter(|o| o.id != u.id && !rules.is_away(&o.id, today)) {
                                            option value=(other.id) { (other.name.as_deref().unwrap_or(&other.id)) " (" (other.id) ")" }
                                        }
                                    }
                                    input name="reason" placeholder="reason" aria-label=(format!("reason, for {}", u.id)) required;
                                    button type="submit" { "Reassign all" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !per_role.is_empty() {
            h2 { "By role" }
            table.team {
                thead { tr { th { "Role" } th { "Open" } th { "Due today" } th { "Overdue" } } }
                tbody { @for (r, w) in &per_role { tr { td { (r) } td { (w.open) } td { (w.due_today) } td { (w.overdue) } } } }
            }
            p.hint { "The work your team holds, by the roles they hold (a person's work counts under each of their roles)." }
        }
    };
    Ok(page("Team", Some(staff), body).into_response())
}

pub async fn team(State(state): State<Shared>, staff: Staff) -> Response {
    let s = state.clone();
    blocking(move || render(&s, &staff, Vec::new())).await.unwrap_or_else(layout::api_error_page)
}

/// Gives all of a person's open tasks to another (the engine checks the permission).
pub async fn reassign_all(State(state): State<Shared>, posted: Posted) -> Response {
    let from = posted.get("from").unwrap_or("").to_string();
    let to = posted.get("to").unwrap_or("").to_string();
    let reason = posted.get("reason").unwrap_or("").trim().to_string();
    let staff = posted.staff;
    let s = state.clone();
    blocking(move || {
        let flash = if to.is_empty() || reason.is_empty() {
            Flash::Error("Choose to whom, and say why.".into())
        } else if !may_reassign(&s, &staff) {
            Flash::Error(format!("{} may not reassign work", staff.actor.id))
        } else {
            match s.engine.reassign_all(&from, &to, &staff.actor, &reason, s.clock.now()) {
                Ok(n) => Flash::Info(format!("{n} open task(s) of {from} given to {to}.")),
                Err(e) => Flash::Error(ApiError::from(e).detail),
            }
        };
        render(&s, &staff, vec![flash])
    })
    .await
    .unwrap_or_else(layout::api_error_page)
}
