//! `FireTimer`: a due timer acts: a deadline passes, a reminder goes out, an escalation
//! runs, a wait ends.

use crate::case::run::Run;
use crate::case::{Actor, CommandError, Effect, HistoryEvent, Timer, TimerKind, REMINDERS_MAX};
use caseflow_dsl::model::{self, Assignee, StepKind, Transition, Trigger};

impl Run<'_> {
    pub(crate) fn fire(&mut self, seq: u32) -> Result<(), CommandError> {
        let Some(timer) = self.inst.timers.get(&seq).cloned() else { return Err(CommandError::TimerNotPending(seq)) };
        if self.now() < timer.due_at {
            return Err(CommandError::TimerNotDue { timer: seq, due_at: timer.due_at });
        }
        self.inst.timers.remove(&seq);
        let lateness = (self.now() - timer.due_at).num_milliseconds();
        // Timers act as the engine, whoever's request delivered them.
        let caller = std::mem::replace(&mut self.actor, Actor::system());
        let result = self.fire_kind(&timer, lateness);
        self.actor = caller;
        result?;
        self.settle()
    }

    pub(crate) fn fire_kind(&mut self, timer: &Timer, lateness: i64) -> Result<(), CommandError> {
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
    pub(crate) fn run_handlers(
        &mut self,
        task: u32,
        mut select: impl FnMut(&Trigger) -> bool,
    ) -> Result<(), CommandError> {
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
}
