//! `/processes`: deployed definitions, their schemas and diagrams, and deploying a version.

use super::auth::{require_admin, Caller};
use super::error::ApiError;
use super::extract::Body;
use super::extract::Q;
use super::json::{text_body, TextRequest};
use super::views;
use super::{blocking, Shared};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use caseflow_engine::{EngineError, MemoryStore};
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};

/// Deployed processes
///
/// Every process with its label and versions, latest last.
#[utoipa::path(
    get,
    path = "/processes",
    responses(
        (status = 200, description = "Deployed processes and their versions", body = views::ProcessList),
        (status = 401, description = "No or unknown token")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_processes(
    State(state): State<Shared>,
    _caller: Caller,
) -> Result<axum::Json<views::ProcessList>, ApiError> {
    let processes = state
        .engine
        .definitions()
        .into_iter()
        .map(|(id, versions)| {
            let label = state.engine.definition(&id, None).and_then(|d| d.model.label.clone());
            views::ProcessSummary { id, label, versions }
        })
        .collect();
    Ok(axum::Json(views::ProcessList { processes }))
}

/// A process
///
/// Its latest (or given) version: fields, steps, deadlines and the source.
#[utoipa::path(
    get,
    path = "/processes/{id}",
    params(("id" = String, Path, description = "Process id")),
    responses(
        (status = 200, description = "The latest version, its steps, outcomes and source", body = views::ProcessDetail),
        (status = 404, description = "No such process")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn show_process(
    State(state): State<Shared>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<views::ProcessDetail>, ApiError> {
    let d =
        state.engine.definition(&id, None).ok_or_else(|| ApiError::unknown_process(format!("no process `{id}`")))?;
    let versions = state.engine.definitions().into_iter().find(|(n, _)| *n == id).map(|(_, v)| v).unwrap_or_default();
    Ok(axum::Json(views::ProcessDetail {
        id,
        label: d.model.label.clone(),
        doc: d.model.doc.clone(),
        source_sections: d.model.source.clone(),
        latest_version: d.version,
        versions,
        steps: d
            .model
            .steps
            .iter()
            .map(|s| views::StepSummary { name: s.name.clone(), label: s.label.clone() })
            .collect(),
        outcomes: d.model.outcomes().map(|s| s.name.clone()).collect(),
        source: d.source.clone(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SchemaQuery {
    /// A deployed version; the latest by default.
    version: Option<u32>,
}

/// A process's data, as JSON Schema
///
/// The JSON Schema (2020-12) of the fields a start takes and of each task's form: types,
/// choices as enums, ranges, the required ones, labels as titles, defaults. A body that
/// validates against it is what the engine accepts (users are checked against the rules'
/// people, whom the schema lists). Consoles build their forms from it.
#[utoipa::path(
    get,
    path = "/processes/{id}/schema",
    params(("id" = String, Path, description = "Process id"), SchemaQuery),
    responses(
        (status = 200, description = "`start`: the start fields' schema; `tasks`: each task step's form; `outcomes`: the ends a case can reach", body = views::ProcessSchema),
        (status = 404, description = "No such process or version")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn process_schema(
    State(state): State<Shared>,
    _caller: Caller,
    Path(id): Path<String>,
    Q(q): Q<SchemaQuery>,
) -> Result<axum::Json<views::ProcessSchema>, ApiError> {
    let d = state
        .engine
        .definition(&id, q.version)
        .ok_or_else(|| ApiError::unknown_process(format!("no process `{id}` in that version")))?;
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
    let outcomes = model.outcomes().map(|s| s.name.clone()).collect();
    Ok(axum::Json(views::ProcessSchema { process: id, version: d.version, start: start_schema, tasks, outcomes }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiffQuery {
    /// The older deployed version.
    from: u32,
    /// The newer one; the latest by default.
    to: Option<u32>,
}

/// What changed between two versions
///
/// The structural diff of two deployed versions of a process, as `caseflow diff` prints it:
/// fields and steps added, removed, renamed and changed, and for a changed step each clause
/// (assignment, deadline, what it asks, handlers, transitions) as it was and as it is.
#[utoipa::path(
    get,
    path = "/processes/{id}/diff",
    params(("id" = String, Path, description = "Process id"), DiffQuery),
    responses(
        (status = 200, description = "The changes from `from` to `to`", body = views::VersionDiff),
        (status = 404, description = "No such process or version")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn process_diff(
    State(state): State<Shared>,
    _caller: Caller,
    Path(id): Path<String>,
    Q(q): Q<DiffQuery>,
) -> Result<axum::Json<views::VersionDiff>, ApiError> {
    let version = |v: Option<u32>| {
        state.engine.definition(&id, v).ok_or_else(|| match v {
            Some(v) => ApiError::unknown_process(format!("no process `{id}` in version {v}")),
            None => ApiError::unknown_process(format!("no process `{id}`")),
        })
    };
    let (from, to) = (version(Some(q.from))?, version(q.to)?);
    // A deployed source parsed when it was deployed; it parses again (the language only grows).
    let parse = |source: &str| {
        caseflow_dsl::parse::parse(source).map_err(|_| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "a deployed version no longer parses")
        })
    };
    let changes = caseflow_dsl::diff::diff(&parse(&from.source)?, &parse(&to.source)?);
    Ok(axum::Json(views::VersionDiff { process: id, from: from.version, to: to.version, changes }))
}

/// One field's JSON Schema, as the engine checks its values.
pub(crate) fn field_schema(f: &caseflow_dsl::model::Field, rules: &caseflow_engine::RuleSet) -> Json {
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
pub(crate) fn literal_json(e: &caseflow_dsl::ast::Expr) -> Option<Json> {
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
pub(crate) struct DiagramQuery {
    /// `svg` (default), `dot` or `mermaid`.
    format: Option<String>,
    /// A deployed version; the latest by default.
    version: Option<u32>,
}

/// A process diagram
///
/// SVG (default), DOT or Mermaid.
#[utoipa::path(
    get,
    path = "/processes/{id}/diagram",
    params(("id" = String, Path, description = "Process id"), DiagramQuery),
    responses(
        (status = 200, description = "The process graph as SVG (image/svg+xml, drawn in Rust), DOT (text/vnd.graphviz) or Mermaid (text/plain)", content((String = "image/svg+xml", example = json!("<svg xmlns=\"http://www.w3.org/2000/svg\">...</svg>")), (String = "text/vnd.graphviz", example = json!("digraph { ... }")), (String = "text/plain", example = json!("flowchart TD\n  start__((\"start\"))"))))
    ),
    security(("bearer" = []))
)]
pub(crate) async fn diagram(
    State(state): State<Shared>,
    _caller: Caller,
    Path(id): Path<String>,
    Q(q): Q<DiagramQuery>,
) -> Result<Response, ApiError> {
    let d = state
        .engine
        .definition(&id, q.version)
        .ok_or_else(|| ApiError::unknown_process(format!("no process `{id}` in that version")))?;
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

/// `POST /processes` as JSON.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"source": "process hello {\n  source \"002\"\n  start -> done\n  end done\n}\n"}))]
pub(crate) struct DeployRequest {
    /// The `.flow` text.
    source: String,
}

impl TextRequest for DeployRequest {
    const FIELD: &'static str = "source";
    fn into_text(self) -> String {
        self.source
    }
}

/// Deploy a process
///
/// Checks a `.flow` source (the body, as text) with the rules and the other deployed processes, and deploys it as a new version if it changed. Running cases stay on their version.
#[utoipa::path(
    post,
    path = "/processes",
    // JSON only in the document: the common generators (openapi-python-client among them)
    // drop a body that may also be text/plain. The server still takes the text, for curl.
    request_body(description = "A .flow source as JSON `{\"source\": \"...\"}`. The server also takes the source itself with `Content-Type: text/plain` (for curl).", content = DeployRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Deployed as a new version", body = caseflow_engine::DeployOutcome),
        (status = 200, description = "Unchanged: same as the latest version", body = caseflow_engine::DeployOutcome),
        (status = 403, description = "Administrators only"),
        (status = 422, description = "Refused, with the diagnostics of caseflow check")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn deploy(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    require_admin(&actor)?;
    let body = text_body::<DeployRequest>(&headers, body)?;
    let now = state.clock.now();
    let engine = state.engine.clone();
    let text = body.clone();
    let result = tokio::task::spawn_blocking(move || engine.deploy(&text, now))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the request failed"))?;
    match result {
        Ok(outcome) => {
            let status = if outcome.changed { StatusCode::CREATED } else { StatusCode::OK };
            Ok((status, axum::Json(outcome)).into_response())
        }
        Err(EngineError::Rejected(diagnostics)) => Ok(ApiError::invalid_definition(&diagnostics, "deploy.flow", &body)),
        Err(e) => Err(e.into()),
    }
}

/// Scenarios one request may run.
const TEST_SCENARIOS_MAX: usize = 50;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"source": "process complaint { ... }", "scenarios": [{"name": "happy_path.toml", "text": "description = \"...\"\nprocess = \"complaint\"\nstart_at = \"2026-11-23T10:00\"\n..."}], "coverage": true}))]
pub(crate) struct TestRequest {
    /// The `.flow` source to test, not deployed; the latest deployed version by default.
    source: Option<String>,
    /// Scenario files (docs/testing.md), at most 50.
    scenarios: Vec<TestScenario>,
    /// Also report what the scenarios did not reach of the process.
    #[serde(default)]
    coverage: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestScenario {
    /// The name failures are reported under.
    name: String,
    /// The scenario's TOML text.
    text: String,
}

/// Run scenarios against a source
///
/// Runs scenario files, as `caseflow test` does, against a `.flow` source that is not deployed
/// (or the latest deployed version), the other processes as deployed and the rules in force,
/// in memory on a manual clock: nothing is stored and nothing is deployed. Administrators
/// only. A failed scenario is a 200 with `failed` > 0; a source that does not check is a 422.
#[utoipa::path(
    post,
    path = "/processes/{id}/test",
    params(("id" = String, Path, description = "Process id")),
    request_body = TestRequest,
    responses(
        (status = 200, description = "Every scenario's result", body = views::TestReport),
        (status = 400, description = "No scenario, more than 50, or a source of another process"),
        (status = 403, description = "Administrators only"),
        (status = 404, description = "No such process and no source given"),
        (status = 422, description = "The source does not check, with the diagnostics of caseflow check")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn test_process(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
    Path(id): Path<String>,
    Body(req): Body<TestRequest>,
) -> Result<Response, ApiError> {
    use caseflow_engine::scenario::{self, ScenarioFile, Setup};
    require_admin(&actor)?;
    if req.scenarios.is_empty() || req.scenarios.len() > TEST_SCENARIOS_MAX {
        return Err(ApiError::bad_request(format!(
            "send from 1 to {TEST_SCENARIOS_MAX} scenarios ({} sent)",
            req.scenarios.len()
        )));
    }
    let engine = state.engine.clone();
    let source = match req.source {
        Some(s) => s,
        None => engine
            .definition(&id, None)
            .ok_or_else(|| ApiError::unknown_process(format!("no process `{id}`")))?
            .source
            .clone(),
    };
    blocking(move || {
        match caseflow_dsl::parse::parse(&source) {
            Err(diagnostics) => return Ok(ApiError::invalid_definition(&diagnostics, "deploy.flow", &source)),
            Ok(ast) if ast.id.name != id => {
                return Err(ApiError::bad_request(format!("the source defines process `{}`, not `{id}`", ast.id.name)))
            }
            Ok(_) => {}
        }
        let rules = engine.rules();
        // The other processes as deployed, so that calls between them check and run.
        let mut sources = vec![caseflow_dsl::SourceFile { name: format!("{id}.flow"), text: source.clone() }];
        for (other, _) in engine.definitions() {
            if other != id {
                if let Some(d) = engine.definition(&other, None) {
                    sources.push(caseflow_dsl::SourceFile { name: format!("{other}.flow"), text: d.source.clone() });
                }
            }
        }
        let reports = caseflow_dsl::check_files(&sources, Some(&rules.catalog()));
        let checked = &reports[0].checked;
        if checked.diagnostics.iter().any(|d| d.is_error()) {
            return Ok(ApiError::invalid_definition(&checked.diagnostics, "deploy.flow", &source));
        }
        let setup = Setup::new(sources, (*rules).clone()).map_err(|refusals| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-definition", refusals.join("; "))
        })?;
        let outcomes: Vec<_> = req
            .scenarios
            .into_iter()
            .map(|s| scenario::run(&setup, &ScenarioFile { name: s.name, text: s.text, dir: None }, MemoryStore::new()))
            .collect();
        let failed = outcomes.iter().filter(|o| !o.passed()).count();
        let coverage = req.coverage.then(|| {
            let reached = outcomes.iter().flat_map(|o| o.reached.iter().cloned()).collect();
            scenario::coverage([id.as_str()], setup.models(), &reached, true)
        });
        let report = views::TestReport {
            process: id,
            passed: outcomes.len() - failed,
            failed,
            scenarios: outcomes,
            coverage: coverage.and_then(|c| c.into_iter().next()),
        };
        Ok(axum::Json(report).into_response())
    })
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"from": 1, "to": 2, "mapping": {"remote_assistance": "onsite_visit"}, "dry_run": true}))]
pub(crate) struct MigrationRequest {
    /// The version the cases are on.
    from: u32,
    /// The version to move them to.
    to: u32,
    /// Old step name to new step name, for steps the new version removed or replaced; other
    /// steps go to the step `renamed from` them, or to the step of the same name.
    #[serde(default)]
    mapping: std::collections::BTreeMap<String, String>,
    /// Report where every case would land, and change nothing.
    #[serde(default)]
    dry_run: bool,
}

/// Migrate running cases to another version
///
/// Moves the running cases of version `from` to version `to` (`dry_run`: only says what would
/// happen): where each lands, which open tasks stay, close or open, which deadlines are
/// computed again, and which cases cannot move and why (a step with no counterpart and no
/// mapping, a new required field without a default, …). Each case moves in one atomic write
/// with a `migrated` history entry; cases that cannot move stay on their version.
/// Administrators only.
#[utoipa::path(
    post,
    path = "/processes/{id}/migrations",
    params(("id" = String, Path, description = "Process id")),
    request_body = MigrationRequest,
    responses(
        (status = 200, description = "What was done (or would be, in a dry run)", body = caseflow_engine::MigrationReport),
        (status = 403, description = "Administrators only"),
        (status = 404, description = "No such process or version"),
        (status = 422, description = "The same version twice, or a mapping naming steps the versions do not have")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn migrate(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
    Path(id): Path<String>,
    Body(req): Body<MigrationRequest>,
) -> Result<axum::Json<caseflow_engine::MigrationReport>, ApiError> {
    require_admin(&actor)?;
    let engine = state.engine.clone();
    let now = state.clock.now();
    let order = caseflow_engine::MigrationOrder {
        process: id,
        from: req.from,
        to: req.to,
        mapping: req.mapping,
        dry_run: req.dry_run,
        by: actor,
    };
    let report = blocking(move || Ok(engine.migrate(&order, now)?)).await?;
    Ok(axum::Json(report))
}
