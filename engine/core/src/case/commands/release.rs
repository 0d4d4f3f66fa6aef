//! `Release`: the assignee gives a task back to its candidates.

use crate::case::run::Run;
use crate::case::{CommandError, HistoryEvent};

impl Run<'_> {
    /// The assignee (or an administrator) leaves the task unassigned.
    pub(crate) fn release(&mut self, task: u32) -> Result<(), CommandError> {
        let t = self.open_task(task)?;
        if t.assignee.as_deref() != Some(&self.actor.id) && !self.actor.admin {
            return Err(self.forbidden("release a task assigned to someone else"));
        }
        self.set_assignee(task, None, false);
        self.record(HistoryEvent::TaskReleased, Some(t.step), "");
        Ok(())
    }
}
