//! The cases list: by process and status, oldest first, a page at a time (the index's cursor),
//! narrowed by the step a case is at, the day it started and who holds its tasks; a business
//! key to jump to one; and the filtered list as CSV.
//!
//! Process and status are the index's own order. The other filters are read off each case, so
//! a page reads at most `SCAN_MAX` cases to fill itself and, when that is not enough, says so
//! and offers to look further from where it stopped. Filtering by assignee starts from that
//! person's inbox instead, which holds only their open tasks.

use super::i18n::{status_name, Lang};
use super::layout::{self, page, Flash};
use super::session::Staff;
use crate::server::{blocking, ApiError, Shared};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use caseflow_core::case::{Instance, InstanceId, StatusKind};
use chrono::{DateTime, NaiveDate, Utc};
use maud::html;

/// Cases a page lists.
const PAGE: usize = 50;
/// Cases a filtered page reads at most to fill itself.
const SCAN_MAX: usize = 1_000;
/// Rows a CSV export holds at most; past it the export says it was cut.
pub const CSV_ROWS_MAX: usize = 50_000;
/// Open tasks of one person read to filter by assignee.
const ASSIGNEE_TASKS_MAX: usize = 10_000;

#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct CasesQuery {
    process: String,
    status: String,
    /// A business key: the case itself, if there is one.
    key: String,
    /// Only cases at this step now.
    step: String,
    /// Only cases with an open task assigned to this person.
    assignee: String,
    /// Only cases started on or after this day (in the calendar's zone), `YYYY-MM-DD`.
    from: String,
    /// Only cases started on or before this day.
    to: String,
    /// Only cases whose `field` (one the process indexes) holds `value`.
    field: String,
    value: String,
    cursor: String,
}

impl CasesQuery {
    fn status(&self) -> &str {
        if self.status.is_empty() {
            "running"
        } else {
            &self.status
        }
    }

    /// The query string of these filters (without the cursor), for links.
    fn filters(&self) -> String {
        let q =
            CasesQuery { cursor: String::new(), key: String::new(), status: self.status().to_string(), ..self.clone() };
        serde_urlencoded::to_string([
            ("process", &q.process),
            ("status", &q.status),
            ("step", &q.step),
            ("assignee", &q.assignee),
            ("from", &q.from),
            ("to", &q.to),
            ("field", &q.field),
            ("value", &q.value),
        ])
        .unwrap_or_default()
    }
}

/// The filters read off each case, parsed.
struct Filter {
    /// A field the process indexes and its value: the search drives the list.
    search: Option<(String, String)>,
    step: Option<String>,
    assignee: Option<String>,
    from: Option<DateTime<Utc>>,
    /// Exclusive: the start of the day after `to`.
    until: Option<DateTime<Utc>>,
}

impl Filter {
    fn parse(l: Lang, q: &CasesQuery, tz: chrono_tz::Tz) -> Result<Filter, String> {
        let day = |text: &str| -> Result<Option<DateTime<Utc>>, String> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            let d =
                NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| l.f("not-a-day", &[("text", text.into())]))?;
            Ok(Some(super::start_of_day(d, tz)))
        };
        let from = day(&q.from)?;
        let until = day(&q.to)?.map(|t| t + chrono::Duration::days(1));
        let opt = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let search = match (opt(&q.field), q.value.trim()) {
            (Some(field), value) if !value.is_empty() => Some((field, value.to_string())),
            _ => None,
        };
        Ok(Filter { search, step: opt(&q.step), assignee: opt(&q.assignee), from, until })
    }

    fn reads_cases(&self) -> bool {
        self.step.is_some() || self.assignee.is_some() || self.from.is_some() || self.until.is_some()
    }

    fn matches(&self, state: &Shared, c: &Instance) -> bool {
        let text = |f: &str| c.fields.get(f).and_then(caseflow_engine::storage::index::index_text);
        self.search.as_ref().is_none_or(|(f, v)| text(f).as_deref() == Some(v.as_str()))
            && self.from.is_none_or(|f| c.started_at >= f)
            && self.until.is_none_or(|u| c.started_at < u)
            && self.assignee.as_deref().is_none_or(|a| c.tasks.values().any(|t| t.assignee.as_deref() == Some(a)))
            && self.step.as_deref().is_none_or(|s| current_steps(state, c).iter().any(|n| n == s))
    }
}

/// A page of the list.
struct Found {
    cases: Vec<Instance>,
    /// Where the next page starts, if there may be more.
    next: Option<String>,
    /// The page stopped after reading `SCAN_MAX` cases, not because it was full.
    stopped_looking: bool,
}

/// Cases of `q.process` in `q.status` after `q.cursor` that pass `filter`, up to `limit`.
fn page_of(state: &Shared, q: &CasesQuery, filter: &Filter, limit: usize) -> Result<Found, ApiError> {
    let after = q.cursor.parse::<u64>().ok().map(InstanceId);
    if let Some(assignee) = &filter.assignee {
        return assignee_page(state, q, filter, assignee, after, limit);
    }
    if let Some(search) = &filter.search {
        return search_page(state, q, filter, search, after, limit);
    }
    let mut found = Found { cases: Vec::with_capacity(limit), next: None, stopped_looking: false };
    let mut cursor = after;
    let mut read = 0;
    loop {
        let batch = if filter.reads_cases() { limit.min(SCAN_MAX - read).max(1) } else { limit + 1 };
        let ids = state.engine.instances_after(&q.process, q.status(), cursor, batch)?;
        let exhausted = ids.len() < batch;
        for id in ids {
            if found.cases.len() == limit {
                found.next = cursor.map(|c| c.0.to_string());
                return Ok(found);
            }
            cursor = Some(id);
            read += 1;
            if let Some(c) = state.engine.instance(id)? {
                if filter.matches(state, &c) {
                    found.cases.push(c);
                }
            }
        }
        if exhausted {
            return Ok(found);
        }
        if filter.reads_cases() && read >= SCAN_MAX {
            found.stopped_looking = found.cases.len() < limit;
            found.next = cursor.map(|c| c.0.to_string());
            return Ok(found);
        }
    }
}

/// The cases of `q.process` whose indexed field holds the value, through its index
/// (`Engine::search`), the other filters checked on each.
fn search_page(
    state: &Shared,
    q: &CasesQuery,
    filter: &Filter,
    (field, value): &(String, String),
    after: Option<InstanceId>,
    limit: usize,
) -> Result<Found, ApiError> {
    let search = caseflow_engine::service::CaseSearch {
        process: q.process.clone(),
        status: Some(q.status().to_string()),
        fields: vec![(field.clone(), value.clone())],
        started_after: filter.from,
        started_before: filter.until,
    };
    let page = state.engine.search(&search, after, limit)?;
    let stopped_looking = page.next.is_some() && page.instances.len() < limit;
    Ok(Found {
        cases: page.instances.into_iter().filter(|c| filter.matches(state, c)).collect(),
        next: page.next.map(|n| n.0.to_string()),
        stopped_looking,
    })
}

/// The cases of `q.process` where `assignee` holds an open task, from their inbox.
fn assignee_page(
    state: &Shared,
    q: &CasesQuery,
    filter: &Filter,
    assignee: &str,
    after: Option<InstanceId>,
    limit: usize,
) -> Result<Found, ApiError> {
    let ids: std::collections::BTreeSet<InstanceId> = state
        .engine
        .tasks(Some(assignee), None, ASSIGNEE_TASKS_MAX)?
        .into_iter()
        .filter(|t| t.process == q.process && after.is_none_or(|a| t.instance > a))
        .map(|t| t.instance)
        .collect();
    let mut found = Found { cases: Vec::with_capacity(limit), next: None, stopped_looking: false };
    let mut last = None;
    for id in ids {
        if found.cases.len() == limit {
            found.next = last.map(|l: InstanceId| l.0.to_string());
            break;
        }
        last = Some(id);
        if let Some(c) = state.engine.instance(id)? {
            if c.status.name() == q.status() && filter.matches(state, &c) {
                found.cases.push(c);
            }
        }
    }
    Ok(found)
}

/// The steps a case is at now.
fn current_steps(state: &Shared, c: &Instance) -> Vec<String> {
    let def = state.engine.definition(&c.process, Some(c.version));
    c.tokens.values().filter_map(|t| def.as_ref().map(|d| d.model.step(t.step).name.clone())).collect()
}

fn assignees(c: &Instance) -> String {
    let names: std::collections::BTreeSet<&str> = c.tasks.values().filter_map(|t| t.assignee.as_deref()).collect();
    names.into_iter().collect::<Vec<_>>().join(", ")
}

/// The steps of a process a case can wait at (tasks, waits, joins, calls), for the filter.
fn steps_of(state: &Shared, process: &str) -> Vec<String> {
    use caseflow_dsl::model::StepKind;
    let Some(def) = state.engine.definition(process, None) else { return Vec::new() };
    let waits =
        |k: &StepKind| matches!(k, StepKind::Task(_) | StepKind::Wait(_) | StepKind::Join { .. } | StepKind::Call(_));
    def.model.steps.iter().filter(|s| waits(&s.kind)).map(|s| s.name.clone()).collect()
}

pub async fn cases(State(state): State<Shared>, staff: Staff, Query(mut q): Query<CasesQuery>) -> Response {
    let s = state.clone();
    let l = staff.lang;
    blocking(move || {
        let key = q.key.trim().to_string();
        let mut flash = Vec::new();
        if !key.is_empty() {
            match s.engine.instance_by_key(&key)? {
                Some(c) => return Ok(Redirect::to(&format!("/ui/cases/{}", c.id)).into_response()),
                None => flash.push(Flash::Error(l.f("no-case-with-key", &[("key", key.as_str().into())]))),
            }
        }
        let processes: Vec<String> = s.engine.definitions().into_iter().map(|(p, _)| p).collect();
        if q.process.is_empty() {
            q.process = processes.first().cloned().unwrap_or_default();
        }
        let indexed = s.engine.searchable_fields(&q.process);
        if !q.field.is_empty() && !indexed.contains(&q.field) {
            flash.push(Flash::Error(l.f("field-not-indexed", &[("field", q.field.as_str().into())])));
            q.value.clear();
        }
        let tz = s.engine.rules().calendar.time_zone;
        let found = match Filter::parse(l, &q, tz) {
            Ok(filter) => page_of(&s, &q, &filter, PAGE)?,
            Err(why) => {
                flash.push(Flash::Error(why));
                Found { cases: Vec::new(), next: None, stopped_looking: false }
            }
        };
        let steps = steps_of(&s, &q.process);
        let people = super::task::people(&s.engine.rules());
        let filters = q.filters();
        let body = html! {
            h1 { (l.t("nav-cases")) }
            @for f in &flash { (f) }
            form.filters method="get" action="/ui/cases" {
                label { (l.t("process")) " " select name="process" { @for p in &processes { option value=(p) selected[*p == q.process] { (p) } } } }
                label { (l.t("status")) " " select name="status" {
                    @for st in StatusKind::ALL { option value=(st.as_str()) selected[st.as_str() == q.status()] { (status_name(l, st)) } }
                } }
                label { (l.t("at-step")) " " select name="step" {
                    option value="" { (l.t("any")) }
                    @for st in &steps { option value=(st) selected[*st == q.step] { (st) } }
                } }
                label { (l.t("assigned-to")) " " select name="assignee" {
                    option value="" { (l.t("anyone")) }
                    @for (id, name) in &people { option value=(id) selected[*id == q.assignee] { (name) " (" (id) ")" } }
                } }
                label { (l.t("started-from")) " " input type="date" name="from" value=(q.from); }
                label { (l.t("started-to")) " " input type="date" name="to" value=(q.to); }
                @if !indexed.is_empty() {
                    label { (l.t("search-field")) " " select name="field" {
                        @for f in &indexed { option value=(f) selected[*f == q.field] { (f) } }
                    } }
                    label { (l.t("search-value")) " " input name="value" value=(q.value); }
                }
                button type="submit" { (l.t("show")) }
                a href=(format!("/ui/cases.csv?{filters}")) download { (l.t("export-csv")) }
            }
            form.filters method="get" action="/ui/cases" {
                label { (l.t("business-key")) " " input name="key" placeholder="20261123-001" value=(key); }
                button type="submit" { (l.t("open")) }
            }
            table.cases {
                thead { tr {
                    th { (l.t("case")) } th { (l.t("started")) } th { (l.t("status")) } th { (l.t("at-step")) } th { (l.t("assignees")) } th { (l.t("customer")) }
                } }
                tbody {
                    @for c in &found.cases {
                        tr {
                            td { a href=(format!("/ui/cases/{}", c.id)) { (c.business_key) } }
                            td { (c.started_at.with_timezone(&tz).format("%Y-%m-%d %H:%M")) }
                            td { (status_name(l, c.status.kind())) }
                            td { (current_steps(&s, c).join(", ")) }
                            td { (assignees(c)) }
                            td { (c.fields.get("customer").map(|v| v.to_string()).unwrap_or_default()) }
                        }
                    }
                }
            }
            @if found.cases.is_empty() && !found.stopped_looking { p.empty { (l.t("no-case")) } }
            @if let Some(n) = &found.next {
                p {
                    @if found.stopped_looking { (l.f("looked-through", &[("n", SCAN_MAX.into())])) " " }
                    a href=(format!("/ui/cases?{filters}&cursor={n}")) {
                        @if found.stopped_looking { (l.t("look-further")) } @else { (l.f("next-page", &[("n", PAGE.into())])) }
                    }
                }
            }
        };
        Ok(page(l, &l.t("nav-cases"), Some(&staff), body).into_response())
    })
    .await
    .unwrap_or_else(|e| layout::api_error_page(l, e))
}

/// One CSV cell: quoted when it must be, and never read as a formula by a spreadsheet (a
/// value starting with `=`, `+`, `-` or `@` gets a leading apostrophe).
fn cell(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@']) { format!("'{v}") } else { v.to_string() };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

/// The filtered list as CSV: every case of the process in that status that passes the filters
/// (up to `CSV_ROWS_MAX`), with its fields as columns (sensitive ones as the API shows them to
/// people).
pub async fn cases_csv(State(state): State<Shared>, staff: Staff, Query(q): Query<CasesQuery>) -> Response {
    let s = state.clone();
    let l = staff.lang;
    blocking(move || {
        let def = s
            .engine
            .definition(&q.process, None)
            .ok_or_else(|| ApiError::unknown_process(format!("no process `{}`", q.process)))?;
        let fields: Vec<String> = def.model.fields.iter().map(|f| f.name.clone()).collect();
        let tz = s.engine.rules().calendar.time_zone;
        let filter = Filter::parse(l, &q, tz).map_err(ApiError::bad_request)?;
        let mut out = String::from("\u{feff}"); // a BOM: spreadsheets then read the Chinese right
        let head: Vec<String> = ["business_key", "started_at", "status", "at", "assignees"]
            .iter()
            .map(|h| h.to_string())
            .chain(fields.iter().cloned())
            .collect();
        out.push_str(&head.join(","));
        out.push_str("\r\n");
        let mut q = CasesQuery { cursor: String::new(), ..q };
        let mut rows = 0;
        let mut cut = false;
        loop {
            let found = page_of(&s, &q, &filter, 500)?;
            for c in &found.cases {
                if rows == CSV_ROWS_MAX {
                    cut = true;
                    break;
                }
                let mut line = vec![
                    cell(&c.business_key),
                    cell(&c.started_at.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()),
                    cell(c.status.name()),
                    cell(&current_steps(&s, c).join(", ")),
                    cell(&assignees(c)),
                ];
                line.extend(fields.iter().map(|f| cell(&c.fields.get(f).map(|v| v.to_string()).unwrap_or_default())));
                out.push_str(&line.join(","));
                out.push_str("\r\n");
                rows += 1;
            }
            match found.next {
                Some(n) if !cut => q.cursor = n,
                _ => break,
            }
        }
        let name = format!("attachment; filename=\"{}-{}.csv\"", q.process, q.status());
        let mut response =
            ([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, name)], out)
                .into_response();
        if cut {
            response.headers_mut().insert("x-caseflow-truncated", axum::http::HeaderValue::from(CSV_ROWS_MAX));
        }
        Ok(response)
    })
    .await
    .unwrap_or_else(|e| layout::api_error_page(l, e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn cells_are_quoted_and_never_formulas() {
        assert_eq!(super::cell("第一中学"), "第一中学");
        assert_eq!(super::cell("a,b"), "\"a,b\"");
        assert_eq!(super::cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(super::cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(super::cell("-5"), "'-5");
    }
}
