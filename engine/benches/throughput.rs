//! Engine throughput on the reference workload: start a case of the complaint shape (start, an
//! automatic step, a decision, one human task, end) and drive it to completion, in-process,
//! durable group commit on (the write-ahead log's group written and fdatasynced). Prints
//! instances per second (median of 5 runs), the disk size and how the log grouped.
//!
//! Two kinds of callers: blocking calls (`Engine::start`, `Engine::command`: each thread waits
//! for every acknowledgement, so many threads are needed to fill a group), and pipelined ones
//! (`start_pending`, `command_pending`, then `confirm`: each thread keeps `--in-flight` cases
//! moving and waits once per round, as a server's async handlers can).
//!
//! `cargo bench -p caseflow-engine --bench throughput [-- --instances N --threads T --in-flight K --durability fsync|flush|no]`

mod common;

use caseflow_core::case::{Actor, Command};
use caseflow_core::value::Value;
use caseflow_engine::clock::{Clock, SystemClock};
use caseflow_engine::{Durability, Engine, Store, StoreOptions};
use std::sync::Arc;
use std::time::Instant;

fn run(instances: usize, threads: usize, in_flight: usize, durability: Durability) -> (f64, u64, f64, f64) {
    let dir = std::env::temp_dir().join(format!("caseflow-bench-{}-{threads}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir, &StoreOptions { durability, ..StoreOptions::default() }).expect("store");
    let engine = Arc::new(Engine::open(store, common::reps(2)).expect("engine"));
    engine.deploy(common::REFERENCE_SHAPE, SystemClock.now()).expect("deploy");
    let t = Instant::now();
    let per_thread = instances / threads;
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
                let now = SystemClock.now();
                let fields = || [("urgency".to_string(), Value::Text("high".into()))].into();
                let complete = |inst: &caseflow_core::case::Instance| {
                    let task = *inst.tasks.keys().next().expect("task");
                    Command::CompleteTask { task, fields: [("resolved".to_string(), Value::Bool(true))].into() }
                };
                if in_flight <= 1 {
                    for _ in 0..per_thread {
                        let inst = engine.start("reference", fields(), &admin, None, now).expect("start");
                        engine.command(inst.id, &admin, complete(&inst), now).expect("complete");
                    }
                    return;
                }
                for round in (0..per_thread).step_by(in_flight) {
                    let n = in_flight.min(per_thread - round);
                    let starts: Vec<_> = (0..n)
                        .map(|_| engine.start_pending("reference", fields(), &admin, None, now).expect("start"))
                        .collect();
                    let completes: Vec<_> = starts
                        .iter()
                        .map(|p| {
                            engine
                                .command_pending(p.instance().id, &admin, complete(p.instance()), now)
                                .expect("complete")
                        })
                        .collect();
                    // Acknowledged in order; the first wait covers the whole round.
                    for p in starts.into_iter().chain(completes) {
                        engine.confirm(p).expect("durable");
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let rate = (per_thread * threads) as f64 / t.elapsed().as_secs_f64();
    let size = engine.store().size_on_disk().unwrap_or(0);
    let log = engine.store().log_stats();
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
    let groups = log.groups.max(1) as f64;
    (rate, size, log.records as f64 / groups, log.write_micros as f64 / groups / 1000.0)
}

fn main() {
    let full = common::full();
    let instances = common::arg("--instances", if full { 20_000 } else { 200 });
    let threads = common::arg("--threads", 16);
    let in_flight = common::arg("--in-flight", 1);
    for (label, durability) in [
        ("fsync group commit", Durability::Fsync),
        ("flush group commit", Durability::Flush),
        ("no durability", Durability::None),
    ] {
        let only = std::env::args().skip_while(|a| a != "--durability").nth(1);
        if only.is_some_and(|d| !label.starts_with(d.as_str())) {
            continue;
        }
        let mut rates: Vec<(f64, u64, f64, f64)> =
            (0..if full { 5 } else { 1 }).map(|_| run(instances, threads, in_flight, durability)).collect();
        rates.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (median, size, per_group, group_ms) = rates[rates.len() / 2];
        println!(
            "{label:<20} {instances} instances, {threads} threads × {in_flight} in flight: median {median:>8.0} instances/s (min {:.0}, max {:.0}), {:.1} MiB on disk, {per_group:.1} records per log write of {group_ms:.2} ms",
            rates[0].0,
            rates[rates.len() - 1].0,
            size as f64 / 1048576.0
        );
    }
}
