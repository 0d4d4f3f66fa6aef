//! The storage shell: sled behind a small interface, one atomic batch per command, group
//! commit for durability.
//!
//! Key layout of the tree `caseflow` (a `Batch` spans any of its keys; see `Store::write`):
//!
//! | prefix | key | value |
//! | --- | --- | --- |
//! | `m/` | `m/next_instance`, `m/format`, `m/rules_version` | u64 BE: the next instance id, the key layout (`FORMAT`), the rules version in force |
//! | `m/` | `m/rules_files` | the rules files in force (JSON), for a restart whose folder is refused |
//! | `m/` | `m/field_key_id` | the id of the key sensitive fields are sealed with |
//! | `m/rr/` | `m/rr/<role>` | u64 BE: the role's round-robin position, so a restart carries on the rotation |
//! | `c/` | `c/{rules version u64 BE}` | one accepted rules change (JSON: who, when, diff) |
//! | `d/` | `d/{process}\0{version u32 BE}` | definition (JSON: source, hash, deployed_at) |
//! | `i/` | `i/{id u64 BE}` | instance (JSON) |
//! | `h/` | `h/{id u64 BE}{first seq u64 BE}` | the history entries of one command (JSON array) |
//! | `t/` | `t/{due ms i64 BE+offset}{id u64 BE}{timer u32 BE}` | empty: pending timers by due time |
//! | `u/` | `u/{user}\0{due}{id u64 BE}{task u32 BE}` | task view (JSON): open tasks by assignee, soonest due first |
//! | `r/` | `r/{role}\0{due}{id u64 BE}{task u32 BE}` | task view (JSON), or `0x05` and the assignee when assigned (the view is in `u/`): open tasks by candidate role, soonest due first |
//! | `s/` | `s/{process}\0{status}\0{id u64 BE}` | empty: instances by process and status |
//! | `p/` | `p/{parent id u64 BE}{child id u64 BE}` | `{process}\0{status}` of the child: every sub-process case a case started |
//! | `k/` | `k/{business key}` | instance id |
//! | `q/` | `q/{key prefix}` | last sequence number used for that prefix (u64 BE) |
//! | `x/` | `x/{caller}\0{idempotency key}` | instance id and the request's SHA-256 |
//! | `y/` | `y/{process}\0{tally}\0{key}…\0{id u64 BE}` | empty: cases counted by a `tally` |
//! | `f/` | `f/{process}\0{field}\0{value}\0{step}` | who last completed the step for that value (`familiar`) |
//! | `o/` | `o/{seq u64 BE}` | outbox event (JSON), when webhooks are configured |
//!
//! Every batch goes first to the write-ahead log (`wal.rs`, the folder `wal/` beside sled's
//! files; see `Store::write`). A second tree, `redo`, held the batches being applied before
//! that log existed: a store written by an older version replays it once on open.
//!
//! `{due}` is the task's deadline as 8 bytes (`due_bytes`), all ones when it has none, so an
//! inbox page is one range scan in deadline order that reads no instance.
//! `m/format` holds the layout version (`FORMAT`); an older store has its indexes rebuilt on open.
//!
//! Every question the API asks is a prefix or range scan over one of these.

use crate::faults::{FaultPoint, Faults};
use crate::memtable::{ApplyHelpers, Memtable, Pressure};
use crate::wal::{Wal, WalError};
use caseflow_core::case::{HistoryEntry, Instance, InstanceId};
use chrono::{DateTime, Utc};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("a write of {0} bytes is more than the store takes at once ({REDO_RECORD_MAX})")]
    TooLarge(usize),
    #[error("stored data is corrupt at `{key}`: {problem}")]
    Corrupt { key: String, problem: String },
    #[error(transparent)]
    Wal(#[from] WalError),
    /// Refused before anything was written: storage is failing (a full disk, an I/O error).
    #[error("storage is failing ({0}); the write was not applied")]
    Unavailable(String),
}

/// Attempts (20 ms apart) to take over the file lock of a store that is still closing.
const LOCK_RETRIES: u32 = 250;

/// How far an acknowledged write has gone when the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// The write-ahead log's group is written to the operating system (`write`). Survives a
    /// process crash (`kill -9`); not guaranteed to survive power loss.
    Flush,
    /// The group is written and `fdatasync`ed: survives power loss on hardware that honours
    /// it. The default.
    Fsync,
    /// Nothing waited for: a crash loses the last writes (never part of one). For tests and
    /// bulk loads only.
    None,
}

/// Options passed explicitly to sled, never its defaults.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// sled's page cache by its own accounting (serialized sizes); nodes in memory take about
    /// twice that. 32 MiB: with a million waiting cases the process stays under 300 MiB (the
    /// `scale` bench: 291 MiB after loading, against 331 MiB with 64 MiB), and writes go to the
    /// few hot tail pages either way.
    pub cache_bytes: u64,
    /// sled's background flush; acknowledgements do not rely on it.
    pub background_flush_ms: Option<u64>,
    pub durability: Durability,
    /// Snapshot sled's page table after this many bytes written, so that a restart replays at
    /// most about that much of sled's log (see `Store::checkpoint`); `None`: never.
    pub checkpoint_bytes: Option<u64>,
    /// Writes are refused (not applied) while the data directory's disk has less free space
    /// than this, so that sled, whose first failed write stops it until it is reopened, never
    /// meets a full disk; they are taken again once space is freed. 0: no reserve.
    pub space_reserve_bytes: u64,
    /// Faults a test arms at the file operations (none in production).
    pub faults: Arc<Faults>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: 32 * 1024 * 1024,
            background_flush_ms: Some(500),
            durability: Durability::Fsync,
            checkpoint_bytes: Some(DEFAULT_CHECKPOINT_BYTES),
            space_reserve_bytes: DEFAULT_SPACE_RESERVE_BYTES,
            faults: Arc::default(),
        }
    }
}

/// Two log segments (a new one and its spare) and room for sled's buffers beyond them.
pub const DEFAULT_SPACE_RESERVE_BYTES: u64 = 32 << 20;

/// Watches the free space of the data directory's disk (`StoreOptions::space_reserve_bytes`).
/// statvfs is asked at most every `SPACE_CHECK_MS`, or sooner after an eighth of the reserve
/// was written.
struct SpaceGuard {
    dir: Option<std::path::PathBuf>,
    reserve: u64,
    epoch: std::time::Instant,
    checked_at_ms: std::sync::atomic::AtomicU64,
    written_since: std::sync::atomic::AtomicU64,
    /// Why writes are refused, while they are.
    low: std::sync::Mutex<Option<String>>,
}

const SPACE_CHECK_MS: u64 = 100;

impl SpaceGuard {
    fn new(dir: Option<std::path::PathBuf>, reserve: u64) -> SpaceGuard {
        SpaceGuard {
            dir: dir.filter(|_| reserve > 0),
            reserve,
            epoch: std::time::Instant::now(),
            checked_at_ms: Default::default(),
            written_since: Default::default(),
            low: Default::default(),
        }
    }

    /// Fails while the disk is below the reserve; `bytes` are about to be written. `force`
    /// asks the disk now.
    fn check(&self, bytes: u64, force: bool) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(dir) = &self.dir else { return Ok(()) };
        let now = self.epoch.elapsed().as_millis() as u64 + SPACE_CHECK_MS;
        let written = self.written_since.fetch_add(bytes, Relaxed) + bytes;
        let due = force || now - self.checked_at_ms.load(Relaxed) >= SPACE_CHECK_MS || written >= self.reserve / 8;
        let mut low = self.low.lock().unwrap_or_else(|p| p.into_inner());
        if due {
            self.checked_at_ms.store(now, Relaxed);
            self.written_since.store(0, Relaxed);
            // A disk that cannot be asked is not refused for it: the writes will tell.
            *low = match fs2::available_space(dir) {
                Ok(free) if free < self.reserve => Some(format!(
                    "the disk holding the data has {} MiB free, under the {} MiB kept in reserve; free some space",
                    free >> 20,
                    self.reserve >> 20
                )),
                _ => None,
            };
        }
        match &*low {
            Some(why) => Err(StoreError::Unavailable(why.clone())),
            None => Ok(()),
        }
    }

    fn low(&self) -> Option<String> {
        self.low.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Keys and values written through the store between checkpoints. sled writes a few times as
/// much to its log (node rewrites), and an open replays it at roughly 1.5 GB/s from the page
/// cache: a restart replays at most ~1 s of it. A checkpoint runs beside the writers (it
/// stops nothing); it walks the page table and writes a snapshot of it, ~25 bytes per page.
pub const DEFAULT_CHECKPOINT_BYTES: u64 = 256 << 20;

/// The writes of one command, applied as a unit by `Store::write`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Batch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Inserts under `{prefix}{sequence u64 BE}{index u32 BE}`, the sequence being the one
    /// `Store::write` gives the batch: keys that grow in write order, across restarts.
    sequenced: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Batch {
    /// Inserts `value` under a key made of `prefix` and the batch's place in write order.
    pub fn insert_sequenced(&mut self, prefix: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.sequenced.push((prefix.into(), value.into()));
    }

    /// Turns the sequenced inserts into plain ones, with the batch's sequence number.
    fn number(&mut self, seq: u64) {
        for (i, (prefix, value)) in std::mem::take(&mut self.sequenced).into_iter().enumerate() {
            let mut key = prefix;
            key.extend_from_slice(&seq.to_be_bytes());
            key.extend_from_slice(&(i as u32).to_be_bytes());
            self.ops.push((key, Some(value)));
        }
    }

    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), Some(value.into())));
    }

    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.sequenced.is_empty()
    }

    /// A record of the older `redo` tree: the operations, LZ4-compressed.
    #[cfg(test)]
    fn encode_redo(&self) -> Vec<u8> {
        lz4_flex::compress_prepend_size(&self.encode_raw())
    }

    fn decode_redo(bytes: &[u8]) -> Option<Batch> {
        Batch::decode_raw(&decompress(bytes)?)
    }

    /// `[kind u8][key len u32][key]([value len u32][value])` per operation.
    #[cfg(test)]
    fn encode_raw(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    fn encoded_len(&self) -> usize {
        self.ops.iter().map(|(k, v)| 9 + k.len() + v.as_ref().map_or(0, Vec::len)).sum()
    }

    /// Appends the encoding `decode_raw` reads: `[kind u8][key len u32][key]([value len
    /// u32][value])` per operation.
    fn encode_into(&self, out: &mut Vec<u8>) {
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

    fn decode_raw(mut bytes: &[u8]) -> Option<Batch> {
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

    fn apply_to(&self, tree: &sled::Tree) -> Result<(), StoreError> {
        for (k, v) in &self.ops {
            match v {
                Some(v) => tree.insert(k.as_slice(), v.as_slice())?,
                None => tree.remove(k.as_slice())?,
            };
        }
        Ok(())
    }
}

/// No batch comes near this (the largest are index rebuilds, written in chunks).
const REDO_RECORD_MAX: usize = 256 << 20;

/// What an `fsync` store syncs after sled's flush: its log file, and its folder of large pages.
struct SyncedFiles {
    db: std::fs::File,
    blobs: std::path::PathBuf,
}

/// `fsync`s every file in `dir` and `dir` itself; a missing folder or a file removed meanwhile
/// (sled deletes blobs it no longer needs) is not an error.
fn sync_folder(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        match std::fs::File::open(entry?.path()).and_then(|f| f.sync_all()) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    std::fs::File::open(dir)?.sync_all()
}

/// The open sled database: the tree `caseflow` and the older tree `redo`.
#[derive(Clone)]
struct Handles {
    db: sled::Db,
    tree: sled::Tree,
    redo: sled::Tree,
}

impl Handles {
    fn open(db: sled::Db) -> Result<Handles, StoreError> {
        Ok(Handles { tree: db.open_tree("caseflow")?, redo: db.open_tree("redo")?, db })
    }
}

/// The sled database and the group-commit state.
pub struct Store {
    handles: Handles,
    /// Where the database lives; `None` for a temporary store.
    path: Option<std::path::PathBuf>,
    /// The write-ahead log; `None` for a temporary store.
    wal: Option<Arc<Wal>>,
    /// Log records (and older redo records) replayed when the store opened.
    replayed: usize,
    durability: Durability,
    /// Sequence numbers of a store without a log (temporary).
    unlogged_seq: std::sync::atomic::AtomicU64,
    /// The memtable and the upkeep around it, shared with the applier thread.
    upkeep: Arc<Upkeep>,
    /// Refuses writes while the disk is nearly full.
    space: SpaceGuard,
    /// The thread that applies the memtable to sled and truncates the log (`caseflow-apply`);
    /// joined on close.
    applier: Option<std::thread::JoinHandle<()>>,
    checkpoint: Arc<CheckpointState>,
    /// The background checkpoint, if one was started; joined before the store closes.
    checkpoint_thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What keeps the store in shape — applying the memtable to sled, flushing sled, truncating
/// the log — shared by the writers (who may wait for an apply as backpressure) and the
/// applier thread, which does the rest off the writers' path.
struct Upkeep {
    handles: Handles,
    wal: Option<Arc<Wal>>,
    /// The database file, for `fsync`.
    file: Option<SyncedFiles>,
    /// Batches logged but not yet in sled: every read looks here first.
    memtable: Arc<Memtable>,
    /// Threads that apply parts of a large memtable.
    helpers: Arc<ApplyHelpers>,
    /// Faults injected by tests at the file operations.
    faults: Arc<Faults>,
    /// Applies of the memtable to sled that failed (their keys stay in the memtable and the
    /// log; the next apply tries again).
    apply_failures: std::sync::atomic::AtomicU64,
    /// A `truncate_log` is running.
    truncating: std::sync::atomic::AtomicBool,
    /// A segment was closed: the applier thread truncates the log next.
    truncate_wanted: std::sync::atomic::AtomicBool,
    /// Why storage is failing, since the last maintenance (apply, truncation, checkpoint)
    /// after a write failed; cleared when one succeeds. Writes are refused meanwhile.
    degraded: std::sync::Mutex<Option<String>>,
}

impl Upkeep {
    /// Applies one frozen memtable to sled (see `memtable::apply`). The caller holds the
    /// apply lock.
    fn apply_memtable(&self, lock: &std::sync::MutexGuard<'_, ()>) -> Result<(), StoreError> {
        if let Err(e) = self.faults.check(FaultPoint::Apply) {
            self.apply_failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Err(e.into());
        }
        crate::memtable::apply(&self.memtable, &self.handles.tree, &self.helpers, self.wal.as_deref(), lock).map_err(
            |e| {
                self.apply_failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                StoreError::from(e)
            },
        )
    }

    /// Applies everything the memtable holds (a stale frozen table, then the active one).
    fn drain_memtable(&self) -> Result<(), StoreError> {
        let lock = self.memtable.apply_lock(true).expect("waits");
        self.apply_memtable(&lock)?;
        self.apply_memtable(&lock)
    }

    /// Applies the memtable, makes sled durable and deletes the log segments whose records it
    /// now holds.
    fn truncate_log(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        let Some(wal) = self.wal.as_deref() else { return Ok(()) };
        if self.truncating.swap(true, SeqCst) {
            return Ok(());
        }
        let result = self.drain_memtable().and_then(|()| {
            let below = wal.applied_below();
            self.flush_now()?;
            Ok(below)
        });
        let result = result.and_then(|below| {
            wal.drop_before(below)?;
            // Without a spare a rotation makes its own segment: not a failure of the store.
            let _ = wal.prepare_spare();
            Ok(())
        });
        self.truncating.store(false, SeqCst);
        result.map(drop)
    }

    fn degrade(&self, e: &StoreError) {
        *self.degraded.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }

    fn flush_now(&self) -> Result<(), StoreError> {
        self.faults.check(FaultPoint::Flush)?;
        Store::flush_handles(&self.handles, self.file.as_ref())
    }
}

/// An open of sled 0.34 replays every log segment written since the last snapshot of its page
/// table, and upstream writes one only while opening: left alone, a restart after months of
/// work would read the whole log. Once this many bytes have been written through the store, a
/// checkpoint writes a snapshot while the store goes on working (`sled::Db::write_snapshot`,
/// our patch #4), so a restart replays at most about that much.
#[derive(Default)]
struct CheckpointState {
    /// Bytes written since the last checkpoint started (records, keys and values).
    written: std::sync::atomic::AtomicU64,
    after_bytes: Option<u64>,
    running: std::sync::atomic::AtomicBool,
    count: std::sync::atomic::AtomicU64,
    failures: std::sync::atomic::AtomicU64,
    /// Microseconds the last checkpoint took (in the background), and the longest.
    last_micros: std::sync::atomic::AtomicU64,
    longest_micros: std::sync::atomic::AtomicU64,
}

/// What the checkpoints so far cost. They run beside the writers: `last` and `longest` are
/// how long they took, not pauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointStats {
    pub count: u64,
    /// Checkpoints that failed (the next one tries again; a restart replays more meanwhile).
    pub failures: u64,
    pub last: std::time::Duration,
    pub longest: std::time::Duration,
}

/// Entries a scan reads from sled at a time: the first chunk is small (most scans want a page
/// or one entry), later ones grow.
const SCAN_FIRST_CHUNK: usize = 16;
const SCAN_MAX_CHUNK: usize = 1024;

impl Store {
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let log_dir = path.join("wal");
        let recovered = Wal::read(&log_dir)?;
        // The log is created once sled is open; until then nothing is logged, so sled's writes
        // have nothing to wait for.
        let log_for_sled: Arc<std::sync::OnceLock<Arc<Wal>>> = Arc::default();
        let before_sled_writes = log_for_sled.clone();
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(options.cache_bytes)
            .mode(sled::Mode::LowSpace)
            .use_compression(false)
            .flush_every_ms(options.background_flush_ms)
            // No key reaches sled's file before the log record it came from (see `write`).
            // A log that is failing holds sled's writes back until it recovers (a full disk
            // freed): sled treats a failed write as fatal until it is reopened.
            .before_log_write(move || match before_sled_writes.get() {
                Some(wal) => wal.sync_all_waiting().map_err(std::io::Error::other),
                None => Ok(()),
            });
        let db = Self::open_db(&config)?;
        let next_seq = match recovered.new {
            // A new log (a new store, or one written before the log existed): its sequence
            // numbers start after every sequenced key already stored.
            true => Self::sequenced_floor(&db)?,
            false => recovered.next_seq,
        };
        let wal = Arc::new(Wal::create_with(
            &log_dir,
            next_seq,
            options.durability == Durability::Fsync,
            options.faults.clone(),
        )?);
        let _ = log_for_sled.set(wal.clone());
        let file = match options.durability {
            Durability::Fsync => Some(SyncedFiles {
                db: std::fs::OpenOptions::new().read(true).open(path.join("db"))?,
                blobs: path.join("blobs"),
            }),
            _ => None,
        };
        let mut store = Self::with_db(db, Some(path.to_path_buf()), Some(wal.clone()), file, options)?;
        // A new database is made durable before anything is logged: sled's own state (its
        // metadata, its trees) is not in the log.
        if !store.handles.db.was_recovered() {
            store.flush_now()?;
        }
        // Replay every record the log kept, in order: those whose keys sled already had write
        // the same values again, and for each key the last record that wrote it comes last.
        if !recovered.records.is_empty() {
            for (seq, payload) in &recovered.records {
                let batch = Batch::decode_raw(payload)
                    .ok_or_else(|| StoreError::Corrupt { key: format!("wal/{seq}"), problem: "not a batch".into() })?;
                batch.apply_to(&store.handles.tree)?;
            }
            store.flush_now()?;
            store.replayed += recovered.records.len();
        }
        wal.drop_before(recovered.next_seq)?;
        // The spare only saves a rotation some time: a disk too full for it is no reason not
        // to open (the space reserve refuses writes until there is room).
        let _ = wal.prepare_spare();
        Ok(store)
    }

    /// One more than the largest sequence number in a sequenced key (the outbox, `o/`; older
    /// versions numbered it with sled's id generator).
    fn sequenced_floor(db: &sled::Db) -> Result<u64, StoreError> {
        let last = db.open_tree("caseflow")?.scan_prefix(b"o/").next_back().transpose()?;
        Ok(last.and_then(|(k, _)| k.get(2..10)?.try_into().ok()).map_or(0, |n| u64::from_be_bytes(n) + 1))
    }

    fn open_db(config: &sled::Config) -> Result<sled::Db, StoreError> {
        // A store closed a moment ago (a restart in the same process) may still hold sled's
        // file lock while its IO threads wind down: wait for it, briefly.
        let mut attempts = 0;
        loop {
            match config.open() {
                Err(sled::Error::Io(e))
                    if attempts < LOCK_RETRIES && e.to_string().contains("could not acquire lock") =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return Ok(other?),
            }
        }
    }

    /// A throwaway store in memory-backed temporary files, for tests.
    pub fn temporary() -> Result<Store, StoreError> {
        let db = sled::Config::new().temporary(true).flush_every_ms(None).open()?;
        let options = StoreOptions { durability: Durability::None, checkpoint_bytes: None, ..StoreOptions::default() };
        Self::with_db(db, None, None, None, &options)
    }

    fn with_db(
        db: sled::Db,
        path: Option<std::path::PathBuf>,
        wal: Option<Arc<Wal>>,
        file: Option<SyncedFiles>,
        options: &StoreOptions,
    ) -> Result<Store, StoreError> {
        let (durability, checkpoint_bytes) = (options.durability, options.checkpoint_bytes);
        let handles = Handles::open(db)?;
        let replayed = Self::recover(&handles, file.as_ref())?;
        let upkeep = Arc::new(Upkeep {
            handles: handles.clone(),
            wal: wal.clone(),
            file,
            memtable: Arc::new(Memtable::default()),
            helpers: Arc::new(ApplyHelpers::start(&handles.tree)?),
            faults: options.faults.clone(),
            apply_failures: Default::default(),
            truncating: Default::default(),
            truncate_wanted: Default::default(),
            degraded: Default::default(),
        });
        let applier = {
            let upkeep = upkeep.clone();
            std::thread::Builder::new().name("caseflow-apply".into()).spawn(move || {
                while upkeep.memtable.next_request() {
                    // A failure is counted (`apply_failures`); a failed truncation marks the
                    // store failing, and the next write tries again.
                    if upkeep.truncate_wanted.swap(false, std::sync::atomic::Ordering::SeqCst) {
                        if let Err(e) = upkeep.truncate_log() {
                            upkeep.degrade(&e);
                        }
                    } else {
                        let lock = upkeep.memtable.apply_lock(true).expect("waits");
                        let _ = upkeep.apply_memtable(&lock);
                    }
                }
            })?
        };
        Ok(Store {
            handles,
            // A temporary store's files go when it closes: it is never reopened.
            checkpoint: Arc::new(CheckpointState {
                after_bytes: checkpoint_bytes.filter(|_| path.is_some()),
                ..CheckpointState::default()
            }),
            checkpoint_thread: Default::default(),
            space: SpaceGuard::new(path.clone(), options.space_reserve_bytes),
            path,
            wal,
            replayed,
            durability,
            unlogged_seq: Default::default(),
            upkeep,
            applier: Some(applier),
        })
    }

    /// Applies the records an older version left in the `redo` tree, in order, makes the
    /// result durable and drops them (that version logged each batch there before its keys).
    /// Returns how many were replayed.
    fn recover(h: &Handles, file: Option<&SyncedFiles>) -> Result<usize, StoreError> {
        let mut replayed = Vec::new();
        for item in h.redo.iter() {
            let (k, v) = item?;
            let corrupt = || StoreError::Corrupt {
                key: format!("redo/{}", String::from_utf8_lossy(&k)),
                problem: "not a redo record".into(),
            };
            if k.len() != 8 {
                return Err(corrupt());
            }
            Batch::decode_redo(&v).ok_or_else(corrupt)?.apply_to(&h.tree)?;
            replayed.push(k);
        }
        let count = replayed.len();
        if count > 0 {
            Self::flush_handles(h, file)?;
            for k in replayed {
                h.redo.remove(k)?;
            }
            Self::flush_handles(h, file)?;
        }
        Ok(count)
    }

    /// How many redo records a crash had left, replayed when this store opened.
    pub fn replayed_on_open(&self) -> usize {
        self.replayed
    }

    /// Applies a batch as a unit and returns its ticket for `wait_durable`.
    ///
    /// The batch is appended whole to the write-ahead log, then its keys go into the memtable,
    /// where every read sees them; the memtable is applied to sled in bulk (`apply_memtable`),
    /// one sled operation per key however often it was written. `wait_durable` waits for the
    /// log, not for sled: concurrent writers share one `write` + `fdatasync` of the log's small
    /// sequential file per group. sled's data reaches its file later, and never before the log
    /// records it came from: its `before_log_write` hook makes the log durable first. So after
    /// a crash every key in sled has its record in the log or is older than the log's start,
    /// and `open` replays the log in order. Every few megabytes of log, the memtable is
    /// applied, sled is flushed and older segments are deleted (`truncate_log`).
    ///
    /// Callers write batches that touch the same keys under one lock (an instance's stripe, the
    /// allocation lock), so log order is write order for every key. A write that fails with a
    /// storage error after its record was logged has an unknown outcome, as a failed commit has
    /// in any database: the next open may complete it. It was never acknowledged.
    pub fn write(&self, mut batch: Batch) -> Result<u64, StoreError> {
        let size = batch.encoded_len() + batch.sequenced.iter().map(|(k, v)| 21 + k.len() + v.len()).sum::<usize>();
        if size > REDO_RECORD_MAX {
            return Err(StoreError::TooLarge(size));
        }
        // While storage is failing, nothing new is taken in: first try the maintenance that
        // failed again (space may have been freed), and refuse the write if it still fails.
        // Refused here, a write is not applied: nothing of it was logged or made visible.
        if self.maintenance_failed().is_some() {
            self.retry_maintenance()?;
        }
        // What sled's log will hold: the keys and values (the record is about their size).
        let bytes = size as u64;
        self.space.check(bytes, false)?;
        let ticket = match &self.wal {
            Some(wal) => wal
                .append(|seq, out| {
                    batch.number(seq);
                    batch.encode_into(out);
                })
                .map_err(|e| StoreError::Unavailable(e.to_string()))?,
            None => {
                let seq = self.unlogged_seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                batch.number(seq);
                seq
            }
        };
        // Until its keys are in sled, the record stays in the log (`Wal::applied_all`).
        let pressure = self.upkeep.memtable.insert(ticket, batch.ops);
        // From here the write is applied (logged, visible): a failure of the maintenance below
        // is not this write's; it marks the store failing, and the next write retries it.
        if let Err(e) = self.relieve(pressure) {
            self.upkeep.degrade(&e);
        }
        // A closed segment: the applier thread truncates the log (it flushes sled, which
        // takes milliseconds no writer should wait for).
        if self.wal.as_deref().is_some_and(|w| w.take_rotated()) {
            self.upkeep.truncate_wanted.store(true, std::sync::atomic::Ordering::SeqCst);
            self.upkeep.memtable.request_apply();
        }
        if let Err(e) = self.maybe_checkpoint(bytes) {
            self.upkeep.degrade(&e);
        }
        Ok(ticket)
    }

    /// Why storage is failing, if it is: a log write that failed (tried again until it goes
    /// through), maintenance that failed after a write, or a disk below the space reserve.
    pub fn degraded(&self) -> Option<String> {
        self.maintenance_failed().or_else(|| self.space.low())
    }

    /// `degraded`, after trying what failed again (a disk may have been freed): for readiness
    /// checks, which must see a recovery even when no write comes to try.
    pub fn check_health(&self) -> Option<String> {
        if self.maintenance_failed().is_some() {
            let _ = self.retry_maintenance();
        }
        let _ = self.space.check(0, true);
        self.degraded()
    }

    fn maintenance_failed(&self) -> Option<String> {
        if let Some(e) = self.wal.as_ref().and_then(|w| w.failed()) {
            return Some(e);
        }
        self.upkeep.degraded.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs what failed again: the log's stuck group, the memtable applied to sled, the log
    /// truncated. A success clears the failure.
    fn retry_maintenance(&self) -> Result<(), StoreError> {
        if let Some(wal) = &self.wal {
            wal.recover().map_err(|e| StoreError::Unavailable(e.to_string()))?;
        }
        if self.upkeep.degraded.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
            return Ok(());
        }
        let result = self.upkeep.drain_memtable().and_then(|()| self.upkeep.truncate_log());
        match result {
            Ok(()) => {
                *self.upkeep.degraded.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(())
            }
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    /// Makes the next `n` applies of the memtable fail as on a full disk (tests only).
    #[doc(hidden)]
    pub fn inject_apply_failures(&self, n: u32) {
        self.upkeep.faults.arm(FaultPoint::Apply, n, crate::faults::NO_SPACE);
    }

    /// The store's fault points, for tests.
    #[doc(hidden)]
    pub fn faults(&self) -> &Faults {
        &self.upkeep.faults
    }

    /// Has the memtable applied when it has grown past its threshold: by the applier thread,
    /// or by this writer when it is so far over that writers must wait for sled. The batch
    /// just added is logged and visible either way; the error of a failed apply is returned
    /// only to a writer that waited for it.
    fn relieve(&self, pressure: Pressure) -> Result<(), StoreError> {
        match pressure {
            Pressure::None => Ok(()),
            Pressure::Apply => {
                self.upkeep.memtable.request_apply();
                Ok(())
            }
            Pressure::Wait => {
                let lock = self.upkeep.memtable.apply_lock(true).expect("waits");
                self.upkeep.apply_memtable(&lock)
            }
        }
    }

    /// Counts `bytes` written and starts a checkpoint in the background when they pass the
    /// threshold and none is running.
    fn maybe_checkpoint(&self, bytes: u64) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        let (Some(limit), Some(path)) = (self.checkpoint.after_bytes, &self.path) else { return Ok(()) };
        if self.checkpoint.written.fetch_add(bytes, SeqCst) + bytes < limit
            || self.checkpoint.running.swap(true, SeqCst)
        {
            return Ok(());
        }
        self.checkpoint.written.store(0, SeqCst);
        let (db, path, state, faults) =
            (self.handles.db.clone(), path.clone(), self.checkpoint.clone(), self.upkeep.faults.clone());
        let spawned = std::thread::Builder::new().name("caseflow-checkpoint".into()).spawn(move || {
            // A failure is counted and shown in the metrics; the next checkpoint tries again.
            let _ = Self::snapshot(&db, &path, &state, &faults);
            state.running.store(false, SeqCst);
        });
        let mut thread = self.checkpoint_thread.lock().unwrap_or_else(|p| p.into_inner());
        match spawned {
            Ok(handle) => {
                // The previous checkpoint has finished (only one runs at a time).
                if let Some(previous) = thread.replace(handle) {
                    let _ = previous.join();
                }
                Ok(())
            }
            Err(e) => {
                self.checkpoint.running.store(false, SeqCst);
                Err(e.into())
            }
        }
    }

    /// Writes a snapshot of sled's page table now, so that a later open replays only what was
    /// written before this call from the snapshot on. Writers go on meanwhile. Does nothing on
    /// a temporary store.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        let Some(path) = &self.path else { return Ok(()) };
        // A background checkpoint finishes first (one at a time).
        let background = self.checkpoint_thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = background {
            let _ = t.join();
        }
        // What was written so far reaches sled's file, so the snapshot's position covers it
        // (sled's flusher may lag behind on a busy machine).
        self.flush_now()?;
        while self.checkpoint.running.swap(true, SeqCst) {
            std::thread::yield_now();
        }
        let result = Self::snapshot(&self.handles.db, path, &self.checkpoint, &self.upkeep.faults);
        self.checkpoint.running.store(false, SeqCst);
        result
    }

    fn snapshot(db: &sled::Db, path: &Path, state: &CheckpointState, faults: &Faults) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        let t = std::time::Instant::now();
        // Whatever the durability setting, the snapshot never names data a power loss could
        // take: that would leave a store that does not open.
        let written = db.write_snapshot(|| {
            faults.check(FaultPoint::Checkpoint)?;
            std::fs::File::open(path.join("db"))?.sync_data()?;
            sync_folder(&path.join("blobs"))
        });
        if written.is_err() {
            state.failures.fetch_add(1, SeqCst);
        }
        written?;
        state.count.fetch_add(1, SeqCst);
        let micros = t.elapsed().as_micros() as u64;
        state.last_micros.store(micros, SeqCst);
        state.longest_micros.fetch_max(micros, SeqCst);
        Ok(())
    }

    /// Groups the write-ahead log wrote so far, and the records in them.
    pub fn log_stats(&self) -> crate::wal::WalStats {
        self.wal.as_ref().map(|w| w.stats()).unwrap_or_default()
    }

    /// Checkpoints run so far, and how long they held the store.
    pub fn checkpoints(&self) -> CheckpointStats {
        use std::sync::atomic::Ordering::SeqCst;
        CheckpointStats {
            count: self.checkpoint.count.load(SeqCst),
            failures: self.checkpoint.failures.load(SeqCst),
            last: std::time::Duration::from_micros(self.checkpoint.last_micros.load(SeqCst)),
            longest: std::time::Duration::from_micros(self.checkpoint.longest_micros.load(SeqCst)),
        }
    }

    /// Applies a batch and waits until it is durable.
    pub fn write_now(&self, batch: Batch) -> Result<(), StoreError> {
        let ticket = self.write(batch)?;
        self.wait_durable(ticket)
    }

    /// Blocks until the batch with `ticket` is durable. Concurrent callers share log writes:
    /// one writes (and syncs) everything appended so far while the others wait for it (group
    /// commit).
    pub fn wait_durable(&self, ticket: u64) -> Result<(), StoreError> {
        match &self.wal {
            Some(wal) if self.durability != Durability::None => Ok(wal.sync(ticket)?),
            _ => Ok(()),
        }
    }

    /// Calls `done` once the batch with `ticket` is durable (see `Wal::when_durable`).
    pub fn when_durable(&self, ticket: u64, done: impl FnOnce(Result<(), StoreError>) + Send + 'static) {
        match &self.wal {
            Some(wal) if self.durability != Durability::None => {
                wal.when_durable(ticket, Box::new(move |r| done(r.map_err(StoreError::from))))
            }
            _ => done(Ok(())),
        }
    }

    fn flush_now(&self) -> Result<(), StoreError> {
        self.upkeep.flush_now()
    }

    fn flush_handles(h: &Handles, file: Option<&SyncedFiles>) -> Result<(), StoreError> {
        // One flush covers every tree: they share sled's log. sled makes the write-ahead log
        // durable before it writes (`before_log_write`).
        h.db.flush()?;
        if let Some(f) = file {
            // fdatasync: the data and the metadata needed to read it back (the file's size),
            // without a journal commit for timestamps.
            f.db.sync_data()?;
            // sled writes a page larger than 128 KiB to a file of its own and never syncs it.
            sync_folder(&f.blobs)?;
        }
        Ok(())
    }

    /// Makes everything durable in sled and deletes the log segments it made unnecessary
    /// (shutdown; dropping the store does it too).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.upkeep.drain_memtable()?;
        match &self.wal {
            Some(wal) => {
                wal.rotate()?;
                let below = wal.applied_below();
                self.flush_now()?;
                wal.drop_before(below)?;
                Ok(())
            }
            None => self.flush_now(),
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        // The memtable first: a key leaves it only once sled holds its value.
        match self.upkeep.memtable.get(key) {
            Some(held) => Ok(held),
            None => Ok(self.handles.tree.get(key)?),
        }
    }

    /// Entries the memtable holds, and how many of its applies to sled failed.
    pub fn memtable_stats(&self) -> (usize, u64) {
        (self.upkeep.memtable.len(), self.upkeep.apply_failures.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// A counter or id stored as a big-endian u64 (`m/…`, `q/…`, `k/…`, `x/…`).
    pub fn get_u64(&self, key: &[u8]) -> Result<Option<u64>, StoreError> {
        self.get(key)?
            .map(|v| {
                v.as_ref().try_into().map(u64::from_be_bytes).map_err(|_| StoreError::Corrupt {
                    key: String::from_utf8_lossy(key).into_owned(),
                    problem: format!("expected 8 bytes, found {}", v.len()),
                })
            })
            .transpose()
    }

    /// The entries whose keys start with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Scan<'_> {
        Scan::new(self, prefix.to_vec(), prefix_end(prefix))
    }

    /// The entries with `from <= key < to`, in key order.
    pub fn range(&self, from: &[u8], to: &[u8]) -> Scan<'_> {
        Scan::new(self, from.to_vec(), Some(to.to_vec()))
    }

    /// Bytes the database and its log occupy on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        let log = match (&self.path, &self.wal) {
            (Some(path), Some(_)) => {
                std::fs::read_dir(path.join("wal"))?.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()
            }
            _ => 0,
        };
        Ok(self.handles.db.size_on_disk()? + log)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // The checkpoint holds a handle to sled: it must end before sled can close.
        if let Some(thread) = self.checkpoint_thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
        // A log still failing after one more try will not make anything durable now: nothing
        // waits for it any longer, and what it logged is replayed by the next open.
        if let Some(wal) = &self.wal {
            if wal.recover().is_err() {
                wal.close();
            }
        }
        // A clean close leaves nothing to replay. A failure here leaves the log in place, and
        // the next open replays it.
        let _ = self.flush();
        // The applier holds a handle to sled too.
        self.upkeep.memtable.stop();
        if let Some(thread) = self.applier.take() {
            let _ = thread.join();
        }
        // The helpers stop when the upkeep goes, with the store's fields.
    }
}

/// A scan that reads the memtable and sled in chunks, holding no sled iterator between them: a
/// caller may write while it scans (the scan goes on after the last key it returned). Like
/// sled's own iterators it is not a snapshot: writes made meanwhile may or may not be seen.
pub struct Scan<'a> {
    store: &'a Store,
    /// The next chunk starts at this key (inclusive).
    from: Vec<u8>,
    /// The end (exclusive); `None`: the end of the keyspace.
    to: Option<Vec<u8>>,
    chunk: usize,
    buffered: std::collections::VecDeque<(sled::IVec, sled::IVec)>,
    done: bool,
}

/// The smallest key above every key that starts with `prefix` (`None`: there is none).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl<'a> Scan<'a> {
    fn new(store: &'a Store, from: Vec<u8>, to: Option<Vec<u8>>) -> Scan<'a> {
        Scan { store, from, to, chunk: SCAN_FIRST_CHUNK, buffered: Default::default(), done: false }
    }

    /// Reads the next chunk: the memtable's writes in it over sled's entries. Either side may
    /// come back cut at `chunk` entries; the chunk then ends at the smaller cut, and the next
    /// starts after it.
    fn refill(&mut self) -> Result<(), StoreError> {
        while self.buffered.is_empty() && !self.done {
            let (from, to, chunk) = (&self.from, self.to.as_deref(), self.chunk);
            if to.is_some_and(|to| to <= from.as_slice()) {
                self.done = true;
                break;
            }
            // The memtable before sled: a key leaves it only once sled holds its value.
            let (held, held_cut) = self.store.upkeep.memtable.range(from, to, chunk);
            let upper = match (&held_cut, to) {
                (Some(cut), Some(to)) if cut.as_slice() >= to => Bound::Excluded(to),
                (Some(cut), _) => Bound::Included(cut.as_slice()),
                (None, Some(to)) => Bound::Excluded(to),
                (None, None) => Bound::Unbounded,
            };
            let stored = self
                .store
                .handles
                .tree
                .range::<&[u8], _>((Bound::Included(from.as_slice()), upper))
                .take(chunk)
                .collect::<Result<Vec<_>, _>>()?;
            let stored_cut = (stored.len() == chunk).then(|| stored.last().map(|(k, _)| k.to_vec())).flatten();
            let cut = match (held_cut, stored_cut) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let mut merged: std::collections::BTreeMap<Vec<u8>, Option<sled::IVec>> =
                stored.into_iter().map(|(k, v)| (k.to_vec(), Some(v))).collect();
            merged.extend(held);
            let within = |k: &Vec<u8>| cut.as_ref().is_none_or(|c| k <= c);
            self.buffered.extend(
                merged.into_iter().filter(|(k, _)| within(k)).filter_map(|(k, v)| Some((sled::IVec::from(k), v?))),
            );
            match cut {
                Some(mut after) => {
                    // The smallest key after the cut.
                    after.push(0);
                    self.from = after;
                }
                None => self.done = true,
            }
            self.chunk = (chunk * 4).min(SCAN_MAX_CHUNK);
        }
        Ok(())
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<(sled::IVec, sled::IVec), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffered.is_empty() && !self.done {
            if let Err(e) = self.refill() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.buffered.pop_front().map(Ok)
    }
}

// ------------------------------------------------------------ keys

pub(crate) fn key(prefix: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(32);
    k.extend_from_slice(prefix.as_bytes());
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

pub(crate) fn instance_key(id: InstanceId) -> Vec<u8> {
    key("i/", &[&id.0.to_be_bytes()])
}

pub(crate) fn history_key(id: InstanceId, seq: u64) -> Vec<u8> {
    key("h/", &[&id.0.to_be_bytes(), &seq.to_be_bytes()])
}

/// Due times sort as unsigned big-endian: shift the signed milliseconds by 2^63.
pub(crate) fn due_bytes(t: DateTime<Utc>) -> [u8; 8] {
    ((t.timestamp_millis() as u64) ^ (1 << 63)).to_be_bytes()
}

pub(crate) fn due_from_bytes(b: &[u8]) -> Option<DateTime<Utc>> {
    let raw = u64::from_be_bytes(b.get(..8)?.try_into().ok()?) ^ (1 << 63);
    DateTime::from_timestamp_millis(raw as i64)
}

/// A timer is indexed at its due time rounded *up* to the millisecond, so that every timer the
/// driver finds at or before `now`'s millisecond is really due: none is tried early.
pub(crate) fn timer_key(t: DateTime<Utc>, id: InstanceId, timer: u32) -> Vec<u8> {
    let ceil = DateTime::from_timestamp_millis((t.timestamp_micros() + 999).div_euclid(1000)).unwrap_or(t);
    key("t/", &[&due_bytes(ceil), &id.0.to_be_bytes(), &timer.to_be_bytes()])
}

/// The version of the key layout above; see `Engine::open` for the upgrade.
pub(crate) const FORMAT: u64 = 4;

/// Where a task sits in an inbox: by deadline, tasks without one last.
pub(crate) fn inbox_order(due: Option<DateTime<Utc>>) -> [u8; 8] {
    due.map_or([0xff; 8], due_bytes)
}

pub fn task_index_key(prefix: &str, who: &str, due: Option<DateTime<Utc>>, id: InstanceId, task: u32) -> Vec<u8> {
    key(prefix, &[who.as_bytes(), b"\0", &inbox_order(due), &id.0.to_be_bytes(), &task.to_be_bytes()])
}

/// A sub-process case under the case that started it.
pub(crate) fn sub_case_key(parent: InstanceId, child: InstanceId) -> Vec<u8> {
    key("p/", &[&parent.0.to_be_bytes(), &child.0.to_be_bytes()])
}

/// The prefix of a process's instances in one status; `status_key` appends the id.
pub(crate) fn status_prefix(process: &str, status: &str) -> Vec<u8> {
    key("s/", &[process.as_bytes(), b"\0", status.as_bytes(), b"\0"])
}

pub(crate) fn status_key(process: &str, status: &str, id: InstanceId) -> Vec<u8> {
    let mut k = status_prefix(process, status);
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

/// The index entries an instance implies, key to value. Writing a command removes the entries
/// that went and writes the ones that are new or changed, in the same batch.
pub(crate) fn index_entries(inst: &Instance) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let mut entries = std::collections::BTreeMap::new();
    entries.insert(status_key(&inst.process, inst.status.name(), inst.id), Vec::new());
    if let Some((parent, _)) = inst.parent {
        entries.insert(
            sub_case_key(parent, inst.id),
            [inst.process.as_bytes(), b"\0", inst.status.name().as_bytes()].concat(),
        );
    }
    // Only a running case's timers can fire: a suspended case's (or one in incident) would sit
    // at the front of the due scan and, once there are more than a scan's batch, starve every
    // other case's timers. Resuming puts them back (the diff of the index entries).
    if inst.status == caseflow_core::case::Status::Running {
        for t in inst.timers.values() {
            entries.insert(timer_key(t.due_at, inst.id, t.seq), Vec::new());
        }
    }
    for t in inst.tasks.values() {
        let view = encode(&crate::service::TaskView {
            instance: inst.id,
            business_key: inst.business_key.clone(),
            process: inst.process.clone(),
            task: t.clone(),
        });
        // An assigned task's view is stored once, under its assignee; the role entries point
        // there (`ASSIGNED_TO` and the user), which halves what the common case writes.
        let in_role = match &t.assignee {
            Some(a) => [&[ASSIGNED_TO][..], a.as_bytes()].concat(),
            None => view.clone(),
        };
        for role in &t.candidates {
            entries.insert(task_index_key("r/", role, t.due_at, inst.id, t.seq), in_role.clone());
        }
        if let Some(a) = &t.assignee {
            entries.insert(task_index_key("u/", a, t.due_at, inst.id, t.seq), view);
        }
    }
    entries
}

/// LZ4 with the size prepended, the size checked before anything is allocated.
fn decompress(bytes: &[u8]) -> Option<Vec<u8>> {
    let size = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    if size > REDO_RECORD_MAX {
        return None;
    }
    let raw = lz4_flex::decompress(&bytes[4..], size).ok()?;
    (raw.len() == size).then_some(raw)
}

/// Marks a compressed value; JSON never starts with this byte.
const COMPRESSED: u8 = 0x04;

/// Marks a role-inbox value that names the task's assignee instead of holding its view (the
/// view is under `u/{assignee}\0` with the same suffix). JSON never starts with this byte.
pub(crate) const ASSIGNED_TO: u8 = 0x05;

/// The `u/` key a pointing `r/` entry refers to: the same (due, instance, task) suffix under the
/// assignee. `None` when `value` holds the view itself.
pub(crate) fn assignee_key(role_prefix_len: usize, key: &[u8], value: &[u8]) -> Option<Vec<u8>> {
    let (&marker, user) = value.split_first()?;
    if marker != ASSIGNED_TO {
        return None;
    }
    Some(self::key("u/", &[user, b"\0", key.get(role_prefix_len..)?]))
}
/// Values shorter than this stay plain JSON: compression would not pay.
const COMPRESS_FROM: usize = 128;

/// A stored value: JSON, LZ4-compressed when it is long (instances, history, inbox rows shrink
/// to about half, and with them sled's log, its restart replay and its cache footprint).
pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let json = serde_json::to_vec(v).expect("engine values always serialise");
    if json.len() < COMPRESS_FROM {
        return json;
    }
    let mut out = Vec::with_capacity(json.len() / 2);
    out.push(COMPRESSED);
    out.extend_from_slice(&lz4_flex::compress_prepend_size(&json));
    out
}

/// The JSON of a stored value, plain as older stores and short values have it, or decompressed.
fn json_of<'a>(key: &[u8], bytes: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, StoreError> {
    match bytes.split_first() {
        Some((&COMPRESSED, packed)) => {
            decompress(packed).map(std::borrow::Cow::Owned).ok_or_else(|| StoreError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                problem: "bad compressed value".into(),
            })
        }
        _ => Ok(std::borrow::Cow::Borrowed(bytes)),
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(&json_of(key, bytes)?)
        .map_err(|e| StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), problem: e.to_string() })
}

/// The entries stored under one `h/` key: a command's entries as a JSON array, or a single
/// entry as older stores wrote them.
pub(crate) fn history_entries(key: &[u8], bytes: &[u8]) -> Result<Vec<HistoryEntry>, StoreError> {
    let json = json_of(key, bytes)?;
    if json.first() == Some(&b'[') {
        decode(key, &json)
    } else {
        Ok(vec![decode(key, &json)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_stored_compressed_and_plain_ones_still_read() {
        let long: Vec<String> = (0..40).map(|i| format!("entry {i}")).collect();
        let packed = encode(&long);
        assert_eq!(packed[0], COMPRESSED);
        assert!(packed.len() < serde_json::to_vec(&long).unwrap().len());
        assert_eq!(decode::<Vec<String>>(b"k", &packed).unwrap(), long);
        assert_eq!(decode::<Vec<String>>(b"k", &serde_json::to_vec(&long).unwrap()).unwrap(), long);
        assert_eq!(encode(&"short"), b"\"short\"");
        assert!(matches!(decode::<Vec<String>>(b"k", &[COMPRESSED, 9, 9]), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn due_times_sort_by_bytes() {
        let a = DateTime::from_timestamp_millis(-5).unwrap();
        let b = DateTime::from_timestamp_millis(0).unwrap();
        let c = DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        assert!(due_bytes(a) < due_bytes(b) && due_bytes(b) < due_bytes(c));
        assert_eq!(due_from_bytes(&due_bytes(c)), Some(c));
    }

    #[test]
    fn timers_are_indexed_no_earlier_than_due() {
        let due = DateTime::from_timestamp_micros(1_800_000_000_000_400).unwrap();
        let k = timer_key(due, InstanceId(1), 1);
        assert_eq!(due_from_bytes(&k[2..]), DateTime::from_timestamp_millis(1_800_000_000_001));
        let whole = DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        assert_eq!(due_from_bytes(&timer_key(whole, InstanceId(1), 1)[2..]), Some(whole));
    }

    #[test]
    fn batches_encode_and_decode_and_garbage_is_refused() {
        let mut b = Batch::default();
        b.insert(b"i/1", b"{}");
        b.remove(b"u/x");
        b.insert(b"", b"");
        assert_eq!(Batch::decode_raw(&b.encode_raw()), Some(b.clone()));
        assert_eq!(Batch::decode_redo(&b.encode_redo()), Some(b.clone()));
        let bytes = b.encode_raw();
        assert_eq!(Batch::decode_raw(&bytes[..bytes.len() - 1]), None, "truncated");
        assert_eq!(Batch::decode_raw(&[7, 0, 0, 0, 0]), None, "unknown kind");
        assert_eq!(Batch::decode_redo(&[255, 255, 255, 255, 1]), None, "a size no record has");
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("caseflow-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn redo_len(store: &Store) -> usize {
        store.handles.redo.len()
    }

    fn flushing() -> StoreOptions {
        StoreOptions { durability: Durability::Flush, ..StoreOptions::default() }
    }

    fn wal_of(store: &Store) -> &Wal {
        store.wal.as_deref().unwrap()
    }

    #[test]
    fn log_records_are_replayed_in_order_on_open_over_keys_sled_already_had() {
        let dir = scratch("replay");
        {
            let store = Store::open(&dir, &flushing()).unwrap();
            let mut old = Batch::default();
            old.insert(b"gone", b"x");
            old.insert(b"a", b"0");
            store.write_now(old).unwrap();
            store.flush().unwrap();
            // A crash after two records were logged, before (all) their keys reached sled: the
            // later one writes the same key and was partly applied already.
            let mut first = Batch::default();
            first.insert(b"a", b"1");
            first.remove(b"gone");
            let mut second = Batch::default();
            second.insert(b"a", b"2");
            second.insert(b"b", b"2");
            let wal = wal_of(&store);
            wal.append(|_, out| first.encode_into(out)).unwrap();
            let last = wal.append(|_, out| second.encode_into(out)).unwrap();
            wal.sync(last).unwrap();
            store.handles.tree.insert(b"b", b"2").unwrap();
            store.handles.db.flush().unwrap();
            // Dropped without `flush`, like a crash: the log keeps both records.
        }
        let store = Store::open(&dir, &flushing()).unwrap();
        assert_eq!(store.replayed_on_open(), 2);
        assert_eq!(store.get(b"a").unwrap().as_deref(), Some(&b"2"[..]), "the later record wins");
        assert_eq!(store.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(store.get(b"gone").unwrap(), None);
        assert_eq!(wal_of(&store).segment_count().unwrap(), 1, "replayed segments are deleted");
        drop(store);
        let store = Store::open(&dir, &flushing()).unwrap();
        assert_eq!(store.replayed_on_open(), 0);
        assert_eq!(store.get(b"a").unwrap().as_deref(), Some(&b"2"[..]));
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sled_writes_nothing_before_the_log_records_it_came_from() {
        let dir = scratch("order");
        let store = Store::open(&dir, &StoreOptions { durability: Durability::None, ..flushing() }).unwrap();
        let mut b = Batch::default();
        b.insert(b"k", b"v");
        store.write(b).unwrap();
        // Nobody waited: the record is still in memory; the key goes to sled's memory.
        store.upkeep.drain_memtable().unwrap();
        assert!(Wal::read(&dir.join("wal")).unwrap().records.is_empty());
        store.handles.db.flush().unwrap();
        let logged = Wal::read(&dir.join("wal")).unwrap().records;
        assert_eq!(logged.len(), 1, "sled's flush wrote the log first");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn log_segments_are_deleted_once_sled_holds_their_keys() {
        let dir = scratch("truncate");
        let store = Store::open(&dir, &flushing()).unwrap();
        for i in 0..40u32 {
            let mut b = Batch::default();
            b.insert(format!("k/{i:03}"), vec![1u8; 512 << 10]);
            store.write_now(b).unwrap();
        }
        // The applier thread truncates behind the writers.
        let since = std::time::Instant::now();
        let mut segments = wal_of(&store).segment_count().unwrap();
        while segments > 2 && since.elapsed() < std::time::Duration::from_secs(20) {
            std::thread::yield_now();
            segments = wal_of(&store).segment_count().unwrap();
        }
        assert!(segments <= 2, "20 MiB logged in 8 MiB segments, {segments} left");
        drop(store);
        let store = Store::open(&dir, &flushing()).unwrap();
        assert!(store.replayed_on_open() < 20, "replayed {}", store.replayed_on_open());
        assert_eq!(store.scan_prefix(b"k/").count(), 40);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sequenced_keys_grow_in_write_order_across_restarts_and_after_older_outbox_keys() {
        let dir = scratch("sequenced");
        {
            // A store from before the log: an outbox key numbered by sled's id generator.
            let store = Store::open(&dir, &flushing()).unwrap();
            let mut b = Batch::default();
            b.insert(key("o/", &[&2_000_123u64.to_be_bytes()]), b"old".to_vec());
            store.write_now(b).unwrap();
        }
        std::fs::remove_dir_all(dir.join("wal")).unwrap();
        let mut keys = Vec::new();
        for _ in 0..2 {
            let store = Store::open(&dir, &flushing()).unwrap();
            for _ in 0..2 {
                let mut b = Batch::default();
                b.insert_sequenced(&b"o/"[..], b"a".to_vec());
                b.insert_sequenced(&b"o/"[..], b"b".to_vec());
                store.write_now(b).unwrap();
            }
            keys = store.scan_prefix(b"o/").map(|r| r.unwrap().0.to_vec()).collect();
        }
        assert_eq!(keys.len(), 9);
        assert_eq!(keys[0], key("o/", &[&2_000_123u64.to_be_bytes()]), "the older key sorts first");
        let numbers: Vec<(u64, u32)> = keys[1..]
            .iter()
            .map(|k| {
                (u64::from_be_bytes(k[2..10].try_into().unwrap()), u32::from_be_bytes(k[10..].try_into().unwrap()))
            })
            .collect();
        assert_eq!(numbers[0], (2_000_124, 0));
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
        drop(keys);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pages_sled_writes_to_files_of_their_own_are_synced_and_read_back() {
        let dir = scratch("blobs");
        let fsync = StoreOptions { durability: Durability::Fsync, ..StoreOptions::default() };
        {
            let store = Store::open(&dir, &fsync).unwrap();
            let mut b = Batch::default();
            b.insert(b"big".to_vec(), vec![7u8; 300 << 10]);
            store.write_now(b).unwrap();
            store.flush().unwrap();
            let blobs = std::fs::read_dir(dir.join("blobs")).map_or(0, |d| d.count());
            assert!(blobs > 0, "a 300 KiB page is a blob in sled 0.34");
        }
        let store = Store::open(&dir, &fsync).unwrap();
        assert_eq!(store.get(b"big").unwrap().map(|v| v.len()), Some(300 << 10));
        assert_eq!(store.replayed_on_open(), 0);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn redo_records_of_an_older_version_are_replayed_once_on_open() {
        let dir = scratch("redo");
        {
            let store = Store::open(&dir, &flushing()).unwrap();
            let mut first = Batch::default();
            first.insert(b"a", b"1");
            let mut second = Batch::default();
            second.insert(b"a", b"2");
            second.insert(b"b", b"2");
            store.handles.redo.insert(100u64.to_be_bytes(), first.encode_redo()).unwrap();
            store.handles.redo.insert(101u64.to_be_bytes(), second.encode_redo()).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(&dir, &flushing()).unwrap();
        assert_eq!(store.replayed_on_open(), 2);
        assert_eq!(store.get(b"a").unwrap().as_deref(), Some(&b"2"[..]), "the later record wins");
        assert_eq!(store.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(redo_len(&store), 0, "replayed records are dropped");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_record_refuses_to_open() {
        let dir = scratch("corrupt");
        {
            let store = Store::open(&dir, &flushing()).unwrap();
            store.handles.redo.insert(1u64.to_be_bytes(), &[9u8][..]).unwrap();
            store.flush().unwrap();
        }
        assert!(matches!(Store::open(&dir, &flushing()), Err(StoreError::Corrupt { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn scans_read_in_chunks_see_every_entry_and_let_the_caller_write_and_checkpoint() {
        let dir = scratch("scan");
        let store = Store::open(&dir, &flushing()).unwrap();
        let mut batch = Batch::default();
        for i in 0..3000u32 {
            batch.insert(format!("p/{i:05}"), i.to_be_bytes());
        }
        batch.insert(b"p", b"not in p/");
        batch.insert(b"q/0", b"after p/");
        store.write_now(batch).unwrap();
        let mut seen = 0u32;
        for item in store.scan_prefix(b"p/") {
            let (k, v) = item.unwrap();
            assert_eq!(k.as_ref(), format!("p/{seen:05}").as_bytes(), "in key order, none skipped");
            assert_eq!(v.as_ref(), seen.to_be_bytes());
            if seen == 1500 {
                // Writing and checkpointing in the middle of a scan neither deadlocks nor
                // loses its place.
                let mut b = Batch::default();
                b.insert(b"q/1", b"x");
                store.write_now(b).unwrap();
                store.checkpoint().unwrap();
            }
            seen += 1;
        }
        assert_eq!(seen, 3000);
        assert_eq!(store.checkpoints().count, 1);
        assert_eq!(store.range(b"p/00010", b"p/00020").count(), 10, "the end is exclusive");
        assert_eq!(store.range(b"p/00020", b"p/00010").count(), 0);
        assert_eq!(store.scan_prefix(b"q/").count(), 2);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The log positions of sled's snapshot files in `dir`.
    fn snapshot_positions(dir: &Path) -> Vec<u64> {
        let mut found: Vec<u64> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                u64::from_str_radix(name.strip_prefix("snap.")?, 16).ok()
            })
            .collect();
        found.sort();
        found
    }

    #[test]
    fn checkpoints_run_beside_the_writers_move_the_snapshot_forward_and_keep_every_write() {
        let dir = scratch("checkpoint");
        let options = StoreOptions { checkpoint_bytes: Some(16 << 10), ..flushing() };
        let store = std::sync::Arc::new(Store::open(&dir, &options).unwrap());
        // A new database has no snapshot yet.
        let opened_at = snapshot_positions(&dir).first().copied().unwrap_or(0);
        let writers: Vec<_> = (0..4u32)
            .map(|w| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..300u32 {
                        let mut b = Batch::default();
                        b.insert(format!("k/{w}/{i:04}"), vec![7u8; 200]);
                        store.write_now(b).unwrap();
                        // Reads go on while a checkpoint runs.
                        assert!(store.get(format!("k/{w}/{i:04}").as_bytes()).unwrap().is_some());
                        assert_eq!(store.scan_prefix(format!("k/{w}/").as_bytes()).count(), i as usize + 1);
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        store.upkeep.drain_memtable().unwrap();
        store.checkpoint().unwrap();
        let stats = store.checkpoints();
        assert!(stats.count >= 2, "{stats:?}: ~4 × 300 × 240 bytes over 16 KiB, then one more");
        assert_eq!(stats.failures, 0);
        let after = snapshot_positions(&dir);
        assert_eq!(after.len(), 1, "older snapshots are removed: {after:?}");
        assert!(after[0] > opened_at + 200_000, "the snapshot moved past what was written: {opened_at} → {after:?}");
        drop(store);
        let store = Store::open(&dir, &options).unwrap();
        assert_eq!(store.replayed_on_open(), 0);
        let keys: Vec<_> = store.scan_prefix(b"k/").map(|r| r.unwrap().0.to_vec()).collect();
        let written: Vec<_> =
            (0..4).flat_map(|w| (0..300).map(move |i| format!("k/{w}/{i:04}").into_bytes())).collect();
        assert_eq!(keys, written);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// One step of the memtable model test.
    #[derive(Debug, Clone)]
    enum Step {
        Write(Vec<(u8, Option<u8>)>),
        /// Apply the memtable to sled.
        Apply,
        /// Freeze the memtable without applying it: reads see the frozen and the active table.
        Freeze,
        Scan(u8),
        Range(u8, u8),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        let key = 0u8..120;
        prop_oneof![
            6 => proptest::collection::vec((key.clone(), proptest::option::of(any::<u8>())), 1..40).prop_map(Step::Write),
            1 => Just(Step::Apply),
            1 => Just(Step::Freeze),
            2 => (0u8..4).prop_map(Step::Scan),
            2 => (key.clone(), key).prop_map(|(a, b)| Step::Range(a, b)),
        ]
    }

    /// Keys under four prefixes, with a few past `p/` to check that prefix scans stop.
    fn model_key(k: u8) -> Vec<u8> {
        format!("{}/{:03}", ["a", "p", "p\u{ff}", "q"][(k % 4) as usize], k).into_bytes()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Reads through the memtable (active, frozen, applied to sled, in any mix) answer as
        /// a plain ordered map of every write would.
        #[test]
        fn reads_through_the_memtable_match_a_plain_map(steps in proptest::collection::vec(step(), 1..60)) {
            let store = Store::temporary().unwrap();
            let mut model = std::collections::BTreeMap::<Vec<u8>, Vec<u8>>::new();
            let mut freeze_lock = None;
            for step in steps {
                match step {
                    Step::Write(ops) => {
                        let mut b = Batch::default();
                        for (k, v) in ops {
                            match v {
                                Some(v) => {
                                    b.insert(model_key(k), vec![v]);
                                    model.insert(model_key(k), vec![v]);
                                }
                                None => {
                                    b.remove(model_key(k));
                                    model.remove(&model_key(k));
                                }
                            }
                        }
                        store.write(b).unwrap();
                    }
                    Step::Apply => {
                        freeze_lock = None;
                        store.upkeep.drain_memtable().unwrap();
                    }
                    Step::Freeze => {
                        if freeze_lock.is_none() {
                            freeze_lock = store.upkeep.memtable.apply_lock(false);
                            store.upkeep.memtable.freeze();
                        }
                    }
                    Step::Scan(p) => {
                        let prefix = ["a/", "p", "p\u{ff}", "q/"][p as usize].as_bytes();
                        let got: Vec<_> = store.scan_prefix(prefix).map(|r| { let (k, v) = r.unwrap(); (k.to_vec(), v.to_vec()) }).collect();
                        let want: Vec<_> = model.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect();
                        proptest::prop_assert_eq!(got, want);
                    }
                    Step::Range(a, b) => {
                        let (from, to) = (model_key(a), model_key(b));
                        let got: Vec<_> = store.range(&from, &to).map(|r| r.unwrap().0.to_vec()).collect();
                        let want: Vec<_> = if from < to { model.range(from..to).map(|(k, _)| k.clone()).collect() } else { vec![] };
                        proptest::prop_assert_eq!(got, want);
                    }
                }
                for k in 0..120u8 {
                    let got = store.get(&model_key(k)).unwrap().map(|v| v.to_vec());
                    proptest::prop_assert_eq!(got.as_ref(), model.get(&model_key(k)));
                }
            }
        }
    }

    #[test]
    fn inboxes_sort_by_deadline_then_case() {
        let soon = DateTime::from_timestamp_millis(1_800_000_000_000);
        let later = DateTime::from_timestamp_millis(1_800_000_000_001);
        assert!(task_index_key("u/", "a", soon, InstanceId(9), 1) < task_index_key("u/", "a", later, InstanceId(1), 1));
        assert!(task_index_key("u/", "a", later, InstanceId(9), 1) < task_index_key("u/", "a", None, InstanceId(1), 1));
    }
}
