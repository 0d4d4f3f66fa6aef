//! `Message`: a named message reaches the case: an interrupt, a waiting step, or kept for a
//! step that will listen.

use crate::case::run::Run;
use crate::case::{CommandError, HistoryEvent, KeptMessage, Token, Waiting};
use caseflow_dsl::model::{StepId, StepKind, Transition, Trigger};

impl Run<'_> {
    pub(crate) fn message(&mut self, name: &str) -> Result<(), CommandError> {
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
    pub(crate) fn take_kept(&mut self, wanted: impl Fn(&str) -> bool) -> Option<KeptMessage> {
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
    pub(crate) fn deliver_kept(&mut self, token: u32, step_id: StepId) -> Result<(), CommandError> {
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
}
