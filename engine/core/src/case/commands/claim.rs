//! `Claim`: a candidate takes an open task for themselves.

use crate::case::run::Run;
use crate::case::{CommandError, HistoryEvent};

impl Run<'_> {
    /// The actor takes the task; taking over someone else's is a reassignment.
    pub(crate) fn claim(&mut self, task: u32) -> Result<(), CommandError> {
        let t = self.open_task(task)?;
        if !self.may_work_on(&t) {
            return Err(self.forbidden("claim this task"));
        }
        self.four_eyes(&t, "claim this task")?;
        // A task given to someone else is theirs: taking it over is a reassignment.
        if let Some(holder) = t.assignee.as_deref().filter(|a| *a != self.actor.id) {
            if !self.may("reassign") {
                return Err(self.forbidden(&format!(
                    "claim a task assigned to {holder} (they may release it, or a holder of `reassign` take it over)"
                )));
            }
        }
        let from = t.assignee.clone();
        self.set_assignee(task, Some(self.actor.id.clone()), true);
        self.record(HistoryEvent::TaskClaimed, Some(t.step), format!("from {}", from.as_deref().unwrap_or("nobody")));
        Ok(())
    }
}
