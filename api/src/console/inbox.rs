//! The inbox: the person's tasks and their roles' open tasks, the soonest breach first (the
//! working time left before the deadline on the business calendar, so a task due Monday 9:00
//! seen on Friday evening is not "62 hours away"), each with its SLA bar; filters; and the
//! actions on tasks, one or many at once, with a result per task. `/ui/events` streams the
//! person's changes so the page updates without a reload.

use super::i18n::Lang;
use super::layout::{self, page, Flash};
use super::session::{Posted, Staff};
use crate::server::{blocking, durably, ApiError, Shared};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use caseflow_core::case::{Command, HistoryEvent, InstanceId};
use caseflow_core::sla::SlaClock;
use caseflow_engine::service::accounts::{self, SavedView};
use caseflow_engine::service::TaskView;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use std::collections::BTreeSet;

/// Tasks read from each inbox (the person's and each role's) for one page, soonest deadline
/// first: twice the rows a page shows, so that filters still find a page's worth; past it the
/// page says some are not shown. (500 took the page to 21 ms at p99 with a million cases.)
pub const INBOX_READ_MAX: usize = 200;

/// One task as the inbox shows it.
pub struct Row {
    pub view: TaskView,
    pub sla: Option<SlaClock>,
    /// The case's `customer` field, when its process has one.
    pub customer: Option<String>,
    pub process_label: String,
    /// An escalation handler ran for this task.
    pub escalated: bool,
}

impl Row {
    pub fn id(&self) -> String {
        format!("{}-{}", self.view.instance, self.view.task.seq)
    }

    /// The order of the inbox: working minutes left (negative once overdue), then the deadline
    /// itself (two deadlines in one night have the same working time left), tasks without a
    /// deadline last.
    fn order(&self) -> (i64, Option<DateTime<Utc>>, u64, u32) {
        let left = self.sla.as_ref().map_or(i64::MAX, |c| c.remaining_minutes);
        (left, self.view.task.due_at, self.view.instance.0, self.view.task.seq)
    }
}

/// What the inbox is filtered by (the query string, so a filtered inbox is a link).
#[derive(Debug, Default, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Filter {
    /// `mine`, `unassigned`, or all (empty).
    pub scope: String,
    pub process: String,
    pub step: String,
    pub role: String,
    pub overdue: bool,
    pub escalated: bool,
    pub due_today: bool,
    /// `rows`: only the table's rows (the live update).
    #[serde(skip_serializing)]
    pub fragment: String,
    /// The task just completed (the form sends the person back here).
    #[serde(skip_serializing)]
    pub done: String,
}

impl Filter {
    /// The filter as a query string, without what is not set: what a saved view keeps.
    pub fn query(&self) -> String {
        let set: Vec<(&str, String)> = [
            ("scope", self.scope.clone()),
            ("process", self.process.clone()),
            ("step", self.step.clone()),
            ("role", self.role.clone()),
            ("overdue", if self.overdue { "true".into() } else { String::new() }),
            ("escalated", if self.escalated { "true".into() } else { String::new() }),
            ("due_today", if self.due_today { "true".into() } else { String::new() }),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
        serde_urlencoded::to_string(set).unwrap_or_default()
    }

    /// Everything but `escalated`, which needs the case's history.
    fn keeps_before_history(&self, row: &Row, me: &str, today: chrono::NaiveDate, tz: chrono_tz::Tz) -> bool {
        let t = &row.view.task;
        (match self.scope.as_str() {
            "mine" => t.assignee.as_deref() == Some(me),
            "unassigned" => t.assignee.is_none(),
            _ => true,
        }) && (self.process.is_empty() || row.view.process == self.process)
            && (self.step.is_empty() || t.step_name == self.step)
            && (self.role.is_empty() || t.candidates.contains(&self.role))
            && (!self.overdue || t.overdue)
            && (!self.escalated || t.overdue)
            && (!self.due_today || t.due_at.is_some_and(|d| d.with_timezone(&tz).date_naive() == today))
    }
}

/// Rows an inbox page shows at most: the soonest breaches. The rest is counted and reached by
/// filtering (a page of 500 rows weighed 290 KB and took 30 ms at p99 in the console bench).
pub const SHOWN_MAX: usize = 100;

/// An inbox as a page shows it: the rows kept by the filter, in inbox order, the first
/// `SHOWN_MAX` of them, and what the filters can choose from.
pub struct Listed {
    pub shown: Vec<Row>,
    /// Rows the filter keeps, shown or not.
    pub matching: usize,
    /// Tasks read from the inboxes.
    pub total: usize,
    /// An inbox held more than `INBOX_READ_MAX`.
    pub truncated: bool,
    pub processes: BTreeSet<String>,
    pub steps: BTreeSet<String>,
}

/// Whether an escalation handler ran for this open task (only an overdue one can have been
/// escalated: only then is its history read).
fn escalated(state: &Shared, view: &TaskView) -> Result<bool, ApiError> {
    Ok(view.task.overdue
        && state.engine.history(view.instance)?.iter().any(|h| {
            h.event == HistoryEvent::Escalated
                && h.at >= view.task.opened_at
                && h.step.as_deref() == Some(&view.task.step_name)
        }))
}

/// The person's tasks and their roles' open tasks, filtered, in inbox order. The order and the
/// filters need only the inbox index (the SLA clock is computed from the task's own times);
/// cases are read for the rows shown alone.
pub fn rows(state: &Shared, staff_id: &str, roles: &[String], filter: &Filter) -> Result<Listed, ApiError> {
    let engine = &state.engine;
    let now = state.clock.now();
    let rules = engine.rules();
    let tz = rules.calendar.time_zone;
    let today = now.with_timezone(&tz).date_naive();
    let mut seen = BTreeSet::new();
    let mut all = Vec::new();
    let mut truncated = false;
    let inboxes = std::iter::once((Some(staff_id), None)).chain(roles.iter().map(|r| (None, Some(r.as_str()))));
    for (user, role) in inboxes {
        let page = engine.tasks_page(user, role, None, INBOX_READ_MAX)?;
        truncated |= page.next_cursor.is_some();
        for view in page.tasks {
            if seen.insert((view.instance, view.task.seq)) {
                let sla = caseflow_core::sla::task_clock(&view.task, &rules.calendar, now);
                all.push(Row { view, sla, customer: None, process_label: String::new(), escalated: false });
            }
        }
    }
    all.sort_by_key(Row::order);
    let total = all.len();
    let processes = all.iter().map(|r| r.view.process.clone()).collect();
    let steps = all.iter().map(|r| r.view.task.step_name.clone()).collect();
    let mut kept = Vec::new();
    for mut row in all {
        if !filter.keeps_before_history(&row, staff_id, today, tz) {
            continue;
        }
        if filter.escalated {
            row.escalated = escalated(state, &row.view)?;
            if !row.escalated {
                continue;
            }
        }
        kept.push(row);
    }
    let matching = kept.len();
    kept.truncate(SHOWN_MAX);
    let mut labels = std::collections::BTreeMap::new();
    for row in &mut kept {
        if !filter.escalated {
            row.escalated = escalated(state, &row.view)?;
        }
        let case = engine.instance(row.view.instance)?;
        row.customer = case.as_ref().and_then(|c| c.fields.get("customer")).map(|v| v.to_string());
        let version = case.as_ref().map(|c| c.version);
        row.process_label = labels
            .entry((row.view.process.clone(), version))
            .or_insert_with(|| {
                engine
                    .definition(&row.view.process, version)
                    .and_then(|d| d.model.label.clone())
                    .unwrap_or_else(|| row.view.process.clone())
            })
            .clone();
    }
    Ok(Listed { shown: kept, matching, total, truncated, processes, steps })
}

fn sla_bar(l: Lang, row: &Row) -> Markup {
    let t = &row.view.task;
    match &row.sla {
        None => html! { span.sla.none { (l.t("no-deadline")) } },
        Some(c) => {
            let used = c.percent_used.clamp(0, 100);
            let state = if t.overdue || c.remaining_minutes < 0 {
                "overdue"
            } else if c.percent_used >= 80 {
                "late"
            } else {
                "ok"
            };
            let left = time_left(l, c.remaining_minutes);
            let title = l.f(
                "sla-used",
                &[("percent", c.percent_used.into()), ("allowed", working_time(l, c.allowed_minutes).into())],
            );
            html! {
                span.sla.(state) title=(title) {
                    span.bar { span.fill style=(format!("width:{used}%")) {} }
                    span.left { (left) }
                    @if !c.running { span.paused { (l.t("paused")) } }
                }
            }
        }
    }
}

/// Working minutes as a person reads them: `45 min`, `3 h 20 min`.
pub fn working_time(l: Lang, minutes: i64) -> String {
    match (minutes / 60, minutes % 60) {
        (0, m) => l.f("minutes", &[("m", m.into())]),
        (h, 0) => l.f("hours", &[("h", h.into())]),
        (h, m) => l.f("hours-minutes", &[("h", h.into()), ("m", m.into())]),
    }
}

/// The working time left before a deadline, or past it.
pub fn time_left(l: Lang, remaining_minutes: i64) -> String {
    if remaining_minutes >= 0 {
        l.f("time-left", &[("time", working_time(l, remaining_minutes).into())])
    } else {
        l.f("time-over", &[("time", working_time(l, -remaining_minutes).into())])
    }
}

/// The table's rows, alone: what the live update swaps in.
fn table_body(l: Lang, rows: &[&Row], me: &str, tz: chrono_tz::Tz) -> Markup {
    html! {
        @for row in rows {
            @let t = &row.view.task;
            tr data-task=(row.id()) class=[t.overdue.then_some("overdue")] {
                td { input type="checkbox" name="task" value=(row.id()) form="bulk" aria-label=(l.f("select-task", &[("task", row.id().into())])); }
                td.sla-cell { (sla_bar(l, row)) }
                td { a.open href=(format!("/ui/tasks/{}", row.id())) { (t.name) } br; small { (row.process_label) " · " (t.step_name) } }
                td { a href=(format!("/ui/cases/{}", row.view.instance)) { (row.view.business_key) } }
                td { (row.customer.as_deref().unwrap_or("")) }
                td {
                    @match t.assignee.as_deref() {
                        Some(a) if a == me => strong { (l.t("me")) },
                        Some(a) => (a),
                        None => em { (l.t("unassigned")) " (" (t.candidates.join(", ")) ")" },
                    }
                }
                td.marks {
                    @if t.priority > 0 { span.mark.priority title=(l.t("priority")) { "P" (t.priority) } }
                    @if t.overdue { span.mark.overdue { (l.t("overdue")) } }
                    @if row.escalated { span.mark.escalated { (l.t("escalated")) } }
                    @if let Some(s) = &t.started { span.mark.started title=(s.at.with_timezone(&tz).format("%Y-%m-%d %H:%M")) { (l.f("in-progress-by", &[("who", s.by.as_str().into())])) } }
                    @if let Some(d) = &t.draft { span.mark.draft { (l.f("draft-by", &[("who", d.by.as_str().into())])) } }
                }
            }
        }
    }
}

fn options(l: Lang, selected: &str, values: BTreeSet<String>) -> Markup {
    html! {
        option value="" { (l.t("any")) }
        @for v in values { option value=(v) selected[v == selected] { (v) } }
    }
}

fn inbox_page(state: &Shared, staff: &Staff, filter: &Filter, flash: Vec<Flash>) -> Result<Response, ApiError> {
    let listed = rows(state, &staff.actor.id, &staff.actor.roles, filter)?;
    let rules = state.engine.rules();
    let shown: Vec<&Row> = listed.shown.iter().collect();
    let (processes, steps, truncated) = (listed.processes.clone(), listed.steps.clone(), listed.truncated);
    let (may_reassign, may_delegate) =
        (rules.permits(&staff.actor, "reassign"), rules.permits(&staff.actor, "delegate"));
    let people: Vec<(&String, &caseflow_core::rules::User)> = rules.users.iter().collect();
    let views = accounts::saved_views(state.engine.store(), &owners(staff))?;
    let query = filter.query();
    let l = staff.lang;
    let view_title = |v: &SavedView| match v.owner.strip_prefix("role:") {
        Some(role) => l.f("view-saved-by-shared", &[("who", v.created_by.as_str().into()), ("role", role.into())]),
        None => l.f("view-saved-by", &[("who", v.created_by.as_str().into())]),
    };
    let body = html! {
        h1 { (l.t("nav-inbox")) }
        @for f in &flash { (f) }
        nav.views aria-label=(l.t("saved-views")) {
            a href="/ui/inbox" aria-current=[query.is_empty().then_some("page")] { (l.t("all")) }
            @for v in &views {
                a href=(format!("/ui/inbox?{}", v.query)) aria-current=[(v.query == query).then_some("page")] title=(view_title(v)) {
                    (v.name) @if v.owner.starts_with("role:") { " ⇄" }
                }
            }
        }
        p.live role="status" aria-live="polite" hidden { span id="changes" { "0" } " " (l.t("changed-tasks")) " · " a href="" { (l.t("show-them")) } }
        form.filters method="get" action="/ui/inbox" {
            label { (l.t("show")) " " select name="scope" {
                option value="" selected[filter.scope.is_empty()] { (l.t("scope-all")) }
                option value="mine" selected[filter.scope == "mine"] { (l.t("scope-mine")) }
                option value="unassigned" selected[filter.scope == "unassigned"] { (l.t("unassigned")) }
            } }
            label { (l.t("process")) " " select name="process" { (options(l, &filter.process, processes)) } }
            label { (l.t("step")) " " select name="step" { (options(l, &filter.step, steps)) } }
            label { (l.t("role")) " " select name="role" { (options(l, &filter.role, staff.actor.roles.iter().cloned().collect())) } }
            label { input type="checkbox" name="overdue" value="true" checked[filter.overdue]; " " (l.t("overdue")) }
            label { input type="checkbox" name="escalated" value="true" checked[filter.escalated]; " " (l.t("escalated")) }
            label { input type="checkbox" name="due_today" value="true" checked[filter.due_today]; " " (l.t("due-today")) }
            button type="submit" { (l.t("filter")) }
        }
        @if truncated { p.flash.info { (l.f("inbox-truncated", &[("n", INBOX_READ_MAX.into())])) } }
        form.bulk id="bulk" method="post" action="/ui/inbox/act" {
            input type="hidden" name="_csrf" value=(staff.csrf);
            span { (l.t("with-selected")) " " }
            button name="action" value="claim" { (l.t("claim")) }
            button name="action" value="release" { (l.t("release")) }
            @if may_reassign || may_delegate {
                select name="to" aria-label=(l.t("to-whom")) {
                    option value="" { (l.t("to-whom-choose")) }
                    @for (id, u) in &people { option value=(id) { (u.name.as_deref().unwrap_or(id)) " (" (id) ")" } }
                }
                input name="reason" placeholder=(l.t("reason")) aria-label=(l.t("reason"));
                @if may_reassign { button name="action" value="reassign" { (l.t("reassign")) } }
                @if may_delegate { button name="action" value="delegate" { (l.t("delegate")) } }
            }
        }
        table.inbox {
            thead { tr {
                th { input type="checkbox" id="select-all" aria-label=(l.t("select-all")); }
                th { (l.t("time-left-heading")) } th { (l.t("task")) } th { (l.t("case")) } th { (l.t("customer")) } th { (l.t("assignee")) } th {}
            } }
            tbody id="rows" { (table_body(l, &shown, &staff.actor.id, rules.calendar.time_zone)) }
        }
        @if shown.is_empty() { p.empty { (l.t("nothing-to-do")) } }
        p.count {
            @if listed.matching > shown.len() {
                (l.f("inbox-soonest", &[("shown", shown.len().into()), ("matching", listed.matching.into())])) " "
            }
            (l.f("inbox-count", &[("matching", listed.matching.into()), ("total", listed.total.into())]))
        }
        details.save-view {
            summary { (l.t("save-view")) }
            form method="post" action="/ui/views" {
                input type="hidden" name="_csrf" value=(staff.csrf);
                input type="hidden" name="query" value=(query);
                label { (l.t("name")) " " input name="name" required maxlength=(VIEW_NAME_MAX); }
                label { (l.t("view-for")) " " select name="owner" {
                    option value=(format!("user:{}", staff.actor.id)) { (l.t("view-me-only")) }
                    @for r in &staff.actor.roles { option value=(format!("role:{r}")) { (l.f("view-everyone-in", &[("role", r.as_str().into())])) } }
                } }
                button type="submit" { (l.t("save")) }
            }
            @let deletable: Vec<_> = views.iter().filter(|v| v.created_by == staff.actor.id).collect();
            @if !deletable.is_empty() {
                form method="post" action="/ui/views/delete" {
                    input type="hidden" name="_csrf" value=(staff.csrf);
                    select name="view" aria-label=(l.t("view-to-delete")) {
                        @for v in deletable { option value=(format!("{}\u{1f}{}", v.owner, v.name)) { (v.name) } }
                    }
                    button type="submit" { (l.t("delete")) }
                }
            }
        }
        (keys_help(l))
    };
    Ok(page(l, &l.t("nav-inbox"), Some(staff), body).into_response())
}

fn keys_help(l: Lang) -> Markup {
    html! {
        dialog id="keys" {
            h2 { (l.t("keys")) }
            dl {
                dt { kbd { "j" } " / " kbd { "k" } } dd { (l.t("key-next-previous")) }
                dt { kbd { "Enter" } } dd { (l.t("key-open")) }
                dt { kbd { "x" } } dd { (l.t("key-select")) }
                dt { kbd { "c" } } dd { (l.t("key-claim")) }
                dt { kbd { "/" } } dd { (l.t("key-filters")) }
                dt { kbd { "?" } } dd { (l.t("key-help")) }
            }
            form method="dialog" { button { (l.t("close")) } }
        }
    }
}

pub async fn inbox(State(state): State<Shared>, staff: Staff, Query(q): Query<Filter>) -> Response {
    let s = state.clone();
    let l = staff.lang;
    blocking(move || {
        if q.fragment == "rows" {
            let listed = rows(&s, &staff.actor.id, &staff.actor.roles, &q)?;
            let shown: Vec<&Row> = listed.shown.iter().collect();
            return Ok(axum::response::Html(
                table_body(staff.lang, &shown, &staff.actor.id, s.engine.rules().calendar.time_zone).into_string(),
            )
            .into_response());
        }
        let flash = if q.done.is_empty() {
            Vec::new()
        } else {
            vec![Flash::Info(staff.lang.f("task-completed", &[("task", q.done.as_str().into())]))]
        };
        inbox_page(&s, &staff, &q, flash)
    })
    .await
    .unwrap_or_else(|e| layout::api_error_page(l, e))
}

/// A view's name at most (characters).
const VIEW_NAME_MAX: usize = 60;

/// Whose views a person sees: their own and their roles'.
fn owners(staff: &Staff) -> Vec<String> {
    std::iter::once(format!("user:{}", staff.actor.id))
        .chain(staff.actor.roles.iter().map(|r| format!("role:{r}")))
        .collect()
}

/// Saves the inbox's filter as a named view, for the person or for one of their roles.
pub async fn save_view(State(state): State<Shared>, posted: Posted) -> Response {
    let name = posted.get("name").unwrap_or("").trim().to_string();
    let owner = posted.get("owner").unwrap_or("").to_string();
    let staff = posted.staff;
    let l = staff.lang;
    let filter: Filter =
        serde_urlencoded::from_str(posted.fields.iter().find(|(k, _)| k == "query").map_or("", |(_, v)| v))
            .unwrap_or_default();
    let mut flash = Vec::new();
    let chars = name.chars().count();
    if chars == 0 || chars > VIEW_NAME_MAX || name.chars().any(char::is_control) {
        flash.push(Flash::Error(l.f("view-name-needed", &[("max", VIEW_NAME_MAX.into())])));
    } else if !owners(&staff).contains(&owner) {
        flash.push(Flash::Error(l.t("view-owner-wrong")));
    }
    let s = state.clone();
    blocking(move || {
        if flash.is_empty() {
            let view = SavedView {
                owner,
                name: name.clone(),
                query: filter.query(),
                created_by: staff.actor.id.clone(),
                created_at: s.clock.now(),
            };
            accounts::save_view(s.engine.store(), &view)?;
            flash.push(Flash::Info(l.f("view-saved", &[("name", name.as_str().into())])));
        }
        inbox_page(&s, &staff, &filter, flash)
    })
    .await
    .unwrap_or_else(|e| layout::api_error_page(l, e))
}

/// Deletes a view the person saved.
pub async fn delete_view(State(state): State<Shared>, posted: Posted) -> Response {
    let which = posted.get("view").unwrap_or("").to_string();
    let staff = posted.staff;
    let l = staff.lang;
    let s = state.clone();
    blocking(move || {
        let views = accounts::saved_views(s.engine.store(), &owners(&staff))?;
        let found = views
            .into_iter()
            .find(|v| format!("{}\u{1f}{}", v.owner, v.name) == which && v.created_by == staff.actor.id);
        let flash = match found {
            Some(v) => {
                accounts::delete_view(s.engine.store(), &v.owner, &v.name)?;
                Flash::Info(l.f("view-deleted", &[("name", v.name.as_str().into())]))
            }
            None => Flash::Error(l.t("view-not-yours")),
        };
        inbox_page(&s, &staff, &Filter::default(), vec![flash])
    })
    .await
    .unwrap_or_else(|e| layout::api_error_page(l, e))
}

/// Claim, release, reassign or delegate the selected tasks: each on its own, each with its
/// result (one refused does not stop the others).
pub async fn act(State(state): State<Shared>, posted: Posted) -> Response {
    let action = posted.get("action").unwrap_or("").to_string();
    let to = posted.get("to").unwrap_or("").trim().to_string();
    let reason = posted.get("reason").unwrap_or("").trim().to_string();
    let tasks: Vec<String> = posted.all("task").map(str::to_string).collect();
    let l = posted.staff.lang;
    let mut flash = Vec::new();
    if tasks.is_empty() {
        flash.push(Flash::Error(l.t("select-tasks-first")));
    }
    for id in &tasks {
        let Some((instance, seq)) = crate::server::parse_task_id(id).ok() else {
            flash.push(Flash::Error(format!("{id}: {}", l.t("not-a-task"))));
            continue;
        };
        let command = match action.as_str() {
            "claim" => Command::Claim { task: seq },
            "release" => Command::Release { task: seq },
            "reassign" | "delegate" if to.is_empty() => {
                flash.push(Flash::Error(format!("{id}: {}", l.t("choose-to-whom"))));
                continue;
            }
            "reassign" => Command::Reassign { task: seq, to: to.clone(), reason: reason.clone() },
            "delegate" => Command::Delegate { task: seq, to: to.clone(), reason: reason.clone() },
            other => {
                flash.push(Flash::Error(l.f("no-such-action-named", &[("action", other.into())])));
                break;
            }
        };
        match run(&state, &posted.staff, instance, command).await {
            Ok(_) => flash.push(Flash::Info(format!("{id}: {}", done(l, &action, &to)))),
            Err(e) => flash.push(Flash::Error(format!("{id}: {}", e.detail))),
        }
    }
    let s = state.clone();
    let staff = posted.staff;
    blocking(move || inbox_page(&s, &staff, &Filter::default(), flash))
        .await
        .unwrap_or_else(|e| layout::api_error_page(l, e))
}

fn done(l: Lang, action: &str, to: &str) -> String {
    match action {
        "claim" => l.t("claimed"),
        "release" => l.t("released"),
        "reassign" => l.f("reassigned-to", &[("to", to.into())]),
        "delegate" => l.f("delegated-to", &[("to", to.into())]),
        other => other.into(),
    }
}

/// Runs a command for the signed-in person, durably, as the API does for a token.
pub async fn run(
    state: &Shared,
    staff: &Staff,
    instance: InstanceId,
    command: Command,
) -> Result<caseflow_core::case::Instance, ApiError> {
    let now = state.clock.now();
    let actor = staff.actor.clone();
    durably(state.engine.clone(), move |e| e.command_pending(instance, &actor, command, now)).await
}

/// A live-update stream sends at most one event in this time (the page waits 300 ms after an
/// event before it fetches its rows, so a faster stream would not be seen sooner).
const LIVE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// The person's changes as Server-Sent Events: `task` when tasks of theirs or of their roles
/// changed, once per burst (see `live.rs`), its data how many changes and the last case
/// changed (`{"changes":3,"case":17}`). The page counts
/// them and fetches its rows again; no polling.
pub async fn events(State(state): State<Shared>, staff: Staff) -> impl IntoResponse {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let watcher = state.console.live.watch(&state, &staff.actor.id, &staff.actor.roles);
    let mut stopping = state.stopping.subscribe();
    let stream = async_stream::stream! {
        loop {
            tokio::select! {
                _ = watcher.notify.notified() => {}
                _ = stopping.wait_for(|s| *s) => break,
            }
            let (changes, case) = watcher.take();
            if changes > 0 {
                let data = format!("{{\"changes\":{changes},\"case\":{case}}}");
                yield Ok::<_, std::convert::Infallible>(Event::default().event("task").data(data));
                // At most one event per interval: what comes meanwhile is counted into the next.
                tokio::select! {
                    _ = tokio::time::sleep(LIVE_INTERVAL) => {}
                    _ = stopping.wait_for(|s| *s) => break,
                }
            }
        }
    };
    Sse::new(stream).keep_alive(KeepAlive::default())
}
