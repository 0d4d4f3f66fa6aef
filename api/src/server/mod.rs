//! The HTTP API: thin handlers over `caseflow_engine::Engine`. Engine calls block (sled,
//! group commit), so they run on tokio's blocking pool; starts and commands await their group
//! commit without a thread (`durably`).
//!
//! Routing lives in `routes`, which reads as the API's table of contents: each handler is
//! registered there once, with the `#[utoipa::path]` that documents it (utoipa-axum). Every
//! error is an RFC 9457 `application/problem+json` body (`ApiError`).
//!
//! One file per resource: `processes`, `instances`, `tasks`, `rules`, `events`, `reports`,
//! `health`; beside them `auth` (the `Caller` extractor), `error` (`ApiError`), `extract`,
//! `json` (values, ids, text bodies), `views` (every body the API answers with, one type each),
//! `openapi` and `background` (timers and folder watching).

mod auth;
mod background;
mod backup;
mod error;
mod events;
mod extract;
mod health;
mod instances;
mod json;
mod openapi;
mod processes;
mod reports;
mod rules;
mod tasks;
mod users;
mod views;

use crate::config::TokenConfig;
pub use auth::*;
use axum::http::StatusCode;
use axum::Router;
pub use background::*;
use caseflow_core::case::Instance;
use caseflow_engine::clock::Clock;
use caseflow_engine::{Engine, EngineError};
pub use error::*;
pub use events::*;
pub use extract::*;
pub use health::*;
pub use instances::*;
pub(crate) use json::{parse_instance_id, parse_task_id};
pub use openapi::*;
pub use processes::*;
pub use reports::*;
pub use rules::*;
use std::sync::Arc;
pub use tasks::*;
pub use users::*;
use utoipa::OpenApi as _;
use utoipa_axum::{router::OpenApiRouter, routes};

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
    /// The console's settings and failed sign-ins.
    pub console: crate::console::ConsoleState,
    /// Where `POST /admin/backup` writes; `None`: backups are not taken here.
    pub backup_dir: Option<std::path::PathBuf>,
    /// Held while a backup runs: one at a time.
    pub backing_up: tokio::sync::Mutex<()>,
}

impl AppState {
    /// A server's state over `engine`, reading time from `clock`, with `tokens`: no rules
    /// folder and nothing refused, its own event channel, not stopping, the console's default
    /// settings. A server or a test sets what it needs beyond that (`..AppState::new(...)`).
    pub fn new(engine: Arc<Engine>, clock: Arc<dyn Clock>, tokens: Vec<TokenConfig>) -> AppState {
        AppState {
            events: event_channel(&engine),
            engine,
            clock,
            tokens,
            metrics_need_token: false,
            rules_dir: None,
            rules_files: Default::default(),
            rules_refused: Default::default(),
            stopping: tokio::sync::watch::Sender::new(false),
            console: Default::default(),
            backup_dir: None,
            backing_up: Default::default(),
        }
    }
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

/// Every route with its description: a handler is registered here once, and its
/// `#[utoipa::path]` (beside the handler) becomes its entry in `/openapi.json`. Methods of one
/// path go in one `routes!`. This is the API's table of contents.
fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(list_processes, deploy))
        .routes(routes!(show_process))
        .routes(routes!(diagram))
        .routes(routes!(process_schema))
        .routes(routes!(process_diff))
        .routes(routes!(test_process))
        .routes(routes!(migrate))
        .routes(routes!(start, list_instances))
        .routes(routes!(get_instance))
        .routes(routes!(get_instance_by_key))
        .routes(routes!(history))
        .routes(routes!(scenario))
        .routes(routes!(message))
        .routes(routes!(cancel))
        .routes(routes!(suspend))
        .routes(routes!(resume))
        .routes(routes!(retry))
        .routes(routes!(update_fields))
        .routes(routes!(inbox))
        .routes(routes!(claim))
        .routes(routes!(release))
        .routes(routes!(complete))
        .routes(routes!(start_work))
        .routes(routes!(save_draft))
        .routes(routes!(reassign_task))
        .routes(routes!(delegate_task))
        .routes(routes!(rules_in_force))
        .routes(routes!(reload_rules))
        .routes(routes!(rules_changes))
        .routes(routes!(upload_rules_file))
        .routes(routes!(reassign_user))
        .routes(routes!(evaluate_table))
        .routes(routes!(set_password))
        .routes(routes!(list_sessions, end_sessions))
        .routes(routes!(backup::backup))
        .routes(routes!(metrics))
        .routes(routes!(events))
        .routes(routes!(openapi_json))
        .routes(routes!(report))
}

/// The OpenAPI document of `routes`, with what every operation shares (the bearer scheme, the
/// errors of the shared layers, tags by resource).
pub fn openapi_document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let (_, mut document) = routes().split_for_parts();
        for modifier in [&BearerAuth as &dyn utoipa::Modify, &ErrorResponses, &TagsByResource] {
            modifier.modify(&mut document);
        }
        document
    })
}

pub fn router(state: Shared, limits: RequestLimits) -> Router {
    let (router, _) = routes().split_for_parts();
    router
        // The console's pages: HTML, not in the API's document.
        .merge(crate::console::routes())
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

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the request failed"))?
}

/// Runs a start or command here, on the runtime's thread, then waits for its group commit
/// without holding a thread (the log's writer wakes this task), and acknowledges it. The write
/// does no I/O of its own (the log is appended in memory; truncation is the applier thread's),
/// so the hop to the blocking pool it used to take (~13% of the server's CPU in futex wakes)
/// bought nothing; only memtable backpressure can block here, and it is meant to.
pub(crate) async fn durably(
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
