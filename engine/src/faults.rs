//! Faults injected by tests at named points of the storage layer's file operations: the next
//! `times` operations at a point fail with an OS error (ENOSPC, EIO, ...), as a full disk or a
//! failing device would make them fail. Production code never arms a point; checking one is
//! an uncontended lock only when some point is armed.

use crate::sync::Unpoisoned;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    /// Writing a group of records into the log's segment.
    LogWrite,
    /// `fdatasync` of the segment after a group.
    LogSync,
    /// Creating (zero-filling) a new segment or the spare one.
    LogCreate,
    /// Renaming the spare file into the next segment.
    LogRename,
    /// Applying the memtable's keys to sled.
    Apply,
    /// Flushing sled (truncation of the log, shutdown).
    Flush,
    /// Writing a checkpoint (sled's page-table snapshot).
    Checkpoint,
}

/// The armed faults of one store.
#[derive(Debug, Default)]
pub struct Faults {
    armed: AtomicBool,
    /// (point, failures left, raw OS error).
    points: Mutex<Vec<(FaultPoint, u32, i32)>>,
}

/// ENOSPC: no space left on device.
pub const NO_SPACE: i32 = 28;
/// EIO: input/output error.
pub const IO_ERROR: i32 = 5;
/// Not an OS error: the operation panics (as sled does on some corruption), to test that a
/// background thread that panics stops the process instead of hanging the store.
pub const PANIC: i32 = -1;

impl Faults {
    /// Makes the next `times` operations at `point` fail with OS error `errno`.
    pub fn arm(&self, point: FaultPoint, times: u32, errno: i32) {
        let mut points = self.points.lock().unpoisoned();
        points.retain(|(p, _, _)| *p != point);
        if times > 0 {
            points.push((point, times, errno));
        }
        self.armed.store(!points.is_empty(), Ordering::SeqCst);
    }

    /// Disarms every point.
    pub fn clear(&self) {
        self.points.lock().unpoisoned().clear();
        self.armed.store(false, Ordering::SeqCst);
    }

    /// Fails if a fault is armed at `point` (and counts it down).
    pub fn check(&self, point: FaultPoint) -> std::io::Result<()> {
        if !self.armed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut points = self.points.lock().unpoisoned();
        let Some(i) = points.iter().position(|(p, _, _)| *p == point) else { return Ok(()) };
        let errno = points[i].2;
        points[i].1 -= 1;
        if points[i].1 == 0 {
            points.remove(i);
        }
        self.armed.store(!points.is_empty(), Ordering::SeqCst);
        drop(points);
        if errno == PANIC {
            panic!("a panic injected at {point:?}");
        }
        Err(std::io::Error::from_raw_os_error(errno))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_armed_point_fails_its_count_then_passes() {
        let f = Faults::default();
        assert!(f.check(FaultPoint::LogWrite).is_ok());
        f.arm(FaultPoint::LogWrite, 2, NO_SPACE);
        assert!(f.check(FaultPoint::LogSync).is_ok(), "other points pass");
        let e = f.check(FaultPoint::LogWrite).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(NO_SPACE));
        assert!(f.check(FaultPoint::LogWrite).is_err());
        assert!(f.check(FaultPoint::LogWrite).is_ok());
        f.arm(FaultPoint::LogSync, 5, IO_ERROR);
        f.clear();
        assert!(f.check(FaultPoint::LogSync).is_ok());
    }
}
