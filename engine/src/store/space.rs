//! The disk-space reserve: writes are refused (not applied) while the data directory's disk
//! has less free space than `StoreOptions::space_reserve_bytes`, so sled, whose first failed
//! write stops it until it is reopened, never meets a full disk.

use crate::storage::StoreError;
use crate::sync::Unpoisoned;

/// Two log segments (a new one and its spare) and room for sled's buffers beyond them.
pub const DEFAULT_SPACE_RESERVE_BYTES: u64 = 32 << 20;

/// Watches the free space of the data directory's disk (`StoreOptions::space_reserve_bytes`).
/// statvfs is asked at most every `SPACE_CHECK_MS`, or sooner after an eighth of the reserve
/// was written.
pub(super) struct SpaceGuard {
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
    pub(super) fn new(dir: Option<std::path::PathBuf>, reserve: u64) -> SpaceGuard {
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
    pub(super) fn check(&self, bytes: u64, force: bool) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(dir) = &self.dir else { return Ok(()) };
        let now = self.epoch.elapsed().as_millis() as u64 + SPACE_CHECK_MS;
        let written = self.written_since.fetch_add(bytes, Relaxed) + bytes;
        let due = force || now - self.checked_at_ms.load(Relaxed) >= SPACE_CHECK_MS || written >= self.reserve / 8;
        let mut low = self.low.lock().unpoisoned();
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

    pub(super) fn low(&self) -> Option<String> {
        self.low.lock().unpoisoned().clone()
    }
}
