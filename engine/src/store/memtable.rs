//! Recent writes, held in memory until they are applied to sled in bulk.
//!
//! Every batch is durable in the write-ahead log before it is acknowledged; its keys then go
//! here instead of into sled one by one. Once the table holds enough, the store's applier
//! thread freezes it (a new table takes the writes) and applies its final state to sled: a key written several times costs sled one operation, and
//! one inserted and removed within the window (a task's inbox and timer entries, when the task
//! is done soon after it opened) costs none. Readers look here first (the active table, then
//! the frozen one being applied) and in sled after; a key leaves the frozen table only once
//! sled holds its value, so a reader never sees an older value than the one it would have
//! seen without the table.
//!
//! A record's log segment may be deleted only once its keys are in sled: the table keeps the
//! sequence numbers of the batches it holds and gives them back when they are applied.

use crate::sync::Unpoisoned;
use sled::IVec;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// A key's latest write: its value, or `None` once removed.
pub(crate) type Write = Option<IVec>;

/// Writes in key order, and the last key they are complete up to when cut short.
pub(crate) type Chunk = (Vec<(Vec<u8>, Write)>, Option<Vec<u8>>);

/// Entries and bytes past which the table is applied to sled. 8,192 / 4 MiB: 20,526
/// reference cases/s at 289 MiB resident with a million waiting (16,384 / 8 MiB: 20,992/s
/// but 322 MiB; 4,096 / 2 MiB: 19,461/s, 288 MiB; measured with the writer applying).
const APPLY_AT_ENTRIES: usize = 8_192;
const APPLY_AT_BYTES: usize = 4 << 20;
/// Tables at least this large are applied by several threads.
const PARALLEL_APPLY_AT: usize = 1_024;
/// Past this many times the threshold (an apply is slower than the writers), writers wait for
/// the running apply instead of growing the table further.
const BACKPRESSURE_FACTOR: usize = 2;

#[derive(Default)]
pub(crate) struct Memtable {
    tables: RwLock<Tables>,
    /// Held by whoever applies the frozen table: the applier thread, or a writer that found
    /// the table far over its threshold.
    applying: Mutex<()>,
    /// An apply was asked for and the applier has not started it yet.
    requested: Mutex<bool>,
    wake: std::sync::Condvar,
    stopping: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Tables {
    active: BTreeMap<Vec<u8>, Write>,
    active_seqs: Vec<u64>,
    active_bytes: usize,
    /// Being applied to sled (or left by an apply that failed, to be tried again).
    frozen: Option<Arc<Frozen>>,
}

/// A table taken out of the write path, to be applied to sled.
pub(crate) struct Frozen {
    pub entries: BTreeMap<Vec<u8>, Write>,
    /// The batches whose keys it holds.
    pub seqs: Vec<u64>,
}

/// What a writer should do after adding a batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pressure {
    None,
    /// Ask the applier thread to apply the table.
    Apply,
    /// Wait for the running apply, then apply the table itself.
    Wait,
}

/// Threads that apply parts of a frozen table beside the caller of `apply`: keys spread over a
/// large tree mostly miss sled's cache, each a page read and a node rebuilt. Writers did that
/// on every core before the memtable; one thread alone fell behind a million timers firing
/// (and so made the timer driver wait on backpressure). The helpers live as long as the store:
/// threads spawned per apply each left an allocator heap behind, holding the nodes they built
/// (RSS 283 → 310 MiB loading a million cases).
pub(crate) struct ApplyHelpers {
    workers: Vec<(std::sync::mpsc::Sender<Part>, std::thread::JoinHandle<()>)>,
}

/// Entries `skip..skip + take` of a frozen table, and where to report.
type Part = (Arc<Frozen>, usize, usize, std::sync::mpsc::Sender<Result<(), sled::Error>>);

fn write_part<'a>(tree: &sled::Tree, part: impl Iterator<Item = (&'a Vec<u8>, &'a Write)>) -> Result<(), sled::Error> {
    for (k, v) in part {
        match v {
            Some(v) => tree.insert(k.as_slice(), v.clone())?,
            None => tree.remove(k.as_slice())?,
        };
    }
    Ok(())
}

impl ApplyHelpers {
    /// One helper per core beyond the first (up to 3).
    pub fn start(tree: &sled::Tree) -> std::io::Result<ApplyHelpers> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
        let mut workers = Vec::new();
        for i in 1..cores {
            let (tx, rx) = std::sync::mpsc::channel::<Part>();
            let tree = tree.clone();
            let handle = crate::sync::spawn_guarded(&format!("caseflow-apply-{i}"), move || {
                for (frozen, skip, take, done) in rx {
                    let _ = done.send(write_part(&tree, frozen.entries.iter().skip(skip).take(take)));
                }
            })?;
            workers.push((tx, handle));
        }
        Ok(ApplyHelpers { workers })
    }
}

impl Drop for ApplyHelpers {
    fn drop(&mut self) {
        for (tx, handle) in std::mem::take(&mut self.workers) {
            drop(tx);
            let _ = handle.join();
        }
    }
}

/// Applies one frozen table to `tree`: one an earlier apply left (it failed), or else the
/// active table; a large one is split by key range with the helpers. The caller holds
/// `apply_lock`. On success the table's log records are marked applied; on failure it stays
/// frozen and visible, to be tried again.
pub(crate) fn apply(
    memtable: &Memtable,
    tree: &sled::Tree,
    helpers: &ApplyHelpers,
    wal: Option<&crate::store::wal::Wal>,
    _lock: &MutexGuard<'_, ()>,
) -> Result<(), sled::Error> {
    let Some(frozen) = memtable.freeze() else { return Ok(()) };
    let len = frozen.entries.len();
    if helpers.workers.is_empty() || len < PARALLEL_APPLY_AT {
        write_part(tree, frozen.entries.iter())?;
    } else {
        let part = len.div_ceil(helpers.workers.len() + 1);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut sent = 0;
        for (i, (tx, _)) in helpers.workers.iter().enumerate() {
            if tx.send((frozen.clone(), (i + 1) * part, part, done_tx.clone())).is_ok() {
                sent += 1;
            } else {
                // A helper is gone (it cannot be, short of a panic): write its part here.
                write_part(tree, frozen.entries.iter().skip((i + 1) * part).take(part))?;
            }
        }
        drop(done_tx);
        let own = write_part(tree, frozen.entries.iter().take(part));
        let mut result = own;
        for _ in 0..sent {
            let r = done_rx
                .recv()
                .unwrap_or_else(|_| Err(sled::Error::ReportableBug("a memtable apply helper stopped".into())));
            result = result.and(r);
        }
        result?;
    }
    memtable.applied(&frozen);
    if let Some(wal) = wal {
        wal.applied_all(&frozen.seqs);
    }
    Ok(())
}

impl Memtable {
    /// Adds the writes of batch `seq`, in order (a later write of a key replaces an earlier).
    pub fn insert(&self, seq: u64, ops: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Pressure {
        let mut t = self.tables.write().unpoisoned();
        for (k, v) in ops {
            t.active_bytes += k.len() + v.as_ref().map_or(0, Vec::len) + 16;
            t.active.insert(k, v.map(IVec::from));
        }
        t.active_seqs.push(seq);
        let over =
            |factor: usize| t.active.len() >= APPLY_AT_ENTRIES * factor || t.active_bytes >= APPLY_AT_BYTES * factor;
        match (over(1), over(BACKPRESSURE_FACTOR)) {
            (_, true) => Pressure::Wait,
            (true, false) => Pressure::Apply,
            _ => Pressure::None,
        }
    }

    /// The latest write of `key` held here, if any: `Some(None)` means removed.
    pub fn get(&self, key: &[u8]) -> Option<Write> {
        let t = self.tables.read().unpoisoned();
        if let Some(w) = t.active.get(key) {
            return Some(w.clone());
        }
        t.frozen.as_ref()?.entries.get(key).cloned()
    }

    /// Up to `limit` writes held here with keys from `from` (inclusive) below `to`, in key
    /// order. The second value is the last key the answer is complete up to (inclusive), when
    /// it was cut at `limit`; `None`: complete to `to`.
    pub fn range(&self, from: &[u8], to: Option<&[u8]>, limit: usize) -> Chunk {
        let t = self.tables.read().unpoisoned();
        let bounds = (Bound::Included(from), to.map_or(Bound::Unbounded, Bound::Excluded));
        let take = |m: &BTreeMap<Vec<u8>, Write>| -> Chunk {
            let got: Vec<_> = m.range::<[u8], _>(bounds).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect();
            let cut = (got.len() == limit).then(|| got.last().map(|(k, _)| k.clone())).flatten();
            (got, cut)
        };
        let (active, active_cut) = take(&t.active);
        let (frozen, frozen_cut) = t.frozen.as_ref().map(|f| take(&f.entries)).unwrap_or_default();
        drop(t);
        // Each side is complete up to its cut: the merge is complete up to the smaller one.
        let cut = match (active_cut, frozen_cut) {
            (Some(a), Some(f)) => Some(a.min(f)),
            (a, f) => a.or(f),
        };
        let mut merged: BTreeMap<Vec<u8>, Write> = frozen.into_iter().collect();
        merged.extend(active);
        let within = |k: &Vec<u8>| cut.as_ref().is_none_or(|c| k <= c);
        (merged.into_iter().filter(|(k, _)| within(k)).collect(), cut)
    }

    /// Takes the lock that makes one writer at a time apply: `None` if another holds it and
    /// `wait` is false.
    pub fn apply_lock(&self, wait: bool) -> Option<MutexGuard<'_, ()>> {
        match wait {
            true => Some(self.applying.lock().unpoisoned()),
            false => match self.applying.try_lock() {
                Ok(g) => Some(g),
                Err(std::sync::TryLockError::Poisoned(p)) => Some(Err(p).unpoisoned()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            },
        }
    }

    /// The table to apply (the caller holds `apply_lock`): one an earlier apply left, or else
    /// the active table, frozen. `None` when there is nothing to apply.
    pub fn freeze(&self) -> Option<Arc<Frozen>> {
        let mut t = self.tables.write().unpoisoned();
        if let Some(f) = &t.frozen {
            return Some(f.clone());
        }
        if t.active.is_empty() && t.active_seqs.is_empty() {
            return None;
        }
        // Every write came with its batch's sequence number: keys without one could never be
        // released from the log's keeping, nor the log from theirs.
        assert!(!t.active_seqs.is_empty(), "memtable entries without a log record");
        let frozen =
            Arc::new(Frozen { entries: std::mem::take(&mut t.active), seqs: std::mem::take(&mut t.active_seqs) });
        t.active_bytes = 0;
        t.frozen = Some(frozen.clone());
        Some(frozen)
    }

    /// Asks the applier thread to apply the table.
    pub fn request_apply(&self) {
        let mut requested = self.requested.lock().unpoisoned();
        if !*requested {
            *requested = true;
            self.wake.notify_one();
        }
    }

    /// The applier thread's wait for the next request: `false` once the store closes.
    pub fn next_request(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let mut requested = self.requested.lock().unpoisoned();
        while !*requested && !self.stopping.load(SeqCst) {
            requested = self.wake.wait(requested).unpoisoned();
        }
        *requested = false;
        !self.stopping.load(SeqCst)
    }

    /// Ends the applier thread's loop.
    pub fn stop(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        let _requested = self.requested.lock().unpoisoned();
        self.wake.notify_all();
    }

    /// Forgets the frozen table: sled holds all of it now.
    pub fn applied(&self, table: &Arc<Frozen>) {
        let mut t = self.tables.write().unpoisoned();
        // The hand-off: only the table that was applied leaves, and only once sled holds it.
        assert!(
            t.frozen.as_ref().is_some_and(|f| Arc::ptr_eq(f, table)),
            "the memtable's frozen table changed while it was being applied"
        );
        t.frozen = None;
    }

    /// Entries held, active and frozen.
    pub fn len(&self) -> usize {
        let t = self.tables.read().unpoisoned();
        t.active.len() + t.frozen.as_ref().map_or(0, |f| f.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(list: &[(&str, Option<&str>)]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        list.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()))).collect()
    }

    fn keys(got: &[(Vec<u8>, Write)]) -> Vec<(String, Option<String>)> {
        got.iter()
            .map(|(k, v)| {
                (String::from_utf8(k.clone()).unwrap(), v.as_ref().map(|v| String::from_utf8(v.to_vec()).unwrap()))
            })
            .collect()
    }

    #[test]
    fn the_latest_write_wins_and_a_removal_is_remembered() {
        let m = Memtable::default();
        assert_eq!(m.insert(1, ops(&[("a", Some("1")), ("b", Some("1"))])), Pressure::None);
        m.insert(2, ops(&[("a", Some("2")), ("b", None)]));
        assert_eq!(m.get(b"a"), Some(Some(IVec::from("2"))));
        assert_eq!(m.get(b"b"), Some(None), "removed here: sled's value must not show");
        assert_eq!(m.get(b"c"), None, "not here: ask sled");
    }

    #[test]
    fn a_frozen_table_stays_visible_until_applied_and_newer_writes_win_over_it() {
        let m = Memtable::default();
        m.insert(1, ops(&[("a", Some("old")), ("b", Some("kept"))]));
        let _lock = m.apply_lock(false).unwrap();
        assert!(m.apply_lock(false).is_none(), "one apply at a time");
        let frozen = m.freeze().unwrap();
        assert_eq!(frozen.seqs, vec![1]);
        m.insert(2, ops(&[("a", Some("new"))]));
        assert_eq!(m.get(b"a"), Some(Some(IVec::from("new"))));
        assert_eq!(m.get(b"b"), Some(Some(IVec::from("kept"))));
        assert!(Arc::ptr_eq(&m.freeze().unwrap(), &frozen), "an unapplied table is applied first");
        m.applied(&frozen);
        assert_eq!(m.get(b"b"), None);
        let second = m.freeze().unwrap();
        assert_eq!(second.seqs, vec![2]);
        m.applied(&second);
        assert!(m.freeze().is_none());
        assert_eq!(m.len(), 0);
    }

    #[test]
    #[should_panic(expected = "frozen table changed while it was being applied")]
    fn a_table_applied_twice_is_a_bug_caught_at_the_hand_off() {
        let m = Memtable::default();
        m.insert(1, ops(&[("a", Some("x"))]));
        let frozen = m.freeze().unwrap();
        m.applied(&frozen);
        m.applied(&frozen);
    }

    #[test]
    fn ranges_merge_both_tables_and_say_where_a_cut_answer_ends() {
        let m = Memtable::default();
        m.insert(1, ops(&[("k1", Some("f")), ("k3", Some("f")), ("k5", Some("f")), ("z", Some("f"))]));
        let _lock = m.apply_lock(true);
        m.freeze();
        m.insert(2, ops(&[("k2", Some("a")), ("k3", None), ("k4", Some("a"))]));
        let (all, cut) = m.range(b"k", Some(b"l"), 10);
        assert_eq!(cut, None);
        assert_eq!(
            keys(&all),
            vec![
                ("k1".into(), Some("f".into())),
                ("k2".into(), Some("a".into())),
                ("k3".into(), None),
                ("k4".into(), Some("a".into())),
                ("k5".into(), Some("f".into())),
            ]
        );
        // Two from each table: the frozen one is complete to k3, the active one to k3 too.
        let (some, cut) = m.range(b"k", Some(b"l"), 2);
        assert_eq!(cut, Some(b"k3".to_vec()));
        assert_eq!(
            keys(&some),
            vec![("k1".into(), Some("f".into())), ("k2".into(), Some("a".into())), ("k3".into(), None)]
        );
        let (rest, cut) = m.range(b"k3\0", Some(b"l"), 2);
        assert_eq!(cut, None);
        assert_eq!(keys(&rest), vec![("k4".into(), Some("a".into())), ("k5".into(), Some("f".into()))]);
    }

    #[test]
    fn writers_are_told_to_apply_and_then_to_wait() {
        let m = Memtable::default();
        let mut seen = Vec::new();
        for i in 0..APPLY_AT_ENTRIES * BACKPRESSURE_FACTOR {
            let p = m.insert(i as u64, vec![(format!("{i:08}").into_bytes(), Some(vec![]))]);
            if seen.last() != Some(&p) {
                seen.push(p);
            }
        }
        assert_eq!(seen, vec![Pressure::None, Pressure::Apply, Pressure::Wait]);
    }
}
