//! `Retry`: a case in an incident runs its failed steps again (after a fix).

use crate::case::run::Run;
use crate::case::{CommandError, HistoryEvent, Status, Waiting};
use caseflow_dsl::model::StepId;

impl Run<'_> {
    /// Enters again every step whose token was parked by the incident.
    pub(crate) fn retry(&mut self) -> Result<(), CommandError> {
        self.inst.status = Status::Running;
        self.record(HistoryEvent::Retried, None, "");
        let parked: Vec<(u32, StepId)> = self
            .inst
            .tokens
            .iter()
            .filter(|(_, t)| t.waiting == Waiting::Incident)
            .map(|(id, t)| (*id, t.step))
            .collect();
        for (token, step) in parked {
            self.enter(token, step)?;
        }
        self.settle()
    }
}
