//! `ApiError`: every error is an RFC 9457 `application/problem+json` body; one constructor
//! per common problem, and the mapping of the engine's errors to statuses.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use caseflow_core::case::CommandError;
use caseflow_engine::EngineError;
use serde::Serialize;

/// An RFC 9457 problem.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) detail: String,
    pub(crate) field: Option<String>,
    /// Every bad field with what is wrong with it, when there are several.
    pub(crate) errors: Vec<(String, String)>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError { status, kind, detail: detail.into(), field: None, errors: Vec::new() }
    }

    /// 404 `unknown-instance`: `detail` says which case was looked for.
    pub(crate) fn unknown_instance(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "unknown-instance", detail)
    }

    /// 404 `unknown-process`.
    pub(crate) fn unknown_process(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "unknown-process", detail)
    }

    /// 403 `forbidden`: `detail` says what the caller may not do.
    pub(crate) fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 400 `bad-request`.
    pub(crate) fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }
}

/// The error body every 4xx and 5xx carries, as `application/problem+json` (RFC 9457).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Problem {
    /// A URI naming the kind of problem, e.g. `https://caseflow.dev/problems/invalid-field`.
    r#type: String,
    title: String,
    status: u16,
    detail: String,
    /// The bad field, when one field is at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// Every bad field with what is wrong with it, when there are several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<ProblemField>,
    /// With `invalid-definition`: the diagnostics of `caseflow check`, as its JSON prints them.
    #[serde(skip_serializing_if = "Option::is_none")]
    diagnostics: Option<Vec<caseflow_dsl::diag::JsonDiagnostic>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ProblemField {
    field: String,
    detail: String,
}

impl ApiError {
    /// The problem body of this error.
    pub(crate) fn problem(&self) -> Problem {
        Problem {
            r#type: format!("https://caseflow.dev/problems/{}", self.kind),
            title: self.status.canonical_reason().unwrap_or("error").to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            field: self.field.clone(),
            errors: self.errors.iter().map(|(f, d)| ProblemField { field: f.clone(), detail: d.clone() }).collect(),
            diagnostics: None,
        }
    }

    /// 422 `invalid-definition` with the diagnostics of `caseflow check`, for a source that
    /// does not check.
    pub(crate) fn invalid_definition(
        diagnostics: &[caseflow_dsl::diag::Diagnostic],
        file: &str,
        source: &str,
    ) -> Response {
        let n = diagnostics.iter().filter(|d| d.is_error()).count();
        let e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-definition",
            format!("the definition has {n} error(s)"),
        );
        let mut problem = e.problem();
        problem.diagnostics = Some(diagnostics.iter().map(|d| d.to_json(file, source)).collect());
        problem.into_response(e.status)
    }
}

impl Problem {
    fn into_response(self, status: StatusCode) -> Response {
        let body = serde_json::to_string(&self).unwrap_or_default();
        (status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.problem().into_response(self.status)
    }
}

/// Turns an error answer that is not JSON (nor one of the console's pages) into a problem, keeping its status, its headers
/// (`Allow` on a 405) and its text as the detail.
pub(crate) async fn problem_for_bare_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| (v.starts_with("application/") && v.contains("json")) || v.starts_with("text/html"));
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
            EngineError::UnknownProcess(p) => ApiError::unknown_process(format!("no process `{p}` is deployed")),
            e @ EngineError::UnknownVersion { .. } => ApiError::unknown_process(e.to_string()),
            EngineError::NotRecordable(why) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "not-recordable", why),
            EngineError::UnknownInstance(i) => ApiError::unknown_instance(format!("no instance {i}")),
            EngineError::Rejected(d) => {
                let n = d.iter().filter(|d| d.is_error()).count();
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-definition",
                    format!("the definition has {n} error(s)"),
                )
            }
            EngineError::TooDeep => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "too-deep", e.to_string()),
            EngineError::BadMigration(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad-migration", e.to_string())
            }
            EngineError::BadCursor(_) => ApiError::new(StatusCode::BAD_REQUEST, "bad-cursor", e.to_string()),
            EngineError::BadSearch(why) => ApiError::new(StatusCode::BAD_REQUEST, "bad-request", why),
            EngineError::StartInProgress(_) => ApiError::new(StatusCode::CONFLICT, "start-in-progress", e.to_string()),
            EngineError::IdempotencyKeyReused(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused", e.to_string())
            }
            // A failure while waiting for the write to be durable: it was taken in, and whether
            // it reached the disk is unknown. Said so, so that a retry is done knowingly.
            EngineError::Store(s @ caseflow_engine::store::StoreError::OutcomeUnknown(_)) => {
                tracing::error!(error = %s, "storage failure while making a write durable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage-outcome-unknown",
                    "storage failed while the request was being made durable: it may or may not have been applied; \
                     read the case, or retry with the same Idempotency-Key",
                )
            }
            // Another request (on this node or another) kept changing the case while this one
            // ran; it was run again each time and nothing of it was written.
            EngineError::Store(caseflow_engine::store::StoreError::Conflict(_)) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "the case kept being changed by other requests while this one ran; nothing was applied: read it and retry",
            ),
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
            CommandError::Forbidden { .. } => ApiError::forbidden(detail),
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
