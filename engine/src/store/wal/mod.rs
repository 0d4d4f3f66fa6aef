//! The write-ahead log in front of sled: every batch is appended here before its keys are
//! written to sled, and a write is acknowledged once the log holds it durably. Concurrent
//! writers share one `write` (and one `fdatasync`) per group: group commit on a small
//! sequential file instead of a flush of sled's whole IO buffer.
//!
//! The log is a folder of segment files named by the sequence number of their first record.
//! A record is `[payload length u32 LE][crc32 u32 LE][sequence u64 LE][payload]`, the CRC over
//! the sequence and the payload. Segments are filled with zeros when created and then
//! overwritten, so that syncing a group writes data only, not the file's new size (measured:
//! `fdatasync` of 24 KB took 0.15 ms overwriting, 0.22 ms appending). The store deletes old segments once sled has made their
//! records' keys durable (`Upkeep::truncate_log`, in `store/upkeep.rs`); `read` returns what is
//! left, in order.

mod record;
mod segments;
mod writer;

use record::{decode, seal};
use segments::*;

use crate::faults::{FaultPoint, Faults};
use crate::sync::Unpoisoned;
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// A segment is closed and a new one started beyond this size; the store then makes sled
/// durable and deletes the older segments. This bounds what a restart replays: about two
/// segments, ~10,000 commands.
pub const SEGMENT_BYTES: u64 = 8 << 20;

/// Appended records are written out once this many bytes wait, even if nobody waits for them.
const BUFFER_BYTES: usize = 1 << 20;

const HEADER: usize = 16;

/// How often the writer tries a failed group again on its own (`Wal::recover` tries at once).
const RETRY_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log: {0}")]
    Io(#[from] std::io::Error),
    #[error("write-ahead log `{}` is corrupt at byte {offset}, and newer segments follow it", path.display())]
    Corrupt { path: PathBuf, offset: u64 },
    #[error("write-ahead log: a write failed ({0}); writes are refused until it succeeds again")]
    Failed(String),
    #[error("write-ahead log: could not start a new segment ({0}); the current one goes on growing")]
    Rotation(String),
}

/// The log of one store. A dedicated thread writes it: while writers are busy it writes one
/// group after another without waiting to be woken, and each group's writers are woken
/// alone (the next group's sleep on the other condition variable).
pub struct Wal {
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    dir: PathBuf,
    /// Faults injected by tests (none in production).
    faults: Arc<Faults>,
    /// `fdatasync` each group (`Durability::Fsync`), or only `write` it to the OS.
    sync_data: bool,
    state: Mutex<State>,
    /// The writer thread waits here for work.
    work: Condvar,
    /// Writers of group n wait on `done[n % 2]`.
    done: [Condvar; 2],
    /// `rotate` waits here.
    rotations_cv: Condvar,
    /// The segment being written; only the writer thread touches it.
    segment: Mutex<Segment>,
    /// A zero-filled file ready to become the next segment (`prepare_spare`), so that a
    /// rotation does not hold up the groups behind it while it writes 8 MiB of zeros.
    spare: Mutex<bool>,
    /// A segment was closed: older ones can go once sled is durable.
    rotated: AtomicBool,
    /// Groups written and records in them, since this log was opened.
    groups: AtomicU64,
    records: AtomicU64,
    /// Time spent writing (and syncing) groups, in microseconds.
    write_micros: AtomicU64,
    held_back: AtomicU64,
    /// The store is closing: nobody waits for a failed log to recover any more.
    closing: AtomicBool,
}

/// How well group commit is grouping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    pub groups: u64,
    pub records: u64,
    pub write_micros: u64,
    /// Times sled's writes were held back while the log was failing (`sync_all_waiting`).
    pub held_back: u64,
}

struct State {
    /// Records appended and not yet taken by the writer.
    buffer: Vec<u8>,
    next_seq: u64,
    /// Records below this are durable (written, and synced when `sync_data`).
    durable: u64,
    /// Groups taken by the writer so far; the group being filled is number `groups_taken`.
    groups_taken: u64,
    /// Records below this have been taken by the writer.
    taken: u64,
    /// Someone waits for the records below this: the writer takes a group only then (or when
    /// the buffer is large), so that callers who append several records before they wait get
    /// them written and synced together.
    wanted: u64,
    /// The writer thread is waiting for work.
    writer_idle: bool,
    /// `rotate` asked for a new segment after the next group; rotations done so far.
    rotate_wanted: bool,
    rotations: u64,
    /// Records appended whose keys are not yet all in sled.
    unapplied: BTreeSet<u64>,
    /// After an I/O error nothing more is accepted until the failed group is written again
    /// (`stuck`): its writers were told the outcome is unknown.
    failed: Option<String>,
    /// The group whose write or sync failed, tried again at the same offset until it succeeds.
    stuck: Option<Stuck>,
    /// `recover` asks for a try now; tries of a stuck group so far.
    retry_now: bool,
    retries: u64,
    /// The last asked-for rotation could not start a new segment.
    rotation_failed: Option<String>,
    stop: bool,
    /// Called (by the writer thread) once the record is durable: `when_durable`.
    callbacks: Vec<(u64, Callback)>,
}

impl State {
    /// The log's sequence numbers: what is durable was taken by the writer, and what was
    /// taken was appended (`durable ≤ taken ≤ next_seq`).
    fn check(&self) {
        assert!(
            self.durable <= self.taken && self.taken <= self.next_seq,
            "log sequence numbers out of order: durable {} taken {} next {}",
            self.durable,
            self.taken,
            self.next_seq
        );
    }
}

/// Told whether a record became durable.
pub type Callback = Box<dyn FnOnce(Result<(), WalError>) + Send>;

struct Segment {
    file: File,
    bytes: u64,
}

/// A group that failed to become durable, kept to be written again.
struct Stuck {
    group: Vec<u8>,
    upto: u64,
}

/// What `Wal::read` found.
pub struct Recovered {
    /// Records in sequence order.
    pub records: Vec<(u64, Vec<u8>)>,
    /// The sequence number after the last record (or after the newest segment's start).
    pub next_seq: u64,
    /// No segment was found: a new log.
    pub new: bool,
}

impl Wal {
    /// Starts a new segment at `next_seq` in `dir`. Older segments stay until `drop_before`.
    pub fn create(dir: &Path, next_seq: u64, sync_data: bool) -> Result<Wal, WalError> {
        Wal::create_with(dir, next_seq, sync_data, Arc::default())
    }

    /// `create`, with faults a test may arm. With too little free space for a zero-filled
    /// segment the new one starts empty and grows as it is written (slower to sync, but a
    /// store opens on a nearly full disk).
    pub fn create_with(dir: &Path, next_seq: u64, sync_data: bool, faults: Arc<Faults>) -> Result<Wal, WalError> {
        std::fs::create_dir_all(dir)?;
        let file = match new_segment(dir, next_seq, &faults) {
            Ok(file) => file,
            Err(e) if is_no_space(&e) => growing_segment(dir, next_seq)?,
            Err(e) => return Err(e),
        };
        let shared = Arc::new(Shared {
            faults,
            dir: dir.to_path_buf(),
            sync_data,
            state: Mutex::new(State {
                buffer: Vec::new(),
                next_seq,
                durable: next_seq,
                groups_taken: 0,
                taken: next_seq,
                wanted: next_seq,
                writer_idle: false,
                rotate_wanted: false,
                rotations: 0,
                unapplied: BTreeSet::new(),
                failed: None,
                stuck: None,
                retry_now: false,
                retries: 0,
                rotation_failed: None,
                stop: false,
                callbacks: Vec::new(),
            }),
            work: Condvar::new(),
            done: [Condvar::new(), Condvar::new()],
            rotations_cv: Condvar::new(),
            segment: Mutex::new(Segment { file, bytes: 0 }),
            spare: Mutex::new(false),
            rotated: AtomicBool::new(false),
            groups: AtomicU64::new(0),
            records: AtomicU64::new(0),
            write_micros: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
            closing: AtomicBool::new(false),
        });
        let writer = {
            let shared = shared.clone();
            crate::sync::spawn_guarded("caseflow-wal", move || shared.run_writer())?
        };
        Ok(Wal { shared, writer: Some(writer) })
    }

    /// Reads every record of the segments in `dir`, in order. Segments before a gap in the
    /// sequence were deleted (oldest first) and are skipped; a torn record at the end of the
    /// newest segment (a crash while writing it) ends the log, and the file is cut there so
    /// that later segments follow whole records. Bytes that are not a record anywhere else are
    /// corruption: a segment is synced whole before the next one is created.
    pub fn read(dir: &Path) -> Result<Recovered, WalError> {
        let mut segments = segments(dir)?;
        segments.sort();
        let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut next_seq = 0;
        let last = segments.len().saturating_sub(1);
        for (i, (first, path)) in segments.iter().enumerate() {
            // A segment holds the records from its first up to the next segment's first. If
            // the previous one did not end there, the segments between were deleted.
            if i == 0 || next_seq != *first {
                records.clear();
            }
            let mut bytes = Vec::new();
            File::open(path)?.read_to_end(&mut bytes)?;
            let mut offset = 0;
            let mut expected = *first;
            while let Some((seq, payload, len)) = decode(&bytes[offset..]) {
                if seq != expected {
                    break;
                }
                records.push((seq, payload.to_vec()));
                expected += 1;
                offset += len;
            }
            // Zeros are the unused rest of the segment.
            if bytes[offset..].iter().any(|b| *b != 0) {
                if i != last {
                    return Err(WalError::Corrupt { path: path.clone(), offset: offset as u64 });
                }
                let file = OpenOptions::new().write(true).open(path)?;
                file.set_len(offset as u64)?;
                file.sync_all()?;
            }
            next_seq = expected;
        }
        // What is replayed is contiguous and ends where the next record will start.
        assert!(records.windows(2).all(|w| w[1].0 == w[0].0 + 1), "replayed records are not contiguous");
        assert!(
            records.last().is_none_or(|(last, _)| last + 1 == next_seq),
            "the log's next record is not after its last"
        );
        Ok(Recovered { records, next_seq, new: segments.is_empty() })
    }

    /// Appends a record and returns its sequence number: `encode` writes the payload, given
    /// the number (so that keys can hold it). The caller writes its keys to sled next and
    /// then calls `applied`.
    pub fn append(&self, encode: impl FnOnce(u64, &mut Vec<u8>)) -> Result<u64, WalError> {
        let sh = &*self.shared;
        let mut st = sh.lock();
        if let Some(e) = &st.failed {
            return Err(WalError::Failed(e.clone()));
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.check();
        let start = st.buffer.len();
        st.buffer.extend_from_slice(&[0; HEADER]);
        encode(seq, &mut st.buffer);
        seal(&mut st.buffer[start..], seq);
        st.unapplied.insert(seq);
        if st.buffer.len() >= BUFFER_BYTES && st.writer_idle {
            sh.work.notify_one();
        }
        Ok(seq)
    }

    /// The I/O error that stopped the log, if one did: nothing more is accepted after it.
    pub fn failed(&self) -> Option<String> {
        self.shared.lock().failed.clone()
    }

    /// The keys of record `seq` are all in sled.
    pub fn applied(&self, seq: u64) {
        self.shared.lock().unapplied.remove(&seq);
    }

    /// `applied` for many records at once.
    pub fn applied_all(&self, seqs: &[u64]) {
        let mut st = self.shared.lock();
        for seq in seqs {
            st.unapplied.remove(seq);
        }
    }

    /// Blocks until record `seq` is durable.
    pub fn sync(&self, seq: u64) -> Result<(), WalError> {
        let sh = &*self.shared;
        let mut st = sh.lock();
        loop {
            if let Some(e) = &st.failed {
                return Err(WalError::Failed(e.clone()));
            }
            if st.durable > seq {
                return Ok(());
            }
            // The group being written, or the one being filled.
            let group = if seq < st.taken { st.groups_taken - 1 } else { st.groups_taken };
            st.wanted = st.wanted.max(seq + 1);
            if st.writer_idle {
                sh.work.notify_one();
            }
            st = sh.done[(group % 2) as usize].wait(st).unpoisoned();
        }
    }

    /// Calls `done` once record `seq` is durable (at once if it is), on the writer thread: for
    /// callers that wait without blocking a thread (the HTTP server's async handlers). `done`
    /// must be quick.
    pub fn when_durable(&self, seq: u64, done: Callback) {
        let sh = &*self.shared;
        let mut st = sh.lock();
        if let Some(e) = &st.failed {
            let e = WalError::Failed(e.clone());
            drop(st);
            return done(Err(e));
        }
        if st.durable > seq {
            drop(st);
            return done(Ok(()));
        }
        st.callbacks.push((seq, done));
        st.wanted = st.wanted.max(seq + 1);
        if st.writer_idle {
            sh.work.notify_one();
        }
    }

    /// Makes everything appended so far durable (before sled writes its log: see `Store`).
    pub fn sync_all(&self) -> Result<(), WalError> {
        let last = self.shared.lock().next_seq.checked_sub(1);
        match last {
            Some(seq) => self.sync(seq),
            None => Ok(()),
        }
    }

    /// `sync_all` for sled's `before_log_write`: while the log is failing, waits for it to
    /// recover instead of failing. sled takes any failed write of its own file as fatal (it
    /// refuses everything until reopened), and a log that failed on a full disk recovers once
    /// space is freed; until then sled's file must not get keys whose records are not durable.
    /// Gives up once the store is closing (`close`).
    pub fn sync_all_waiting(&self) -> Result<(), WalError> {
        let mut counted = false;
        loop {
            match self.sync_all() {
                Err(WalError::Failed(e)) if !self.shared.closing.load(Ordering::SeqCst) => {
                    if !counted {
                        self.shared.held_back.fetch_add(1, Ordering::Relaxed);
                        counted = true;
                    }
                    let st = self.shared.lock();
                    if st.failed.is_none() {
                        continue;
                    }
                    // Woken after each try of the stuck group.
                    let _ = self.shared.rotations_cv.wait_timeout(st, RETRY_EVERY);
                    let _ = e;
                }
                other => return other,
            }
        }
    }

    /// The store is closing: `sync_all_waiting` stops waiting.
    pub fn close(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        let _st = self.shared.lock();
        self.shared.rotations_cv.notify_all();
    }

    /// Writes and syncs everything appended so far and starts a new segment, so that every
    /// older segment can be deleted once sled holds their keys (a checkpoint, shutdown).
    pub fn rotate(&self) -> Result<(), WalError> {
        let sh = &*self.shared;
        let mut st = sh.lock();
        let target = st.rotations + 1;
        st.rotate_wanted = true;
        sh.work.notify_one();
        while st.rotations < target {
            if let Some(e) = &st.failed {
                return Err(WalError::Failed(e.clone()));
            }
            st = sh.rotations_cv.wait(st).unpoisoned();
        }
        match st.rotation_failed.take() {
            Some(e) => Err(WalError::Rotation(e)),
            None => Ok(()),
        }
    }

    /// Tries the failed group again now (a full disk may have been freed) and says whether the
    /// log takes writes again. The writer also tries by itself every `RETRY_EVERY`.
    pub fn recover(&self) -> Result<(), WalError> {
        let sh = &*self.shared;
        let mut st = sh.lock();
        if st.failed.is_none() {
            return Ok(());
        }
        let target = st.retries + 1;
        st.retry_now = true;
        sh.work.notify_one();
        while st.retries < target && st.failed.is_some() && !st.stop {
            st = sh.rotations_cv.wait(st).unpoisoned();
        }
        st.failed.clone().map_or(Ok(()), |e| Err(WalError::Failed(e)))
    }

    /// Zero-fills the file the next rotation will use, unless one is ready. The store calls
    /// it after each truncation, outside the writer thread.
    pub fn prepare_spare(&self) -> Result<(), WalError> {
        let mut ready = self.shared.spare.lock().unpoisoned();
        if !*ready {
            let path = self.shared.dir.join(SPARE);
            if let Err(e) = zero_filled(&path, &self.shared.faults) {
                // Half a spare is no spare: the next rotation makes its own segment.
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
            *ready = true;
        }
        Ok(())
    }

    /// Whether a segment was closed since the last call.
    pub fn take_rotated(&self) -> bool {
        self.shared.rotated.swap(false, Ordering::SeqCst)
    }

    /// Every record below this has its keys in sled.
    pub fn applied_below(&self) -> u64 {
        let st = self.shared.lock();
        st.unapplied.first().copied().unwrap_or(st.next_seq)
    }

    /// Deletes the segments that hold only records below `seq`, oldest first (sled has made
    /// their keys durable). The segment being written is kept.
    pub fn drop_before(&self, seq: u64) -> Result<usize, WalError> {
        let mut segments = segments(&self.shared.dir)?;
        segments.sort();
        let mut dropped = 0;
        for pair in segments.windows(2) {
            let ((_, path), (next_first, _)) = (&pair[0], &pair[1]);
            if *next_first > seq {
                break;
            }
            match std::fs::remove_file(path) {
                // Another truncation (or shutdown's) got there first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
            dropped += 1;
        }
        Ok(dropped)
    }

    pub fn stats(&self) -> WalStats {
        let sh = &*self.shared;
        WalStats {
            groups: sh.groups.load(Ordering::Relaxed),
            records: sh.records.load(Ordering::Relaxed),
            write_micros: sh.write_micros.load(Ordering::Relaxed),
            held_back: sh.held_back.load(Ordering::Relaxed),
        }
    }

    /// How many segment files the log has.
    #[cfg(test)]
    pub fn segment_count(&self) -> Result<usize, WalError> {
        Ok(segments(&self.shared.dir)?.len())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.work.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(payload: &[u8]) -> impl FnOnce(u64, &mut Vec<u8>) + '_ {
        move |_, out| out.extend_from_slice(payload)
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("caseflow-wal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn records_come_back_in_order_and_a_torn_tail_is_cut() {
        let dir = scratch("torn");
        let wal = Wal::create(&dir, 7, true).unwrap();
        for i in 0..3u8 {
            let seq = wal.append(bytes(&[i; 5])).unwrap();
            wal.sync(seq).unwrap();
        }
        drop(wal);
        let path = dir.join(segment_name(7));
        let mut f = OpenOptions::new().write(true).open(&path).unwrap();
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(3 * (HEADER as u64 + 5))).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap(); // half a header
        drop(f);
        let r = Wal::read(&dir).unwrap();
        assert_eq!(r.records, vec![(7, vec![0; 5]), (8, vec![1; 5]), (9, vec![2; 5])]);
        assert_eq!(r.next_seq, 10);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * (HEADER as u64 + 5), "the torn bytes are cut");
        assert_eq!(Wal::read(&dir).unwrap().records.len(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unsynced_records_are_not_in_the_file_and_synced_ones_are() {
        let dir = scratch("group");
        let wal = Wal::create(&dir, 0, false).unwrap();
        let a = wal.append(bytes(b"a")).unwrap();
        let b = wal.append(bytes(b"b")).unwrap();
        assert!(Wal::read(&dir).unwrap().records.is_empty());
        wal.sync(a).unwrap();
        // One group wrote both.
        assert_eq!(Wal::read(&dir).unwrap().records, vec![(a, b"a".to_vec()), (b, b"b".to_vec())]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn callbacks_are_told_once_their_record_is_durable() {
        let dir = scratch("callbacks");
        let wal = Wal::create(&dir, 0, true).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let a = wal.append(bytes(b"a")).unwrap();
        let t = tx.clone();
        wal.when_durable(a, Box::new(move |r| t.send(("a", r.is_ok())).unwrap()));
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap(), ("a", true));
        assert_eq!(Wal::read(&dir).unwrap().records.len(), 1, "durable when told");
        // Already durable: told at once, on the caller's thread.
        wal.when_durable(a, Box::new(move |r| tx.send(("again", r.is_ok())).unwrap()));
        assert_eq!(rx.try_recv().unwrap(), ("again", true));
        drop(wal);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn segments_rotate_and_older_ones_are_dropped_once_applied() {
        let dir = scratch("rotate");
        let wal = Wal::create(&dir, 0, false).unwrap();
        let big = vec![1u8; (SEGMENT_BYTES / 3) as usize];
        let mut seqs = Vec::new();
        for _ in 0..7 {
            let seq = wal.append(bytes(&big)).unwrap();
            wal.sync(seq).unwrap();
            seqs.push(seq);
        }
        assert!(wal.take_rotated());
        assert!(!wal.take_rotated());
        wal.prepare_spare().unwrap();
        for _ in 0..3 {
            let seq = wal.append(bytes(&big)).unwrap();
            wal.sync(seq).unwrap();
            seqs.push(seq);
        }
        assert!(wal.take_rotated(), "rotated into the spare");
        assert!(!dir.join(SPARE).exists());
        assert_eq!(wal.segment_count().unwrap(), 4);
        // Nothing applied yet: nothing may go.
        assert_eq!(wal.drop_before(wal.applied_below()).unwrap(), 0);
        for s in &seqs[..4] {
            wal.applied(*s);
        }
        assert_eq!(wal.applied_below(), 4);
        assert_eq!(wal.drop_before(wal.applied_below()).unwrap(), 1);
        let r = Wal::read(&dir).unwrap();
        assert_eq!(r.records.iter().map(|(s, _)| *s).collect::<Vec<_>>(), (3..10).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_gap_means_older_segments_were_dropped_and_a_bad_record_before_newer_ones_is_corruption() {
        let dir = scratch("gap");
        std::fs::create_dir_all(&dir).unwrap();
        let wal = Wal::create(&dir, 0, false).unwrap();
        let seq = wal.append(bytes(b"old")).unwrap();
        wal.sync(seq).unwrap();
        drop(wal);
        let wal = Wal::create(&dir, 5, false).unwrap();
        let seq = wal.append(bytes(b"new")).unwrap();
        wal.sync(seq).unwrap();
        drop(wal);
        assert_eq!(Wal::read(&dir).unwrap().records, vec![(5, b"new".to_vec())]);

        let mut f = OpenOptions::new().write(true).open(dir.join(segment_name(5))).unwrap();
        f.write_all(&[0xff; 4]).unwrap(); // the length of its only record
        drop(f);
        Wal::create(&dir, 9, false).unwrap();
        assert!(matches!(Wal::read(&dir), Err(WalError::Corrupt { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn armed(dir: &Path) -> (Wal, Arc<Faults>) {
        let faults = Arc::new(Faults::default());
        (Wal::create_with(dir, 0, true, faults.clone()).unwrap(), faults)
    }

    #[test]
    fn a_group_whose_write_failed_is_written_again_whole_and_the_log_stays_contiguous() {
        use crate::faults::NO_SPACE;
        let dir = scratch("write-fault");
        let (wal, faults) = armed(&dir);
        let a = wal.append(bytes(b"first")).unwrap();
        wal.sync(a).unwrap();
        // The write fails half way (and goes on failing): the writer is told, nothing more
        // is taken in.
        faults.arm(FaultPoint::LogWrite, u32::MAX, NO_SPACE);
        let b = wal.append(bytes(b"second, torn by the fault")).unwrap();
        assert!(matches!(wal.sync(b), Err(WalError::Failed(_))));
        assert!(wal.failed().is_some());
        assert!(matches!(wal.append(bytes(b"refused")), Err(WalError::Failed(_))));
        assert!(wal.recover().is_err(), "still failing");
        // Space is freed: the group goes through again, at its offset, and writes go on.
        faults.clear();
        wal.recover().unwrap();
        assert!(wal.failed().is_none());
        let c = wal.append(bytes(b"third")).unwrap();
        wal.sync(c).unwrap();
        drop(wal);
        let records: Vec<Vec<u8>> = Wal::read(&dir).unwrap().records.into_iter().map(|r| r.1).collect();
        assert_eq!(records, vec![b"first".to_vec(), b"second, torn by the fault".to_vec(), b"third".to_vec()]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_sync_is_retried_by_rewriting_the_group() {
        use crate::faults::IO_ERROR;
        let dir = scratch("sync-fault");
        let (wal, faults) = armed(&dir);
        faults.arm(FaultPoint::LogSync, 1, IO_ERROR);
        let a = wal.append(bytes(b"a")).unwrap();
        let e = wal.sync(a).unwrap_err();
        assert!(e.to_string().contains("Input/output error"), "{e}");
        // The writer tries again by itself; `recover` does not wait for its timer.
        wal.recover().unwrap();
        let b = wal.append(bytes(b"b")).unwrap();
        wal.sync(b).unwrap();
        drop(wal);
        assert_eq!(Wal::read(&dir).unwrap().records, vec![(0, b"a".to_vec()), (1, b"b".to_vec())]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_rotation_that_fails_leaves_the_segment_growing_and_loses_nothing() {
        use crate::faults::NO_SPACE;
        let dir = scratch("rotation-fault");
        let (wal, faults) = armed(&dir);
        let big = vec![7u8; (SEGMENT_BYTES / 3) as usize];
        // No room for a new segment (nor a spare): the full one goes on growing.
        faults.arm(FaultPoint::LogCreate, u32::MAX, NO_SPACE);
        let mut seqs = Vec::new();
        for _ in 0..4 {
            let seq = wal.append(bytes(&big)).unwrap();
            wal.sync(seq).unwrap();
            seqs.push(seq);
        }
        assert!(wal.prepare_spare().is_err(), "the disk is still full");
        assert!(!dir.join(SPARE).exists(), "no half spare is left");
        assert!(matches!(wal.rotate(), Err(WalError::Rotation(_))));
        assert_eq!(wal.segment_count().unwrap(), 1, "no half-made segment is left");
        assert!(std::fs::metadata(dir.join(segment_name(0))).unwrap().len() > SEGMENT_BYTES);
        faults.clear();
        // A spare whose rename fails: that rotation fails too, and the next one makes its own.
        wal.prepare_spare().unwrap();
        faults.arm(FaultPoint::LogRename, 1, NO_SPACE);
        assert!(matches!(wal.rotate(), Err(WalError::Rotation(_))));
        let seq = wal.append(bytes(b"after")).unwrap();
        wal.sync(seq).unwrap();
        wal.rotate().unwrap();
        assert_eq!(wal.segment_count().unwrap(), 2);
        drop(wal);
        let r = Wal::read(&dir).unwrap();
        assert_eq!(r.records.len(), 5);
        assert_eq!(r.records[4].1, b"after".to_vec());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_log_opens_on_a_disk_without_room_for_a_zero_filled_segment() {
        use crate::faults::NO_SPACE;
        let dir = scratch("no-room");
        let faults = Arc::new(Faults::default());
        faults.arm(FaultPoint::LogCreate, 1, NO_SPACE);
        let wal = Wal::create_with(&dir, 3, true, faults).unwrap();
        let seq = wal.append(bytes(b"small")).unwrap();
        wal.sync(seq).unwrap();
        assert_eq!(std::fs::metadata(dir.join(segment_name(3))).unwrap().len(), HEADER as u64 + 5, "it grows");
        drop(wal);
        assert_eq!(Wal::read(&dir).unwrap().records, vec![(3, b"small".to_vec())]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
