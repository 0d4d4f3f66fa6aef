//! Soak: churn for a while and compare sled's size on disk with the live data. A working set of
//! open cases (waiting at a human task, with a deadline timer) is kept constant: each step
//! starts a new case and completes the oldest, so instances, indexes and timers are rewritten
//! and removed all the time while completed cases and their history accumulate, as in a
//! service department. Prints at each checkpoint: commands applied, cases, live bytes (every
//! key and value, counted by a full scan), sled's size on disk and their ratio.
//!
//! `cargo bench -p caseflow-engine --bench soak -- --minutes 10 --open 10000`

mod common;

use caseflow_core::case::{Actor, Command, InstanceId};
use caseflow_core::value::Value;
use caseflow_engine::clock::{Clock, SystemClock};
use caseflow_engine::Storage;
use caseflow_engine::{Durability, Engine, Store, StoreOptions};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHAPE: &str = r#"
process churn {
  source "benchmark: the complaint shape"
  fields {
    urgency: choice(high, medium, low) required
    note: text
    resolved: bool = false
  }
  start -> triage
  auto triage {
    set note = "triaged"
    -> handle
  }
  task handle {
    assign role cs_rep by round_robin
    due 1 workday
    remind every 4 workhours
    asks resolved
    -> closed
  }
  end closed
}
"#;

fn live_bytes(engine: &Engine<Store>) -> u64 {
    engine.store().scan_prefix(b"").map(|r| r.map(|(k, v)| (k.len() + v.len()) as u64).unwrap_or(0)).sum()
}

fn main() {
    let full = common::full();
    let minutes = common::arg("--minutes", if full { 5.0 } else { 0.05 });
    let open = common::arg("--open", 10_000usize);
    let threads = 4;
    let dir = std::env::temp_dir().join(format!("caseflow-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = StoreOptions { durability: Durability::Flush, ..StoreOptions::default() };
    let engine = Arc::new(Engine::open(Store::open(&dir, &options).expect("store"), common::reps(50)).expect("engine"));
    engine.deploy(SHAPE, SystemClock.now()).expect("deploy");
    let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
    let start = |engine: &Engine<Store>| {
        let fields = [("urgency".to_string(), Value::Text("low".into()))].into();
        let inst = engine.start("churn", fields, &admin, None, SystemClock.now()).expect("start");
        (inst.id, *inst.tasks.keys().next().expect("a task"))
    };
    let t = Instant::now();
    // One queue of open cases per thread.
    let queues: Vec<VecDeque<(InstanceId, u32)>> =
        (0..threads).map(|_| (0..open / threads).map(|_| start(&engine)).collect()).collect();
    println!("{open} open cases in {:.1} s", t.elapsed().as_secs_f64());
    let checkpoints = 5;
    let slice = Duration::from_secs_f64(minutes * 60.0 / checkpoints as f64);
    println!(
        "{:>8} {:>10} {:>9} {:>10} {:>10} {:>7}",
        "minutes", "commands", "cases", "live MiB", "disk MiB", "disk/live"
    );
    let mut queues = queues;
    let began = Instant::now();
    for _ in 0..checkpoints {
        let until = Instant::now() + slice;
        queues = std::thread::scope(|s| {
            let handles: Vec<_> = queues
                .into_iter()
                .map(|mut q| {
                    let engine = engine.clone();
                    s.spawn(move || {
                        let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
                        while Instant::now() < until {
                            let (id, task) = q.pop_front().expect("open cases");
                            let fields = [("resolved".to_string(), Value::Bool(true))].into();
                            engine
                                .command(id, &admin, Command::CompleteTask { task, fields }, SystemClock.now())
                                .expect("complete");
                            let fields = [("urgency".to_string(), Value::Text("low".into()))].into();
                            let inst = engine.start("churn", fields, &admin, None, SystemClock.now()).expect("start");
                            q.push_back((inst.id, *inst.tasks.keys().next().expect("a task")));
                        }
                        q
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("worker")).collect()
        });
        engine.store().flush().expect("flush");
        let live = live_bytes(&engine) as f64 / 1048576.0;
        let disk = engine.store().size_on_disk().expect("size") as f64 / 1048576.0;
        let cases = engine.count_instances("churn", "completed").expect("count") + open;
        println!(
            "{:>8.1} {:>10} {:>9} {:>10.1} {:>10.1} {:>7.2}",
            began.elapsed().as_secs_f64() / 60.0,
            engine.commands_applied(),
            cases,
            live,
            disk,
            disk / live
        );
    }
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
}
