//! Timers: the index scan's start (`TimerCursor`), the earliest due time, firing what is due.

use super::{Applied, Engine, EngineError};
use crate::storage::keys::{self, Prefix};
use crate::storage::{Bytes, Storage};
use crate::sync::Unpoisoned;
use caseflow_core::case::{Actor, Command, CommandError, InstanceId};
use chrono::{DateTime, Utc};
use std::sync::Mutex;

/// Where the timer driver's scans of the timer index (`t/`) start.
///
/// A fired timer's entry is removed through the memtable, and sled keeps it until the next
/// apply: a scan from the start of `t/` would walk over every entry fired since (thousands,
/// with a million timers due over ten minutes, on every driver round). So a scan starts at the
/// first entry the previous scan found. Entries added below that are not lost: a write that
/// adds one lowers the start once the entry is visible, and what was added during a scan is
/// kept as the start's floor when the scan moves it.
pub(crate) struct TimerCursor {
    pub(crate) state: Mutex<CursorState>,
    /// One driver scan at a time, from `begin` to `end`.
    pub(crate) scanning: Mutex<()>,
}

pub(crate) struct CursorState {
    pub(crate) from: Vec<u8>,
    /// The lowest entry added since the running scan began.
    pub(crate) added_during_scan: Option<Vec<u8>>,
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
    pub(crate) fn added(&self, key: &[u8]) {
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
    /// On a shared store (`from_start`), other nodes add entries this cursor never hears of,
    /// so every scan starts at the beginning (the database removes fired entries at once).
    pub(crate) fn scan<R>(
        &self,
        from_start: bool,
        scan: impl FnOnce(&[u8]) -> Result<(R, Option<Vec<u8>>), EngineError>,
    ) -> Result<R, EngineError> {
        let _one = self.scanning.lock().unpoisoned();
        let from = {
            let mut st = self.state.lock().unpoisoned();
            st.added_during_scan = None;
            if from_start {
                st.from = Prefix::Timer.bytes().to_vec();
            }
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

impl<S: Storage> Engine<S> {
    /// The earliest pending timer's due time.
    pub fn next_due(&self) -> Result<Option<DateTime<Utc>>, EngineError> {
        self.timer_cursor.scan(self.store.shared(), |from| {
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
        let due: Vec<(InstanceId, u32)> = self.timer_cursor.scan(self.store.shared(), |from| {
            let entries: Vec<Bytes> =
                self.store.range(from, &end).take(limit).map(|r| r.map(|(k, _)| k)).collect::<Result<_, _>>()?;
            // The first entry found stays the start until it is gone; none found: every entry
            // before `end` was looked at.
            let next = entries.first().map_or_else(|| end.clone(), |k| k.to_vec());
            let due = entries.iter().filter_map(|k| keys::timer_of(k).map(|(_, id, seq)| (id, seq))).collect();
            Ok((due, Some(next)))
        })?;
        // Cases are independent: fire them on every core (a case's timers stay on one thread,
        // in due order), then wait once for the lot. On a shared store, in this node's order.
        let mut due = due;
        if self.store.shared() {
            due.sort_by_key(|(id, _)| id.0.wrapping_mul(self.timer_order));
        }
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
