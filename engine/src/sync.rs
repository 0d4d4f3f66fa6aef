//! What a poisoned lock means here: a thread panicked while it changed what the lock guards,
//! so that state (the log's groups, the memtable, id blocks, workload counters) may be
//! half-changed. Carrying on could acknowledge a write that is not there or give an id out
//! twice. Everything in memory is rebuilt from the store when it opens and nothing
//! acknowledged is lost, so the process stops at once (`abort`, with a message) and its
//! supervisor starts it again. Every lock of the engine and the server is taken through
//! `unpoisoned`.

use std::sync::LockResult;

pub trait Unpoisoned<G> {
    /// The guard, or the process stops if a thread panicked holding the lock.
    fn unpoisoned(self) -> G;
}

impl<G> Unpoisoned<G> for LockResult<G> {
    #[track_caller]
    fn unpoisoned(self) -> G {
        match self {
            Ok(guard) => guard,
            Err(_) => poisoned(std::panic::Location::caller()),
        }
    }
}

/// Stops the process: a lock at `at` was poisoned.
#[cold]
fn poisoned(at: &std::panic::Location<'_>) -> ! {
    eprintln!(
        "caseflow: stopping: a thread panicked while holding the lock taken at {at}; what it guards may be \
         half-changed. Nothing acknowledged is lost: a restart recovers from the store."
    );
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Run in a child process (the abort would end the test binary): a lock poisoned by a
    /// panicking thread stops the process with the message, instead of being used.
    #[test]
    fn a_poisoned_lock_stops_the_process() {
        if std::env::var_os("CASEFLOW_POISON_CHILD").is_some() {
            let lock = Arc::new(Mutex::new(0));
            let held = lock.clone();
            let _ = std::thread::spawn(move || {
                let _guard = held.lock().unpoisoned();
                panic!("while holding the lock");
            })
            .join();
            *lock.lock().unpoisoned() += 1;
            unreachable!("a poisoned lock was used");
        }
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args(["--exact", "sync::tests::a_poisoned_lock_stops_the_process", "--nocapture"])
            .env("CASEFLOW_POISON_CHILD", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(6), "SIGABRT: {stderr}");
        assert!(stderr.contains("caseflow: stopping: a thread panicked while holding the lock taken at"), "{stderr}");
        assert!(!stderr.contains("a poisoned lock was used"), "{stderr}");
    }
}
