//! A task's page: what it is, its SLA, and its form, generated from the step's `asks` clause
//! (the same fields `/processes/{id}/schema` describes): a choice is a set of radio buttons or
//! a list, a yes/no a checkbox, a number a number field with the declared bounds, a date a date
//! picker, a list repeated inputs, a user a list of people, text a text area; labels as the
//! `.flow` file writes them; the case's values filled in. The engine checks what is sent, and
//! its errors come back beside their fields with everything typed kept.

use super::i18n::Lang;
use super::inbox::{run, time_left, working_time};
use super::layout::{self, page, Flash};
use super::session::{Posted, Staff};
use crate::server::{blocking, parse_task_id, ApiError, Shared};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use caseflow_core::case::{Command, Instance};
use caseflow_core::value::Value;
use caseflow_dsl::model::{Field, FieldType, Process, StepKind};
use maud::{html, Markup};
use std::collections::BTreeMap;

/// Choices with at most this many values are radio buttons; more, a list.
const RADIO_MAX: usize = 4;
/// Empty inputs offered for a list field beyond its values.
const LIST_BLANKS: usize = 2;

/// A field of the form: its declaration and whether the step requires it.
pub(super) struct Asked<'a> {
    pub field: &'a Field,
    pub required: bool,
}

fn asked<'a>(model: &'a Process, inst: &Instance, seq: u32) -> Vec<Asked<'a>> {
    let Some(task) = inst.tasks.get(&seq) else { return Vec::new() };
    let StepKind::Task(step) = &model.step(task.step).kind else { return Vec::new() };
    step.form
        .iter()
        .filter_map(|ff| model.field(&ff.field).map(|field| Asked { field, required: ff.required }))
        .collect()
}

/// What a field shows: what was typed (after a refused send), else the draft's value, else the
/// case's.
pub(super) enum Shown<'a> {
    Typed(Vec<&'a str>),
    Case(Option<&'a Value>),
}

impl Shown<'_> {
    fn texts(&self) -> Vec<String> {
        match self {
            Shown::Typed(v) => v.iter().map(|s| s.to_string()).collect(),
            Shown::Case(Some(Value::List(items))) => items.iter().map(|i| i.to_string()).collect(),
            Shown::Case(Some(v)) => vec![v.to_string()],
            Shown::Case(None) => Vec::new(),
        }
    }

    fn text(&self) -> String {
        self.texts().into_iter().next_back().unwrap_or_default()
    }
}

/// How a time shows in a `datetime-local` input: to the minute, in the calendar's zone.
const LOCAL_MINUTE: &str = "%Y-%m-%dT%H:%M";

pub(super) fn input(a: &Asked, shown: &Shown, users: &[(String, String)], tz: chrono_tz::Tz) -> Markup {
    let f = a.field;
    let name = f.name.as_str();
    let id = format!("f-{name}");
    let value = shown.text();
    let required = a.required;
    match &f.ty {
        FieldType::Choice(values) if values.len() <= RADIO_MAX => html! {
            span.choices role="radiogroup" aria-labelledby=(format!("{id}-label")) {
                @for v in values {
                    label.choice { input type="radio" name=(name) value=(v) checked[*v == value] required[required]; " " (v) }
                }
            }
        },
        FieldType::Choice(values) => html! {
            select id=(id) name=(name) required[required] {
                option value="" { "—" }
                @for v in values { option value=(v) selected[*v == value] { (v) } }
            }
        },
        FieldType::User => html! {
            select id=(id) name=(name) required[required] {
                option value="" { "—" }
                @for (uid, label) in users { option value=(uid) selected[*uid == value] { (label) " (" (uid) ")" } }
            }
        },
        // Unchecked boxes send nothing: the hidden `false` before the box says "no" then.
        FieldType::Bool => html! {
            input type="hidden" name=(name) value="false";
            input id=(id) type="checkbox" name=(name) value="true" checked[value == "true"];
        },
        FieldType::Int { min, max } => html! {
            input id=(id) type="number" step="1" name=(name) value=(value) min=[min] max=[max] required[required];
        },
        FieldType::Decimal => {
            html! { input id=(id) type="number" step="any" name=(name) value=(value) required[required]; }
        }
        FieldType::Date => html! { input id=(id) type="date" name=(name) value=(value) required[required]; },
        FieldType::DateTime => {
            let value = match shown {
                Shown::Case(Some(Value::DateTime(t))) => t.with_timezone(&tz).format(LOCAL_MINUTE).to_string(),
                _ => value,
            };
            html! { input id=(id) type="datetime-local" name=(name) value=(value) required[required]; }
        }
        FieldType::ListOfText => {
            let mut items = shown.texts();
            items.extend(std::iter::repeat_n(String::new(), LIST_BLANKS));
            html! {
                span.list data-list=(name) {
                    @for (i, item) in items.iter().enumerate() {
                        input id=[(i == 0).then(|| id.clone())] name=(name) value=(item) aria-label=(format!("{} {}", f.label.as_deref().unwrap_or(name), i + 1));
                    }
                }
            }
        }
        FieldType::Text => html! { textarea id=(id) name=(name) rows="3" required[required] { (value) } },
    }
}

/// A time typed as `YYYY-MM-DDTHH:MM` (seconds allowed) in `tz`, or given with its offset.
fn local_time(text: &str, tz: chrono_tz::Tz) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::TimeZone;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    let naive = chrono::NaiveDateTime::parse_from_str(text, LOCAL_MINUTE)
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .ok()?;
    tz.from_local_datetime(&naive).earliest().map(|t| t.with_timezone(&chrono::Utc))
}

/// A field of a form: its label (required marked), its input, and the server's error beside it.
pub(super) fn field_block(
    l: Lang,
    a: &Asked,
    shown: &Shown,
    error: Option<&String>,
    users: &[(String, String)],
    tz: chrono_tz::Tz,
) -> Markup {
    let name = a.field.name.as_str();
    html! {
        div.field.invalid[error.is_some()] {
            label id=(format!("f-{name}-label")) for=(format!("f-{name}")) {
                (a.field.label.as_deref().unwrap_or(name))
                @if a.required { span.required title=(l.t("required")) { " *" } }
            }
            (input(a, shown, users, tz))
            @if let Some(e) = error { p.error role="alert" id=(format!("f-{name}-error")) { (e) } }
        }
    }
}

/// The people of the rules, id and name, for a list to choose one from.
pub(super) fn people(rules: &caseflow_core::rules::RuleSet) -> Vec<(String, String)> {
    rules.users.values().map(|u| (u.id.clone(), u.name.clone().unwrap_or_else(|| u.id.clone()))).collect()
}

/// The form's fields as the engine takes them: text as sent, numbers and yes/no read, empty
/// inputs left out (a required one is then reported missing by the engine), lists in order.
pub(super) fn values_of(
    l: Lang,
    tz: chrono_tz::Tz,
    asked: &[Asked],
    posted: &Posted,
) -> Result<BTreeMap<String, Value>, Vec<(String, String)>> {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for a in asked {
        let name = &a.field.name;
        let sent: Vec<&str> = posted.all(name).map(str::trim).collect();
        let last = sent.iter().rev().find(|s| !s.is_empty()).copied();
        let value = match &a.field.ty {
            FieldType::Bool => Some(Value::Bool(sent.contains(&"true"))),
            FieldType::ListOfText => {
                let items: Vec<Value> =
                    sent.iter().filter(|s| !s.is_empty()).map(|s| Value::Text(s.to_string())).collect();
                (!items.is_empty() || a.required).then_some(Value::List(items))
            }
            FieldType::Int { .. } => match last.map(str::parse::<i64>) {
                None => None,
                Some(Ok(i)) => Some(Value::Int(i)),
                Some(Err(_)) => {
                    errors.push((name.clone(), l.t("whole-number-needed")));
                    None
                }
            },
            FieldType::Decimal => match last.map(str::parse::<f64>) {
                None => None,
                Some(Ok(d)) if d.is_finite() => Some(Value::Decimal(d)),
                Some(_) => {
                    errors.push((name.clone(), l.t("number-needed")));
                    None
                }
            },
            // The browser's `datetime-local` is a time on the wall clock: the calendar's zone.
            FieldType::DateTime => match last.map(|s| local_time(s, tz)) {
                None => None,
                Some(Some(t)) => Some(Value::DateTime(t)),
                Some(None) => {
                    errors.push((name.clone(), l.t("time-needed")));
                    None
                }
            },
            _ => last.map(|s| Value::Text(s.to_string())),
        };
        if let Some(v) = value {
            out.insert(name.clone(), v);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The field errors of a refused completion, by field; what is not about a field, apart.
pub(super) fn field_errors(e: &ApiError) -> (BTreeMap<String, String>, Option<String>) {
    let mut by_field: BTreeMap<String, String> = e.errors.iter().cloned().collect();
    if let (Some(f), true) = (&e.field, e.errors.is_empty()) {
        let prefix = format!("invalid field `{f}`: ");
        by_field.insert(f.clone(), e.detail.strip_prefix(&prefix).unwrap_or(&e.detail).to_string());
    }
    let other = by_field.is_empty().then(|| e.detail.clone());
    (by_field, other)
}

struct Loaded {
    inst: Instance,
    def: std::sync::Arc<caseflow_engine::service::Deployed>,
    seq: u32,
}

fn load(state: &Shared, id: &str) -> Result<Loaded, ApiError> {
    let (instance, seq) = parse_task_id(id)?;
    let inst =
        state.engine.instance(instance)?.ok_or_else(|| ApiError::unknown_instance(format!("no case {instance}")))?;
    let def = state.engine.definition(&inst.process, Some(inst.version)).ok_or_else(|| {
        ApiError::unknown_process(format!("process `{}` version {} is not deployed", inst.process, inst.version))
    })?;
    Ok(Loaded { inst, def, seq })
}

/// The page of a task that is no longer open: said plainly, with the case to look at.
fn gone(staff: &Staff, id: &str, inst: &Instance) -> Response {
    let l = staff.lang;
    let body = html! {
        h1 { (l.t("task-gone")) }
        p.flash.error role="alert" { (l.f("task-gone-detail", &[("task", id.into())])) }
        p {
            a href=(format!("/ui/cases/{}", inst.id)) { (l.f("open-case", &[("key", inst.business_key.as_str().into())])) }
            " · " a href="/ui/inbox" { (l.t("back-to-inbox")) }
        }
    };
    (StatusCode::CONFLICT, page(l, &l.t("task-gone"), Some(staff), body)).into_response()
}

fn render(
    state: &Shared,
    staff: &Staff,
    loaded: &Loaded,
    typed: Option<&Posted>,
    errors: &BTreeMap<String, String>,
    flash: Vec<Flash>,
) -> Response {
    let Loaded { inst, def, seq } = loaded;
    let id = inst.task_id(*seq).to_string();
    let Some(task) = inst.tasks.get(seq) else { return gone(staff, &id, inst) };
    let rules = state.engine.rules();
    let users = people(&rules);
    let l = staff.lang;
    let clock = caseflow_core::sla::task_clock(task, &rules.calendar, state.clock.now());
    let tz = rules.calendar.time_zone;
    let fields = asked(&def.model, inst, *seq);
    let mine = task.assignee.as_deref() == Some(staff.actor.id.as_str());
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let body = html! {
        p.crumbs { a href="/ui/inbox" { (l.t("nav-inbox")) } " › " a href=(format!("/ui/cases/{}", inst.id)) { (inst.business_key) } }
        h1 { (task.name) }
        @for f in &flash { (f) }
        dl.facts {
            dt { (l.t("process")) } dd { (def.model.label.as_deref().unwrap_or(&inst.process)) " · " (l.t("step")) " " code { (task.step_name) } }
            @if let Some(item) = &task.item { dt { (l.t("item")) } dd { (item) } }
            dt { (l.t("assignee")) } dd {
                @match task.assignee.as_deref() { Some(a) => (a), None => (l.t("unassigned")) }
                @if !task.candidates.is_empty() { " (" (l.t("roles")) ": " (task.candidates.join(", ")) ")" }
            }
            @if let Some(due) = task.due_at { dt { (l.t("due")) } dd { (due.with_timezone(&tz).format("%Y-%m-%d %H:%M")) } }
            @if let Some(c) = &clock {
                dt { (l.t("working-time")) } dd {
                    (time_left(l, c.remaining_minutes)) " · "
                    (l.f("sla-used", &[("percent", c.percent_used.into()), ("allowed", working_time(l, c.allowed_minutes).into())]))
                    @if !c.running { " · " (l.t("paused")) }
                }
            }
            @if task.overdue { dt { (l.t("overdue")) } dd.overdue { (l.t("yes")) } }
            @if let Some(s) = &task.started {
                dt { (l.t("in-progress")) }
                dd { (l.f("started-by-since", &[("who", s.by.as_str().into()), ("at", s.at.with_timezone(&tz).format("%m-%d %H:%M").to_string().into())])) }
            }
            @if let Some(d) = &task.draft {
                dt { (l.t("draft")) }
                dd { (l.f("draft-saved-by", &[("who", d.by.as_str().into()), ("at", d.at.with_timezone(&tz).format("%m-%d %H:%M").to_string().into())])) }
            }
        }
        @if mine && task.started.is_none() {
            form.inline method="post" action=(format!("/ui/tasks/{id}/start")) {
                input type="hidden" name="_csrf" value=(staff.csrf);
                button type="submit" { (l.t("start-work")) }
            }
        }
        @if !mine {
            form.inline method="post" action="/ui/inbox/act" {
                input type="hidden" name="_csrf" value=(staff.csrf);
                input type="hidden" name="task" value=(id);
                button name="action" value="claim" { (l.t("claim-it")) }
            }
        }
        form.task method="post" action=(format!("/ui/tasks/{id}")) novalidate {
            input type="hidden" name="_csrf" value=(staff.csrf);
            @if fields.is_empty() { p { (l.t("asks-nothing")) } }
            @for a in &fields {
                @let name = a.field.name.as_str();
                @let drafted = task.draft.as_ref().and_then(|d| d.fields.get(name));
                @let shown = match typed { Some(p) => Shown::Typed(p.all(name).collect()), None => Shown::Case(drafted.or(inst.fields.get(name))) };
                (field_block(l, a, &shown, errors.get(name), &users, tz))
            }
            div.actions {
                button type="submit" { (l.t("complete")) }
                @if mine { button type="submit" formaction=(format!("/ui/tasks/{id}/draft")) { (l.t("save-draft")) } }
            }
        }
    };
    (status, page(l, &task.name, Some(staff), body)).into_response()
}

#[derive(serde::Deserialize)]
pub struct TaskQuery {
    /// The task just completed, when the person was sent on to this one.
    #[serde(default)]
    done: String,
}

pub async fn task_page(
    State(state): State<Shared>,
    staff: Staff,
    Path(id): Path<String>,
    Query(q): Query<TaskQuery>,
) -> Response {
    let s = state.clone();
    let l = staff.lang;
    blocking(move || {
        let loaded = load(&s, &id)?;
        let flash = if q.done.is_empty() {
            Vec::new()
        } else {
            vec![Flash::Info(l.f("task-completed-next", &[("task", q.done.as_str().into())]))]
        };
        Ok(render(&s, &staff, &loaded, None, &BTreeMap::new(), flash))
    })
    .await
    .unwrap_or_else(|e| layout::api_error_page(l, e))
}

/// Marks the task started by the person (its assignee).
pub async fn start_work(State(state): State<Shared>, Path(id): Path<String>, posted: Posted) -> Response {
    let s = state.clone();
    let task_id = id.clone();
    let loaded = match blocking(move || load(&s, &task_id)).await {
        Ok(loaded) => loaded,
        Err(e) => return layout::api_error_page(posted.staff.lang, e),
    };
    match run(&state, &posted.staff, loaded.inst.id, Command::StartWork { task: loaded.seq }).await {
        Ok(_) => Redirect::to(&format!("/ui/tasks/{id}")).into_response(),
        Err(e) if e.kind == "task-not-open" => gone(&posted.staff, &id, &loaded.inst),
        Err(e) => {
            let status = e.status;
            let mut r = render(&state, &posted.staff, &loaded, None, &BTreeMap::new(), vec![Flash::Error(e.detail)]);
            *r.status_mut() = status;
            r
        }
    }
}

/// The task a form was sent for, still open, and the form's values as the engine takes them;
/// or the page to answer instead (no such task, no longer open, a value that does not read).
async fn sent(state: &Shared, id: &str, posted: &Posted) -> Result<(Loaded, BTreeMap<String, Value>), Response> {
    let s = state.clone();
    let task_id = id.to_string();
    let l = posted.staff.lang;
    let loaded = blocking(move || load(&s, &task_id)).await.map_err(|e| layout::api_error_page(l, e))?;
    if !loaded.inst.tasks.contains_key(&loaded.seq) {
        return Err(gone(&posted.staff, id, &loaded.inst));
    }
    let fields = asked(&loaded.def.model, &loaded.inst, loaded.seq);
    match values_of(l, state.engine.rules().calendar.time_zone, &fields, posted) {
        Ok(values) => Ok((loaded, values)),
        Err(errors) => {
            let errors = errors.into_iter().collect();
            let flash = vec![Flash::Error(l.t("answers-need-fix"))];
            Err(render(state, &posted.staff, &loaded, Some(posted), &errors, flash))
        }
    }
}

/// The form again after the engine refused what was sent: a lost race said plainly, field
/// errors beside their fields, what was typed kept, the engine's status.
fn refused(state: &Shared, id: &str, posted: &Posted, loaded: &Loaded, e: ApiError) -> Response {
    if e.kind == "task-not-open" {
        return gone(&posted.staff, id, &loaded.inst);
    }
    let (errors, other) = field_errors(&e);
    let flash = vec![Flash::Error(other.unwrap_or_else(|| posted.staff.lang.t("answers-need-fix")))];
    let mut r = render(state, &posted.staff, loaded, Some(posted), &errors, flash);
    *r.status_mut() = e.status;
    r
}

/// Saves what the form holds as the task's draft, complete or not.
pub async fn save_draft(State(state): State<Shared>, Path(id): Path<String>, posted: Posted) -> Response {
    let (loaded, values) = match sent(&state, &id, &posted).await {
        Ok(sent) => sent,
        Err(page) => return page,
    };
    match run(&state, &posted.staff, loaded.inst.id, Command::SaveDraft { task: loaded.seq, fields: values }).await {
        Ok(after) => {
            let loaded = Loaded { inst: after, ..loaded };
            render(
                &state,
                &posted.staff,
                &loaded,
                None,
                &BTreeMap::new(),
                vec![Flash::Info(posted.staff.lang.t("draft-saved"))],
            )
        }
        Err(e) => refused(&state, &id, &posted, &loaded, e),
    }
}

pub async fn complete(State(state): State<Shared>, Path(id): Path<String>, posted: Posted) -> Response {
    let (loaded, values) = match sent(&state, &id, &posted).await {
        Ok(sent) => sent,
        Err(page) => return page,
    };
    let command = Command::CompleteTask { task: loaded.seq, fields: values };
    match run(&state, &posted.staff, loaded.inst.id, command).await {
        Ok(after) => {
            // Chained execution: the person's next task in this case, if the case gave them one.
            let next = after.tasks.values().find(|t| t.assignee.as_deref() == Some(posted.staff.actor.id.as_str()));
            let target = match next {
                Some(t) => format!("/ui/tasks/{}?done={id}", after.task_id(t.seq)),
                None => format!("/ui/inbox?done={id}"),
            };
            Redirect::to(&target).into_response()
        }
        Err(e) => refused(&state, &id, &posted, &loaded, e),
    }
}
