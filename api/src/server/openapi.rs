//! `/openapi.json`: the document utoipa builds from the handlers' annotations, with the
//! security scheme, the problem responses and the tags added by modifiers.

use super::error::{Problem, ProblemField};
use super::instances::{FieldsRequest, MessageRequest, ReasonRequest, StartRequest};
use super::rules::EvaluateRequest;
use super::tasks::{CompleteRequest, ReassignRequest};
use serde_json::{json, Value as Json};

pub(crate) struct BearerAuth;

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
pub const PROBLEM_KINDS: [&str; 40] = [
    "backup-failed",
    "backup-not-here",
    "backup-running",
    "bad-cursor",
    "bad-idempotency-key",
    "bad-migration",
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
    "not-recordable",
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
    "unknown-user",
    "unsupported-media-type",
    "wrong-status",
];

/// Documents the errors the shared layers give every operation, so that the document lists
/// every status a client can receive: 401 and 403 where a token is needed, 404 where the path
/// names something, 400/413/415/422 where a body or query is parsed; each as problem+json.
pub(crate) struct ErrorResponses;

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
            let ops =
                [(false, &mut item.get), (true, &mut item.post), (false, &mut item.put), (false, &mut item.delete)];
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
    components(schemas(caseflow_engine::service::EngineEvent, Problem, ProblemField, StartRequest, MessageRequest, ReasonRequest, FieldsRequest, CompleteRequest, EvaluateRequest, ReassignRequest)),
    servers((url = "http://127.0.0.1:8080", description = "The server `cargo run --release -- serve` starts")),
    tags(
        (name = "cases", description = "Start cases, read them, and act on them: messages, cancel, suspend, resume, retry, fields"),
        (name = "tasks", description = "The work of people: inboxes, claim, release, complete, reassign, delegate"),
        (name = "processes", description = "Deployed process definitions, their versions and diagrams"),
        (name = "rules", description = "The administrators' rules: what is in force, reloads, changes, decision tables, people"),
        (name = "people", description = "People's console accounts: passwords and sessions (administrators)"),
        (name = "operations", description = "Health, metrics, events, reports and this document"),
    ),
    // Paths come from the routes (`super::routes`); what every operation shares is added to
    // the whole document once they are in (`super::openapi_document`).
)]
pub struct ApiDoc;

/// Tags every operation by the resource its path names, so generated clients group them.
pub(crate) struct TagsByResource;

impl utoipa::Modify for TagsByResource {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let tag = match path.trim_start_matches('/').split('/').next().unwrap_or("") {
                "instances" => "cases",
                "tasks" => "tasks",
                "processes" => "processes",
                "admin" if path.starts_with("/admin/users/") => "people",
                "admin" => "rules",
                _ => "operations",
            };
            for op in [&mut item.get, &mut item.post, &mut item.put, &mut item.delete].into_iter().flatten() {
                op.tags = Some(vec![tag.to_string()]);
            }
        }
    }
}

/// This document
///
/// The OpenAPI 3.1 description of the API, generated from the handlers.
#[utoipa::path(
    get,
    path = "/openapi.json",
    responses(
        (status = 200, description = "This document", body = Object, example = json!({"openapi": "3.1.0", "info": {"title": "caseflow"}, "paths": {}}))
    ),
    security(())
)]
pub(crate) async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(super::openapi_document().clone())
}
