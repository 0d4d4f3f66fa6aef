//! A case's page: its business key, status and outcome, its fields (labels from the `.flow`
//! file; sensitive values are shown to people and masked only for service tokens, as in the
//! API), its parent and sub-process cases, its open tasks, its history, and the process
//! diagram (the SVG the binary draws) with the steps it is at marked and the steps and
//! transitions it went through shaded.

use super::i18n::{msg, status_name, Lang};
use super::inbox::run;
use super::layout::{self, page, Flash};
use super::session::{Posted, Staff};
use super::task::{field_block, field_errors, people, values_of, Asked, Shown};
use crate::server::{blocking, parse_instance_id, ApiError, Shared};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use caseflow_core::case::{Command, HistoryEntry, Instance, Status, StatusKind, TimerKind};
use caseflow_core::value::Value;
use caseflow_dsl::model::{Process, StepKind};
use maud::{html, Markup, PreEscaped};
use std::collections::{BTreeMap, BTreeSet};

/// The diagram with where the case is (`current`) and where it has been (`visited`, and the
/// transitions between visited steps) marked by classes the stylesheet colours.
fn marked_diagram(svg: &str, current: &BTreeSet<String>, visited: &BTreeSet<String>) -> String {
    let mut out = svg.to_string();
    for step in visited.iter().chain(std::iter::once(&"start".to_string())) {
        let class = if current.contains(step) { "current" } else { "visited" };
        out = out.replace(&format!("<g data-step=\"{step}\">"), &format!("<g data-step=\"{step}\" class=\"{class}\">"));
    }
    for step in current.difference(visited) {
        out = out.replace(&format!("<g data-step=\"{step}\">"), &format!("<g data-step=\"{step}\" class=\"current\">"));
    }
    // Transitions between two steps the case went through.
    let mut marked = String::with_capacity(out.len());
    for line in out.lines() {
        let taken = line.starts_with("<path ")
            && [("data-from=\"", 0), ("data-to=\"", 1)].iter().all(|(attr, _)| {
                line.split(attr)
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .is_some_and(|s| s == "start" || visited.contains(s))
            });
        if taken {
            marked.push_str(&line.replacen("<path ", "<path class=\"taken\" ", 1));
        } else {
            marked.push_str(line);
        }
        marked.push('\n');
    }
    marked
}

fn status_line(l: Lang, inst: &Instance) -> Markup {
    html! {
        span.status.(inst.status.name()) { (status_name(l, inst.status.kind())) }
        @match &inst.status {
            Status::Completed { outcome } => { " · " (l.t("outcome")) " " strong { (outcome) } }
            Status::Cancelled { reason } => { " · " (reason) }
            Status::Incident { step, reason } => { " · " (l.t("at-step")) " " code { (step) } ": " (reason) }
            _ => {}
        }
    }
}

/// The timeline: who did what, when (in the calendar's zone), under which rules version.
fn history_list(l: Lang, entries: &[HistoryEntry], tz: chrono_tz::Tz) -> Markup {
    html! {
        ol.history {
            @for h in entries {
                li {
                    time datetime=(h.at.to_rfc3339()) { (h.at.with_timezone(&tz).format("%Y-%m-%d %H:%M")) }
                    " " span.event { (h.event.as_str()) }
                    @if let Some(s) = &h.step { " " code { (s) } }
                    " " span.actor { (h.actor) }
                    @if !h.detail.is_empty() { " — " (h.detail) }
                    @if !h.changes.is_empty() { " " small { "(" (h.changes.iter().map(|c| c.0.as_str()).collect::<Vec<_>>().join(", ")) ")" } }
                    " " small.rules title=(l.t("rules-version")) { "r" (h.rules_version) }
                }
            }
        }
    }
}

/// What a pending timer is waiting for, in words.
fn timer_text(l: Lang, kind: &TimerKind) -> String {
    match kind {
        TimerKind::Due { task } => l.f("timer-due", &[("task", task.to_string().into())]),
        TimerKind::Escalation { task, .. } => l.f("timer-escalation", &[("task", task.to_string().into())]),
        TimerKind::Threshold { task, .. } => l.f("timer-threshold", &[("task", task.to_string().into())]),
        other => format!("{other:?}").split([' ', '{']).next().unwrap_or("timer").to_lowercase(),
    }
}

/// The messages the case takes now: those a step it waits at listens for, the process's
/// interrupting ones, and those it keeps until a step listens.
fn messages_taken(model: &Process, inst: &Instance) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for t in inst.tokens.values() {
        if let StepKind::Wait(w) = &model.step(t.step).kind {
            names.extend(w.on_message.iter().map(|(n, _)| n.clone()));
        }
    }
    names.extend(model.interrupts.iter().map(|(n, _)| n.clone()));
    names.extend(model.kept_messages.iter().map(|(n, _)| n.clone()));
    names
}

/// After a refused change of fields: what was typed, and the engine's errors by field.
struct Typed<'a> {
    posted: &'a Posted,
    errors: BTreeMap<String, String>,
}

/// The form to change the case's fields (the `update_fields` permission): every field of the
/// process, as a task's form shows it, filled with the case's values. Open after a refusal.
fn fields_form(state: &Shared, staff: &Staff, inst: &Instance, model: &Process, typed: Option<&Typed>) -> Markup {
    let users = people(&state.engine.rules());
    let tz = state.engine.rules().calendar.time_zone;
    let l = staff.lang;
    let asked: Vec<Asked> = model.fields.iter().map(|field| Asked { field, required: false }).collect();
    let no_errors = BTreeMap::new();
    let errors = typed.map_or(&no_errors, |t| &t.errors);
    html! {
        details.case-action open[typed.is_some()] {
            summary { (l.t("change-fields")) }
            form.task method="post" action=(format!("/ui/cases/{}/fields", inst.id)) novalidate {
                input type="hidden" name="_csrf" value=(staff.csrf);
                @for a in &asked {
                    @let name = a.field.name.as_str();
                    @let shown = match typed { Some(t) => Shown::Typed(t.posted.all(name).collect()), None => Shown::Case(inst.fields.get(name)) };
                    (field_block(l, a, &shown, errors.get(name), &users, tz))
                }
                div.actions { button type="submit" { (l.t("save-changed-fields")) } }
            }
        }
    }
}

/// The actions on the whole case the person may take: send a message (anyone, while it runs
/// and something takes one), change fields (`update_fields`), suspend and resume (`suspend`),
/// cancel (`cancel`). Cancelling cannot be undone: it asks for a confirmation. Retrying an
/// incident is for administrators (the API's `/instances/{id}/retry`), and people signed in
/// here never are: the console neither offers it nor takes it.
fn actions(state: &Shared, staff: &Staff, inst: &Instance, model: Option<&Process>, typed: Option<&Typed>) -> Markup {
    let rules = state.engine.rules();
    let may = |p: &str| rules.permits(&staff.actor, p);
    let kind = inst.status.kind();
    let open = !kind.is_ended();
    let running = kind == StatusKind::Running;
    let suspended = kind == StatusKind::Suspended;
    let messages = match model {
        Some(m) if running => messages_taken(m, inst),
        _ => BTreeSet::new(),
    };
    let action = format!("/ui/cases/{}/act", inst.id);
    let csrf = html! { input type="hidden" name="_csrf" value=(staff.csrf); };
    let l = staff.lang;
    let any = !messages.is_empty()
        || (open && (may("update_fields") || may("cancel")))
        || (may("suspend") && (running || suspended));
    html! {
        @if any { h2 { (l.t("actions")) } }
        @if !messages.is_empty() {
            form.case-action method="post" action=(action) {
                (csrf)
                input type="hidden" name="action" value="message";
                label { (l.t("message")) " " select name="name" { @for m in &messages { option value=(m) { (m) } } } }
                button type="submit" { (l.t("send-message")) }
            }
        }
        @if let (Some(m), true) = (model, may("update_fields") && open) { (fields_form(state, staff, inst, m, typed)) }
        @if may("suspend") && running {
            form.case-action method="post" action=(action) {
                (csrf)
                input type="hidden" name="action" value="suspend";
                button type="submit" { (l.t("suspend")) }
            }
        }
        @if may("suspend") && suspended {
            form.case-action method="post" action=(action) {
                (csrf)
                input type="hidden" name="action" value="resume";
                button type="submit" { (l.t("resume")) }
            }
        }
        @if may("cancel") && open {
            form.case-action method="post" action=(action) {
                (csrf)
                input type="hidden" name="action" value="cancel";
                label { (l.t("reason")) " " input name="reason" required; }
                label { input type="checkbox" name="confirm" value="yes" required; " " (l.t("cancel-understood")) }
                button type="submit" { (l.t("cancel-case")) }
            }
        }
    }
}

fn case_body(
    state: &Shared,
    staff: &Staff,
    id: &str,
    flash: Vec<Flash>,
    typed: Option<&Typed>,
) -> Result<Response, ApiError> {
    let engine = &state.engine;
    let id = parse_instance_id(id)?;
    let inst = engine.instance(id)?.ok_or_else(|| ApiError::unknown_instance(format!("no case {id}")))?;
    let def = engine.definition(&inst.process, Some(inst.version));
    let history = engine.history(id)?;
    let subs = engine.sub_cases(id)?;
    let rules = engine.rules();
    let tz = rules.calendar.time_zone;
    let current: BTreeSet<String> =
        inst.tokens.values().filter_map(|t| def.as_ref().map(|d| d.model.step(t.step).name.clone())).collect();
    let visited: BTreeSet<String> = history.iter().filter_map(|h| h.step.clone()).collect();
    let diagram = def.as_ref().and_then(|d| caseflow_dsl::graph::to_svg(&d.model).ok());
    let label = |name: &str| def.as_ref().and_then(|d| d.model.field(name)).and_then(|f| f.label.clone());
    let l = staff.lang;
    let body = html! {
        p.crumbs { a href="/ui/inbox" { (l.t("nav-inbox")) } " › " (l.t("case")) }
        h1 { (inst.business_key) " " small { (def.as_ref().and_then(|d| d.model.label.clone()).unwrap_or_else(|| inst.process.clone())) " v" (inst.version) } }
        @for f in &flash { (f) }
        p { (status_line(l, &inst)) }
        @if let Some((parent, _)) = inst.parent { p { (l.t("runs-for-case")) " " a href=(format!("/ui/cases/{parent}")) { "#" (parent) } } }
        @if !subs.is_empty() {
            h2 { (l.t("sub-cases")) }
            ul { @for c in &subs { li { a href=(format!("/ui/cases/{}", c.id)) { (c.process) " #" (c.id) } " · " (c.status) } } }
        }
        div.case {
            section {
                h2 { (l.t("fields")) }
                table.fields {
                    @for (name, value) in &inst.fields {
                        tr { th { (label(name).unwrap_or_else(|| name.clone())) } td { (value) } }
                    }
                }
                h2 { (l.t("open-tasks")) }
                @if inst.tasks.is_empty() { p { (l.t("none")) } }
                ul {
                    @for t in inst.tasks.values() {
                        li {
                            a href=(format!("/ui/tasks/{}", inst.task_id(t.seq))) { (t.name) }
                            " · " @match t.assignee.as_deref() { Some(a) => (a), None => (l.t("unassigned")) }
                            @if let Some(d) = t.due_at { " · " (l.t("due")) " " (d.with_timezone(&tz).format("%m-%d %H:%M")) }
                            @if t.overdue { " · " span.mark.overdue { (l.t("overdue")) } }
                            @if let Some(w) = &t.started {
                                " · " span.mark.started {
                                    (l.f("started-by-since", &[("who", w.by.as_str().into()), ("at", w.at.with_timezone(&tz).format("%m-%d %H:%M").to_string().into())]))
                                }
                            }
                        }
                    }
                }
            }
            // Focusable: it scrolls, and keyboard users must be able to scroll it.
            section.diagram aria-label=(l.t("diagram")) tabindex="0" {
                h2 { (l.t("where-it-is")) }
                @if let Some(svg) = &diagram { (PreEscaped(marked_diagram(svg, &current, &visited))) }
                p.legend { span.key.current {} " " (l.t("legend-now")) " " span.key.visited {} " " (l.t("legend-done")) }
            }
        }
        @if !inst.timers.is_empty() {
            h2 { (l.t("waiting-for")) }
            ul.timers {
                @for t in inst.timers.values() {
                    li { (t.due_at.with_timezone(&tz).format("%Y-%m-%d %H:%M")) " — " (timer_text(l, &t.kind)) }
                }
            }
        }
        (actions(state, staff, &inst, def.as_ref().map(|d| &d.model), typed))
        h2 { (l.t("history")) }
        (history_list(l, &history, tz))
    };
    Ok(page(l, &inst.business_key, Some(staff), body).into_response())
}

pub async fn case_page(State(state): State<Shared>, staff: Staff, Path(id): Path<String>) -> Response {
    let s = state.clone();
    let l = staff.lang;
    blocking(move || case_body(&s, &staff, &id, Vec::new(), None))
        .await
        .unwrap_or_else(|e| layout::api_error_page(l, e))
}

/// Send a message, cancel, suspend or resume the case, as the person may; the engine checks
/// the permission.
pub async fn act(State(state): State<Shared>, Path(id): Path<String>, posted: Posted) -> Response {
    let l = posted.staff.lang;
    let Ok(instance) = parse_instance_id(&id) else {
        return layout::error_page(l, StatusCode::NOT_FOUND, &l.f("not-a-case", &[("id", id.as_str().into())]));
    };
    let reason = posted.get("reason").unwrap_or("").trim().to_string();
    let command = match posted.get("action").unwrap_or("") {
        "suspend" => Ok(Command::Suspend),
        "resume" => Ok(Command::Resume),
        "message" => match posted.get("name").map(str::trim) {
            Some(name) if !name.is_empty() => Ok(Command::Message { name: name.to_string() }),
            _ => Err(msg("choose-message")),
        },
        "cancel" if posted.get("confirm") != Some("yes") => Err(msg("cancel-tick-box")),
        "cancel" if reason.is_empty() => Err(msg("cancel-say-why")),
        "cancel" => Ok(Command::Cancel { reason }),
        _ => Err(msg("no-such-action")),
    };
    let flash = match command {
        Err(why) => Flash::Error(l.t(why)),
        Ok(command) => {
            let message =
                matches!(&command, Command::Message { .. }).then(|| posted.get("name").unwrap_or("").to_string());
            match run(&state, &posted.staff, instance, command).await {
                Ok(after) => {
                    let status = status_name(l, after.status.kind());
                    Flash::Info(match message {
                        Some(m) => l.f("message-delivered", &[("message", m.into()), ("status", status.into())]),
                        None => l.f("case-is-now", &[("status", status.into())]),
                    })
                }
                Err(e) => Flash::Error(e.detail),
            }
        }
    };
    let s = state.clone();
    let staff = posted.staff;
    blocking(move || case_body(&s, &staff, &id, vec![flash], None))
        .await
        .unwrap_or_else(|e| layout::api_error_page(l, e))
}

/// Whether `sent` is the value the form showed for `old`: the same value, the same minute (a
/// time, which the form shows to the minute), the same text (a date sent as text), or no value
/// sent as "no" or as an empty list.
fn as_shown(old: Option<&Value>, sent: &Value) -> bool {
    match (old, sent) {
        (Some(o), s) if o == s => true,
        // The form shows a time to the minute.
        (Some(Value::DateTime(o)), Value::DateTime(s)) => o.timestamp().div_euclid(60) == s.timestamp().div_euclid(60),
        (Some(o), Value::Text(t)) => o.to_string() == *t,
        (None, Value::Bool(false)) => true,
        (None, Value::List(items)) => items.is_empty(),
        _ => false,
    }
}

/// Change the case's fields: only those whose value the form changed are sent, so a field
/// left as it was is not rewritten (nor recorded in the history as changed). The engine's
/// errors come back beside their fields, with everything typed kept.
pub async fn update_fields(State(state): State<Shared>, Path(id): Path<String>, posted: Posted) -> Response {
    let s = state.clone();
    let case_id = id.clone();
    let loaded = blocking(move || {
        let instance = parse_instance_id(&case_id)?;
        let inst =
            s.engine.instance(instance)?.ok_or_else(|| ApiError::unknown_instance(format!("no case {instance}")))?;
        let def = s.engine.definition(&inst.process, Some(inst.version)).ok_or_else(|| {
            ApiError::unknown_process(format!("process `{}` version {} is not deployed", inst.process, inst.version))
        })?;
        Ok((inst, def))
    })
    .await;
    let l = posted.staff.lang;
    let (inst, def) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return layout::api_error_page(l, e),
    };
    let asked: Vec<Asked> = def.model.fields.iter().map(|field| Asked { field, required: false }).collect();
    // A flash and the status to answer, or the form again with errors by field.
    let outcome = match values_of(l, state.engine.rules().calendar.time_zone, &asked, &posted) {
        Err(errors) => Err(errors.into_iter().collect()),
        Ok(values) => {
            let changed: BTreeMap<String, Value> =
                values.into_iter().filter(|(name, v)| !as_shown(inst.fields.get(name), v)).collect();
            if changed.is_empty() {
                Ok((Flash::Info(l.t("nothing-changed")), StatusCode::OK))
            } else {
                let names = changed.keys().cloned().collect::<Vec<_>>().join(", ");
                match run(&state, &posted.staff, inst.id, Command::UpdateFields { fields: changed }).await {
                    Ok(_) => Ok((Flash::Info(l.f("fields-changed", &[("names", names.into())])), StatusCode::OK)),
                    Err(e) if !e.errors.is_empty() || e.field.is_some() => Err(field_errors(&e).0),
                    Err(e) => Ok((Flash::Error(e.detail), e.status)),
                }
            }
        }
    };
    let s = state.clone();
    blocking(move || {
        let (flash, status, typed) = match outcome {
            Ok((flash, status)) => (flash, status, None),
            Err(errors) => (
                Flash::Error(l.t("values-need-fix")),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(Typed { posted: &posted, errors }),
            ),
        };
        let mut r = case_body(&s, &posted.staff, &id, vec![flash], typed.as_ref())?;
        *r.status_mut() = status;
        Ok(r)
    })
    .await
    .unwrap_or_else(|e| layout::api_error_page(l, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diagram_marks_where_the_case_is_and_has_been() {
        let svg = "<path d=\"M\" data-from=\"start\" data-to=\"a\"/>\n<path d=\"M\" data-from=\"a\" data-to=\"b\"/>\n<path d=\"M\" data-from=\"b\" data-to=\"c\"/>\n<g data-step=\"start\"></g>\n<g data-step=\"a\"></g>\n<g data-step=\"b\"></g>\n<g data-step=\"c\"></g>\n";
        let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let out = marked_diagram(svg, &set(&["b"]), &set(&["a", "b"]));
        assert!(out.contains("<g data-step=\"a\" class=\"visited\">"), "{out}");
        assert!(out.contains("<g data-step=\"b\" class=\"current\">"), "{out}");
        assert!(out.contains("<g data-step=\"c\">"), "{out}");
        assert!(out.contains("<path class=\"taken\" d=\"M\" data-from=\"a\" data-to=\"b\"/>"), "{out}");
        assert!(out.contains("<path d=\"M\" data-from=\"b\" data-to=\"c\"/>"), "{out}");
    }
}
