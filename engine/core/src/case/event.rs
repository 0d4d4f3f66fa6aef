//! What a command leaves behind: history entries (the audit trail) and effects (what the
//! shells do after the write).

use crate::case::{InstanceId, Status, TaskId};
use crate::value::Value;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a history entry records: one name per kind of event, as the audit trail, the event
/// stream, webhooks and reports spell it (`as_str`). Every entry is recorded through one of
/// these, so the list below is every event a client can see. Stored and sent by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// The case moved to another version of its process.
    Migrated,
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
    /// An open task closed without being done (its step mapped elsewhere by a migration).
    TaskClosed,
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
    pub const ALL: [HistoryEvent; 50] = [
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
        HistoryEvent::Migrated,
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
        HistoryEvent::TaskClosed,
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
            HistoryEvent::Migrated => "migrated",
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
            HistoryEvent::TaskClosed => "task_closed",
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
