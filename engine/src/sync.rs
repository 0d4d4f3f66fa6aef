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

/// Spawns a named background thread of the store (the log writer, the appliers, the
/// checkpoint) that stops the process if it panics. Such a thread holds no lock the others
/// would find poisoned, yet writers wait on it (a log group to be written, a condvar to be
/// told): were it to unwind quietly, every writer would wait for ever. So its unwinding stops
/// the process, at once and with a message, as a poisoned lock does.
pub fn spawn_guarded<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    let guard = StopOnPanic(name.to_string());
    std::thread::Builder::new().name(name.to_string()).spawn(move || {
        let guard = guard;
        let out = f();
        std::mem::forget(guard);
        out
    })
}

/// Stops the process when dropped during a panic (the thread it lives on unwinds).
struct StopOnPanic(String);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "caseflow: stopping: the background thread `{}` panicked (its message is above); the store's \
                 writers would wait for it for ever. Nothing acknowledged is lost: a restart recovers from the store.",
                self.0
            );
            std::process::abort();
        }
    }
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
