//! Field values to and from JSON, and the parsing of ids, page sizes and text bodies.

use super::error::ApiError;
use axum::http::{header, HeaderMap, StatusCode};
use caseflow_core::case::InstanceId;
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

pub(crate) fn parse_instance_id(s: &str) -> Result<InstanceId, ApiError> {
    s.parse::<u64>().map(InstanceId).map_err(|_| ApiError::unknown_instance(format!("`{s}` is not an instance id")))
}

/// A request body that carries one text (a `.flow` source, a rules file): its JSON shape, for
/// clients generated from the OpenAPI document.
pub(crate) trait TextRequest: serde::de::DeserializeOwned {
    /// The field the text is under.
    const FIELD: &'static str;
    fn into_text(self) -> String;
}

/// A text body, sent as text or, for clients generated from the OpenAPI document, as JSON
/// (`T`, the text under `T::FIELD`).
pub(crate) fn text_body<T: TextRequest>(headers: &HeaderMap, body: String) -> Result<String, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json {
        return Ok(body);
    }
    match serde_json::from_str::<Json>(&body) {
        Err(e) => Err(ApiError::bad_request(format!("the body is not JSON: {e}"))),
        Ok(value) => serde_json::from_value::<T>(value).map(T::into_text).map_err(|_| {
            let mut e = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-field",
                format!("a JSON body must be an object with the text under `{}`", T::FIELD),
            );
            e.field = Some(T::FIELD.to_string());
            e
        }),
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
