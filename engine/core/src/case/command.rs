//! Commands, why they are refused, and `apply`: the one entry point of the core.

use crate::case::invariants::invariants;
use crate::case::run::Run;
use crate::case::{
    Actor, Effect, HistoryEntry, Instance, InstanceId, StatusKind, TaskId, Workload, STEPS_PER_COMMAND_MAX,
};
use crate::rules::RuleSet;
use crate::value::Value;
use caseflow_dsl::model::Process;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Declares the commands once: the `Command` enum, `CommandKind` (each command without its
/// arguments) with `CommandKind::ALL`, and `Command::kind`, so that a new command is written in
/// one place and the compiler asks for it everywhere it must be handled (`allowed`, `apply`).
macro_rules! commands {
    ($( $(#[$doc:meta])* $name:ident $({ $($field:ident : $ty:ty),* $(,)? })? ),* $(,)?) => {
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub enum Command {
            $( $(#[$doc])* $name $({ $($field: $ty),* })? ),*
        }

        /// A command without its arguments, for the table of what each status allows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum CommandKind {
            $( $name ),*
        }

        impl CommandKind {
            /// Every command, in declaration order.
            pub const ALL: [CommandKind; [$( CommandKind::$name ),*].len()] = [$( CommandKind::$name ),*];
        }

        impl Command {
            pub fn kind(&self) -> CommandKind {
                match self {
                    $( Command::$name { .. } => CommandKind::$name ),*
                }
            }
        }
    };
}

commands! {
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
    /// The assignee starts working on their task (shown to others; no effect on the flow).
    StartWork {
        task: u32,
    },
    /// The assignee saves answers to finish later: checked against the form's fields and their
    /// types, not for completeness.
    SaveDraft {
        task: u32,
        fields: BTreeMap<String, Value>,
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

/// Which statuses take which command: the one place this is decided. Work on tasks, timers,
/// messages and holds needs a running case; what the case's owners and its sub-processes do
/// (fields, cancelling, deadlines, a child's news) needs one that is not over; `Resume` takes
/// a suspended case and `Retry` one in an incident. Everything else is `WrongStatus`.
pub fn allowed(command: CommandKind, status: StatusKind) -> bool {
    use CommandKind as C;
    match command {
        C::Start
        | C::CompleteTask
        | C::Claim
        | C::StartWork
        | C::SaveDraft
        | C::Release
        | C::Reassign
        | C::Delegate
        | C::FireTimer
        | C::Message
        | C::Suspend => status == StatusKind::Running,
        C::UpdateFields | C::ChildStarted | C::ChildEnded | C::ChildCancelled | C::Cancel | C::RecomputeDeadlines => {
            !status.is_ended()
        }
        C::Resume => status == StatusKind::Suspended,
        C::Retry => status == StatusKind::Incident,
    }
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
    let act = crate::case::Act::of(&command, instance);
    let mut run = Run::new(ctx, instance, actor);
    run.command(command)?;
    // The act goes on the first entry that records it (a message heard by several steps is
    // one act).
    if let Some(act) = act {
        if let Some(entry) = run.history.iter_mut().find(|e| act.recorded_as().contains(&e.event)) {
            entry.act = Some(Box::new(act));
        }
    }
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

/// One `lookup` of a process evaluated for a case as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupResult {
    pub step: String,
    pub table: String,
    /// The fields it would set, or why it would fail (no row matched, an input missing).
    pub outputs: Result<BTreeMap<String, Value>, String>,
}

/// What every `lookup` of the process would give for the case as it is now, whether or not
/// the case has reached its step: for previews of a rules change, which compare these under
/// the rules in force and the candidate ones. Changes nothing.
pub fn lookups(ctx: &Context, instance: &Instance) -> Vec<LookupResult> {
    let run = Run::new(ctx, instance, Actor::system());
    let mut results = Vec::new();
    for step in &ctx.model.steps {
        let caseflow_dsl::model::StepKind::Auto { actions, .. } = &step.kind else { continue };
        for action in actions {
            let caseflow_dsl::model::AutoAction::Lookup { table, inputs, outputs } = action else { continue };
            let outputs = run.lookup(table, inputs, outputs).map(|(_, o)| o).map_err(|e| e.to_string());
            results.push(LookupResult { step: step.name.clone(), table: table.clone(), outputs });
        }
    }
    results
}
