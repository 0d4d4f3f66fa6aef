//! A case as a plain value: its status, fields, tokens, open tasks and timers.

use crate::duration::Span;
use crate::value::Value;
use caseflow_dsl::model::{Process, StepId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
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
        self.kind().is_ended()
    }

    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    pub fn kind(&self) -> StatusKind {
        match self {
            Status::Running => StatusKind::Running,
            Status::Suspended => StatusKind::Suspended,
            Status::Incident { .. } => StatusKind::Incident,
            Status::Completed { .. } => StatusKind::Completed,
            Status::Cancelled { .. } => StatusKind::Cancelled,
        }
    }
}

/// A case's status without its details: one name in the case and in lists alike. The one list
/// of status names: queries, indexes, metrics and the API's filters spell them with `as_str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = CaseStatus))]
pub enum StatusKind {
    Running,
    Suspended,
    Incident,
    Completed,
    Cancelled,
}

impl StatusKind {
    pub const ALL: [StatusKind; 5] = [
        StatusKind::Running,
        StatusKind::Suspended,
        StatusKind::Incident,
        StatusKind::Completed,
        StatusKind::Cancelled,
    ];
    /// The statuses of a case that is not over.
    pub const OPEN: [StatusKind; 3] = [StatusKind::Running, StatusKind::Suspended, StatusKind::Incident];

    pub fn as_str(self) -> &'static str {
        match self {
            StatusKind::Running => "running",
            StatusKind::Suspended => "suspended",
            StatusKind::Incident => "incident",
            StatusKind::Completed => "completed",
            StatusKind::Cancelled => "cancelled",
        }
    }

    pub fn parse(name: &str) -> Option<StatusKind> {
        StatusKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub fn is_ended(self) -> bool {
        matches!(self, StatusKind::Completed | StatusKind::Cancelled)
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
    /// Its assignee said they are working on it (`StartWork`); cleared when it changes hands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Started>,
    /// Answers saved to finish later (`SaveDraft`): kept when the task changes hands, so whoever
    /// takes it over sees them; gone with the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<Draft>,
}

/// Who is working on a task, since when (the resource pattern "start").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    pub by: String,
    pub at: DateTime<Utc>,
}

/// A task's answers saved unfinished (the resource pattern "suspend work in progress"). Values
/// of sensitive fields are sealed at rest like the case's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    pub by: String,
    pub at: DateTime<Utc>,
    pub fields: BTreeMap<String, Value>,
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
