//! Field indexes across versions. A process is searched by every field any of its deployed
//! versions indexes (`index FIELD`), so a search finds the cases of every version, not only of
//! the one that declared the index. Each case writes the entries of those fields that its own
//! version declares and does not mark `sensitive` (a field sensitive in one version is never
//! written in clear because another version indexes it).
//!
//! A version that adds an indexed field leaves the cases already stored without its entries:
//! the deploy writes a backfill marker (`m/reindex/{process}`, in the deploy's own batch), and
//! `reindex_step` (the server's background driver, or a test) indexes those cases a chunk at a
//! time, each chunk one batch conditional on the cases it read and on the marker, so a case
//! changed meanwhile is read again and two nodes never both move the marker on. The marker
//! carries the fields, so a node that has not yet taken in the new version indexes the right
//! ones; it goes once the last case is done.

use super::{Engine, EngineError};
use crate::storage::codec::{decode, encode};
use crate::storage::index::field_entries;
use crate::storage::keys;
use crate::storage::{Batch, Storage, StoreError};
use crate::sync::Unpoisoned;
use caseflow_core::case::{Instance, InstanceId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A backfill under way: the fields to index, and the last instance id examined.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Backfill {
    pub(crate) fields: Vec<String>,
    pub(crate) after: u64,
}

/// How far a backfill has come, for `/metrics` and the process view.
#[derive(Debug, Clone, PartialEq)]
pub struct ReindexPending {
    pub process: String,
    pub fields: Vec<String>,
    /// Cases with an id up to this one are indexed.
    pub done_through: InstanceId,
}

impl<S: Storage> Engine<S> {
    /// The fields `process` is searched by: every field any of its deployed versions indexes.
    pub fn searchable_fields(&self, process: &str) -> Vec<String> {
        let defs = self.definitions.read().unpoisoned();
        let mut fields = BTreeSet::new();
        for d in defs.get(process).into_iter().flat_map(|v| v.values()) {
            fields.extend(d.model.indexes.iter().cloned());
        }
        fields.into_iter().collect()
    }

    /// Of `fields`, those the case's own version declares and does not mark sensitive.
    fn indexable_in_version(&self, inst: &Instance, fields: &[String]) -> Vec<String> {
        let Some(def) = self.definition(&inst.process, Some(inst.version)) else { return Vec::new() };
        fields.iter().filter(|f| def.model.fields.iter().any(|d| &d.name == *f && !d.sensitive)).cloned().collect()
    }

    /// The `n/` entries a case writes: its process's searchable fields its version may index.
    /// Every command of every case comes here twice (before and after): one read lock, and no
    /// allocation for a process that indexes nothing.
    pub(crate) fn field_index_entries(&self, inst: &Instance, entries: &mut BTreeMap<Vec<u8>, Vec<u8>>) {
        let defs = self.definitions.read().unpoisoned();
        let Some(versions) = defs.get(&inst.process) else { return };
        let Some(own) = versions.get(&inst.version) else { return };
        let indexable = |f: &String| own.model.fields.iter().any(|d| &d.name == f && !d.sensitive);
        for (i, def) in versions.values().enumerate() {
            for field in &def.model.indexes {
                // Each field once, at the first version that indexes it.
                let earlier = versions.values().take(i).any(|d| d.model.indexes.contains(field));
                if !earlier && indexable(field) {
                    field_entries(std::slice::from_ref(field), inst, entries);
                }
            }
        }
    }

    /// In a deploy's batch: when the new version indexes a field no earlier version did, marks
    /// the earlier cases of the process for a backfill of it.
    pub(crate) fn mark_backfill(
        &self,
        batch: &mut Batch,
        process: &str,
        had_versions: bool,
        before: &[String],
        after: &[String],
    ) -> Result<(), EngineError> {
        let added: Vec<String> = after.iter().filter(|f| !before.contains(f)).cloned().collect();
        if added.is_empty() || !had_versions {
            return Ok(());
        }
        // A backfill already under way starts again from the first case, with the new fields too.
        let mut fields = match self.store.get(&keys::reindex(process))? {
            Some(bytes) => decode::<Backfill>(&keys::reindex(process), &bytes)?.fields,
            None => Vec::new(),
        };
        fields.extend(added);
        fields.sort();
        fields.dedup();
        batch.insert(keys::reindex(process), encode(&Backfill { fields, after: 0 }));
        Ok(())
    }

    /// The backfills under way.
    pub fn reindex_pending(&self) -> Result<Vec<ReindexPending>, EngineError> {
        self.store
            .scan_prefix(keys::REINDEX)
            .map(|item| {
                let (k, v) = item?;
                let process = keys::reindex_process(&k).ok_or_else(|| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    problem: "not a process name".into(),
                })?;
                let backfill = decode::<Backfill>(&k, &v)?;
                Ok(ReindexPending { process, fields: backfill.fields, done_through: InstanceId(backfill.after) })
            })
            .collect()
    }

    /// Examines up to `limit` more stored cases for the first backfill under way, and writes
    /// the entries they lack, with the marker moved on (or removed after the last case), in one
    /// batch. Returns the cases examined: 0 when no backfill is under way. A case or the marker
    /// changed meanwhile (another node's command or step) fails the batch, which is read and
    /// tried again.
    pub fn reindex_step(&self, limit: usize) -> Result<usize, EngineError> {
        for _ in 0..16 {
            match self.try_reindex_step(limit.max(1)) {
                Err(EngineError::Store(StoreError::Conflict(_))) => continue,
                other => return other,
            }
        }
        Ok(0)
    }

    fn try_reindex_step(&self, limit: usize) -> Result<usize, EngineError> {
        let Some(item) = self.store.scan_prefix(keys::REINDEX).next() else { return Ok(0) };
        let (marker_key, marker) = item?;
        let process = keys::reindex_process(&marker_key).unwrap_or_default();
        let backfill = decode::<Backfill>(&marker_key, &marker)?;
        let from = keys::instance(InstanceId(backfill.after.saturating_add(1)));
        let to = keys::instance(InstanceId(u64::MAX));
        let mut batch = Batch::default();
        batch.expect(marker_key.to_vec(), Some(marker.clone()));
        let (mut examined, mut last) = (0, backfill.after);
        for item in self.store.range(&from, &to).take(limit) {
            let (k, v) = item?;
            examined += 1;
            // Read as stored: the fields indexed are never sensitive, so nothing sealed is opened.
            let inst = decode::<Instance>(&k, &v)?;
            last = inst.id.0;
            if inst.process != process {
                continue;
            }
            let mut entries = BTreeMap::new();
            field_entries(&self.indexable_in_version(&inst, &backfill.fields), &inst, &mut entries);
            let mut lacking = Vec::new();
            for key in entries.into_keys() {
                if self.store.get(&key)?.is_none() {
                    lacking.push(key);
                }
            }
            if !lacking.is_empty() {
                batch.expect(k.to_vec(), Some(v.clone()));
                for key in lacking {
                    batch.insert(key, Vec::new());
                }
            }
        }
        if examined < limit {
            batch.remove(marker_key.to_vec());
        } else {
            batch.insert(marker_key.to_vec(), encode(&Backfill { fields: backfill.fields, after: last }));
        }
        self.store.write_now(batch)?;
        Ok(examined.max(1))
    }
}
