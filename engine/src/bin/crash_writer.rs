//! A child process for the crash test (`tests/crash.rs`): writes under load and prints one
//! line per acknowledged write, flushed, so that the parent knows exactly what was
//! acknowledged when it kills this process with SIGKILL.
//!
//! Usage: crash_writer DATA_DIR RULES_DIR PROCESS_FILE ROUND flush|fsync CHECKPOINT_BYTES
//!
//! CHECKPOINT_BYTES 0 leaves the default; a small value makes checkpoints (a snapshot of sled's
//! page table) frequent, so that kills land during them too. Each new checkpoint count is printed.

use caseflow_core::case::{Actor, Command};
use caseflow_core::value::Value;
use caseflow_engine::clock::{Clock, SystemClock};
use caseflow_engine::{Durability, Engine, RuleSet, Store, StoreOptions};
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, data, rules_dir, process, round, durability, checkpoint] = &args[..] else {
        eprintln!("usage: crash_writer DATA_DIR RULES_DIR PROCESS_FILE ROUND flush|fsync CHECKPOINT_BYTES");
        std::process::exit(2);
    };
    let checkpoint_bytes = match checkpoint.parse::<u64>() {
        Ok(0) => StoreOptions::default().checkpoint_bytes,
        Ok(n) => Some(n),
        Err(_) => {
            eprintln!("CHECKPOINT_BYTES: not a number: {checkpoint}");
            std::process::exit(2);
        }
    };
    let durability = if durability == "fsync" { Durability::Fsync } else { Durability::Flush };
    let files = caseflow_engine::read_rules_dir(std::path::Path::new(rules_dir)).expect("rules dir");
    let rules = RuleSet::load(&files).expect("rules");
    let store = Store::open(
        std::path::Path::new(data),
        &StoreOptions { durability, checkpoint_bytes, ..StoreOptions::default() },
    )
    .expect("open");
    let engine = std::sync::Arc::new(Engine::open(store, rules).expect("engine"));
    // The outbox is written in each command's batch: the crash test checks it too.
    engine.enable_outbox();
    let now = SystemClock.now();
    engine.deploy(&std::fs::read_to_string(process).expect("process"), now).expect("deploy");
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    println!("ready");
    std::io::stdout().flush().ok();
    // Four writers, so that group commit has concurrent commands to group.
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let engine = engine.clone();
            let out = out.clone();
            let round = round.clone();
            std::thread::spawn(move || {
                let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
                for n in 0.. {
                    let key = format!("r{round}-w{w}-{n}");
                    let fields = [("customer", "c"), ("contact", "p"), ("content", "x"), ("urgency", "low")]
                        .iter()
                        .map(|(k, v)| (k.to_string(), Value::Text(v.to_string())))
                        .collect();
                    let inst = engine.start("complaint", fields, &admin, Some(&key), SystemClock.now()).expect("start");
                    writeln!(out.lock().unwrap(), "start {key} {}", inst.id).ok();
                    let task = *inst.tasks.keys().next().expect("an open task");
                    let cmd = Command::CompleteTask {
                        task,
                        fields: [("cause".to_string(), Value::Text("quality".into()))].into(),
                    };
                    engine.command(inst.id, &admin, cmd, SystemClock.now()).expect("complete");
                    let mut o = out.lock().unwrap();
                    writeln!(o, "complete {} {task}", inst.id).ok();
                    writeln!(o, "checkpoints {}", engine.store().checkpoints().count).ok();
                    o.flush().ok();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().ok();
    }
}
