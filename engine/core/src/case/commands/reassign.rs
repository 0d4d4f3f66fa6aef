//! `Reassign`: a holder of `reassign` gives a task to someone else.

use crate::case::run::Run;
use crate::case::{CommandError, HistoryEvent};

impl Run<'_> {
    /// Gives the task to `to`, who must be a user the four-eyes rule allows.
    pub(crate) fn reassign(&mut self, task: u32, to: String, reason: String) -> Result<(), CommandError> {
        let t = self.open_task(task)?;
        if !self.may("reassign") {
            return Err(self.forbidden("reassign tasks (the `reassign` permission; an assignee may delegate)"));
        }
        if !self.ctx.rules.users.contains_key(&to) {
            return Err(CommandError::InvalidField {
                field: "to".into(),
                problem: format!("no user `{to}` in the rules"),
            });
        }
        if self.excluded(t.step).contains(&to) {
            return Err(CommandError::InvalidField {
                field: "to".into(),
                problem: format!("`{to}` did an earlier step that this one must be done by someone else than"),
            });
        }
        self.set_assignee(task, Some(to.clone()), false);
        self.record(HistoryEvent::TaskReassigned, Some(t.step), format!("to {to}: {reason}"));
        Ok(())
    }
}
