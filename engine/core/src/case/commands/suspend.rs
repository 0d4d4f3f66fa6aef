//! `Suspend` and `Resume`: a holder of `suspend` puts a case on hold (no task work, timers or
//! messages) and takes it off hold.

use crate::case::run::Run;
use crate::case::{CommandError, HistoryEvent, Status};

impl Run<'_> {
    /// Puts the case on hold.
    pub(crate) fn suspend(&mut self) -> Result<(), CommandError> {
        if !self.may("suspend") {
            return Err(self.forbidden("put a case on hold"));
        }
        self.inst.status = Status::Suspended;
        self.record(HistoryEvent::Suspended, None, "");
        Ok(())
    }

    /// Takes the case off hold.
    pub(crate) fn resume(&mut self) -> Result<(), CommandError> {
        if !self.may("suspend") {
            return Err(self.forbidden("take a case off hold"));
        }
        self.inst.status = Status::Running;
        self.record(HistoryEvent::Resumed, None, "");
        Ok(())
    }
}
