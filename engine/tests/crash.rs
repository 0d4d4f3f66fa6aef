//! The crash test: a child process writes under load and is killed with SIGKILL, again and
//! again, on the same data directory. After each kill the store reopens, every write the child
//! acknowledged is there, and the invariants hold.

use caseflow_core::case::{InstanceId, Waiting};
use caseflow_engine::Storage;
use caseflow_engine::{Engine, Store, StoreOptions};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;

use caseflow_tests::shipped_rules as rules;

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = std::env::temp_dir().join(format!("caseflow-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rules_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
    let process = concat!(env!("CARGO_MANIFEST_DIR"), "/../processes/complaint.flow");
    let mut starts: Vec<(String, u64)> = Vec::new();
    let mut completes: Vec<(u64, u32)> = Vec::new();
    let mut replayed = 0;
    let mut checkpoints = 0u64;
    for round in 0..ROUNDS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
            .args([
                dir.to_str().unwrap(),
                rules_dir,
                process,
                &round.to_string(),
                if round % 2 == 0 { "flush" } else { "fsync" },
                // Every other round, a checkpoint (a snapshot of sled written beside the writers)
                // every 256 KiB.
                if round % 2 == 1 { "262144" } else { "0" },
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Let it write for a while (varying, so kills land at different moments), then kill.
        let run_for = Duration::from_millis(300 + 170 * round as u64);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut started = None;
        let mut lines = Vec::new();
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(l) if l == "ready" => started = Some(Instant::now()),
                Ok(l) => lines.push(l),
                Err(_) => {}
            }
            if started.is_some_and(|s| s.elapsed() >= run_for) {
                break;
            }
        }
        child.kill().expect("SIGKILL"); // std's kill sends SIGKILL on Unix
        child.wait().ok();
        reader.join().ok();
        lines.extend(rx.try_iter());
        let before = starts.len();
        for l in lines {
            let parts: Vec<&str> = l.split_whitespace().collect();
            match parts.as_slice() {
                ["start", key, id] => starts.push((key.to_string(), id.parse().unwrap())),
                ["complete", id, task] => completes.push((id.parse().unwrap(), task.parse().unwrap())),
                ["checkpoints", n] => checkpoints = checkpoints.max(n.parse().unwrap()),
                _ => {}
            }
        }
        assert!(starts.len() > before, "round {round}: the writer acknowledged nothing");

        // Reopen as a fresh process would, and check.
        let store = Store::open(&dir, &StoreOptions::default()).expect("the store reopens after SIGKILL");
        replayed += store.replayed_on_open();
        let engine = Engine::open(store, rules()).expect("engine opens");
        for (key, id) in &starts {
            let inst = engine
                .instance(InstanceId(*id))
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged start {key} (#{id}) lost"));
            assert!(
                engine
                    .start(
                        "complaint",
                        // The writer's request again (a key is bound to its caller and body).
                        [("customer", "c"), ("contact", "p"), ("content", "x"), ("urgency", "low")]
                            .iter()
                            .map(|(k, v)| (k.to_string(), caseflow_core::value::Value::Text(v.to_string())))
                            .collect(),
                        &caseflow_core::case::Actor { id: "admin".into(), roles: vec![], admin: true },
                        Some(key),
                        caseflow_engine::clock::Clock::now(&caseflow_engine::clock::SystemClock)
                    )
                    .unwrap()
                    .id
                    == inst.id
            );
        }
        for (id, task) in &completes {
            let inst = engine.instance(InstanceId(*id)).unwrap().unwrap();
            assert!(!inst.tasks.contains_key(task), "acknowledged completion of {id}-{task} lost");
            let history = engine.history(InstanceId(*id)).unwrap();
            assert!(history.iter().any(|h| h.event == "task_completed"), "history of {id} lacks the completion");
        }
        // The outbox holds the events of every acknowledged write (nothing delivers them here).
        let outbox: std::collections::BTreeSet<(u64, String)> = engine
            .outbox_peek(usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, e)| (e.instance.0, e.event.to_string()))
            .collect();
        for (key, id) in &starts {
            assert!(outbox.contains(&(*id, "started".to_string())), "outbox lost the start of {key}");
        }
        for (id, _) in &completes {
            assert!(outbox.contains(&(*id, "task_completed".to_string())), "outbox lost a completion of {id}");
        }
        // Invariants on everything stored, acknowledged or caught mid-write: each open task has
        // its live step and index entries, every index entry has its open task, history is
        // gapless.
        let stored: Vec<u64> = engine
            .store()
            .scan_prefix(b"i/")
            .map(|r| u64::from_be_bytes(r.unwrap().0[2..].try_into().unwrap()))
            .collect();
        assert!(stored.len() >= starts.len());
        for entry in engine.store().scan_prefix(b"u/") {
            let (k, _) = entry.unwrap();
            let (id, task) = (&k[k.len() - 12..k.len() - 4], &k[k.len() - 4..]);
            let id = InstanceId(u64::from_be_bytes(id.try_into().unwrap()));
            let inst = engine.instance(id).unwrap().unwrap_or_else(|| panic!("index entry of a missing case {id}"));
            assert!(inst.tasks.contains_key(&u32::from_be_bytes(task.try_into().unwrap())), "stale index entry");
        }
        for id in stored {
            let key = id.to_string();
            let inst = engine.instance(InstanceId(id)).unwrap().unwrap();
            for t in inst.tasks.values() {
                assert_eq!(inst.tokens.get(&t.token).map(|k| &k.waiting), Some(&Waiting::Task(t.seq)), "{key}");
                if let Some(user) = &t.assignee {
                    let k = caseflow_engine::storage::keys::Inbox::User(user).entry(t.due_at, inst.id, t.seq);
                    assert!(engine.store().get(&k).unwrap().is_some(), "{key}: task index lost");
                }
            }
            let history = engine.history(inst.id).unwrap();
            assert_eq!(history.len() as u64, inst.history_len, "{key}: history and instance disagree");
            assert!(history.iter().enumerate().all(|(i, h)| h.seq == i as u64), "{key}: history has a gap");
        }
        drop(engine);
    }
    eprintln!(
        "crash test: {} acknowledged starts and {} completions survived {ROUNDS} SIGKILLs; {replayed} log records replayed; up to {checkpoints} checkpoints in one run",
        starts.len(),
        completes.len()
    );
    // Every kill lands mid-write under this load: the replay path is exercised, not assumed.
    assert!(replayed > 0, "no kill left a log record to replay");
    assert!(
        checkpoints > 0,
        "the writer ran no checkpoint: recovery from a snapshot written beside the writers went untested"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
