//! Storage as the engine sees it: an ordered key-value store with atomic batches and group
//! commit (`Storage`), the keys it holds (`keys`), how values are encoded (`codec`) and the
//! index entries a case implies (`index`). Two implementations: sled with its write-ahead log
//! (`crate::store`, the default), PostgreSQL for several nodes on one database (`postgres`),
//! and a map in memory for tests (`memory`).
//!
//! What every implementation guarantees:
//! - a batch is applied whole or not at all, and reads see it once `write` returns;
//! - batches that touch the same keys are applied in the order `write` was called (callers
//!   serialise such batches under one lock);
//! - a batch's conditions (`Batch::expect`) are checked atomically with its writes: if a key
//!   it expects no longer holds the value expected, nothing is written and `write` answers
//!   `StoreError::Conflict`. This is what makes a command safe when several processes write
//!   one store: the engine's in-process locks only spare it conflicts, the store decides;
//! - `wait_durable(ticket)` returns once the batch survives what the implementation promises
//!   (for sled: `Durability`);
//! - a batch's claim conditions (`Batch::expect_claimed`) hold only while no other caller
//!   took the key over (`Storage::claim`): a claim's token is its fencing token;
//! - a sequenced insert's key grows with write order, across restarts;
//! - scans read in key order, see every write made before they began, and let the caller
//!   write while they run (they are not snapshots).

pub mod any;
pub mod codec;
pub mod dump;
pub mod index;
pub mod keys;
pub mod memory;
pub mod postgres;

/// An immutable byte string as the storage returns it: reference-counted, cheap to clone, and
/// able to hold an implementation's own buffer without a copy. No implementation's type
/// crosses this seam.
pub use bytes::Bytes;
use std::collections::BTreeMap;

/// Told each announcement other processes make on a shared store (`Storage::listen`).
pub type Listener = Box<dyn Fn(&[u8]) + Send + Sync>;

/// Returned by `Storage::write`; `wait_durable` takes it. Tickets grow with write order.
pub type Ticket = u64;

/// No batch comes near this (the largest are index rebuilds, written in chunks).
pub const BATCH_BYTES_MAX: usize = 256 << 20;

/// What a storage implementation may answer, in terms of what it means to the engine (no
/// implementation's own error type crosses this seam).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("a write of {0} bytes is more than the store takes at once ({BATCH_BYTES_MAX})")]
    TooLarge(usize),
    #[error("stored data is corrupt at `{key}`: {problem}")]
    Corrupt { key: String, problem: String },
    /// Refused before anything was written: storage is failing (a full disk, an I/O error).
    #[error("storage is failing ({0}); the write was not applied")]
    Unavailable(String),
    /// Storage failed while making a write durable: the write was taken in, and whether it
    /// survives is not known (a log's sync failed; a database's commit went unanswered).
    #[error("storage failed while making a write durable ({0}): it may or may not have been applied")]
    OutcomeUnknown(String),
    /// A condition of the batch did not hold (another writer changed what it read): nothing
    /// was written. The caller reads again and re-runs.
    #[error("`{0}` changed since it was read; nothing was written")]
    Conflict(String),
    /// A key the batch was to write under a claim (`Batch::expect_claimed`) is gone or was
    /// claimed by another caller since (its lease ran out): nothing was written, and running
    /// again would not help: the key is someone else's now.
    #[error("the claim on `{0}` was lost (taken over or gone); nothing was written")]
    ClaimLost(String),
    /// The implementation failed in a way of its own, said in its words.
    #[error("storage: {0}")]
    Backend(String),
}

/// Keys one caller took for a while (`Storage::claim`), to work on them alone: until the lease
/// ends no other caller's claim takes them, and a write made under the claim
/// (`Batch::expect_claimed`) is refused once another caller has taken a key over, however late
/// it comes (the token fences it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claim {
    /// Grows with every claim made on the store; 0 for a store no other process shares, whose
    /// claims hold nothing back (one process serialises its own work).
    pub token: u64,
    pub keys: Vec<Bytes>,
}

/// The operations the engine needs of its storage.
pub trait Storage: Send + Sync + 'static {
    type Scan<'a>: Iterator<Item = Result<(Bytes, Bytes), StoreError>> + 'a
    where
        Self: 'a;

    /// Applies a batch as a unit; returns its ticket for `wait_durable`. Refused with
    /// `StoreError::Unavailable` when nothing of it was applied.
    fn write(&self, batch: Batch) -> Result<Ticket, StoreError>;

    /// Blocks until the batch with `ticket` is durable (and every batch before it).
    fn wait_durable(&self, ticket: Ticket) -> Result<(), StoreError>;

    /// Calls `done` once the batch with `ticket` is durable, on a thread of the storage's own
    /// (`done` must be quick), or at once.
    fn when_durable(&self, ticket: Ticket, done: Box<dyn FnOnce(Result<(), StoreError>) + Send>);

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError>;

    /// The values of `keys`, in their order: one read where the store can (a database's round
    /// trip), else one `get` each.
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, StoreError> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    /// The entries whose keys start with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Self::Scan<'_>;

    /// The entries with `from <= key < to`, in key order.
    fn range(&self, from: &[u8], to: &[u8]) -> Self::Scan<'_>;

    /// Makes everything written so far durable (shutdown).
    fn flush(&self) -> Result<(), StoreError>;

    /// Why storage is failing, after trying what failed again; `None` when it is well.
    fn check_health(&self) -> Option<String>;

    /// Adds one to the counter under `key` (absent: 0) and returns the new value: concurrent
    /// callers, of any process on the store, each get their own. It is durable no later than
    /// any batch written after it returns, so a case acknowledged with a number has that
    /// number recorded. (The default reads and writes on condition, again on a conflict.)
    fn take_number(&self, key: &[u8]) -> Result<u64, StoreError> {
        loop {
            let read = self.get(key)?;
            let n = match &read {
                Some(v) => keys::u64_value(v).ok_or_else(|| StoreError::Corrupt {
                    key: String::from_utf8_lossy(key).into_owned(),
                    problem: format!("expected 8 bytes, found {}", v.len()),
                })?,
                None => 0,
            };
            let mut batch = Batch::default();
            batch.expect(key.to_vec(), read);
            batch.insert(key.to_vec(), (n + 1).to_be_bytes().to_vec());
            match self.write(batch) {
                Ok(_) => return Ok(n + 1),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Calls `hear` with every announcement (`Batch::announce`) of the batches applied from now
    /// on, by any process on the store (this one too), once each is applied; of two batches
    /// where the later one expects (`Batch::expect`) a value the earlier one wrote, in that
    /// order (so each case's changes in order). On a thread of the store's (`hear` must be
    /// quick). A store no other process shares has nothing to hear.
    fn listen(&self, hear: Listener) -> Result<(), StoreError> {
        let _ = hear;
        Ok(())
    }

    /// Whether other processes may write this store at the same time (several nodes on one
    /// database): what the engine keeps of it in memory (the timer scan's start, open-task
    /// counts, definitions, the rules) must then be read again, not only kept up to date.
    fn shared(&self) -> bool {
        false
    }

    /// Claims up to `limit` keys in `[from, to)` that no other claim holds (or whose claim's
    /// lease ran out), in key order, for `lease`; the claim's token is new. On a store several
    /// processes share, concurrent claims never take the same key while a lease lasts, and skip
    /// what another claim holds rather than wait for it. (The default, for a store one process
    /// has: every key in the range, token 0.)
    fn claim(&self, from: &[u8], to: &[u8], limit: usize, lease: std::time::Duration) -> Result<Claim, StoreError> {
        let _ = lease;
        let keys = self.range(from, to).take(limit).map(|r| r.map(|(k, _)| k)).collect::<Result<_, _>>()?;
        Ok(Claim { token: 0, keys })
    }

    /// Extends the lease of the claim's keys that it still holds, to `lease` from now (the
    /// holder's heartbeat); returns how many it still holds.
    fn renew(&self, claim: &Claim, lease: std::time::Duration) -> Result<usize, StoreError> {
        let _ = lease;
        Ok(claim.keys.len())
    }

    /// Gives back the claim's keys it still holds, for any caller to claim at once.
    fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        let _ = claim;
        Ok(())
    }

    /// Whether the store keeps a search document beside each case (`Batch::insert_documented`)
    /// and finds cases by any of its fields (`find_documented`): PostgreSQL, through a GIN
    /// index. Other stores drop documents; their search goes by the `index` a process declares.
    fn keeps_documents(&self) -> bool {
        false
    }

    /// Of the keys in `[from, to)`, in key order, at most `limit`: those whose document contains
    /// `containing` (a JSON object; containment as PostgreSQL's `@>`), and those with no
    /// document (written by a caseflow that kept none, or imported). A superset: the caller
    /// checks every condition on the value itself.
    fn find_documented(
        &self,
        from: &[u8],
        to: &[u8],
        containing: &str,
        limit: usize,
    ) -> Result<Vec<Bytes>, StoreError> {
        let _ = (from, to, containing, limit);
        Err(StoreError::Backend("this store keeps no search documents".into()))
    }

    /// The keys in `[from, to)` that have no document yet, with their values, in key order, at
    /// most `limit` (`Engine::document_step` writes theirs).
    fn undocumented(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        let _ = (from, to, limit);
        Ok(Vec::new())
    }

    /// Applies a batch and waits until it is durable.
    fn write_now(&self, batch: Batch) -> Result<(), StoreError> {
        let ticket = self.write(batch)?;
        self.wait_durable(ticket)
    }

    /// A counter or id stored as a big-endian u64.
    fn get_u64(&self, key: &[u8]) -> Result<Option<u64>, StoreError> {
        self.get(key)?
            .map(|v| {
                keys::u64_value(&v).ok_or_else(|| StoreError::Corrupt {
                    key: String::from_utf8_lossy(key).into_owned(),
                    problem: format!("expected 8 bytes, found {}", v.len()),
                })
            })
            .transpose()
    }
}

/// A counter's value (`Batch::add`): 8 bytes big-endian, signed; absent (or not 8 bytes) is 0.
pub fn counter_value(stored: Option<&[u8]>) -> i64 {
    stored.and_then(|v| <[u8; 8]>::try_from(v).ok()).map_or(0, i64::from_be_bytes)
}

/// The writes of one command, applied as a unit by `Storage::write`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Batch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Inserts under `{prefix}{sequence u64 BE}{index u32 BE}`, the sequence being the one
    /// `Storage::write` gives the batch: keys that grow in write order, across restarts.
    sequenced: Vec<(Vec<u8>, Vec<u8>)>,
    /// Conditions: each key must still hold this value (`None`: be absent) when the batch is
    /// applied, or nothing of it is.
    expected: Vec<(Vec<u8>, Option<Bytes>)>,
    /// Claim conditions: each key must still exist under the claim with this token.
    claimed: Vec<(Vec<u8>, u64)>,
    /// Messages for the other processes listening on a shared store (`Storage::listen`).
    pub(crate) announcements: Vec<Vec<u8>>,
    /// Counters (8-byte big-endian signed values, absent: 0) moved by a signed amount when the
    /// batch is applied, whatever they hold then: two batches adding to one counter at once
    /// both count, with neither conditional on the other.
    adds: BTreeMap<Vec<u8>, i64>,
    /// The search documents (JSON) of keys the batch inserts, for a store that keeps them
    /// (`Storage::keeps_documents`); other stores ignore them.
    documents: BTreeMap<Vec<u8>, String>,
}

impl Batch {
    /// Applies the batch only if `key` still holds `value` (`None`: is still absent), as read
    /// before the batch was made: a compare-and-set over any number of keys.
    pub fn expect(&mut self, key: impl Into<Vec<u8>>, value: Option<Bytes>) {
        self.expected.push((key.into(), value));
    }

    /// Applies the batch only if `key` is still there under the claim with `token`
    /// (`Storage::claim`): a holder whose lease ran out and whose key another caller took
    /// over cannot write. Token 0 (a store one process has) is no condition.
    pub fn expect_claimed(&mut self, key: impl Into<Vec<u8>>, token: u64) {
        if token != 0 {
            self.claimed.push((key.into(), token));
        }
    }

    /// The batch's claim conditions.
    pub fn claims(&self) -> &[(Vec<u8>, u64)] {
        &self.claimed
    }

    /// Tells `message` to the other processes listening on the store (`Storage::listen`) once
    /// the batch is applied, in the order batches are applied. Not kept: a process that is not
    /// listening then never hears it. Stores no other process shares drop it.
    pub fn announce(&mut self, message: Vec<u8>) {
        self.announcements.push(message);
    }

    /// The batch's announcements.
    pub fn announcements(&self) -> &[Vec<u8>] {
        &self.announcements
    }

    /// The batch's conditions.
    pub fn conditions(&self) -> &[(Vec<u8>, Option<Bytes>)] {
        &self.expected
    }

    /// The first condition that `current` (a key's value now) says does not hold: its key.
    pub fn failed_condition(
        &self,
        mut current: impl FnMut(&[u8]) -> Result<Option<Bytes>, StoreError>,
    ) -> Result<Option<String>, StoreError> {
        for (key, want) in &self.expected {
            if current(key)? != *want {
                return Ok(Some(String::from_utf8_lossy(key).into_owned()));
            }
        }
        Ok(None)
    }

    /// Inserts `value` under a key made of `prefix` and the batch's place in write order.
    pub fn insert_sequenced(&mut self, prefix: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.sequenced.push((prefix.into(), value.into()));
    }

    /// Turns the sequenced inserts into plain ones, with the batch's sequence number.
    pub(crate) fn number(&mut self, seq: u64) {
        for (i, (prefix, value)) in std::mem::take(&mut self.sequenced).into_iter().enumerate() {
            let mut key = prefix;
            key.extend_from_slice(&seq.to_be_bytes());
            key.extend_from_slice(&(i as u32).to_be_bytes());
            self.ops.push((key, Some(value)));
        }
    }

    /// Moves the counter at `key` by `delta` when the batch is applied (see `Batch::adds`).
    /// A batch does not also insert or remove a key it adds to.
    pub fn add(&mut self, key: impl Into<Vec<u8>>, delta: i64) {
        *self.adds.entry(key.into()).or_insert(0) += delta;
    }

    /// The counters the batch moves, in key order (the order a store locks them in).
    pub fn adds(&self) -> impl Iterator<Item = (&Vec<u8>, i64)> {
        self.adds.iter().map(|(k, d)| (k, *d)).filter(|(_, d)| *d != 0)
    }

    /// Turns the adds into plain inserts of the counters' new values, `current` reading what
    /// they hold now: for a store that applies batches one key's writer at a time, under the
    /// locks of the batch's keys (`Batch::locked_keys`).
    pub(crate) fn resolve_adds(
        &mut self,
        mut current: impl FnMut(&[u8]) -> Result<Option<Bytes>, StoreError>,
    ) -> Result<(), StoreError> {
        for (key, delta) in std::mem::take(&mut self.adds).into_iter().filter(|(_, d)| *d != 0) {
            let now = counter_value(current(&key)?.as_deref());
            self.ops.push((key, Some(now.wrapping_add(delta).to_be_bytes().to_vec())));
        }
        Ok(())
    }

    /// The keys whose values the batch's application depends on: its conditions' and its
    /// counters'.
    pub(crate) fn locked_keys(&self) -> impl Iterator<Item = &[u8]> {
        self.expected.iter().map(|(k, _)| k.as_slice()).chain(self.adds.keys().map(Vec::as_slice))
    }

    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), Some(value.into())));
    }

    /// Inserts `value` under `key` with its search document (`Storage::keeps_documents`).
    pub fn insert_documented(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, document: String) {
        let key = key.into();
        self.documents.insert(key.clone(), document);
        self.insert(key, value);
    }

    /// The search documents of the keys the batch inserts, taken out.
    pub(crate) fn take_documents(&mut self) -> BTreeMap<Vec<u8>, String> {
        std::mem::take(&mut self.documents)
    }

    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }

    /// The sequenced inserts (prefix and value), taken out for a store that numbers them itself.
    pub(crate) fn take_sequenced(&mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
        std::mem::take(&mut self.sequenced)
    }

    /// Writes nothing (it may still have conditions, which are then not worth checking).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.sequenced.is_empty() && self.adds().next().is_none()
    }

    /// `[kind u8][key len u32][key]([value len u32][value])` per operation.
    #[cfg(test)]
    pub(crate) fn encode_raw(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    pub(crate) fn encoded_len(&self) -> usize {
        self.ops.iter().map(|(k, v)| 9 + k.len() + v.as_ref().map_or(0, Vec::len)).sum()
    }

    /// Appends the encoding `decode_raw` reads: `[kind u8][key len u32][key]([value len
    /// u32][value])` per operation.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        for (k, v) in &self.ops {
            out.push(u8::from(v.is_some()));
            out.extend_from_slice(&(k.len() as u32).to_be_bytes());
            out.extend_from_slice(k);
            if let Some(v) = v {
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }

    pub(crate) fn decode_raw(mut bytes: &[u8]) -> Option<Batch> {
        fn take<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
            let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
            let out = bytes.get(4..4 + len)?;
            *bytes = &bytes[4 + len..];
            Some(out)
        }
        let mut batch = Batch::default();
        while let Some((&kind, rest)) = bytes.split_first() {
            bytes = rest;
            let key = take(&mut bytes)?.to_vec();
            let value = match kind {
                0 => None,
                1 => Some(take(&mut bytes)?.to_vec()),
                _ => return None,
            };
            batch.ops.push((key, value));
        }
        Some(batch)
    }

    /// Bytes the batch takes in a log record, its sequenced inserts numbered.
    pub(crate) fn size(&self) -> usize {
        self.encoded_len()
            + self.sequenced.iter().map(|(k, v)| 21 + k.len() + v.len()).sum::<usize>()
            + self.adds.keys().map(|k| 17 + k.len()).sum::<usize>()
    }

    /// The operations, in order: a key and its new value, or `None` to remove it.
    pub(crate) fn into_ops(self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.ops
    }

    pub(crate) fn ops(&self) -> &[(Vec<u8>, Option<Vec<u8>>)] {
        &self.ops
    }
}

/// One store under several engines (tests of several nodes on one process's store).
impl<S: Storage> Storage for std::sync::Arc<S> {
    type Scan<'a> = S::Scan<'a>;

    fn write(&self, batch: Batch) -> Result<Ticket, StoreError> {
        (**self).write(batch)
    }
    fn wait_durable(&self, ticket: Ticket) -> Result<(), StoreError> {
        (**self).wait_durable(ticket)
    }
    fn when_durable(&self, ticket: Ticket, done: Box<dyn FnOnce(Result<(), StoreError>) + Send>) {
        (**self).when_durable(ticket, done)
    }
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        (**self).get(key)
    }
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, StoreError> {
        (**self).get_many(keys)
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Self::Scan<'_> {
        (**self).scan_prefix(prefix)
    }
    fn range(&self, from: &[u8], to: &[u8]) -> Self::Scan<'_> {
        (**self).range(from, to)
    }
    fn flush(&self) -> Result<(), StoreError> {
        (**self).flush()
    }
    fn check_health(&self) -> Option<String> {
        (**self).check_health()
    }
    fn take_number(&self, key: &[u8]) -> Result<u64, StoreError> {
        (**self).take_number(key)
    }
    fn listen(&self, hear: Listener) -> Result<(), StoreError> {
        (**self).listen(hear)
    }
    fn claim(&self, from: &[u8], to: &[u8], limit: usize, lease: std::time::Duration) -> Result<Claim, StoreError> {
        (**self).claim(from, to, limit, lease)
    }
    fn renew(&self, claim: &Claim, lease: std::time::Duration) -> Result<usize, StoreError> {
        (**self).renew(claim, lease)
    }
    fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        (**self).release(claim)
    }
    fn keeps_documents(&self) -> bool {
        (**self).keeps_documents()
    }
    fn find_documented(
        &self,
        from: &[u8],
        to: &[u8],
        containing: &str,
        limit: usize,
    ) -> Result<Vec<Bytes>, StoreError> {
        (**self).find_documented(from, to, containing, limit)
    }
    fn undocumented(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        (**self).undocumented(from, to, limit)
    }
    /// Shared by the engines holding it, as a database is by nodes.
    fn shared(&self) -> bool {
        true
    }
}
