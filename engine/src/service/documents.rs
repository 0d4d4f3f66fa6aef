//! Search documents, on a store that keeps them (PostgreSQL: `Storage::keeps_documents`). Each
//! case's row carries a JSON document of its process, status and the fields its own version
//! does not mark sensitive, written in the command's own write; a GIN index finds the cases
//! whose document contains the conditions asked for. So on such a store a process is searched
//! by any field that is not sensitive and not a list, without an `index` declaration and
//! without a backfill; elsewhere by the fields it indexes (`reindex`).
//!
//! A document is never trusted alone. A search asks the store for the cases whose document
//! matches and for every case that has none (written by a node of an earlier caseflow, which
//! clears the document of a row it writes, or imported), then checks every condition on the
//! case itself, as the `n/` path does. `document_step` writes the missing documents a chunk at
//! a time, each conditional on the case being unchanged since it was read.

use super::queries::holds;
use super::{CaseSearch, Engine, EngineError, SearchPage};
use crate::storage::codec::decode;
use crate::storage::index::index_text;
use crate::storage::keys::{self, Prefix};
use crate::storage::{Batch, Bytes, Storage, StoreError};
use crate::sync::Unpoisoned;
use caseflow_core::case::{Instance, InstanceId};
use std::collections::{BTreeMap, BTreeSet};

/// Cases a search reads from the store at a time.
const SEARCH_CHUNK: usize = 200;

impl<S: Storage> Engine<S> {
    /// The document a case's row carries: its process, status, and each field its own version
    /// declares, does not mark sensitive and can be searched by (not a list), as `index_text`
    /// writes it (so a search names values as it does for `n/`).
    pub(crate) fn document_of(&self, inst: &Instance) -> String {
        let searchable = self.documented_fields(inst);
        let fields: BTreeMap<&str, String> = inst
            .fields
            .iter()
            .filter(|(name, _)| searchable.contains(name.as_str()))
            .filter_map(|(name, v)| Some((name.as_str(), index_text(v)?)))
            .collect();
        serde_json::json!({ "process": inst.process, "status": inst.status.name(), "fields": fields }).to_string()
    }

    /// The fields a case's document holds: those its own version declares, does not mark
    /// sensitive and that are not lists.
    fn documented_fields(&self, inst: &Instance) -> BTreeSet<String> {
        let own = self.definition(&inst.process, Some(inst.version));
        own.iter().flat_map(|d| d.model.fields.iter()).filter(|f| f.searchable()).map(|f| f.name.clone()).collect()
    }

    /// On a store that keeps documents: every field some deployed version of `process`
    /// declares, does not mark sensitive and is not a list.
    pub(crate) fn document_fields(&self, process: &str) -> BTreeSet<String> {
        let defs = self.definitions.read().unpoisoned();
        defs.get(process)
            .into_iter()
            .flat_map(|versions| versions.values())
            .flat_map(|d| d.model.fields.iter())
            .filter(|f| f.searchable())
            .map(|f| f.name.clone())
            .collect()
    }

    /// `search` through the store's documents: the cases whose document matches, or that have
    /// none, in id order, each checked on the case itself.
    pub(crate) fn search_documents(
        &self,
        q: &CaseSearch,
        after: Option<InstanceId>,
        limit: usize,
    ) -> Result<SearchPage, EngineError> {
        let fields: BTreeMap<&str, &str> = q.fields.iter().map(|(f, v)| (f.as_str(), v.as_str())).collect();
        let mut containing = serde_json::json!({ "process": q.process, "fields": fields });
        if let Some(status) = &q.status {
            containing["status"] = status.as_str().into();
        }
        let containing = containing.to_string();
        let mut from = keys::instance(InstanceId(after.map_or(0, |a| a.0.saturating_add(1))));
        let to = keys::prefix_end(Prefix::Instance.bytes()).unwrap_or_default();
        let (mut instances, mut examined, mut last) = (Vec::new(), 0, None);
        loop {
            let found = self.store.find_documented(&from, &to, &containing, SEARCH_CHUNK)?;
            let wanted: Vec<Vec<u8>> = found.iter().map(|k| k.to_vec()).collect();
            for (k, value) in wanted.iter().zip(self.store.get_many(&wanted)?) {
                if examined == super::SEARCH_EXAMINED_MAX {
                    return Ok(SearchPage { instances, next: last });
                }
                examined += 1;
                // Gone since it was found (a case is not deleted while the store runs).
                let Some(value) = value else { continue };
                let mut inst = decode::<Instance>(k, &value)?;
                last = Some(inst.id);
                self.protect_instance(&mut inst, false)?;
                // As its document would be found (a case without one is read here too): by
                // fields its own version does not mark sensitive.
                let documented = self.documented_fields(&inst);
                if holds(q, &inst) && q.fields.iter().all(|(f, _)| documented.contains(f)) {
                    if instances.len() == limit {
                        let next = instances.last().map(|i: &Instance| i.id);
                        return Ok(SearchPage { instances, next });
                    }
                    instances.push(inst);
                }
            }
            match (found.len() < SEARCH_CHUNK, last) {
                (false, Some(l)) => from = keys::instance(InstanceId(l.0.saturating_add(1))),
                _ => return Ok(SearchPage { instances, next: None }),
            }
        }
    }

    /// Writes the documents of up to `limit` cases that have none, from the case after `after`:
    /// each case's value written again with its document, conditional on the value read (a case
    /// changed meanwhile is left for the next pass, or got its document from its own command).
    /// Returns the documents written and where the next step starts (`None`: a pass ended,
    /// start again from the first case next time). Nothing to do on a store that keeps no documents.
    pub fn document_step(
        &self,
        after: Option<InstanceId>,
        limit: usize,
    ) -> Result<(usize, Option<InstanceId>), EngineError> {
        if !self.store.keeps_documents() {
            return Ok((0, None));
        }
        let from = keys::instance(InstanceId(after.map_or(0, |a| a.0.saturating_add(1))));
        let to = keys::prefix_end(Prefix::Instance.bytes()).unwrap_or_default();
        let rows = self.store.undocumented(&from, &to, limit.max(1))?;
        // One batch for the chunk; when a case changed meanwhile, one batch a case.
        let mut documented = Vec::with_capacity(rows.len());
        for (k, v) in &rows {
            // Read as stored: a document holds no sensitive field, so nothing sealed is opened.
            // A case that cannot be read stays without (a search reading it says so).
            let Ok(inst) = decode::<Instance>(k, v) else { continue };
            documented.push((k, v, self.document_of(&inst)));
        }
        let batch_of = |rows: &[(&Bytes, &Bytes, String)]| {
            let mut batch = Batch::default();
            for (k, v, doc) in rows {
                batch.expect(k.to_vec(), Some((*v).clone()));
                batch.insert_documented(k.to_vec(), v.to_vec(), doc.clone());
            }
            batch
        };
        let mut written = documented.len();
        match self.store.write_now(batch_of(&documented)) {
            Err(StoreError::Conflict(_)) => {
                for one in documented.chunks(1) {
                    match self.store.write_now(batch_of(one)) {
                        Ok(()) => {}
                        Err(StoreError::Conflict(_)) => written -= 1,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            other => other?,
        }
        let next = match rows.last() {
            Some((k, _)) if rows.len() == limit.max(1) => keys::instance_of(k),
            _ => None,
        };
        Ok((written, next))
    }
}
