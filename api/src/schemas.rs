//! The shapes of the API's 2xx bodies, for `/openapi.json`. Handlers build their JSON with
//! `json!`; these types say what that JSON is, and the API check (schemathesis,
//! `response_schema_conformance`) fails when a response and its schema disagree. Field names
//! and types here must follow `server/`.
#![allow(dead_code)] // read by utoipa's derive only

use utoipa::ToSchema;

/// A case's status: one name in the case and in lists alike.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum CaseStatus {
    Running,
    Suspended,
    Incident,
    Completed,
    Cancelled,
}

/// Why a case stopped: the step and the error (`retry` runs the step again after a fix).
#[derive(ToSchema)]
pub struct Incident {
    step: String,
    reason: String,
}

/// A task's SLA clock, on the business calendar; `null` for a task without a deadline.
#[derive(ToSchema)]
pub struct SlaClock {
    /// Working minutes from opening to the deadline.
    allowed_minutes: i64,
    elapsed_minutes: i64,
    /// Negative once overdue.
    remaining_minutes: i64,
    percent_used: i64,
    /// False outside working hours: the clock is paused.
    running: bool,
}

/// An open task of a case.
#[derive(ToSchema)]
pub struct Task {
    /// `INSTANCE-SEQ`, e.g. `1-2`.
    #[schema(example = "1-2")]
    id: String,
    instance: u64,
    business_key: String,
    /// The step's label.
    name: String,
    step: String,
    /// The item of a `for each` task.
    item: Option<String>,
    assignee: Option<String>,
    delegated_by: Option<String>,
    /// Roles that may take it.
    candidates: Vec<String>,
    claimed: bool,
    priority: u8,
    #[schema(format = DateTime)]
    opened_at: String,
    #[schema(format = DateTime)]
    due_at: Option<String>,
    overdue: bool,
    sla: Option<SlaClock>,
}

/// A pending timer: a deadline, an escalation, a reminder, a wait.
#[derive(ToSchema)]
pub struct Timer {
    seq: u32,
    #[schema(format = DateTime)]
    due_at: String,
    /// Internally tagged: `{"kind": "due", "task": 2}`, `{"kind": "reminder", ...}`.
    #[schema(value_type = Object)]
    kind: serde_json::Value,
}

/// A sub-process case a case started.
#[derive(ToSchema)]
pub struct SubCase {
    id: u64,
    process: String,
    status: CaseStatus,
    /// A `call` step waits for it now.
    waited_for: bool,
}

/// A message kept until a step listens for it.
#[derive(ToSchema)]
pub struct KeptMessage {
    name: String,
    #[schema(format = DateTime)]
    kept_at: String,
    #[schema(format = DateTime)]
    until: String,
}

/// A case: its fields, where it is, and what waits in it.
#[derive(ToSchema)]
#[schema(example = json!({"id": 1, "business_key": "20261123-001", "process": "complaint", "version": 1, "status": "running", "outcome": null, "cancel_reason": null, "incident": null, "fields": {"customer": "第一中学", "contact": "***", "content": "投影仪无法开机", "urgency": "high", "channel": "phone", "resolved": false}, "current_steps": ["receive"], "tasks": [{"id": "1-2", "instance": 1, "business_key": "20261123-001", "name": "接收并登记", "step": "receive", "item": null, "assignee": "liu_yang", "delegated_by": null, "candidates": ["cs_rep"], "claimed": false, "priority": 0, "opened_at": "2026-11-23T02:00:00Z", "due_at": "2026-11-23T02:10:00Z", "overdue": false, "sla": {"allowed_minutes": 10, "elapsed_minutes": 0, "remaining_minutes": 10, "percent_used": 0, "running": true}}], "timers": [{"seq": 3, "due_at": "2026-11-23T02:10:00Z", "kind": {"kind": "due", "task": 2}}], "started_at": "2026-11-23T02:00:00Z", "updated_at": "2026-11-23T02:00:00Z", "parent": null, "sub_cases": [], "kept_messages": []}))]
pub struct Instance {
    id: u64,
    #[schema(example = "20261123-001")]
    business_key: String,
    process: String,
    version: u32,
    status: CaseStatus,
    /// The end it reached, when completed.
    outcome: Option<String>,
    cancel_reason: Option<String>,
    incident: Option<Incident>,
    /// The process's fields (sensitive ones `***` for service tokens).
    #[schema(value_type = Object)]
    fields: serde_json::Value,
    current_steps: Vec<String>,
    tasks: Vec<Task>,
    timers: Vec<Timer>,
    #[schema(format = DateTime)]
    started_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// The case this one runs for as a sub-process.
    parent: Option<u64>,
    sub_cases: Vec<SubCase>,
    kept_messages: Vec<KeptMessage>,
}

/// A case in a list.
#[derive(ToSchema)]
pub struct InstanceRow {
    id: u64,
    business_key: String,
    process: String,
    version: u32,
    status: CaseStatus,
    #[schema(format = DateTime)]
    started_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// A page of cases, oldest first.
#[derive(ToSchema)]
#[schema(example = json!({"instances": [{"id": 1, "business_key": "20261123-001", "process": "complaint", "version": 1, "status": "running", "started_at": "2026-11-23T02:00:00Z", "updated_at": "2026-11-23T02:00:00Z"}], "next_cursor": "1"}))]
pub struct InstancePage {
    instances: Vec<InstanceRow>,
    /// Pass back as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

/// A task in an inbox.
#[derive(ToSchema)]
pub struct TaskRow {
    id: String,
    instance: u64,
    business_key: String,
    process: String,
    name: String,
    step: String,
    item: Option<String>,
    assignee: Option<String>,
    #[schema(format = DateTime)]
    due_at: Option<String>,
    overdue: bool,
    priority: u8,
}

/// A page of open tasks, soonest deadline first.
#[derive(ToSchema)]
#[schema(example = json!({"tasks": [{"id": "1-2", "instance": 1, "business_key": "20261123-001", "process": "complaint", "name": "接收并登记", "step": "receive", "item": null, "assignee": "liu_yang", "due_at": "2026-11-23T02:10:00Z", "overdue": false, "priority": 0}], "next_cursor": null}))]
pub struct TaskPage {
    tasks: Vec<TaskRow>,
    next_cursor: Option<String>,
}

/// A field's change in a history entry.
#[derive(ToSchema)]
pub struct FieldChange {
    field: String,
    /// Any JSON value (the field's type), `null` when it was not set.
    old: Option<serde_json::Value>,
    new: serde_json::Value,
}

/// One event of a case's audit trail.
#[derive(ToSchema)]
pub struct HistoryEntry {
    seq: u64,
    #[schema(format = DateTime)]
    at: String,
    actor: String,
    /// `started`, `task_opened`, `task_completed`, `escalated`, ...
    event: String,
    step: Option<String>,
    detail: String,
    changes: Vec<FieldChange>,
    /// How late a task was completed, in milliseconds past its deadline.
    lateness_ms: Option<i64>,
    rules_version: u64,
}

/// A case's audit trail, in order.
#[derive(ToSchema)]
#[schema(example = json!({"history": [{"seq": 0, "at": "2026-11-23T02:00:00Z", "actor": "crm", "event": "started", "step": null, "detail": "business key 20261123-001", "changes": [{"field": "urgency", "old": null, "new": "high"}], "lateness_ms": null, "rules_version": 0}, {"seq": 2, "at": "2026-11-23T02:00:00Z", "actor": "crm", "event": "task_opened", "step": "receive", "detail": "assigned to liu_yang", "changes": [], "lateness_ms": null, "rules_version": 0}]}))]
pub struct History {
    history: Vec<HistoryEntry>,
}

/// A deployed process and its versions.
#[derive(ToSchema)]
pub struct ProcessSummary {
    id: String,
    label: Option<String>,
    versions: Vec<u32>,
}

/// The deployed processes.
#[derive(ToSchema)]
#[schema(example = json!({"processes": [{"id": "complaint", "label": "投诉处理", "versions": [1]}]}))]
pub struct ProcessList {
    processes: Vec<ProcessSummary>,
}

/// One accepted rules change.
#[derive(ToSchema)]
#[schema(example = json!({"version": 1, "at": "2026-11-23T02:00:00Z", "by": "admin", "diff": "--- a/values.toml\n+++ b/values.toml\n@@ -18,5 +18,5 @@\n-high = \"10min\"\n+high = \"5min\"\n", "cases_recomputed": null}))]
pub struct RulesChange {
    version: u64,
    #[schema(format = DateTime)]
    at: String,
    by: String,
    /// A unified diff per file that changed.
    diff: String,
    /// Open tasks whose deadlines were recomputed (`recompute=true`).
    cases_recomputed: Option<u64>,
}

/// A process's latest version, as deployed.
#[derive(ToSchema)]
#[schema(example = json!({"id": "complaint", "label": "投诉处理", "doc": "A customer's complaint from intake to the completed customer file.", "source_sections": "002 §三(一)", "latest_version": 1, "versions": [1], "steps": [{"name": "receive", "label": "接收并登记"}], "outcomes": ["closed"], "source": "process complaint \"投诉处理\" { ... }"}))]
pub struct ProcessDetail {
    id: String,
    label: Option<String>,
    doc: Option<String>,
    /// The manual's sections it follows.
    source_sections: Option<String>,
    latest_version: u32,
    versions: Vec<u32>,
    steps: Vec<StepSummary>,
    outcomes: Vec<String>,
    /// The `.flow` text.
    source: String,
}

#[derive(ToSchema)]
pub struct StepSummary {
    name: String,
    label: Option<String>,
}

/// What a deploy did.
#[derive(ToSchema)]
#[schema(example = json!({"process": "complaint", "version": 2, "changed": true, "warnings": []}))]
pub struct Deployed {
    process: String,
    version: u32,
    /// False when the source equals the latest version (nothing deployed).
    changed: bool,
    warnings: Vec<String>,
}

/// A decision table in force.
#[derive(ToSchema)]
pub struct TableSummary {
    name: String,
    hit_policy: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    rows: u64,
}

/// The rules folder's files that were refused, while the last accepted rules serve.
#[derive(ToSchema)]
pub struct RefusedRules {
    #[schema(format = DateTime)]
    at: String,
    /// `file:line:col: key: what is wrong`, one per problem.
    problems: Vec<String>,
}

/// The rules in force.
#[derive(ToSchema)]
#[schema(example = json!({"version": 0, "time_zone": "Asia/Shanghai", "roles": ["cs_manager", "cs_rep"], "users": ["li_na", "liu_yang"], "values": ["response_time"], "decision_tables": [{"name": "risk_level", "hit_policy": "unique", "inputs": ["probability", "impact"], "outputs": ["level", "owner"], "rows": 6}], "files": ["calendar.toml", "values.toml"], "refused": null}))]
pub struct RulesInForce {
    version: u64,
    time_zone: String,
    roles: Vec<String>,
    users: Vec<String>,
    values: Vec<String>,
    decision_tables: Vec<TableSummary>,
    files: Vec<String>,
    refused: Option<RefusedRules>,
}

/// Every accepted rules change, oldest first.
#[derive(ToSchema)]
#[schema(example = json!({"changes": [{"version": 1, "at": "2026-11-23T02:00:00Z", "by": "admin", "diff": "--- a/values.toml\n+++ b/values.toml\n"}]}))]
pub struct RulesChanges {
    changes: Vec<RulesChange>,
}

/// A row a table evaluation hit.
#[derive(ToSchema)]
pub struct TableHit {
    /// 0-based row index.
    row: u64,
    /// The row's line in the rules file.
    line: u64,
    #[schema(value_type = Object)]
    outputs: serde_json::Value,
}

/// The rows a table evaluation hit, under the rules version in force.
#[derive(ToSchema)]
#[schema(example = json!({"table": "risk_level", "rules_version": 0, "hits": [{"row": 0, "line": 24, "outputs": {"level": "critical", "owner": "cs_director"}}]}))]
pub struct TableHits {
    table: String,
    rules_version: u64,
    hits: Vec<TableHit>,
}

/// How many open tasks moved.
#[derive(ToSchema)]
#[schema(example = json!({"reassigned": 3}))]
pub struct Reassigned {
    reassigned: u64,
}

/// Live and ready, or why not.
#[derive(ToSchema)]
#[schema(example = json!({"status": "ok", "storage": {"status": "ok"}, "rules": {"status": "ok", "version": 0}, "processes": 9, "commands": 1, "calendar": {"covered_through": "2026-12-31", "days_left": 34, "status": "ending"}}))]
pub struct Health {
    /// `ok`, or `degraded` while storage is failing (with 503).
    status: String,
    /// `{"status": "ok"}` or `{"status": "failing", "error": ...}`.
    #[schema(value_type = Object)]
    storage: serde_json::Value,
    /// The rules version in force; `status` is `refused` while the folder holds refused files.
    #[schema(value_type = Object)]
    rules: serde_json::Value,
    processes: u64,
    commands: u64,
    /// How far the calendar's holidays are known (`null` without any).
    #[schema(value_type = Object)]
    calendar: Option<serde_json::Value>,
}

/// `POST /processes` as JSON.
#[derive(ToSchema)]
#[schema(example = json!({"source": "process hello {\n  source \"002\"\n  start -> done\n  end done\n}\n"}))]
pub struct DeployRequest {
    /// The `.flow` text.
    source: String,
}

/// `PUT /admin/rules/files/{name}` as JSON.
#[derive(ToSchema)]
#[schema(example = json!({"text": "[values.response_time]\nhigh = \"10min\"\nmedium = \"4 workhours\"\nlow = \"1 workday\"\n"}))]
pub struct RulesFileRequest {
    /// The TOML text of the file.
    text: String,
}

/// One event of `GET /events` (the `data` of each Server-Sent Event, whose `event` field is
/// `event` below and whose `id` is `INSTANCE-SEQ`): a durable change of a case.
#[derive(ToSchema)]
#[schema(example = json!({"instance": 1, "business_key": "20261123-001", "process": "complaint", "seq": 3, "at": "2026-11-23T02:00:00Z", "event": "task_opened", "step": "receive", "detail": "assigned to liu_yang", "status": "running"}))]
pub struct Event {
    instance: u64,
    business_key: String,
    process: String,
    /// The history entry's number in its case.
    seq: u64,
    #[schema(format = DateTime)]
    at: String,
    /// The history entry's event (`started`, `task_opened`, `task_completed`, `escalated`, ...).
    event: String,
    step: Option<String>,
    detail: String,
    /// The case's status after the change.
    status: CaseStatus,
}

/// A step's figures in a report.
#[derive(ToSchema)]
pub struct StepStats {
    completed: u64,
    handling_minutes_median: Option<f64>,
    handling_minutes_p90: Option<f64>,
    /// Completed tasks never overdue, over completed tasks with a deadline.
    deadlines_met_share: Option<f64>,
}

/// The KPIs of one process over a period.
#[derive(ToSchema)]
#[schema(example = json!({"process": "complaint", "from": "2026-11-01T00:00:00Z", "to": null, "cases": 2, "by_status": {"completed": 1, "running": 1}, "by_outcome": {"closed": 1}, "by_field": {"urgency": {"high": 2}}, "steps": {"receive": {"completed": 2, "handling_minutes_median": 4.0, "handling_minutes_p90": 6.0, "deadlines_met_share": 1.0}}, "first_contact_resolution_share": 1.0, "satisfaction_average": 5.0, "service_quality": {}, "service_quality_weighted": null}))]
pub struct Report {
    process: String,
    #[schema(format = DateTime)]
    from: Option<String>,
    #[schema(format = DateTime)]
    to: Option<String>,
    cases: u64,
    /// Cases by status name.
    by_status: std::collections::BTreeMap<String, u64>,
    by_outcome: std::collections::BTreeMap<String, u64>,
    /// For every choice field: value → count.
    by_field: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
    steps: std::collections::BTreeMap<String, StepStats>,
    first_contact_resolution_share: Option<f64>,
    satisfaction_average: Option<f64>,
    /// The five service-quality dimensions' averages.
    service_quality: std::collections::BTreeMap<String, f64>,
    service_quality_weighted: Option<f64>,
}

/// What changed between two deployed versions of a process (`caseflow diff`'s JSON).
#[derive(ToSchema)]
#[schema(example = json!({"process": "complaint", "from": 1, "to": 2, "changes": {"process": [], "fields_added": ["region: text \"地区\""], "fields_removed": [], "fields_changed": [], "steps_added": [{"name": "onsite_visit", "kind": "task"}], "steps_removed": [{"name": "remote_assistance", "kind": "task"}], "steps_renamed": [{"from": "file", "to": "archive"}], "steps_changed": [{"name": "engineer_callback", "clauses": [{"what": "deadline", "old": "due 1 workday", "new": "due 2 workdays"}]}]}}))]
pub struct VersionDiff {
    process: String,
    from: u32,
    to: u32,
    changes: ProcessDiff,
}

#[derive(ToSchema)]
pub struct ProcessDiff {
    /// Process-level lines (key template, start, interrupts, kept messages, tallies).
    process: Vec<ClauseChange>,
    /// Field declarations as written.
    fields_added: Vec<String>,
    fields_removed: Vec<String>,
    fields_changed: Vec<FieldDeclChange>,
    steps_added: Vec<DiffStep>,
    steps_removed: Vec<DiffStep>,
    /// A step whose name changed and nothing else.
    steps_renamed: Vec<RenamedStep>,
    steps_changed: Vec<StepChange>,
}

/// A field declaration as it was and as it is.
#[derive(ToSchema)]
pub struct FieldDeclChange {
    name: String,
    old: String,
    new: String,
}

#[derive(ToSchema)]
pub struct DiffStep {
    name: String,
    /// `task`, `auto`, `wait`, `decision`, `split`, `join`, `call` or `end`.
    kind: String,
}

#[derive(ToSchema)]
pub struct RenamedStep {
    from: String,
    to: String,
}

#[derive(ToSchema)]
pub struct StepChange {
    name: String,
    clauses: Vec<ClauseChange>,
}

/// One clause as it was (`old`, absent when it came) and as it is (`new`, absent when it went).
#[derive(ToSchema)]
pub struct ClauseChange {
    /// `assignment`, `deadline`, `asks`, `handler`, `transition`, `reminder`, `head`, or the
    /// clause's first word.
    what: String,
    old: Option<String>,
    new: Option<String>,
}

/// What a rules upload answers: the change it applied (`version`, `at`, `by`, `diff`,
/// `cases_recomputed`), or with `dry_run=true` what it would do (`dry_run`, `diff`, `impact`),
/// nothing written.
#[derive(ToSchema)]
#[schema(example = json!({"dry_run": true, "diff": "--- a/values.toml\n+++ b/values.toml\n@@ -18,5 +18,5 @@\n-high = \"10min\"\n+high = \"5min\"\n", "impact": {"cases": 12, "open_tasks": 14, "deadlines_moved": 3, "shift_minutes": {"earliest": -5, "median": -5, "latest": -5}, "overdue_at_once": 1, "moved_by_step": {"complaint.receive": 3}, "lookups_changed": {}, "not_recomputed": 0}}))]
pub struct RulesUpload {
    version: Option<u64>,
    #[schema(format = DateTime)]
    at: Option<String>,
    by: Option<String>,
    /// A unified diff per file that changed (or would).
    diff: String,
    cases_recomputed: Option<u64>,
    /// True when nothing was applied: the answer is a preview.
    dry_run: Option<bool>,
    impact: Option<RulesImpact>,
}

/// What candidate rules would do to open work if applied (open deadlines move only when
/// recomputed).
#[derive(ToSchema)]
pub struct RulesImpact {
    /// Whether the change recomputes open deadlines; without it the deadline figures are zero.
    recompute: bool,
    /// Running and suspended cases looked at.
    cases: u64,
    open_tasks: u64,
    /// Open tasks whose deadline would move.
    deadlines_moved: u64,
    /// By how many minutes (negative: sooner), when any would move.
    shift_minutes: Option<ShiftMinutes>,
    /// Tasks not overdue now whose new deadline has already passed.
    overdue_at_once: u64,
    /// Moved deadlines by `process.step`.
    #[schema(value_type = Object)]
    moved_by_step: serde_json::Value,
    /// Cases whose decision-table lookup at `process.step` would come out differently.
    #[schema(value_type = Object)]
    lookups_changed: serde_json::Value,
    /// Cases the core refused to recompute under the candidate rules.
    not_recomputed: u64,
    /// Open tasks whose assignee the candidate rules take off them (out of the task's roles,
    /// no longer a user, or away today), by `process.step`.
    #[schema(value_type = Object)]
    assignees_lost_by_step: serde_json::Value,
    /// Those tasks one by one, the first 100.
    assignees_lost: Vec<AssigneeLost>,
}

#[derive(ToSchema)]
pub struct AssigneeLost {
    task: String,
    step: String,
    assignee: String,
    /// `not in role cs_rep`, `no longer a user`, or `away today`.
    reason: String,
}

#[derive(ToSchema)]
pub struct ShiftMinutes {
    earliest: i64,
    median: i64,
    latest: i64,
}

/// The results of `POST /processes/{id}/test` (as `caseflow test --format json` prints them).
#[derive(ToSchema)]
#[schema(example = json!({"process": "complaint", "passed": 0, "failed": 1, "scenarios": [{"name": "happy_path.toml", "description": "Resolved on the phone", "process": "complaint", "failure": {"step": 1, "line": 12, "action": "check", "expected": "task `receive` for liu_yang due 2026-11-23T15:30", "found": "receive for liu_yang due 2026-11-23T16:30 overdue=false priority=0"}, "log": ["start complaint at 2026-11-23T10:00"]}], "coverage": null}))]
pub struct TestReport {
    process: String,
    passed: usize,
    failed: usize,
    scenarios: Vec<ScenarioOutcome>,
    /// With `coverage: true`: what no scenario reached of the process.
    coverage: Option<ProcessCoverage>,
}

/// One scenario's result.
#[derive(ToSchema)]
pub struct ScenarioOutcome {
    name: String,
    description: String,
    /// The process the scenario starts; empty when the file could not be read.
    process: String,
    /// Absent when the scenario passed.
    failure: Option<ScenarioFailure>,
    /// What was done, one line per action, up to the failure.
    log: Vec<String>,
}

/// Where and why a scenario failed.
#[derive(ToSchema)]
pub struct ScenarioFailure {
    /// The step (1-based); null for the start or the file itself.
    step: Option<usize>,
    /// The line of the step (or of the problem) in the scenario's text.
    line: Option<usize>,
    action: String,
    expected: String,
    found: String,
}

/// What the scenarios reached of a process.
#[derive(ToSchema)]
pub struct ProcessCoverage {
    process: String,
    reached: usize,
    required: usize,
    percent: f64,
    /// Steps, decision arms, reminders, missed deadlines, escalations and the cancellation never reached.
    missing: Vec<String>,
}

/// What a migration did, or (dry run) would do.
#[derive(ToSchema)]
#[schema(example = json!({"process": "complaint", "from": 1, "to": 2, "dry_run": true, "cases": 3, "moved": 2, "refused": 1, "landing": {"receive -> receive (stays)": 1, "remote_assistance -> onsite_visit (entered)": 1}, "refusals": {"it waits at `file`, which version 2 does not have: map `file` to one of its steps": 1}, "incidents": {}, "results": [{"id": 1, "business_key": "20261123-001", "moved": true, "reasons": [], "plan": {"moves": [{"from": "receive", "to": "receive", "how": "stays"}], "tasks_kept": ["1-2"], "tasks_closed": [], "tasks_opened": [], "deadlines": [], "fields_defaulted": ["region"], "fields_dropped": [], "landing": {"status": "running", "at": ["receive (task)"]}}}]}))]
pub struct MigrationReport {
    process: String,
    from: u32,
    to: u32,
    dry_run: bool,
    /// Running cases of version `from` (running, suspended or at an incident).
    cases: usize,
    /// Moved, or that would move in a dry run.
    moved: usize,
    /// Left on version `from`.
    refused: usize,
    /// `old -> new (stays|entered)`: how many cases land so.
    landing: std::collections::BTreeMap<String, usize>,
    /// Why cases cannot move: how many for each reason.
    refusals: std::collections::BTreeMap<String, usize>,
    /// Cases that land at an incident (an automatic step entered afresh that cannot run yet):
    /// how many for each `step`: reason. They move and wait for a fix and a retry.
    incidents: std::collections::BTreeMap<String, usize>,
    /// Case by case, the first 1,000.
    results: Vec<CaseMigration>,
}

#[derive(ToSchema)]
pub struct CaseMigration {
    id: u64,
    business_key: String,
    moved: bool,
    /// Why it cannot move; empty when it moves.
    reasons: Vec<String>,
    plan: Option<CasePlan>,
}

/// What moving one case does.
#[derive(ToSchema)]
pub struct CasePlan {
    /// Each place of the case: old step, new step, and whether the work stays or the new step is entered afresh.
    moves: Vec<StepMove>,
    /// Open tasks that stay (ids), now at their new step.
    tasks_kept: Vec<String>,
    /// Open tasks closed because their step is mapped to another one.
    tasks_closed: Vec<String>,
    /// Tasks opened where a step is entered afresh: `step for assignee`.
    tasks_opened: Vec<String>,
    /// Deadlines computed again under the new step's clauses.
    deadlines: Vec<DeadlineChange>,
    /// New fields given their default.
    fields_defaulted: Vec<String>,
    /// Fields the new version no longer declares.
    fields_dropped: Vec<String>,
    /// Where the case is once moved.
    landing: Landing,
}

/// Where a moved case ends up, incidents included.
#[derive(ToSchema)]
pub struct Landing {
    /// `running`, `suspended` or `incident`.
    status: String,
    /// Each place with work: `step (task|wait|call|incident)`.
    at: Vec<String>,
    /// At an incident: the step and why.
    incident: Option<String>,
}

#[derive(ToSchema)]
pub struct StepMove {
    from: String,
    to: String,
    /// `stays` or `entered`.
    how: String,
}

#[derive(ToSchema)]
pub struct DeadlineChange {
    task: String,
    step: String,
    old: Option<String>,
    new: Option<String>,
}
