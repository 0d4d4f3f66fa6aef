//! The default storage: sled behind a write-ahead log of our own, one atomic batch per
//! command, group commit for durability (`Storage` for sled). The map of this folder:
//! `wal/` (the log: records, segments, group commit), `memtable` (logged batches not yet in
//! sled, read first), `upkeep` (applying the memtable, flushing sled, truncating the log),
//! `scan` (chunked scans over memtable and sled), `checkpoint` (snapshots of sled's page
//! table), `space` (the disk-space reserve). docs/storage.md explains how they fit and what a
//! write survives.

mod checkpoint;
pub(crate) mod memtable;
mod scan;
mod space;
mod upkeep;
pub mod wal;

pub use crate::storage::{Batch, StoreError};
pub use checkpoint::CheckpointStats;
pub use scan::Scan;

use crate::faults::Faults;
use crate::storage::{Bytes, Storage, Ticket, BATCH_BYTES_MAX};
use crate::sync::Unpoisoned;
use checkpoint::CheckpointState;
use memtable::{ApplyHelpers, Memtable, Pressure};
use space::SpaceGuard;
pub use space::DEFAULT_SPACE_RESERVE_BYTES;
use std::path::Path;
use std::sync::Arc;
use upkeep::{sync_folder, Handles, SyncedFiles, Upkeep};
use wal::{Wal, WalError};

/// sled's errors as the seam says them.
impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> StoreError {
        match e {
            sled::Error::Io(io) => StoreError::Io(io),
            sled::Error::Corruption { at, .. } => StoreError::Corrupt {
                key: at.map_or_else(|| "sled".to_string(), |at| format!("sled at {at:?}")),
                problem: "sled found its data corrupt".into(),
            },
            other => StoreError::Backend(other.to_string()),
        }
    }
}

/// The write-ahead log's errors as the seam says them (outside making a write durable, which
/// says `OutcomeUnknown`: see `wait_durable`).
impl From<WalError> for StoreError {
    fn from(e: WalError) -> StoreError {
        match e {
            WalError::Io(io) => StoreError::Io(io),
            WalError::Corrupt { path, offset } => StoreError::Corrupt {
                key: format!("{}", path.display()),
                problem: format!("a bad record at byte {offset}"),
            },
            WalError::Failed(_) | WalError::Rotation(_) => StoreError::Unavailable(e.to_string()),
        }
    }
}

/// A failure of the log while a write was being made durable: taken in, fate unknown.
fn outcome_unknown(e: WalError) -> StoreError {
    StoreError::OutcomeUnknown(e.to_string())
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

/// Keys and values written through the store between checkpoints. sled writes a few times as
/// much to its log (node rewrites), and an open replays it at roughly 1.5 GB/s from the page
/// cache: a restart replays at most ~1 s of it. A checkpoint runs beside the writers (it
/// stops nothing); it walks the page table and writes a snapshot of it, ~25 bytes per page.
pub const DEFAULT_CHECKPOINT_BYTES: u64 = 256 << 20;

/// The sled database and the group-commit state.
pub struct Store {
    handles: Handles,
    /// Where the database lives; `None` for a temporary store.
    path: Option<std::path::PathBuf>,
    /// The write-ahead log; `None` for a temporary store.
    wal: Option<Arc<Wal>>,
    /// Log records replayed when the store opened.
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
    /// Held, by the stripes of its condition keys, by a conditional batch from its check until
    /// its writes are visible: two batches expecting the same key cannot both pass.
    condition_stripes: Vec<std::sync::Mutex<()>>,
    /// While a backup scans (`backup`), every batch written, with its ticket. Each write holds
    /// the read lock from before its ticket until its keys are visible, so a backup that takes
    /// the write lock knows every write is either visible to its scan or in the tap.
    tap: std::sync::RwLock<Option<Arc<Tap>>>,
}

/// A key and its new value (`None`: removed), as a batch holds it.
type Op = (Vec<u8>, Option<Vec<u8>>);

/// The batches written while a backup scans, with their tickets.
type Tap = std::sync::Mutex<Vec<(Ticket, Vec<Op>)>>;

/// How many locks conditional batches are spread over.
const CONDITION_STRIPES: usize = 64;

impl Store {
    /// Checks a batch's conditions under the locks of their keys' stripes, which the caller
    /// holds until the batch is visible (the memtable takes it before `write` returns).
    /// Its counters (`Batch::add`) are read and their new values written as plain inserts under
    /// the same locks, so two batches adding to one counter both count.
    fn check_conditions(&self, batch: &mut Batch) -> Result<Vec<std::sync::MutexGuard<'_, ()>>, StoreError> {
        let stripe = |key: &[u8]| (crc32fast::hash(key) as usize) % CONDITION_STRIPES;
        let mut held: Vec<usize> = batch.locked_keys().map(stripe).collect();
        if held.is_empty() {
            return Ok(Vec::new());
        }
        held.sort_unstable();
        held.dedup();
        let guards = held.into_iter().map(|i| self.condition_stripes[i].lock().unpoisoned()).collect();
        if let Some(key) = batch.failed_condition(|k| self.get(k))? {
            return Err(StoreError::Conflict(key));
        }
        batch.resolve_adds(|k| self.get(k))?;
        Ok(guards)
    }

    /// Writes a consistent copy of the store (`storage::dump`'s format) while writers go on: the
    /// store as it was at one instant, the end of the scan. Every batch written during the scan
    /// is kept aside (the tap) and laid over what the scan read, in ticket order, which is the
    /// order batches touching a key were applied; a key the scan read and no batch touched has
    /// held its value since the scan began. The scan goes to `scratch` first (removed after).
    pub fn backup(
        &self,
        out: &mut dyn std::io::Write,
        scratch: &Path,
    ) -> Result<crate::storage::dump::Summary, crate::storage::dump::DumpError> {
        use crate::storage::dump;
        let tap = Arc::new(std::sync::Mutex::new(Vec::new()));
        // Waits for the writes in flight: from here on every write is visible or tapped.
        *self.tap.write().unpoisoned() = Some(tap.clone());
        let scanned = (|| {
            let mut file = std::io::BufWriter::new(std::fs::File::create(scratch)?);
            dump::dump(self, &mut file)?;
            file.into_inner().map_err(|e| e.into_error())?;
            Ok::<_, dump::DumpError>(())
        })();
        *self.tap.write().unpoisoned() = None;
        let merged = scanned.and_then(|()| {
            let mut batches = std::mem::take(&mut *tap.lock().unpoisoned());
            batches.sort_by_key(|(ticket, _)| *ticket);
            let mut overrides = std::collections::BTreeMap::new();
            for (k, v) in batches.into_iter().flat_map(|(_, ops)| ops) {
                overrides.insert(k, v);
            }
            dump::merge(Box::new(std::fs::File::open(scratch)?), overrides, out)
        });
        let _ = std::fs::remove_file(scratch);
        merged
    }

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
            // A new log (a new store, or a lost log folder): its sequence numbers start after
            // every sequenced key already stored.
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
                apply_to(&batch, &store.handles.tree)?;
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

    /// One more than the largest sequence number in a sequenced key (the outbox), for a log
    /// that starts afresh over stored data.
    fn sequenced_floor(db: &sled::Db) -> Result<u64, StoreError> {
        let last = db.open_tree("caseflow")?.scan_prefix(crate::storage::keys::OUTBOX).next_back().transpose()?;
        Ok(last.and_then(|(k, _)| crate::storage::keys::outbox_batch(&k)).map_or(0, |n| n + 1))
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
            crate::sync::spawn_guarded("caseflow-apply", move || {
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
            condition_stripes: (0..CONDITION_STRIPES).map(|_| std::sync::Mutex::new(())).collect(),
            tap: std::sync::RwLock::new(None),
            space: SpaceGuard::new(path.clone(), options.space_reserve_bytes),
            path,
            wal,
            replayed: 0,
            durability,
            unlogged_seq: Default::default(),
            upkeep,
            applier: Some(applier),
        })
    }

    /// How many log records a crash had left, replayed when this store opened.
    pub fn replayed_on_open(&self) -> usize {
        self.replayed
    }

    /// Why storage is failing, if it is: a log write that failed (tried again until it goes
    /// through), maintenance that failed after a write, or a disk below the space reserve.
    pub fn degraded(&self) -> Option<String> {
        self.maintenance_failed().or_else(|| self.space.low())
    }

    fn maintenance_failed(&self) -> Option<String> {
        if let Some(e) = self.wal.as_ref().and_then(|w| w.failed()) {
            return Some(e);
        }
        self.upkeep.degraded.lock().unpoisoned().clone()
    }

    /// Runs what failed again: the log's stuck group, the memtable applied to sled, the log
    /// truncated. A success clears the failure.
    fn retry_maintenance(&self) -> Result<(), StoreError> {
        if let Some(wal) = &self.wal {
            wal.recover().map_err(|e| StoreError::Unavailable(e.to_string()))?;
        }
        if self.upkeep.degraded.lock().unpoisoned().is_none() {
            return Ok(());
        }
        let result = self.upkeep.drain_memtable().and_then(|()| self.upkeep.truncate_log());
        match result {
            Ok(()) => {
                *self.upkeep.degraded.lock().unpoisoned() = None;
                Ok(())
            }
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
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

    /// Groups the write-ahead log wrote so far, and the records in them.
    pub fn log_stats(&self) -> crate::store::wal::WalStats {
        self.wal.as_ref().map(|w| w.stats()).unwrap_or_default()
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

    /// Entries the memtable holds, and how many of its applies to sled failed.
    pub fn memtable_stats(&self) -> (usize, u64) {
        (self.upkeep.memtable.len(), self.upkeep.apply_failures.load(std::sync::atomic::Ordering::SeqCst))
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

impl Storage for Store {
    type Scan<'a> = Scan<'a>;

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
    fn write(&self, mut batch: Batch) -> Result<Ticket, StoreError> {
        let size = batch.size();
        if size > BATCH_BYTES_MAX {
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
        let _conditions = self.check_conditions(&mut batch)?;
        let tap = self.tap.read().unpoisoned();
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
        if let Some(tap) = tap.as_ref() {
            tap.lock().unpoisoned().push((ticket, batch.ops().to_vec()));
        }
        // Until its keys are in sled, the record stays in the log (`Wal::applied_all`).
        let pressure = self.upkeep.memtable.insert(ticket, batch.into_ops());
        drop(tap);
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

    /// Blocks until the batch with `ticket` is durable. Concurrent callers share log writes:
    /// one writes (and syncs) everything appended so far while the others wait for it (group
    /// commit).
    fn wait_durable(&self, ticket: Ticket) -> Result<(), StoreError> {
        match &self.wal {
            Some(wal) if self.durability != Durability::None => wal.sync(ticket).map_err(outcome_unknown),
            _ => Ok(()),
        }
    }

    /// Calls `done` once the batch with `ticket` is durable (see `Wal::when_durable`).
    fn when_durable(&self, ticket: Ticket, done: Box<dyn FnOnce(Result<(), StoreError>) + Send>) {
        match &self.wal {
            Some(wal) if self.durability != Durability::None => {
                wal.when_durable(ticket, Box::new(move |r| done(r.map_err(outcome_unknown))))
            }
            _ => done(Ok(())),
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        // The memtable first: a key leaves it only once sled holds its value.
        match self.upkeep.memtable.get(key) {
            Some(held) => Ok(held.map(Bytes::from_owner)),
            None => Ok(self.handles.tree.get(key)?.map(Bytes::from_owner)),
        }
    }

    /// The entries whose keys start with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Scan<'_> {
        Scan::new(self, prefix.to_vec(), crate::storage::keys::prefix_end(prefix))
    }

    /// The entries with `from <= key < to`, in key order.
    fn range(&self, from: &[u8], to: &[u8]) -> Scan<'_> {
        Scan::new(self, from.to_vec(), Some(to.to_vec()))
    }

    /// Makes everything durable in sled and deletes the log segments it made unnecessary
    /// (shutdown; dropping the store does it too).
    fn flush(&self) -> Result<(), StoreError> {
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

    /// `degraded`, after trying what failed again (a disk may have been freed): for readiness
    /// checks, which must see a recovery even when no write comes to try.
    fn check_health(&self) -> Option<String> {
        if self.maintenance_failed().is_some() {
            let _ = self.retry_maintenance();
        }
        let _ = self.space.check(0, true);
        self.degraded()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // The checkpoint holds a handle to sled: it must end before sled can close.
        if let Some(thread) = self.checkpoint_thread.lock().unpoisoned().take() {
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

/// Applies a batch's operations to sled (replaying the log).
fn apply_to(batch: &Batch, tree: &sled::Tree) -> Result<(), StoreError> {
    for (k, v) in batch.ops() {
        match v {
            Some(v) => tree.insert(k.as_slice(), v.as_slice())?,
            None => tree.remove(k.as_slice())?,
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::keys::{outbox_batch, OUTBOX};

    #[test]
    fn batches_encode_and_decode_and_garbage_is_refused() {
        let mut b = Batch::default();
        b.insert(b"i/1", b"{}");
        b.remove(b"u/x");
        b.insert(b"", b"");
        assert_eq!(Batch::decode_raw(&b.encode_raw()), Some(b.clone()));
        let bytes = b.encode_raw();
        assert_eq!(Batch::decode_raw(&bytes[..bytes.len() - 1]), None, "truncated");
        assert_eq!(Batch::decode_raw(&[7, 0, 0, 0, 0]), None, "unknown kind");
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("caseflow-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
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
    fn sequenced_keys_grow_in_write_order_across_restarts_and_a_lost_log() {
        let dir = scratch("sequenced");
        let old = [OUTBOX, &2_000_123u64.to_be_bytes(), &0u32.to_be_bytes()].concat();
        {
            // Sequenced keys stored under a log that is then lost: a new log starts above them.
            let store = Store::open(&dir, &flushing()).unwrap();
            let mut b = Batch::default();
            b.insert(old.clone(), b"old".to_vec());
            store.write_now(b).unwrap();
        }
        std::fs::remove_dir_all(dir.join("wal")).unwrap();
        let mut keys = Vec::new();
        for _ in 0..2 {
            let store = Store::open(&dir, &flushing()).unwrap();
            for _ in 0..2 {
                let mut b = Batch::default();
                b.insert_sequenced(OUTBOX, b"a".to_vec());
                b.insert_sequenced(OUTBOX, b"b".to_vec());
                store.write_now(b).unwrap();
            }
            keys = store.scan_prefix(OUTBOX).map(|r| r.unwrap().0.to_vec()).collect();
        }
        assert_eq!(keys.len(), 9);
        assert_eq!(keys[0], old, "the older key sorts first");
        let numbers: Vec<(Option<u64>, &[u8])> =
            keys[1..].iter().map(|k| (outbox_batch(k), &k[k.len() - 4..])).collect();
        assert_eq!(numbers[0], (Some(2_000_124), &0u32.to_be_bytes()[..]));
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
}
