//! The deterministic core: a process instance is a plain value; a command and the current
//! instant go in, the new state and a list of effects come out.
//!
//! No I/O, no clock, no randomness: the same model, rules, workload, instance, command and
//! instant always give the same result. The storage shell persists the instance, its tasks,
//! timers and history in one atomic write; the timer driver turns due timers back into
//! `Command::FireTimer`.
//!
//! A command either succeeds (state changed, effects returned) or fails with a
//! `CommandError` and the instance is left exactly as it was: `apply` works on a copy.

use crate::duration::Span;
use crate::eval::{eval, truth, EvalError, Scope};
use crate::rules::{RuleSet, Strategy};
use crate::value::Value;
use caseflow_dsl::model::{
    self, Assignee, AutoAction, FieldType, Process, StepId, StepKind, Transition, Trigger, WaitCondition,
};
use chrono::{DateTime, Datelike, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

/// Most steps one command may run through before the engine calls it a runaway. The checker
/// refuses automatic loops, so only pathological data gets near this.
pub const STEPS_PER_COMMAND_MAX: usize = 10_000;
/// Most live tokens (parallel branches) in one instance.
pub const TOKENS_MAX: usize = 1_000;
/// Most reminders one task sends before they stop (a 24h reminder for over a year).
pub const REMINDERS_MAX: u32 = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
pub struct InstanceId(pub u64);

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A task, named by its instance and its sequence number within it (`42-3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId {
    pub instance: InstanceId,
    pub seq: u32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.instance, self.seq)
    }
}

/// Who issues a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub id: String,
    pub roles: Vec<String>,
    pub admin: bool,
}

impl Actor {
    /// The engine itself (timers, automatic steps).
    pub fn system() -> &'static Actor {
        static SYSTEM: std::sync::OnceLock<Actor> = std::sync::OnceLock::new();
        SYSTEM.get_or_init(|| Actor { id: "system".into(), roles: Vec::new(), admin: true })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    Running,
    Suspended,
    /// A step failed on real data; `retry` runs it again after a fix.
    Incident {
        step: String,
        reason: String,
    },
    Completed {
        outcome: String,
    },
    Cancelled {
        reason: String,
    },
}

impl Status {
    pub fn is_ended(&self) -> bool {
        matches!(self, Status::Completed { .. } | Status::Cancelled { .. })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Suspended => "suspended",
            Status::Incident { .. } => "incident",
            Status::Completed { .. } => "completed",
            Status::Cancelled { .. } => "cancelled",
        }
    }
}

/// What a token (a position in the graph) is waiting for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Waiting {
    Task(u32),
    /// A timer of a wait step, and/or a message.
    Wait,
    Child,
    /// Parked on a step that failed; `retry` enters it again.
    Incident,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub step: StepId,
    pub entered_at: DateTime<Utc>,
    pub waiting: Waiting,
    /// For a task `for each` item: its group and item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub seq: u32,
    pub token: u32,
    pub step: StepId,
    pub name: String,
    pub assignee: Option<String>,
    pub candidates: Vec<String>,
    pub claimed: bool,
    pub priority: u8,
    pub opened_at: DateTime<Utc>,
    pub due_at: Option<DateTime<Utc>>,
    pub overdue: bool,
    pub reminders_sent: u32,
    /// The item this task is for (a task `for each` item).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// Who passed this task on to its assignee (delegation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegated_by: Option<String>,
    /// The step's name (`name` is its label for people), for filtering an inbox by step.
    #[serde(default)]
    pub step_name: String,
    /// The deadline falls past the days the calendar knows the holidays of: it may be wrong.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub beyond_calendar: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TimerKind {
    /// The task's deadline.
    Due {
        task: u32,
    },
    /// `when overdue + DELAY` (handler index).
    Escalation {
        task: u32,
        handler: usize,
    },
    /// `when N%` (handler index).
    Threshold {
        task: u32,
        handler: usize,
    },
    Reminder {
        task: u32,
        every: Span,
    },
    /// The timer of a `wait` step (`for`, `until`, `every`).
    Wait {
        token: u32,
    },
    /// `on timeout` of a message wait.
    Timeout {
        token: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timer {
    pub seq: u32,
    pub due_at: DateTime<Utc>,
    pub kind: TimerKind,
}

/// A process instance: one customer case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: InstanceId,
    pub process: String,
    pub version: u32,
    pub business_key: String,
    pub status: Status,
    pub fields: BTreeMap<String, Value>,
    pub tokens: BTreeMap<u32, Token>,
    pub tasks: BTreeMap<u32, Task>,
    pub timers: BTreeMap<u32, Timer>,
    /// Branches arrived at each join so far.
    pub join_arrivals: BTreeMap<StepId, u32>,
    /// Branches each active join waits for: those its split started (conditions may leave
    /// some out). Absent: every branch.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub join_expected: BTreeMap<StepId, u32>,
    /// Messages kept until a step listens for them (`keep message`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mailbox: Vec<KeptMessage>,
    /// Who started the case (`started_by()`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub started_by: String,
    /// The tasks `for each` item under way, by group.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub each_groups: BTreeMap<u32, EachGroup>,
    /// First entry of each `every` wait: cycles are anchored there.
    pub cycle_anchors: BTreeMap<StepId, DateTime<Utc>>,
    /// Who completed each task step last (for `assign same as`).
    pub done_by: BTreeMap<StepId, String>,
    /// Next sequence number for tokens, tasks and timers.
    pub next_seq: u32,
    /// Number of history entries written so far (the next entry's sequence number).
    pub history_len: u64,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The parent's instance and token, when this case runs as a sub-process.
    #[serde(default)]
    pub parent: Option<(InstanceId, u32)>,
    /// The rules version in force when the case started.
    #[serde(default)]
    pub rules_version: u64,
    /// The case at the top of this case's chain of sub-processes (`None`: this case). A
    /// family is locked as one, so a sub-process and its parent change in one write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<InstanceId>,
    /// How many `call`s down from the top of its family this case runs.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub depth: u32,
    /// The sub-process case each waiting `call` token waits for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub children: BTreeMap<u32, InstanceId>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A message that came before any step listened for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptMessage {
    pub name: String,
    pub kept_at: DateTime<Utc>,
    /// Dropped, unheard, from then on.
    pub until: DateTime<Utc>,
}

/// The instances of one task `for each` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EachGroup {
    pub step: StepId,
    pub items: Vec<String>,
    /// The next item to open a task for (one at a time).
    pub next: usize,
    pub done: u32,
    /// Done at this many: all items, or `until N done`.
    pub needed: u32,
}

/// What a history entry records: one name per kind of event, as the audit trail, the event
/// stream, webhooks and reports spell it (`as_str`). Every entry is recorded through one of
/// these, so the list below is every event a client can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HistoryEvent {
    BranchesCancelled,
    Cancelled,
    ClaimOverridden,
    Collected,
    DeadlineBeyondCalendar,
    DeadlineNotRecomputed,
    DeadlineRecomputed,
    Decided,
    DecisionTable,
    Escalated,
    EscalationDue,
    FieldsSet,
    FieldsUpdated,
    Incident,
    InstancesAdded,
    InstancesDone,
    InstancesOpened,
    Interrupted,
    Joined,
    MessageExpired,
    MessageKept,
    MessageReceived,
    Notified,
    PriorityRaised,
    ReachedEnd,
    ReminderSent,
    RemindersStopped,
    Resumed,
    Retried,
    SlaThreshold,
    Split,
    Started,
    SubProcessReturned,
    SubProcessStarted,
    Suspended,
    TaskClaimed,
    TaskCompleted,
    TaskDelegated,
    TaskOpened,
    TaskOverdue,
    TaskReassigned,
    TaskReleased,
    TimerFired,
    TimerMoved,
    TimerNotMoved,
    UntilNotEvaluated,
    WaitTimedOut,
    Waiting,
}

impl HistoryEvent {
    pub const ALL: [HistoryEvent; 48] = [
        HistoryEvent::BranchesCancelled,
        HistoryEvent::Cancelled,
        HistoryEvent::ClaimOverridden,
        HistoryEvent::Collected,
        HistoryEvent::DeadlineBeyondCalendar,
        HistoryEvent::DeadlineNotRecomputed,
        HistoryEvent::DeadlineRecomputed,
        HistoryEvent::Decided,
        HistoryEvent::DecisionTable,
        HistoryEvent::Escalated,
        HistoryEvent::EscalationDue,
        HistoryEvent::FieldsSet,
        HistoryEvent::FieldsUpdated,
        HistoryEvent::Incident,
        HistoryEvent::InstancesAdded,
        HistoryEvent::InstancesDone,
        HistoryEvent::InstancesOpened,
        HistoryEvent::Interrupted,
        HistoryEvent::Joined,
        HistoryEvent::MessageExpired,
        HistoryEvent::MessageKept,
        HistoryEvent::MessageReceived,
        HistoryEvent::Notified,
        HistoryEvent::PriorityRaised,
        HistoryEvent::ReachedEnd,
        HistoryEvent::ReminderSent,
        HistoryEvent::RemindersStopped,
        HistoryEvent::Resumed,
        HistoryEvent::Retried,
        HistoryEvent::SlaThreshold,
        HistoryEvent::Split,
        HistoryEvent::Started,
        HistoryEvent::SubProcessReturned,
        HistoryEvent::SubProcessStarted,
        HistoryEvent::Suspended,
        HistoryEvent::TaskClaimed,
        HistoryEvent::TaskCompleted,
        HistoryEvent::TaskDelegated,
        HistoryEvent::TaskOpened,
        HistoryEvent::TaskOverdue,
        HistoryEvent::TaskReassigned,
        HistoryEvent::TaskReleased,
        HistoryEvent::TimerFired,
        HistoryEvent::TimerMoved,
        HistoryEvent::TimerNotMoved,
        HistoryEvent::UntilNotEvaluated,
        HistoryEvent::WaitTimedOut,
        HistoryEvent::Waiting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HistoryEvent::BranchesCancelled => "branches_cancelled",
            HistoryEvent::Cancelled => "cancelled",
            HistoryEvent::ClaimOverridden => "claim_overridden",
            HistoryEvent::Collected => "collected",
            HistoryEvent::DeadlineBeyondCalendar => "deadline_beyond_calendar",
            HistoryEvent::DeadlineNotRecomputed => "deadline_not_recomputed",
            HistoryEvent::DeadlineRecomputed => "deadline_recomputed",
            HistoryEvent::Decided => "decided",
            HistoryEvent::DecisionTable => "decision_table",
            HistoryEvent::Escalated => "escalated",
            HistoryEvent::EscalationDue => "escalation_due",
            HistoryEvent::FieldsSet => "fields_set",
            HistoryEvent::FieldsUpdated => "fields_updated",
            HistoryEvent::Incident => "incident",
            HistoryEvent::InstancesAdded => "instances_added",
            HistoryEvent::InstancesDone => "instances_done",
            HistoryEvent::InstancesOpened => "instances_opened",
            HistoryEvent::Interrupted => "interrupted",
            HistoryEvent::Joined => "joined",
            HistoryEvent::MessageExpired => "message_expired",
            HistoryEvent::MessageKept => "message_kept",
            HistoryEvent::MessageReceived => "message_received",
            HistoryEvent::Notified => "notified",
            HistoryEvent::PriorityRaised => "priority_raised",
            HistoryEvent::ReachedEnd => "reached_end",
            HistoryEvent::ReminderSent => "reminder_sent",
            HistoryEvent::RemindersStopped => "reminders_stopped",
            HistoryEvent::Resumed => "resumed",
            HistoryEvent::Retried => "retried",
            HistoryEvent::SlaThreshold => "sla_threshold",
            HistoryEvent::Split => "split",
            HistoryEvent::Started => "started",
            HistoryEvent::SubProcessReturned => "sub_process_returned",
            HistoryEvent::SubProcessStarted => "sub_process_started",
            HistoryEvent::Suspended => "suspended",
            HistoryEvent::TaskClaimed => "task_claimed",
            HistoryEvent::TaskCompleted => "task_completed",
            HistoryEvent::TaskDelegated => "task_delegated",
            HistoryEvent::TaskOpened => "task_opened",
            HistoryEvent::TaskOverdue => "task_overdue",
            HistoryEvent::TaskReassigned => "task_reassigned",
            HistoryEvent::TaskReleased => "task_released",
            HistoryEvent::TimerFired => "timer_fired",
            HistoryEvent::TimerMoved => "timer_moved",
            HistoryEvent::TimerNotMoved => "timer_not_moved",
            HistoryEvent::UntilNotEvaluated => "until_not_evaluated",
            HistoryEvent::WaitTimedOut => "wait_timed_out",
            HistoryEvent::Waiting => "waiting",
        }
    }
}

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub event: String,
    pub step: Option<String>,
    pub detail: String,
    /// Fields changed: name, old value, new value.
    pub changes: Vec<(String, Option<Value>, Value)>,
    /// For timers: how late it fired.
    pub lateness_ms: Option<i64>,
    /// The rules version in force when this happened (stamped by the service).
    #[serde(default)]
    pub rules_version: u64,
    /// The task this entry is about (its sequence number in the case), for reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<u32>,
}

/// Something the shells must do after the write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Effect {
    TaskOpened {
        task: TaskId,
        assignee: Option<String>,
    },
    TaskClosed {
        task: TaskId,
        reason: String,
    },
    TaskReassigned {
        task: TaskId,
        from: Option<String>,
        to: Option<String>,
    },
    TimerSet {
        seq: u32,
        due_at: DateTime<Utc>,
    },
    TimerCancelled {
        seq: u32,
    },
    Notify {
        to: Option<String>,
        role: Option<String>,
        message: String,
    },
    Reminder {
        task: TaskId,
        to: Option<String>,
    },
    Escalated {
        task: TaskId,
        to: Option<String>,
    },
    StartChild {
        token: u32,
        process: String,
        fields: BTreeMap<String, Value>,
    },
    /// The case ended while these sub-process cases ran: they are cancelled with it.
    CancelChildren {
        children: Vec<InstanceId>,
    },
    Ended {
        status: Status,
    },
    /// The command gave `count` tasks of `role` by round robin: the shell moves the role's
    /// rotation on by that much once the command is written.
    RoundRobinTaken {
        role: String,
        count: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Start {
        fields: BTreeMap<String, Value>,
    },
    CompleteTask {
        task: u32,
        fields: BTreeMap<String, Value>,
    },
    Claim {
        task: u32,
    },
    Release {
        task: u32,
    },
    Reassign {
        task: u32,
        to: String,
        reason: String,
    },
    /// The assignee passes the task to a colleague who may work on it.
    Delegate {
        task: u32,
        to: String,
        reason: String,
    },
    FireTimer {
        timer: u32,
    },
    Message {
        name: String,
    },
    UpdateFields {
        fields: BTreeMap<String, Value>,
    },
    /// The shell started the sub-process case a `call` token asked for.
    ChildStarted {
        token: u32,
        child: InstanceId,
    },
    ChildEnded {
        token: u32,
        fields: BTreeMap<String, Value>,
    },
    /// The sub-process case was cancelled: the `call` step becomes an incident (`retry`
    /// starts a new one).
    ChildCancelled {
        token: u32,
        reason: String,
    },
    Cancel {
        reason: String,
    },
    Suspend,
    Resume,
    Retry,
    /// Recomputes the deadlines of open tasks under the rules in force (after a rules change).
    RecomputeDeadlines,
}

/// Why a command was refused. The instance is unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("invalid field `{field}`: {problem}")]
    InvalidField { field: String, problem: String },
    #[error("invalid fields: {}", .0.iter().map(|(f, p)| format!("`{f}`: {p}")).collect::<Vec<_>>().join("; "))]
    InvalidFields(Vec<(String, String)>),
    #[error("task {0} is not open")]
    TaskNotOpen(TaskId),
    #[error("the case has no task {0}")]
    UnknownTask(TaskId),
    #[error("timer {0} is not pending")]
    TimerNotPending(u32),
    #[error("timer {timer} is due at {due_at}, not yet")]
    TimerNotDue { timer: u32, due_at: DateTime<Utc> },
    #[error("{actor} may not {action}")]
    Forbidden { actor: String, action: String },
    #[error("the instance is {0}")]
    WrongStatus(&'static str),
    #[error("no step of this instance is waiting for message `{0}`")]
    NoListener(String),
    #[error("token {0} is not waiting for a sub-process")]
    NotWaitingForChild(u32),
    #[error("the case ran through {STEPS_PER_COMMAND_MAX} steps in one command; is something looping?")]
    Runaway,
    /// The command would leave the instance in a state the engine must never reach (a bug).
    #[error("internal error: the command would break an invariant of the case: {0}")]
    Invariant(String),
}

/// What the engine knows about current work, for assignment. A snapshot: the core reads it
/// and does not change it.
pub trait Workload {
    fn open_tasks(&self, user: &str) -> usize;
    /// Tasks given to the role by round robin so far: the rotation's position. Read, never
    /// advanced here: the core reports what it took as `Effect::RoundRobinTaken`.
    fn round_robin_position(&self, role: &str) -> u64;
    /// Who last completed `step` in a case of `process` whose `field` held `value`.
    fn familiar(&self, process: &str, field: &str, value: &str, step: &str) -> Option<String>;
    /// How many cases of `process` its tally `name` counted under these keys.
    fn tally(&self, process: &str, name: &str, keys: &[String]) -> u64;
}

/// No workload information: every user has no open tasks.
pub struct NoWorkload;

impl Workload for NoWorkload {
    fn open_tasks(&self, _: &str) -> usize {
        0
    }
    fn round_robin_position(&self, _: &str) -> u64 {
        0
    }
    fn familiar(&self, _: &str, _: &str, _: &str, _: &str) -> Option<String> {
        None
    }
    fn tally(&self, _: &str, _: &str, _: &[String]) -> u64 {
        0
    }
}

/// The tallies a case counts in as it ends: (tally name, keys) for each tally of the process
/// whose outcome is the case's. Pure: the shell writes them in the same batch.
pub fn tally_entries(model: &Process, rules: &RuleSet, inst: &Instance) -> Vec<(String, Vec<String>)> {
    let Status::Completed { outcome } = &inst.status else { return Vec::new() };
    let declared = |n: &str| model.field(n).is_some();
    let no_tally = |_: &str, _: &[String]| 0;
    let actor_of = |step: Option<&str>| match step {
        None => Some(inst.started_by.clone()),
        Some(name) => model.step_named(name).and_then(|s| inst.done_by.get(&s.id).cloned()),
    };
    let scope = Scope {
        fields: &inst.fields,
        declared: &declared,
        rules,
        now: inst.updated_at,
        tally: &no_tally,
        actor_of: &actor_of,
    };
    model
        .tallies
        .iter()
        .filter(|(_, _, o)| o == outcome)
        .filter_map(|(name, keys, _)| {
            let keys =
                keys.iter().map(|k| eval(k, &scope).map(|v| crate::eval::key_text(&v))).collect::<Result<Vec<_>, _>>();
            keys.ok().map(|k| (name.clone(), k))
        })
        .collect()
}

/// Everything a command runs against besides the instance.
pub struct Context<'a> {
    pub model: &'a Process,
    pub rules: &'a RuleSet,
    pub workload: &'a dyn Workload,
    pub now: DateTime<Utc>,
}

/// The outcome of a successful command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub effects: Vec<Effect>,
    pub history: Vec<HistoryEntry>,
}

impl Instance {
    /// A fresh instance, before `Command::Start`.
    pub fn new(id: InstanceId, model: &Process, version: u32, business_key: String, now: DateTime<Utc>) -> Instance {
        Instance {
            id,
            process: model.id.clone(),
            version,
            business_key,
            status: Status::Running,
            fields: BTreeMap::new(),
            tokens: BTreeMap::new(),
            tasks: BTreeMap::new(),
            timers: BTreeMap::new(),
            join_arrivals: BTreeMap::new(),
            join_expected: BTreeMap::new(),
            each_groups: BTreeMap::new(),
            mailbox: Vec::new(),
            started_by: String::new(),
            cycle_anchors: BTreeMap::new(),
            done_by: BTreeMap::new(),
            next_seq: 1,
            history_len: 0,
            started_at: now,
            updated_at: now,
            parent: None,
            rules_version: 0,
            family: None,
            depth: 0,
            children: BTreeMap::new(),
        }
    }

    pub fn task_id(&self, seq: u32) -> TaskId {
        TaskId { instance: self.id, seq }
    }
}

/// Applies a command. On success `instance` holds the new state; on error it is unchanged.
pub fn apply(ctx: &Context, instance: &mut Instance, actor: &Actor, command: Command) -> Result<Outcome, CommandError> {
    let (after, outcome) = applied(ctx, instance, actor, command)?;
    *instance = after;
    Ok(outcome)
}

/// Applies a command to a case and returns the new case beside the outcome, leaving the given
/// one as it was (so a shell can run the command again on a fresher workload).
pub fn applied(
    ctx: &Context,
    instance: &Instance,
    actor: &Actor,
    command: Command,
) -> Result<(Instance, Outcome), CommandError> {
    let mut run = Run {
        ctx,
        inst: instance.clone(),
        actor,
        effects: Vec::new(),
        history: Vec::new(),
        steps_run: 0,
        round_robin: RefCell::new(BTreeMap::new()),
    };
    run.command(command)?;
    if let Err(broken) = invariants(ctx.model, &run.inst) {
        // A bug, not bad input: refuse the command and leave the case as it was. (Not a
        // panic: one broken case must not take the server's worker down.)
        return Err(CommandError::Invariant(broken));
    }
    run.inst.updated_at = ctx.now;
    let mut effects = run.effects;
    effects
        .extend(run.round_robin.into_inner().into_iter().map(|(role, count)| Effect::RoundRobinTaken { role, count }));
    Ok((run.inst, Outcome { effects, history: run.history }))
}

/// What must hold of an instance after every command. A live case always has work in it:
/// every token waits for a task, a timer, a message, a sub-process or a retry, so a case can
/// never be running with nothing that could move it on.
pub fn invariants(model: &Process, inst: &Instance) -> Result<(), String> {
    if inst.status.is_ended() {
        if !(inst.tokens.is_empty() && inst.tasks.is_empty() && inst.timers.is_empty() && inst.children.is_empty()) {
            return Err(format!("{} but still holds tokens, tasks or timers", inst.status.name()));
        }
        return Ok(());
    }
    if inst.tokens.is_empty() {
        return Err(format!("{} with no token: nothing could ever move it on", inst.status.name()));
    }
    for (id, t) in &inst.tokens {
        let step = model.steps.get(t.step.index()).ok_or_else(|| format!("token {id} is on no step"))?;
        match (&t.waiting, &step.kind) {
            (Waiting::Task(seq), StepKind::Task(_)) => {
                if !inst.tasks.get(seq).is_some_and(|task| task.token == *id && task.step == t.step) {
                    return Err(format!("token {id} waits for task {seq}, which is not open at `{}`", step.name));
                }
            }
            (Waiting::Wait, StepKind::Wait(w)) => {
                let timed = inst.timers.values().any(
                    |x| matches!(x.kind, TimerKind::Wait { token } | TimerKind::Timeout { token } if token == *id),
                );
                if !timed && w.on_message.is_empty() {
                    return Err(format!("token {id} waits at `{}` for no timer and no message", step.name));
                }
            }
            (Waiting::Child, StepKind::Call(_)) => {}
            (Waiting::Incident, _) if matches!(inst.status, Status::Incident { .. }) => {}
            (w, _) => return Err(format!("token {id} is {w:?} at step `{}`", step.name)),
        }
    }
    for (id, t) in &inst.tokens {
        if let Some(g) = t.group {
            if inst.each_groups.get(&g).is_none_or(|g| g.step != t.step) {
                return Err(format!("token {id} belongs to no group of instances at its step"));
            }
        }
    }
    for (g, group) in &inst.each_groups {
        if !inst.tokens.values().any(|t| t.group == Some(*g)) {
            return Err(format!("the instances of group {g} at step {} have no token", group.step.index()));
        }
    }
    for token in inst.children.keys() {
        if !inst.tokens.get(token).is_some_and(|t| t.waiting == Waiting::Child) {
            return Err(format!("token {token} has a sub-process case but does not wait for one"));
        }
    }
    for task in inst.tasks.values() {
        if !inst.tokens.get(&task.token).is_some_and(|k| k.waiting == Waiting::Task(task.seq)) {
            return Err(format!("task {} has no token waiting for it", task.seq));
        }
    }
    for (join, arrived) in &inst.join_arrivals {
        if let Some(needed) = join_needs(model, inst, *join) {
            if *arrived >= needed {
                return Err(format!("join {} holds {arrived} arrivals of {needed} and has not fired", join.index()));
            }
        }
    }
    Ok(())
}

/// How many arrivals make a join fire in this case: its quorum, or every branch its split
/// started.
fn join_needs(model: &Process, inst: &Instance, join: StepId) -> Option<u32> {
    let StepKind::Join { split, quorum, .. } = &model.steps.get(join.index())?.kind else { return None };
    let StepKind::Split { branches, .. } = &model.steps.get(split.index())?.kind else { return None };
    let started = inst.join_expected.get(&join).copied().unwrap_or(branches.len() as u32);
    Some(quorum.map_or(started, |q| q.min(started)))
}

struct Run<'a> {
    ctx: &'a Context<'a>,
    inst: Instance,
    actor: &'a Actor,
    effects: Vec<Effect>,
    history: Vec<HistoryEntry>,
    steps_run: usize,
    /// Tasks this command gave by round robin, per role (the rotation moves on by these).
    round_robin: RefCell<BTreeMap<String, u64>>,
}

impl Run<'_> {
    fn now(&self) -> DateTime<Utc> {
        self.ctx.now
    }

    fn step(&self, id: StepId) -> &model::Step {
        self.ctx.model.step(id)
    }

    fn record(&mut self, event: HistoryEvent, step: Option<StepId>, detail: impl Into<String>) -> &mut HistoryEntry {
        let entry = HistoryEntry {
            seq: self.inst.history_len,
            at: self.now(),
            actor: self.actor.id.clone(),
            event: event.as_str().to_string(),
            step: step.map(|s| self.step(s).name.clone()),
            detail: detail.into(),
            changes: Vec::new(),
            lateness_ms: None,
            rules_version: 0,
            task: None,
        };
        self.inst.history_len += 1;
        self.history.push(entry);
        self.history.last_mut().expect("just pushed")
    }

    fn seq(&mut self) -> u32 {
        let s = self.inst.next_seq;
        self.inst.next_seq += 1;
        s
    }

    fn require_running(&self) -> Result<(), CommandError> {
        match self.inst.status {
            Status::Running => Ok(()),
            ref s => Err(CommandError::WrongStatus(s.name())),
        }
    }

    fn command(&mut self, command: Command) -> Result<(), CommandError> {
        match command {
            Command::Start { fields } => self.start(fields),
            Command::CompleteTask { task, fields } => self.complete(task, fields),
            Command::Claim { task } => {
                self.require_running()?;
                let t = self.open_task(task)?;
                if !self.may_work_on(&t) {
                    return Err(self.forbidden("claim this task"));
                }
                self.four_eyes(&t, "claim this task")?;
                // A task given to someone else is theirs: taking it over is a reassignment.
                if let Some(holder) = t.assignee.as_deref().filter(|a| *a != self.actor.id) {
                    if !self.may("reassign") {
                        return Err(self.forbidden(&format!(
                            "claim a task assigned to {holder} (they may release it, or a holder of `reassign` take it over)"
                        )));
                    }
                }
                let from = t.assignee.clone();
                self.set_assignee(task, Some(self.actor.id.clone()), true);
                self.record(
                    HistoryEvent::TaskClaimed,
                    Some(t.step),
                    format!("from {}", from.as_deref().unwrap_or("nobody")),
                );
                Ok(())
            }
            Command::Release { task } => {
                self.require_running()?;
                let t = self.open_task(task)?;
                if t.assignee.as_deref() != Some(&self.actor.id) && !self.actor.admin {
                    return Err(self.forbidden("release a task assigned to someone else"));
                }
                self.set_assignee(task, None, false);
                self.record(HistoryEvent::TaskReleased, Some(t.step), "");
                Ok(())
            }
            Command::Reassign { task, to, reason } => {
                self.require_running()?;
                let t = self.open_task(task)?;
                if !self.may("reassign") {
                    return Err(self.forbidden("reassign tasks (the `reassign` permission; an assignee may delegate)"));
                }
                if !self.ctx.rules.users.contains_key(&to) {
                    return Err(CommandError::InvalidField {
                        field: "to".into(),
                        problem: format!("no user `{to}` in the rules"),
                    });
                }
                if self.excluded(t.step).contains(&to) {
                    return Err(CommandError::InvalidField {
                        field: "to".into(),
                        problem: format!("`{to}` did an earlier step that this one must be done by someone else than"),
                    });
                }
                self.set_assignee(task, Some(to.clone()), false);
                self.record(HistoryEvent::TaskReassigned, Some(t.step), format!("to {to}: {reason}"));
                Ok(())
            }
            Command::Delegate { task, to, reason } => {
                self.require_running()?;
                let t = self.open_task(task)?;
                if t.assignee.as_deref() != Some(&self.actor.id) {
                    return Err(self.forbidden("delegate a task that is not assigned to them"));
                }
                if !self.may("delegate") {
                    return Err(self.forbidden("delegate tasks (the `delegate` permission)"));
                }
                let problem = match self.ctx.rules.users.get(&to) {
                    None => Some(format!("no user `{to}` in the rules")),
                    Some(_) if to == self.actor.id => Some("the task is already theirs".to_string()),
                    Some(u) if !u.roles.iter().any(|r| t.candidates.contains(r)) => {
                        Some(format!("`{to}` holds none of the task's roles ({})", t.candidates.join(", ")))
                    }
                    Some(_) if self.excluded(t.step).contains(&to) => {
                        Some(format!("`{to}` did an earlier step that this one must be done by someone else than"))
                    }
                    Some(_) => None,
                };
                if let Some(problem) = problem {
                    return Err(CommandError::InvalidField { field: "to".into(), problem });
                }
                self.set_assignee(task, Some(to.clone()), false);
                if let Some(x) = self.inst.tasks.get_mut(&task) {
                    x.delegated_by = Some(self.actor.id.clone());
                }
                self.record(HistoryEvent::TaskDelegated, Some(t.step), format!("to {to}: {reason}"));
                Ok(())
            }
            Command::FireTimer { timer } => self.fire(timer),
            Command::Message { name } => self.message(&name),
            Command::UpdateFields { fields } => {
                if self.inst.status.is_ended() {
                    return Err(CommandError::WrongStatus(self.inst.status.name()));
                }
                if !self.may("update_fields") {
                    return Err(self.forbidden("update a case's fields"));
                }
                let changes = self.validate_fields(&fields, false)?;
                self.set_fields(changes, HistoryEvent::FieldsUpdated, None);
                Ok(())
            }
            Command::ChildStarted { token, child } => {
                if !self.inst.tokens.get(&token).is_some_and(|t| t.waiting == Waiting::Child) {
                    return Err(CommandError::NotWaitingForChild(token));
                }
                self.inst.children.insert(token, child);
                Ok(())
            }
            Command::ChildCancelled { token, reason } => {
                if self.inst.status.is_ended() {
                    return Err(CommandError::WrongStatus(self.inst.status.name()));
                }
                let Some(tok) = self.inst.tokens.get(&token).filter(|t| t.waiting == Waiting::Child).cloned() else {
                    return Err(CommandError::NotWaitingForChild(token));
                };
                let child = self.inst.children.remove(&token).map_or_else(String::new, |c| format!(" {c}"));
                self.park(
                    token,
                    tok.step,
                    EvalError::Type(format!("the sub-process case{child} was cancelled: {reason}")),
                );
                Ok(())
            }
            Command::ChildEnded { token, fields } => {
                let Some(tok) = self.inst.tokens.get(&token).filter(|t| t.waiting == Waiting::Child).cloned() else {
                    return Err(CommandError::NotWaitingForChild(token));
                };
                self.inst.children.remove(&token);
                let StepKind::Call(call) = &self.step(tok.step).kind else {
                    return Err(CommandError::NotWaitingForChild(token));
                };
                let mut changes = BTreeMap::new();
                for (parent_field, child_field) in &call.outputs {
                    if let Some(v) = fields.get(child_field) {
                        changes.insert(parent_field.clone(), v.clone());
                    }
                }
                let next = call.next.clone();
                let changes = self.validate_fields(&changes, false)?;
                self.set_fields(changes, HistoryEvent::SubProcessReturned, Some(tok.step));
                self.follow(token, tok.step, &next)?;
                self.settle()
            }
            Command::Cancel { reason } => {
                if self.inst.status.is_ended() {
                    return Err(CommandError::WrongStatus(self.inst.status.name()));
                }
                if !self.may("cancel") {
                    return Err(self.forbidden("cancel a case"));
                }
                self.end(Status::Cancelled { reason: reason.clone() });
                self.record(HistoryEvent::Cancelled, None, reason);
                Ok(())
            }
            Command::Suspend => {
                self.require_running()?;
                self.inst.status = Status::Suspended;
                self.record(HistoryEvent::Suspended, None, "");
                Ok(())
            }
            Command::Resume => {
                if self.inst.status != Status::Suspended {
                    return Err(CommandError::WrongStatus(self.inst.status.name()));
                }
                self.inst.status = Status::Running;
                self.record(HistoryEvent::Resumed, None, "");
                Ok(())
            }
            Command::RecomputeDeadlines => {
                if self.inst.status.is_ended() {
                    return Err(CommandError::WrongStatus(self.inst.status.name()));
                }
                let open: Vec<Task> = self.inst.tasks.values().cloned().collect();
                for t in open {
                    self.recompute_deadline(&t);
                }
                Ok(())
            }
            Command::Retry => {
                let Status::Incident { .. } = self.inst.status else {
                    return Err(CommandError::WrongStatus(self.inst.status.name()));
                };
                self.inst.status = Status::Running;
                self.record(HistoryEvent::Retried, None, "");
                let parked: Vec<(u32, StepId)> = self
                    .inst
                    .tokens
                    .iter()
                    .filter(|(_, t)| t.waiting == Waiting::Incident)
                    .map(|(id, t)| (*id, t.step))
                    .collect();
                for (token, step) in parked {
                    self.enter(token, step)?;
                }
                self.settle()
            }
        }
    }

    /// Administrators, or holders of a role the rules' `[permissions]` grant the action to.
    fn may(&self, action: &str) -> bool {
        self.actor.admin
            || self
                .ctx
                .rules
                .permissions
                .get(action)
                .is_some_and(|roles| roles.iter().any(|r| self.actor.roles.contains(r)))
    }

    fn forbidden(&self, action: &str) -> CommandError {
        CommandError::Forbidden { actor: self.actor.id.clone(), action: action.into() }
    }

    /// An open task; a number the case never gave out is unknown (404), a task that was open
    /// and is no longer is not open (409).
    fn open_task(&self, seq: u32) -> Result<Task, CommandError> {
        if seq >= self.inst.next_seq {
            return Err(CommandError::UnknownTask(self.inst.task_id(seq)));
        }
        self.inst.tasks.get(&seq).cloned().ok_or(CommandError::TaskNotOpen(self.inst.task_id(seq)))
    }

    /// The assignee, a member of a candidate role, or an administrator.
    fn may_work_on(&self, t: &Task) -> bool {
        self.actor.admin
            || t.assignee.as_deref() == Some(&self.actor.id)
            || t.candidates.iter().any(|c| self.actor.roles.contains(c))
    }

    fn set_assignee(&mut self, seq: u32, to: Option<String>, claimed: bool) {
        let task_id = self.inst.task_id(seq);
        if let Some(t) = self.inst.tasks.get_mut(&seq) {
            let from = std::mem::replace(&mut t.assignee, to.clone());
            t.claimed = claimed;
            self.effects.push(Effect::TaskReassigned { task: task_id, from, to });
        }
    }

    // ------------------------------------------------------------ fields

    /// Checks values against the process's field types. `starting`: required fields must be
    /// present and defaults are applied by the caller.
    /// Checks values against the process's field types and reports every bad field at once.
    /// `starting`: required fields must be present (defaults are applied by the caller).
    fn validate_fields(
        &self,
        given: &BTreeMap<String, Value>,
        starting: bool,
    ) -> Result<BTreeMap<String, Value>, CommandError> {
        let mut out = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, value) in given {
            let Some(field) = self.ctx.model.field(name) else {
                let known: Vec<&str> = self.ctx.model.fields.iter().map(|f| f.name.as_str()).collect();
                problems.push((
                    name.clone(),
                    format!("the process has no such field; its fields are: {}", known.join(", ")),
                ));
                continue;
            };
            match conform(&field.ty, value) {
                // A user field names someone the rules know.
                Ok(Value::Text(u)) if field.ty == FieldType::User && !self.ctx.rules.users.contains_key(&u) => {
                    problems.push((name.clone(), format!("no user `{u}` in the rules")));
                }
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err(problem) => problems.push((name.clone(), problem)),
            }
        }
        if starting {
            for f in &self.ctx.model.fields {
                if f.required && !given.contains_key(&f.name) {
                    problems.push((f.name.clone(), "required".into()));
                }
            }
        }
        match problems.len() {
            0 => Ok(out),
            1 => {
                let (field, problem) = problems.remove(0);
                Err(CommandError::InvalidField { field, problem })
            }
            _ => Err(CommandError::InvalidFields(problems)),
        }
    }

    fn set_fields(&mut self, changes: BTreeMap<String, Value>, event: HistoryEvent, step: Option<StepId>) {
        let mut recorded = Vec::new();
        for (name, value) in changes {
            let old = self.inst.fields.insert(name.clone(), value.clone());
            if old.as_ref() != Some(&value) {
                recorded.push((name, old, value));
            }
        }
        let changed: Vec<String> = recorded.iter().map(|(n, _, _)| n.clone()).collect();
        if !recorded.is_empty() || event != HistoryEvent::FieldsUpdated {
            let entry = self.record(event, step, "");
            entry.changes = recorded;
        }
        if event != HistoryEvent::Collected {
            self.grow_each_groups(&changed);
        }
        if !changed.is_empty() {
            self.move_derived_timers(&changed);
        }
    }

    /// Timers computed from fields move when the fields change: a wait `until planned_date - 1
    /// workday`, a task due `rules.response_time[urgency]`. Each move is in the history.
    fn move_derived_timers(&mut self, changed: &[String]) {
        let touches = |e: &caseflow_dsl::ast::Expr| changed.iter().any(|f| mentions(e, f));
        let waiting: Vec<(u32, Token)> = self
            .inst
            .tokens
            .iter()
            .filter(|(_, t)| t.waiting == Waiting::Wait)
            .map(|(id, t)| (*id, t.clone()))
            .collect();
        for (token, tok) in waiting {
            let StepKind::Wait(w) = &self.step(tok.step).kind else { continue };
            let w = w.clone();
            let fixed = |kind: &TimerKind| matches!(kind, TimerKind::Wait { token: t } if *t == token);
            let new_at = match &w.condition {
                Some(WaitCondition::Until(e)) if touches(e) => self.instant_of(e, tok.entered_at),
                Some(WaitCondition::For(e)) if touches(e) => self.instant_of(e, tok.entered_at),
                _ => continue,
            };
            let Some(old) = self.inst.timers.values().find(|t| fixed(&t.kind)).map(|t| (t.seq, t.due_at)) else {
                continue;
            };
            match new_at {
                Ok(at) if at != old.1 => {
                    self.inst.timers.remove(&old.0);
                    self.effects.push(Effect::TimerCancelled { seq: old.0 });
                    self.set_timer(at, TimerKind::Wait { token });
                    self.record(
                        HistoryEvent::TimerMoved,
                        Some(tok.step),
                        format!(
                            "{} → {} (the fields it is computed from changed)",
                            old.1.to_rfc3339(),
                            at.to_rfc3339()
                        ),
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    self.record(HistoryEvent::TimerNotMoved, Some(tok.step), e.to_string());
                }
            }
        }
        // Task deadlines computed from the fields.
        let stale: Vec<Task> = self
            .inst
            .tasks
            .values()
            .filter(
                |t| matches!(&self.step(t.step).kind, StepKind::Task(def) if def.due.as_ref().is_some_and(&touches)),
            )
            .cloned()
            .collect();
        for t in stale {
            self.recompute_deadline(&t);
        }
    }

    /// Items appended to the list a task `for each` item runs over, while its tasks are open,
    /// get tasks of their own (the number of instances is known only when the last is done).
    fn grow_each_groups(&mut self, changed: &[String]) {
        let groups: Vec<(u32, EachGroup)> = self.inst.each_groups.iter().map(|(g, x)| (*g, x.clone())).collect();
        for (g, group) in groups {
            let step = self.step(group.step).clone();
            let StepKind::Task(def) = &step.kind else { continue };
            let Some(each) = &def.each else { continue };
            let caseflow_dsl::ast::ExprKind::Name(list) = &each.list.kind else { continue };
            if !changed.contains(list) {
                continue;
            }
            let Some(Value::List(now)) = self.inst.fields.get(list) else { continue };
            let now: Vec<String> = now
                .iter()
                .map(|v| match v {
                    Value::Text(t) => t.clone(),
                    other => other.to_string(),
                })
                .collect();
            // Only an append is followed: the tasks already opened stay as they are.
            if now.len() <= group.items.len() || !now.starts_with(&group.items) {
                continue;
            }
            let added: Vec<String> = now[group.items.len()..].to_vec();
            let Some(x) = self.inst.each_groups.get_mut(&g) else { continue };
            x.items.extend(added.iter().cloned());
            if each.enough.is_none() {
                x.needed = x.items.len() as u32;
            }
            self.record(HistoryEvent::InstancesAdded, Some(step.id), added.join(", "));
            // One at a time: the task now open opens the next one when done.
            if !each.in_turn {
                if let Some(x) = self.inst.each_groups.get_mut(&g) {
                    x.next = x.items.len();
                }
                for item in added {
                    self.open_instance(g, &step, def, item);
                }
            }
        }
    }

    fn scope_eval(&self, e: &caseflow_dsl::ast::Expr) -> Result<Value, EvalError> {
        let model = self.ctx.model;
        let declared = |n: &str| model.field(n).is_some();
        let tally = |name: &str, keys: &[String]| self.ctx.workload.tally(&self.inst.process, name, keys);
        let actor_of = |step: Option<&str>| match step {
            None => Some(self.inst.started_by.clone()),
            Some(name) => model.step_named(name).and_then(|s| self.inst.done_by.get(&s.id).cloned()),
        };
        let scope = Scope {
            fields: &self.inst.fields,
            declared: &declared,
            rules: self.ctx.rules,
            now: self.now(),
            tally: &tally,
            actor_of: &actor_of,
        };
        eval(e, &scope)
    }

    /// An expression's value as an instant: a duration from now, or a date/datetime.
    fn instant_of(&self, e: &caseflow_dsl::ast::Expr, from: DateTime<Utc>) -> Result<DateTime<Utc>, EvalError> {
        match self.scope_eval(e)? {
            Value::Duration(span) => Ok(self.ctx.rules.calendar.add(from, span)?),
            Value::DateTime(t) => Ok(t),
            Value::Date(d) => Ok(self.ctx.rules.calendar.date_start(d)),
            other => Err(EvalError::Type(format!("expected a duration or a date, found a {}", other.type_name()))),
        }
    }

    fn span_of(&self, e: &caseflow_dsl::ast::Expr) -> Result<Span, EvalError> {
        match self.scope_eval(e)? {
            Value::Duration(span) => Ok(span),
            other => Err(EvalError::Type(format!("expected a duration, found a {}", other.type_name()))),
        }
    }

    // ------------------------------------------------------------ commands

    fn start(&mut self, fields: BTreeMap<String, Value>) -> Result<(), CommandError> {
        if self.inst.history_len > 0 {
            return Err(CommandError::WrongStatus("already started"));
        }
        self.inst.started_by = self.actor.id.clone();
        // `own` user fields: the caller, or someone else only with `act_for_others`.
        let mut fields = fields;
        for f in self.ctx.model.fields.iter().filter(|f| f.own) {
            match fields.get(&f.name) {
                None => {
                    fields.insert(f.name.clone(), Value::Text(self.actor.id.clone()));
                }
                Some(Value::Text(u)) if *u == self.actor.id => {}
                Some(_) if self.may("act_for_others") => {}
                Some(_) => {
                    return Err(self.forbidden(&format!(
                        "file `{}` in someone else's name (the `act_for_others` permission)",
                        f.name
                    )))
                }
            }
        }
        let mut values = self.validate_fields(&fields, true)?;
        // Defaults, in declaration order, so a default may use an earlier field.
        for f in &self.ctx.model.fields {
            if values.contains_key(&f.name) {
                continue;
            }
            if let Some(default) = &f.default {
                self.inst.fields = values.clone();
                let v = self.scope_eval(default).map_err(|e| CommandError::InvalidField {
                    field: f.name.clone(),
                    problem: format!("default: {e}"),
                })?;
                let v = conform(&f.ty, &v)
                    .map_err(|problem| CommandError::InvalidField { field: f.name.clone(), problem })?;
                values.insert(f.name.clone(), v);
            }
        }
        self.inst.fields = BTreeMap::new();
        let key = self.inst.business_key.clone();
        self.set_fields(values, HistoryEvent::Started, None);
        if let Some(e) = self.history.last_mut() {
            e.detail = format!("business key {key}");
        }
        let start = self.ctx.model.start.clone();
        let token = self.seq();
        let first = self
            .choose(&start)
            .map_err(|e| CommandError::InvalidField { field: "(start)".into(), problem: e.to_string() })?;
        self.inst.tokens.insert(
            token,
            Token { step: first, entered_at: self.now(), waiting: Waiting::Wait, group: None, item: None },
        );
        self.enter(token, first)?;
        self.settle()
    }

    fn complete(&mut self, seq: u32, fields: BTreeMap<String, Value>) -> Result<(), CommandError> {
        self.require_running()?;
        let task = self.open_task(seq)?;
        if !self.may_work_on(&task) {
            return Err(self.forbidden("complete this task"));
        }
        self.four_eyes(&task, "complete this task")?;
        // A claim holds: only its holder completes the task, unless someone may reassign it.
        if let Some(holder) = task.assignee.as_deref().filter(|a| task.claimed && *a != self.actor.id) {
            if !self.may("reassign") {
                return Err(self.forbidden(&format!("complete a task claimed by {holder}")));
            }
            self.record(HistoryEvent::ClaimOverridden, Some(task.step), format!("claimed by {holder}"));
        }
        let StepKind::Task(def) = &self.step(task.step).kind else {
            return Err(CommandError::TaskNotOpen(self.inst.task_id(seq)));
        };
        for name in fields.keys() {
            if !def.form.iter().any(|f| f.field == *name) {
                let form: Vec<&str> = def.form.iter().map(|f| f.field.as_str()).collect();
                return Err(CommandError::InvalidField {
                    field: name.clone(),
                    problem: format!(
                        "this task does not ask for it; it asks for: {}",
                        if form.is_empty() { "nothing".into() } else { form.join(", ") }
                    ),
                });
            }
        }
        for f in def.form.iter().filter(|f| f.required) {
            if !fields.contains_key(&f.field) {
                return Err(CommandError::InvalidField {
                    field: f.field.clone(),
                    problem: "this task requires it".into(),
                });
            }
        }
        let next = def.next.clone();
        let changes = self.validate_fields(&fields, false)?;
        self.close_task(seq, "completed");
        // What the person answered, all of it (an answer equal to the field's value is an
        // outcome too: `resolved = false` at the phone step), then the fields it changed.
        let answers: Vec<(String, Option<Value>, Value)> =
            changes.iter().map(|(k, v)| (k.clone(), self.inst.fields.get(k).cloned(), v.clone())).collect();
        self.set_fields(changes, HistoryEvent::TaskCompleted, Some(task.step));
        if let Some(e) = self.history.last_mut() {
            e.detail = format!("task {}", TaskId { instance: self.inst.id, seq });
            e.task = Some(seq);
            e.changes = answers;
        }
        self.inst.done_by.insert(task.step, self.actor.id.clone());
        if let Some(group) = self.inst.tokens.get(&task.token).and_then(|t| t.group) {
            self.each_done(task.token, group, &fields)?;
        } else {
            self.follow(task.token, task.step, &next)?;
        }
        self.settle()
    }

    /// Enters a task `for each` item: one instance (token and task) per item, or the first
    /// one only when one at a time. No item: the step is done at once.
    fn open_each(&mut self, token: u32, step: &model::Step, def: &model::Task) -> Result<(), CommandError> {
        let each = def.each.as_ref().expect("open_each is for tasks for each item");
        let items = match self.scope_eval(&each.list) {
            Ok(Value::List(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::Text(t) => t,
                    other => other.to_string(),
                })
                .collect::<Vec<_>>(),
            Ok(other) => {
                self.park(
                    token,
                    step.id,
                    EvalError::Type(format!("`for each` needs a list, found {}", other.type_name())),
                );
                return Ok(());
            }
            Err(e) => {
                self.park(token, step.id, e);
                return Ok(());
            }
        };
        if items.is_empty() {
            self.record(HistoryEvent::InstancesOpened, Some(step.id), "no item");
            return self.follow(token, step.id, &def.next.clone());
        }
        if self.inst.tokens.len() + items.len() > TOKENS_MAX {
            self.park(token, step.id, EvalError::Type(format!("more than {TOKENS_MAX} tasks at once")));
            return Ok(());
        }
        let needed = each.enough.map_or(items.len() as u32, |n| n.min(items.len() as u32));
        let opened = if each.in_turn { 1 } else { items.len() };
        self.inst.tokens.remove(&token);
        let group = self.seq();
        self.inst
            .each_groups
            .insert(group, EachGroup { step: step.id, items: items.clone(), next: opened, done: 0, needed });
        self.record(HistoryEvent::InstancesOpened, Some(step.id), format!("{} of {}", opened, items.len()));
        for item in items.into_iter().take(opened) {
            self.open_instance(group, step, def, item);
        }
        Ok(())
    }

    fn open_instance(&mut self, group: u32, step: &model::Step, def: &model::Task, item: String) {
        let token = self.seq();
        let t = Token {
            step: step.id,
            entered_at: self.now(),
            waiting: Waiting::Wait,
            group: Some(group),
            item: Some(item),
        };
        self.inst.tokens.insert(token, t);
        if let Err(e) = self.open_new_task(token, step, def) {
            self.park(token, step.id, e);
        }
    }

    /// One instance of a task `for each` item is done: collect its answers, open the next
    /// item (one at a time), or, once enough are done, withdraw the rest and go on.
    fn each_done(&mut self, token: u32, group: u32, fields: &BTreeMap<String, Value>) -> Result<(), CommandError> {
        let Some(tok) = self.inst.tokens.remove(&token) else { return Ok(()) };
        let step = self.step(tok.step).clone();
        let StepKind::Task(def) = &step.kind else { return Ok(()) };
        let item = tok.item.clone().unwrap_or_default();
        let mut collected = BTreeMap::new();
        for (field, list) in &def.collect {
            let Some(v) = fields.get(field) else { continue };
            let mut all = match self.inst.fields.get(list) {
                Some(Value::List(l)) => l.clone(),
                _ => Vec::new(),
            };
            all.push(Value::Text(format!("{item}: {}", v.to_string().trim_matches('"'))));
            collected.insert(list.clone(), Value::List(all));
        }
        if !collected.is_empty() {
            self.set_fields(collected, HistoryEvent::Collected, Some(step.id));
        }
        let Some(g) = self.inst.each_groups.get_mut(&group) else { return Ok(()) };
        g.done += 1;
        let (done, needed, next, total) = (g.done, g.needed, g.next, g.items.len());
        // `until CONDITION`, on the case as this answer left it.
        let condition_met = match def.each.as_ref().and_then(|e| e.until.as_ref()) {
            Some(cond) => match self.scope_eval(cond).and_then(|v| truth(&v)) {
                Ok(met) => met,
                Err(e) => {
                    self.record(HistoryEvent::UntilNotEvaluated, Some(step.id), e.to_string());
                    false
                }
            },
            None => false,
        };
        if done >= needed || condition_met {
            let rest: Vec<(u32, Token)> = self
                .inst
                .tokens
                .iter()
                .filter(|(_, t)| t.group == Some(group))
                .map(|(id, t)| (*id, t.clone()))
                .collect();
            let withdrawn = self.withdraw_tokens(rest, &[]);
            self.inst.each_groups.remove(&group);
            let mut detail = format!("{done} of {total} done");
            if !withdrawn.is_empty() {
                detail.push_str(&format!("; withdrew {}", withdrawn.len()));
            }
            self.record(HistoryEvent::InstancesDone, Some(step.id), detail);
            let t = self.seq();
            self.inst.tokens.insert(
                t,
                Token { step: step.id, entered_at: self.now(), waiting: Waiting::Wait, group: None, item: None },
            );
            return self.follow(t, step.id, &def.next.clone());
        }
        if def.each.as_ref().is_some_and(|e| e.in_turn) && next < total {
            let item = self.inst.each_groups[&group].items[next].clone();
            if let Some(g) = self.inst.each_groups.get_mut(&group) {
                g.next += 1;
            }
            self.open_instance(group, &step, def, item);
        }
        Ok(())
    }

    fn fire(&mut self, seq: u32) -> Result<(), CommandError> {
        let Some(timer) = self.inst.timers.get(&seq).cloned() else { return Err(CommandError::TimerNotPending(seq)) };
        if self.now() < timer.due_at {
            return Err(CommandError::TimerNotDue { timer: seq, due_at: timer.due_at });
        }
        self.require_running()?;
        self.inst.timers.remove(&seq);
        let lateness = (self.now() - timer.due_at).num_milliseconds();
        // Timers act as the engine, whoever's request delivered them.
        let caller = std::mem::replace(&mut self.actor, Actor::system());
        let result = self.fire_kind(&timer, lateness);
        self.actor = caller;
        result?;
        self.settle()
    }

    fn fire_kind(&mut self, timer: &Timer, lateness: i64) -> Result<(), CommandError> {
        match &timer.kind {
            TimerKind::Due { task } => {
                let Some(t) = self.inst.tasks.get_mut(task) else { return Ok(()) };
                t.overdue = true;
                let step = t.step;
                let entry =
                    self.record(HistoryEvent::TaskOverdue, Some(step), format!("task {}", self.inst.task_id(*task)));
                entry.lateness_ms = Some(lateness);
                entry.task = Some(*task);
                self.run_handlers(*task, |trigger| matches!(trigger, Trigger::Overdue { after: None }))
            }
            TimerKind::Escalation { task, handler } | TimerKind::Threshold { task, handler } => {
                let Some(t) = self.inst.tasks.get(task) else { return Ok(()) };
                let step = t.step;
                let label = if matches!(timer.kind, TimerKind::Threshold { .. }) {
                    HistoryEvent::SlaThreshold
                } else {
                    HistoryEvent::EscalationDue
                };
                self.record(label, Some(step), format!("task {}", self.inst.task_id(*task))).lateness_ms =
                    Some(lateness);
                let index = *handler;
                let mut i = 0;
                self.run_handlers(*task, |_| {
                    let hit = i == index;
                    i += 1;
                    hit
                })
            }
            TimerKind::Reminder { task, every } => {
                let Some(t) = self.inst.tasks.get_mut(task) else { return Ok(()) };
                t.reminders_sent += 1;
                let (to, step, sent) = (t.assignee.clone(), t.step, t.reminders_sent);
                let task_id = self.inst.task_id(*task);
                self.effects.push(Effect::Reminder { task: task_id, to });
                self.record(HistoryEvent::ReminderSent, Some(step), format!("task {task_id}")).lateness_ms =
                    Some(lateness);
                if sent < REMINDERS_MAX {
                    // The next reminder counts from when this one was due, so lateness does not drift.
                    let mut next = self.ctx.rules.calendar.add(timer.due_at, *every);
                    if matches!(next, Ok(t) if t <= self.now()) {
                        next = self.ctx.rules.calendar.add(self.now(), *every);
                    }
                    match next {
                        Ok(at) => {
                            self.set_timer(at, TimerKind::Reminder { task: *task, every: *every });
                        }
                        Err(e) => {
                            self.record(HistoryEvent::RemindersStopped, Some(step), e.to_string());
                        }
                    }
                }
                Ok(())
            }
            TimerKind::Wait { token } => {
                let Some(tok) = self.inst.tokens.get(token).cloned() else { return Ok(()) };
                self.record(HistoryEvent::TimerFired, Some(tok.step), "").lateness_ms = Some(lateness);
                let StepKind::Wait(w) = &self.step(tok.step).kind else { return Ok(()) };
                let next = w.next.clone().expect("the checker requires `->` on timed waits");
                self.cancel_token_timers(*token);
                self.follow(*token, tok.step, &next)
            }
            TimerKind::Timeout { token } => {
                let Some(tok) = self.inst.tokens.get(token).cloned() else { return Ok(()) };
                self.record(HistoryEvent::WaitTimedOut, Some(tok.step), "").lateness_ms = Some(lateness);
                let StepKind::Wait(w) = &self.step(tok.step).kind else { return Ok(()) };
                let (_, target) = w.on_timeout.clone().expect("timeout timers come from `on timeout`");
                self.cancel_token_timers(*token);
                self.follow(*token, tok.step, &Transition::To(target))
            }
        }
    }

    /// Runs the actions of a task's handlers whose trigger `select` picks.
    fn run_handlers(&mut self, task: u32, mut select: impl FnMut(&Trigger) -> bool) -> Result<(), CommandError> {
        let Some(t) = self.inst.tasks.get(&task).cloned() else { return Ok(()) };
        let StepKind::Task(def) = &self.step(t.step).kind else { return Ok(()) };
        let actions: Vec<model::Action> =
            def.handlers.iter().filter(|h| select(&h.trigger)).flat_map(|h| h.actions.iter().cloned()).collect();
        let task_id = self.inst.task_id(task);
        for action in actions {
            if !self.inst.tasks.contains_key(&task) {
                break; // an earlier action moved the case on
            }
            match action {
                model::Action::Escalate(who) => {
                    let to = self.assign(&who, t.step, t.assignee.as_deref());
                    self.set_assignee(task, to.clone(), false);
                    self.effects.push(Effect::Escalated { task: task_id, to: to.clone() });
                    self.record(
                        HistoryEvent::Escalated,
                        Some(t.step),
                        format!("task {task_id} to {}", to.as_deref().unwrap_or("(nobody available)")),
                    );
                }
                model::Action::Notify(who) => {
                    let (to, role) = match &who {
                        Assignee::Role { role, .. } => (None, Some(role.clone())),
                        from @ Assignee::RoleFrom { .. } => (None, self.role_from(from)),
                        other => (self.assign(other, t.step, t.assignee.as_deref()), None),
                    };
                    let message =
                        format!("{} ({}) needs attention", self.step(t.step).display_name(), self.inst.business_key);
                    let whom = to.clone().or_else(|| role.as_ref().map(|r| format!("role {r}"))).unwrap_or_default();
                    self.effects.push(Effect::Notify { to, role, message });
                    self.record(HistoryEvent::Notified, Some(t.step), format!("task {task_id}: {whom}"));
                }
                model::Action::RaisePriority => {
                    if let Some(tt) = self.inst.tasks.get_mut(&task) {
                        tt.priority = tt.priority.saturating_add(1);
                        let p = tt.priority;
                        self.record(HistoryEvent::PriorityRaised, Some(t.step), format!("task {task_id} to {p}"));
                    }
                }
                model::Action::Remind => {
                    let to = self.inst.tasks.get(&task).and_then(|t| t.assignee.clone());
                    self.effects.push(Effect::Reminder { task: task_id, to });
                    self.record(HistoryEvent::ReminderSent, Some(t.step), format!("task {task_id}"));
                }
                model::Action::Goto(target) => {
                    self.close_task(task, "left by a deadline handler");
                    self.follow(t.token, t.step, &Transition::To(target))?;
                }
            }
        }
        Ok(())
    }

    fn message(&mut self, name: &str) -> Result<(), CommandError> {
        self.require_running()?;
        if let Some((_, target)) = self.ctx.model.interrupts.iter().find(|(m, _)| m == name) {
            // Everything the case was doing stops; it goes on at the target.
            let target = *target;
            let gone: Vec<(u32, Token)> = self.inst.tokens.iter().map(|(id, t)| (*id, t.clone())).collect();
            let all: Vec<StepId> = (0..self.ctx.model.steps.len() as u32).map(StepId).collect();
            let withdrawn = self.withdraw_tokens(gone, &all);
            let detail = if withdrawn.is_empty() {
                name.to_string()
            } else {
                format!("{name}; withdrew {}", withdrawn.join(", "))
            };
            self.record(HistoryEvent::Interrupted, Some(target), detail);
            let token = self.seq();
            self.enter(token, target)?;
            return self.settle();
        }
        let mut heard = false;
        // Waits listening for it.
        let waiting: Vec<(u32, StepId)> =
            self.inst.tokens.iter().filter(|(_, t)| t.waiting == Waiting::Wait).map(|(id, t)| (*id, t.step)).collect();
        for (token, step) in waiting {
            // An earlier delivery may have moved this token on, or withdrawn or ended it.
            if !self.inst.tokens.get(&token).is_some_and(|t| t.step == step && t.waiting == Waiting::Wait) {
                continue;
            }
            let StepKind::Wait(w) = &self.step(step).kind else { continue };
            if let Some((_, target)) = w.on_message.iter().find(|(m, _)| m == name) {
                let target = *target;
                heard = true;
                self.record(HistoryEvent::MessageReceived, Some(step), name.to_string());
                self.cancel_token_timers(token);
                self.follow(token, step, &Transition::To(target))?;
            }
        }
        // Tasks with `when message NAME`.
        let tasks: Vec<u32> = self.inst.tasks.keys().copied().collect();
        for task in tasks {
            let Some(t) = self.inst.tasks.get(&task) else { continue };
            let StepKind::Task(def) = &self.step(t.step).kind else { continue };
            if def.handlers.iter().any(|h| h.trigger == Trigger::Message(name.to_string())) {
                heard = true;
                let step = t.step;
                self.record(HistoryEvent::MessageReceived, Some(step), name.to_string());
                self.run_handlers(task, |tr| *tr == Trigger::Message(name.to_string()))?;
            }
        }
        if !heard {
            // Kept for a step that will listen (WCP-24), if the process says so.
            let Some((_, ttl)) = self.ctx.model.kept_messages.iter().find(|(m, _)| m == name) else {
                return Err(CommandError::NoListener(name.to_string()));
            };
            let now = self.now();
            let until = self.instant_of(ttl, now).map_err(|_| CommandError::NoListener(name.to_string()))?;
            self.inst.mailbox.push(KeptMessage { name: name.to_string(), kept_at: now, until });
            self.record(HistoryEvent::MessageKept, None, format!("{name} until {}", until.to_rfc3339()));
        }
        self.settle()
    }

    /// Takes the oldest kept message that `wanted` accepts, first dropping the expired ones.
    fn take_kept(&mut self, wanted: impl Fn(&str) -> bool) -> Option<KeptMessage> {
        if self.inst.mailbox.is_empty() {
            return None;
        }
        let now = self.now();
        let (expired, live): (Vec<KeptMessage>, Vec<KeptMessage>) =
            std::mem::take(&mut self.inst.mailbox).into_iter().partition(|m| m.until <= now);
        self.inst.mailbox = live;
        for m in expired {
            self.record(
                HistoryEvent::MessageExpired,
                None,
                format!("{} kept since {}", m.name, m.kept_at.to_rfc3339()),
            );
        }
        let i = self.inst.mailbox.iter().position(|m| wanted(&m.name))?;
        Some(self.inst.mailbox.remove(i))
    }

    /// A step that starts listening hears a message kept for it.
    fn deliver_kept(&mut self, token: u32, step_id: StepId) -> Result<(), CommandError> {
        let step = self.step(step_id).clone();
        match &step.kind {
            StepKind::Wait(w) => {
                let Some(m) = self.take_kept(|n| w.on_message.iter().any(|(x, _)| x == n)) else { return Ok(()) };
                let target = w.on_message.iter().find(|(x, _)| *x == m.name).map(|(_, t)| *t).expect("wanted");
                self.record(
                    HistoryEvent::MessageReceived,
                    Some(step_id),
                    format!("{} (kept since {})", m.name, m.kept_at.to_rfc3339()),
                );
                self.cancel_token_timers(token);
                self.follow(token, step_id, &Transition::To(target))
            }
            StepKind::Task(def) => {
                let Some(Waiting::Task(seq)) = self.inst.tokens.get(&token).map(|t| t.waiting.clone()) else {
                    return Ok(());
                };
                let hears = |n: &str| def.handlers.iter().any(|h| matches!(&h.trigger, Trigger::Message(m) if m == n));
                let Some(m) = self.take_kept(hears) else { return Ok(()) };
                self.record(
                    HistoryEvent::MessageReceived,
                    Some(step_id),
                    format!("{} (kept since {})", m.name, m.kept_at.to_rfc3339()),
                );
                let name = m.name.clone();
                self.run_handlers(seq, |tr| *tr == Trigger::Message(name.clone()))
            }
            _ => Ok(()),
        }
    }

    // ------------------------------------------------------------ moving tokens

    /// Picks the next step of a transition.
    fn choose(&self, t: &Transition) -> Result<StepId, EvalError> {
        self.choose_branch(t).map(|(target, _)| target)
    }

    /// The chosen step and, for a decision, which arm chose it (1-based; 0 for `else`).
    fn choose_branch(&self, t: &Transition) -> Result<(StepId, Option<usize>), EvalError> {
        match t {
            Transition::To(s) => Ok((*s, None)),
            Transition::Decide { branches, otherwise } => {
                for (i, (cond, target)) in branches.iter().enumerate() {
                    if truth(&self.scope_eval(cond)?)? {
                        return Ok((*target, Some(i + 1)));
                    }
                }
                otherwise
                    .map(|o| (o, Some(0)))
                    .ok_or_else(|| EvalError::Type("no branch of the decision matched".into()))
            }
        }
    }

    /// Leaves `from` along `t` and enters the chosen step. Decisions are recorded with the arm
    /// taken, so the history explains why a case went where it went.
    fn follow(&mut self, token: u32, from: StepId, t: &Transition) -> Result<(), CommandError> {
        match self.choose_branch(t) {
            Ok((next, arm)) => {
                if let Some(arm) = arm {
                    let target = self.step(next).name.clone();
                    let detail =
                        if arm == 0 { format!("else -> {target}") } else { format!("branch {arm} -> {target}") };
                    self.record(HistoryEvent::Decided, Some(from), detail);
                }
                self.enter(token, next)
            }
            Err(e) => {
                self.park(token, from, e);
                Ok(())
            }
        }
    }

    /// Puts a token in the incident state at `step`.
    fn park(&mut self, token: u32, step: StepId, e: EvalError) {
        if let Some(t) = self.inst.tokens.get_mut(&token) {
            t.step = step;
            t.waiting = Waiting::Incident;
        }
        let name = self.step(step).name.clone();
        self.inst.status = Status::Incident { step: name, reason: e.to_string() };
        self.record(HistoryEvent::Incident, Some(step), e.to_string());
    }

    fn enter(&mut self, token: u32, step_id: StepId) -> Result<(), CommandError> {
        self.steps_run += 1;
        if self.steps_run > STEPS_PER_COMMAND_MAX {
            return Err(CommandError::Runaway);
        }
        if !matches!(self.inst.status, Status::Running) {
            // A cancellation or incident earlier in this command stops the walk.
            return Ok(());
        }
        let now = self.now();
        // An instance of a task `for each` item keeps its group and item when entered again
        // (a retry); any other token enters afresh.
        let (group, item) = match self.inst.tokens.get(&token) {
            Some(t) if t.step == step_id && t.group.is_some() => (t.group, t.item.clone()),
            _ => (None, None),
        };
        let entered = Token { step: step_id, entered_at: now, waiting: Waiting::Wait, group, item };
        self.inst.tokens.insert(token, entered);
        let step = self.step(step_id).clone();
        match &step.kind {
            StepKind::Task(def) if def.each.is_some() && group.is_none() => self.open_each(token, &step, def),
            StepKind::Task(def) => match self.open_new_task(token, &step, def) {
                Ok(()) => self.deliver_kept(token, step_id),
                Err(e) => {
                    self.park(token, step_id, e);
                    Ok(())
                }
            },
            StepKind::Auto { actions, next } => {
                for action in actions {
                    if let Err(e) = self.auto_action(step_id, action) {
                        self.park(token, step_id, e);
                        return Ok(());
                    }
                }
                self.follow(token, step_id, next)
            }
            StepKind::Wait(w) => {
                self.record(HistoryEvent::Waiting, Some(step_id), "");
                let timer = match &w.condition {
                    None => None,
                    Some(WaitCondition::For(e)) => Some(self.instant_of(e, now)),
                    Some(WaitCondition::Until(e)) => Some(self.instant_of(e, now)),
                    Some(WaitCondition::Every(e)) => Some(self.next_cycle(step_id, e)),
                };
                match timer {
                    Some(Ok(at)) => {
                        self.set_timer(at, TimerKind::Wait { token });
                    }
                    Some(Err(e)) => {
                        self.park(token, step_id, e);
                        return Ok(());
                    }
                    None => {}
                }
                if let Some((e, _)) = &w.on_timeout {
                    match self.instant_of(e, now) {
                        Ok(at) => {
                            self.set_timer(at, TimerKind::Timeout { token });
                        }
                        Err(e) => {
                            self.park(token, step_id, e);
                            return Ok(());
                        }
                    }
                }
                self.deliver_kept(token, step_id)
            }
            StepKind::Split { branches, join, guards, .. } => {
                // A branch with a condition starts only if it holds (multi-choice); the join
                // then waits for the branches started.
                let mut started = Vec::with_capacity(branches.len());
                for (b, guard) in branches.iter().zip(guards) {
                    let go = match guard {
                        None => Ok(true),
                        Some(g) => self.scope_eval(g).and_then(|v| truth(&v)),
                    };
                    match go {
                        Ok(true) => started.push(*b),
                        Ok(false) => {}
                        Err(e) => {
                            self.park(token, step_id, e);
                            return Ok(());
                        }
                    }
                }
                let names: Vec<&str> = started.iter().map(|b| self.step(*b).name.as_str()).collect();
                let detail = if guards.iter().any(Option::is_some) { names.join(", ") } else { String::new() };
                self.record(HistoryEvent::Split, Some(step_id), detail);
                if started.is_empty() {
                    // No condition held: nothing to wait for, go on past the join.
                    let StepKind::Join { next, .. } = &self.step(*join).kind else { unreachable!("checked") };
                    let next = next.clone();
                    self.record(HistoryEvent::Joined, Some(*join), "no branch started");
                    return self.follow(token, *join, &next);
                }
                self.inst.tokens.remove(&token);
                if self.inst.tokens.len() + started.len() > TOKENS_MAX {
                    self.park(token, step_id, EvalError::Type(format!("more than {TOKENS_MAX} parallel branches")));
                    return Ok(());
                }
                if started.len() < branches.len() {
                    self.inst.join_expected.insert(*join, started.len() as u32);
                }
                for b in started {
                    let t = self.seq();
                    self.enter(t, b)?;
                }
                Ok(())
            }
            StepKind::Join { split, next, quorum } => {
                let needed = join_needs(self.ctx.model, &self.inst, step_id).unwrap_or(1);
                let arrived = self.inst.join_arrivals.entry(step_id).or_insert(0);
                *arrived += 1;
                let arrived = *arrived;
                if arrived < needed {
                    self.inst.tokens.remove(&token);
                    return Ok(());
                }
                self.inst.join_arrivals.remove(&step_id);
                self.inst.join_expected.remove(&step_id);
                let mut detail = String::new();
                if quorum.is_some() {
                    let StepKind::Split { region, .. } = &self.step(*split).kind else { unreachable!("checked") };
                    let withdrawn = self.withdraw(token, &region.clone());
                    detail = format!("{arrived} arrived");
                    if !withdrawn.is_empty() {
                        detail.push_str(&format!("; withdrew {}", withdrawn.join(", ")));
                    }
                }
                self.record(HistoryEvent::Joined, Some(step_id), detail);
                self.follow(token, step_id, next)
            }
            StepKind::Call(call) => {
                let mut fields = BTreeMap::new();
                for (child_field, e) in &call.inputs {
                    match self.scope_eval(e) {
                        Ok(v) => {
                            fields.insert(child_field.clone(), v);
                        }
                        Err(e) => {
                            self.park(token, step_id, e);
                            return Ok(());
                        }
                    }
                }
                if let Some(t) = self.inst.tokens.get_mut(&token) {
                    t.waiting = Waiting::Child;
                }
                self.record(HistoryEvent::SubProcessStarted, Some(step_id), call.process.clone());
                self.effects.push(Effect::StartChild { token, process: call.process.clone(), fields });
                Ok(())
            }
            StepKind::End => {
                // An `end` ends the case, also from inside parallel branches: the other
                // branches' work is cancelled (a join waiting for them would wait forever).
                self.inst.tokens.remove(&token);
                self.record(HistoryEvent::ReachedEnd, Some(step_id), step.display_name().to_string());
                let others: Vec<String> = self.inst.tokens.values().map(|t| self.step(t.step).name.clone()).collect();
                if !others.is_empty() {
                    self.record(HistoryEvent::BranchesCancelled, Some(step_id), others.join(", "));
                }
                self.end(Status::Completed { outcome: step.name.clone() });
                Ok(())
            }
        }
    }

    /// After a command's walk: nothing to do today but keep the invariants checkable.
    fn settle(&mut self) -> Result<(), CommandError> {
        debug_assert!(self.inst.tasks.values().all(|t| self
            .inst
            .tokens
            .get(&t.token)
            .is_some_and(|k| k.waiting == Waiting::Task(t.seq))));
        Ok(())
    }

    fn next_cycle(&mut self, step: StepId, period: &caseflow_dsl::ast::Expr) -> Result<DateTime<Utc>, EvalError> {
        let span = self.span_of(period)?;
        let anchor = *self.inst.cycle_anchors.entry(step).or_insert(self.ctx.now);
        let mut t = anchor;
        // Fixed rate: the first tick after now, counted from the anchor.
        for _ in 0..100_000 {
            t = self.ctx.rules.calendar.add(t, span)?;
            if t > self.ctx.now {
                return Ok(t);
            }
        }
        Err(EvalError::Type("the cycle period is too short".into()))
    }

    fn auto_action(&mut self, step: StepId, action: &AutoAction) -> Result<(), EvalError> {
        match action {
            AutoAction::Set { field, value } => {
                let v = self.scope_eval(value)?;
                let ty = &self.ctx.model.field(field).expect("checked").ty;
                let v = conform(ty, &v).map_err(|p| EvalError::Type(format!("field `{field}`: {p}")))?;
                let mut changes = BTreeMap::new();
                changes.insert(field.clone(), v);
                self.set_fields(changes, HistoryEvent::FieldsSet, Some(step));
                Ok(())
            }
            AutoAction::Lookup { table, inputs, outputs } => {
                let t = self
                    .ctx
                    .rules
                    .tables
                    .get(table)
                    .ok_or(EvalError::MissingRule { name: table.clone(), key: None })?;
                let mut args = Vec::with_capacity(t.inputs.len());
                for input in &t.inputs {
                    let v = match inputs.iter().find(|(n, _)| n == input) {
                        Some((_, e)) => self.scope_eval(e)?,
                        None => return Err(EvalError::Type(format!("table `{table}` needs input `{input}`"))),
                    };
                    args.push(v);
                }
                let hits = t.evaluate(&args).map_err(|e| EvalError::Type(e.to_string()))?;
                let Some(&row) = hits.0.first() else {
                    return Err(EvalError::Type(format!("no row of table `{table}` matched")));
                };
                let mut changes = BTreeMap::new();
                for (field, column) in outputs {
                    let i = t
                        .outputs
                        .iter()
                        .position(|o| o == column)
                        .ok_or(EvalError::Type(format!("table `{table}` has no output `{column}`")))?;
                    let ty = &self.ctx.model.field(field).expect("checked").ty;
                    let v = conform(ty, &t.rows[row].outputs[i])
                        .map_err(|p| EvalError::Type(format!("field `{field}`: {p}")))?;
                    changes.insert(field.clone(), v);
                }
                self.set_fields(changes, HistoryEvent::DecisionTable, Some(step));
                if let Some(e) = self.history.last_mut() {
                    e.detail = format!("{table} row {row} (line {})", t.rows[row].line);
                }
                Ok(())
            }
        }
    }

    fn open_new_task(&mut self, token: u32, step: &model::Step, def: &model::Task) -> Result<(), EvalError> {
        let now = self.now();
        let due_at = def.due.as_ref().map(|e| self.instant_of(e, now)).transpose()?;
        let assignee = def.assign.as_ref().and_then(|a| self.assign(a, step.id, None));
        let mut candidates = def.candidates.clone();
        let role = match &def.assign {
            Some(Assignee::Role { role, .. }) => Some(role.clone()),
            Some(from @ Assignee::RoleFrom { .. }) => self.role_from(from),
            _ => None,
        };
        if let Some(role) = role.filter(|r| !candidates.contains(r)) {
            candidates.push(role);
        }
        let item = self.inst.tokens.get(&token).and_then(|t| t.item.clone());
        let seq = self.seq();
        let beyond_calendar = due_at.is_some_and(|d| self.ctx.rules.calendar.beyond_coverage(d));
        let task = Task {
            beyond_calendar,
            step_name: step.name.clone(),
            delegated_by: None,
            item,
            seq,
            token,
            step: step.id,
            name: step.display_name().to_string(),
            assignee: assignee.clone(),
            candidates,
            claimed: false,
            priority: 0,
            opened_at: now,
            due_at,
            overdue: false,
            reminders_sent: 0,
        };
        self.inst.tasks.insert(seq, task);
        if let Some(t) = self.inst.tokens.get_mut(&token) {
            t.waiting = Waiting::Task(seq);
        }
        let task_id = self.inst.task_id(seq);
        self.effects.push(Effect::TaskOpened { task: task_id, assignee: assignee.clone() });
        self.record(
            HistoryEvent::TaskOpened,
            Some(step.id),
            format!("task {task_id} for {}", assignee.as_deref().unwrap_or("(unassigned)")),
        )
        .task = Some(seq);
        if let Some(due) = due_at {
            self.schedule_deadline(seq, def, now, due)?;
            if beyond_calendar {
                self.note_beyond_calendar(step.id, due);
            }
        }
        if let Some(every) = &def.remind_every {
            let span = self.span_of(every)?;
            let at = self.ctx.rules.calendar.add(now, span)?;
            self.set_timer(at, TimerKind::Reminder { task: seq, every: span });
        }
        Ok(())
    }

    /// Computes an open task's deadline again (rules or fields changed) and moves its timers
    /// if it changed, recording the move.
    fn recompute_deadline(&mut self, t: &Task) {
        let StepKind::Task(def) = &self.step(t.step).kind else { return };
        let def = def.clone();
        let Some(due_expr) = &def.due else { return };
        let due = match self.instant_of(due_expr, t.opened_at) {
            Ok(d) => d,
            Err(e) => {
                self.record(HistoryEvent::DeadlineNotRecomputed, Some(t.step), e.to_string());
                return;
            }
        };
        if Some(due) == t.due_at {
            return;
        }
        let seq = t.seq;
        self.cancel_timers(|k| !matches!(k, TimerKind::Due { task } | TimerKind::Escalation { task, .. } | TimerKind::Threshold { task, .. } if *task == seq));
        let beyond = self.ctx.rules.calendar.beyond_coverage(due);
        if let Some(task) = self.inst.tasks.get_mut(&seq) {
            task.due_at = Some(due);
            task.beyond_calendar = beyond;
            // A deadline moved later is not overdue any more.
            task.overdue = task.overdue && due <= self.ctx.now;
        }
        if beyond {
            self.note_beyond_calendar(t.step, due);
        }
        if let Err(e) = self.schedule_deadline(seq, &def, t.opened_at, due) {
            self.record(HistoryEvent::DeadlineNotRecomputed, Some(t.step), e.to_string());
            return;
        }
        let old = t.due_at.map(|d| d.to_rfc3339()).unwrap_or_default();
        self.record(
            HistoryEvent::DeadlineRecomputed,
            Some(t.step),
            format!("task {}: {old} → {}", self.inst.task_id(seq), due.to_rfc3339()),
        );
    }

    /// A deadline past the calendar's known holidays is recorded, so that someone checks it.
    fn note_beyond_calendar(&mut self, step: StepId, due: DateTime<Utc>) {
        let last = self.ctx.rules.calendar.covered_through.map(|d| d.to_string()).unwrap_or_default();
        self.record(
            HistoryEvent::DeadlineBeyondCalendar,
            Some(step),
            format!("due {}: the calendar knows holidays through {last} only", due.to_rfc3339()),
        );
    }

    /// The deadline timers of a task: the due time, escalations after it, SLA thresholds.
    fn schedule_deadline(
        &mut self,
        seq: u32,
        def: &model::Task,
        opened: DateTime<Utc>,
        due: DateTime<Utc>,
    ) -> Result<(), EvalError> {
        // An overdue deadline fires at once (a recomputed one may already have passed).
        self.set_timer(due, TimerKind::Due { task: seq });
        for (i, h) in def.handlers.iter().enumerate() {
            match &h.trigger {
                Trigger::Overdue { after: Some(delay) } => {
                    let at = self.instant_of(delay, due)?;
                    self.set_timer(at, TimerKind::Escalation { task: seq, handler: i });
                }
                Trigger::Elapsed { percent } => {
                    let at = self.threshold_at(def, opened, due, *percent)?;
                    self.set_timer(at, TimerKind::Threshold { task: seq, handler: i });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// When `percent` of the allowed time has elapsed. A deadline in business time is an SLA
    /// clock that runs only in working hours, so the threshold is measured in working time;
    /// a wall-clock deadline (`10min`) is measured in wall-clock time.
    fn threshold_at(
        &self,
        def: &model::Task,
        now: DateTime<Utc>,
        due: DateTime<Utc>,
        percent: u32,
    ) -> Result<DateTime<Utc>, EvalError> {
        let business = def.due.as_ref().is_some_and(|e| {
            matches!(self.scope_eval(e), Ok(Value::Duration(Span::WorkMinutes(_) | Span::WorkDays(_))))
        });
        let calendar = &self.ctx.rules.calendar;
        if business {
            let allowed = calendar.working_time_between(now, due).num_minutes();
            if allowed > 0 {
                let part = u64::try_from(allowed * i64::from(percent) / 100).unwrap_or(0);
                return Ok(calendar.add(now, Span::WorkMinutes(part))?);
            }
        }
        let allowed = (due - now).num_milliseconds().max(0);
        Ok(now + Duration::milliseconds(allowed * i64::from(percent) / 100))
    }

    fn set_timer(&mut self, due_at: DateTime<Utc>, kind: TimerKind) -> u32 {
        let seq = self.seq();
        self.inst.timers.insert(seq, Timer { seq, due_at, kind });
        self.effects.push(Effect::TimerSet { seq, due_at });
        seq
    }

    fn cancel_timers(&mut self, keep: impl Fn(&TimerKind) -> bool) {
        let gone: Vec<u32> = self.inst.timers.iter().filter(|(_, t)| !keep(&t.kind)).map(|(s, _)| *s).collect();
        for seq in gone {
            self.inst.timers.remove(&seq);
            self.effects.push(Effect::TimerCancelled { seq });
        }
    }

    fn cancel_token_timers(&mut self, token: u32) {
        self.cancel_timers(
            |k| !matches!(k, TimerKind::Wait { token: t } | TimerKind::Timeout { token: t } if *t == token),
        );
    }

    fn close_task(&mut self, seq: u32, reason: &str) {
        if self.inst.tasks.remove(&seq).is_some() {
            self.cancel_timers(|k| match k {
                TimerKind::Due { task }
                | TimerKind::Escalation { task, .. }
                | TimerKind::Threshold { task, .. }
                | TimerKind::Reminder { task, .. } => *task != seq,
                _ => true,
            });
            let task_id = self.inst.task_id(seq);
            self.effects.push(Effect::TaskClosed { task: task_id, reason: reason.to_string() });
        }
    }

    /// Withdraws every token (but `keep`) on a step of `region`: their tasks closed, timers
    /// cancelled, sub-process cases cancelled, joins inside reset. Returns the steps they were at.
    fn withdraw(&mut self, keep: u32, region: &[StepId]) -> Vec<String> {
        let gone: Vec<(u32, Token)> = self
            .inst
            .tokens
            .iter()
            .filter(|(id, t)| **id != keep && region.binary_search(&t.step).is_ok())
            .map(|(id, t)| (*id, t.clone()))
            .collect();
        self.withdraw_tokens(gone, region)
    }

    fn withdraw_tokens(&mut self, gone: Vec<(u32, Token)>, region: &[StepId]) -> Vec<String> {
        let mut steps = Vec::new();
        let mut children = Vec::new();
        for (id, t) in gone {
            if let Some(g) = t.group {
                self.inst.each_groups.remove(&g);
            }
            if let Waiting::Task(seq) = t.waiting {
                self.close_task(seq, "branch withdrawn");
            }
            self.cancel_token_timers(id);
            children.extend(self.inst.children.remove(&id));
            self.inst.tokens.remove(&id);
            steps.push(self.step(t.step).name.clone());
        }
        for s in region {
            self.inst.join_arrivals.remove(s);
            self.inst.join_expected.remove(s);
        }
        if !children.is_empty() {
            self.effects.push(Effect::CancelChildren { children });
        }
        steps
    }

    fn end(&mut self, status: Status) {
        let open: Vec<u32> = self.inst.tasks.keys().copied().collect();
        let reason = match &status {
            Status::Cancelled { .. } => "case cancelled",
            _ => "case ended",
        };
        for seq in open {
            self.close_task(seq, reason);
        }
        self.cancel_timers(|_| false);
        let children: Vec<InstanceId> = std::mem::take(&mut self.inst.children).into_values().collect();
        if !children.is_empty() {
            self.effects.push(Effect::CancelChildren { children });
        }
        self.inst.tokens.clear();
        self.inst.join_arrivals.clear();
        self.inst.join_expected.clear();
        self.inst.each_groups.clear();
        self.inst.mailbox.clear();
        self.inst.status = status.clone();
        self.effects.push(Effect::Ended { status });
    }

    // ------------------------------------------------------------ assignment

    /// Chooses a user for an assignee rule; `None` leaves the task to its candidate roles.
    /// `step`'s assignee rule applied; a person its `not same as` excludes is never chosen
    /// (the task then waits for a candidate).
    fn assign(&self, who: &Assignee, step: StepId, current: Option<&str>) -> Option<String> {
        let excluded = self.excluded(step);
        let chosen = match who {
            Assignee::User(u) => Some(u.clone()),
            Assignee::Field(f) => match self.inst.fields.get(f) {
                Some(Value::Text(u)) if !u.is_empty() => Some(u.clone()),
                _ => None,
            },
            Assignee::SameAs(step) => self.inst.done_by.get(step).cloned(),
            Assignee::Role { role, strategy, familiar } => {
                // History-based: the one who did this step for the same customer last time,
                // if they can take it now.
                let known = familiar.as_ref().and_then(|f| match self.inst.fields.get(f) {
                    Some(Value::Text(v)) => self.ctx.workload.familiar(&self.inst.process, f, v, &self.step(step).name),
                    _ => None,
                });
                match known.filter(|u| self.can_take(role, u, &excluded)) {
                    Some(u) => Some(u),
                    None => self.pick_member(role, strategy.as_deref(), &excluded),
                }
            }
            Assignee::RoleFrom { strategy, .. } => {
                let role = self.role_from(who)?;
                self.pick_member(&role, strategy.as_deref(), &excluded)
            }
            // One level up the organisation from whoever holds the task now.
            Assignee::ManagerOfAssignee => {
                current.and_then(|u| self.ctx.rules.users.get(u)).and_then(|u| u.reports_to.clone())
            }
        };
        chosen.filter(|u| !excluded.contains(u))
    }

    /// The role a `role from FIELD` names now, if the rules define it.
    fn role_from(&self, who: &Assignee) -> Option<String> {
        let Assignee::RoleFrom { field, .. } = who else { return None };
        match self.inst.fields.get(field) {
            Some(Value::Text(r)) if self.ctx.rules.roles.contains_key(r) => Some(r.clone()),
            _ => None,
        }
    }

    /// Who may not work on a task of `step`: those who did the steps it names in `not same as`.
    fn excluded(&self, step: StepId) -> Vec<String> {
        match &self.step(step).kind {
            StepKind::Task(def) => def.not_same_as.iter().filter_map(|s| self.inst.done_by.get(s).cloned()).collect(),
            _ => Vec::new(),
        }
    }

    /// Refuses a person whom the task's separation of duties excludes.
    fn four_eyes(&self, t: &Task, action: &str) -> Result<(), CommandError> {
        if self.excluded(t.step).contains(&self.actor.id) {
            return Err(self
                .forbidden(&format!("{action}: they did an earlier step this one must be done by someone else than")));
        }
        Ok(())
    }

    /// Whether `user` is a member of `role` who is here (not away, on shift) and not excluded.
    fn can_take(&self, role: &str, user: &str, excluded: &[String]) -> bool {
        !excluded.iter().any(|x| x == user) && self.available(role).contains(&user)
    }

    /// The members of a role who are here now: not away, and on shift if they have shifts.
    fn available<'r>(&'r self, role: &'r str) -> Vec<&'r str> {
        let rules = self.ctx.rules;
        let today = self.now().with_timezone(&rules.calendar.time_zone);
        let date = today.date_naive();
        let time = today.time();
        let away = |user: &str| rules.away.iter().any(|a| a.user == user && a.from <= date && date <= a.to);
        let on_shift = |user: &str| {
            let shifts: Vec<_> = rules.roster.iter().filter(|s| s.user == user).collect();
            shifts.is_empty()
                || shifts
                    .iter()
                    .any(|s| s.days.contains(&today.weekday()) && s.hours.start <= time && time < s.hours.end)
        };
        rules.members(role).map(|u| u.id.as_str()).filter(|u| !away(u) && on_shift(u)).collect()
    }

    fn pick_member(&self, role: &str, strategy: Option<&str>, excluded: &[String]) -> Option<String> {
        let rules = self.ctx.rules;
        let date = self.now().with_timezone(&rules.calendar.time_zone).date_naive();
        let away = |user: &str| rules.away.iter().any(|a| a.user == user && a.from <= date && date <= a.to);
        let available: Vec<&str> =
            self.available(role).into_iter().filter(|u| !excluded.iter().any(|x| x == u)).collect();
        let role_def = rules.roles.get(role);
        let strategy = match strategy {
            Some("round_robin") => Strategy::RoundRobin,
            Some("fewest_open") => Strategy::FewestOpen,
            Some("skill") => Strategy::Skill,
            _ => role_def.map_or(Strategy::RoundRobin, |r| r.strategy.clone()),
        };
        let chosen = match strategy {
            Strategy::RoundRobin if !available.is_empty() => {
                let mut taken = self.round_robin.borrow_mut();
                let taken = taken.entry(role.to_string()).or_insert(0);
                let position = self.ctx.workload.round_robin_position(role) + *taken;
                *taken += 1;
                Some(available[(position % available.len() as u64) as usize])
            }
            Strategy::FewestOpen => available.iter().copied().min_by_key(|u| (self.ctx.workload.open_tasks(u), *u)),
            Strategy::Skill => {
                // Members whose skills name a value of the case (a product line, a language).
                let wanted: Vec<String> = self
                    .inst
                    .fields
                    .values()
                    .filter_map(|v| match v {
                        Value::Text(t) => Some(t.clone()),
                        _ => None,
                    })
                    .collect();
                // The highest level in the case's skills first, then the fewest open tasks.
                let level = |u: &str| {
                    rules.users.get(u).map_or(0, |x| wanted.iter().map(|w| x.skill_level(w)).max().unwrap_or(0))
                };
                let best = available.iter().map(|u| level(u)).max().unwrap_or(0);
                let pool: Vec<&str> = available.iter().copied().filter(|u| level(u) == best).collect();
                pool.iter().copied().min_by_key(|u| (self.ctx.workload.open_tasks(u), *u))
            }
            Strategy::RoundRobin => None,
        };
        // Someone away may have a stand-in who is not.
        let stand_in = || {
            rules
                .members(role)
                .filter(|u| away(&u.id))
                .find_map(|u| {
                    rules.away.iter().find(|a| a.user == u.id && a.from <= date && date <= a.to)?.stand_in.clone()
                })
                .filter(|s| !away(s) && !excluded.contains(s))
        };
        chosen
            .map(str::to_string)
            .or_else(stand_in)
            .or_else(|| role_def.and_then(|r| r.fallback.clone()).filter(|f| !excluded.contains(f)))
    }
}

/// Whether an expression reads the field `name`.
fn mentions(e: &caseflow_dsl::ast::Expr, name: &str) -> bool {
    use caseflow_dsl::ast::ExprKind as K;
    match &e.kind {
        K::Name(n) => n == name,
        K::List(items) => items.iter().any(|i| mentions(i, name)),
        K::Rule { key, .. } => key.as_ref().is_some_and(|k| mentions(k, name)),
        K::Call { args, .. } => args.iter().any(|a| mentions(a, name)),
        K::Not(x) | K::Neg(x) | K::Paren(x) => mentions(x, name),
        K::Binary { lhs, rhs, .. } => mentions(lhs, name) || mentions(rhs, name),
        _ => false,
    }
}

/// A value made to fit a field's type: ints into decimals, text into a choice that lists it,
/// ranges and choice membership checked. `Err` says what is wrong.
pub fn conform(ty: &FieldType, v: &Value) -> Result<Value, String> {
    match (ty, v) {
        (FieldType::Text | FieldType::User, Value::Text(_)) => Ok(v.clone()),
        (FieldType::Int { min, max }, Value::Int(i)) => {
            if min.is_some_and(|m| *i < m) || max.is_some_and(|m| *i > m) {
                Err(format!("{i} is outside {}..{}", min.unwrap_or(i64::MIN), max.unwrap_or(i64::MAX)))
            } else {
                Ok(v.clone())
            }
        }
        (FieldType::Decimal, Value::Decimal(_)) => Ok(v.clone()),
        (FieldType::Decimal, Value::Int(i)) => Ok(Value::Decimal(*i as f64)),
        (FieldType::Bool, Value::Bool(_)) => Ok(v.clone()),
        (FieldType::Date, Value::Date(_)) => Ok(v.clone()),
        (FieldType::Date, Value::Text(t)) => chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .map(Value::Date)
            .map_err(|_| format!("`{t}` is not a date (YYYY-MM-DD)")),
        (FieldType::DateTime, Value::DateTime(_)) => Ok(v.clone()),
        (FieldType::DateTime, Value::Text(t)) => DateTime::parse_from_rfc3339(t)
            .map(|d| Value::DateTime(d.with_timezone(&Utc)))
            .map_err(|_| format!("`{t}` is not an RFC 3339 date-time")),
        (FieldType::Choice(values), Value::Text(t)) => {
            if values.contains(t) {
                Ok(v.clone())
            } else {
                Err(format!("`{t}` is not one of: {}", values.join(", ")))
            }
        }
        (FieldType::ListOfText, Value::List(items)) if items.iter().all(|i| matches!(i, Value::Text(_))) => {
            Ok(v.clone())
        }
        (ty, v) => Err(format!("expected {ty}, got a {}", v.type_name())),
    }
}
