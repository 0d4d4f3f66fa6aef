//! Sensitive fields sealed on the way to storage and opened on the way back (`crypto`).

use super::{corrupt, Engine, EngineError};
use crate::storage::Storage;
use caseflow_core::case::{self, Instance, InstanceId};
use caseflow_core::value::Value;
use std::collections::BTreeSet;

impl<S: Storage> Engine<S> {
    /// The names of a case's sensitive fields.
    pub(crate) fn sensitive_fields(&self, inst: &Instance) -> BTreeSet<String> {
        self.definition(&inst.process, Some(inst.version))
            .map(|d| d.model.fields.iter().filter(|f| f.sensitive).map(|f| f.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Encrypts (`seal`) or decrypts the sensitive values of an instance or history entry.
    pub(crate) fn protect(&self, id: InstanceId, v: &mut Value, seal: bool) -> Result<(), EngineError> {
        let Some(cipher) = &self.cipher else { return Ok(()) };
        let context = id.0.to_be_bytes();
        *v = if seal { cipher.encrypt(v, &context) } else { cipher.decrypt(v, &context) }
            .map_err(|e| corrupt(&format!("i/{id}"), &e.to_string()))?;
        Ok(())
    }

    pub(crate) fn seal_instance(&self, inst: &Instance) -> Result<Instance, EngineError> {
        let mut sealed = inst.clone();
        self.protect_instance(&mut sealed, true)?;
        Ok(sealed)
    }

    /// Encrypts (`seal`) or decrypts an instance's sensitive values: its fields and its tasks'
    /// drafts.
    pub(crate) fn protect_instance(&self, inst: &mut Instance, seal: bool) -> Result<(), EngineError> {
        let sensitive = self.sensitive_fields(inst);
        let id = inst.id;
        let drafts = inst.tasks.values_mut().filter_map(|t| t.draft.as_mut()).flat_map(|d| d.fields.iter_mut());
        for (name, v) in inst.fields.iter_mut().chain(drafts) {
            if sensitive.contains(name) {
                self.protect(id, v, seal)?;
            }
        }
        Ok(())
    }

    /// Encrypts (`seal`) or decrypts the sensitive values of history entries of one case.
    pub(crate) fn seal_history(
        &self,
        inst: &Instance,
        mut entries: Vec<case::HistoryEntry>,
        seal: bool,
    ) -> Result<Vec<case::HistoryEntry>, EngineError> {
        let sensitive = self.sensitive_fields(inst);
        for (name, old, new) in entries.iter_mut().flat_map(|h| h.changes.iter_mut()) {
            if sensitive.contains(name) {
                if let Some(o) = old {
                    self.protect(inst.id, o, seal)?;
                }
                self.protect(inst.id, new, seal)?;
            }
        }
        Ok(entries)
    }
}
