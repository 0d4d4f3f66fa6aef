//! The cases list: by process and status, oldest first, a page at a time (the index's cursor),
//! a business key to jump to one, and the list as CSV.

use super::layout::{self, page, Flash};
use super::session::Staff;
use crate::server::{blocking, ApiError, Shared};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use caseflow_core::case::{Instance, InstanceId, StatusKind};
use maud::html;

/// Cases a page lists.
const PAGE: usize = 50;
/// Rows a CSV export holds at most; past it the export says it was cut.
pub const CSV_ROWS_MAX: usize = 50_000;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct CasesQuery {
    process: String,
    status: String,
    /// A business key: the case itself, if there is one.
    key: String,
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
}

/// Cases of `process` in `status` after `cursor`, up to `limit`, and the next cursor.
fn page_of(state: &Shared, q: &CasesQuery, limit: usize) -> Result<(Vec<Instance>, Option<String>), ApiError> {
    let after = q.cursor.parse::<u64>().ok().map(InstanceId);
    let ids = state.engine.instances_after(&q.process, q.status(), after, limit + 1)?;
    let next = (ids.len() > limit).then(|| ids[limit - 1].0.to_string());
    let mut cases = Vec::with_capacity(limit);
    for id in ids.into_iter().take(limit) {
        if let Some(c) = state.engine.instance(id)? {
            cases.push(c);
        }
    }
    Ok((cases, next))
}

fn current_steps(state: &Shared, c: &Instance) -> String {
    let def = state.engine.definition(&c.process, Some(c.version));
    let steps: Vec<String> =
        c.tokens.values().filter_map(|t| def.as_ref().map(|d| d.model.step(t.step).name.clone())).collect();
    steps.join(", ")
}

fn assignees(c: &Instance) -> String {
    let names: std::collections::BTreeSet<&str> = c.tasks.values().filter_map(|t| t.assignee.as_deref()).collect();
    names.into_iter().collect::<Vec<_>>().join(", ")
}

pub async fn cases(State(state): State<Shared>, staff: Staff, Query(mut q): Query<CasesQuery>) -> Response {
    let s = state.clone();
    blocking(move || {
        let key = q.key.trim().to_string();
        let mut flash = Vec::new();
        if !key.is_empty() {
            match s.engine.instance_by_key(&key)? {
                Some(c) => return Ok(Redirect::to(&format!("/ui/cases/{}", c.id)).into_response()),
                None => flash.push(Flash::Error(format!("No case has the business key {key}."))),
            }
        }
        let processes: Vec<String> = s.engine.definitions().into_iter().map(|(p, _)| p).collect();
        if q.process.is_empty() {
            q.process = processes.first().cloned().unwrap_or_default();
        }
        let (cases, next) = page_of(&s, &q, PAGE)?;
        let tz = s.engine.rules().calendar.time_zone;
        let csv = format!("/ui/cases.csv?process={}&status={}", q.process, q.status());
        let body = html! {
            h1 { "Cases" }
            @for f in &flash { (f) }
            form.filters method="get" action="/ui/cases" {
                label { "Process " select name="process" { @for p in &processes { option value=(p) selected[*p == q.process] { (p) } } } }
                label { "Status " select name="status" {
                    @for st in StatusKind::ALL { option value=(st.as_str()) selected[st.as_str() == q.status()] { (st.as_str()) } }
                } }
                button type="submit" { "Show" }
                label { "Business key " input name="key" placeholder="20261123-001" value=(key); }
                button type="submit" { "Open" }
                a href=(csv) download { "Export CSV" }
            }
            table.cases {
                thead { tr { th { "Case" } th { "Started" } th { "Status" } th { "At" } th { "Assignees" } th { "Customer" } } }
                tbody {
                    @for c in &cases {
                        tr {
                            td { a href=(format!("/ui/cases/{}", c.id)) { (c.business_key) } }
                            td { (c.started_at.with_timezone(&tz).format("%Y-%m-%d %H:%M")) }
                            td { (c.status.name()) }
                            td { (current_steps(&s, c)) }
                            td { (assignees(c)) }
                            td { (c.fields.get("customer").map(|v| v.to_string()).unwrap_or_default()) }
                        }
                    }
                }
            }
            @if cases.is_empty() { p.empty { "No case." } }
            @if let Some(n) = next {
                p { a href=(format!("/ui/cases?process={}&status={}&cursor={n}", q.process, q.status())) { "Next " (PAGE) " →" } }
            }
        };
        Ok(page("Cases", Some(&staff), body).into_response())
    })
    .await
    .unwrap_or_else(layout::api_error_page)
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

/// The list as CSV: every case of the process in that status (up to `CSV_ROWS_MAX`), with its
/// fields as columns (sensitive ones as the API shows them to people).
pub async fn cases_csv(State(state): State<Shared>, _staff: Staff, Query(q): Query<CasesQuery>) -> Response {
    let s = state.clone();
    blocking(move || {
        let def = s
            .engine
            .definition(&q.process, None)
            .ok_or_else(|| ApiError::unknown_process(format!("no process `{}`", q.process)))?;
        let fields: Vec<String> = def.model.fields.iter().map(|f| f.name.clone()).collect();
        let tz = s.engine.rules().calendar.time_zone;
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
            let (cases, next) = page_of(&s, &q, 500)?;
            for c in &cases {
                if rows == CSV_ROWS_MAX {
                    cut = true;
                    break;
                }
                let mut line = vec![
                    cell(&c.business_key),
                    cell(&c.started_at.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()),
                    cell(c.status.name()),
                    cell(&current_steps(&s, c)),
                    cell(&assignees(c)),
                ];
                line.extend(fields.iter().map(|f| cell(&c.fields.get(f).map(|v| v.to_string()).unwrap_or_default())));
                out.push_str(&line.join(","));
                out.push_str("\r\n");
                rows += 1;
            }
            match next {
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
    .unwrap_or_else(layout::api_error_page)
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
