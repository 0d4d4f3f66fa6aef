//! Checkpoints: snapshots of sled's page table taken beside the writers, so that a restart
//! replays at most `StoreOptions::checkpoint_bytes` of sled's log.

use super::upkeep::sync_folder;
use super::Store;
use crate::faults::{FaultPoint, Faults};
use crate::storage::StoreError;
use crate::sync::Unpoisoned;
use std::path::Path;

/// An open of sled 0.34 replays every log segment written since the last snapshot of its page
/// table, and upstream writes one only while opening: left alone, a restart after months of
/// work would read the whole log. Once this many bytes have been written through the store, a
/// checkpoint writes a snapshot while the store goes on working (`sled::Db::write_snapshot`,
/// our patch #4), so a restart replays at most about that much.
#[derive(Default)]
pub(super) struct CheckpointState {
    /// Bytes written since the last checkpoint started (records, keys and values).
    pub(super) written: std::sync::atomic::AtomicU64,
    pub(super) after_bytes: Option<u64>,
    pub(super) running: std::sync::atomic::AtomicBool,
    pub(super) count: std::sync::atomic::AtomicU64,
    pub(super) failures: std::sync::atomic::AtomicU64,
    /// Microseconds the last checkpoint took (in the background), and the longest.
    pub(super) last_micros: std::sync::atomic::AtomicU64,
    pub(super) longest_micros: std::sync::atomic::AtomicU64,
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

impl Store {
    /// Counts `bytes` written and starts a checkpoint in the background when they pass the
    /// threshold and none is running.
    pub(super) fn maybe_checkpoint(&self, bytes: u64) -> Result<(), StoreError> {
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
        let spawned = crate::sync::spawn_guarded("caseflow-checkpoint", move || {
            // A failure is counted and shown in the metrics; the next checkpoint tries again.
            let _ = Self::snapshot(&db, &path, &state, &faults);
            state.running.store(false, SeqCst);
        });
        let mut thread = self.checkpoint_thread.lock().unpoisoned();
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
        let background = self.checkpoint_thread.lock().unpoisoned().take();
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
}
