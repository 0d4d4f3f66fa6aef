//! Storage in a map in memory, for tests: every write is durable at once and nothing survives
//! the process. It keeps the contract of `Storage` (atomic batches, sequenced keys, ordered
//! scans that let the caller write), so engine tests that need no disk run on it, and
//! `engine/tests/storage_contract.rs` holds it and sled to the same behaviour.

use crate::storage::{Batch, Bytes, Listener, Storage, StoreError, Ticket, BATCH_BYTES_MAX};
use crate::sync::Unpoisoned;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, RwLock};

#[derive(Default)]
pub struct MemoryStore {
    entries: RwLock<BTreeMap<Vec<u8>, Bytes>>,
    /// The last ticket given; writes take the next under this lock, so tickets follow the
    /// order in which batches were applied.
    written: Mutex<Ticket>,
    /// Who hears announcements (engines sharing this map, in tests of several nodes).
    listeners: RwLock<Vec<Listener>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Entries in `[from, to)`, read under the lock once: a scan sees every write made before
    /// it began, and the caller may write while it runs.
    fn read(&self, from: &[u8], to: Option<&[u8]>) -> std::vec::IntoIter<Result<(Bytes, Bytes), StoreError>> {
        if to.is_some_and(|to| to <= from) {
            return Vec::new().into_iter();
        }
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        let entries = self.entries.read().unpoisoned();
        let found: Vec<_> = entries
            .range::<[u8], _>((Bound::Included(from), upper))
            .map(|(k, v)| Ok((Bytes::copy_from_slice(k), v.clone())))
            .collect();
        found.into_iter()
    }
}

impl Storage for MemoryStore {
    type Scan<'a> = std::vec::IntoIter<Result<(Bytes, Bytes), StoreError>>;

    fn write(&self, mut batch: Batch) -> Result<Ticket, StoreError> {
        let size = batch.size();
        if size > BATCH_BYTES_MAX {
            return Err(StoreError::TooLarge(size));
        }
        let mut written = self.written.lock().unpoisoned();
        let mut entries = self.entries.write().unpoisoned();
        if let Some(key) = batch.failed_condition(|k| Ok(entries.get(k).cloned()))? {
            return Err(StoreError::Conflict(key));
        }
        let ticket = *written + 1;
        batch.number(ticket);
        let announcements = std::mem::take(&mut batch.announcements);
        for (k, v) in batch.into_ops() {
            match v {
                Some(v) => entries.insert(k, Bytes::from(v)),
                None => entries.remove(&k),
            };
        }
        *written = ticket;
        drop(entries);
        // Under the write lock still: heard in the order applied.
        for message in &announcements {
            for hear in self.listeners.read().unpoisoned().iter() {
                hear(message);
            }
        }
        Ok(ticket)
    }

    fn wait_durable(&self, _: Ticket) -> Result<(), StoreError> {
        Ok(())
    }

    fn when_durable(&self, _: Ticket, done: Box<dyn FnOnce(Result<(), StoreError>) + Send>) {
        done(Ok(()))
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        Ok(self.entries.read().unpoisoned().get(key).cloned())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Self::Scan<'_> {
        self.read(prefix, crate::storage::keys::prefix_end(prefix).as_deref())
    }

    fn range(&self, from: &[u8], to: &[u8]) -> Self::Scan<'_> {
        self.read(from, Some(to))
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn check_health(&self) -> Option<String> {
        None
    }

    fn listen(&self, hear: Listener) -> Result<(), StoreError> {
        self.listeners.write().unpoisoned().push(hear);
        Ok(())
    }
}
