//! What a command leaves behind: history entries (the audit trail) and effects (what the
//! shells do after the write).

use crate::case::{InstanceId, Status, TaskId};
use crate::value::Value;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Declares the events once, each with the name it is stored and sent by: the enum, `ALL`
/// and `as_str` come from the one list below.
macro_rules! history_events {
    ($( $(#[$doc:meta])* $name:ident => $text:literal ),* $(,)?) => {
        /// What a history entry records: one name per kind of event, as the audit trail, the
        /// event stream, webhooks and reports spell it (`as_str`). Every entry is recorded
        /// through one of these, so the list is every event a client can see. Stored and sent
        /// by its name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum HistoryEvent {
            $( $(#[$doc])* #[serde(rename = $text)] $name ),*
        }

        impl HistoryEvent {
            /// Every event, in declaration order.
            pub const ALL: [HistoryEvent; [$( HistoryEvent::$name ),*].len()] = [$( HistoryEvent::$name ),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $( HistoryEvent::$name => $text ),*
                }
            }
        }
    };
}

// Each event once, with its name.
history_events! {
    BranchesCancelled => "branches_cancelled",
    Cancelled => "cancelled",
    ClaimOverridden => "claim_overridden",
    Collected => "collected",
    DeadlineBeyondCalendar => "deadline_beyond_calendar",
    DeadlineNotRecomputed => "deadline_not_recomputed",
    DeadlineRecomputed => "deadline_recomputed",
    /// Answers of a task saved to finish later.
    DraftSaved => "draft_saved",
    Decided => "decided",
    DecisionTable => "decision_table",
    Escalated => "escalated",
    EscalationDue => "escalation_due",
    FieldsSet => "fields_set",
    FieldsUpdated => "fields_updated",
    Incident => "incident",
    InstancesAdded => "instances_added",
    InstancesDone => "instances_done",
    InstancesOpened => "instances_opened",
    Interrupted => "interrupted",
    Joined => "joined",
    MessageExpired => "message_expired",
    MessageKept => "message_kept",
    MessageReceived => "message_received",
    /// The case moved to another version of its process.
    Migrated => "migrated",
    Notified => "notified",
    PriorityRaised => "priority_raised",
    ReachedEnd => "reached_end",
    ReminderSent => "reminder_sent",
    RemindersStopped => "reminders_stopped",
    Resumed => "resumed",
    Retried => "retried",
    SlaThreshold => "sla_threshold",
    Split => "split",
    Started => "started",
    SubProcessReturned => "sub_process_returned",
    SubProcessStarted => "sub_process_started",
    Suspended => "suspended",
    TaskClaimed => "task_claimed",
    /// An open task closed without being done (its step mapped elsewhere by a migration).
    TaskClosed => "task_closed",
    TaskCompleted => "task_completed",
    TaskDelegated => "task_delegated",
    TaskOpened => "task_opened",
    TaskOverdue => "task_overdue",
    TaskReassigned => "task_reassigned",
    TaskReleased => "task_released",
    TimerFired => "timer_fired",
    TimerMoved => "timer_moved",
    TimerNotMoved => "timer_not_moved",
    UntilNotEvaluated => "until_not_evaluated",
    WaitTimedOut => "wait_timed_out",
    Waiting => "waiting",
    /// The assignee started working on a task.
    WorkStarted => "work_started",
}

impl std::fmt::Display for HistoryEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event compares equal to its name, for filters that clients give by name.
impl PartialEq<&str> for HistoryEvent {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub event: HistoryEvent,
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
    /// The act that produced this entry, on the first entry an act records (`None` for what
    /// the engine did, and for entries written before acts were stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<crate::case::Act>>,
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

#[cfg(test)]
mod tests {
    use super::HistoryEvent;

    /// Stored histories, the event stream, webhooks and scenario files spell an event by its
    /// name: serde and `as_str` must agree on every one.
    #[test]
    fn every_event_is_stored_and_sent_by_its_name() {
        for e in HistoryEvent::ALL {
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(json, format!("\"{}\"", e.as_str()));
            assert_eq!(serde_json::from_str::<HistoryEvent>(&json).unwrap(), e);
        }
        assert!(serde_json::from_str::<HistoryEvent>("\"no_such_event\"").is_err());
    }
}
