//! `RecomputeDeadlines`: open tasks' deadlines under the rules in force (after a rules change).

use crate::case::run::Run;
use crate::case::{CommandError, Task};

impl Run<'_> {
    /// Recomputes every open task's deadline and moves its timers.
    pub(crate) fn recompute_deadlines(&mut self) -> Result<(), CommandError> {
        let open: Vec<Task> = self.inst.tasks.values().cloned().collect();
        for t in open {
            self.recompute_deadline(&t);
        }
        Ok(())
    }
}
