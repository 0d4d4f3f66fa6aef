//! What keeps the store in shape beside the writers: applying the memtable to sled, flushing
//! sled and syncing its files, truncating the write-ahead log.

use super::memtable::{ApplyHelpers, Memtable};
use super::wal::Wal;
use super::Store;
use crate::faults::{FaultPoint, Faults};
use crate::storage::StoreError;
use crate::sync::Unpoisoned;
use std::path::Path;
use std::sync::Arc;

/// What an `fsync` store syncs after sled's flush: its log file, and its folder of large pages.
pub(super) struct SyncedFiles {
    pub(super) db: std::fs::File,
    pub(super) blobs: std::path::PathBuf,
}

/// `fsync`s every file in `dir` and `dir` itself; a missing folder or a file removed meanwhile
/// (sled deletes blobs it no longer needs) is not an error.
pub(super) fn sync_folder(dir: &Path) -> std::io::Result<()> {
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

/// The open sled database and its tree `caseflow`, which holds every key.
#[derive(Clone)]
pub(super) struct Handles {
    pub(super) db: sled::Db,
    pub(super) tree: sled::Tree,
}

impl Handles {
    pub(super) fn open(db: sled::Db) -> Result<Handles, StoreError> {
        Ok(Handles { tree: db.open_tree("caseflow")?, db })
    }
}

/// What keeps the store in shape — applying the memtable to sled, flushing sled, truncating
/// the log — shared by the writers (who may wait for an apply as backpressure) and the
/// applier thread, which does the rest off the writers' path.
pub(super) struct Upkeep {
    pub(super) handles: Handles,
    pub(super) wal: Option<Arc<Wal>>,
    /// The database file, for `fsync`.
    pub(super) file: Option<SyncedFiles>,
    /// Batches logged but not yet in sled: every read looks here first.
    pub(super) memtable: Arc<Memtable>,
    /// Threads that apply parts of a large memtable.
    pub(super) helpers: Arc<ApplyHelpers>,
    /// Faults injected by tests at the file operations.
    pub(super) faults: Arc<Faults>,
    /// Applies of the memtable to sled that failed (their keys stay in the memtable and the
    /// log; the next apply tries again).
    pub(super) apply_failures: std::sync::atomic::AtomicU64,
    /// A `truncate_log` is running.
    pub(super) truncating: std::sync::atomic::AtomicBool,
    /// A segment was closed: the applier thread truncates the log next.
    pub(super) truncate_wanted: std::sync::atomic::AtomicBool,
    /// Why storage is failing, since the last maintenance (apply, truncation, checkpoint)
    /// after a write failed; cleared when one succeeds. Writes are refused meanwhile.
    pub(super) degraded: std::sync::Mutex<Option<String>>,
}

impl Upkeep {
    /// Applies one frozen memtable to sled (see `memtable::apply`). The caller holds the
    /// apply lock.
    pub(super) fn apply_memtable(&self, lock: &std::sync::MutexGuard<'_, ()>) -> Result<(), StoreError> {
        if let Err(e) = self.faults.check(FaultPoint::Apply) {
            self.apply_failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Err(e.into());
        }
        crate::store::memtable::apply(&self.memtable, &self.handles.tree, &self.helpers, self.wal.as_deref(), lock)
            .map_err(|e| {
                self.apply_failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                StoreError::from(e)
            })
    }

    /// Applies everything the memtable holds (a stale frozen table, then the active one).
    pub(super) fn drain_memtable(&self) -> Result<(), StoreError> {
        let lock = self.memtable.apply_lock(true).expect("waits");
        self.apply_memtable(&lock)?;
        self.apply_memtable(&lock)
    }

    /// Applies the memtable, makes sled durable and deletes the log segments whose records it
    /// now holds.
    pub(super) fn truncate_log(&self) -> Result<(), StoreError> {
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

    pub(super) fn degrade(&self, e: &StoreError) {
        *self.degraded.lock().unpoisoned() = Some(e.to_string());
    }

    pub(super) fn flush_now(&self) -> Result<(), StoreError> {
        self.faults.check(FaultPoint::Flush)?;
        Store::flush_handles(&self.handles, self.file.as_ref())
    }
}
