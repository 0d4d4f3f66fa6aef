//! The HTTP API: thin handlers over `caseflow_engine::Engine`. Engine calls block (sled,
//! group commit), so they run on tokio's blocking pool; starts and commands await their group
//! commit without a thread (`durably`).
//!
//! Routing lives in `router`, which reads as the API's table of contents. Every error is an
//! RFC 9457 `application/problem+json` body (`ApiError`).

use crate::config::{sha256_hex, TokenConfig};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use caseflow_core::case::{self, Actor, Command, CommandError, Instance, InstanceId, StatusKind};
use caseflow_core::value::Value;
use caseflow_engine::clock::Clock;
use caseflow_engine::{Engine, EngineError, Storage};
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub struct AppState {
    pub engine: Arc<Engine>,
    pub clock: Arc<dyn Clock>,
    pub tokens: Vec<TokenConfig>,
    /// `GET /metrics` needs a token (any configured one) when set.
    pub metrics_need_token: bool,
    /// Where `POST /admin/rules/reload` reads the rules from.
    pub rules_dir: Option<std::path::PathBuf>,
    /// The rules files in force, for the diff of the next change.
    pub rules_files: std::sync::Mutex<Vec<caseflow_engine::RulesFile>>,
    /// The rules on disk that were last refused (at start or by a reload), until rules are
    /// accepted again: `/health`, `/metrics` and `GET /admin/rules` show it.
    pub rules_refused: std::sync::Mutex<Option<RefusedRules>>,
    /// Engine events, fanned out to `GET /events` subscribers.
    pub events: tokio::sync::broadcast::Sender<Arc<caseflow_engine::service::EngineEvent>>,
    /// Turns true when the server begins to shut down: `/events` streams end then, so that
    /// they do not hold the shutdown open.
    pub stopping: tokio::sync::watch::Sender<bool>,
}

/// Limits on what one request may send.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub body_bytes_max: usize,
    /// A body that sends nothing for this long is cut off (400), so a client trickling a body
    /// cannot hold a connection and a worker for ever.
    pub body_idle_timeout: std::time::Duration,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits { body_bytes_max: 1024 * 1024, body_idle_timeout: std::time::Duration::from_secs(10) }
    }
}

/// A broadcast channel fed by the engine's durable changes.
pub fn event_channel(engine: &Engine) -> tokio::sync::broadcast::Sender<Arc<caseflow_engine::service::EngineEvent>> {
    let (tx, _) = tokio::sync::broadcast::channel(4096);
    let sender = tx.clone();
    engine.observe(move |e| {
        // No subscriber is fine; a slow one skips ahead (see `events`).
        let _ = sender.send(Arc::new(e.clone()));
    });
    tx
}

pub type Shared = Arc<AppState>;

pub fn router(state: Shared, limits: RequestLimits) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/processes", get(list_processes).post(deploy))
        .route("/processes/:id", get(show_process))
        .route("/processes/:id/diagram", get(diagram))
        .route("/processes/:id/schema", get(process_schema))
        .route("/instances", post(start).get(list_instances))
        .route("/instances/:id", get(get_instance))
        .route("/instances/by-key/:key", get(get_instance_by_key))
        .route("/instances/:id/history", get(history))
        .route("/instances/:id/messages", post(message))
        .route("/instances/:id/cancel", post(cancel))
        .route("/instances/:id/suspend", post(suspend))
        .route("/instances/:id/resume", post(resume))
        .route("/instances/:id/retry", post(retry))
        .route("/instances/:id/fields", post(update_fields))
        .route("/tasks", get(inbox))
        .route("/tasks/:id/claim", post(claim))
        .route("/tasks/:id/release", post(release))
        .route("/tasks/:id/complete", post(complete))
        .route("/tasks/:id/reassign", post(reassign_task))
        .route("/tasks/:id/delegate", post(delegate_task))
        .route("/admin/rules", get(rules_in_force))
        .route("/admin/rules/reload", post(reload_rules))
        .route("/admin/rules/changes", get(rules_changes))
        .route("/admin/rules/files/:name", axum::routing::put(upload_rules_file))
        .route("/admin/users/:user/reassign", post(reassign_user))
        .route("/admin/rules/tables/:name/evaluate", post(evaluate_table))
        .route("/metrics", get(metrics))
        .route("/events", get(events))
        .route("/openapi.json", get(openapi_json))
        .route("/reports", get(report))
        // After every route: axum applies it to the routes that exist when it is called.
        // The `Allow` header axum computes is kept on the answer.
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this route does not accept that method; the Allow header lists the ones it does",
            )
        })
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such route") })
        // Errors raised below our handlers (axum's extractors: a path that is not UTF-8, a text
        // body too large or not UTF-8) come as text; they leave as problems like every other.
        .layer(axum::middleware::map_response(problem_for_bare_errors))
        .layer(axum::extract::DefaultBodyLimit::max(limits.body_bytes_max))
        .layer(axum::middleware::map_request(move |req: axum::extract::Request| async move {
            req.map(|body| axum::body::Body::new(tower_http::timeout::TimeoutBody::new(limits.body_idle_timeout, body)))
        }))
        // Every response carries an `x-request-id` (the caller's, or a new one) for support.
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(RequestIds::default()))
        .with_state(state)
}

/// Request ids: a per-process counter, prefixed with the start time so ids stay unique
/// across restarts.
#[derive(Clone, Default)]
struct RequestIds(Arc<std::sync::atomic::AtomicU64>);

impl tower_http::request_id::MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<tower_http::request_id::RequestId> {
        static EPOCH: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let epoch = EPOCH.get_or_init(|| std::process::id() as u64);
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        axum::http::HeaderValue::from_str(&format!("{epoch:x}-{n:x}")).ok().map(tower_http::request_id::RequestId::new)
    }
}

// ------------------------------------------------------------ errors

/// An RFC 9457 problem.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    detail: String,
    field: Option<String>,
    /// Every bad field with what is wrong with it, when there are several.
    errors: Vec<(String, String)>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError { status, kind, detail: detail.into(), field: None, errors: Vec::new() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("error");
        let mut body = json!({
            "type": format!("https://caseflow.dev/problems/{}", self.kind),
            "title": title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(f) = self.field {
            body["field"] = Json::String(f);
        }
        if !self.errors.is_empty() {
            body["errors"] = self.errors.iter().map(|(f, d)| json!({ "field": f, "detail": d })).collect();
        }
        (self.status, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string()).into_response()
    }
}

/// Turns an error answer that is not JSON into a problem, keeping its status, its headers
/// (`Allow` on a 405) and its text as the detail.
async fn problem_for_bare_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/") && v.contains("json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // Rejection texts are a line; a body longer than this is not one of them.
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let kind = match status {
        StatusCode::BAD_REQUEST => "bad-request",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::REQUEST_TIMEOUT => "request-timeout",
        s if s.is_client_error() => "client-error",
        _ => "server-error",
    };
    let detail = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { text };
    let problem = ApiError::new(status, kind, detail).into_response();
    let (problem_parts, problem_body) = problem.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, problem_parts.headers[header::CONTENT_TYPE].clone());
    Response::from_parts(parts, problem_body)
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::Command(c) => c.into(),
            EngineError::UnknownProcess(p) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown-process", format!("no process `{p}` is deployed"))
            }
            EngineError::UnknownInstance(i) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown-instance", format!("no instance {i}"))
            }
            EngineError::Rejected(d) => {
                let n = d.iter().filter(|d| d.is_error()).count();
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-definition",
                    format!("the definition has {n} error(s)"),
                )
            }
            EngineError::TooDeep => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "too-deep", e.to_string()),
            EngineError::BadCursor(_) => ApiError::new(StatusCode::BAD_REQUEST, "bad-cursor", e.to_string()),
            EngineError::StartInProgress(_) => ApiError::new(StatusCode::CONFLICT, "start-in-progress", e.to_string()),
            EngineError::IdempotencyKeyReused(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused", e.to_string())
            }
            // A failure while waiting for the write to be durable: it was taken in, and whether
            // it reached the disk is unknown. Said so, so that a retry is done knowingly.
            EngineError::Store(s @ caseflow_engine::store::StoreError::Wal(_)) => {
                tracing::error!(error = %s, "storage failure while making a write durable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage-outcome-unknown",
                    "storage failed while the request was being made durable: it may or may not have been applied; \
                     read the case, or retry with the same Idempotency-Key",
                )
            }
            EngineError::FieldKey(k) => {
                tracing::error!(error = %k, "field encryption failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "a sensitive field could not be sealed or opened; the request was not applied",
                )
            }
            EngineError::UnknownFormat { .. } => {
                // Only opening a store gives this; a request never does.
                tracing::error!(error = %e, "store format");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the store cannot be read")
            }
            EngineError::Store(s) => {
                // Never say anything internal in a 5xx body; the log has it.
                tracing::error!(error = %s, "storage failure");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage",
                    "storage is unavailable; the request was not applied",
                )
            }
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> ApiError {
        let detail = e.to_string();
        match e {
            CommandError::InvalidField { field, .. } => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                kind: "invalid-field",
                detail,
                field: Some(field),
                errors: Vec::new(),
            },
            // Several bad fields: `detail` names each; `field` is the first.
            CommandError::InvalidFields(problems) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                kind: "invalid-field",
                detail,
                field: problems.first().map(|(f, _)| f.clone()),
                errors: problems,
            },
            CommandError::Forbidden { .. } => ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail),
            CommandError::TaskNotOpen(_) => ApiError::new(StatusCode::CONFLICT, "task-not-open", detail),
            CommandError::UnknownTask(_) => ApiError::new(StatusCode::NOT_FOUND, "unknown-task", detail),
            CommandError::WrongStatus(_) => ApiError::new(StatusCode::CONFLICT, "wrong-status", detail),
            CommandError::NoListener(_) => ApiError::new(StatusCode::CONFLICT, "no-listener", detail),
            CommandError::TimerNotPending(_)
            | CommandError::TimerNotDue { .. }
            | CommandError::NotWaitingForChild(_) => ApiError::new(StatusCode::CONFLICT, "conflict", detail),
            CommandError::Runaway => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "runaway", detail),
            CommandError::Invariant(_) => {
                tracing::error!(error = %detail, "command refused: it would break an invariant");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the engine refused a command that would have corrupted the case; the request was not applied",
                )
            }
        }
    }
}

/// Query strings whose rejections are problems too (a bad date, an unknown parameter).
pub struct Q<T>(T);

#[axum::async_trait]
impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Q(v))
            .map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", r.body_text()))
    }
}

/// JSON bodies whose rejections are problems too (malformed JSON, wrong types, too large).
pub struct Body<T>(T);

#[axum::async_trait]
impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(rejection) => {
                let status = match &rejection {
                    JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                        StatusCode::PAYLOAD_TOO_LARGE
                    }
                    // The body stopped arriving (`body_idle_timeout_secs`) or broke off.
                    JsonRejection::BytesRejection(_) => {
                        return Err(ApiError::new(
                            StatusCode::REQUEST_TIMEOUT,
                            "request-timeout",
                            "the request body stopped arriving before it was complete; nothing was done",
                        ))
                    }
                    JsonRejection::JsonSyntaxError(_) => StatusCode::BAD_REQUEST,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                Err(ApiError::new(status, "bad-request", rejection.body_text()))
            }
        }
    }
}

// ------------------------------------------------------------ auth

/// Who the bearer token says the caller is.
fn caller(state: &AppState, headers: &HeaderMap) -> Result<(Actor, bool), ApiError> {
    let unauthorized = || ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "send `Authorization: Bearer TOKEN`");
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(unauthorized)?;
    let token = value.strip_prefix("Bearer ").ok_or_else(unauthorized)?;
    let hash = sha256_hex(token.trim());
    // Every configured digest is compared, each in constant time: how long the answer takes
    // says nothing about how close a guess came.
    let entry = state
        .tokens
        .iter()
        .fold(None, |found, t| {
            let equal = subtle::ConstantTimeEq::ct_eq(t.sha256.to_ascii_lowercase().as_bytes(), hash.as_bytes());
            if bool::from(equal) && found.is_none() {
                Some(t)
            } else {
                found
            }
        })
        .ok_or_else(unauthorized)?;
    Ok((Actor { id: entry.user.clone(), roles: entry.roles.clone(), admin: entry.admin }, entry.service))
}

/// The caller named by the request's bearer token, and whether it is a service token: an
/// extractor, placed first so that a request without a valid token is answered 401 before its
/// input is looked at.
pub struct Caller(pub Actor, pub bool);

#[axum::async_trait]
impl axum::extract::FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &Shared) -> Result<Self, ApiError> {
        let (actor, service) = caller(state, &parts.headers)?;
        Ok(Caller(actor, service))
    }
}

/// Administrators, or holders of a role the rules' `[permissions]` grant `action` to.
fn require_permission(state: &AppState, actor: &Actor, action: &str, doing: &str) -> Result<(), ApiError> {
    let granted =
        state.engine.rules().permissions.get(action).is_some_and(|roles| roles.iter().any(|r| actor.roles.contains(r)));
    if actor.admin || granted {
        return Ok(());
    }
    Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("{doing} needs the `{action}` permission")))
}

fn require_admin(actor: &Actor) -> Result<(), ApiError> {
    if actor.admin {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("{} is not an administrator", actor.id)))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the request failed"))?
}

/// Runs a start or command here, on the runtime's thread, then waits for its group commit
/// without holding a thread (the log's writer wakes this task), and acknowledges it. The write
/// does no I/O of its own (the log is appended in memory; truncation is the applier thread's),
/// so the hop to the blocking pool it used to take (~13% of the server's CPU in futex wakes)
/// bought nothing; only memtable backpressure can block here, and it is meant to.
async fn durably(
    engine: Arc<Engine>,
    write: impl FnOnce(&Engine) -> Result<caseflow_engine::Pending, EngineError> + Send + 'static,
) -> Result<Instance, ApiError> {
    let internal = || ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the request failed");
    let pending = write(&engine)?;
    // A task of its own, so that the events are published even if the client goes away.
    tokio::spawn(async move {
        let (tx, rx) = tokio::sync::oneshot::channel();
        engine.when_durable(&pending, move |r| {
            let _ = tx.send(r);
        });
        rx.await.map_err(|_| internal())??;
        // Durable already: this only publishes the events (a sub-process start also reads the
        // case again, one sled read), so it runs here rather than on the blocking pool.
        Ok(engine.confirm(pending)?)
    })
    .await
    .map_err(|_| internal())?
}

// ------------------------------------------------------------ JSON ↔ values

fn to_json(v: &Value) -> Json {
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

fn from_json(field: &str, v: &Json) -> Result<Value, ApiError> {
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

fn fields_from(map: &Map<String, Json>) -> Result<BTreeMap<String, Value>, ApiError> {
    map.iter().map(|(k, v)| Ok((k.clone(), from_json(k, v)?))).collect()
}

/// Sensitive fields are masked for callers who are neither administrators nor staff.
fn instance_json(state: &AppState, inst: &Instance, actor: &Actor, service: bool) -> Result<Json, ApiError> {
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
fn timer_kind_json(kind: &case::TimerKind) -> Json {
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

fn task_json(inst: &Instance, t: &case::Task) -> Json {
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

fn parse_instance_id(s: &str) -> Result<InstanceId, ApiError> {
    s.parse::<u64>()
        .map(InstanceId)
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "unknown-instance", format!("`{s}` is not an instance id")))
}

/// A text body (a `.flow` source, a rules file), sent as text or, for clients generated from
/// the OpenAPI document, as JSON with the text under `field`.
fn text_body(headers: &HeaderMap, body: String, field: &str) -> Result<String, ApiError> {
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
        Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, "bad-request", format!("the body is not JSON: {e}"))),
    }
}

/// A list's page size: 1 to 500, 50 when not given. Out of range is refused, not clamped: a
/// client asking for 1,000 must learn it gets at most 500.
fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit.unwrap_or(50) {
        n @ 1..=500 => Ok(n),
        n => {
            let mut e =
                ApiError::new(StatusCode::BAD_REQUEST, "bad-request", format!("limit must be 1 to 500, not {n}"));
            e.field = Some("limit".into());
            Err(e)
        }
    }
}

fn parse_task_id(s: &str) -> Result<(InstanceId, u32), ApiError> {
    let not_found =
        || ApiError::new(StatusCode::NOT_FOUND, "unknown-task", format!("`{s}` is not a task id (INSTANCE-SEQ)"));
    let (i, t) = s.split_once('-').ok_or_else(not_found)?;
    Ok((InstanceId(i.parse().map_err(|_| not_found())?), t.parse().map_err(|_| not_found())?))
}

// ------------------------------------------------------------ handlers

/// Liveness and readiness
///
/// 200 while storage takes writes; 503 `degraded` while it is failing (a full disk, a failing device). Also the calendar's coverage and whether the rules folder stands refused.
#[utoipa::path(get, path = "/health", responses((status = 200, description = "Live and ready", body = crate::schemas::Health), (status = 503, description = "Storage is failing: writes are refused until it recovers", body = crate::schemas::Health)), security(()))]
async fn health(State(state): State<Shared>) -> (StatusCode, axum::Json<Json>) {
    // The calendar's holidays run out: deadlines past them treat holidays as working days.
    let calendar = state.engine.rules().calendar.coverage(state.clock.now()).map(
        |(last, days, status)| json!({ "covered_through": last.to_string(), "days_left": days, "status": status }),
    );
    // Not ready while storage is failing: writes are refused until it recovers. What failed
    // is tried again here, so a freed disk shows as recovered without waiting for a write.
    let s = state.clone();
    let storage = tokio::task::spawn_blocking(move || s.engine.store().check_health())
        .await
        .unwrap_or_else(|e| Some(format!("the health check failed: {e}")));
    let status = if storage.is_some() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    // Refused rules do not make the server unready: the last accepted rules serve. The
    // problems themselves are for administrators (`GET /admin/rules`), not for anyone.
    let refused = state.rules_refused.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let rules = match refused {
        None => json!({ "status": "ok", "version": state.engine.rules_version() }),
        Some(r) => json!({
            "status": "refused",
            "version": state.engine.rules_version(),
            "refused_at": r.at.to_rfc3339(),
            "problems": r.problems(),
            "detail": "the rules folder holds files that were refused; the last accepted rules are in force (GET /admin/rules lists the problems)",
        }),
    };
    let body = json!({
        "status": if storage.is_some() { "degraded" } else { "ok" },
        "storage": storage.map_or_else(|| json!({ "status": "ok" }), |e| json!({ "status": "failing", "error": e })),
        "rules": rules,
        "processes": state.engine.definitions().len(),
        "commands": state.engine.commands_applied(),
        "calendar": calendar,
    });
    (status, axum::Json(body))
}

/// A warning line when the calendar's known holidays end within 60 days or have ended.
pub fn calendar_warning(rules: &caseflow_engine::RuleSet, now: chrono::DateTime<chrono::Utc>) -> Option<String> {
    let (last, days, status) = rules.calendar.coverage(now)?;
    let when = if days < 0 { format!("{} days ago", -days) } else { format!("in {days} days") };
    (status != "ok").then(|| {
        format!(
            "the calendar knows holidays through {last} only ({when}): deadlines after it count holidays as working days; \
             add next year's official schedule to the calendar rules (docs/rules.md, \"Next year's calendar\")"
        )
    })
}

/// Deployed processes
///
/// Every process with its label and versions, latest last.
#[utoipa::path(get, path = "/processes", responses((status = 200, description = "Deployed processes and their versions", body = crate::schemas::ProcessList), (status = 401, description = "No or unknown token")), security(("bearer" = [])))]
async fn list_processes(State(state): State<Shared>, _caller: Caller) -> Result<axum::Json<Json>, ApiError> {
    let list: Vec<Json> = state
        .engine
        .definitions()
        .into_iter()
        .map(|(id, versions)| {
            let d = state.engine.definition(&id, None);
            json!({ "id": id, "label": d.as_ref().and_then(|d| d.model.label.clone()), "versions": versions })
        })
        .collect();
    Ok(axum::Json(json!({ "processes": list })))
}

/// A process
///
/// Its latest (or given) version: fields, steps, deadlines and the source.
#[utoipa::path(get, path = "/processes/{id}", params(("id" = String, Path, description = "Process id")), responses((status = 200, description = "The latest version, its steps, outcomes and source", body = crate::schemas::ProcessDetail), (status = 404, description = "No such process")), security(("bearer" = [])))]
async fn show_process(
    State(state): State<Shared>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Json>, ApiError> {
    let d = state
        .engine
        .definition(&id, None)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown-process", format!("no process `{id}`")))?;
    let versions = state.engine.definitions().into_iter().find(|(n, _)| *n == id).map(|(_, v)| v).unwrap_or_default();
    Ok(axum::Json(json!({
        "id": id,
        "label": d.model.label,
        "doc": d.model.doc,
        "source_sections": d.model.source,
        "latest_version": d.version,
        "versions": versions,
        "steps": d.model.steps.iter().map(|s| json!({ "name": s.name, "label": s.label })).collect::<Vec<_>>(),
        "outcomes": d.model.outcomes().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "source": d.source,
    })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SchemaQuery {
    /// A deployed version; the latest by default.
    version: Option<u32>,
}

/// A process's data, as JSON Schema
///
/// The JSON Schema (2020-12) of the fields a start takes and of each task's form: types,
/// choices as enums, ranges, the required ones, labels as titles, defaults. A body that
/// validates against it is what the engine accepts (users are checked against the rules'
/// people, whom the schema lists). Consoles build their forms from it.
#[utoipa::path(get, path = "/processes/{id}/schema", params(("id" = String, Path, description = "Process id"), SchemaQuery), responses((status = 200, description = "`start`: the start fields' schema; `tasks`: each task step's form; `outcomes`: the ends a case can reach", body = Object, example = json!({"process": "complaint", "version": 1, "start": {"type": "object", "properties": {"urgency": {"type": "string", "enum": ["high", "medium", "low"], "default": "medium", "title": "紧急程度"}}, "required": ["customer", "contact", "content"], "additionalProperties": false}, "tasks": {"receive": {"type": "object", "properties": {"cause": {"type": "string", "enum": ["quality", "expectation", "communication"]}}, "required": ["cause"]}}, "outcomes": ["closed"]})), (status = 404, description = "No such process or version")), security(("bearer" = [])))]
async fn process_schema(
    State(state): State<Shared>,
    _caller: Caller,
    Path(id): Path<String>,
    Q(q): Q<SchemaQuery>,
) -> Result<axum::Json<Json>, ApiError> {
    let d = state.engine.definition(&id, q.version).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "unknown-process", format!("no process `{id}` in that version"))
    })?;
    let rules = state.engine.rules();
    let model = &d.model;
    let object = |title: Option<&str>, fields: Vec<(&caseflow_dsl::model::Field, bool)>| {
        let properties: Map<String, Json> =
            fields.iter().map(|(f, _)| (f.name.clone(), field_schema(f, &rules))).collect();
        let required: Vec<&str> = fields.iter().filter(|(_, r)| *r).map(|(f, _)| f.name.as_str()).collect();
        json!({ "type": "object", "title": title, "properties": properties, "required": required, "additionalProperties": false })
    };
    // A start must give the required fields without a default; an `own` field is the caller.
    let start: Vec<_> = model.fields.iter().map(|f| (f, f.required && f.default.is_none() && !f.own)).collect();
    let mut start_schema = object(model.label.as_deref(), start);
    start_schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    let mut tasks = Map::new();
    for step in &model.steps {
        let caseflow_dsl::model::StepKind::Task(task) = &step.kind else { continue };
        let form: Vec<_> = task.form.iter().filter_map(|ff| model.field(&ff.field).map(|f| (f, ff.required))).collect();
        let mut schema = object(step.label.as_deref(), form);
        schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        tasks.insert(step.name.clone(), schema);
    }
    let outcomes: Vec<&str> = model.outcomes().map(|s| s.name.as_str()).collect();
    Ok(axum::Json(
        json!({ "process": id, "version": d.version, "start": start_schema, "tasks": tasks, "outcomes": outcomes }),
    ))
}

/// One field's JSON Schema, as the engine checks its values.
fn field_schema(f: &caseflow_dsl::model::Field, rules: &caseflow_engine::RuleSet) -> Json {
    use caseflow_dsl::model::FieldType;
    let mut schema = match &f.ty {
        FieldType::Text => json!({ "type": "string" }),
        FieldType::Int { min, max } => {
            let mut s = json!({ "type": "integer" });
            if let Some(m) = min {
                s["minimum"] = json!(m);
            }
            if let Some(m) = max {
                s["maximum"] = json!(m);
            }
            s
        }
        FieldType::Decimal => json!({ "type": "number" }),
        FieldType::Bool => json!({ "type": "boolean" }),
        FieldType::Date => json!({ "type": "string", "format": "date" }),
        FieldType::DateTime => json!({ "type": "string", "format": "date-time" }),
        FieldType::Choice(values) => json!({ "type": "string", "enum": values }),
        FieldType::ListOfText => json!({ "type": "array", "items": { "type": "string" } }),
        FieldType::User => json!({ "type": "string", "enum": rules.users.keys().collect::<Vec<_>>() }),
    };
    if let Some(label) = &f.label {
        schema["title"] = json!(label);
    }
    let default = f.default.as_ref().and_then(|e| match (&e.kind, &f.ty) {
        // A choice's default is written as a bare value.
        (caseflow_dsl::ast::ExprKind::Name(n), FieldType::Choice(values)) if values.contains(n) => Some(json!(n)),
        _ => literal_json(e),
    });
    if let Some(default) = default {
        schema["default"] = default;
    }
    if f.sensitive {
        schema["description"] = json!("sensitive: encrypted at rest, masked for service tokens");
    }
    schema
}

/// A literal default as JSON (computed defaults have none to show).
fn literal_json(e: &caseflow_dsl::ast::Expr) -> Option<Json> {
    use caseflow_dsl::ast::ExprKind;
    match &e.kind {
        ExprKind::Int(i) => Some(json!(i)),
        ExprKind::Decimal(d) => d.parse::<f64>().ok().map(|d| json!(d)),
        ExprKind::Text(t) => Some(json!(t)),
        ExprKind::Bool(b) => Some(json!(b)),
        ExprKind::Date(d) if !d.contains('T') => Some(json!(d)),
        _ => None,
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DiagramQuery {
    /// `svg` (default), `dot` or `mermaid`.
    format: Option<String>,
    /// A deployed version; the latest by default.
    version: Option<u32>,
}

/// A process diagram
///
/// SVG (default), DOT or Mermaid.
#[utoipa::path(get, path = "/processes/{id}/diagram", params(("id" = String, Path, description = "Process id"), DiagramQuery), responses((status = 200, description = "The process graph as SVG (image/svg+xml, drawn in Rust), DOT (text/vnd.graphviz) or Mermaid (text/plain)", content((String = "image/svg+xml", example = json!("<svg xmlns=\"http://www.w3.org/2000/svg\">...</svg>")), (String = "text/vnd.graphviz", example = json!("digraph { ... }")), (String = "text/plain", example = json!("flowchart TD\n  start__((\"start\"))"))))), security(("bearer" = [])))]
async fn diagram(
    State(state): State<Shared>,
    _caller: Caller,
    Path(id): Path<String>,
    Q(q): Q<DiagramQuery>,
) -> Result<Response, ApiError> {
    let d = state.engine.definition(&id, q.version).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "unknown-process", format!("no process `{id}` in that version"))
    })?;
    let (content_type, body) = match q.format.as_deref().unwrap_or("svg") {
        "svg" => {
            let svg = caseflow_dsl::graph::to_svg(&d.model).map_err(|e| {
                tracing::error!(process = %id, error = %e, "drawing the diagram failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the diagram could not be drawn")
            })?;
            ("image/svg+xml", svg)
        }
        "dot" => ("text/vnd.graphviz", caseflow_dsl::graph::to_dot(&d.model)),
        "mermaid" => ("text/plain; charset=utf-8", caseflow_dsl::graph::to_mermaid(&d.model)),
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                format!("format `{other}`: use svg, dot or mermaid"),
            ))
        }
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// Deploy a process
///
/// Checks a `.flow` source (the body, as text) with the rules and the other deployed processes, and deploys it as a new version if it changed. Running cases stay on their version.
#[utoipa::path(post, path = "/processes", request_body(description = "A .flow source: as text, or as JSON `{\"source\": \"...\"}`", content((String = "text/plain"), (crate::schemas::DeployRequest = "application/json"))), responses((status = 201, description = "Deployed as a new version", body = crate::schemas::Deployed), (status = 200, description = "Unchanged: same as the latest version", body = crate::schemas::Deployed), (status = 403, description = "Administrators only"), (status = 422, description = "Refused, with the diagnostics of caseflow check")), security(("bearer" = [])))]
async fn deploy(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    require_admin(&actor)?;
    let body = text_body(&headers, body, "source")?;
    let now = state.clock.now();
    let engine = state.engine.clone();
    let text = body.clone();
    let result = tokio::task::spawn_blocking(move || engine.deploy(&text, now))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the request failed"))?;
    match result {
        Ok(outcome) => {
            let status = if outcome.changed { StatusCode::CREATED } else { StatusCode::OK };
            Ok((status, axum::Json(serde_json::to_value(&outcome).unwrap_or(Json::Null))).into_response())
        }
        Err(EngineError::Rejected(diagnostics)) => {
            let list: Vec<_> = diagnostics.iter().map(|d| d.to_json("deploy.flow", &body)).collect();
            let problem = json!({
                "type": "https://caseflow.dev/problems/invalid-definition",
                "title": "Unprocessable Entity",
                "status": 422,
                "detail": format!("the definition has {} error(s)", diagnostics.iter().filter(|d| d.is_error()).count()),
                "diagnostics": list,
            });
            Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                [(header::CONTENT_TYPE, "application/problem+json")],
                problem.to_string(),
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"process": "complaint", "fields": {"customer": "第一中学", "contact": "138-0000-0000", "content": "投影仪无法开机", "urgency": "high"}}))]
struct StartRequest {
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
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
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
#[utoipa::path(post, path = "/instances", params(("Idempotency-Key" = Option<String>, Header, nullable = false, description = "1 to 200 visible ASCII characters, scoped to the caller. A retry with the same key and body answers the case the first request started; the same key with another body answers 422")), request_body = StartRequest, responses((status = 201, description = "Started", body = crate::schemas::Instance), (status = 400, description = "A malformed Idempotency-Key"), (status = 404, description = "No such process"), (status = 409, description = "A start with this key is still in progress"), (status = 422, description = "A field is invalid (`field` names it), or the key was used for another request")), security(("bearer" = [])))]
async fn start(
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
        axum::Json(instance_json(&state, &inst, &actor, service)?),
    )
        .into_response())
}

/// A case
///
/// Fields (sensitive ones masked for service tokens), current steps, open tasks with their SLA clocks, timers, the parent case and every sub-process case.
#[utoipa::path(get, path = "/instances/{id}", params(("id" = u64, Path, description = "Instance id")), responses((status = 200, description = "Fields, current steps, open tasks with SLA clocks, timers", body = crate::schemas::Instance), (status = 404, description = "No such instance")), security(("bearer" = [])))]
async fn get_instance(
    State(state): State<Shared>,
    Caller(actor, service): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Json>, ApiError> {
    let id = parse_instance_id(&id)?;
    let s = state.clone();
    let inst = blocking(move || {
        s.engine
            .instance(id)?
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown-instance", format!("no instance {id}")))
    })
    .await?;
    Ok(axum::Json(instance_json(&state, &inst, &actor, service)?))
}

/// A case by its business key
///
/// The case with that business key (e.g. `20261123-007`), as `GET /instances/{id}` shows it.
#[utoipa::path(get, path = "/instances/by-key/{key}", params(("key" = String, Path, description = "Business key, e.g. 20261123-007")), responses((status = 200, description = "The instance", body = crate::schemas::Instance), (status = 404, description = "No such instance")), security(("bearer" = [])))]
async fn get_instance_by_key(
    State(state): State<Shared>,
    Caller(actor, service): Caller,
    Path(key): Path<String>,
) -> Result<axum::Json<Json>, ApiError> {
    let s = state.clone();
    let inst = blocking(move || {
        s.engine.instance_by_key(&key)?.ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "unknown-instance", format!("no instance with business key `{key}`"))
        })
    })
    .await?;
    Ok(axum::Json(instance_json(&state, &inst, &actor, service)?))
}

/// A case's audit trail
///
/// Every event in order: who, when, which step, what changed, how late, under which rules version.
#[utoipa::path(get, path = "/instances/{id}/history", params(("id" = u64, Path, description = "Instance id")), responses((status = 200, description = "The audit trail in order", body = crate::schemas::History), (status = 404, description = "No such instance")), security(("bearer" = [])))]
async fn history(
    State(state): State<Shared>,
    Caller(actor, service): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Json>, ApiError> {
    let id = parse_instance_id(&id)?;
    let s = state.clone();
    let (inst, entries) = blocking(move || {
        let inst = s
            .engine
            .instance(id)?
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown-instance", format!("no instance {id}")))?;
        Ok((inst.clone(), s.engine.history(id)?))
    })
    .await?;
    // The same masking as the instance view: service tokens do not see sensitive values.
    let def = state.engine.definition(&inst.process, Some(inst.version));
    // Service tokens (integrated systems) see sensitive values masked, whatever roles they act in.
    let may_see = actor.admin || !service;
    let shown = |field: &str, v: &Value| {
        let sensitive = def.as_ref().and_then(|d| d.model.field(field)).is_some_and(|f| f.sensitive);
        if sensitive && !may_see {
            Json::String("***".into())
        } else {
            to_json(v)
        }
    };
    let list: Vec<Json> = entries
        .iter()
        .map(|h| {
            json!({
                "seq": h.seq, "at": h.at.to_rfc3339(), "actor": h.actor, "event": h.event, "step": h.step, "detail": h.detail,
                "changes": h.changes.iter().map(|(f, old, new)| json!({ "field": f, "old": old.as_ref().map(|o| shown(f, o)), "new": shown(f, new) })).collect::<Vec<_>>(),
                "lateness_ms": h.lateness_ms,
                "rules_version": h.rules_version,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "history": list })))
}

/// Runs a command on an instance for the caller and returns the instance.
async fn run(
    state: Shared,
    Caller(actor, service): Caller,
    id: InstanceId,
    command: Command,
) -> Result<axum::Json<Json>, ApiError> {
    let now = state.clock.now();
    let a = actor.clone();
    let inst = durably(state.engine.clone(), move |e| e.command_pending(id, &a, command, now)).await?;
    Ok(axum::Json(instance_json(&state, &inst, &actor, service)?))
}

/// `run` for commands only administrators may give.
async fn admin_run(state: Shared, caller: Caller, id: &str, command: Command) -> Result<axum::Json<Json>, ApiError> {
    require_admin(&caller.0)?;
    run(state, caller, parse_instance_id(id)?, command).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "customer_replied"}))]
struct MessageRequest {
    name: String,
}

/// Send a message to a case
///
/// Delivers a named message to a step that listens for it (409 `no-listener` if none does, unless the process keeps it).
#[utoipa::path(post, path = "/instances/{id}/messages", params(("id" = String, Path, description = "Instance id or business key")), request_body = MessageRequest, responses((status = 200, description = "Delivered", body = crate::schemas::Instance), (status = 409, description = "Nothing in the case waits for this message")), security(("bearer" = [])))]
async fn message(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<MessageRequest>,
) -> Result<axum::Json<Json>, ApiError> {
    // Messages may name the case by id or by business key.
    let id = match parse_instance_id(&id) {
        Ok(i) => i,
        Err(_) => {
            let s = state.clone();
            let key = id.clone();
            blocking(move || {
                s.engine.instance_by_key(&key)?.map(|i| i.id).ok_or_else(|| {
                    ApiError::new(StatusCode::NOT_FOUND, "unknown-instance", format!("no instance `{key}`"))
                })
            })
            .await?
        }
    };
    run(state, caller, id, Command::Message { name: req.name }).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "客户撤回投诉"}))]
struct ReasonRequest {
    reason: String,
}

/// Cancel a case
///
/// Withdraws every open task, timer and sub-process case; needs the `cancel` permission. Recorded with the reason.
#[utoipa::path(post, path = "/instances/{id}/cancel", params(("id" = u64, Path, description = "Instance id")), request_body = ReasonRequest, responses((status = 200, description = "Cancelled", body = crate::schemas::Instance), (status = 403, description = "Managers and administrators only"), (status = 409, description = "Already ended")), security(("bearer" = [])))]
async fn cancel(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<ReasonRequest>,
) -> Result<axum::Json<Json>, ApiError> {
    run(state, caller, parse_instance_id(&id)?, Command::Cancel { reason: req.reason }).await
}

/// Suspend a case
///
/// Administrators; its timers stop until it is resumed.
#[utoipa::path(post, path = "/instances/{id}/suspend", params(("id" = u64, Path, description = "Instance id")), responses((status = 200, description = "Suspended", body = crate::schemas::Instance), (status = 403, description = "Administrators only"), (status = 409, description = "Not running")), security(("bearer" = [])))]
async fn suspend(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Json>, ApiError> {
    admin_run(state, caller, &id, Command::Suspend).await
}

/// Resume a suspended case
///
/// Administrators; the case's timers run again.
#[utoipa::path(post, path = "/instances/{id}/resume", params(("id" = u64, Path, description = "Instance id")), responses((status = 200, description = "Resumed", body = crate::schemas::Instance), (status = 403, description = "Administrators only"), (status = 409, description = "Not suspended")), security(("bearer" = [])))]
async fn resume(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Json>, ApiError> {
    admin_run(state, caller, &id, Command::Resume).await
}

/// Retry a case in incident
///
/// Administrators; the failed step runs again.
#[utoipa::path(post, path = "/instances/{id}/retry", params(("id" = u64, Path, description = "Instance id")), responses((status = 200, description = "The failed step ran again", body = crate::schemas::Instance), (status = 409, description = "No incident")), security(("bearer" = [])))]
async fn retry(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Json>, ApiError> {
    admin_run(state, caller, &id, Command::Retry).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"fields": {"urgency": "high"}}))]
struct FieldsRequest {
    #[schema(value_type = Object)]
    fields: Map<String, Json>,
}

/// Change a case's fields
///
/// Sets fields of a running case (the `update_fields` permission); timers computed from a changed field move, recorded in the history.
#[utoipa::path(post, path = "/instances/{id}/fields", params(("id" = u64, Path, description = "Instance id")), request_body = FieldsRequest, responses((status = 200, description = "Updated", body = crate::schemas::Instance), (status = 422, description = "A field is invalid")), security(("bearer" = [])))]
async fn update_fields(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<FieldsRequest>,
) -> Result<axum::Json<Json>, ApiError> {
    // Who may: the `update_fields` permission of the rules (checked by the engine).
    let fields = fields_from(&req.fields)?;
    run(state, caller, parse_instance_id(&id)?, Command::UpdateFields { fields }).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct InboxQuery {
    user: Option<String>,
    role: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only tasks of this step (its name), to work a pile of the same task in a row.
    step: Option<String>,
}

/// Tasks
///
/// Open tasks of a user or role, soonest deadline first, a page at a time.
#[utoipa::path(get, path = "/tasks", params(InboxQuery), responses((status = 200, description = "A page of open tasks, soonest due first (no deadline last), and `next_cursor`", body = crate::schemas::TaskPage), (status = 403, description = "Not your inbox or role")), security(("bearer" = [])))]
async fn inbox(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
    Q(q): Q<InboxQuery>,
) -> Result<axum::Json<Json>, ApiError> {
    // Staff see their own inbox and their roles'; administrators anyone's.
    let (user, role) = match (q.user, q.role) {
        (None, None) => (Some(actor.id.clone()), None),
        (Some(u), r) => (Some(u), r),
        (None, Some(r)) => (None, Some(r)),
    };
    let foreign =
        user.as_ref().is_some_and(|u| *u != actor.id) || role.as_ref().is_some_and(|r| !actor.roles.contains(r));
    if foreign && !actor.admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "you may read your own inbox and your roles' only",
        ));
    }
    let limit = page_limit(q.limit)?;
    let s = state.clone();
    let cursor = q.cursor;
    let step = q.step;
    let page = blocking(move || {
        let Some(step) = step else {
            return Ok(s.engine.tasks_page(user.as_deref(), role.as_deref(), cursor.as_deref(), limit)?);
        };
        // Piled execution: pages of the inbox, kept to one step, until this page is full.
        let mut found = Vec::new();
        let mut cursor = cursor;
        loop {
            // No more than the page still lacks, so that the cursor resumes right after it.
            let want = limit - found.len();
            let page = s.engine.tasks_page(user.as_deref(), role.as_deref(), cursor.as_deref(), want)?;
            found.extend(page.tasks.into_iter().filter(|t| t.task.step_name == step));
            if found.len() >= limit || page.next_cursor.is_none() {
                return Ok(caseflow_engine::service::TaskPage { tasks: found, next_cursor: page.next_cursor });
            }
            cursor = page.next_cursor;
        }
    })
    .await?;
    let list: Vec<Json> = page
        .tasks
        .iter()
        .map(|t| {
            json!({
                "id": format!("{}-{}", t.instance, t.task.seq), "instance": t.instance.0, "business_key": t.business_key, "process": t.process,
                "name": t.task.name, "step": t.task.step_name, "item": t.task.item, "assignee": t.task.assignee, "due_at": t.task.due_at.map(|d| d.to_rfc3339()), "overdue": t.task.overdue,
                "priority": t.task.priority,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "tasks": list, "next_cursor": page.next_cursor })))
}

/// Claim a task
///
/// Takes a task offered to one's role; one claimed by someone else needs the `reassign` permission (recorded).
#[utoipa::path(post, path = "/tasks/{id}/claim", params(("id" = String, Path, description = "Task id INSTANCE-SEQ")), responses((status = 200, description = "Claimed", body = crate::schemas::Instance), (status = 403, description = "Not your task or role"), (status = 409, description = "Not open")), security(("bearer" = [])))]
async fn claim(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Json>, ApiError> {
    let (instance, task) = parse_task_id(&id)?;
    run(state, caller, instance, Command::Claim { task }).await
}

/// Release a task
///
/// Gives a claimed task back to its role.
#[utoipa::path(post, path = "/tasks/{id}/release", params(("id" = String, Path, description = "Task id INSTANCE-SEQ")), responses((status = 200, description = "Released", body = crate::schemas::Instance), (status = 403, description = "Not yours"), (status = 409, description = "Not open")), security(("bearer" = [])))]
async fn release(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Json>, ApiError> {
    let (instance, task) = parse_task_id(&id)?;
    run(state, caller, instance, Command::Release { task }).await
}

/// Reassign a task
///
/// Gives one open task to another user: the `reassign` permission (managers). Recorded in
/// the case's history.
#[utoipa::path(post, path = "/tasks/{id}/reassign", params(("id" = String, Path, description = "Task id INSTANCE-SEQ")), request_body = ReassignRequest, responses((status = 200, description = "Reassigned", body = crate::schemas::Instance), (status = 403, description = "No `reassign` permission"), (status = 409, description = "Not open"), (status = 422, description = "No such user")), security(("bearer" = [])))]
async fn reassign_task(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<ReassignRequest>,
) -> Result<axum::Json<Json>, ApiError> {
    let (instance, task) = parse_task_id(&id)?;
    run(state, caller, instance, Command::Reassign { task, to: req.to, reason: req.reason }).await
}

/// Delegate a task
///
/// The assignee passes their task to a colleague who holds one of its roles: the `delegate`
/// permission. Recorded in the history; the task shows `delegated_by`.
#[utoipa::path(post, path = "/tasks/{id}/delegate", params(("id" = String, Path, description = "Task id INSTANCE-SEQ")), request_body = ReassignRequest, responses((status = 200, description = "Delegated", body = crate::schemas::Instance), (status = 403, description = "Not your task, or no `delegate` permission"), (status = 409, description = "Not open"), (status = 422, description = "The colleague may not work on it")), security(("bearer" = [])))]
async fn delegate_task(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<ReassignRequest>,
) -> Result<axum::Json<Json>, ApiError> {
    let (instance, task) = parse_task_id(&id)?;
    run(state, caller, instance, Command::Delegate { task, to: req.to, reason: req.reason }).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"fields": {"cause": "quality"}}))]
struct CompleteRequest {
    /// The task's answers. Their JSON Schema is `tasks.STEP` of
    /// `GET /processes/{process}/schema`, STEP being the task's `step`.
    #[serde(default)]
    #[schema(value_type = Object)]
    fields: Map<String, Json>,
}

/// Complete a task
///
/// Records the task's answers and moves the case on; answers the case and `next_for_you`.
#[utoipa::path(post, path = "/tasks/{id}/complete", params(("id" = String, Path, description = "Task id INSTANCE-SEQ")), request_body = CompleteRequest, responses((status = 200, description = "Completed; the case moved on", body = crate::schemas::Instance), (status = 403, description = "Not your task or role"), (status = 409, description = "Not open: someone completed it first"), (status = 422, description = "The form is invalid")), security(("bearer" = [])))]
async fn complete(
    State(state): State<Shared>,
    Caller(actor, service): Caller,
    Path(id): Path<String>,
    Body(req): Body<CompleteRequest>,
) -> Result<axum::Json<Json>, ApiError> {
    if service {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "service tokens may not work on tasks"));
    }
    let (instance, task) = parse_task_id(&id)?;
    let fields = fields_from(&req.fields)?;
    let mut answer =
        run(state, Caller(actor.clone(), service), instance, Command::CompleteTask { task, fields }).await?;
    // Chained execution: the tasks of this case that are now the caller's, to go on with.
    let next: Vec<Json> = answer.0["tasks"]
        .as_array()
        .map(|tasks| tasks.iter().filter(|t| t["assignee"] == actor.id.as_str()).map(|t| t["id"].clone()).collect())
        .unwrap_or_default();
    answer.0["next_for_you"] = Json::Array(next);
    Ok(answer)
}

// ------------------------------------------------------------ timers

/// Fires due timers forever: wakes at the next due time, at most `poll` apart so that timers
/// created meanwhile are not late by more than that.
pub async fn timer_driver(engine: Arc<Engine>, clock: Arc<dyn Clock>, poll: std::time::Duration) {
    loop {
        let e = engine.clone();
        let now = clock.now();
        let fired = tokio::task::spawn_blocking(move || e.fire_due(now, 10_000)).await;
        match fired {
            Ok(Ok(n)) if n > 0 => tracing::debug!(fired = n, "timers fired"),
            Ok(Err(err)) => tracing::error!(error = %err, "firing timers failed"),
            _ => {}
        }
        let e = engine.clone();
        let next = tokio::task::spawn_blocking(move || e.next_due()).await.ok().and_then(Result::ok).flatten();
        let wait = match next {
            Some(t) => (t - clock.now()).to_std().unwrap_or_default().min(poll),
            None => poll,
        };
        tokio::time::sleep(wait).await;
    }
}

/// Deploys every `.flow` file of a folder, checked together as `caseflow check` checks a
/// folder (so processes that call each other deploy together). A broken file is refused on
/// its own; the others deploy. Returns (deployed, refused with their diagnostics).
pub fn deploy_folder(
    engine: &Engine,
    dir: &std::path::Path,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "flow"))
        .collect();
    entries.sort();
    let (mut files, mut refused) = (Vec::new(), Vec::new());
    for p in entries {
        // A file that is not UTF-8 is refused alone; the others deploy.
        match caseflow_dsl::decode(std::fs::read(&p)?) {
            Ok(text) => files.push(caseflow_dsl::SourceFile { name: p.display().to_string(), text }),
            Err((text, d)) => refused.push(caseflow_dsl::diag::render(&p.display().to_string(), &text, &[d], false)),
        }
    }
    let mut deployed = Vec::new();
    for (result, file) in engine.deploy_together(&files, now)?.into_iter().zip(&files) {
        match result {
            Ok(o) => deployed.push(format!("{} v{}{}", o.process, o.version, if o.changed { " (new)" } else { "" })),
            Err(EngineError::Rejected(d)) => {
                refused.push(caseflow_dsl::diag::render(&file.name, &file.text, &d, false))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((deployed, refused))
}

// ------------------------------------------------------------ rules

/// The changes from `old` to `new` rules files: a unified diff per file that changed (added
/// and removed files against nothing), each with its own line numbers.
pub fn rules_diff(old: &[caseflow_engine::RulesFile], new: &[caseflow_engine::RulesFile]) -> String {
    let names: BTreeSet<&str> = old.iter().chain(new).map(|f| f.name.as_str()).collect();
    let text = |files: &[caseflow_engine::RulesFile], name: &str| {
        files.iter().find(|f| f.name == name).map(|f| f.text.clone())
    };
    let mut out = String::new();
    for name in names {
        let (before, after) = (text(old, name), text(new, name));
        if before == after {
            continue;
        }
        let a = if before.is_some() { format!("a/{name}") } else { "/dev/null".to_string() };
        let b = if after.is_some() { format!("b/{name}") } else { "/dev/null".to_string() };
        let (before, after) = (before.unwrap_or_default(), after.unwrap_or_default());
        let diff = similar::TextDiff::from_lines(before.as_str(), after.as_str());
        out.push_str(&diff.unified_diff().context_radius(2).header(&a, &b).to_string());
    }
    out
}

/// Reads every `.toml` file of a folder, sorted, each named by its file name alone: the
/// names appear in answers, the change log and `/health`, and the server's own paths do not
/// belong there.
pub fn read_rules_dir(dir: &std::path::Path) -> std::io::Result<Vec<caseflow_engine::RulesFile>> {
    let mut files = caseflow_engine::read_rules_dir(dir)?;
    for f in &mut files {
        if let Some(name) = std::path::Path::new(&f.name).file_name() {
            f.name = name.to_string_lossy().into_owned();
        }
    }
    Ok(files)
}

/// The engine a start serves with, on the rules it found.
pub struct Started {
    pub engine: Engine,
    /// The rules files in force.
    pub files: Vec<caseflow_engine::RulesFile>,
    /// The folder's rules, when they were refused and the last accepted ones serve instead.
    pub refused: Option<RefusedRules>,
    /// The change the start made, when the folder's rules changed while the server was down.
    pub changed: Option<caseflow_engine::service::RulesChange>,
}

/// Opens the engine on `store` with the rules of `dir`, or, when they are broken (or break a
/// deployed process), with the rules last accepted, which the store records: a file broken
/// on disk must not turn a restart into an outage. Rules changed while the server was down
/// are a change like any other, checked and recorded (by `caseflow (start)`). Fails only when
/// the folder is refused and the store holds no accepted rules to fall back on.
pub fn open_engine(
    store: caseflow_engine::Store,
    dir: &std::path::Path,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Started> {
    use caseflow_engine::RuleSet;
    let stored = Engine::rules_files_in_force(&store)?;
    let folder =
        read_rules_dir(dir).map_err(|e| format!("reading the rules folder: {e}")).and_then(
            |files| match RuleSet::load(&files) {
                Ok(rules) => Ok((rules, files)),
                Err(errors) => Err(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")),
            },
        );
    let fallback = stored.and_then(|files| match RuleSet::load(&files) {
        Ok(rules) => Some((rules, files)),
        Err(errors) => {
            tracing::warn!(
                problems = errors.len(),
                "the rules recorded as last accepted no longer load with this version of caseflow"
            );
            None
        }
    });
    match (folder, fallback) {
        (Ok((rules, files)), None) => {
            let engine = Engine::open(store, rules)?;
            engine.record_rules_files(&files)?;
            Ok(Started { engine, files, refused: None, changed: None })
        }
        (Ok((rules, files)), Some((_, accepted))) if accepted == files => {
            let engine = Engine::open(store, rules)?;
            Ok(Started { engine, files, refused: None, changed: None })
        }
        (Ok((rules, files)), Some((old_rules, accepted))) => {
            let engine = Engine::open(store, old_rules)?;
            let diff = rules_diff(&accepted, &files);
            match engine.change_rules(rules, &files, "caseflow (start)", diff, now) {
                Ok(change) => Ok(Started { engine, files, refused: None, changed: Some(change) }),
                Err(EngineError::Rejected(d)) => {
                    let detail = d.iter().map(|d| format!("deployed processes would break: {}", d.message)).collect::<Vec<_>>().join("\n");
                    Ok(Started { engine, files: accepted, refused: Some(RefusedRules { at: now, detail }), changed: None })
                }
                Err(e) => Err(e.into()),
            }
        }
        (Err(detail), Some((rules, accepted))) => {
            let engine = Engine::open(store, rules)?;
            Ok(Started { engine, files: accepted, refused: Some(RefusedRules { at: now, detail }), changed: None })
        }
        (Err(detail), None) => anyhow::bail!(
            "{detail}\nthe rules in {} do not validate, and this data directory holds no accepted rules to fall back on; \
             fix them and start again",
            dir.display()
        ),
    }
}

/// Rules on disk that were refused, while the last accepted ones stay in force.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedRules {
    pub at: chrono::DateTime<chrono::Utc>,
    /// Every problem, one per line (file:line:col: key: what is wrong).
    pub detail: String,
}

impl RefusedRules {
    fn problems(&self) -> usize {
        self.detail.lines().filter(|l| !l.trim().is_empty()).count()
    }
}

/// Validates the rules folder and, if every file and every deployed process agree, puts it in
/// force. On any problem the old rules stay and the problems are returned.
/// Whatever the answer, it also says whether the folder stands refused.
pub fn reload_rules_from_dir(state: &AppState, by: &str) -> Result<caseflow_engine::service::RulesChange, ApiError> {
    let result = apply_rules_folder(state, by, None);
    let refused = match &result {
        Ok(_) => None,
        Err(e) if e.kind == "unchanged" => None,
        Err(e) if e.kind == "no-rules-dir" => return result,
        Err(e) if e.status.is_server_error() => return result,
        Err(e) => Some(RefusedRules { at: state.clock.now(), detail: e.detail.clone() }),
    };
    *state.rules_refused.lock().unwrap_or_else(|p| p.into_inner()) = refused;
    result
}

/// Validates the folder (with `replacement` standing in for one file, if given) and, if every
/// file and every deployed process agree, puts it in force. On any problem the old rules stay.
fn apply_rules_folder(
    state: &AppState,
    by: &str,
    replacement: Option<(&str, &str)>,
) -> Result<caseflow_engine::service::RulesChange, ApiError> {
    let dir = state
        .rules_dir
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "no-rules-dir", "this server has no rules folder"))?;
    let mut files = read_rules_dir(dir).map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-rules", format!("reading the rules folder: {e}"))
    })?;
    if let Some((name, text)) = replacement {
        files.retain(|f| f.name != name);
        files.push(caseflow_engine::RulesFile { name: name.to_string(), text: text.to_string() });
        files.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let rules = caseflow_engine::RuleSet::load(&files).map_err(|errors| {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-rules",
            errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"),
        );
        e.field = errors.first().map(|e| e.key.clone());
        e
    })?;
    let mut current = state.rules_files.lock().unwrap_or_else(|p| p.into_inner());
    if *current == files {
        return Err(ApiError::new(StatusCode::CONFLICT, "unchanged", "the rules files have not changed"));
    }
    let diff = rules_diff(&current, &files);
    let change = state.engine.change_rules(rules, &files, by, diff, state.clock.now()).map_err(|e| match e {
        EngineError::Rejected(d) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "rules-break-processes",
            format!(
                "deployed processes would break: {}",
                d.iter().map(|d| d.message.clone()).collect::<Vec<_>>().join("; ")
            ),
        ),
        other => other.into(),
    })?;
    *current = files;
    Ok(change)
}

/// The rules in force
///
/// Their version, time zone, roles, users, named values and decision tables. Administrators and holders of `read_rules`; problems of a refused rules folder are listed under `refused`.
#[utoipa::path(get, path = "/admin/rules", responses((status = 200, description = "The rules version and the names in force", body = crate::schemas::RulesInForce)), security(("bearer" = [])))]
async fn rules_in_force(State(state): State<Shared>, Caller(actor, _): Caller) -> Result<axum::Json<Json>, ApiError> {
    require_permission(&state, &actor, "read_rules", "reading the rules in force")?;
    let rules = state.engine.rules();
    let refused = state.rules_refused.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(axum::Json(json!({
        "version": state.engine.rules_version(),
        "files": state.rules_files.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
        "refused": refused.map(|r| json!({ "at": r.at.to_rfc3339(), "problems": r.detail.lines().collect::<Vec<_>>() })),
        "time_zone": rules.calendar.time_zone.to_string(),
        "roles": rules.roles.keys().collect::<Vec<_>>(),
        "users": rules.users.keys().collect::<Vec<_>>(),
        "values": rules.values.keys().collect::<Vec<_>>(),
        "decision_tables": rules.tables.iter().map(|(n, t)| json!({ "name": n, "hit_policy": t.hit_policy, "inputs": t.inputs, "outputs": t.outputs, "rows": t.rows.len() })).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ReloadQuery {
    /// Also recompute the deadlines of open tasks under the new rules.
    #[serde(default)]
    recompute: bool,
}

fn change_json(change: &caseflow_engine::service::RulesChange, recomputed: Option<usize>) -> Json {
    json!({ "version": change.version, "at": change.at.to_rfc3339(), "by": change.by, "diff": change.diff, "cases_recomputed": recomputed })
}

/// Reload the rules folder
///
/// Validates every file and every deployed process against the new names; applies all of it or nothing. `recompute=true` also moves the deadlines of open tasks.
#[utoipa::path(post, path = "/admin/rules/reload", params(ReloadQuery), responses((status = 200, description = "Applied: version, who, when, diff", body = crate::schemas::RulesChange), (status = 409, description = "Unchanged"), (status = 422, description = "Refused with every error; the old rules stay")), security(("bearer" = [])))]
async fn reload_rules(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
    Q(q): Q<ReloadQuery>,
) -> Result<axum::Json<Json>, ApiError> {
    require_admin(&actor)?;
    let s = state.clone();
    let (change, recomputed) = blocking(move || {
        let change = reload_rules_from_dir(&s, &actor.id)?;
        let recomputed = if q.recompute { Some(s.engine.recompute_deadlines(s.clock.now())?) } else { None };
        Ok((change, recomputed))
    })
    .await?;
    Ok(axum::Json(change_json(&change, recomputed)))
}

/// Replace one rules file
///
/// Replaces (or adds) one rules file: validated with the rest of the folder, applied, then
/// written to the folder (a temporary file renamed into place, so no reader sees half).
#[utoipa::path(put, path = "/admin/rules/files/{name}", params(("name" = String, Path, description = "File name, snake_case.toml"), ReloadQuery), request_body(description = "The file: as text, or as JSON `{\"text\": \"...\"}`", content((String = "text/plain"), (crate::schemas::RulesFileRequest = "application/json"))), responses((status = 200, description = "Applied and written", body = crate::schemas::RulesChange), (status = 422, description = "Refused; nothing written")), security(("bearer" = [])))]
async fn upload_rules_file(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
    Q(q): Q<ReloadQuery>,
    body: String,
) -> Result<axum::Json<Json>, ApiError> {
    require_admin(&actor)?;
    let body = text_body(&headers, body, "text")?;
    let valid = name.strip_suffix(".toml").is_some_and(|stem| {
        !stem.is_empty() && stem.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    });
    if !valid {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "the file name must be snake_case ending in .toml",
        ));
    }
    let s = state.clone();
    let (change, recomputed) = blocking(move || {
        let dir = s
            .rules_dir
            .clone()
            .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "no-rules-dir", "this server has no rules folder"))?;
        let unwritable = |e: std::io::Error| {
            tracing::error!(error = %e, "writing an uploaded rules file");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage", "the rules folder is not writable")
        };
        let tmp = dir.join(format!(".{name}.upload"));
        std::fs::write(&tmp, &body).map_err(unwritable)?;
        let result = apply_rules_folder(&s, &actor.id, Some((&name, &body)));
        match &result {
            Ok(_) => {
                std::fs::rename(&tmp, dir.join(&name)).map_err(unwritable)?;
                // The folder holds exactly what is in force now.
                *s.rules_refused.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            Err(_) => {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        let change = result?;
        let recomputed = if q.recompute { Some(s.engine.recompute_deadlines(s.clock.now())?) } else { None };
        Ok((change, recomputed))
    })
    .await?;
    Ok(axum::Json(change_json(&change, recomputed)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"to": "zhang_wei", "reason": "left the team"}))]
struct ReassignRequest {
    to: String,
    reason: String,
}

/// Give all of a user's tasks to another
///
/// Gives all open tasks of a user to another: a user removed from a role keeps their tasks
/// until this is called.
#[utoipa::path(post, path = "/admin/users/{user}/reassign", params(("user" = String, Path, description = "User id")), request_body = ReassignRequest, responses((status = 200, description = "How many tasks moved", body = crate::schemas::Reassigned)), security(("bearer" = [])))]
async fn reassign_user(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
    Path(user): Path<String>,
    Body(req): Body<ReassignRequest>,
) -> Result<axum::Json<Json>, ApiError> {
    require_permission(&state, &actor, "reassign", "moving a user's tasks")?;
    let s = state.clone();
    let n = blocking(move || Ok(s.engine.reassign_all(&user, &req.to, &actor, &req.reason, s.clock.now())?)).await?;
    Ok(axum::Json(json!({ "reassigned": n })))
}

/// Every accepted rules change
///
/// Oldest first: version, who, when and a per-file unified diff. Administrators only.
#[utoipa::path(get, path = "/admin/rules/changes", responses((status = 200, description = "Every accepted change", body = crate::schemas::RulesChanges)), security(("bearer" = [])))]
async fn rules_changes(State(state): State<Shared>, Caller(actor, _): Caller) -> Result<axum::Json<Json>, ApiError> {
    require_admin(&actor)?;
    let s = state.clone();
    let changes = blocking(move || Ok(s.engine.rules_changes()?)).await?;
    Ok(axum::Json(json!({ "changes": changes })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"inputs": {"probability": 5, "impact": 4}}))]
struct EvaluateRequest {
    #[schema(value_type = Object)]
    inputs: Map<String, Json>,
}

/// Try a decision table
///
/// Evaluates the table on the given inputs and answers the rows hit and their outputs, without touching any case.
#[utoipa::path(post, path = "/admin/rules/tables/{name}/evaluate", params(("name" = String, Path, description = "Decision table")), request_body = EvaluateRequest, responses((status = 200, description = "Rows hit and their outputs", body = crate::schemas::TableHits), (status = 404, description = "No such table")), security(("bearer" = [])))]
async fn evaluate_table(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
    Path(name): Path<String>,
    Body(req): Body<EvaluateRequest>,
) -> Result<axum::Json<Json>, ApiError> {
    require_permission(&state, &actor, "read_rules", "trying a decision table")?;
    let rules = state.engine.rules();
    let table = rules
        .tables
        .get(&name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown-table", format!("no decision table `{name}`")))?;
    let mut values = Vec::new();
    for input in &table.inputs {
        let v = req.inputs.get(input).ok_or_else(|| ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "invalid-field",
            detail: format!("missing input `{input}`; the inputs are: {}", table.inputs.join(", ")),
            field: Some(input.clone()),
            errors: Vec::new(),
        })?;
        values.push(from_json(input, v)?);
    }
    if let Some(extra) = req.inputs.keys().find(|k| !table.inputs.contains(k)) {
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "invalid-field",
            detail: format!("table `{name}` has no input `{extra}`"),
            field: Some(extra.clone()),
            errors: Vec::new(),
        });
    }
    let hits = table
        .evaluate(&values)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "evaluation", e.to_string()))?;
    let rows: Vec<Json> = hits
        .0
        .iter()
        .map(|&i| {
            let outputs: Map<String, Json> =
                table.outputs.iter().zip(&table.rows[i].outputs).map(|(n, v)| (n.clone(), to_json(v))).collect();
            json!({ "row": i, "line": table.rows[i].line, "outputs": outputs })
        })
        .collect();
    Ok(axum::Json(json!({ "table": name, "rules_version": state.engine.rules_version(), "hits": rows })))
}

// ------------------------------------------------------------ watching folders

/// A cheap fingerprint of a folder: names, sizes and modification times of its files.
fn fingerprint(dir: &std::path::Path, ext: &str) -> Vec<(String, u64, Option<std::time::SystemTime>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == ext))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.path().display().to_string(), m.len(), m.modified().ok()))
        })
        .collect();
    out.sort();
    out
}

/// What the folder watcher saw last.
pub struct FolderWatch {
    processes_dir: std::path::PathBuf,
    rules_seen: Option<Vec<(String, u64, Option<std::time::SystemTime>)>>,
    processes_seen: Vec<(String, u64, Option<std::time::SystemTime>)>,
}

/// What one look at the folders did.
#[derive(Debug, Default, PartialEq)]
pub struct WatchReport {
    pub rules_version: Option<u64>,
    pub rules_refused: Option<String>,
    pub deployed: Vec<String>,
    pub refused: Vec<String>,
}

impl FolderWatch {
    pub fn new(state: &AppState, processes_dir: std::path::PathBuf) -> FolderWatch {
        FolderWatch {
            rules_seen: state.rules_dir.as_deref().map(|d| fingerprint(d, "toml")),
            processes_seen: fingerprint(&processes_dir, "flow"),
            processes_dir,
        }
    }

    /// Looks once: a changed rules folder is reloaded (a refused change keeps the old rules);
    /// changed .flow files are deployed as new versions (broken ones are refused and the
    /// previous version stays in force).
    pub fn poll(&mut self, state: &AppState) -> WatchReport {
        let mut report = WatchReport::default();
        if let Some(dir) = &state.rules_dir {
            let now = fingerprint(dir, "toml");
            if Some(&now) != self.rules_seen.as_ref() {
                self.rules_seen = Some(now);
                match reload_rules_from_dir(state, "file-watcher") {
                    Ok(change) => report.rules_version = Some(change.version),
                    Err(e) if e.kind == "unchanged" => {}
                    Err(e) => report.rules_refused = Some(e.detail),
                }
            }
        }
        let now = fingerprint(&self.processes_dir, "flow");
        if now != self.processes_seen {
            self.processes_seen = now;
            match deploy_folder(&state.engine, &self.processes_dir, state.clock.now()) {
                Ok((deployed, refused)) => {
                    report.deployed = deployed.into_iter().filter(|d| d.ends_with("(new)")).collect();
                    report.refused = refused;
                }
                Err(e) => report.refused.push(e.to_string()),
            }
        }
        report
    }
}

/// Polls the folders forever, logging what changed.
pub async fn watch_folders(state: Shared, processes_dir: std::path::PathBuf, every: std::time::Duration) {
    let mut watch = FolderWatch::new(&state, processes_dir);
    loop {
        tokio::time::sleep(every).await;
        let s = state.clone();
        let Ok((report, w)) = tokio::task::spawn_blocking(move || {
            let report = watch.poll(&s);
            (report, watch)
        })
        .await
        else {
            return;
        };
        watch = w;
        if let Some(v) = report.rules_version {
            tracing::info!(version = v, "rules reloaded");
            if let Some(w) = calendar_warning(&state.engine.rules(), state.clock.now()) {
                tracing::warn!("{w}");
            }
        }
        if let Some(problems) = report.rules_refused {
            tracing::error!(%problems, "rules change refused; the previous rules stay in force");
        }
        if !report.deployed.is_empty() {
            tracing::info!(processes = %report.deployed.join(", "), "deployed");
        }
        for r in report.refused {
            tracing::error!(diagnostics = %r, "process refused; the previous version stays in force");
        }
    }
}

// ------------------------------------------------------------ listing and metrics

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    process: String,
    #[serde(default = "default_status")]
    status: String,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn default_status() -> String {
    "running".into()
}

/// Cases of a process
///
/// Instances of a process in a status, oldest first, a page at a time (cursor pagination:
/// stable while instances are added).
#[utoipa::path(get, path = "/instances", params(ListQuery), responses((status = 200, description = "A page of instances and the next cursor", body = crate::schemas::InstancePage)), security(("bearer" = [])))]
async fn list_instances(
    State(state): State<Shared>,
    _caller: Caller,
    Q(q): Q<ListQuery>,
) -> Result<axum::Json<Json>, ApiError> {
    if StatusKind::parse(&q.status).is_none() {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "bad-request",
            detail: format!("status must be one of {}", StatusKind::ALL.map(StatusKind::as_str).join(", ")),
            field: Some("status".into()),
            errors: Vec::new(),
        });
    }
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
    let s = state.clone();
    let (ids, more) = blocking(move || {
        let ids = s.engine.instances_after(&q.process, &q.status, cursor, limit + 1)?;
        let more = ids.len() > limit;
        Ok((ids.into_iter().take(limit).collect::<Vec<_>>(), more))
    })
    .await?;
    let s = state.clone();
    let ids2 = ids.clone();
    let items = blocking(move || {
        ids2.iter()
            .filter_map(|id| s.engine.instance(*id).transpose())
            .map(|r| r.map_err(ApiError::from))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    let list: Vec<Json> = items
        .iter()
        .map(|i| json!({ "id": i.id.0, "business_key": i.business_key, "process": i.process, "version": i.version, "status": i.status.name(), "started_at": i.started_at.to_rfc3339(), "updated_at": i.updated_at.to_rfc3339() }))
        .collect();
    // Cursors are opaque strings, on every list.
    let next = if more { ids.last().map(|i| i.0.to_string()) } else { None };
    Ok(axum::Json(json!({ "instances": list, "next_cursor": next })))
}

/// Metrics
///
/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String, example = json!("# TYPE caseflow_commands_total counter\ncaseflow_commands_total 42\n")), (status = 401, description = "A token is required (`metrics_need_token` in caseflow.toml) and none was sent")), security((), ("bearer" = [])))]
async fn metrics(State(state): State<Shared>, headers: HeaderMap) -> Result<Response, ApiError> {
    if state.metrics_need_token {
        caller(&state, &headers)?;
    }
    let s = state.clone();
    let body = blocking(move || {
        let mut out = String::new();
        out.push_str(
            "# HELP caseflow_commands_total Commands applied since start.\n# TYPE caseflow_commands_total counter\n",
        );
        out.push_str(&format!("caseflow_commands_total {}\n", s.engine.commands_applied()));
        out.push_str(
            "# HELP caseflow_rules_version The version of the rules in force.\n# TYPE caseflow_rules_version gauge\n",
        );
        out.push_str(&format!("caseflow_rules_version {}\n", s.engine.rules_version()));
        out.push_str("# HELP caseflow_rules_refused 1 while the rules folder holds refused files (the last accepted rules serve).\n# TYPE caseflow_rules_refused gauge\n");
        let refused = s.rules_refused.lock().unwrap_or_else(|p| p.into_inner()).is_some();
        out.push_str(&format!("caseflow_rules_refused {}\n", u8::from(refused)));
        out.push_str("# HELP caseflow_instances Instances by process and status.\n# TYPE caseflow_instances gauge\n");
        for (process, _) in s.engine.definitions() {
            for status in StatusKind::ALL.map(StatusKind::as_str) {
                let n = s.engine.count_instances(&process, status)?;
                out.push_str(&format!("caseflow_instances{{process=\"{process}\",status=\"{status}\"}} {n}\n"));
            }
        }
        out.push_str("# HELP caseflow_timers_pending Timers waiting to fire.\n# TYPE caseflow_timers_pending gauge\n");
        out.push_str(&format!("caseflow_timers_pending {}\n", s.engine.count_pending_timers()?));
        let checkpoints = s.engine.store().checkpoints();
        out.push_str("# HELP caseflow_store_checkpoints_total Snapshots of the database's page table that bound restart time (written beside the writers).\n# TYPE caseflow_store_checkpoints_total counter\n");
        out.push_str(&format!("caseflow_store_checkpoints_total {}\n", checkpoints.count));
        out.push_str("# HELP caseflow_store_checkpoint_failures_total Checkpoints that failed; the next one tries again.\n# TYPE caseflow_store_checkpoint_failures_total counter\n");
        out.push_str(&format!("caseflow_store_checkpoint_failures_total {}\n", checkpoints.failures));
        out.push_str("# HELP caseflow_store_last_checkpoint_seconds How long the last checkpoint took (it stops nothing).\n# TYPE caseflow_store_last_checkpoint_seconds gauge\n");
        out.push_str(&format!("caseflow_store_last_checkpoint_seconds {:.3}\n", checkpoints.last.as_secs_f64()));
        let (memtable_entries, apply_failures) = s.engine.store().memtable_stats();
        out.push_str("# HELP caseflow_memtable_entries Keys written and not yet applied to the database (held in memory and in the log).\n# TYPE caseflow_memtable_entries gauge\n");
        out.push_str(&format!("caseflow_memtable_entries {memtable_entries}\n"));
        out.push_str("# HELP caseflow_memtable_apply_failures_total Applies of the memtable to the database that failed; the next one tries again.\n# TYPE caseflow_memtable_apply_failures_total counter\n");
        out.push_str(&format!("caseflow_memtable_apply_failures_total {apply_failures}\n"));
        let log = s.engine.store().log_stats();
        out.push_str("# HELP caseflow_log_groups_total Group commits of the write-ahead log (one write, and one fdatasync under fsync, each).\n# TYPE caseflow_log_groups_total counter\n");
        out.push_str(&format!("caseflow_log_groups_total {}\n", log.groups));
        out.push_str("# HELP caseflow_log_records_total Batches committed through the write-ahead log.\n# TYPE caseflow_log_records_total counter\n");
        out.push_str(&format!("caseflow_log_records_total {}\n", log.records));
        out.push_str("# HELP caseflow_log_write_seconds_total Time spent writing and syncing log groups.\n# TYPE caseflow_log_write_seconds_total counter\n");
        out.push_str(&format!("caseflow_log_write_seconds_total {:.6}\n", log.write_micros as f64 / 1e6));
        Ok(out)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

// ------------------------------------------------------------ events

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    process: Option<String>,
    instance: Option<u64>,
    /// Comma-separated event names, e.g. `task_opened,task_overdue,escalated`.
    types: Option<String>,
}

/// Stream events
///
/// Server-Sent Events: the engine's changes as they become durable, filtered. A live feed: a
/// client that falls too far behind gets a `lagged` event saying how many it missed, and the
/// history endpoint has the complete record.
#[utoipa::path(get, path = "/events", params(EventsQuery), responses((status = 200, description = "text/event-stream of durable changes: each event named as the history entry (`task_opened`, `escalated`, ...), its data an `Event` (components/schemas/Event) as JSON; a `lagged` event says how many a slow client missed", content_type = "text/event-stream", body = String, example = json!("event: task_opened\nid: 1-2\ndata: {\"instance\":1,\"event\":\"task_opened\",...}\n\n"))), security(("bearer" = [])))]
async fn events(
    State(state): State<Shared>,
    _caller: Caller,
    Q(q): Q<EventsQuery>,
) -> Result<
    axum::response::sse::Sse<
        impl futures_core::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let types: Option<Vec<String>> =
        q.types.map(|t| t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect());
    let mut rx = state.events.subscribe();
    let mut stopping = state.stopping.subscribe();
    let stream = async_stream::stream! {
        loop {
            let received = tokio::select! {
                r = rx.recv() => r,
                // The server is shutting down: end the stream (the client reconnects elsewhere
                // or later, and the history has everything it missed).
                _ = stopping.wait_for(|s| *s) => break,
            };
            match received {
                Ok(e) => {
                    if q.process.as_ref().is_some_and(|p| *p != e.process)
                        || q.instance.is_some_and(|i| i != e.instance.0)
                        || types.as_ref().is_some_and(|t| !t.contains(&e.event))
                    {
                        continue;
                    }
                    let data = serde_json::to_string(&*e).unwrap_or_default();
                    yield Ok(Event::default().event(e.event.clone()).id(format!("{}-{}", e.instance, e.seq)).data(data));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    yield Ok(Event::default().event("lagged").data(format!("{{\"missed\":{n}}}")));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

// ------------------------------------------------------------ OpenAPI

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every kind of problem the server answers, the last part of a problem's `type` URI
/// (`https://caseflow.dev/problems/KIND`). A test checks that every kind the code uses is here.
pub const PROBLEM_KINDS: [&str; 34] = [
    "bad-cursor",
    "bad-idempotency-key",
    "bad-request",
    "client-error",
    "conflict",
    "evaluation",
    "forbidden",
    "idempotency-key-reused",
    "internal",
    "invalid-definition",
    "invalid-field",
    "invalid-rules",
    "method-not-allowed",
    "no-listener",
    "no-rules-dir",
    "not-found",
    "payload-too-large",
    "request-timeout",
    "rules-break-processes",
    "runaway",
    "server-error",
    "start-in-progress",
    "storage",
    "storage-outcome-unknown",
    "task-not-open",
    "too-deep",
    "unauthorized",
    "unchanged",
    "unknown-instance",
    "unknown-process",
    "unknown-table",
    "unknown-task",
    "unsupported-media-type",
    "wrong-status",
];

/// The error body every 4xx and 5xx carries, as `application/problem+json` (RFC 9457).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the JSON `ApiError` writes
struct Problem {
    /// A URI naming the kind of problem, e.g. `https://caseflow.dev/problems/bad-field`.
    r#type: String,
    title: String,
    status: u16,
    detail: String,
    /// The bad field, when one field is at fault.
    field: Option<String>,
    /// Every bad field with what is wrong with it.
    errors: Option<Vec<ProblemField>>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ProblemField {
    field: String,
    detail: String,
}

/// Documents the errors the shared layers give every operation, so that the document lists
/// every status a client can receive: 401 and 403 where a token is needed, 404 where the path
/// names something, 400/413/415/422 where a body or query is parsed; each as problem+json.
struct ErrorResponses;

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // History events, listed: every entry is recorded as one of them.
        let events: Vec<Json> = caseflow_core::case::HistoryEvent::ALL.iter().map(|e| json!(e.as_str())).collect();
        for (schema, property) in [("HistoryEntry", "event"), ("Event", "event")] {
            if let Some(utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(object))) =
                openapi.components.as_mut().and_then(|c| c.schemas.get_mut(schema))
            {
                if let Some(utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(p))) =
                    object.properties.get_mut(property)
                {
                    p.enum_values = Some(events.clone());
                }
            }
        }
        // The problem `type` URIs, listed.
        if let Some(utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(problem))) =
            openapi.components.as_mut().and_then(|c| c.schemas.get_mut("Problem"))
        {
            if let Some(utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(ty))) =
                problem.properties.get_mut("type")
            {
                ty.enum_values =
                    Some(PROBLEM_KINDS.iter().map(|k| json!(format!("https://caseflow.dev/problems/{k}"))).collect());
            }
        }
        use utoipa::openapi::{Content, Ref, ResponseBuilder};
        let problem = || Content::new(Some(Ref::from_schema_name("Problem")));
        for (path, item) in openapi.paths.paths.iter_mut() {
            let path_names_something = path.contains('{');
            let ops = [(false, &mut item.get), (true, &mut item.post), (false, &mut item.put)];
            for (is_post, op) in ops.into_iter().filter_map(|(p, op)| op.as_mut().map(|op| (p, op))) {
                let mut statuses: Vec<(&str, &str)> = Vec::new();
                // Secured: some requirement names a scheme (`[{}]` alone marks a public route).
                let requirements = op.security.as_ref().and_then(|s| serde_json::to_string(s).ok()).unwrap_or_default();
                if requirements.contains("bearer") && !requirements.starts_with("[{}") {
                    statuses.push(("401", "No token, or an unknown one"));
                    statuses.push(("403", "The token's user may not do this"));
                }
                if path_names_something {
                    statuses.push(("404", "Nothing with that id"));
                }
                if path_names_something && is_post {
                    statuses.push(("409", "The case or task is not in a state that allows this"));
                }
                let parses_input = op.request_body.is_some() || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                if parses_input {
                    statuses.push(("400", "Malformed request: bad JSON, query or path"));
                }
                if op.request_body.is_some() {
                    statuses.push(("413", "Body larger than the configured limit"));
                    statuses.push(("415", "Wrong Content-Type"));
                    statuses.push(("422", "Well-formed but invalid: every bad field is listed"));
                }
                // `/health` answers its own body for every status it has (200, 503).
                if path != "/health" {
                    statuses.push(("500", "An internal error; nothing was applied"));
                }
                if is_post || op.request_body.is_some() {
                    statuses.push((
                        "503",
                        "Storage is failing: `storage` (not applied, safe to retry) or `storage-outcome-unknown`",
                    ));
                }
                for (status, description) in statuses {
                    op.responses.responses.entry(status.to_string()).or_insert_with(|| {
                        ResponseBuilder::new()
                            .description(description)
                            .content("application/problem+json", problem())
                            .into()
                    });
                }
                for (status, response) in op.responses.responses.iter_mut() {
                    if let (true, utoipa::openapi::RefOr::T(r)) = (status.as_str() >= "400", response) {
                        r.content.entry("application/problem+json".to_string()).or_insert_with(problem);
                    }
                }
            }
        }
    }
}

/// The API description, generated from the handlers' annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "caseflow", description = "Workflow and rules engine for customer-service operations. Errors are application/problem+json (RFC 9457)."),
    paths(
        health, list_processes, show_process, diagram, process_schema, deploy, start, list_instances, get_instance, get_instance_by_key, history,
        message, cancel, suspend, resume, retry, update_fields, inbox, claim, release, complete, reassign_task, delegate_task, rules_in_force,
        reload_rules, upload_rules_file, rules_changes, evaluate_table, reassign_user, metrics, events, openapi_json,
        report
    ),
    components(schemas(crate::schemas::Event, Problem, ProblemField, StartRequest, MessageRequest, ReasonRequest, FieldsRequest, CompleteRequest, EvaluateRequest, ReassignRequest)),
    servers((url = "http://127.0.0.1:8080", description = "The server `cargo run --release -- serve` starts")),
    tags(
        (name = "cases", description = "Start cases, read them, and act on them: messages, cancel, suspend, resume, retry, fields"),
        (name = "tasks", description = "The work of people: inboxes, claim, release, complete, reassign, delegate"),
        (name = "processes", description = "Deployed process definitions, their versions and diagrams"),
        (name = "rules", description = "The administrators' rules: what is in force, reloads, changes, decision tables, people"),
        (name = "operations", description = "Health, metrics, events, reports and this document"),
    ),
    modifiers(&BearerAuth, &ErrorResponses, &TagsByResource)
)]
pub struct ApiDoc;

/// Tags every operation by the resource its path names, so generated clients group them.
struct TagsByResource;

impl utoipa::Modify for TagsByResource {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let tag = match path.trim_start_matches('/').split('/').next().unwrap_or("") {
                "instances" => "cases",
                "tasks" => "tasks",
                "processes" => "processes",
                "admin" => "rules",
                _ => "operations",
            };
            for op in [&mut item.get, &mut item.post, &mut item.put].into_iter().flatten() {
                op.tags = Some(vec![tag.to_string()]);
            }
        }
    }
}

/// This document
///
/// The OpenAPI 3.1 description of the API, generated from the handlers.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "This document", body = Object, example = json!({"openapi": "3.1.0", "info": {"title": "caseflow"}, "paths": {}}))), security(()))]
async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    use utoipa::OpenApi as _;
    axum::Json(ApiDoc::openapi())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    process: String,
    /// Cases started at or after (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// Cases started before (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<chrono::DateTime<chrono::Utc>>,
}

/// Reports
///
/// KPIs of one process over a period: cases by status, outcome and choice field; per step
/// handling time (median, p90) and deadlines met; first-contact resolution; satisfaction and
/// the weighted five-dimension service-quality score.
#[utoipa::path(get, path = "/reports", params(ReportQuery), responses((status = 200, description = "The report", body = crate::schemas::Report), (status = 404, description = "No such process")), security(("bearer" = [])))]
async fn report(
    State(state): State<Shared>,
    _caller: Caller,
    Q(q): Q<ReportQuery>,
) -> Result<axum::Json<Json>, ApiError> {
    let s = state.clone();
    let r = blocking(move || Ok(s.engine.report(&q.process, q.from, q.to)?)).await?;
    Ok(axum::Json(serde_json::to_value(&r).unwrap_or(Json::Null)))
}
