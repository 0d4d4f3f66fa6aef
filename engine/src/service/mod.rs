//! The engine as a service: deployed definitions, instances in the store, commands applied
//! through the core and written atomically, timers fired when due. One file per concern
//! (ARCHITECTURE.md lists them): `writes`, `definitions`, `numbering`, `workload`, `queries`,
//! `timers`, `rules`, `events`, `sealing`, `migrations`.
//!
//! Concurrency: commands on one family (a case and its sub-process cases) are serialised by a
//! striped lock; commands on different families run in parallel and share flushes (group
//! commit). `start` and `command` return only once their batch is durable; `start_pending` and
//! `command_pending` return at once and `confirm` (or `when_durable`) waits for durability, so
//! that a caller can keep several writes in flight.

pub mod accounts;
mod definitions;
mod documents;
mod events;
mod migrations;
mod numbering;
mod queries;
mod reindex;
mod rules;
mod sealing;
mod timers;
mod workload;
mod writes;

pub use definitions::*;
pub use events::*;
pub use migrations::{CaseMigration, MigrationOrder, MigrationReport, MIGRATION_LISTED_MAX};
pub use queries::{CaseSearch, InboxCounts, SearchPage, SEARCH_EXAMINED_MAX};
pub use reindex::{ReindexPending, NODES_TAKE_IN};
pub use rules::{AssigneeLost, RulesImpact, ShiftMinutes};
pub use timers::{DueClaim, CLAIM_CHUNK};

use crate::storage::any::AnyStorage;
use crate::storage::codec::decode;
use crate::storage::keys::{self, Prefix};
use crate::storage::{Batch, Bytes, Storage, StoreError};
use crate::sync::Unpoisoned;
use caseflow_core::case::{CommandError, Instance, InstanceId, Outcome};
use caseflow_core::rules::RuleSet;
use caseflow_dsl::model::Process;
use caseflow_dsl::Diagnostic;
use chrono::{DateTime, Utc};
use numbering::BusinessKey;
use numbering::Numbering;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use timers::TimerCursor;
use workload::WorkloadState;

pub(crate) const STRIPES: usize = 256;
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
    /// A search the indexes cannot answer (`Engine::search`).
    #[error("{0}")]
    BadSearch(String),
    #[error("process `{process}` has no version {version} (deployed: {deployed})")]
    UnknownVersion { process: String, version: u32, deployed: String },
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
    /// A migration that cannot be run as asked (not a case that cannot move).
    #[error("{0}")]
    BadMigration(String),
    /// A case that cannot be written as a scenario that replays (`scenario::record`).
    #[error("{0}")]
    NotRecordable(String),
}

/// A page of an inbox, soonest due first.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPage {
    pub tasks: Vec<TaskView>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

pub use crate::storage::index::TaskView;

/// One accepted change of the rules: who, when, what changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = RulesChangeRecord))]
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

/// What a write does to the indexes: the open-task counts it changes per user, and the
/// earliest timer entry it adds (for `TimerCursor::added`).
pub(crate) type IndexChange = (BTreeMap<String, i64>, Option<Vec<u8>>);

/// What the check of a source to deploy said: its model and warnings, or its diagnostics.
pub(crate) type Verdict = Result<(Process, Vec<String>), Vec<Diagnostic>>;

/// A command applied and written, not yet known durable.
pub(crate) struct Applied {
    pub(crate) instance: Instance,
    pub(crate) outcome: Outcome,
    pub(crate) ticket: u64,
    /// Other cases of the family the same write changed (sub-processes), to publish.
    pub(crate) others: Vec<(Instance, Outcome)>,
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
pub(crate) struct Unit {
    pub(crate) cases: BTreeMap<InstanceId, Staged>,
    /// In the order first touched: the order their events are published in.
    pub(crate) order: Vec<InstanceId>,
    /// Cases this unit starts, with their business keys (numbered at commit).
    pub(crate) started: Vec<(InstanceId, BusinessKey)>,
    /// A claimed key (a due timer's entry) and the claim's token: the unit is written only
    /// while the claim holds (`Batch::expect_claimed`).
    pub(crate) fence: Option<(Vec<u8>, u64)>,
    /// The tasks its core runs gave, counted as in flight until it is written or dropped.
    pub(crate) reserved: Vec<workload::Reservation>,
}

pub(crate) struct Staged {
    pub(crate) before: Option<Instance>,
    /// The case's bytes as read from the store: its write is conditional on them.
    pub(crate) stored: Option<Bytes>,
    pub(crate) after: Instance,
    pub(crate) outcome: Outcome,
}

impl Unit {
    /// A case into the unit: `before` is the case as stored (its bytes too), `None` for one
    /// this unit starts.
    pub(crate) fn add(&mut self, before: Option<Stored>, after: Instance, outcome: Outcome) {
        self.order.push(after.id);
        let (before, stored) = before.map_or((None, None), |s| (Some(s.instance), Some(s.bytes)));
        self.cases.insert(after.id, Staged { before, stored, after, outcome });
    }

    /// The first case, and every other one with what it did.
    pub(crate) fn split_first(mut self) -> (Instance, Outcome, Vec<(Instance, Outcome)>) {
        let mut staged = self.order.iter().filter_map(|id| self.cases.remove(id));
        let first = staged.next().expect("a unit has its own case");
        let others = staged.map(|s| (s.after, s.outcome)).collect();
        (first.after, first.outcome, others)
    }
}

/// A case as read from the store, with the bytes it was read from.
#[derive(Clone)]
pub(crate) struct Stored {
    pub(crate) instance: Instance,
    pub(crate) bytes: Bytes,
}

/// How many times a command is run again when another writer changed its case first (each
/// run reads the case afresh); past that, the caller is told of the conflict.
pub(crate) const CONFLICT_RUNS_MAX: usize = 64;

impl Pending {
    /// The case as this call left it (not yet durable).
    pub fn instance(&self) -> &Instance {
        &self.instance
    }
}

pub(crate) type Observer = Box<dyn Fn(&EngineEvent) + Send + Sync>;

pub struct Engine<S: Storage = AnyStorage> {
    store: S,
    /// Where the timer driver's scans start.
    timer_cursor: TimerCursor,
    /// Who hears of durable changes: observers and the outbox.
    events: Events,
    /// Encrypts sensitive fields at rest; `None` stores them in the clear (tests only).
    cipher: Option<crate::crypto::FieldCipher>,
    rules: RwLock<Arc<RuleSet>>,
    rules_version: AtomicU64,
    definitions: RwLock<BTreeMap<String, BTreeMap<u32, Arc<Deployed>>>>,
    stripes: Vec<Mutex<()>>,
    /// Ids, business-key sequences and idempotency keys being given out.
    numbering: Numbering,
    /// What assignment reads besides the store: open tasks per user, round-robin positions.
    workload: WorkloadState,
    commands: AtomicU64,
    /// On a shared store, how long this engine's claims on due timers and on the outbox last
    /// without a heartbeat (milliseconds): after that another node takes them over.
    claim_lease_ms: AtomicU64,
}

/// How long claims last by default (`Engine::set_claim_lease`): a node that stops renewing
/// (killed, paused, cut off) holds its due timers back this long at most.
pub const CLAIM_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

impl<S: Storage> Engine<S> {
    /// Opens the engine on a store: loads every deployed definition (not the instances: they
    /// stay on disk until a command or query needs them).
    pub fn open(store: S, rules: RuleSet) -> Result<Engine<S>, EngineError> {
        let engine = Engine {
            store,
            events: Events::default(),
            cipher: None,
            rules: RwLock::new(Arc::new(rules)),
            rules_version: AtomicU64::new(0),
            definitions: RwLock::new(BTreeMap::new()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            numbering: Numbering::default(),
            workload: WorkloadState::default(),
            commands: AtomicU64::new(0),
            timer_cursor: TimerCursor::default(),
            claim_lease_ms: AtomicU64::new(CLAIM_LEASE.as_millis() as u64),
        };
        engine.load_definitions()?;
        engine.check_format()?;
        engine.make_open_counts()?;
        if let Some(v) = engine.store.get_u64(keys::RULES_VERSION)? {
            engine.rules_version.store(v, Ordering::SeqCst);
        }
        let mut rotation = BTreeMap::new();
        for item in engine.store.scan_prefix(keys::ROUND_ROBIN) {
            let (k, v) = item?;
            let role = keys::round_robin_role(&k).ok_or_else(|| corrupt(&String::from_utf8_lossy(&k), "bad role"))?;
            rotation.insert(role, keys::u64_value(&v).unwrap_or(0));
        }
        *engine.workload.round_robin.lock().unpoisoned() = rotation;
        Ok(engine)
    }

    /// Loads the stored definitions this engine does not hold yet (all of them on open; those
    /// another node deployed, on a shared store). True when there were any.
    pub(crate) fn load_definitions(&self) -> Result<bool, EngineError> {
        let mut found = Vec::new();
        for item in self.store.scan_prefix(Prefix::Definition.bytes()) {
            let (k, v) = item?;
            let (name, version) = keys::definition_of(&k).ok_or_else(|| StoreError::Corrupt {
                key: String::from_utf8_lossy(&k).into(),
                problem: "bad definition key".into(),
            })?;
            if self.definitions.read().unpoisoned().get(&name).is_some_and(|v| v.contains_key(&version)) {
                continue;
            }
            let stored: StoredDefinition = decode(&k, &v)?;
            // Stored versions compiled once; they compile again (the language only grows).
            let model = compile_one(&stored.source)?;
            let d = Deployed {
                process: name.clone(),
                version,
                source: stored.source,
                model,
                deployed_at: stored.deployed_at,
            };
            found.push(d);
        }
        let loaded = !found.is_empty();
        let mut defs = self.definitions.write().unpoisoned();
        for d in found {
            defs.entry(d.process.clone()).or_default().insert(d.version, Arc::new(d));
        }
        Ok(loaded)
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
                // Two nodes first started at once with different keys: one key is recorded.
                let mut batch = Batch::default();
                batch.expect(keys::FIELD_KEY_ID.to_vec(), None);
                batch.insert(keys::FIELD_KEY_ID.to_vec(), given.clone().into_bytes());
                match self.store.write_now(batch) {
                    Err(StoreError::Conflict(_)) => return self.with_field_key_recorded(key, given),
                    other => other?,
                }
            }
        }
        Ok(self)
    }

    /// `with_field_key` once another process recorded its key first.
    fn with_field_key_recorded(self, key: &[u8], given: String) -> Result<Self, EngineError> {
        match self.store.get(keys::FIELD_KEY_ID)? {
            Some(recorded) if recorded.as_ref() == given.as_bytes() => Ok(self),
            _ => self.with_field_key(key),
        }
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

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn commands_applied(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }
}

pub(crate) fn corrupt(key: &str, problem: &str) -> EngineError {
    EngineError::Store(StoreError::Corrupt { key: key.into(), problem: problem.into() })
}
