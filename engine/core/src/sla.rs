//! The SLA clock of a task, as users see it: how much of the allowed working time has been
//! used and how much is left. It runs only in working hours (it pauses at night, at weekends,
//! on holidays and over lunch), measured on the business calendar in force.

use crate::calendar::BusinessCalendar;
use crate::case::Task;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A task's SLA clock, on the business calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SlaClock {
    /// Working minutes from opening to the deadline.
    pub allowed_minutes: i64,
    /// Working minutes used so far.
    pub elapsed_minutes: i64,
    /// Working minutes left (negative once overdue).
    pub remaining_minutes: i64,
    /// Share of the allowed time used, in percent (may exceed 100).
    pub percent_used: i64,
    /// False outside working hours: the clock is paused.
    pub running: bool,
}

/// The SLA clock of a task with a deadline; `None` without one.
pub fn task_clock(task: &Task, calendar: &BusinessCalendar, now: DateTime<Utc>) -> Option<SlaClock> {
    let due = task.due_at?;
    let allowed = calendar.working_time_between(task.opened_at, due).num_minutes();
    let elapsed = calendar.working_time_between(task.opened_at, now).num_minutes();
    let remaining = if now <= due {
        calendar.working_time_between(now, due).num_minutes()
    } else {
        -calendar.working_time_between(due, now).num_minutes()
    };
    let percent_used = if allowed > 0 {
        elapsed * 100 / allowed
    } else if now >= due {
        100
    } else {
        0
    };
    Some(SlaClock {
        allowed_minutes: allowed,
        elapsed_minutes: elapsed,
        remaining_minutes: remaining,
        percent_used,
        running: calendar.is_working_time(now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn bj(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        chrono_tz::Asia::Shanghai.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_clock_pauses_outside_working_hours() {
        let cal = BusinessCalendar::standard_china();
        let task = Task {
            item: None,
            delegated_by: None,
            step_name: "t".into(),
            beyond_calendar: false,
            started: None,
            draft: None,
            seq: 1,
            token: 1,
            step: caseflow_dsl::model::StepId(0),
            name: "t".into(),
            assignee: None,
            candidates: vec![],
            claimed: false,
            priority: 0,
            opened_at: bj(27, 17, 0),    // Friday 17:00
            due_at: Some(bj(30, 12, 0)), // Monday 12:00: 1 h + 3 h of working time
            overdue: false,
            reminders_sent: 0,
        };
        let sat = task_clock(&task, &cal, bj(28, 12, 0)).unwrap();
        assert_eq!(
            (sat.allowed_minutes, sat.elapsed_minutes, sat.remaining_minutes, sat.running),
            (240, 60, 180, false)
        );
        let mon = task_clock(&task, &cal, bj(30, 10, 30)).unwrap();
        assert_eq!((mon.elapsed_minutes, mon.percent_used, mon.running), (150, 62, true));
        let late = task_clock(&task, &cal, bj(30, 14, 0)).unwrap();
        assert_eq!(late.remaining_minutes, -30);
    }
}
