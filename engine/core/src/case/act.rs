//! What a person (or an integrated system) did to a case: the action behind a history entry,
//! stored on the entry it produced (`HistoryEntry::act`), so that recordings and what-if
//! replays read what happened from data, never from an entry's text. Its values (a task's
//! answers, fields set) are the entry's `changes`; they are not repeated here (and are sealed
//! there when sensitive).

use crate::case::{Command, HistoryEvent, Instance};
use crate::value::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "act", rename_all = "snake_case")]
pub enum Act {
    /// The open task at `step` completed, with the entry's changes as its answers.
    Complete {
        step: String,
    },
    Message {
        name: String,
    },
    Cancel {
        reason: String,
    },
    Reassign {
        step: String,
        to: String,
        reason: String,
    },
    Delegate {
        step: String,
        to: String,
        reason: String,
    },
    Claim {
        step: String,
    },
    Release {
        step: String,
    },
    /// Fields set, with the entry's changes as their values.
    SetFields,
    Suspend,
    Resume,
    Retry,
}

impl Act {
    /// The act a command is, when it is one (timers, sub-process news, starts and deadline
    /// recomputation are the engine's doing, not acts), read before the command runs.
    pub fn of(command: &Command, inst: &Instance) -> Option<Act> {
        let step = |task: &u32| inst.tasks.get(task).map(|t| t.step_name.clone());
        Some(match command {
            Command::CompleteTask { task, .. } => Act::Complete { step: step(task)? },
            Command::Message { name } => Act::Message { name: name.clone() },
            Command::Cancel { reason } => Act::Cancel { reason: reason.clone() },
            Command::Reassign { task, to, reason } => {
                Act::Reassign { step: step(task)?, to: to.clone(), reason: reason.clone() }
            }
            Command::Delegate { task, to, reason } => {
                Act::Delegate { step: step(task)?, to: to.clone(), reason: reason.clone() }
            }
            Command::Claim { task } => Act::Claim { step: step(task)? },
            Command::Release { task } => Act::Release { step: step(task)? },
            Command::UpdateFields { .. } => Act::SetFields,
            Command::Suspend => Act::Suspend,
            Command::Resume => Act::Resume,
            Command::Retry => Act::Retry,
            // Starting work and saving a draft change who is seen working and what they typed,
            // not the case's course: a replay has nothing to do with them.
            Command::StartWork { .. } | Command::SaveDraft { .. } => return None,
            Command::Start { .. }
            | Command::FireTimer { .. }
            | Command::ChildStarted { .. }
            | Command::ChildEnded { .. }
            | Command::ChildCancelled { .. }
            | Command::RecomputeDeadlines => return None,
        })
    }

    /// The history events that record this act (a message may be heard or kept).
    pub fn recorded_as(&self) -> &'static [HistoryEvent] {
        match self {
            Act::Complete { .. } => &[HistoryEvent::TaskCompleted],
            Act::Message { .. } => &[HistoryEvent::MessageReceived, HistoryEvent::MessageKept],
            Act::Cancel { .. } => &[HistoryEvent::Cancelled],
            Act::Reassign { .. } => &[HistoryEvent::TaskReassigned],
            Act::Delegate { .. } => &[HistoryEvent::TaskDelegated],
            Act::Claim { .. } => &[HistoryEvent::TaskClaimed],
            Act::Release { .. } => &[HistoryEvent::TaskReleased],
            Act::SetFields => &[HistoryEvent::FieldsUpdated],
            Act::Suspend => &[HistoryEvent::Suspended],
            Act::Resume => &[HistoryEvent::Resumed],
            Act::Retry => &[HistoryEvent::Retried],
        }
    }

    /// The step whose open task the act is about, if it is about one.
    pub fn step(&self) -> Option<&str> {
        match self {
            Act::Complete { step }
            | Act::Reassign { step, .. }
            | Act::Delegate { step, .. }
            | Act::Claim { step }
            | Act::Release { step } => Some(step),
            _ => None,
        }
    }

    /// The command that does this act again: the one translation scenarios, recordings and
    /// what-if replays share. `task_at` finds the open task at a step (and the case of the
    /// family that holds it); acts on the case itself go to `case`. `values` are the act's
    /// answers or fields (`Complete`, `SetFields`).
    pub fn command<K>(
        &self,
        values: &BTreeMap<String, Value>,
        case: K,
        task_at: impl Fn(&str) -> Option<(K, u32)>,
    ) -> Result<(K, Command), String> {
        let open = |step: &str| task_at(step).ok_or_else(|| format!("no open task at `{step}`"));
        Ok(match self {
            Act::Complete { step } => {
                let (k, task) = open(step)?;
                (k, Command::CompleteTask { task, fields: values.clone() })
            }
            Act::Reassign { step, to, reason } => {
                let (k, task) = open(step)?;
                (k, Command::Reassign { task, to: to.clone(), reason: reason.clone() })
            }
            Act::Delegate { step, to, reason } => {
                let (k, task) = open(step)?;
                (k, Command::Delegate { task, to: to.clone(), reason: reason.clone() })
            }
            Act::Claim { step } => {
                let (k, task) = open(step)?;
                (k, Command::Claim { task })
            }
            Act::Release { step } => {
                let (k, task) = open(step)?;
                (k, Command::Release { task })
            }
            Act::Message { name } => (case, Command::Message { name: name.clone() }),
            Act::Cancel { reason } => (case, Command::Cancel { reason: reason.clone() }),
            Act::SetFields => (case, Command::UpdateFields { fields: values.clone() }),
            Act::Suspend => (case, Command::Suspend),
            Act::Resume => (case, Command::Resume),
            Act::Retry => (case, Command::Retry),
        })
    }
}
