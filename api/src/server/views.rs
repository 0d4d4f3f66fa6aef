//! The bodies the API answers with, one type per body: a handler returns `Json<View>`, serde
//! writes the JSON from the type and utoipa documents the same type in `/openapi.json`, so a
//! body and its description cannot disagree. Bodies the engine already shapes (a migration
//! report, a rules impact, a diff, a report, a scenario's result, an event) are the engine's
//! own types, which describe themselves under the `openapi` feature.
//!
//! Times are RFC 3339 text as `DateTime::to_rfc3339` writes them (`+00:00`), as they always
//! were on these bodies.

use super::error::ApiError;
use super::json::to_json;
use super::AppState;
use caseflow_core::case::{self, Actor, StatusKind};
use caseflow_core::sla::SlaClock;
use caseflow_core::value::Value;
use serde::Serialize;
use serde_json::{Map, Value as Json};
use utoipa::ToSchema;

/// Why a case stopped: the step and the error (`retry` runs the step again after a fix).
#[derive(Serialize, ToSchema)]
pub struct Incident {
    pub step: String,
    pub reason: String,
}

/// An open task of a case.
#[derive(Serialize, ToSchema)]
pub struct Task {
    /// `INSTANCE-SEQ`, e.g. `1-2`.
    #[schema(example = "1-2")]
    pub id: String,
    pub instance: u64,
    pub business_key: String,
    /// The step's label.
    pub name: String,
    pub step: String,
    /// The item of a `for each` task.
    pub item: Option<String>,
    pub assignee: Option<String>,
    pub delegated_by: Option<String>,
    /// Roles that may take it.
    pub candidates: Vec<String>,
    pub claimed: bool,
    pub priority: u8,
    #[schema(format = DateTime)]
    pub opened_at: String,
    #[schema(format = DateTime)]
    pub due_at: Option<String>,
    pub overdue: bool,
    /// The SLA clock on the business calendar; `null` for a task without a deadline.
    pub sla: Option<SlaClock>,
    /// Who started working on it (`POST /tasks/{id}/start`), while they hold it.
    pub started_by: Option<String>,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    /// Answers saved to finish later (`PUT /tasks/{id}/draft`).
    pub draft: Option<TaskDraft>,
}

/// A task's saved answers: who saved them, when, and the values (sensitive ones `***` for
/// service tokens).
#[derive(Serialize, ToSchema)]
pub struct TaskDraft {
    pub by: String,
    #[schema(format = DateTime)]
    pub at: String,
    #[schema(value_type = Object)]
    pub fields: Map<String, Json>,
}

impl Task {
    pub fn of(inst: &case::Instance, t: &case::Task, sla: Option<SlaClock>, masking: &Masking) -> Task {
        Task {
            id: inst.task_id(t.seq).to_string(),
            instance: inst.id.0,
            business_key: inst.business_key.clone(),
            name: t.name.clone(),
            step: t.step_name.clone(),
            item: t.item.clone(),
            assignee: t.assignee.clone(),
            delegated_by: t.delegated_by.clone(),
            candidates: t.candidates.clone(),
            claimed: t.claimed,
            priority: t.priority,
            opened_at: t.opened_at.to_rfc3339(),
            due_at: t.due_at.map(|d| d.to_rfc3339()),
            overdue: t.overdue,
            sla,
            started_by: t.started.as_ref().map(|s| s.by.clone()),
            started_at: t.started.as_ref().map(|s| s.at.to_rfc3339()),
            draft: t.draft.as_ref().map(|d| TaskDraft {
                by: d.by.clone(),
                at: d.at.to_rfc3339(),
                fields: d.fields.iter().map(|(k, v)| (k.clone(), masking.show(k, v))).collect(),
            }),
        }
    }
}

/// A pending timer: a deadline, an escalation, a reminder, a wait.
#[derive(Serialize, ToSchema)]
pub struct Timer {
    pub seq: u32,
    #[schema(format = DateTime)]
    pub due_at: String,
    /// Internally tagged: `{"kind": "due", "task": 2}`, `{"kind": "reminder", ...}`.
    #[schema(value_type = Object)]
    pub kind: Json,
}

/// A sub-process case a case started.
#[derive(Serialize, ToSchema)]
pub struct SubCase {
    pub id: u64,
    pub process: String,
    #[schema(value_type = StatusKind)]
    pub status: String,
    /// A `call` step waits for it now.
    pub waited_for: bool,
}

/// A message kept until a step listens for it.
#[derive(Serialize, ToSchema)]
pub struct KeptMessage {
    pub name: String,
    #[schema(format = DateTime)]
    pub kept_at: String,
    #[schema(format = DateTime)]
    pub until: String,
}

/// A case: its fields, where it is, and what waits in it.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "business_key": "20261123-001", "process": "complaint", "version": 1, "status": "running", "outcome": null, "cancel_reason": null, "incident": null, "fields": {"customer": "第一中学", "contact": "***", "content": "投影仪无法开机", "urgency": "high", "channel": "phone", "resolved": false}, "current_steps": ["receive"], "tasks": [{"id": "1-2", "instance": 1, "business_key": "20261123-001", "name": "接收并登记", "step": "receive", "item": null, "assignee": "liu_yang", "delegated_by": null, "candidates": ["cs_rep"], "claimed": false, "priority": 0, "opened_at": "2026-11-23T02:00:00Z", "due_at": "2026-11-23T02:10:00Z", "overdue": false, "sla": {"allowed_minutes": 10, "elapsed_minutes": 0, "remaining_minutes": 10, "percent_used": 0, "running": true}}], "timers": [{"seq": 3, "due_at": "2026-11-23T02:10:00Z", "kind": {"kind": "due", "task": 2}}], "started_at": "2026-11-23T02:00:00Z", "updated_at": "2026-11-23T02:00:00Z", "parent": null, "sub_cases": [], "kept_messages": []}))]
pub struct Instance {
    pub id: u64,
    #[schema(example = "20261123-001")]
    pub business_key: String,
    pub process: String,
    pub version: u32,
    /// One shape for a case's status everywhere: its name; what ended or stopped it beside.
    pub status: StatusKind,
    /// The end it reached, when completed.
    pub outcome: Option<String>,
    pub cancel_reason: Option<String>,
    pub incident: Option<Incident>,
    /// The process's fields (sensitive ones `***` for service tokens).
    #[schema(value_type = Object)]
    pub fields: Map<String, Json>,
    pub current_steps: Vec<String>,
    pub tasks: Vec<Task>,
    pub timers: Vec<Timer>,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// The case this one runs for as a sub-process.
    pub parent: Option<u64>,
    /// Every case it started (ended ones too), those it waits for now marked.
    pub sub_cases: Vec<SubCase>,
    /// Messages that came before a step listened for them (`keep message`).
    pub kept_messages: Vec<KeptMessage>,
}

/// What a caller may see of a case's field values: service tokens (integrated systems) see
/// sensitive values masked, whatever roles they act in; people and administrators see them.
pub struct Masking {
    def: Option<std::sync::Arc<caseflow_engine::service::Deployed>>,
    may_see: bool,
}

impl Masking {
    pub fn for_caller(state: &AppState, inst: &case::Instance, actor: &Actor, service: bool) -> Self {
        Masking { def: state.engine.definition(&inst.process, Some(inst.version)), may_see: actor.admin || !service }
    }

    pub fn show(&self, field: &str, v: &Value) -> Json {
        let sensitive = self.def.as_ref().and_then(|d| d.model.field(field)).is_some_and(|f| f.sensitive);
        if sensitive && !self.may_see {
            Json::String("***".into())
        } else {
            to_json(v)
        }
    }
}

impl Instance {
    pub fn of(state: &AppState, inst: &case::Instance, actor: &Actor, service: bool) -> Result<Instance, ApiError> {
        let masking = Masking::for_caller(state, inst, actor, service);
        let def = masking.def.clone();
        // Only a process with a `call` step can have sub-process cases: the others skip the scan.
        let calls = def
            .as_ref()
            .is_some_and(|d| d.model.steps.iter().any(|s| matches!(s.kind, caseflow_dsl::model::StepKind::Call(_))));
        let sub_cases = if calls {
            state
                .engine
                .sub_cases(inst.id)?
                .into_iter()
                .map(|c| SubCase {
                    id: c.id.0,
                    process: c.process,
                    status: c.status,
                    waited_for: inst.children.values().any(|w| *w == c.id),
                })
                .collect()
        } else {
            Vec::new()
        };
        let rules = state.engine.rules();
        let now = state.clock.now();
        Ok(Instance {
            id: inst.id.0,
            business_key: inst.business_key.clone(),
            process: inst.process.clone(),
            version: inst.version,
            status: inst.status.kind(),
            outcome: match &inst.status {
                case::Status::Completed { outcome } => Some(outcome.clone()),
                _ => None,
            },
            cancel_reason: match &inst.status {
                case::Status::Cancelled { reason } => Some(reason.clone()),
                _ => None,
            },
            incident: match &inst.status {
                case::Status::Incident { step, reason } => {
                    Some(Incident { step: step.clone(), reason: reason.clone() })
                }
                _ => None,
            },
            fields: inst.fields.iter().map(|(k, v)| (k.clone(), masking.show(k, v))).collect(),
            current_steps: inst
                .tokens
                .values()
                .filter_map(|tok| def.as_ref().map(|d| d.model.step(tok.step).name.clone()))
                .collect(),
            tasks: inst
                .tasks
                .values()
                .map(|t| Task::of(inst, t, caseflow_core::sla::task_clock(t, &rules.calendar, now), &masking))
                .collect(),
            timers: inst
                .timers
                .values()
                .map(|t| Timer { seq: t.seq, due_at: t.due_at.to_rfc3339(), kind: timer_kind(&t.kind) })
                .collect(),
            started_at: inst.started_at.to_rfc3339(),
            updated_at: inst.updated_at.to_rfc3339(),
            parent: inst.parent.map(|(p, _)| p.0),
            sub_cases,
            kept_messages: inst
                .mailbox
                .iter()
                .map(|m| KeptMessage {
                    name: m.name.clone(),
                    kept_at: m.kept_at.to_rfc3339(),
                    until: m.until.to_rfc3339(),
                })
                .collect(),
        })
    }
}

/// A timer's kind, internally tagged: `{"kind": "due", "task": 2}` (the engine stores Rust's
/// externally tagged shape, `{"Due": {"task": 2}}`, which is no shape for an API).
fn timer_kind(kind: &case::TimerKind) -> Json {
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
    let mut out = Map::new();
    match serde_json::to_value(kind).unwrap_or(Json::Null) {
        Json::String(unit) => {
            out.insert("kind".into(), Json::String(snake(&unit)));
        }
        Json::Object(map) if map.len() == 1 => {
            let (name, inner) = map.into_iter().next().expect("one entry");
            out.insert("kind".into(), Json::String(snake(&name)));
            match inner {
                Json::Object(fields) => out.extend(fields),
                Json::Null => {}
                other => {
                    out.insert("value".into(), other);
                }
            }
        }
        other => return other,
    }
    Json::Object(out)
}

/// A completed task's case, and the tasks of it that are now the caller's, to go on with.
#[derive(Serialize, ToSchema)]
pub struct Completed {
    #[serde(flatten)]
    pub instance: Instance,
    /// Open tasks of this case assigned to the caller now (ids).
    pub next_for_you: Vec<String>,
}

/// A case in a list.
#[derive(Serialize, ToSchema)]
pub struct InstanceRow {
    pub id: u64,
    pub business_key: String,
    pub process: String,
    pub version: u32,
    pub status: StatusKind,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&case::Instance> for InstanceRow {
    fn from(i: &case::Instance) -> Self {
        InstanceRow {
            id: i.id.0,
            business_key: i.business_key.clone(),
            process: i.process.clone(),
            version: i.version,
            status: i.status.kind(),
            started_at: i.started_at.to_rfc3339(),
            updated_at: i.updated_at.to_rfc3339(),
        }
    }
}

/// A page of cases, oldest first.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"instances": [{"id": 1, "business_key": "20261123-001", "process": "complaint", "version": 1, "status": "running", "started_at": "2026-11-23T02:00:00Z", "updated_at": "2026-11-23T02:00:00Z"}], "next_cursor": "1"}))]
pub struct InstancePage {
    pub instances: Vec<InstanceRow>,
    /// Pass back as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// A task in an inbox.
#[derive(Serialize, ToSchema)]
pub struct TaskRow {
    pub id: String,
    pub instance: u64,
    pub business_key: String,
    pub process: String,
    pub name: String,
    pub step: String,
    pub item: Option<String>,
    pub assignee: Option<String>,
    #[schema(format = DateTime)]
    pub due_at: Option<String>,
    pub overdue: bool,
    pub priority: u8,
}

impl From<&caseflow_engine::service::TaskView> for TaskRow {
    fn from(t: &caseflow_engine::service::TaskView) -> Self {
        TaskRow {
            id: format!("{}-{}", t.instance, t.task.seq),
            instance: t.instance.0,
            business_key: t.business_key.clone(),
            process: t.process.clone(),
            name: t.task.name.clone(),
            step: t.task.step_name.clone(),
            item: t.task.item.clone(),
            assignee: t.task.assignee.clone(),
            due_at: t.task.due_at.map(|d| d.to_rfc3339()),
            overdue: t.task.overdue,
            priority: t.task.priority,
        }
    }
}

/// A page of open tasks, soonest deadline first.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"tasks": [{"id": "1-2", "instance": 1, "business_key": "20261123-001", "process": "complaint", "name": "接收并登记", "step": "receive", "item": null, "assignee": "liu_yang", "due_at": "2026-11-23T02:10:00Z", "overdue": false, "priority": 0}], "next_cursor": null}))]
pub struct TaskPage {
    pub tasks: Vec<TaskRow>,
    pub next_cursor: Option<String>,
}

/// A field's change in a history entry.
#[derive(Serialize, ToSchema)]
pub struct FieldChange {
    pub field: String,
    /// Any JSON value (the field's type), `null` when it was not set.
    pub old: Option<serde_json::Value>,
    pub new: serde_json::Value,
}

/// One event of a case's audit trail.
#[derive(Serialize, ToSchema)]
pub struct HistoryEntry {
    pub seq: u64,
    #[schema(format = DateTime)]
    pub at: String,
    pub actor: String,
    /// `started`, `task_opened`, `task_completed`, `escalated`, ...
    #[schema(value_type = String)]
    pub event: case::HistoryEvent,
    pub step: Option<String>,
    pub detail: String,
    pub changes: Vec<FieldChange>,
    /// How late a task was completed, in milliseconds past its deadline.
    pub lateness_ms: Option<i64>,
    pub rules_version: u64,
}

impl HistoryEntry {
    pub fn of(h: &case::HistoryEntry, masking: &Masking) -> HistoryEntry {
        HistoryEntry {
            seq: h.seq,
            at: h.at.to_rfc3339(),
            actor: h.actor.clone(),
            event: h.event,
            step: h.step.clone(),
            detail: h.detail.clone(),
            changes: h
                .changes
                .iter()
                .map(|(f, old, new)| FieldChange {
                    field: f.clone(),
                    old: old.as_ref().map(|o| masking.show(f, o)),
                    new: masking.show(f, new),
                })
                .collect(),
            lateness_ms: h.lateness_ms,
            rules_version: h.rules_version,
        }
    }
}

/// A case's audit trail, in order.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"history": [{"seq": 0, "at": "2026-11-23T02:00:00Z", "actor": "crm", "event": "started", "step": null, "detail": "business key 20261123-001", "changes": [{"field": "urgency", "old": null, "new": "high"}], "lateness_ms": null, "rules_version": 0}, {"seq": 2, "at": "2026-11-23T02:00:00Z", "actor": "crm", "event": "task_opened", "step": "receive", "detail": "assigned to liu_yang", "changes": [], "lateness_ms": null, "rules_version": 0}]}))]
pub struct History {
    pub history: Vec<HistoryEntry>,
}

/// A deployed process and its versions.
#[derive(Serialize, ToSchema)]
pub struct ProcessSummary {
    pub id: String,
    pub label: Option<String>,
    pub versions: Vec<u32>,
}

/// The deployed processes.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"processes": [{"id": "complaint", "label": "投诉处理", "versions": [1]}]}))]
pub struct ProcessList {
    pub processes: Vec<ProcessSummary>,
}

#[derive(Serialize, ToSchema)]
pub struct StepSummary {
    pub name: String,
    pub label: Option<String>,
}

/// A process's latest version, as deployed.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "complaint", "label": "投诉处理", "doc": "A customer's complaint from intake to the completed customer file.", "source_sections": "002 §三(一)", "latest_version": 1, "versions": [1], "steps": [{"name": "receive", "label": "接收并登记"}], "outcomes": ["closed"], "source": "process complaint \"投诉处理\" { ... }"}))]
pub struct ProcessDetail {
    pub id: String,
    pub label: Option<String>,
    pub doc: Option<String>,
    /// The manual's sections it follows.
    pub source_sections: Option<String>,
    pub latest_version: u32,
    pub versions: Vec<u32>,
    pub steps: Vec<StepSummary>,
    pub outcomes: Vec<String>,
    /// The `.flow` text.
    pub source: String,
}

/// A process version's forms as JSON Schema (2020-12): what a start takes and what each task
/// asks, for integrators' and the console's forms.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"process": "complaint", "version": 1, "start": {"type": "object", "properties": {"urgency": {"type": "string", "enum": ["high", "medium", "low"], "default": "medium", "title": "紧急程度"}}, "required": ["customer", "contact", "content"], "additionalProperties": false}, "tasks": {"receive": {"type": "object", "properties": {"cause": {"type": "string", "enum": ["quality", "expectation", "communication"]}}, "required": ["cause"]}}, "outcomes": ["closed"]}))]
pub struct ProcessSchema {
    pub process: String,
    pub version: u32,
    /// The start fields' schema.
    #[schema(value_type = Object)]
    pub start: Json,
    /// Each task step's form, by step name.
    #[schema(value_type = Object)]
    pub tasks: Map<String, Json>,
    /// The ends a case can reach.
    pub outcomes: Vec<String>,
}

/// What changed between two deployed versions of a process (`caseflow diff`'s JSON).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"process": "complaint", "from": 1, "to": 2, "changes": {"process": [], "fields_added": ["region: text \"地区\""], "fields_removed": [], "fields_changed": [], "steps_added": [{"name": "onsite_visit", "kind": "task"}], "steps_removed": [{"name": "remote_assistance", "kind": "task"}], "steps_renamed": [{"from": "file", "to": "archive"}], "steps_changed": [{"name": "engineer_callback", "clauses": [{"what": "deadline", "old": "due 1 workday", "new": "due 2 workdays"}]}]}}))]
pub struct VersionDiff {
    pub process: String,
    pub from: u32,
    pub to: u32,
    pub changes: caseflow_dsl::diff::ProcessDiff,
}

/// The results of `POST /processes/{id}/test` (as `caseflow test --format json` prints them).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"process": "complaint", "passed": 0, "failed": 1, "scenarios": [{"name": "happy_path.toml", "description": "Resolved on the phone", "process": "complaint", "failure": {"step": 1, "line": 12, "action": "check", "expected": "task `receive` for liu_yang due 2026-11-23T15:30", "found": "receive for liu_yang due 2026-11-23T16:30 overdue=false priority=0"}, "log": ["start complaint at 2026-11-23T10:00"]}], "coverage": null}))]
pub struct TestReport {
    pub process: String,
    pub passed: usize,
    pub failed: usize,
    pub scenarios: Vec<caseflow_engine::scenario::ScenarioResult>,
    /// With `coverage: true`: what no scenario reached of the process.
    pub coverage: Option<caseflow_engine::scenario::ProcessCoverage>,
}

/// A decision table in force.
#[derive(Serialize, ToSchema)]
pub struct TableSummary {
    pub name: String,
    /// `unique`, `first`, `collect`, ...
    #[schema(value_type = String)]
    pub hit_policy: caseflow_core::table::HitPolicy,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub rows: usize,
}

/// The rules folder's files that were refused, while the last accepted rules serve.
#[derive(Serialize, ToSchema)]
pub struct RefusedRules {
    #[schema(format = DateTime)]
    pub at: String,
    /// `file:line:col: key: what is wrong`, one per problem.
    pub problems: Vec<String>,
}

/// The rules in force.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"version": 0, "time_zone": "Asia/Shanghai", "roles": ["cs_manager", "cs_rep"], "users": ["li_na", "liu_yang"], "values": ["response_time"], "decision_tables": [{"name": "risk_level", "hit_policy": "unique", "inputs": ["probability", "impact"], "outputs": ["level", "owner"], "rows": 6}], "files": ["calendar.toml", "values.toml"], "refused": null}))]
pub struct RulesInForce {
    pub version: u64,
    pub time_zone: String,
    pub roles: Vec<String>,
    pub users: Vec<String>,
    pub values: Vec<String>,
    pub decision_tables: Vec<TableSummary>,
    pub files: Vec<String>,
    pub refused: Option<RefusedRules>,
}

/// One accepted rules change.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"version": 1, "at": "2026-11-23T02:00:00Z", "by": "admin", "diff": "--- a/values.toml\n+++ b/values.toml\n@@ -18,5 +18,5 @@\n-high = \"10min\"\n+high = \"5min\"\n", "cases_recomputed": null}))]
pub struct RulesChange {
    pub version: u64,
    #[schema(format = DateTime)]
    pub at: String,
    pub by: String,
    /// A unified diff per file that changed.
    pub diff: String,
    /// Open tasks whose deadlines were recomputed (`recompute=true`).
    pub cases_recomputed: Option<usize>,
}

impl RulesChange {
    pub fn of(change: &caseflow_engine::service::RulesChange, recomputed: Option<usize>) -> RulesChange {
        RulesChange {
            version: change.version,
            at: change.at.to_rfc3339(),
            by: change.by.clone(),
            diff: change.diff.clone(),
            cases_recomputed: recomputed,
        }
    }
}

/// Every accepted rules change, oldest first.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"changes": [{"version": 1, "at": "2026-11-23T02:00:00Z", "by": "admin", "diff": "--- a/values.toml\n+++ b/values.toml\n"}]}))]
pub struct RulesChanges {
    /// As recorded: version, when, who, the diff.
    pub changes: Vec<caseflow_engine::service::RulesChange>,
}

/// What a rules upload answers: the change it applied (`version`, `at`, `by`, `diff`,
/// `cases_recomputed`), or with `dry_run=true` what it would do (`dry_run`, `diff`, `impact`),
/// nothing written.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[schema(example = json!({"dry_run": true, "diff": "--- a/values.toml\n+++ b/values.toml\n@@ -18,5 +18,5 @@\n-high = \"10min\"\n+high = \"5min\"\n", "impact": {"recompute": true, "cases": 12, "open_tasks": 14, "deadlines_moved": 3, "shift_minutes": {"earliest": -5, "median": -5, "latest": -5}, "overdue_at_once": 1, "moved_by_step": {"complaint.receive": 3}, "lookups_changed": {}, "not_recomputed": 0, "assignees_lost_by_step": {}, "assignees_lost": []}}))]
pub enum RulesUpload {
    Applied(RulesChange),
    Preview(RulesPreview),
}

/// What a rules file would do, nothing applied.
#[derive(Serialize, ToSchema)]
pub struct RulesPreview {
    /// Always true: the answer is a preview.
    pub dry_run: bool,
    /// A unified diff per file that would change.
    pub diff: String,
    pub impact: caseflow_engine::service::RulesImpact,
}

/// A row a table evaluation hit.
#[derive(Serialize, ToSchema)]
pub struct TableHit {
    /// 0-based row index.
    pub row: usize,
    /// The row's line in the rules file.
    pub line: usize,
    /// Each output's value, by name.
    #[schema(value_type = Object)]
    pub outputs: Map<String, Json>,
}

/// The rows a table evaluation hit, under the rules version in force.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"table": "risk_level", "rules_version": 0, "hits": [{"row": 0, "line": 24, "outputs": {"level": "critical", "owner": "cs_director"}}]}))]
pub struct TableHits {
    pub table: String,
    pub rules_version: u64,
    pub hits: Vec<TableHit>,
}

/// How many open tasks moved.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"reassigned": 3}))]
pub struct Reassigned {
    pub reassigned: usize,
}

/// Storage as `/health` sees it.
#[derive(Serialize, ToSchema)]
pub struct StorageHealth {
    /// `ok` or `failing`.
    pub status: &'static str,
    /// What fails, while it fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What works but not as it should, with the server still ready: on PostgreSQL, a
    /// transaction left open that holds back the change feed every node's `/events` reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// The rules as `/health` sees them.
#[derive(Serialize, ToSchema)]
pub struct RulesHealth {
    /// `ok`, or `refused` while the folder holds refused files (the last accepted rules serve).
    pub status: &'static str,
    /// The rules version in force.
    pub version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub refused_at: Option<String>,
    /// How many problems the refused files have (`GET /admin/rules` lists them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'static str>,
}

/// How far the calendar's holidays are known.
#[derive(Serialize, ToSchema)]
pub struct CalendarCoverage {
    #[schema(format = Date)]
    pub covered_through: String,
    /// Negative once they have ended.
    pub days_left: i64,
    /// `ok`, `ending` (within 60 days) or `ended`.
    pub status: &'static str,
}

/// Live and ready, or why not.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok", "storage": {"status": "ok"}, "rules": {"status": "ok", "version": 0}, "processes": 9, "commands": 1, "calendar": {"covered_through": "2026-12-31", "days_left": 34, "status": "ending"}}))]
pub struct Health {
    /// `ok`, or `degraded` while storage is failing (with 503).
    pub status: &'static str,
    pub storage: StorageHealth,
    pub rules: RulesHealth,
    pub processes: usize,
    pub commands: u64,
    /// How far the calendar's holidays are known (`null` without any).
    pub calendar: Option<CalendarCoverage>,
}
