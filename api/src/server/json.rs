//! Cases, tasks and values as JSON, and the parsing of ids, cursors and text bodies.

use super::error::ApiError;
use super::AppState;
use axum::http::{header, HeaderMap, StatusCode};
use caseflow_core::case::{self, Actor, Instance, InstanceId};
use caseflow_core::value::Value;
use serde_json::{json, Map, Value as Json};
use std::collections::BTreeMap;

pub(crate) fn to_json(v: &Value) -> Json {
    match v {
        Value::Text(t) => Json::String(t.clone()),
        Value::Int(i) => json!(i),
        Value::Decimal(d) => json!(d),
        Value::Bool(b) => Json::Bool(*b),
        Value::Date(d) => Json::String(d.to_string()),
        Value::DateTime(t) => Json::String(t.to_rfc3339()),
        Value::Duration(s) => Json::String(s.to_string()),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
    }
}

pub(crate) fn from_json(field: &str, v: &Json) -> Result<Value, ApiError> {
    let bad = |what: &str| ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        kind: "invalid-field",
        detail: format!("invalid field `{field}`: {what}"),
        field: Some(field.to_string()),
        errors: Vec::new(),
    };
    Ok(match v {
        Json::String(s) => Value::Text(s.clone()),
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Decimal(n.as_f64().ok_or_else(|| bad("not a finite number"))?),
        },
        Json::Array(items) => Value::List(items.iter().map(|i| from_json(field, i)).collect::<Result<_, _>>()?),
        Json::Null => return Err(bad("null is not a value; leave the field out instead")),
        Json::Object(_) => return Err(bad("objects are not field values")),
    })
}

pub(crate) fn fields_from(map: &Map<String, Json>) -> Result<BTreeMap<String, Value>, ApiError> {
    map.iter().map(|(k, v)| Ok((k.clone(), from_json(k, v)?))).collect()
}

/// Sensitive fields are masked for callers who are neither administrators nor staff.
pub(crate) fn instance_json(state: &AppState, inst: &Instance, actor: &Actor, service: bool) -> Result<Json, ApiError> {
    let def = state.engine.definition(&inst.process, Some(inst.version));
    // Only a process with a `call` step can have sub-process cases: the others skip the scan.
    let calls = def
        .as_ref()
        .is_some_and(|d| d.model.steps.iter().any(|s| matches!(s.kind, caseflow_dsl::model::StepKind::Call(_))));
    let sub_cases: Vec<Json> = if calls {
        state
            .engine
            .sub_cases(inst.id)?
            .into_iter()
            .map(|c| {
                let waited_for = inst.children.values().any(|w| *w == c.id);
                json!({ "id": c.id.0, "process": c.process, "status": c.status, "waited_for": waited_for })
            })
            .collect()
    } else {
        Vec::new()
    };
    // Service tokens (integrated systems) see sensitive values masked, whatever roles they act in.
    let may_see = actor.admin || !service;
    let fields: Map<String, Json> = inst
        .fields
        .iter()
        .map(|(k, v)| {
            let sensitive = def.as_ref().and_then(|d| d.model.field(k)).is_some_and(|f| f.sensitive);
            (k.clone(), if sensitive && !may_see { Json::String("***".into()) } else { to_json(v) })
        })
        .collect();
    let rules = state.engine.rules();
    let now = state.clock.now();
    let tasks: Vec<Json> = inst
        .tasks
        .values()
        .map(|t| {
            let mut j = task_json(inst, t);
            j["sla"] =
                serde_json::to_value(caseflow_core::sla::task_clock(t, &rules.calendar, now)).unwrap_or(Json::Null);
            j
        })
        .collect();
    let timers: Vec<Json> = inst
        .timers
        .values()
        .map(|t| json!({ "seq": t.seq, "due_at": t.due_at.to_rfc3339(), "kind": timer_kind_json(&t.kind) }))
        .collect();
    let steps: Vec<String> =
        inst.tokens.values().filter_map(|tok| def.as_ref().map(|d| d.model.step(tok.step).name.clone())).collect();
    Ok(json!({
        "id": inst.id.0,
        "business_key": inst.business_key,
        "process": inst.process,
        "version": inst.version,
        // One shape for a case's status everywhere: its name; what ended or stopped it beside.
        "status": inst.status.name(),
        "outcome": match &inst.status { case::Status::Completed { outcome } => Some(outcome), _ => None },
        "cancel_reason": match &inst.status { case::Status::Cancelled { reason } => Some(reason), _ => None },
        "incident": match &inst.status {
            case::Status::Incident { step, reason } => json!({ "step": step, "reason": reason }),
            _ => Json::Null,
        },
        "fields": fields,
        "current_steps": steps,
        "tasks": tasks,
        "timers": timers,
        "started_at": inst.started_at.to_rfc3339(),
        "updated_at": inst.updated_at.to_rfc3339(),
        // Linked cases: the case this one runs for, and every case it started (ended ones
        // too), those it waits for now marked.
        "parent": inst.parent.map(|(p, _)| p.0),
        "sub_cases": sub_cases,
        // Messages that came before a step listened for them (`keep message`).
        "kept_messages": inst.mailbox.iter().map(|m| json!({ "name": m.name, "kept_at": m.kept_at.to_rfc3339(), "until": m.until.to_rfc3339() })).collect::<Vec<_>>(),
    }))
}

/// A timer's kind, internally tagged: `{"kind": "due", "task": 2}` (the engine stores Rust's
/// externally tagged shape, `{"Due": {"task": 2}}`, which is no shape for an API).
pub(crate) fn timer_kind_json(kind: &case::TimerKind) -> Json {
    let snake = |name: &str| {
        let mut out = String::new();
        for (i, c) in name.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    };
    match serde_json::to_value(kind).unwrap_or(Json::Null) {
        Json::String(unit) => json!({ "kind": snake(&unit) }),
        Json::Object(map) if map.len() == 1 => {
            let (name, inner) = map.into_iter().next().expect("one entry");
            let mut out = Map::new();
            out.insert("kind".into(), Json::String(snake(&name)));
            match inner {
                Json::Object(fields) => out.extend(fields),
                Json::Null => {}
                other => {
                    out.insert("value".into(), other);
                }
            }
            Json::Object(out)
        }
        other => other,
    }
}

pub(crate) fn task_json(inst: &Instance, t: &case::Task) -> Json {
    json!({
        "id": inst.task_id(t.seq).to_string(),
        "instance": inst.id.0,
        "business_key": inst.business_key,
        "name": t.name,
        "step": t.step_name,
        "item": t.item,
        "assignee": t.assignee,
        "delegated_by": t.delegated_by,
        "candidates": t.candidates,
        "claimed": t.claimed,
        "priority": t.priority,
        "opened_at": t.opened_at.to_rfc3339(),
        "due_at": t.due_at.map(|d| d.to_rfc3339()),
        "overdue": t.overdue,
    })
}

pub(crate) fn parse_instance_id(s: &str) -> Result<InstanceId, ApiError> {
    s.parse::<u64>().map(InstanceId).map_err(|_| ApiError::unknown_instance(format!("`{s}` is not an instance id")))
}

/// A text body (a `.flow` source, a rules file), sent as text or, for clients generated from
/// the OpenAPI document, as JSON with the text under `field`.
pub(crate) fn text_body(headers: &HeaderMap, body: String, field: &str) -> Result<String, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json {
        return Ok(body);
    }
    let invalid = || {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            format!("a JSON body must be an object with the text under `{field}`"),
        );
        e.field = Some(field.to_string());
        e
    };
    match serde_json::from_str::<Json>(&body) {
        Ok(Json::Object(mut map)) if map.len() == 1 => match map.remove(field) {
            Some(Json::String(text)) => Ok(text),
            _ => Err(invalid()),
        },
        Ok(_) => Err(invalid()),
        Err(e) => Err(ApiError::bad_request(format!("the body is not JSON: {e}"))),
    }
}

/// A list's page size: 1 to 500, 50 when not given. Out of range is refused, not clamped: a
/// client asking for 1,000 must learn it gets at most 500.
pub(crate) fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit.unwrap_or(50) {
        n @ 1..=500 => Ok(n),
        n => {
            let mut e = ApiError::bad_request(format!("limit must be 1 to 500, not {n}"));
            e.field = Some("limit".into());
            Err(e)
        }
    }
}

pub(crate) fn parse_task_id(s: &str) -> Result<(InstanceId, u32), ApiError> {
    let not_found =
        || ApiError::new(StatusCode::NOT_FOUND, "unknown-task", format!("`{s}` is not a task id (INSTANCE-SEQ)"));
    let (i, t) = s.split_once('-').ok_or_else(not_found)?;
    Ok((InstanceId(i.parse().map_err(|_| not_found())?), t.parse().map_err(|_| not_found())?))
}
