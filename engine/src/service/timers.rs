//! Timers: the index scan's start (`TimerCursor`), the earliest due time, firing what is due.

use super::{Applied, Engine, EngineError, Unit};
use crate::storage::keys::{self, Prefix};
use crate::storage::{Bytes, Claim, Storage, StoreError};
use crate::sync::Unpoisoned;
use caseflow_core::case::{Actor, Command, CommandError, InstanceId, Outcome};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
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
    ///
    /// On a shared store, what this engine fires it first claims (`claim_due`), up to
    /// `CLAIM_CHUNK` at a time, so that nodes divide the due timers instead of racing for them.
    pub fn fire_due(&self, now: DateTime<Utc>, limit: usize) -> Result<usize, EngineError> {
        if self.store.shared() {
            let claimed = self.claim_due(now, limit.min(CLAIM_CHUNK))?;
            return self.fire_claimed(claimed, now);
        }
        // Keys at or before `now`'s millisecond: due by then (they are rounded up).
        let end = keys::timers_due_by(now);
        let due: Vec<Due> = self.timer_cursor.scan(false, |from| {
            let entries: Vec<Bytes> =
                self.store.range(from, &end).take(limit).map(|r| r.map(|(k, _)| k)).collect::<Result<_, _>>()?;
            // The first entry found stays the start until it is gone; none found: every entry
            // before `end` was looked at.
            let next = entries.first().map_or_else(|| end.clone(), |k| k.to_vec());
            let due = entries.iter().filter_map(|k| Due::of(k, 0)).collect();
            Ok((due, Some(next)))
        })?;
        self.fire(&due, now)
    }

    /// Claims up to `limit` timers due at `now` that no other engine on the store holds, for
    /// the engine's lease (`set_claim_lease`). Until the lease ends no other engine fires them;
    /// after it, another may take them over, and then this engine's firing of them is refused.
    pub fn claim_due(&self, now: DateTime<Utc>, limit: usize) -> Result<DueClaim, EngineError> {
        let end = keys::timers_due_by(now);
        Ok(DueClaim(self.store.claim(Prefix::Timer.bytes(), &end, limit, self.claim_lease())?))
    }

    /// Fires the timers of a claim, renewing its lease meanwhile (a heartbeat every third of
    /// it), and gives back what it did not fire (a suspended case's, one due later within the
    /// millisecond). A timer another engine took over is not fired here: the claim fences it.
    pub fn fire_claimed(&self, claimed: DueClaim, now: DateTime<Utc>) -> Result<usize, EngineError> {
        let claim = claimed.0;
        if claim.keys.is_empty() {
            return Ok(0);
        }
        let due: Vec<Due> = claim.keys.iter().filter_map(|k| Due::of(k, claim.token)).collect();
        let lease = self.claim_lease();
        let (done, stop) = std::sync::mpsc::channel::<()>();
        let fired = std::thread::scope(|s| {
            let claim = &claim;
            s.spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(lease / 3) {
                    // A renewal that fails is tried again at the next beat; if the lease ends
                    // meanwhile, another engine may take timers over and the fence keeps this
                    // one from firing them too.
                    let _ = self.store.renew(claim, lease);
                }
            });
            let fired = self.fire(&due, now);
            drop(done);
            fired
        });
        // Not given back (the store failing): they are free again when the lease ends.
        let _ = self.store.release(&claim);
        fired
    }

    /// How long this engine's claims last without a heartbeat.
    pub fn claim_lease(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.claim_lease_ms.load(Ordering::Relaxed))
    }

    /// Sets how long claims last without a heartbeat (`CLAIM_LEASE` by default): the longest a
    /// node that stopped holds back what it claimed.
    pub fn set_claim_lease(&self, lease: std::time::Duration) {
        self.claim_lease_ms.store(lease.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    /// Fires `due`, each timer as its own command, and waits once for all to be durable.
    fn fire(&self, due: &[Due], now: DateTime<Utc>) -> Result<usize, EngineError> {
        // Cases are independent: fire them on every core (a case's timers stay on one thread,
        // in due order), then wait once for the lot. On a shared database a firing waits on
        // round trips and the database's commit, not on this machine's cores: more lanes keep
        // more commits in flight, which the database writes to disk together.
        let lanes = match self.store.shared() {
            true => SHARED_FIRING_LANES,
            false => std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4),
        };
        let fire_lane = |lane: usize| {
            let mine = due.iter().filter(|d| d.id.0 as usize % lanes == lane);
            if self.store.shared() {
                return self.fire_grouped(mine, now);
            }
            let mut applied = Vec::new();
            for d in mine {
                match self.fire_one(d, now) {
                    Ok(a) => applied.push(a),
                    Err(e) if nothing_to_fire(&e) => {}
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

/// Whether a timer's firing failed because there is nothing to fire now.
fn nothing_to_fire(e: &EngineError) -> bool {
    matches!(
        e,
        // A stale index entry, a suspended case, or a timer due later within this millisecond.
        EngineError::Command(
            CommandError::TimerNotPending(_) | CommandError::WrongStatus(_) | CommandError::TimerNotDue { .. }
        )
        // Taken over by another engine once this one's lease ran out (or fired and gone): it
        // is theirs.
        | EngineError::Store(StoreError::ClaimLost(_))
    )
}

/// Timers fired in one transaction at most, on a shared database: a group's commands are
/// written together (each case on its own conditions and fence), which spares the database a
/// transaction, a locking read and the statements of each but one.
const FIRING_GROUP: usize = 64;

/// Timers a node fires at once on a shared database: within the default pool of 16
/// connections (`database_pool_size`), leaving room for requests.
const SHARED_FIRING_LANES: usize = 12;

/// Due timers claimed on a shared store (`Engine::claim_due`), to fire (`Engine::fire_claimed`).
#[must_use = "claimed timers are held back from other nodes until fired or the lease ends"]
pub struct DueClaim(Claim);

impl DueClaim {
    /// How many timers were claimed.
    pub fn len(&self) -> usize {
        self.0.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.keys.is_empty()
    }
}

/// Timers a claim may take at once on a shared store: small enough that nodes share a burst
/// of due timers (each claims a chunk, fires it, claims the next), large enough that claiming
/// costs little beside firing.
pub const CLAIM_CHUNK: usize = 500;

/// A timer to fire: its case, its number, and the claim it is fired under (if any).
struct Due {
    id: InstanceId,
    timer: u32,
    fence: Option<(Vec<u8>, u64)>,
}

impl Due {
    fn of(key: &[u8], token: u64) -> Option<Due> {
        let (_, id, timer) = keys::timer_of(key)?;
        Some(Due { id, timer, fence: (token != 0).then(|| (key.to_vec(), token)) })
    }
}

impl<S: Storage> Engine<S> {
    /// One timer, as its own command and write.
    fn fire_one(&self, d: &Due, now: DateTime<Utc>) -> Result<Applied, EngineError> {
        let command = Command::FireTimer { timer: d.timer };
        self.apply_and_write_fenced(d.id, Actor::system(), command, now, d.fence.clone())
    }

    /// Fires `due` (one lane's, on a shared database) in groups of `FIRING_GROUP` commands,
    /// each group one write. A group touches each case once: a timer whose case (or family) is
    /// already in the group starts the next one. A group refused because one of its cases
    /// changed meanwhile, or one of its claims was taken over, is fired again one by one.
    fn fire_grouped<'d>(
        &self,
        due: impl Iterator<Item = &'d Due>,
        now: DateTime<Utc>,
    ) -> (Vec<Applied>, Option<EngineError>) {
        let mut applied = Vec::new();
        let mut group: Vec<(Unit, &Due)> = Vec::new();
        let mut touched: BTreeSet<InstanceId> = BTreeSet::new();
        for d in due {
            let unit = match self.stage_timer(d, now) {
                Ok(unit) => unit,
                Err(e) if nothing_to_fire(&e) => continue,
                Err(e) => {
                    let flushed = self.flush_group(std::mem::take(&mut group), now, &mut applied);
                    return (applied, Some(flushed.err().unwrap_or(e)));
                }
            };
            if group.len() == FIRING_GROUP || unit.cases.keys().any(|id| touched.contains(id)) {
                if let Err(e) = self.flush_group(std::mem::take(&mut group), now, &mut applied) {
                    return (applied, Some(e));
                }
                touched.clear();
            }
            touched.extend(unit.cases.keys().copied());
            group.push((unit, d));
        }
        let flushed = self.flush_group(group, now, &mut applied);
        (applied, flushed.err())
    }

    /// A timer's command applied to its case (and family) in memory, not yet written.
    fn stage_timer(&self, d: &Due, now: DateTime<Utc>) -> Result<Unit, EngineError> {
        let (guard, before) = self.lock_family(d.id)?;
        let mut unit = Unit { fence: d.fence.clone(), ..Unit::default() };
        let inst = before.instance.clone();
        unit.add(Some(before), inst, Outcome { effects: Vec::new(), history: Vec::new() });
        let staged = self
            .apply_staged(&mut unit, d.id, Actor::system(), Command::FireTimer { timer: d.timer }, now)
            .and_then(|effects| self.cascade(&mut unit, d.id, effects, now));
        drop(guard);
        // The ids a cascade took for cases it started, back.
        staged.inspect_err(|e| self.give_back(&unit, e))?;
        Ok(unit)
    }

    /// Writes a group; on a changed case or a lost claim, fires its timers one by one.
    fn flush_group(
        &self,
        group: Vec<(Unit, &Due)>,
        now: DateTime<Utc>,
        applied: &mut Vec<Applied>,
    ) -> Result<(), EngineError> {
        if group.is_empty() {
            return Ok(());
        }
        let (mut units, dues): (Vec<Unit>, Vec<&Due>) = group.into_iter().unzip();
        match self.commit_group(&mut units) {
            Ok(ticket) => {
                for unit in units {
                    let (instance, outcome, others) = unit.split_first();
                    applied.push(Applied { instance, outcome, ticket, others });
                }
                Ok(())
            }
            Err(e) => {
                for unit in units.iter().rev() {
                    self.give_back(unit, &e);
                }
                if !matches!(e, EngineError::Store(StoreError::Conflict(_) | StoreError::ClaimLost(_))) {
                    return Err(e);
                }
                for d in dues {
                    match self.fire_one(d, now) {
                        Ok(a) => applied.push(a),
                        Err(e) if nothing_to_fire(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
        }
    }
}
