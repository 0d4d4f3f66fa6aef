//! Storage in a map in memory, for tests: every write is durable at once and nothing survives
//! the process. It keeps the contract of `Storage` (atomic batches, sequenced keys, ordered
//! scans that let the caller write), so engine tests that need no disk run on it, and
//! `engine/tests/storage_contract.rs` holds it and sled to the same behaviour.

use crate::storage::{Batch, Bytes, Claim, Listener, Storage, StoreError, Ticket, BATCH_BYTES_MAX};
use crate::sync::Unpoisoned;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::{Mutex, RwLock};
use std::time::Instant;

#[derive(Default)]
pub struct MemoryStore {
    entries: RwLock<BTreeMap<Vec<u8>, Bytes>>,
    /// The last ticket given; writes take the next under this lock, so tickets follow the
    /// order in which batches were applied.
    written: Mutex<Ticket>,
    /// Who hears announcements (engines sharing this map, in tests of several nodes).
    listeners: RwLock<Vec<Listener>>,
    /// Claimed keys (`Storage::claim`): the claim's token and when its lease ends. Engines that
    /// share this map (tests of several nodes) divide work through them as nodes do.
    claims: Mutex<Claims>,
}

#[derive(Default)]
struct Claims {
    held: HashMap<Vec<u8>, (u64, Instant)>,
    last_token: u64,
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
        batch.resolve_adds(|k| Ok(entries.get(k).cloned()))?;
        let mut claims = self.claims.lock().unpoisoned();
        for (key, token) in batch.claims() {
            let held = entries.contains_key(key) && claims.held.get(key).is_some_and(|(t, _)| t == token);
            if !held {
                return Err(StoreError::ClaimLost(String::from_utf8_lossy(key).into_owned()));
            }
        }
        let ticket = *written + 1;
        batch.number(ticket);
        let announcements = std::mem::take(&mut batch.announcements);
        for (k, v) in batch.into_ops() {
            match v {
                Some(v) => {
                    entries.insert(k, Bytes::from(v));
                }
                None => {
                    // A claim lives with its entry and goes with it.
                    claims.held.remove(&k);
                    entries.remove(&k);
                }
            };
        }
        *written = ticket;
        drop(claims);
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

    fn claim(&self, from: &[u8], to: &[u8], limit: usize, lease: std::time::Duration) -> Result<Claim, StoreError> {
        if to <= from {
            return Ok(Claim::default());
        }
        let entries = self.entries.read().unpoisoned();
        let mut claims = self.claims.lock().unpoisoned();
        let now = Instant::now();
        claims.last_token += 1;
        let token = claims.last_token;
        let free: Vec<Vec<u8>> = entries
            .range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
            .map(|(k, _)| k)
            .filter(|k| claims.held.get(k.as_slice()).is_none_or(|(_, until)| *until <= now))
            .take(limit)
            .cloned()
            .collect();
        let until = now + lease;
        for k in &free {
            claims.held.insert(k.clone(), (token, until));
        }
        Ok(Claim { token, keys: free.into_iter().map(Bytes::from).collect() })
    }

    fn renew(&self, claim: &Claim, lease: std::time::Duration) -> Result<usize, StoreError> {
        let mut claims = self.claims.lock().unpoisoned();
        let until = Instant::now() + lease;
        let mut held = 0;
        for k in &claim.keys {
            if let Some((token, ends)) = claims.held.get_mut(k.as_ref()) {
                if *token == claim.token {
                    *ends = until;
                    held += 1;
                }
            }
        }
        Ok(held)
    }

    fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        let mut claims = self.claims.lock().unpoisoned();
        for k in &claim.keys {
            if claims.held.get(k.as_ref()).is_some_and(|(token, _)| *token == claim.token) {
                claims.held.remove(k.as_ref());
            }
        }
        Ok(())
    }
}
