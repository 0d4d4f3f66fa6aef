//! `/instances`: starting cases, reading them and their history, listing them, and the
//! commands on a case (message, cancel, suspend, resume, retry, fields).

use super::auth::{require_admin, Caller};
use super::error::ApiError;
use super::extract::{Body, Q};
use super::json::{fields_from, page_limit, parse_instance_id};
use super::views;
use super::{blocking, durably, Shared};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use caseflow_core::case::{Command, InstanceId, StatusKind};
use serde::Deserialize;
use serde_json::{Map, Value as Json};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"process": "complaint", "fields": {"customer": "第一中学", "contact": "138-0000-0000", "content": "投影仪无法开机", "urgency": "high"}}))]
pub(crate) struct StartRequest {
    process: String,
    /// The process's start fields. Their JSON Schema (types, choices, ranges, required) is
    /// `start` of `GET /processes/{process}/schema`: processes are deployed at run time, so
    /// this document cannot hold it.
    #[serde(default)]
    #[schema(value_type = Object)]
    fields: Map<String, Json>,
}

/// The `Idempotency-Key` header: 1 to 200 visible ASCII characters, or refused (a key that
/// were ignored would let a retry start a second case).
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut keys = headers.get_all("idempotency-key").iter();
    let (Some(key), None) = (keys.next(), keys.next()) else {
        return match headers.contains_key("idempotency-key") {
            true => Err(ApiError::new(StatusCode::BAD_REQUEST, "bad-idempotency-key", "send one Idempotency-Key")),
            false => Ok(None),
        };
    };
    match key.to_str() {
        Ok(k) if (1..=200).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic() || b == b' ') => {
            Ok(Some(k.to_string()))
        }
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-idempotency-key",
            "Idempotency-Key must be 1 to 200 visible ASCII characters (a UUID is a good choice)",
        )),
    }
}

/// Start a case
///
/// Starts a case of a deployed process with its start fields. With `Idempotency-Key`, a repeat with the same body answers the same case; another body with the same key is 422.
#[utoipa::path(
    post,
    path = "/instances",
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, description = "1 to 200 visible ASCII characters, scoped to the caller. A retry with the same key and body answers the case the first request started; the same key with another body answers 422")
    ),
    request_body = StartRequest,
    responses(
        (status = 201, description = "Started", body = views::Instance),
        (status = 400, description = "A malformed Idempotency-Key"),
        (status = 404, description = "No such process"),
        (status = 409, description = "A start with this key is still in progress"),
        (status = 422, description = "A field is invalid (`field` names it), or the key was used for another request")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn start(
    State(state): State<Shared>,
    Caller(actor, service): Caller,
    headers: HeaderMap,
    Body(req): Body<StartRequest>,
) -> Result<Response, ApiError> {
    let idem = idempotency_key(&headers)?;
    let fields = fields_from(&req.fields)?;
    let now = state.clock.now();
    let a = actor.clone();
    let inst =
        durably(state.engine.clone(), move |e| e.start_pending(&req.process, fields, &a, idem.as_deref(), now)).await?;
    let location = format!("/instances/{}", inst.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(views::Instance::of(&state, &inst, &actor, service)?),
    )
        .into_response())
}

/// A case
///
/// Fields (sensitive ones masked for service tokens), current steps, open tasks with their SLA clocks, timers, the parent case and every sub-process case.
#[utoipa::path(
    get,
    path = "/instances/{id}",
    params(("id" = u64, Path, description = "Instance id")),
    responses(
        (status = 200, description = "Fields, current steps, open tasks with SLA clocks, timers", body = views::Instance),
        (status = 404, description = "No such instance")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_instance(
    State(state): State<Shared>,
    Caller(actor, service): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<views::Instance>, ApiError> {
    let id = parse_instance_id(&id)?;
    let s = state.clone();
    let inst =
        blocking(move || s.engine.instance(id)?.ok_or_else(|| ApiError::unknown_instance(format!("no instance {id}"))))
            .await?;
    Ok(axum::Json(views::Instance::of(&state, &inst, &actor, service)?))
}

/// A case by its business key
///
/// The case with that business key (e.g. `20261123-007`), as `GET /instances/{id}` shows it.
#[utoipa::path(
    get,
    path = "/instances/by-key/{key}",
    params(("key" = String, Path, description = "Business key, e.g. 20261123-007")),
    responses(
        (status = 200, description = "The instance", body = views::Instance),
        (status = 404, description = "No such instance")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_instance_by_key(
    State(state): State<Shared>,
    Caller(actor, service): Caller,
    Path(key): Path<String>,
) -> Result<axum::Json<views::Instance>, ApiError> {
    let s = state.clone();
    let inst = blocking(move || {
        s.engine
            .instance_by_key(&key)?
            .ok_or_else(|| ApiError::unknown_instance(format!("no instance with business key `{key}`")))
    })
    .await?;
    Ok(axum::Json(views::Instance::of(&state, &inst, &actor, service)?))
}

/// A case as a scenario
///
/// The scenario file (`docs/testing.md`) written from the case's real history, as `caseflow
/// test --record` writes it: its start, each action at the time it happened, what followed as
/// expectations, and the case as it is now. Save it next to the process's scenarios and edit
/// the expectations to what should have happened. Administrators only (it holds every value).
#[utoipa::path(
    get,
    path = "/instances/{id}/scenario",
    params(("id" = String, Path, description = "Instance id, or business key")),
    responses(
        (status = 200, description = "The scenario, as TOML", body = String, content_type = "text/plain",
            example = json!("description = \"Recorded from case 20261123-001 (complaint version 1); edit the expectations to what should have happened\"\nprocess = \"complaint\"\nstart_at = \"2026-11-23T10:00\"\n\n[fields]\ncustomer = \"第一中学\"\nurgency = \"high\"\n\n[[step]]\nadvance_to = \"2026-11-23T10:05\"\ncomplete = \"receive\"\nby = \"liu_yang\"\nfields = { cause = \"quality\" }\nexpect_history = [\"task_opened@receive\", \"decision_table@route\", \"task_opened@verify\"]\n\n[[step]]\nexpect_tasks = [{ step = \"verify\", assignee = \"zhang_wei\", due = \"2026-11-24T18:00\" }]\nexpect_status = \"running\"\n")),
        (status = 403, description = "Administrators only"),
        (status = 404, description = "No such instance"),
        (status = 422, description = "The case cannot be written as a scenario that replays: it was migrated, or its sensitive fields are sealed (no field key)")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn scenario(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&actor)?;
    let id = id_or_key(&state, id).await?;
    let s = state.clone();
    let text = blocking(move || {
        if s.engine.instance(id)?.is_none() {
            return Err(ApiError::unknown_instance(format!("no instance {id}")));
        }
        Ok(caseflow_engine::scenario::record(&s.engine, id)?)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// A case's audit trail
///
/// Every event in order: who, when, which step, what changed, how late, under which rules version.
#[utoipa::path(
    get,
    path = "/instances/{id}/history",
    params(("id" = u64, Path, description = "Instance id")),
    responses(
        (status = 200, description = "The audit trail in order", body = views::History),
        (status = 404, description = "No such instance")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn history(
    State(state): State<Shared>,
    Caller(actor, service): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<views::History>, ApiError> {
    let id = parse_instance_id(&id)?;
    let s = state.clone();
    let (inst, entries) = blocking(move || {
        let inst = s.engine.instance(id)?.ok_or_else(|| ApiError::unknown_instance(format!("no instance {id}")))?;
        Ok((inst.clone(), s.engine.history(id)?))
    })
    .await?;
    // The same masking as the instance view: service tokens do not see sensitive values.
    let masking = views::Masking::for_caller(&state, &inst, &actor, service);
    let history = entries.iter().map(|h| views::HistoryEntry::of(h, &masking)).collect();
    Ok(axum::Json(views::History { history }))
}

/// Runs a command on an instance for the caller and returns the instance.
pub(crate) async fn run(
    state: Shared,
    Caller(actor, service): Caller,
    id: InstanceId,
    command: Command,
) -> Result<axum::Json<views::Instance>, ApiError> {
    let now = state.clock.now();
    let a = actor.clone();
    let inst = durably(state.engine.clone(), move |e| e.command_pending(id, &a, command, now)).await?;
    Ok(axum::Json(views::Instance::of(&state, &inst, &actor, service)?))
}

/// `run` for commands only administrators may give.
pub(crate) async fn admin_run(
    state: Shared,
    caller: Caller,
    id: &str,
    command: Command,
) -> Result<axum::Json<views::Instance>, ApiError> {
    require_admin(&caller.0)?;
    run(state, caller, parse_instance_id(id)?, command).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "customer_replied"}))]
pub(crate) struct MessageRequest {
    name: String,
}

/// Send a message to a case
///
/// Delivers a named message to a step that listens for it (409 `no-listener` if none does, unless the process keeps it).
#[utoipa::path(
    post,
    path = "/instances/{id}/messages",
    params(("id" = String, Path, description = "Instance id or business key")),
    request_body = MessageRequest,
    responses(
        (status = 200, description = "Delivered", body = views::Instance),
        (status = 409, description = "Nothing in the case waits for this message")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn message(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<MessageRequest>,
) -> Result<axum::Json<views::Instance>, ApiError> {
    // Messages may name the case by id or by business key.
    let id = id_or_key(&state, id).await?;
    run(state, caller, id, Command::Message { name: req.name }).await
}

/// A case named by its id or by its business key.
async fn id_or_key(state: &Shared, id: String) -> Result<InstanceId, ApiError> {
    if let Ok(i) = parse_instance_id(&id) {
        return Ok(i);
    }
    let s = state.clone();
    blocking(move || {
        s.engine
            .instance_by_key(&id)?
            .map(|i| i.id)
            .ok_or_else(|| ApiError::unknown_instance(format!("no instance `{id}`")))
    })
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "客户撤回投诉"}))]
pub(crate) struct ReasonRequest {
    reason: String,
}

/// Cancel a case
///
/// Withdraws every open task, timer and sub-process case; needs the `cancel` permission. Recorded with the reason.
#[utoipa::path(
    post,
    path = "/instances/{id}/cancel",
    params(("id" = u64, Path, description = "Instance id")),
    request_body = ReasonRequest,
    responses(
        (status = 200, description = "Cancelled", body = views::Instance),
        (status = 403, description = "Managers and administrators only"),
        (status = 409, description = "Already ended")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn cancel(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<ReasonRequest>,
) -> Result<axum::Json<views::Instance>, ApiError> {
    run(state, caller, parse_instance_id(&id)?, Command::Cancel { reason: req.reason }).await
}

/// Suspend a case
///
/// Administrators and holders of the `suspend` permission (the shipped rules: managers and
/// the director); its timers stop until it is resumed.
#[utoipa::path(
    post,
    path = "/instances/{id}/suspend",
    params(("id" = u64, Path, description = "Instance id")),
    responses(
        (status = 200, description = "Suspended", body = views::Instance),
        (status = 403, description = "Not an administrator, nor granted `suspend`"),
        (status = 409, description = "Not running")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn suspend(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<views::Instance>, ApiError> {
    run(state, caller, parse_instance_id(&id)?, Command::Suspend).await
}

/// Resume a suspended case
///
/// Administrators and holders of the `suspend` permission; the case's timers run again.
#[utoipa::path(
    post,
    path = "/instances/{id}/resume",
    params(("id" = u64, Path, description = "Instance id")),
    responses(
        (status = 200, description = "Resumed", body = views::Instance),
        (status = 403, description = "Not an administrator, nor granted `suspend`"),
        (status = 409, description = "Not suspended")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn resume(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<views::Instance>, ApiError> {
    run(state, caller, parse_instance_id(&id)?, Command::Resume).await
}

/// Retry a case in incident
///
/// Administrators; the failed step runs again.
#[utoipa::path(
    post,
    path = "/instances/{id}/retry",
    params(("id" = u64, Path, description = "Instance id")),
    responses(
        (status = 200, description = "The failed step ran again", body = views::Instance),
        (status = 409, description = "No incident")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn retry(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<views::Instance>, ApiError> {
    admin_run(state, caller, &id, Command::Retry).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"fields": {"urgency": "high"}}))]
pub(crate) struct FieldsRequest {
    #[schema(value_type = Object)]
    fields: Map<String, Json>,
}

/// Change a case's fields
///
/// Sets fields of a running case (the `update_fields` permission); timers computed from a changed field move, recorded in the history.
#[utoipa::path(
    post,
    path = "/instances/{id}/fields",
    params(("id" = u64, Path, description = "Instance id")),
    request_body = FieldsRequest,
    responses(
        (status = 200, description = "Updated", body = views::Instance),
        (status = 422, description = "A field is invalid")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn update_fields(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<FieldsRequest>,
) -> Result<axum::Json<views::Instance>, ApiError> {
    // Who may: the `update_fields` permission of the rules (checked by the engine).
    let fields = fields_from(&req.fields)?;
    run(state, caller, parse_instance_id(&id)?, Command::UpdateFields { fields }).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    process: String,
    #[serde(default = "default_status")]
    status: String,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Cases started at or after this time (RFC 3339).
    #[param(format = DateTime)]
    started_after: Option<String>,
    /// Cases started before this time (RFC 3339).
    #[param(format = DateTime)]
    started_before: Option<String>,
}

/// The query parameters `GET /instances` takes besides `field.NAME`.
const LIST_PARAMS: [&str; 6] = ["process", "status", "limit", "cursor", "started_after", "started_before"];

/// The `field.NAME=VALUE` parameters of a query, in order; any other name but `LIST_PARAMS` is
/// refused (a misspelt filter must not widen a search silently).
fn field_filters(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let mut filters = Vec::new();
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("the query string is malformed: {e}")))?;
    for (name, value) in pairs {
        match name.strip_prefix("field.") {
            Some(field) if !field.is_empty() => filters.push((field.to_string(), value)),
            _ if LIST_PARAMS.contains(&name.as_str()) => {}
            _ => {
                let mut e = ApiError::bad_request(format!(
                    "unknown query parameter `{name}`: give {} or field.NAME=VALUE",
                    LIST_PARAMS.join(", ")
                ));
                e.field = Some(name);
                return Err(e);
            }
        }
    }
    Ok(filters)
}

fn time_param(name: &str, value: Option<&str>) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    value
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v).map(|t| t.with_timezone(&chrono::Utc)).map_err(|_| {
                let mut e = ApiError::bad_request(format!("{name} must be a time like 2026-11-23T00:00:00+08:00"));
                e.field = Some(name.into());
                e
            })
        })
        .transpose()
}

pub(crate) fn default_status() -> String {
    "running".into()
}

/// Cases of a process
///
/// Instances of a process in a status, oldest first, a page at a time (cursor pagination:
/// stable while instances are added). Search by case data with `field.NAME=VALUE` (any number:
/// `GET /instances?process=complaint&field.customer=第一中学&field.urgency=high`) and by start
/// time (`started_after`, `started_before`). Each NAME is a field the process declares `index
/// NAME` on; on a server over PostgreSQL, also any other field it declares that is neither
/// sensitive nor a list. A search page looks at 5,000 cases at most: it may come back short,
/// or empty, with a `next_cursor` to go on from.
#[utoipa::path(
    get,
    path = "/instances",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of instances and the next cursor", body = views::InstancePage),
        (status = 400, description = "A parameter is malformed, unknown, or names a field the process cannot be searched by")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_instances(
    State(state): State<Shared>,
    _caller: Caller,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
    Q(q): Q<ListQuery>,
) -> Result<axum::Json<views::InstancePage>, ApiError> {
    if StatusKind::parse(&q.status).is_none() {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "bad-request",
            detail: format!("status must be one of {}", StatusKind::ALL.map(StatusKind::as_str).join(", ")),
            field: Some("status".into()),
            errors: Vec::new(),
        });
    }
    let fields = field_filters(raw.as_deref())?;
    let limit = page_limit(q.limit)?;
    let cursor = match &q.cursor {
        None => None,
        Some(c) => Some(InstanceId(c.parse().map_err(|_| {
            let mut e = ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-cursor",
                format!("`{c}` is not a cursor this server gave out"),
            );
            e.field = Some("cursor".into());
            e
        })?)),
    };
    let search = caseflow_engine::service::CaseSearch {
        started_after: time_param("started_after", q.started_after.as_deref())?,
        started_before: time_param("started_before", q.started_before.as_deref())?,
        process: q.process,
        status: Some(q.status),
        fields,
    };
    if state.engine.definition(&search.process, None).is_some() {
        let indexed = state.engine.searchable_fields(&search.process);
        if let Some((field, _)) = search.fields.iter().find(|(f, _)| !indexed.contains(f)) {
            let mut e = ApiError::bad_request(format!(
                "process `{}` cannot be searched by `{field}` (it can be by: {}): a field that is sensitive or a list never can; another can once the process declares `index {field}`",
                search.process,
                if indexed.is_empty() { "none".to_string() } else { indexed.join(", ") }
            ));
            e.field = Some(format!("field.{field}"));
            return Err(e);
        }
    }
    let s = state.clone();
    let page = blocking(move || Ok(s.engine.search(&search, cursor, limit)?)).await?;
    // Cursors are opaque strings, on every list.
    let next_cursor = page.next.map(|i| i.0.to_string());
    Ok(axum::Json(views::InstancePage {
        instances: page.instances.iter().map(views::InstanceRow::from).collect(),
        next_cursor,
    }))
}
