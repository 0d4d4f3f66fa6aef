//! `Delegate`: the assignee passes a task to a colleague who may work on it.

use crate::case::run::Run;
use crate::case::{CommandError, HistoryEvent};

impl Run<'_> {
    /// Passes the actor's task to `to`, who holds one of its roles.
    pub(crate) fn delegate(&mut self, task: u32, to: String, reason: String) -> Result<(), CommandError> {
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
}
