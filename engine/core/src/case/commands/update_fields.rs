//! `UpdateFields`: a holder of `update_fields` changes a case's fields outside a task.

use crate::case::run::Run;
use crate::case::{CommandError, HistoryEvent};
use crate::value::Value;
use std::collections::BTreeMap;

impl Run<'_> {
    /// Validates and sets the fields; timers derived from them move.
    pub(crate) fn update_fields(&mut self, fields: BTreeMap<String, Value>) -> Result<(), CommandError> {
        if !self.may("update_fields") {
            return Err(self.forbidden("update a case's fields"));
        }
        let changes = self.validate_fields(&fields, false)?;
        self.set_fields(changes, HistoryEvent::FieldsUpdated, None);
        Ok(())
    }
}
