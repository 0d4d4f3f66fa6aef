//! The engine as a service: deployed definitions, instances in the store, commands applied
//! through the core and written atomically, timers fired when due.
//!
//! Concurrency: commands on one instance are serialised by a striped lock; commands on
//! different instances run in parallel and share flushes (group commit). A command is
//! acknowledged (the call returns `Ok`) only after its batch is durable.

use crate::storage::codec::{decode, encode, history_entries};
use crate::storage::index::{assignee_entry, index_entries};
use crate::storage::keys::{self, Inbox, Prefix};
use crate::storage::{Batch, Bytes, Storage, StoreError};
use crate::store::Store;
use crate::sync::Unpoisoned;
use caseflow_core::case::{
    self, Actor, Command, CommandError, Effect, HistoryEvent, Instance, InstanceId, Outcome, Status, StatusKind,
    Workload,
};
use caseflow_core::rules::{RuleSet, RulesFile};
use caseflow_core::value::Value;
use caseflow_dsl::model::Process;
use caseflow_dsl::{check_files, Diagnostic, SourceFile};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Lock stripes for per-instance serialisation.
const STRIPES: usize = 256;
/// Deepest chain of sub-processes a case may start.
pub const CALL_DEPTH_MAX: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("no process `{0}` is deployed")]
    UnknownProcess(String),
    #[error("no instance {0}")]
    UnknownInstance(String),
    #[error("the definition has {} error(s)", .0.iter().filter(|d| d.is_error()).count())]
    Rejected(Vec<Diagnostic>),
    #[error("sub-processes nested deeper than {CALL_DEPTH_MAX}")]
    TooDeep,
    #[error("`{0}` is not a cursor this engine gave out")]
    BadCursor(String),
    #[error("a start with idempotency key `{0}` is still in progress: retry shortly")]
    StartInProgress(String),
    #[error("idempotency key `{0}` was used for a different request (another process or other fields)")]
    IdempotencyKeyReused(String),
    #[error(transparent)]
    FieldKey(#[from] crate::crypto::CryptoError),
    #[error(
        "the store is of format {found} and this caseflow reads format {expected} only (caseflow has no \
         upgrade between them); start on an empty data directory, or with the caseflow that wrote it"
    )]
    UnknownFormat { found: u64, expected: u64 },
}

/// What an idempotency key recorded: the case it started and its request's digest (none for
/// keys recorded before digests were).
type KeyRecord = (InstanceId, Option<[u8; 32]>);

/// An idempotency key as the store knows it: scoped to the caller who sent it, with a digest
/// of the request it first came with, so that the same key with another body is refused.
struct IdempotencyKey<'a> {
    /// The key as the caller sent it (for messages).
    given: &'a str,
    /// `caller NUL key`: two callers may use the same key for different cases.
    scoped: String,
    request: [u8; 32],
}

impl<'a> IdempotencyKey<'a> {
    fn new(given: &'a str, actor: &Actor, process: &str, fields: &BTreeMap<String, Value>) -> Self {
        use sha2::{Digest, Sha256};
        let mut digest = Sha256::new();
        digest.update(process.as_bytes());
        digest.update([0]);
        // Fields are a BTreeMap: the same fields serialise to the same bytes.
        digest.update(serde_json::to_vec(fields).unwrap_or_default());
        IdempotencyKey { given, scoped: format!("{}\0{given}", actor.id), request: digest.finalize().into() }
    }

    fn store_key(&self) -> Vec<u8> {
        keys::idempotency(&self.scoped)
    }

    /// The record: the case's id, then the request's digest.
    fn record(&self, id: InstanceId) -> Vec<u8> {
        keys::idempotency_value(id, &self.request)
    }
}

/// A page of an inbox, soonest due first.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPage {
    pub tasks: Vec<TaskView>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A deployed version of a process.
pub struct Deployed {
    pub process: String,
    pub version: u32,
    pub source: String,
    pub model: Process,
    pub deployed_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct StoredDefinition {
    source: String,
    deployed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeployOutcome {
    pub process: String,
    pub version: u32,
    /// False when the source equals the latest version's: nothing was deployed.
    pub changed: bool,
    pub warnings: Vec<String>,
}

pub use crate::storage::index::TaskView;

/// One accepted change of the rules: who, when, what changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulesChange {
    pub version: u64,
    pub at: DateTime<Utc>,
    pub by: String,
    /// A unified diff of the rules files against the previous version.
    pub diff: String,
}

/// A sub-process case, as its parent lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubCase {
    pub id: InstanceId,
    pub process: String,
    pub status: String,
}

/// A durable change, as published to observers (the API's event stream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineEvent {
    pub instance: InstanceId,
    pub business_key: String,
    pub process: String,
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub event: HistoryEvent,
    pub step: Option<String>,
    pub detail: String,
    pub status: String,
}

/// Where the timer driver's scans of the timer index (`t/`) start.
///
/// A fired timer's entry is removed through the memtable, and sled keeps it until the next
/// apply: a scan from the start of `t/` would walk over every entry fired since (thousands,
/// with a million timers due over ten minutes, on every driver round). So a scan starts at the
/// first entry the previous scan found. Entries added below that are not lost: a write that
/// adds one lowers the start once the entry is visible, and what was added during a scan is
/// kept as the start's floor when the scan moves it.
struct TimerCursor {
    state: Mutex<CursorState>,
    /// One driver scan at a time, from `begin` to `end`.
    scanning: Mutex<()>,
}

struct CursorState {
    from: Vec<u8>,
    /// The lowest entry added since the running scan began.
    added_during_scan: Option<Vec<u8>>,
}

impl Default for TimerCursor {
    fn default() -> Self {
        TimerCursor {
            state: Mutex::new(CursorState { from: Prefix::Timer.bytes().to_vec(), added_during_scan: None }),
            scanning: Mutex::new(()),
        }
    }
}

impl TimerCursor {
    /// A timer entry `key` was written and is visible.
    fn added(&self, key: &[u8]) {
        let mut st = self.state.lock().unpoisoned();
        if key < st.from.as_slice() {
            st.from = key.to_vec();
        }
        if st.added_during_scan.as_deref().is_none_or(|a| key < a) {
            st.added_during_scan = Some(key.to_vec());
        }
    }

    /// Runs a scan from the current start; `scan` returns where the next one may start (the
    /// first entry it found, or the end of what it read when it found none).
    fn scan<R>(&self, scan: impl FnOnce(&[u8]) -> Result<(R, Option<Vec<u8>>), EngineError>) -> Result<R, EngineError> {
        let _one = self.scanning.lock().unpoisoned();
        let from = {
            let mut st = self.state.lock().unpoisoned();
            st.added_during_scan = None;
            st.from.clone()
        };
        let (result, next) = scan(&from)?;
        let mut st = self.state.lock().unpoisoned();
        if let Some(next) = next {
            st.from = match st.added_during_scan.take() {
                Some(added) => added.min(next),
                None => next,
            };
        }
        Ok(result)
    }
}

/// What a write does to the indexes: the open-task counts it changes per user, and the
/// earliest timer entry it adds (for `TimerCursor::added`).
type IndexChange = (BTreeMap<String, i64>, Option<Vec<u8>>);

/// What the check of a source to deploy said: its model and warnings, or its diagnostics.
type Verdict = Result<(Process, Vec<String>), Vec<Diagnostic>>;

/// A command applied and written, not yet known durable.
struct Applied {
    instance: Instance,
    outcome: Outcome,
    ticket: u64,
    /// Other cases of the family the same write changed (sub-processes), to publish.
    others: Vec<(Instance, Outcome)>,
}

/// A start or command applied and written but not yet acknowledged: `Engine::confirm` waits
/// until it is durable, publishes its events and returns the case. Meanwhile the caller may go
/// on (start more cases, or work on this one): the log is written in order, so waiting for a
/// later write covers every earlier one. Nothing may be reported as done before `confirm`.
#[must_use = "a pending write is acknowledged only by Engine::confirm"]
pub struct Pending {
    instance: Instance,
    /// `None`: nothing to publish (an idempotent repeat of a start).
    outcome: Option<Outcome>,
    /// `None`: nothing of this call to wait for.
    ticket: Option<u64>,
    /// Other cases the same write changed (sub-processes started, a parent moved on).
    others: Vec<(Instance, Outcome)>,
}

impl From<Applied> for Pending {
    fn from(a: Applied) -> Pending {
        Pending { instance: a.instance, outcome: Some(a.outcome), ticket: Some(a.ticket), others: a.others }
    }
}

/// The cases one start or command changes, all written in one batch: the case itself and,
/// through sub-processes, others of its family (children started, a parent told its child
/// ended, children cancelled with their parent). Either all of it is written or none.
#[derive(Default)]
struct Unit {
    cases: BTreeMap<InstanceId, Staged>,
    /// In the order first touched: the order their events are published in.
    order: Vec<InstanceId>,
    /// Cases this unit starts, with their business keys (numbered at commit).
    started: Vec<(InstanceId, BusinessKey)>,
}

struct Staged {
    before: Option<Instance>,
    after: Instance,
    outcome: Outcome,
}

impl Unit {
    fn add(&mut self, before: Option<Instance>, after: Instance, outcome: Outcome) {
        self.order.push(after.id);
        self.cases.insert(after.id, Staged { before, after, outcome });
    }

    /// The first case, and every other one with what it did.
    fn split_first(mut self) -> (Instance, Outcome, Vec<(Instance, Outcome)>) {
        let mut staged = self.order.iter().filter_map(|id| self.cases.remove(id));
        let first = staged.next().expect("a unit has its own case");
        let others = staged.map(|s| (s.after, s.outcome)).collect();
        (first.after, first.outcome, others)
    }
}

impl Pending {
    /// The case as this call left it (not yet durable).
    pub fn instance(&self) -> &Instance {
        &self.instance
    }
}

type Observer = Box<dyn Fn(&EngineEvent) + Send + Sync>;

pub struct Engine<S: Storage = Store> {
    store: S,
    /// Where the timer driver's scans start.
    timer_cursor: TimerCursor,
    /// Write every history entry to the outbox (`o/`) in the command's own batch, for
    /// at-least-once delivery to webhooks.
    outbox: std::sync::atomic::AtomicBool,
    /// Told of each history entry once it is durable.
    observers: RwLock<Vec<Observer>>,
    /// Encrypts sensitive fields at rest; `None` stores them in the clear (tests only).
    cipher: Option<crate::crypto::FieldCipher>,
    rules: RwLock<Arc<RuleSet>>,
    rules_version: AtomicU64,
    definitions: RwLock<BTreeMap<String, BTreeMap<u32, Arc<Deployed>>>>,
    stripes: Vec<Mutex<()>>,
    /// Serialises id, business-key and idempotency allocation; holds the reserved ids.
    allocation: Mutex<IdBlock>,
    /// Idempotency keys of starts between allocation and the write of their case.
    starting: Mutex<BTreeSet<String>>,
    round_robin: Mutex<BTreeMap<String, u64>>,
    open_counts: OpenCounts,
    commands: AtomicU64,
}

/// Open tasks per assignee, for `by fewest_open`. A user's count is read from their inbox index
/// (`u/`) the first time it is asked for, and from then on kept by every write that adds or
/// removes one of their inbox entries, so an assignment reads a number instead of scanning
/// every member's inbox (a million waiting complaints made that a scan of the whole role).
///
/// Exact under concurrency: a write holds the read lock of each changed user's stripe from
/// before its keys go into sled until its counts are adjusted; loading a count holds the
/// stripe's write lock, so no write is half-counted during the scan.
struct OpenCounts {
    stripes: Vec<RwLock<()>>,
    counts: Mutex<std::collections::HashMap<String, usize>>,
}

const COUNT_STRIPES: usize = 64;

impl OpenCounts {
    fn new() -> OpenCounts {
        OpenCounts { stripes: (0..COUNT_STRIPES).map(|_| RwLock::new(())).collect(), counts: Mutex::default() }
    }

    fn stripe(user: &str) -> usize {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        user.hash(&mut h);
        (h.finish() as usize) % COUNT_STRIPES
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, usize>> {
        self.counts.lock().unpoisoned()
    }

    /// The user's open tasks; `scan` counts them in the store the first time.
    fn get(&self, user: &str, scan: impl FnOnce() -> usize) -> usize {
        if let Some(n) = self.counts().get(user) {
            return *n;
        }
        let _exclusive = self.stripes[Self::stripe(user)].write().unpoisoned();
        if let Some(n) = self.counts().get(user) {
            return *n;
        }
        let n = scan();
        self.counts().insert(user.to_string(), n);
        n
    }

    /// Runs `write` (which changes the inbox entries counted in `deltas`) and adjusts the
    /// counts. After a failed write its outcome is unknown: those counts are read again.
    fn around<R, E>(&self, deltas: &BTreeMap<String, i64>, write: impl FnOnce() -> Result<R, E>) -> Result<R, E> {
        if deltas.is_empty() {
            return write();
        }
        let mut stripes: Vec<usize> = deltas.keys().map(|u| Self::stripe(u)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _shared: Vec<_> = stripes.iter().map(|&i| self.stripes[i].read().unpoisoned()).collect();
        let result = write();
        let mut counts = self.counts();
        for (user, delta) in deltas {
            match (&result, counts.get_mut(user)) {
                (Ok(_), Some(n)) => *n = (*n as i64 + delta).max(0) as usize,
                (Err(_), Some(_)) => {
                    counts.remove(user);
                }
                (_, None) => {}
            }
        }
        result
    }
}

/// How a change of index entries changes each assignee's open tasks (`u/{user}\0…` keys).
fn inbox_deltas(removed: &[&Vec<u8>], added: &[&Vec<u8>]) -> BTreeMap<String, i64> {
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

/// Instance ids are reserved `ID_BLOCK` at a time: `m/next_instance` is written once per block,
/// not once per start. A restart continues after the block, so ids only grow (and may skip).
const ID_BLOCK: u64 = 1000;

#[derive(Default)]
struct IdBlock {
    /// The next id to hand out; 0 until read from the store.
    next: u64,
    /// The first id not reserved (the stored `m/next_instance`).
    end: u64,
}

impl IdBlock {
    /// Takes an id; returns the new stored bound when a block had to be reserved.
    fn take(&mut self, store: &impl Storage) -> Result<(InstanceId, Option<u64>), StoreError> {
        if self.next == 0 {
            let stored = store.get_u64(keys::NEXT_INSTANCE)?.unwrap_or(1);
            (self.next, self.end) = (stored, stored);
        }
        let reserve = (self.next == self.end).then(|| self.next + ID_BLOCK);
        if let Some(end) = reserve {
            self.end = end;
        }
        self.next += 1;
        Ok((InstanceId(self.next - 1), reserve))
    }

    /// Gives back the id just taken (the start was refused), if no other was taken since; its
    /// block, if it reserved one, is stored already and stays.
    fn give_back(&mut self, id: InstanceId) {
        if self.next == id.0 + 1 {
            self.next = id.0;
        }
    }
}

/// A business key rendered before its case starts: `{seq}` is left as `SEQUENCE_PLACEHOLDER`
/// until the start has succeeded and takes the next number of `sequence` (the counter's key
/// and the number's width).
struct BusinessKey {
    text: String,
    sequence: Option<(Vec<u8>, usize)>,
}

/// Stands for the sequence number in a business key until it is taken; no key, field value or
/// message contains it otherwise (a NUL).
const SEQUENCE_PLACEHOLDER: char = '\u{0}';

/// Puts the sequence number taken for a started case wherever its key was written: the case,
/// and the texts of its history and notifications.
fn fill_sequence(inst: &mut Instance, outcome: &mut Outcome, seq: &str) {
    let fill = |text: &mut String| {
        if text.contains(SEQUENCE_PLACEHOLDER) {
            *text = text.replacen(SEQUENCE_PLACEHOLDER, seq, 1);
        }
    };
    fill(&mut inst.business_key);
    outcome.history.iter_mut().for_each(|h| fill(&mut h.detail));
    for e in &mut outcome.effects {
        if let Effect::Notify { message, .. } = e {
            fill(message);
        }
    }
}

/// The workload as the core sees it: figures read from the store and the engine's counters,
/// and the round-robin positions it read (checked again before the command counts).
struct EngineWorkload<'a, S: Storage> {
    engine: &'a Engine<S>,
    positions_read: RefCell<BTreeMap<String, u64>>,
}

impl<S: Storage> Workload for EngineWorkload<'_, S> {
    fn open_tasks(&self, user: &str) -> usize {
        self.engine.open_counts.get(user, || {
            let prefix = Inbox::User(user).prefix();
            self.engine.store.scan_prefix(&prefix).count()
        })
    }

    fn familiar(&self, process: &str, field: &str, value: &str, step: &str) -> Option<String> {
        let key = keys::familiar(process, field, value, step);
        self.engine.store.get(&key).ok().flatten().and_then(|v| String::from_utf8(v.to_vec()).ok())
    }

    fn tally(&self, process: &str, name: &str, by: &[String]) -> u64 {
        self.engine.store.scan_prefix(&keys::tally_prefix(process, name, by)).count() as u64
    }

    fn round_robin_position(&self, role: &str) -> u64 {
        let position = self.engine.round_robin.lock().unpoisoned().get(role).copied();
        let position = position.unwrap_or(0);
        self.positions_read.borrow_mut().insert(role.to_string(), position);
        position
    }
}

impl<S: Storage> Engine<S> {
    /// Opens the engine on a store: loads every deployed definition (not the instances: they
    /// stay on disk until a command or query needs them).
    pub fn open(store: S, rules: RuleSet) -> Result<Engine<S>, EngineError> {
        let engine = Engine {
            store,
            outbox: std::sync::atomic::AtomicBool::new(false),
            observers: RwLock::new(Vec::new()),
            cipher: None,
            rules: RwLock::new(Arc::new(rules)),
            rules_version: AtomicU64::new(0),
            definitions: RwLock::new(BTreeMap::new()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            allocation: Mutex::new(IdBlock::default()),
            starting: Mutex::new(BTreeSet::new()),
            round_robin: Mutex::new(BTreeMap::new()),
            open_counts: OpenCounts::new(),
            commands: AtomicU64::new(0),
            timer_cursor: TimerCursor::default(),
        };
        let mut defs: BTreeMap<String, BTreeMap<u32, Arc<Deployed>>> = BTreeMap::new();
        for item in engine.store.scan_prefix(Prefix::Definition.bytes()) {
            let (k, v) = item?;
            let (name, version) = keys::definition_of(&k).ok_or_else(|| StoreError::Corrupt {
                key: String::from_utf8_lossy(&k).into(),
                problem: "bad definition key".into(),
            })?;
            let stored: StoredDefinition = decode(&k, &v)?;
            // Stored versions compiled once; they compile again (the language only grows).
            let model = compile_one(&name, &stored.source)?;
            let d = Deployed {
                process: name.clone(),
                version,
                source: stored.source,
                model,
                deployed_at: stored.deployed_at,
            };
            defs.entry(name).or_default().insert(version, Arc::new(d));
        }
        *engine.definitions.write().unpoisoned() = defs;
        engine.check_format()?;
        if let Some(v) = engine.store.get_u64(keys::RULES_VERSION)? {
            engine.rules_version.store(v, Ordering::SeqCst);
        }
        let mut rotation = BTreeMap::new();
        for item in engine.store.scan_prefix(keys::ROUND_ROBIN) {
            let (k, v) = item?;
            let role = keys::round_robin_role(&k).ok_or_else(|| corrupt(&String::from_utf8_lossy(&k), "bad role"))?;
            rotation.insert(role, keys::u64_value(&v).unwrap_or(0));
        }
        *engine.round_robin.lock().unpoisoned() = rotation;
        Ok(engine)
    }

    /// Refuses a store whose key layout is not this caseflow's (`keys::FORMAT`), and records
    /// the layout in a new one. caseflow has never shipped a store that needs upgrading, so
    /// there is no migration: a store of another format is refused with what it holds.
    fn check_format(&self) -> Result<(), EngineError> {
        match self.store.get_u64(keys::FORMAT_KEY)? {
            Some(keys::FORMAT) => Ok(()),
            Some(other) => Err(EngineError::UnknownFormat { found: other, expected: keys::FORMAT }),
            None if Self::holds_data(&self.store)? => {
                Err(EngineError::UnknownFormat { found: 0, expected: keys::FORMAT })
            }
            None => {
                let mut batch = Batch::default();
                batch.insert(keys::FORMAT_KEY, keys::FORMAT.to_be_bytes());
                Ok(self.store.write_now(batch)?)
            }
        }
    }

    /// Encrypts sensitive fields at rest with this key.
    /// The store records the key's id on first use; another key is refused.
    pub fn with_field_key(mut self, key: &[u8]) -> Result<Self, EngineError> {
        self.cipher = Some(crate::crypto::FieldCipher::new(key)?);
        let given = crate::crypto::key_id(key);
        match self.store.get(keys::FIELD_KEY_ID)? {
            Some(recorded) if recorded.as_ref() != given.as_bytes() => {
                return Err(crate::crypto::CryptoError::WrongKey {
                    given,
                    recorded: String::from_utf8_lossy(&recorded).into_owned(),
                }
                .into())
            }
            Some(_) => {}
            None => {
                let mut batch = Batch::default();
                batch.insert(keys::FIELD_KEY_ID.to_vec(), given.into_bytes());
                self.store.write_now(batch)?;
            }
        }
        Ok(self)
    }

    /// Whether a store holds cases or a recorded field key: a start that finds no key file must
    /// then not make a new key (the data would not decrypt with it).
    pub fn holds_data(store: &S) -> Result<bool, EngineError> {
        if store.get(keys::FIELD_KEY_ID)?.is_some() {
            return Ok(true);
        }
        match store.scan_prefix(Prefix::Instance.bytes()).next() {
            Some(item) => item.map(|_| true).map_err(EngineError::from),
            None => Ok(false),
        }
    }

    /// Registers an observer of durable changes. Called on the thread that made the change,
    /// after it is durable: keep it quick (the API forwards into a channel).
    pub fn observe(&self, f: impl Fn(&EngineEvent) + Send + Sync + 'static) {
        self.observers.write().unpoisoned().push(Box::new(f));
    }

    /// Turns the durable outbox on: from now on every history entry is also written to `o/`.
    pub fn enable_outbox(&self) {
        self.outbox.store(true, Ordering::Relaxed);
    }

    /// The oldest undelivered outbox events, in order.
    pub fn outbox_peek(&self, limit: usize) -> Result<Vec<(Vec<u8>, EngineEvent)>, EngineError> {
        self.store
            .scan_prefix(keys::OUTBOX)
            .take(limit)
            .map(|r| {
                let (k, v) = r?;
                Ok((k.to_vec(), decode(&k, &v)?))
            })
            .collect()
    }

    /// Marks an outbox event delivered (durably).
    pub fn outbox_ack(&self, key: &[u8]) -> Result<(), EngineError> {
        let mut batch = Batch::default();
        batch.remove(key.to_vec());
        let ticket = self.store.write(batch)?;
        self.store.wait_durable(ticket)?;
        Ok(())
    }

    fn publish(&self, inst: &Instance, outcome: &Outcome) {
        let observers = self.observers.read().unpoisoned();
        if observers.is_empty() {
            return;
        }
        for h in &outcome.history {
            let e = event_of(inst, h);
            for o in observers.iter() {
                o(&e);
            }
        }
    }

    /// The version of the rules in force (0 until a change is recorded).
    pub fn rules_version(&self) -> u64 {
        self.rules_version.load(Ordering::SeqCst)
    }

    /// The rules in force and their version, read together.
    fn rules_and_version(&self) -> (Arc<RuleSet>, u64) {
        let guard = self.rules.read().unpoisoned();
        // The writer changes both under the write lock, so this pair is consistent.
        (guard.clone(), self.rules_version.load(Ordering::SeqCst))
    }

    /// Recomputes open tasks' deadlines of every running or suspended case under the rules in
    /// force. Returns how many cases changed.
    pub fn recompute_deadlines(&self, now: DateTime<Utc>) -> Result<usize, EngineError> {
        let processes: Vec<String> = self.definitions().into_iter().map(|(p, _)| p).collect();
        let mut changed = 0;
        for p in processes {
            for status in [StatusKind::Running, StatusKind::Suspended] {
                for id in self.instances(&p, status.as_str(), usize::MAX)? {
                    let before = self.instance(id)?.map(|i| i.history_len);
                    let after = self.command(id, Actor::system(), Command::RecomputeDeadlines, now)?;
                    if before != Some(after.history_len) {
                        changed += 1;
                    }
                }
            }
        }
        Ok(changed)
    }

    /// Gives every open task of `user` to `to` (for a user leaving a role). Returns the count.
    pub fn reassign_all(
        &self,
        user: &str,
        to: &str,
        by: &Actor,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, EngineError> {
        let tasks = self.tasks(Some(user), None, usize::MAX)?;
        for t in &tasks {
            let cmd = Command::Reassign { task: t.task.seq, to: to.to_string(), reason: reason.to_string() };
            self.command(t.instance, by, cmd, now)?;
        }
        Ok(tasks.len())
    }

    /// Replaces the rules in force after checking that every deployed process still finds the
    /// roles, values and tables it uses. Records the change (who, when, diff) and the files
    /// now in force durably before the new rules apply; on any error the old rules stay in
    /// force.
    pub fn change_rules(
        &self,
        rules: RuleSet,
        files: &[RulesFile],
        by: &str,
        diff: String,
        now: DateTime<Utc>,
    ) -> Result<RulesChange, EngineError> {
        let catalog = rules.catalog();
        let sources: Vec<SourceFile> = {
            let defs = self.definitions.read().unpoisoned();
            defs.values()
                .filter_map(|v| v.values().next_back())
                .map(|d| SourceFile { name: format!("{}.flow", d.process), text: d.source.clone() })
                .collect()
        };
        let mut problems = Vec::new();
        for report in check_files(&sources, Some(&catalog)) {
            problems.extend(report.checked.diagnostics.into_iter().filter(Diagnostic::is_error));
        }
        if !problems.is_empty() {
            return Err(EngineError::Rejected(problems));
        }
        let mut current = self.rules.write().unpoisoned();
        let version = self.rules_version.load(Ordering::SeqCst) + 1;
        let change = RulesChange { version, at: now, by: by.to_string(), diff };
        let mut batch = Batch::default();
        batch.insert(keys::RULES_VERSION.to_vec(), version.to_be_bytes().to_vec());
        batch.insert(keys::rules_change(version), encode(&change));
        batch.insert(keys::RULES_FILES.to_vec(), encode(&files));
        let ticket = self.store.write(batch)?;
        self.store.wait_durable(ticket)?;
        *current = Arc::new(rules);
        self.rules_version.store(version, Ordering::SeqCst);
        Ok(change)
    }

    /// Records `files` as the rules in force, without a change: for a store that has no
    /// record of them yet (created before they were recorded, or new).
    pub fn record_rules_files(&self, files: &[RulesFile]) -> Result<(), EngineError> {
        let mut batch = Batch::default();
        batch.insert(keys::RULES_FILES.to_vec(), encode(&files));
        let ticket = self.store.write(batch)?;
        Ok(self.store.wait_durable(ticket)?)
    }

    /// The rules files last accepted (by a change, or recorded at a start), if any: what a
    /// restart falls back on when the folder holds a broken file.
    pub fn rules_files_in_force(store: &S) -> Result<Option<Vec<RulesFile>>, EngineError> {
        match store.get(keys::RULES_FILES)? {
            Some(v) => Ok(Some(decode(keys::RULES_FILES, &v)?)),
            None => Ok(None),
        }
    }

    /// Every accepted rules change, oldest first.
    pub fn rules_changes(&self) -> Result<Vec<RulesChange>, EngineError> {
        self.store
            .scan_prefix(Prefix::RulesChange.bytes())
            .map(|r| {
                let (k, v) = r?;
                Ok(decode(&k, &v)?)
            })
            .collect()
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.read().unpoisoned().clone()
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn commands_applied(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }

    // ------------------------------------------------------------ definitions

    /// Checks a source and deploys it as a new version if it differs from the latest.
    pub fn deploy(&self, source: &str, now: DateTime<Utc>) -> Result<DeployOutcome, EngineError> {
        let mut results =
            self.deploy_together(&[SourceFile { name: "deploy.flow".into(), text: source.into() }], now)?;
        results.remove(0)
    }

    /// Checks several sources together with the latest deployed version of every other
    /// process (so processes that call each other check as `caseflow check` checks a
    /// folder), and deploys each one that passes. One result per source, in order.
    pub fn deploy_together(
        &self,
        sources: &[SourceFile],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<DeployOutcome, EngineError>>, EngineError> {
        let rules = self.rules();
        let catalog = rules.catalog();
        // Refused sources drop out and the check runs again, so nothing deploys against a
        // process that is not deployed in the end.
        let mut verdicts: Vec<Option<Verdict>> = vec![None; sources.len()];
        loop {
            let candidates: Vec<usize> = (0..sources.len()).filter(|i| verdicts[*i].is_none()).collect();
            let mut files: Vec<SourceFile> = candidates.iter().map(|i| sources[*i].clone()).collect();
            let new_ids: BTreeSet<String> =
                files.iter().filter_map(|f| caseflow_dsl::parse::parse(&f.text).ok().map(|a| a.id.name)).collect();
            {
                let defs = self.definitions.read().unpoisoned();
                // A new source replaces its own latest version among the signatures.
                for versions in defs.values() {
                    if let Some(latest) = versions.values().next_back().filter(|l| !new_ids.contains(&l.process)) {
                        files
                            .push(SourceFile { name: format!("{}.flow", latest.process), text: latest.source.clone() });
                    }
                }
            }
            let reports = check_files(&files, Some(&catalog));
            let mut refused_now = false;
            let mut passed = Vec::new();
            for (report, i) in reports.into_iter().zip(candidates) {
                match report.checked.process {
                    Some(model) => {
                        let warnings = report
                            .checked
                            .diagnostics
                            .iter()
                            .map(|d| format!("{}: {}", d.code.as_str(), d.message))
                            .collect();
                        passed.push((i, model, warnings));
                    }
                    None => {
                        refused_now = true;
                        verdicts[i] = Some(Err(report.checked.diagnostics));
                    }
                }
            }
            if !refused_now {
                for (i, model, warnings) in passed {
                    verdicts[i] = Some(Ok((model, warnings)));
                }
                break;
            }
        }
        let mut results = Vec::with_capacity(sources.len());
        for (verdict, file) in verdicts.into_iter().zip(sources) {
            results.push(match verdict.expect("every source has a verdict") {
                Ok((model, warnings)) => self.deploy_checked(model, &file.text, warnings, now),
                Err(diagnostics) => Err(EngineError::Rejected(diagnostics)),
            });
        }
        Ok(results)
    }

    /// Stores a checked model as a new version, unless its source equals the latest.
    fn deploy_checked(
        &self,
        model: Process,
        source: &str,
        warnings: Vec<String>,
        now: DateTime<Utc>,
    ) -> Result<DeployOutcome, EngineError> {
        let mut defs = self.definitions.write().unpoisoned();
        let versions = defs.entry(model.id.clone()).or_default();
        if let Some(latest) = versions.values().next_back() {
            if latest.source == source {
                return Ok(DeployOutcome {
                    process: model.id.clone(),
                    version: latest.version,
                    changed: false,
                    warnings,
                });
            }
        }
        let version = versions.keys().next_back().map_or(1, |v| v + 1);
        let stored = StoredDefinition { source: source.to_string(), deployed_at: now };
        let mut batch = Batch::default();
        batch.insert(keys::definition(&model.id, version), encode(&stored));
        let ticket = self.store.write(batch)?;
        self.store.wait_durable(ticket)?;
        let process = model.id.clone();
        versions.insert(
            version,
            Arc::new(Deployed {
                process: process.clone(),
                version,
                source: source.to_string(),
                model,
                deployed_at: now,
            }),
        );
        Ok(DeployOutcome { process, version, changed: true, warnings })
    }

    pub fn definition(&self, process: &str, version: Option<u32>) -> Option<Arc<Deployed>> {
        let defs = self.definitions.read().unpoisoned();
        let versions = defs.get(process)?;
        match version {
            Some(v) => versions.get(&v).cloned(),
            None => versions.values().next_back().cloned(),
        }
    }

    /// Every process with its versions, latest last.
    pub fn definitions(&self) -> Vec<(String, Vec<u32>)> {
        let defs = self.definitions.read().unpoisoned();
        defs.iter().map(|(n, v)| (n.clone(), v.keys().copied().collect())).collect()
    }

    // ------------------------------------------------------------ instances

    /// Starts a case of the latest version. With an idempotency key, a repeated start returns
    /// the instance the first one created, and changes nothing.
    pub fn start(
        &self,
        process: &str,
        fields: BTreeMap<String, Value>,
        actor: &Actor,
        idempotency_key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Instance, EngineError> {
        self.confirm(self.start_pending(process, fields, actor, idempotency_key, now)?)
    }

    /// `start` without waiting for durability: see `Pending`.
    pub fn start_pending(
        &self,
        process: &str,
        fields: BTreeMap<String, Value>,
        actor: &Actor,
        idempotency_key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Pending, EngineError> {
        self.start_inner(process, fields, actor, idempotency_key, now)
    }

    /// Calls `done` once a pending write is durable, without blocking a thread (on the log's
    /// writer thread; `done` must be quick). `confirm` then returns at once.
    pub fn when_durable(&self, pending: &Pending, done: impl FnOnce(Result<(), EngineError>) + Send + 'static) {
        match pending.ticket {
            Some(ticket) => self.store.when_durable(ticket, Box::new(move |r| done(r.map_err(EngineError::from)))),
            None => done(Ok(())),
        }
    }

    /// Waits until a pending start or command is durable, publishes its events and returns
    /// the case: the acknowledgement.
    pub fn confirm(&self, pending: Pending) -> Result<Instance, EngineError> {
        if let Some(ticket) = pending.ticket {
            self.store.wait_durable(ticket)?;
        }
        if let Some(outcome) = &pending.outcome {
            self.publish(&pending.instance, outcome);
        }
        for (inst, outcome) in &pending.others {
            self.publish(inst, outcome);
        }
        Ok(pending.instance)
    }

    fn start_inner(
        &self,
        process: &str,
        fields: BTreeMap<String, Value>,
        actor: &Actor,
        idempotency_key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Pending, EngineError> {
        let def = self.definition(process, None).ok_or_else(|| EngineError::UnknownProcess(process.to_string()))?;
        let (rules, rules_version) = self.rules_and_version();
        // Allocation happens under a lock, briefly, in two steps around the start itself, so
        // that starts run their steps in parallel. First the id (and the idempotency key's
        // claim); then, once the start has succeeded, the business key's sequence number, so
        // that a refused start never takes one: the register has no gaps (ids may have some).
        // Counters are written under the lock in small batches of their own, before the case
        // itself, so that in the store they only ever grow: a crash in between leaves an
        // unused number, never a reused one.
        let idem = idempotency_key.map(|k| IdempotencyKey::new(k, actor, process, &fields));
        let alloc = self.allocation.lock().unpoisoned();
        if let Some(k) = &idem {
            if let Some((id, request)) = self.idempotency_record(k)? {
                drop(alloc);
                if request.is_some_and(|r| r != k.request) {
                    return Err(EngineError::IdempotencyKeyReused(k.given.to_string()));
                }
                if let Some(existing) = self.instance(id)? {
                    return Ok(Pending { instance: existing, outcome: None, ticket: None, others: Vec::new() });
                }
                if self.starting.lock().unpoisoned().contains(&k.scoped) {
                    return Err(EngineError::StartInProgress(k.given.to_string()));
                }
                // Taken by a start that crashed before writing its case: take it again.
                return self.start_after_crashed_reservation(process, fields, actor, k, now);
            }
            if !self.starting.lock().unpoisoned().insert(k.scoped.clone()) {
                return Err(EngineError::StartInProgress(k.given.to_string()));
            }
        }
        drop(alloc);
        let release_key = || {
            if let Some(k) = &idem {
                self.starting.lock().unpoisoned().remove(&k.scoped);
            }
        };
        let mut unit = Unit::default();
        // A new case is its own family: no one else can reach it before it is written.
        let started = self.take_id().and_then(|id| {
            unit.started.push((id, self.business_key(&def.model, &rules, &fields, id, now)));
            let key_text = unit.started[0].1.text.clone();
            let mut inst = Instance::new(id, &def.model, def.version, key_text, now);
            inst.rules_version = rules_version;
            let (inst, outcome) = self.run_core(&def.model, &rules, &inst, actor, Command::Start { fields }, now)?;
            let effects = outcome.effects.clone();
            unit.add(None, inst, outcome);
            self.cascade(&mut unit, id, effects, now)?;
            Ok(id)
        });
        let written = started.and_then(|_| self.commit(&mut unit, idem.as_ref()));
        release_key();
        // A unit not written gives back the ids it took.
        let ticket = written.inspect_err(|_| self.give_back(&unit))?;
        let (instance, outcome, others) = unit.split_first();
        Ok(Pending { instance, outcome: Some(outcome), ticket: Some(ticket), others })
    }

    /// Takes a new instance id (reserving a block in the store when one is used up).
    fn take_id(&self) -> Result<InstanceId, EngineError> {
        let mut alloc = self.allocation.lock().unpoisoned();
        let (id, reserved) = alloc.take(&self.store)?;
        if let Some(end) = reserved {
            let mut block = Batch::default();
            block.insert(keys::NEXT_INSTANCE, end.to_be_bytes());
            if let Err(e) = self.store.write(block) {
                // The reservation may not be stored: read the bound again before the next start.
                *alloc = IdBlock::default();
                return Err(e.into());
            }
        }
        Ok(id)
    }

    /// The ids a refused unit took, back (newest first, so each is the last one taken).
    fn give_back(&self, unit: &Unit) {
        let mut alloc = self.allocation.lock().unpoisoned();
        for (id, _) in unit.started.iter().rev() {
            alloc.give_back(*id);
        }
    }

    /// Loads a case into the unit, unless it is there already.
    fn stage(&self, unit: &mut Unit, id: InstanceId) -> Result<(), EngineError> {
        if !unit.cases.contains_key(&id) {
            let inst = self.instance(id)?.ok_or_else(|| EngineError::UnknownInstance(id.to_string()))?;
            unit.add(Some(inst.clone()), inst, Outcome { effects: Vec::new(), history: Vec::new() });
        }
        Ok(())
    }

    /// Applies a command to a staged case; returns the effects it had.
    fn apply_staged(
        &self,
        unit: &mut Unit,
        id: InstanceId,
        actor: &Actor,
        command: Command,
        now: DateTime<Utc>,
    ) -> Result<Vec<Effect>, EngineError> {
        self.stage(unit, id)?;
        let staged = unit.cases.get_mut(&id).expect("staged above");
        let def = self.definition(&staged.after.process, Some(staged.after.version)).ok_or_else(|| {
            EngineError::UnknownProcess(format!("{} version {}", staged.after.process, staged.after.version))
        })?;
        let (rules, rules_version) = self.rules_and_version();
        let (after, mut outcome) = self.run_core(&def.model, &rules, &staged.after, actor, command, now)?;
        staged.after = after;
        outcome.history.iter_mut().for_each(|h| h.rules_version = rules_version);
        let effects = outcome.effects.clone();
        staged.outcome.history.append(&mut outcome.history);
        staged.outcome.effects.append(&mut outcome.effects);
        Ok(effects)
    }

    /// Carries a command's effects through the family, in the same unit: sub-processes
    /// started (and run as far as they go), parents told their child ended or was
    /// cancelled, children cancelled with their parent. Any refusal refuses the whole unit.
    fn cascade(
        &self,
        unit: &mut Unit,
        from: InstanceId,
        effects: Vec<Effect>,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let mut work: std::collections::VecDeque<(InstanceId, Effect)> =
            effects.into_iter().map(|e| (from, e)).collect();
        while let Some((id, effect)) = work.pop_front() {
            let inst = &unit.cases[&id].after;
            let (parent, family, depth) = (inst.parent, inst.family.unwrap_or(id), inst.depth);
            let more = match effect {
                Effect::StartChild { token, process, fields } => {
                    if depth as usize + 1 > CALL_DEPTH_MAX {
                        return Err(EngineError::TooDeep);
                    }
                    let def = self
                        .definition(&process, None)
                        .ok_or_else(|| EngineError::UnknownProcess(process.to_string()))?;
                    let (rules, rules_version) = self.rules_and_version();
                    let child = self.take_id()?;
                    let key = self.business_key(&def.model, &rules, &fields, child, now);
                    let mut inst = Instance::new(child, &def.model, def.version, key.text.clone(), now);
                    unit.started.push((child, key));
                    (inst.parent, inst.family, inst.depth, inst.rules_version) =
                        (Some((id, token)), Some(family), depth + 1, rules_version);
                    let (inst, mut outcome) =
                        self.run_core(&def.model, &rules, &inst, Actor::system(), Command::Start { fields }, now)?;
                    outcome.history.iter_mut().for_each(|h| h.rules_version = rules_version);
                    let effects = outcome.effects.clone();
                    unit.add(None, inst, outcome);
                    self.apply_staged(unit, id, Actor::system(), Command::ChildStarted { token, child }, now)?;
                    effects.into_iter().map(|e| (child, e)).collect()
                }
                Effect::Ended { status } => match (parent, status) {
                    (Some((parent, token)), Status::Completed { .. }) => {
                        let fields = unit.cases[&id].after.fields.clone();
                        let cmd = Command::ChildEnded { token, fields };
                        self.tell_parent(unit, parent, cmd, now)?.into_iter().map(|e| (parent, e)).collect()
                    }
                    (Some((parent, token)), Status::Cancelled { reason }) => {
                        let cmd = Command::ChildCancelled { token, reason };
                        self.tell_parent(unit, parent, cmd, now)?.into_iter().map(|e| (parent, e)).collect()
                    }
                    _ => Vec::new(),
                },
                Effect::CancelChildren { children } => {
                    let mut more = Vec::new();
                    for child in children {
                        let cmd = Command::Cancel { reason: format!("the parent case {id} ended") };
                        match self.apply_staged(unit, child, Actor::system(), cmd, now) {
                            Ok(effects) => more.extend(effects.into_iter().map(|e| (child, e))),
                            // Ended meanwhile (it is being told to its parent in this unit).
                            Err(EngineError::Command(CommandError::WrongStatus(_))) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    more
                }
                _ => Vec::new(),
            };
            work.extend(more);
        }
        Ok(())
    }

    /// A parent told of its child's end; a parent that moved on (ended, or its token no
    /// longer waits) has nothing to do with it.
    fn tell_parent(
        &self,
        unit: &mut Unit,
        parent: InstanceId,
        command: Command,
        now: DateTime<Utc>,
    ) -> Result<Vec<Effect>, EngineError> {
        match self.apply_staged(unit, parent, Actor::system(), command, now) {
            Err(EngineError::Command(CommandError::NotWaitingForChild(_) | CommandError::WrongStatus(_))) => {
                Ok(Vec::new())
            }
            other => other,
        }
    }

    /// Runs a command through the core on a snapshot of the workload, then moves each role's
    /// round-robin rotation on by the tasks the command took. Two commands that read the same
    /// position at once would give their tasks to the same person: the later one finds the
    /// position moved and runs again on the fresh figures (the core is pure, so running again
    /// is safe). A command the core refuses moves nothing.
    fn run_core(
        &self,
        model: &Process,
        rules: &RuleSet,
        inst: &Instance,
        actor: &Actor,
        command: Command,
        now: DateTime<Utc>,
    ) -> Result<(Instance, Outcome), EngineError> {
        loop {
            let workload = EngineWorkload { engine: self, positions_read: RefCell::new(BTreeMap::new()) };
            let ctx = case::Context { model, rules, workload: &workload, now };
            let (after, outcome) = case::applied(&ctx, inst, actor, command.clone())?;
            let read = workload.positions_read.into_inner();
            if read.is_empty() {
                return Ok((after, outcome));
            }
            let mut rotation = self.round_robin.lock().unpoisoned();
            if read.iter().all(|(role, at)| rotation.get(role).copied().unwrap_or(0) == *at) {
                for e in &outcome.effects {
                    if let Effect::RoundRobinTaken { role, count } = e {
                        *rotation.entry(role.clone()).or_insert(0) += count;
                    }
                }
                return Ok((after, outcome));
            }
        }
    }

    /// Writes a unit: numbers the business keys of the cases it started (and records the
    /// idempotency key) in a small batch of counters, then every case in one batch.
    fn commit(&self, unit: &mut Unit, idempotency_key: Option<&IdempotencyKey>) -> Result<u64, EngineError> {
        let mut counters = Batch::default();
        let numbered = unit.started.iter().any(|(_, k)| k.sequence.is_some());
        let alloc = numbered.then(|| self.allocation.lock().unpoisoned());
        let mut last: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for (id, key) in &unit.started {
            let Some((seq_key, width)) = &key.sequence else { continue };
            let seq = match last.get(seq_key) {
                Some(n) => n + 1,
                None => self.store.get_u64(seq_key)?.unwrap_or(0) + 1,
            };
            last.insert(seq_key.clone(), seq);
            counters.insert(seq_key.clone(), seq.to_be_bytes());
            let staged = unit.cases.get_mut(id).expect("a started case is staged");
            fill_sequence(&mut staged.after, &mut staged.outcome, &format!("{seq:0width$}"));
        }
        if let (Some(k), Some((id, _))) = (idempotency_key, unit.started.first()) {
            counters.insert(k.store_key(), k.record(*id));
        }
        if !counters.is_empty() {
            self.store.write(counters)?;
        }
        drop(alloc);
        let mut batch = Batch::default();
        let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
        let mut timers = Vec::new();
        // The rotations this unit moved, so a restart carries on where they were.
        let rotated: BTreeSet<&str> = (unit.cases.values().flat_map(|c| &c.outcome.effects))
            .filter_map(|e| match e {
                Effect::RoundRobinTaken { role, .. } => Some(role.as_str()),
                _ => None,
            })
            .collect();
        if !rotated.is_empty() {
            let rotation = self.round_robin.lock().unpoisoned();
            for role in rotated {
                let position = rotation.get(role).copied().unwrap_or(0);
                batch.insert(keys::round_robin(role), position.to_be_bytes().to_vec());
            }
        }
        for (id, _) in &unit.started {
            let key = &unit.cases[id].after.business_key;
            batch.insert(keys::business_key(key), id.0.to_be_bytes().to_vec());
        }
        for id in &unit.order {
            let staged = &unit.cases[id];
            if staged.before.as_ref() == Some(&staged.after) {
                continue;
            }
            let (d, timer) = self.put_instance(&mut batch, staged.before.as_ref(), &staged.after, &staged.outcome)?;
            if let Some(def) = self.definition(&staged.after.process, Some(staged.after.version)) {
                for (k, v) in familiar_entries(&def.model, staged.before.as_ref(), &staged.after) {
                    batch.insert(k, v);
                }
                // A case that ends now counts in its process's tallies.
                if staged.before.as_ref().is_none_or(|b| !b.status.is_ended()) {
                    for (name, by) in case::tally_entries(&def.model, &self.rules(), &staged.after) {
                        batch.insert(keys::tally_entry(&staged.after.process, &name, &by, staged.after.id), Vec::new());
                    }
                }
            }
            for (user, n) in d {
                *deltas.entry(user).or_insert(0) += n;
            }
            timers.extend(timer);
        }
        let ticket = self.open_counts.around(&deltas, || self.store.write(batch))?;
        // Once the entries are visible (see `TimerCursor`).
        for k in timers {
            self.timer_cursor.added(&k);
        }
        self.commands.fetch_add(unit.cases.len() as u64, Ordering::Relaxed);
        Ok(ticket)
    }

    /// A start whose idempotency key was reserved by a start that crashed before writing its
    /// case: the stale reservation is dropped and the start runs again.
    fn start_after_crashed_reservation(
        &self,
        process: &str,
        fields: BTreeMap<String, Value>,
        actor: &Actor,
        key: &IdempotencyKey,
        now: DateTime<Utc>,
    ) -> Result<Pending, EngineError> {
        {
            let _alloc = self.allocation.lock().unpoisoned();
            // Still stale under the lock (no start of this key began meanwhile)?
            if self.starting.lock().unpoisoned().contains(&key.scoped) {
                return Err(EngineError::StartInProgress(key.given.to_string()));
            }
            let mut batch = Batch::default();
            let x = key.store_key();
            if let Some(record) = self.store.get(&x)? {
                let id = keys::idempotency_of(&record).map(|(id, _)| id);
                if id.is_none_or(|id| self.store.get(&keys::instance(id)).ok().flatten().is_none()) {
                    batch.remove(x);
                }
            }
            if !batch.is_empty() {
                self.store.write(batch)?;
            }
        }
        self.start_inner(process, fields, actor, Some(key.given), now)
    }

    /// The case a key started and the digest of its request.
    fn idempotency_record(&self, key: &IdempotencyKey) -> Result<Option<KeyRecord>, EngineError> {
        let x = key.store_key();
        let Some(record) = self.store.get(&x)? else { return Ok(None) };
        let record = keys::idempotency_of(&record).ok_or_else(|| StoreError::Corrupt {
            key: String::from_utf8_lossy(&x).into_owned(),
            problem: format!("expected a case id and a request digest, found {} bytes", record.len()),
        })?;
        Ok(Some(record))
    }

    /// Renders the key template: `{date:%Y%m%d}-{seq:03}` → `20261123-007`. The sequence
    /// counts per rendered prefix, so it restarts each day.
    #[allow(clippy::type_complexity)]
    fn business_key(
        &self,
        model: &Process,
        rules: &RuleSet,
        fields: &BTreeMap<String, Value>,
        id: InstanceId,
        now: DateTime<Utc>,
    ) -> BusinessKey {
        // The rules' key format for this process, if any, overrides the .flow file's.
        let Some(template) = rules.key_formats.get(&model.id).or(model.key.as_ref()) else {
            return BusinessKey { text: format!("{}-{}", model.id, id), sequence: None };
        };
        let local = now.with_timezone(&rules.calendar.time_zone);
        let mut out = String::new();
        let mut seq_width = None;
        let mut rest = template.as_str();
        let mut prefix_at_seq = None;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
            let inner = &rest[open + 1..close];
            let (name, format) = inner.split_once(':').unwrap_or((inner, ""));
            match name {
                "date" => {
                    // The checker refuses a format chrono cannot render; never panic on one anyway.
                    use chrono::format::{Item, StrftimeItems};
                    let usable = !StrftimeItems::new(format).any(|i| matches!(i, Item::Error));
                    out.push_str(&local.format(if usable { format } else { "%Y%m%d" }).to_string());
                }
                "seq" if prefix_at_seq.is_none() => {
                    prefix_at_seq = Some(out.len());
                    seq_width = Some(format.trim_start_matches('0').parse::<usize>().unwrap_or(1));
                    out.push(SEQUENCE_PLACEHOLDER);
                }
                "seq" => {}
                field => out.push_str(&fields.get(field).map(|v| v.to_string()).unwrap_or_default()),
            }
            rest = rest.get(close + 1..).unwrap_or("");
        }
        out.push_str(rest);
        let (Some(at), Some(width)) = (prefix_at_seq, seq_width) else {
            return BusinessKey { text: out, sequence: None };
        };
        let seq_key = keys::sequence(&model.id, &out[..at]);
        BusinessKey { text: out, sequence: Some((seq_key, width)) }
    }

    /// The names of a case's sensitive fields.
    fn sensitive_fields(&self, inst: &Instance) -> BTreeSet<String> {
        self.definition(&inst.process, Some(inst.version))
            .map(|d| d.model.fields.iter().filter(|f| f.sensitive).map(|f| f.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Encrypts (`seal`) or decrypts the sensitive values of an instance or history entry.
    fn protect(&self, id: InstanceId, v: &mut Value, seal: bool) -> Result<(), EngineError> {
        let Some(cipher) = &self.cipher else { return Ok(()) };
        let context = id.0.to_be_bytes();
        *v = if seal { cipher.encrypt(v, &context) } else { cipher.decrypt(v, &context) }
            .map_err(|e| corrupt(&format!("i/{id}"), &e.to_string()))?;
        Ok(())
    }

    fn seal_instance(&self, inst: &Instance) -> Result<Instance, EngineError> {
        let sensitive = self.sensitive_fields(inst);
        let mut sealed = inst.clone();
        for (name, v) in sealed.fields.iter_mut() {
            if sensitive.contains(name) {
                self.protect(inst.id, v, true)?;
            }
        }
        Ok(sealed)
    }

    /// Encrypts (`seal`) or decrypts the sensitive values of history entries of one case.
    fn seal_history(
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

    fn put_instance(
        &self,
        batch: &mut Batch,
        before: Option<&Instance>,
        after: &Instance,
        outcome: &Outcome,
    ) -> Result<IndexChange, EngineError> {
        let old = before.map(index_entries).unwrap_or_default();
        let new = index_entries(after);
        let earliest_timer =
            new.keys().filter(|k| k.starts_with(Prefix::Timer.bytes()) && !old.contains_key(*k)).min().cloned();
        let removed: Vec<&Vec<u8>> = old.keys().filter(|k| !new.contains_key(*k)).collect();
        let deltas = inbox_deltas(&removed, &new.keys().filter(|k| !old.contains_key(*k)).collect::<Vec<_>>());
        for k in removed {
            batch.remove(k.clone());
        }
        for (k, v) in new.into_iter().filter(|(k, v)| old.get(k) != Some(v)) {
            batch.insert(k, v);
        }
        batch.insert(keys::instance(after.id), encode(&self.seal_instance(after)?));
        if self.outbox.load(Ordering::Relaxed) {
            for h in &outcome.history {
                // Keyed by the batch's place in the write-ahead log: the outbox keeps command
                // order, across restarts.
                batch.insert_sequenced(keys::OUTBOX, encode(&event_of(after, h)));
            }
        }
        // A command's history entries are one value under its first sequence number: one key
        // per command, not per entry, keeps sled's nodes (16 keys a leaf) and its log small.
        if let Some(first) = outcome.history.first() {
            let sealed = self.seal_history(after, outcome.history.clone(), true)?;
            batch.insert(keys::history(after.id, first.seq), encode(&sealed));
        }
        Ok((deltas, earliest_timer))
    }

    /// Applies a command to an instance, durably.
    pub fn command(
        &self,
        id: InstanceId,
        actor: &Actor,
        command: Command,
        now: DateTime<Utc>,
    ) -> Result<Instance, EngineError> {
        self.confirm(self.apply_and_write(id, actor, command, now)?.into())
    }

    /// `command` without waiting for durability: see `Pending`.
    pub fn command_pending(
        &self,
        id: InstanceId,
        actor: &Actor,
        command: Command,
        now: DateTime<Utc>,
    ) -> Result<Pending, EngineError> {
        Ok(self.apply_and_write(id, actor, command, now)?.into())
    }

    /// Applies a command and writes its batch, without waiting for durability: the caller
    /// waits on `ticket` (once, for a whole group) and then publishes.
    ///
    /// Commands are serialised per family (a case and its sub-processes share the stripe of
    /// the case at the top), so a command and what it does to the family's other cases are
    /// one write.
    fn apply_and_write(
        &self,
        id: InstanceId,
        actor: &Actor,
        command: Command,
        now: DateTime<Utc>,
    ) -> Result<Applied, EngineError> {
        let stripe = |family: InstanceId| (family.0 as usize) % STRIPES;
        let lock = |i: usize| self.stripes[i].lock().unpoisoned();
        let mut guard = lock(stripe(id));
        let mut before = self.instance(id)?.ok_or_else(|| EngineError::UnknownInstance(id.to_string()))?;
        if let Some(family) = before.family.filter(|f| stripe(*f) != stripe(id)) {
            // A sub-process: its family's stripe is the one that counts (a family never changes).
            drop(guard);
            guard = lock(stripe(family));
            before = self.instance(id)?.ok_or_else(|| EngineError::UnknownInstance(id.to_string()))?;
        }
        let mut unit = Unit::default();
        unit.add(Some(before.clone()), before, Outcome { effects: Vec::new(), history: Vec::new() });
        let written = self
            .apply_staged(&mut unit, id, actor, command, now)
            .and_then(|effects| self.cascade(&mut unit, id, effects, now))
            .and_then(|()| self.commit(&mut unit, None));
        drop(guard);
        // A unit not written gives back the ids it took.
        let ticket = written.inspect_err(|_| self.give_back(&unit))?;
        let (instance, outcome, others) = unit.split_first();
        Ok(Applied { instance, outcome, ticket, others })
    }

    pub fn instance(&self, id: InstanceId) -> Result<Option<Instance>, EngineError> {
        let k = keys::instance(id);
        let Some(mut inst) = self.store.get(&k)?.map(|v| decode::<Instance>(&k, &v)).transpose()? else {
            return Ok(None);
        };
        let sensitive = self.sensitive_fields(&inst);
        for (name, v) in inst.fields.iter_mut() {
            if sensitive.contains(name) {
                self.protect(id, v, false)?;
            }
        }
        Ok(Some(inst))
    }

    /// Every sub-process case `parent` started (ended ones too), oldest first, with its process
    /// and status.
    pub fn sub_cases(&self, parent: InstanceId) -> Result<Vec<SubCase>, EngineError> {
        let prefix = keys::sub_cases_of(parent);
        self.store
            .scan_prefix(&prefix)
            .map(|item| {
                let (k, v) = item?;
                let corrupt = || StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).into(),
                    problem: "bad sub-case entry".into(),
                };
                let id = keys::sub_case_child(&k).ok_or_else(corrupt)?;
                let text = std::str::from_utf8(&v).map_err(|_| corrupt())?;
                let (process, status) = text.split_once('\0').ok_or_else(corrupt)?;
                Ok(SubCase { id, process: process.to_string(), status: status.to_string() })
            })
            .collect()
    }

    pub fn instance_by_key(&self, business_key: &str) -> Result<Option<Instance>, EngineError> {
        match self.store.get_u64(&keys::business_key(business_key))? {
            Some(id) => self.instance(InstanceId(id)),
            None => Ok(None),
        }
    }

    /// The audit trail, in order.
    pub fn history(&self, id: InstanceId) -> Result<Vec<case::HistoryEntry>, EngineError> {
        let Some(inst) = self.instance(id)? else { return Ok(Vec::new()) };
        let prefix = keys::history_of(id);
        let mut history = Vec::with_capacity(inst.history_len.min(1024) as usize);
        for item in self.store.scan_prefix(&prefix) {
            let (k, v) = item?;
            history.extend(history_entries(&k, &v)?);
        }
        self.seal_history(&inst, history, false)
    }

    /// Open tasks of a user (by assignee) or of a role (by candidate role), soonest due first,
    /// up to `limit`.
    pub fn tasks(&self, user: Option<&str>, role: Option<&str>, limit: usize) -> Result<Vec<TaskView>, EngineError> {
        Ok(self.tasks_page(user, role, None, limit)?.tasks)
    }

    /// A page of an inbox, soonest due first (tasks without a deadline last), starting after
    /// `cursor`. One range scan of the task index: no instance is read.
    pub fn tasks_page(
        &self,
        user: Option<&str>,
        role: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<TaskPage, EngineError> {
        let inbox = match (user, role) {
            (Some(u), _) => Inbox::User(u),
            (None, Some(r)) => Inbox::Role(r),
            (None, None) => return Ok(TaskPage { tasks: Vec::new(), next_cursor: None }),
        };
        let from = match cursor {
            // The cursor is the hex of where the last task of the page sat in the inbox.
            Some(c) => {
                let place = (0..c.len())
                    .step_by(2)
                    .map(|i| c.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                    .collect::<Option<Vec<u8>>>()
                    .filter(|b| b.len() == keys::INBOX_PLACE_LEN)
                    .ok_or_else(|| EngineError::BadCursor(c.to_string()))?;
                inbox.after(&place)
            }
            None => inbox.prefix(),
        };
        let mut tasks = Vec::new();
        let mut last: Option<Bytes> = None;
        for item in self.store.range(&from, &inbox.end()).take(limit.saturating_add(1)) {
            let (k, v) = item?;
            if tasks.len() == limit {
                let place = keys::inbox_place(last.as_deref().unwrap_or(&k)).unwrap_or_default();
                let next = place.iter().map(|b| format!("{b:02x}")).collect();
                return Ok(TaskPage { tasks, next_cursor: Some(next) });
            }
            match assignee_entry(&k, &v) {
                // A role entry of an assigned task: the view is in the assignee's inbox. Gone
                // means the task changed between the two reads (a scan is not a snapshot).
                Some(uk) => match self.store.get(&uk)? {
                    Some(view) => tasks.push(decode::<TaskView>(&uk, &view)?),
                    None => continue,
                },
                None => tasks.push(decode::<TaskView>(&k, &v)?),
            }
            last = Some(k);
        }
        Ok(TaskPage { tasks, next_cursor: None })
    }

    /// Ids of a process's instances in a status.
    pub fn instances(&self, process: &str, status: &str, limit: usize) -> Result<Vec<InstanceId>, EngineError> {
        self.instances_after(process, status, None, limit)
    }

    /// Ids of a process's instances in a status after `after` (exclusive), in id order.
    pub fn instances_after(
        &self,
        process: &str,
        status: &str,
        after: Option<InstanceId>,
        limit: usize,
    ) -> Result<Vec<InstanceId>, EngineError> {
        let prefix = keys::status_prefix(process, status);
        let from = match after {
            Some(a) => keys::status(process, status, InstanceId(a.0 + 1)),
            None => prefix.clone(),
        };
        let end = keys::prefix_end(&prefix).unwrap_or_default();
        self.store
            .range(&from, &end)
            .take(limit)
            .map(|r| {
                let (k, _) = r?;
                keys::status_case(&k).ok_or_else(|| corrupt(&String::from_utf8_lossy(&k), "bad status entry"))
            })
            .collect()
    }

    /// How many instances of a process are in a status (an index scan, no instance read).
    pub fn count_instances(&self, process: &str, status: &str) -> Result<usize, EngineError> {
        Ok(self.store.scan_prefix(&keys::status_prefix(process, status)).count())
    }

    pub fn count_pending_timers(&self) -> Result<usize, EngineError> {
        Ok(self.store.scan_prefix(Prefix::Timer.bytes()).count())
    }

    /// The KPI report of a process over cases started in `[from, to)` (see `report`).
    pub fn report(
        &self,
        process: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<caseflow_core::report::Report, EngineError> {
        let def = self.definition(process, None).ok_or_else(|| EngineError::UnknownProcess(process.to_string()))?;
        let choice_fields: Vec<String> = def
            .model
            .fields
            .iter()
            .filter(|f| matches!(f.ty, caseflow_dsl::model::FieldType::Choice(_)))
            .map(|f| f.name.clone())
            .collect();
        let mut cases = Vec::new();
        for status in StatusKind::ALL {
            for id in self.instances(process, status.as_str(), usize::MAX)? {
                let Some(inst) = self.instance(id)? else { continue };
                if from.is_some_and(|f| inst.started_at < f) || to.is_some_and(|t| inst.started_at >= t) {
                    continue;
                }
                let history = self.history(id)?;
                cases.push((inst, history));
            }
        }
        Ok(caseflow_core::report::build(process, from, to, &choice_fields, &cases))
    }

    // ------------------------------------------------------------ timers

    /// The earliest pending timer's due time.
    pub fn next_due(&self) -> Result<Option<DateTime<Utc>>, EngineError> {
        self.timer_cursor.scan(|from| {
            let end = keys::prefix_end(Prefix::Timer.bytes()).unwrap_or_default();
            match self.store.range(from, &end).next() {
                Some(r) => {
                    let (k, _) = r?;
                    Ok((keys::timer_of(&k).map(|(due, _, _)| due), Some(k.to_vec())))
                }
                None => Ok((None, None)),
            }
        })
    }

    /// Fires every timer due at `now` (up to `limit`), each as its own command, and waits once
    /// for all of them to be durable (group commit). Returns how many fired. Timers of
    /// suspended cases wait for `resume`.
    pub fn fire_due(&self, now: DateTime<Utc>, limit: usize) -> Result<usize, EngineError> {
        // Keys at or before `now`'s millisecond: due by then (they are rounded up).
        let end = keys::timers_due_by(now);
        let due: Vec<(InstanceId, u32)> = self.timer_cursor.scan(|from| {
            let entries: Vec<Bytes> =
                self.store.range(from, &end).take(limit).map(|r| r.map(|(k, _)| k)).collect::<Result<_, _>>()?;
            // The first entry found stays the start until it is gone; none found: every entry
            // before `end` was looked at.
            let next = entries.first().map_or_else(|| end.clone(), |k| k.to_vec());
            let due = entries.iter().filter_map(|k| keys::timer_of(k).map(|(_, id, seq)| (id, seq))).collect();
            Ok((due, Some(next)))
        })?;
        // Cases are independent: fire them on every core (a case's timers stay on one thread,
        // in due order), then wait once for the lot.
        let lanes = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
        let fire_lane = |lane: usize| {
            let mut applied = Vec::new();
            for &(id, timer) in due.iter().filter(|(id, _)| id.0 as usize % lanes == lane) {
                match self.apply_and_write(id, Actor::system(), Command::FireTimer { timer }, now) {
                    Ok(a) => applied.push(a),
                    // A stale index entry, a suspended case, or a timer due later within this
                    // millisecond: nothing to do now.
                    Err(EngineError::Command(
                        CommandError::TimerNotPending(_)
                        | CommandError::WrongStatus(_)
                        | CommandError::TimerNotDue { .. },
                    )) => {}
                    Err(e) => return (applied, Some(e)),
                }
            }
            (applied, None)
        };
        let results: Vec<(Vec<Applied>, Option<EngineError>)> = if due.len() < 2 * lanes {
            (0..lanes).map(fire_lane).collect()
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..lanes).map(|lane| s.spawn(move || fire_lane(lane))).collect();
                handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
            })
        };
        let mut applied = Vec::with_capacity(due.len());
        let mut failure = None;
        for (a, e) in results {
            applied.extend(a);
            failure = failure.or(e);
        }
        // What was written is acknowledged and published even if a later timer failed.
        if let Some(last) = applied.iter().map(|a| a.ticket).max() {
            self.store.wait_durable(last)?;
        }
        for a in &applied {
            self.publish(&a.instance, &a.outcome);
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(applied.len()),
        }
    }
}

fn event_of(inst: &Instance, h: &case::HistoryEntry) -> EngineEvent {
    EngineEvent {
        instance: inst.id,
        business_key: inst.business_key.clone(),
        process: inst.process.clone(),
        seq: h.seq,
        at: h.at,
        event: h.event,
        step: h.step.clone(),
        detail: h.detail.clone(),
        status: inst.status.name().to_string(),
    }
}

/// The history entries `familiar by` reads: for each task step whose assignment names a field,
/// who completed it in this case, when that changed in this write.
fn familiar_entries(model: &Process, before: Option<&Instance>, after: &Instance) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for s in &model.steps {
        let caseflow_dsl::model::StepKind::Task(def) = &s.kind else { continue };
        let Some(caseflow_dsl::model::Assignee::Role { familiar: Some(field), .. }) = &def.assign else { continue };
        let Some(user) = after.done_by.get(&s.id) else { continue };
        if before.and_then(|b| b.done_by.get(&s.id)) == Some(user) {
            continue;
        }
        if let Some(Value::Text(v)) = after.fields.get(field) {
            out.push((keys::familiar(&after.process, field, v, &s.name), user.as_bytes().to_vec()));
        }
    }
    out
}

fn corrupt(key: &str, problem: &str) -> EngineError {
    EngineError::Store(StoreError::Corrupt { key: key.into(), problem: problem.into() })
}

/// Compiles a stored definition again on start. It passed every check when it was deployed
/// (rules, called processes); here only the language matters, so neither is consulted: a
/// stored version never becomes unloadable because a rule or another process changed since.
fn compile_one(_name: &str, source: &str) -> Result<Process, EngineError> {
    let checked = caseflow_dsl::compile(source, &caseflow_dsl::CheckContext::default());
    checked.process.ok_or(EngineError::Rejected(checked.diagnostics))
}
