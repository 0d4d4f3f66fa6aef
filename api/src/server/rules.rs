//! `/admin/rules`: the rules in force, reloading and uploading files (all or nothing),
//! the change log, reassigning a user's work, evaluating a decision table; and opening the
//! engine on the rules a restart finds.

use super::auth::{require_admin, require_permission, Caller};
use super::blocking;
use super::error::ApiError;
use super::extract::{Body, Q};
use super::json::{from_json, text_body, to_json, TextRequest};
use super::tasks::ReassignRequest;
use super::views;
use super::{AppState, Shared};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use caseflow_engine::sync::Unpoisoned;
use caseflow_engine::{Engine, EngineError};
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use std::collections::BTreeSet;

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
pub fn read_rules_dir_by_file_name(dir: &std::path::Path) -> std::io::Result<Vec<caseflow_engine::RulesFile>> {
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
    store: impl Into<caseflow_engine::AnyStorage>,
    dir: &std::path::Path,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Started> {
    use caseflow_engine::RuleSet;
    let store: caseflow_engine::AnyStorage = store.into();
    let stored = Engine::rules_files_in_force(&store)?;
    let folder =
        read_rules_dir_by_file_name(dir).map_err(|e| format!("reading the rules folder: {e}")).and_then(|files| {
            match RuleSet::load(&files) {
                Ok(rules) => Ok((rules, files)),
                Err(errors) => Err(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")),
            }
        });
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
    pub(crate) fn problems(&self) -> usize {
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
    *state.rules_refused.lock().unpoisoned() = refused;
    result
}

/// Validates the folder (with `replacement` standing in for one file, if given) and, if every
/// file and every deployed process agree, puts it in force. On any problem the old rules stay.
/// The folder's rules files with `replacement` (name, text) in place of or beside its file of
/// that name, validated: what a reload or an upload would put in force.
pub(crate) fn candidate_rules(
    state: &AppState,
    replacement: Option<(&str, &str)>,
) -> Result<(caseflow_engine::RuleSet, Vec<caseflow_engine::RulesFile>), ApiError> {
    let dir = state
        .rules_dir
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "no-rules-dir", "this server has no rules folder"))?;
    let mut files = read_rules_dir_by_file_name(dir).map_err(|e| {
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
    Ok((rules, files))
}

/// A deployed process that would not check against new rules refuses them.
fn refused_by_processes(e: EngineError) -> ApiError {
    match e {
        EngineError::Rejected(d) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "rules-break-processes",
            format!(
                "deployed processes would break: {}",
                d.iter().map(|d| d.message.clone()).collect::<Vec<_>>().join("; ")
            ),
        ),
        other => other.into(),
    }
}

pub(crate) fn apply_rules_folder(
    state: &AppState,
    by: &str,
    replacement: Option<(&str, &str)>,
) -> Result<caseflow_engine::service::RulesChange, ApiError> {
    let (rules, files) = candidate_rules(state, replacement)?;
    let mut current = state.rules_files.lock().unpoisoned();
    if *current == files {
        return Err(ApiError::new(StatusCode::CONFLICT, "unchanged", "the rules files have not changed"));
    }
    let diff = rules_diff(&current, &files);
    let change = state.engine.change_rules(rules, &files, by, diff, state.clock.now()).map_err(refused_by_processes)?;
    *current = files;
    Ok(change)
}

/// The rules in force
///
/// Their version, time zone, roles, users, named values and decision tables. Administrators and holders of `read_rules`; problems of a refused rules folder are listed under `refused`.
#[utoipa::path(
    get,
    path = "/admin/rules",
    responses(
        (status = 200, description = "The rules version and the names in force", body = views::RulesInForce)
    ),
    security(("bearer" = []))
)]
pub(crate) async fn rules_in_force(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
) -> Result<axum::Json<views::RulesInForce>, ApiError> {
    require_permission(&state, &actor, "read_rules", "reading the rules in force")?;
    let rules = state.engine.rules();
    let refused = state.rules_refused.lock().unpoisoned().clone();
    Ok(axum::Json(views::RulesInForce {
        version: state.engine.rules_version(),
        files: state.rules_files.lock().unpoisoned().iter().map(|f| f.name.clone()).collect(),
        refused: refused.map(|r| views::RefusedRules {
            at: r.at.to_rfc3339(),
            problems: r.detail.lines().map(str::to_string).collect(),
        }),
        time_zone: rules.calendar.time_zone.to_string(),
        roles: rules.roles.keys().cloned().collect(),
        users: rules.users.keys().cloned().collect(),
        values: rules.values.keys().cloned().collect(),
        decision_tables: rules
            .tables
            .iter()
            .map(|(n, t)| views::TableSummary {
                name: n.clone(),
                hit_policy: t.hit_policy,
                inputs: t.inputs.clone(),
                outputs: t.outputs.clone(),
                rows: t.rows.len(),
            })
            .collect(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReloadQuery {
    /// Also recompute the deadlines of open tasks under the new rules.
    #[serde(default)]
    recompute: bool,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct UploadQuery {
    /// Also recompute the deadlines of open tasks under the new rules.
    #[serde(default)]
    recompute: bool,
    /// Apply nothing and write nothing: answer what the file would change (`diff`) and what
    /// it would do to open work (`impact`): deadlines move only with `recompute=true`.
    #[serde(default)]
    dry_run: bool,
}

/// Reload the rules folder
///
/// Validates every file and every deployed process against the new names; applies all of it or nothing. `recompute=true` also moves the deadlines of open tasks.
#[utoipa::path(
    post,
    path = "/admin/rules/reload",
    params(ReloadQuery),
    responses(
        (status = 200, description = "Applied: version, who, when, diff", body = views::RulesChange),
        (status = 409, description = "Unchanged"),
        (status = 422, description = "Refused with every error; the old rules stay")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn reload_rules(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
    Q(q): Q<ReloadQuery>,
) -> Result<axum::Json<views::RulesChange>, ApiError> {
    require_admin(&actor)?;
    let s = state.clone();
    let (change, recomputed) = blocking(move || {
        let change = reload_rules_from_dir(&s, &actor.id)?;
        let recomputed = if q.recompute { Some(s.engine.recompute_deadlines(s.clock.now())?) } else { None };
        Ok((change, recomputed))
    })
    .await?;
    Ok(axum::Json(views::RulesChange::of(&change, recomputed)))
}

/// `PUT /admin/rules/files/{name}` as JSON.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"text": "[values.response_time]\nhigh = \"10min\"\nmedium = \"4 workhours\"\nlow = \"1 workday\"\n"}))]
pub(crate) struct RulesFileRequest {
    /// The TOML text of the file.
    text: String,
}

impl TextRequest for RulesFileRequest {
    const FIELD: &'static str = "text";
    fn into_text(self) -> String {
        self.text
    }
}

/// Replace one rules file
///
/// Replaces (or adds) one rules file: validated with the rest of the folder, applied, then
/// written to the folder (a temporary file renamed into place, so no reader sees half). With
/// `dry_run=true` nothing is applied or written: the answer is the diff and the impact on open
/// work (deadlines that would move and by how much, tasks that would be overdue at once).
#[utoipa::path(
    put,
    path = "/admin/rules/files/{name}",
    params(("name" = String, Path, description = "File name, snake_case.toml"), UploadQuery),
    // JSON only in the document, as for `POST /processes`; text/plain is still taken.
    request_body(description = "The file as JSON `{\"text\": \"...\"}`. The server also takes the file itself with `Content-Type: text/plain` (for curl).", content = RulesFileRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Applied and written; or, with `dry_run`, what it would do", body = views::RulesUpload),
        (status = 422, description = "Refused; nothing written")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn upload_rules_file(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
    Q(q): Q<UploadQuery>,
    body: String,
) -> Result<axum::Json<views::RulesUpload>, ApiError> {
    require_admin(&actor)?;
    let body = text_body::<RulesFileRequest>(&headers, body)?;
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
    if q.dry_run {
        let s = state.clone();
        return blocking(move || {
            let (rules, files) = candidate_rules(&s, Some((&name, &body)))?;
            let diff = rules_diff(&s.rules_files.lock().unpoisoned(), &files);
            let impact = s.engine.rules_impact(&rules, q.recompute, s.clock.now()).map_err(refused_by_processes)?;
            Ok(axum::Json(views::RulesUpload::Preview(views::RulesPreview { dry_run: true, diff, impact })))
        })
        .await;
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
                *s.rules_refused.lock().unpoisoned() = None;
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
    Ok(axum::Json(views::RulesUpload::Applied(views::RulesChange::of(&change, recomputed))))
}

/// Give all of a user's tasks to another
///
/// Gives all open tasks of a user to another: a user removed from a role keeps their tasks
/// until this is called.
#[utoipa::path(
    post,
    path = "/admin/users/{user}/reassign",
    params(("user" = String, Path, description = "User id")),
    request_body = ReassignRequest,
    responses(
        (status = 200, description = "How many tasks moved", body = views::Reassigned)
    ),
    security(("bearer" = []))
)]
pub(crate) async fn reassign_user(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
    Path(user): Path<String>,
    Body(req): Body<ReassignRequest>,
) -> Result<axum::Json<views::Reassigned>, ApiError> {
    require_permission(&state, &actor, "reassign", "moving a user's tasks")?;
    let s = state.clone();
    let n = blocking(move || Ok(s.engine.reassign_all(&user, &req.to, &actor, &req.reason, s.clock.now())?)).await?;
    Ok(axum::Json(views::Reassigned { reassigned: n }))
}

/// Every accepted rules change
///
/// Oldest first: version, who, when and a per-file unified diff. Administrators only.
#[utoipa::path(
    get,
    path = "/admin/rules/changes",
    responses(
        (status = 200, description = "Every accepted change", body = views::RulesChanges)
    ),
    security(("bearer" = []))
)]
pub(crate) async fn rules_changes(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
) -> Result<axum::Json<views::RulesChanges>, ApiError> {
    require_admin(&actor)?;
    let s = state.clone();
    let changes = blocking(move || Ok(s.engine.rules_changes()?)).await?;
    Ok(axum::Json(views::RulesChanges { changes }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"inputs": {"probability": 5, "impact": 4}}))]
pub(crate) struct EvaluateRequest {
    #[schema(value_type = Object)]
    inputs: Map<String, Json>,
}

/// Try a decision table
///
/// Evaluates the table on the given inputs and answers the rows hit and their outputs, without touching any case.
#[utoipa::path(
    post,
    path = "/admin/rules/tables/{name}/evaluate",
    params(("name" = String, Path, description = "Decision table")),
    request_body = EvaluateRequest,
    responses(
        (status = 200, description = "Rows hit and their outputs", body = views::TableHits),
        (status = 404, description = "No such table")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn evaluate_table(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
    Path(name): Path<String>,
    Body(req): Body<EvaluateRequest>,
) -> Result<axum::Json<views::TableHits>, ApiError> {
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
    let hits = hits
        .0
        .iter()
        .map(|&row| views::TableHit {
            row,
            line: table.rows[row].line,
            outputs: table.outputs.iter().zip(&table.rows[row].outputs).map(|(n, v)| (n.clone(), to_json(v))).collect(),
        })
        .collect();
    Ok(axum::Json(views::TableHits { table: name, rules_version: state.engine.rules_version(), hits }))
}
