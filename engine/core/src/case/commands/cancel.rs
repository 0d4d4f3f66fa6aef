//! `Cancel`: a holder of `cancel` ends the case; open work is closed.

use crate::case::run::Run;
use crate::case::{CommandError, HistoryEvent, Status};

impl Run<'_> {
    /// Ends the case as cancelled, with the reason.
    pub(crate) fn cancel(&mut self, reason: String) -> Result<(), CommandError> {
        if !self.may("cancel") {
            return Err(self.forbidden("cancel a case"));
        }
        self.end(Status::Cancelled { reason: reason.clone() });
        self.record(HistoryEvent::Cancelled, None, reason);
        Ok(())
    }
}
