//! The workload the core sees: open tasks per assignee (`OpenCounts`), the round-robin
//! rotation, tallies and familiarity read from the store.

use super::Engine;
use super::EngineError;
use crate::storage::keys::{self, Inbox, Prefix};
use crate::storage::{counter_value, Batch, Storage, StoreError};
use crate::sync::Unpoisoned;
use caseflow_core::case::{Effect, Instance, Workload};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

/// Open tasks per assignee, for `by fewest_open`. A user's count is read from their inbox index
/// (`u/`) the first time it is asked for, and from then on kept by every write that adds or
/// removes one of their inbox entries, so an assignment reads a number instead of scanning
/// every member's inbox (a million waiting complaints made that a scan of the whole role).
///
/// Exact under concurrency: a write holds the read lock of each changed user's stripe from
/// before its keys go into the store until its counts are adjusted; loading a count holds the
/// stripe's write lock, so no write is half-counted during the scan.
///
/// Tasks given by commands not yet written count too (`Loads::in_flight`): a command's core
/// run reserves what it gave (`OpenCounts::reserve`) only if the loads it read are still what
/// it read, and the write adjusts the count and ends the reservation in one step. So on one
/// process's store two commands in flight at once never both give their task to the same
/// least-loaded person. (On a shared store the count is the store's `w/` rows, which another
/// node's tasks reach only once written. The tasks in flight here are read before them, so a
/// task is never missed, but the rows may already hold one whose write has not yet returned
/// here: `docs/deploy.md` says what that costs.)
pub(crate) struct OpenCounts {
    pub(crate) stripes: Vec<RwLock<()>>,
    loads: Arc<Mutex<Loads>>,
}

/// What `OpenCounts` keeps, under one lock.
#[derive(Default)]
struct Loads {
    /// Open tasks per user as the store holds them (one process's store only).
    counts: HashMap<String, usize>,
    /// Tasks per user given by commands whose writes have not yet returned.
    in_flight: HashMap<String, usize>,
    /// Tasks per user ever reserved here (never lowered): on a shared store, what an
    /// assignment compares to know whether a command gave that user a task meanwhile.
    reserved_ever: HashMap<String, usize>,
}

impl Loads {
    fn in_flight(&self, user: &str) -> usize {
        self.in_flight.get(user).copied().unwrap_or(0)
    }

    /// What an assignment compares before it reserves: on one process's store `user`'s load,
    /// the kept count and the tasks in flight (`None` when the count is not kept); on a shared
    /// store, whose count is read from the store each time, the tasks ever reserved for them
    /// here, which only a command giving them one more changes.
    fn seen(&self, user: &str, shared: bool) -> Option<usize> {
        match shared {
            true => Some(self.reserved_ever.get(user).copied().unwrap_or(0)),
            false => self.counts.get(user).map(|n| n + self.in_flight(user)),
        }
    }

    fn release(&mut self, given: &BTreeMap<String, usize>) {
        for (user, n) in given {
            if let Some(left) = self.in_flight.get_mut(user) {
                *left = left.saturating_sub(*n);
                if *left == 0 {
                    self.in_flight.remove(user);
                }
            }
        }
    }
}

/// Tasks a command's core run gave, counted as in flight until its write returns (or the
/// command is dropped: refused, or run again).
#[derive(Default)]
pub(crate) struct Reservation {
    loads: Option<Arc<Mutex<Loads>>>,
    given: BTreeMap<String, usize>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // (Ended already when `given` was taken: `OpenCounts::around` ends it under the lock.)
        if let Some(loads) = self.loads.as_ref().filter(|_| !self.given.is_empty()) {
            loads.lock().unpoisoned().release(&self.given);
        }
    }
}

pub(crate) const COUNT_STRIPES: usize = 64;

impl OpenCounts {
    pub(crate) fn new() -> OpenCounts {
        OpenCounts {
            stripes: (0..COUNT_STRIPES).map(|_| RwLock::new(())).collect(),
            loads: Arc::new(Mutex::new(Loads::default())),
        }
    }

    pub(crate) fn stripe(user: &str) -> usize {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        user.hash(&mut h);
        (h.finish() as usize) % COUNT_STRIPES
    }

    fn loads(&self) -> std::sync::MutexGuard<'_, Loads> {
        self.loads.lock().unpoisoned()
    }

    /// The user's open tasks in the store; `scan` counts them there the first time.
    pub(crate) fn get(&self, user: &str, scan: impl FnOnce() -> usize) -> usize {
        if let Some(n) = self.loads().counts.get(user) {
            return *n;
        }
        let _exclusive = self.stripes[Self::stripe(user)].write().unpoisoned();
        if let Some(n) = self.loads().counts.get(user) {
            return *n;
        }
        let n = scan();
        self.loads().counts.insert(user.to_string(), n);
        n
    }

    /// On one process's store, `user`'s load for an assignment: the kept count and the tasks
    /// in flight, read under one lock (`stored`, their open tasks in the store, when the count
    /// is not kept); and what `reserve` compares later.
    fn load(&self, user: &str, stored: usize) -> (usize, Option<usize>) {
        let loads = self.loads();
        match loads.seen(user, false) {
            Some(seen) => (seen, Some(seen)),
            None => (stored + loads.in_flight(user), None),
        }
    }

    /// On a shared store, each user's tasks in flight here and what `reserve` compares later,
    /// read before the stored counts are: a write that returns between the two reads is then
    /// counted once or (committed before the store was read) twice, never missed.
    fn in_flight_before_reading(&self, users: &[&str]) -> Vec<(usize, Option<usize>)> {
        let loads = self.loads();
        users.iter().map(|u| (loads.in_flight(u), loads.seen(u, true))).collect()
    }

    /// Counts the tasks `given` as in flight, if every load in `read` is still what was read
    /// (else `None`: the core runs again on fresh figures).
    fn reserve(
        &self,
        read: &BTreeMap<String, Option<usize>>,
        given: BTreeMap<String, usize>,
        shared: bool,
    ) -> Option<Reservation> {
        let mut loads = self.loads();
        if read.iter().any(|(user, seen)| seen.is_none() || loads.seen(user, shared) != *seen) {
            return None;
        }
        if given.is_empty() {
            return Some(Reservation::default());
        }
        for (user, n) in &given {
            *loads.in_flight.entry(user.clone()).or_insert(0) += n;
            *loads.reserved_ever.entry(user.clone()).or_insert(0) += n;
        }
        Some(Reservation { loads: Some(self.loads.clone()), given })
    }

    /// Runs `write` (which changes the inbox entries counted in `deltas`) and adjusts the
    /// counts; the reservations end in the same step. After a failed write its outcome is
    /// unknown: those counts are read again.
    pub(crate) fn around<R, E>(
        &self,
        deltas: &BTreeMap<String, i64>,
        reserved: Vec<Reservation>,
        write: impl FnOnce() -> Result<R, E>,
    ) -> Result<R, E> {
        let mut stripes: Vec<usize> = deltas.keys().map(|u| Self::stripe(u)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _shared: Vec<_> = stripes.iter().map(|&i| self.stripes[i].read().unpoisoned()).collect();
        let result = write();
        let mut loads = self.loads();
        for (user, delta) in deltas {
            match (&result, loads.counts.get_mut(user)) {
                (Ok(_), Some(n)) => *n = (*n as i64 + delta).max(0) as usize,
                (Err(_), Some(_)) => {
                    loads.counts.remove(user);
                }
                (_, None) => {}
            }
        }
        for mut r in reserved {
            loads.release(&std::mem::take(&mut r.given));
        }
        result
    }
}

/// The tasks each user holds in `after` beyond those they held in `before`: what a core run
/// gave (reserved until its write returns).
pub(crate) fn tasks_given(before: &Instance, after: &Instance) -> BTreeMap<String, usize> {
    let mut held: BTreeMap<&str, i64> = BTreeMap::new();
    for (tasks, sign) in [(&after.tasks, 1), (&before.tasks, -1)] {
        for user in tasks.values().filter_map(|t| t.assignee.as_deref()) {
            *held.entry(user).or_insert(0) += sign;
        }
    }
    held.into_iter().filter(|(_, n)| *n > 0).map(|(u, n)| (u.to_string(), n as usize)).collect()
}

/// How a change of index entries changes each assignee's open tasks (`u/{user}\0…` keys).
pub(crate) fn inbox_deltas(removed: &[&Vec<u8>], added: &[&Vec<u8>]) -> BTreeMap<String, i64> {
    let user = |k: &[u8]| keys::inbox_user(k);
    let mut deltas = BTreeMap::new();
    for (keys, sign) in [(removed, -1), (added, 1)] {
        for u in keys.iter().filter_map(|k| user(k)) {
            *deltas.entry(u).or_insert(0) += sign;
        }
    }
    deltas.retain(|_, d| *d != 0);
    deltas
}

/// The workload as the core sees it: figures read from the store and the engine's counters,
/// and the round-robin positions it read (checked again before the command counts).
///
/// On a shared store the rotation is the store's: each position the core asks for is taken
/// from the role's counter there (`Storage::take_number`), so across nodes no position is given
/// twice and nodes never wait on one another for it. A command that took a position and is
/// then not written (refused later, or run again after a conflict) leaves that position
/// unused: its member is skipped once.
pub(crate) struct EngineWorkload<'a, S: Storage> {
    pub(crate) engine: &'a Engine<S>,
    pub(crate) positions_read: RefCell<BTreeMap<String, u64>>,
    /// Each user's load as read (`OpenCounts::load`), checked again before the tasks given
    /// are reserved.
    pub(crate) loads_read: RefCell<BTreeMap<String, Option<usize>>>,
    /// On a shared store, positions taken in this run, per role.
    pub(crate) taken: RefCell<BTreeMap<String, u64>>,
    /// Read the next positions without taking them (a dry run).
    pub(crate) peek: bool,
}

impl<'a, S: Storage> EngineWorkload<'a, S> {
    pub(crate) fn new(engine: &'a Engine<S>) -> EngineWorkload<'a, S> {
        EngineWorkload {
            engine,
            positions_read: RefCell::default(),
            loads_read: RefCell::default(),
            taken: RefCell::default(),
            peek: false,
        }
    }

    /// Whether the run's outcome (which took `before` to `after` with `effects`) counts, and
    /// if so the tasks it gave, reserved until its write returns. It counts if no other
    /// command changed the loads it read, nor (on one process's store) moved the round-robin
    /// positions it read; on a shared store its positions are its own. `None`: run again.
    pub(crate) fn settle(self, before: &Instance, after: &Instance, effects: &[Effect]) -> Option<Reservation> {
        let shared = self.engine.store.shared();
        let given = tasks_given(before, after);
        let reservation = self.engine.workload.open_counts.reserve(&self.loads_read.into_inner(), given, shared)?;
        let read = self.positions_read.into_inner();
        // (A reservation dropped here ends.)
        (read.is_empty() || self.engine.take_rotation(&read, effects)).then_some(reservation)
    }

    /// The next position of `role`, taken from the store's counter (or only read, when peeking).
    fn take_stored_position(&self, role: &str) -> u64 {
        let key = keys::round_robin(role);
        let next = match self.peek {
            true => self.engine.store.get_u64(&key).ok().flatten().unwrap_or(0),
            // Unreadable store: position 0 (the command's own write fails the same way).
            false => self.engine.store.take_number(&key).map_or(0, |n| n - 1),
        };
        let mut taken = self.taken.borrow_mut();
        let before = taken.entry(role.to_string()).or_insert(0);
        // The core adds the tasks it gave by this role in this run to what it is told.
        let position = next.saturating_sub(*before);
        *before += 1;
        position
    }
}

impl<S: Storage> Workload for EngineWorkload<'_, S> {
    fn open_tasks(&self, user: &str) -> usize {
        self.open_tasks_of(&[user])[0]
    }

    fn open_tasks_of(&self, users: &[&str]) -> Vec<usize> {
        let counts = &self.engine.workload.open_counts;
        let in_flight = self.engine.store.shared().then(|| counts.in_flight_before_reading(users));
        let stored = self.engine.stored_open_tasks(users);
        let mut read = self.loads_read.borrow_mut();
        (users.iter().zip(stored).enumerate())
            .map(|(i, (user, stored))| {
                let (load, seen) = match &in_flight {
                    Some(here) => (stored + here[i].0, here[i].1),
                    None => counts.load(user, stored),
                };
                read.insert(user.to_string(), seen);
                load
            })
            .collect()
    }

    fn familiar(&self, process: &str, field: &str, value: &str, step: &str) -> Option<String> {
        let key = keys::familiar(process, field, value, step);
        self.engine.store.get(&key).ok().flatten().and_then(|v| String::from_utf8(v.to_vec()).ok())
    }

    fn tally(&self, process: &str, name: &str, by: &[String]) -> u64 {
        self.engine.store.scan_prefix(&keys::tally_prefix(process, name, by)).count() as u64
    }

    fn round_robin_position(&self, role: &str) -> u64 {
        if self.engine.store.shared() {
            return self.take_stored_position(role);
        }
        let position = self.engine.workload.round_robin.lock().unpoisoned().get(role).copied();
        let position = position.unwrap_or(0);
        self.positions_read.borrow_mut().insert(role.to_string(), position);
        position
    }
}

/// The engine's own workload figures, beside what it reads from the store.
pub(crate) struct WorkloadState {
    /// Open tasks per assignee, for `by fewest_open`.
    pub(crate) open_counts: OpenCounts,
    /// Each role's round-robin position (stored under `m/rr/`, loaded on open).
    pub(crate) round_robin: Mutex<BTreeMap<String, u64>>,
}

impl Default for WorkloadState {
    fn default() -> Self {
        WorkloadState { open_counts: OpenCounts::new(), round_robin: Mutex::new(BTreeMap::new()) }
    }
}

/// Which of a user's `w/` rows the next batch adds to (`keys::OPEN_COUNT_SHARDS`).
static NEXT_SHARD: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

impl<S: Storage> Engine<S> {
    /// `user`'s open tasks in the store. On one process's store the kept count (`OpenCounts`);
    /// on a shared store, where other nodes give tasks too, the sum of their `w/` rows, read
    /// afresh each time (every write that changes an inbox adds to them: `count_open_tasks`).
    /// (All of `users`' rows in one read: `Storage::get_many`.) An unreadable store counts 0,
    /// and the command's own write then fails the same way.
    pub(crate) fn stored_open_tasks(&self, users: &[&str]) -> Vec<usize> {
        if !self.store.shared() {
            let each = |user: &str| {
                let scan = || self.store.scan_prefix(&Inbox::User(user).prefix()).count();
                self.workload.open_counts.get(user, scan)
            };
            return users.iter().map(|u| each(u)).collect();
        }
        let shards = keys::OPEN_COUNT_SHARDS as usize;
        let rows: Vec<Vec<u8>> =
            users.iter().flat_map(|u| (0..keys::OPEN_COUNT_SHARDS).map(|shard| keys::open_count(u, shard))).collect();
        let values = self.store.get_many(&rows).unwrap_or_default();
        (0..users.len())
            .map(|i| {
                let sum: i64 = values.iter().skip(i * shards).take(shards).map(|v| counter_value(v.as_deref())).sum();
                sum.max(0) as usize
            })
            .collect()
    }

    /// On a shared store, adds each user's change of open tasks to one of their `w/` rows.
    pub(crate) fn count_open_tasks(&self, batch: &mut Batch, deltas: &BTreeMap<String, i64>) {
        if !self.store.shared() || deltas.is_empty() {
            return;
        }
        let shard = NEXT_SHARD.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % keys::OPEN_COUNT_SHARDS;
        for (user, delta) in deltas {
            batch.add(keys::open_count(user, shard), *delta);
        }
    }

    /// On a shared store that has no `w/` counts (one imported from a copy, which leaves them
    /// out, or one written before they were kept), makes them from the inboxes: one batch, on
    /// condition that no other node made them meanwhile. A node keeps them from its first
    /// write on, so every node of a database must run a version that keeps them.
    pub(crate) fn make_open_counts(&self) -> Result<(), EngineError> {
        if !self.store.shared() || self.store.get(keys::OPEN_COUNTS_MADE)?.is_some() {
            return Ok(());
        }
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for item in self.store.scan_prefix(Prefix::UserInbox.bytes()) {
            let (k, _) = item?;
            if let Some(user) = keys::inbox_user(&k) {
                *counts.entry(user).or_insert(0) += 1;
            }
        }
        let mut batch = Batch::default();
        batch.expect(keys::OPEN_COUNTS_MADE, None);
        batch.insert(keys::OPEN_COUNTS_MADE, Vec::new());
        for (user, n) in counts {
            batch.insert(keys::open_count(&user, 0), n.to_be_bytes().to_vec());
        }
        match self.store.write(batch) {
            Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves each role's round-robin rotation on by the tasks `effects` took, if no other
    /// command moved it since the positions in `read` were read. False when one did: the
    /// caller runs the core again on fresh figures (the core is pure, so that is safe).
    pub(crate) fn take_rotation(&self, read: &BTreeMap<String, u64>, effects: &[Effect]) -> bool {
        let mut rotation = self.workload.round_robin.lock().unpoisoned();
        if !read.iter().all(|(role, at)| rotation.get(role).copied().unwrap_or(0) == *at) {
            return false;
        }
        for e in effects {
            if let Effect::RoundRobinTaken { role, count } = e {
                *rotation.entry(role.clone()).or_insert(0) += count;
            }
        }
        true
    }
}
