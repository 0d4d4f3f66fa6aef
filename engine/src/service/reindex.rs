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
//!
//! On a shared store, other nodes take the new version in within a second or two
//! (`NODES_TAKE_IN`); until then a node writes cases without the new fields' entries, and a
//! pass may already have gone past them (a case started there, or a field changed there). So a
//! pass that began before every node could have taken the version in is followed by one more,
//! from the first case, once they all have; the marker goes at the end of a pass that began
//! after. (A stale node leaves an entry for a field's old value too: harmless, as a search
//! checks every condition on the case itself.)

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
    /// On a shared store: from when (ms since the epoch) every node has taken in the version
    /// that asked for the backfill. `None`: one process's store, or a marker written before.
    #[serde(default)]
    pub(crate) nodes_have_it: Option<i64>,
    /// When the current pass began (ms since the epoch); a pass set to begin later waits.
    #[serde(default)]
    pub(crate) pass_began: i64,
}

/// How long after a deploy every node of a shared store has taken the version in, at most:
/// each hears of it at once (the store's announcement) or looks every second, and the nodes'
/// clocks may differ by a little.
pub const NODES_TAKE_IN: chrono::Duration = chrono::Duration::seconds(10);

/// How far a backfill has come, for `/metrics` and the process view.
#[derive(Debug, Clone, PartialEq)]
pub struct ReindexPending {
    pub process: String,
    pub fields: Vec<String>,
    /// Cases with an id up to this one are indexed.
    pub done_through: InstanceId,
}

impl<S: Storage> Engine<S> {
    /// The fields `process` is searched by: every field any of its deployed versions indexes,
    /// and on a store that keeps search documents (`documents`) every field some version
    /// declares that is not sensitive and not a list.
    pub fn searchable_fields(&self, process: &str) -> Vec<String> {
        let mut fields: BTreeSet<String> = self.indexed_fields(process).into_iter().collect();
        if self.store.keeps_documents() {
            fields.extend(self.document_fields(process));
        }
        fields.into_iter().collect()
    }

    /// The fields some deployed version of `process` indexes (`index FIELD`).
    pub fn indexed_fields(&self, process: &str) -> Vec<String> {
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
        now: chrono::DateTime<chrono::Utc>,
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
        let nodes_have_it = self.store.shared().then(|| (now + NODES_TAKE_IN).timestamp_millis());
        let marker = Backfill { fields, after: 0, nodes_have_it, pass_began: now.timestamp_millis() };
        batch.insert(keys::reindex(process), encode(&marker));
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
    /// batch. Returns the cases examined: 0 when no backfill is under way or its next pass is
    /// not due before `NODES_TAKE_IN` has passed. A case or the marker changed meanwhile
    /// (another node's command or step) fails the batch, which is read and tried again.
    pub fn reindex_step(&self, limit: usize, now: chrono::DateTime<chrono::Utc>) -> Result<usize, EngineError> {
        for _ in 0..16 {
            match self.try_reindex_step(limit.max(1), now) {
                Err(EngineError::Store(StoreError::Conflict(_))) => continue,
                other => return other,
            }
        }
        Ok(0)
    }

    fn try_reindex_step(&self, limit: usize, now: chrono::DateTime<chrono::Utc>) -> Result<usize, EngineError> {
        // The first backfill whose pass is due (one waiting for the nodes holds up no other).
        let mut due = None;
        for item in self.store.scan_prefix(keys::REINDEX) {
            let (marker_key, marker) = item?;
            let backfill = decode::<Backfill>(&marker_key, &marker)?;
            if backfill.pass_began <= now.timestamp_millis() {
                due = Some((marker_key, marker, backfill));
                break;
            }
        }
        let Some((marker_key, marker, backfill)) = due else { return Ok(0) };
        let process = keys::reindex_process(&marker_key).unwrap_or_default();
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
        let pass_ended = examined < limit;
        match backfill.nodes_have_it {
            // A node may have written without the fields after this pass went by: once more,
            // from the first case, when every node has the version.
            Some(all_have_it) if pass_ended && backfill.pass_began < all_have_it => {
                let again = Backfill { after: 0, pass_began: all_have_it, ..backfill };
                batch.insert(marker_key.to_vec(), encode(&again));
            }
            _ if pass_ended => batch.remove(marker_key.to_vec()),
            _ => batch.insert(marker_key.to_vec(), encode(&Backfill { after: last, ..backfill })),
        }
        self.store.write_now(batch)?;
        Ok(examined.max(1))
    }
}
