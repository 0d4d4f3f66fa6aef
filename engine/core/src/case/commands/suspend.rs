//! `Suspend` and `Resume`: a case put on hold takes no task work, timers or messages.

use crate::case::run::Run;
use crate::case::{CommandError, HistoryEvent, Status};

impl Run<'_> {
    /// Puts the case on hold.
    pub(crate) fn suspend(&mut self) -> Result<(), CommandError> {
        self.inst.status = Status::Suspended;
        self.record(HistoryEvent::Suspended, None, "");
        Ok(())
    }

    /// Takes the case off hold.
    pub(crate) fn resume(&mut self) -> Result<(), CommandError> {
        self.inst.status = Status::Running;
        self.record(HistoryEvent::Resumed, None, "");
        Ok(())
    }
}
