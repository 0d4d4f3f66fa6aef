//! Deadlines, reminders and escalations of tasks as timers on the business calendar.

use crate::case::run::Run;
use crate::case::{Effect, HistoryEvent, Task, Timer, TimerKind};
use crate::duration::Span;
use crate::eval::EvalError;
use crate::value::Value;
use caseflow_dsl::model::{self, StepId, StepKind, Trigger};
use chrono::{DateTime, Duration, Utc};

impl Run<'_> {
    /// Computes an open task's deadline again (rules or fields changed) and moves its timers
    /// if it changed, recording the move.
    pub(crate) fn recompute_deadline(&mut self, t: &Task) {
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
    pub(crate) fn note_beyond_calendar(&mut self, step: StepId, due: DateTime<Utc>) {
        let last = self.ctx.rules.calendar.covered_through.map(|d| d.to_string()).unwrap_or_default();
        self.record(
            HistoryEvent::DeadlineBeyondCalendar,
            Some(step),
            format!("due {}: the calendar knows holidays through {last} only", due.to_rfc3339()),
        );
    }

    /// The deadline timers of a task: the due time, escalations after it, SLA thresholds.
    pub(crate) fn schedule_deadline(
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
    pub(crate) fn threshold_at(
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

    pub(crate) fn set_timer(&mut self, due_at: DateTime<Utc>, kind: TimerKind) -> u32 {
        let seq = self.seq();
        self.inst.timers.insert(seq, Timer { seq, due_at, kind });
        self.effects.push(Effect::TimerSet { seq, due_at });
        seq
    }

    pub(crate) fn cancel_timers(&mut self, keep: impl Fn(&TimerKind) -> bool) {
        let gone: Vec<u32> = self.inst.timers.iter().filter(|(_, t)| !keep(&t.kind)).map(|(s, _)| *s).collect();
        for seq in gone {
            self.inst.timers.remove(&seq);
            self.effects.push(Effect::TimerCancelled { seq });
        }
    }

    pub(crate) fn cancel_token_timers(&mut self, token: u32) {
        self.cancel_timers(
            |k| !matches!(k, TimerKind::Wait { token: t } | TimerKind::Timeout { token: t } if *t == token),
        );
    }
}
