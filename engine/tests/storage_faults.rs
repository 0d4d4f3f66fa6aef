//! What a write's answer means when storage fails, with faults injected: a write that is
//! refused was not applied; a write that was applied is never reported as refused; and once
//! the fault is gone, writes are taken again without a restart.

use caseflow_engine::store::{Batch, StoreError};
use caseflow_engine::Storage;
use caseflow_engine::Store;

fn write(store: &Store, i: u32) -> Result<u64, StoreError> {
    let mut b = Batch::default();
    b.insert(format!("k/{i:06}"), vec![7u8; 64]);
    store.write(b)
}

#[test]
fn a_refused_write_was_not_applied_and_an_applied_one_is_not_refused() {
    let store = Store::temporary().unwrap();
    // Every apply of the memtable to sled fails from now on, as on a full disk.
    store.faults().arm(caseflow_engine::faults::FaultPoint::Apply, u32::MAX, caseflow_engine::faults::NO_SPACE);
    let mut acknowledged = Vec::new();
    let mut refused_at = None;
    for i in 0..40_000u32 {
        match write(&store, i) {
            Ok(_) => acknowledged.push(i),
            Err(e) => {
                assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
                refused_at = Some(i);
                break;
            }
        }
    }
    let refused = refused_at.expect("once the memtable must be applied and cannot be, writes are refused");
    // Everything acknowledged is there (in the memtable, logged); the refused write is not.
    for i in &acknowledged {
        assert!(store.get(format!("k/{i:06}").as_bytes()).unwrap().is_some(), "acknowledged write {i} is missing");
    }
    assert!(store.get(format!("k/{refused:06}").as_bytes()).unwrap().is_none(), "a refused write must not be applied");
    assert!(store.degraded().is_some(), "the store says it is failing");
    // Still failing: refused again, still nothing applied.
    assert!(matches!(write(&store, refused), Err(StoreError::Unavailable(_))));
    assert!(store.get(format!("k/{refused:06}").as_bytes()).unwrap().is_none());
    // The disk has room again: the next write retries the apply and is taken.
    store.faults().arm(caseflow_engine::faults::FaultPoint::Apply, 0, caseflow_engine::faults::NO_SPACE);
    write(&store, refused).expect("taken once storage recovers, without a restart");
    assert!(store.degraded().is_none());
    for i in acknowledged.iter().chain([&refused]) {
        assert!(store.get(format!("k/{i:06}").as_bytes()).unwrap().is_some(), "write {i} is missing after recovery");
    }
}

mod on_disk {
    //! The same promises on a store with its write-ahead log, with faults injected at each
    //! file operation of the write path, the truncation and the checkpoint.

    use caseflow_engine::faults::{FaultPoint, Faults, IO_ERROR, NO_SPACE};
    use caseflow_engine::store::{Batch, StoreError};
    use caseflow_engine::{Durability, Storage, Store, StoreOptions};
    use std::path::PathBuf;
    use std::sync::Arc;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn dir(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("caseflow-faults-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn open(dir: &Dir, faults: &Arc<Faults>) -> Store {
        let options = StoreOptions { durability: Durability::Fsync, faults: faults.clone(), ..StoreOptions::default() };
        Store::open(&dir.0, &options).unwrap()
    }

    fn put(store: &Store, key: &str, bytes: usize) -> Result<u64, StoreError> {
        let mut b = Batch::default();
        b.insert(key.to_string(), vec![9u8; bytes]);
        store.write(b)
    }

    fn has(store: &Store, key: &str) -> bool {
        store.get(key.as_bytes()).unwrap().is_some()
    }

    /// A log write (or its sync) fails: the write in flight has an unknown outcome, the next
    /// ones are refused and not applied, and once the fault is gone the stuck group goes
    /// through and writes are taken again, with no restart. After one, everything
    /// acknowledged is there and nothing refused is.
    fn log_fault_then_recovery(point: FaultPoint, errno: i32) {
        let d = dir(&format!("{point:?}"));
        let faults = Arc::new(Faults::default());
        {
            let store = open(&d, &faults);
            let a = put(&store, "k/a", 64).unwrap();
            store.wait_durable(a).unwrap();
            faults.arm(point, u32::MAX, errno);
            let b = put(&store, "k/b", 64).expect("taken in: logged and visible");
            let unknown = store.wait_durable(b).unwrap_err();
            assert!(matches!(unknown, StoreError::OutcomeUnknown(_)), "{point:?}: {unknown}");
            let refused = put(&store, "k/c", 64).unwrap_err();
            assert!(matches!(refused, StoreError::Unavailable(_)), "{point:?}: {refused}");
            assert!(!has(&store, "k/c"), "{point:?}: a refused write is not applied");
            assert!(store.check_health().is_some());
            faults.clear();
            let c = put(&store, "k/c", 64).expect("taken again once the disk works, without a restart");
            store.wait_durable(c).unwrap();
            assert_eq!(store.check_health(), None);
            store.flush().unwrap();
        }
        let store = open(&d, &faults);
        for k in ["k/a", "k/b", "k/c"] {
            assert!(has(&store, k), "{point:?}: {k} after the restart");
        }
    }

    #[test]
    fn a_full_disk_at_the_log_write() {
        log_fault_then_recovery(FaultPoint::LogWrite, NO_SPACE);
    }

    #[test]
    fn an_io_error_at_the_log_write() {
        log_fault_then_recovery(FaultPoint::LogWrite, IO_ERROR);
    }

    #[test]
    fn a_failed_fsync_of_the_log() {
        log_fault_then_recovery(FaultPoint::LogSync, IO_ERROR);
    }

    /// Segments that cannot be made (a full disk at rotation, a failed rename of the spare)
    /// cost nothing: the segment grows, writes go on, and all of them come back.
    #[test]
    fn rotations_that_fail_lose_nothing() {
        let d = dir("rotations");
        let faults = Arc::new(Faults::default());
        {
            let store = open(&d, &faults);
            faults.arm(FaultPoint::LogCreate, u32::MAX, NO_SPACE);
            faults.arm(FaultPoint::LogRename, 3, NO_SPACE);
            // ~24 MiB: three segments' worth.
            for i in 0..96 {
                let t = put(&store, &format!("k/{i:03}"), 256 << 10).unwrap();
                store.wait_durable(t).unwrap();
            }
            assert_eq!(store.check_health(), None, "a rotation that fails is not a failing store");
            faults.clear();
            store.flush().unwrap();
        }
        let store = open(&d, &faults);
        assert_eq!(store.scan_prefix(b"k/").count(), 96);
    }

    /// A flush that fails during the log's truncation marks the store failing; writes are
    /// refused (not applied) until the flush works again.
    #[test]
    fn a_flush_that_fails_during_truncation() {
        let d = dir("truncation");
        let faults = Arc::new(Faults::default());
        let store = open(&d, &faults);
        faults.arm(FaultPoint::Flush, u32::MAX, IO_ERROR);
        let mut acknowledged = 0;
        let refused = loop {
            match put(&store, &format!("k/{acknowledged:03}"), 256 << 10) {
                Ok(t) => {
                    store.wait_durable(t).unwrap();
                    acknowledged += 1;
                }
                Err(e) => break e,
            }
            assert!(acknowledged < 200, "a segment's worth rotates the log and truncates it");
        };
        assert!(matches!(refused, StoreError::Unavailable(_)), "{refused}");
        assert!(!has(&store, &format!("k/{acknowledged:03}")));
        assert!(store.check_health().is_some());
        faults.clear();
        put(&store, &format!("k/{acknowledged:03}"), 64).expect("taken again");
        assert_eq!(store.check_health(), None);
        assert_eq!(store.scan_prefix(b"k/").count(), acknowledged + 1);
    }

    /// A checkpoint that fails is counted and tried again later; it refuses no write.
    #[test]
    fn a_checkpoint_that_fails() {
        let d = dir("checkpoint");
        let faults = Arc::new(Faults::default());
        let store = open(&d, &faults);
        put(&store, "k/a", 64).unwrap();
        faults.arm(FaultPoint::Checkpoint, 1, NO_SPACE);
        assert!(store.checkpoint().is_err());
        assert_eq!(store.checkpoints().failures, 1);
        let t = put(&store, "k/b", 64).expect("writes go on");
        store.wait_durable(t).unwrap();
        store.checkpoint().unwrap();
        assert_eq!(store.checkpoints().count, 1);
    }

    /// Below the space reserve nothing is taken in, so sled never meets a full disk.
    #[test]
    fn under_the_space_reserve_writes_are_refused_and_not_applied() {
        let d = dir("reserve");
        let options = StoreOptions { space_reserve_bytes: 1 << 60, ..StoreOptions::default() };
        let store = Store::open(&d.0, &options).unwrap();
        let e = put(&store, "k/a", 64).unwrap_err();
        assert!(matches!(&e, StoreError::Unavailable(why) if why.contains("MiB free")), "{e}");
        assert!(!has(&store, "k/a"));
        assert!(store.check_health().unwrap().contains("reserve"));
    }

    /// No room for zero-filled segments or a spare: the store opens all the same.
    #[test]
    fn a_store_opens_without_room_for_new_segments() {
        let d = dir("open-full");
        let faults = Arc::new(Faults::default());
        {
            let store = open(&d, &faults);
            let t = put(&store, "k/a", 64).unwrap();
            store.wait_durable(t).unwrap();
        }
        faults.arm(FaultPoint::LogCreate, u32::MAX, NO_SPACE);
        let store = open(&d, &faults);
        assert!(has(&store, "k/a"));
        let t = put(&store, "k/b", 64).unwrap();
        store.wait_durable(t).unwrap();
    }

    /// While the log is failing, sled's own writes wait for it instead of failing (sled would
    /// refuse everything after one failed write until reopened): once the disk works again,
    /// the store goes on without a restart.
    #[test]
    fn sled_waits_for_a_failing_log_instead_of_failing() {
        let d = dir("sled-waits");
        let faults = Arc::new(Faults::default());
        {
            let store = open(&d, &faults);
            faults.arm(FaultPoint::LogWrite, u32::MAX, NO_SPACE);
            let t = put(&store, "k/a", 64).unwrap();
            assert!(store.wait_durable(t).is_err());
            // Its key goes into sled's memory (the flush then stops at the failed log).
            assert!(store.flush().is_err());
            std::thread::scope(|s| {
                // A checkpoint flushes sled, which asks the log to be durable first.
                let checkpoint = s.spawn(|| store.checkpoint());
                while store.log_stats().held_back == 0 {
                    assert!(!checkpoint.is_finished(), "sled's write did not wait: {:?}", checkpoint.join());
                    std::thread::yield_now();
                }
                faults.clear();
                checkpoint.join().unwrap().expect("the held-back write goes through");
            });
            let t = put(&store, "k/b", 64).expect("taken again, and sled is alive");
            store.wait_durable(t).unwrap();
            store.flush().unwrap();
        }
        let store = open(&d, &faults);
        assert!(has(&store, "k/a") && has(&store, "k/b"));
    }

    /// Closing while the log still fails does not hang: what was acknowledged is there after
    /// the restart.
    #[test]
    fn a_store_closes_while_its_log_is_failing() {
        let d = dir("close-failing");
        let faults = Arc::new(Faults::default());
        {
            let store = open(&d, &faults);
            let t = put(&store, "k/a", 64).unwrap();
            store.wait_durable(t).unwrap();
            faults.arm(FaultPoint::LogWrite, u32::MAX, NO_SPACE);
            let t = put(&store, "k/b", 64).unwrap();
            assert!(store.wait_durable(t).is_err());
        }
        faults.clear();
        let store = open(&d, &faults);
        assert!(has(&store, "k/a"), "acknowledged, so kept");
    }
}

mod background_panics {
    //! A background thread of the store that panics (as sled does on some corruption) stops the
    //! process at once, with a message; it never leaves the writers waiting for it. Each case
    //! runs in a child process (the abort would end the test binary); the parent gives it a
    //! few seconds and fails if it is still running.

    use caseflow_engine::faults::{FaultPoint, PANIC};
    use caseflow_engine::store::Batch;
    use caseflow_engine::{Durability, Storage, Store, StoreOptions};
    use std::time::{Duration, Instant};

    const CHILD: &str = "CASEFLOW_POISON_CHILD";

    /// In the child: a store that runs every background thread (the log writer with fsync,
    /// the appliers, checkpoints every 16 KiB), `point` armed to panic, and writers that keep
    /// writing and waiting for durability. Returns only if the process was not stopped.
    fn child(point: FaultPoint) {
        let dir = std::env::temp_dir().join(format!("caseflow-bg-panic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let options = StoreOptions {
            durability: Durability::Fsync,
            checkpoint_bytes: Some(16 << 10),
            space_reserve_bytes: 0,
            ..StoreOptions::default()
        };
        let store = std::sync::Arc::new(Store::open(&dir, &options).unwrap());
        store.faults().arm(point, 1, PANIC);
        eprintln!("armed {point:?}");
        let writers: Vec<_> = (0..2u32)
            .map(|w| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let started = Instant::now();
                    let mut i = 0u32;
                    while started.elapsed() < Duration::from_secs(20) {
                        let mut b = Batch::default();
                        b.insert(format!("k/{w}/{i:08}"), vec![7u8; 512]);
                        if let Ok(ticket) = store.write(b) {
                            let _ = store.wait_durable(ticket);
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        for w in writers {
            let _ = w.join();
        }
        println!("NOT STOPPED");
    }

    #[test]
    fn a_background_thread_that_panics_stops_the_process_instead_of_hanging_the_store() {
        if let Ok(point) = std::env::var(CHILD) {
            let point = match point.as_str() {
                "LogWrite" => FaultPoint::LogWrite,
                "LogSync" => FaultPoint::LogSync,
                "Apply" => FaultPoint::Apply,
                "Checkpoint" => FaultPoint::Checkpoint,
                other => panic!("{other}"),
            };
            child(point);
            return;
        }
        for point in ["LogWrite", "LogSync", "Apply", "Checkpoint"] {
            let started = Instant::now();
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "background_panics::a_background_thread_that_panics_stops_the_process_instead_of_hanging_the_store",
                    "--nocapture",
                ])
                .env(CHILD, point)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            // The child dies by abort, so its own clean-up never runs: its store is removed here
            // (each run left 17 MB in the temporary folder before).
            let child_dir = std::env::temp_dir().join(format!("caseflow-bg-panic-{}", child.id()));
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status;
                }
                if started.elapsed() > Duration::from_secs(15) {
                    let _ = child.kill();
                    panic!("{point}: the process still runs 15 s after the panic: the store hangs");
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            let took = started.elapsed();
            let out = child.wait_with_output().unwrap();
            let _ = std::fs::remove_dir_all(&child_dir);
            let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(6), "{point}: not stopped by SIGABRT ({status}):\n{stdout}\n{stderr}");
            assert!(!stdout.contains("NOT STOPPED"), "{point}");
            assert!(stderr.contains(&format!("a panic injected at {point}")), "{point}: {stderr}");
            assert!(stderr.contains("caseflow: stopping:"), "{point}: no message: {stderr}");
            eprintln!("{point}: stopped {took:?} after the child started");
        }
    }
}
