//! The engine on PostgreSQL beside sled, in one run on one machine: the reference workload
//! (start a case of the complaint shape and complete its task) from `--threads` callers, on one
//! node and on two nodes sharing the database, and what each command costs the database:
//! round trips (counted by the store), transactions and statements (`pg_stat_statements`).
//!
//! The database is the one `scripts/postgres.sh` starts on this machine (`synchronous_commit =
//! on`, fsync on); sled runs with `durability = fsync`.
//!
//! Then timers: `--timers` cases, each with its deadline due, started across two nodes; both
//! nodes' drivers fire what is due until nothing is left. Prints how long that took and checks
//! that every deadline fired exactly once.
//!
//! `cargo bench -p caseflow-engine --bench postgres [-- --instances N --threads T --timers M]`

mod common;

use caseflow_core::case::{Actor, Command};
use caseflow_core::value::Value;
use caseflow_engine::clock::{Clock, SystemClock};
use caseflow_engine::storage::postgres::{PgOptions, PgStore};
use caseflow_engine::{Durability, Engine, Storage, Store, StoreOptions};
use std::sync::Arc;
use std::time::Instant;

/// Drives `instances` cases through start and completion, spread over `threads` callers taking
/// turns among `engines`; returns instances per second.
fn drive<S: Storage>(engines: &[Arc<Engine<S>>], instances: usize, threads: usize) -> f64 {
    let t = Instant::now();
    let per_thread = instances / threads;
    std::thread::scope(|s| {
        for i in 0..threads {
            let engine = engines[i % engines.len()].clone();
            s.spawn(move || {
                let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
                let now = SystemClock.now();
                for _ in 0..per_thread {
                    let fields = [("urgency".to_string(), Value::Text("high".into()))].into();
                    let inst = engine.start("reference", fields, &admin, None, now).expect("start");
                    let task = *inst.tasks.keys().next().expect("task");
                    let done = [("resolved".to_string(), Value::Bool(true))].into();
                    engine
                        .command(inst.id, &admin, Command::CompleteTask { task, fields: done }, now)
                        .expect("complete");
                }
            });
        }
    });
    (per_thread * threads) as f64 / t.elapsed().as_secs_f64()
}

fn psql(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql").args([url, "-Atc", sql]).output().expect("psql runs");
    assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn main() {
    let full = common::full();
    let instances = common::arg("--instances", if full { 4_000 } else { 200 });
    let threads = common::arg("--threads", 16);
    let rounds = if full { 3 } else { 1 };
    let url = caseflow_tests::postgres_database("bench_postgres").expect("PostgreSQL");
    psql(&url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    let commit_setting = psql(&url, "SHOW synchronous_commit");
    println!("{instances} instances (start + complete) from {threads} callers, median of {rounds} rounds; PostgreSQL synchronous_commit = {commit_setting}");
    // A node; `empty`: on a database emptied first.
    let node = |empty: bool| {
        let store =
            PgStore::connect(&PgOptions { pool_size: threads, ..PgOptions::new(url.clone()) }).expect("connect");
        if empty {
            store.clear().expect("clear");
        }
        let engine = Engine::open(store, common::reps(2)).expect("engine");
        engine.deploy(common::REFERENCE_SHAPE, SystemClock.now()).expect("deploy");
        Arc::new(engine)
    };
    // Rounds alternate between the stores, so that both see the same machine.
    let (mut sled_rates, mut one_rates, mut two_rates) = (Vec::new(), Vec::new(), Vec::new());
    let mut costs = None;
    for _ in 0..rounds {
        let dir = std::env::temp_dir().join(format!("caseflow-bench-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let options = StoreOptions { durability: Durability::Fsync, ..StoreOptions::default() };
        let sled = Engine::open(Store::open(&dir, &options).expect("store"), common::reps(2)).expect("engine");
        sled.deploy(common::REFERENCE_SHAPE, SystemClock.now()).expect("deploy");
        sled_rates.push(drive(&[Arc::new(sled)], instances, threads));
        let _ = std::fs::remove_dir_all(&dir);

        let one = node(true);
        psql(&url, "SELECT pg_stat_statements_reset()");
        let before = (one.store().round_trips(), one.store().commits());
        one_rates.push(drive(std::slice::from_ref(&one), instances, threads));
        let commands = (2 * instances) as f64;
        let trips = (one.store().round_trips() - before.0) as f64 / commands;
        // pg_stat_statements counts each statement as it ends; the store counts its commits.
        let calls = |filter: &str| -> f64 {
            psql(&url, &format!("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE {filter}"))
                .parse()
                .unwrap_or(0.0)
        };
        let committed = (one.store().commits() - before.1) as f64 / commands;
        // A writing transaction ends in a COMMIT or is one statement of caseflow's functions.
        let writes =
            "query = 'COMMIT' OR query LIKE 'SELECT caseflow_write(%' OR query LIKE 'SELECT caseflow_next_number(%'";
        let transactions = (committed, calls(writes) / commands);
        let statements = calls(
            "query NOT LIKE '%pg_stat%' AND query NOT IN ('BEGIN', 'COMMIT', 'ROLLBACK') AND query NOT LIKE 'SET %'",
        );
        costs = Some((trips, transactions, statements / commands));
        drop(one);

        let (a, b) = (node(true), node(false));
        two_rates.push(drive(&[a, b], instances, threads));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("sled (fsync), one node        median {:>7.0} instances/s", median(&mut sled_rates));
    println!("PostgreSQL, one node          median {:>7.0} instances/s", median(&mut one_rates));
    println!("PostgreSQL, two nodes         median {:>7.0} instances/s", median(&mut two_rates));
    timers(&url, common::arg("--timers", if full { 20_000 } else { 500 }), threads);
    if let Some((trips, transactions, statements)) = costs {
        let (committed, commit_calls) = transactions;
        println!(
            "per command on PostgreSQL (a start or a completion): {trips:.2} round trips, {:.2} transactions that write (in pg_stat_statements, COMMITs and calls of caseflow_write and caseflow_next_number: {:.2}), {statements:.2} statements sent besides BEGIN/COMMIT",
            committed, commit_calls
        );
    }
}

/// `count` deadlines due at once across two nodes: fired within how long, each exactly once.
fn timers(url: &str, count: usize, threads: usize) {
    let node = |empty: bool| {
        let store = PgStore::connect(&PgOptions { pool_size: threads, ..PgOptions::new(url) }).expect("connect");
        if empty {
            store.clear().expect("clear");
        }
        Arc::new(Engine::open(store, common::reps(2)).expect("engine"))
    };
    let (a, b) = (node(true), node(false));
    a.deploy(common::REFERENCE_SHAPE, SystemClock.now()).expect("deploy");
    b.refresh().expect("refresh");
    let now = SystemClock.now();
    let started = Instant::now();
    let ids: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let engine = if i % 2 == 0 { a.clone() } else { b.clone() };
                s.spawn(move || {
                    let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
                    (0..count / threads)
                        .map(|_| {
                            let fields = [("urgency".to_string(), Value::Text("high".into()))].into();
                            engine.start("reference", fields, &admin, None, now).expect("start").id
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("starter")).collect()
    });
    let setup = started.elapsed();
    // Every deadline (one working day) is due three days on.
    let due = now + chrono::Duration::days(4);
    let t = Instant::now();
    let fired: usize = std::thread::scope(|s| {
        let drivers: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .map(|engine| {
                s.spawn(move || {
                    let mut fired = 0;
                    loop {
                        let n = engine.fire_due(due, 10_000).expect("fire");
                        fired += n;
                        if n == 0 && engine.next_due().expect("next").is_none_or(|t| t > due) {
                            return fired;
                        }
                    }
                })
            })
            .collect();
        drivers.into_iter().map(|d| d.join().expect("driver")).sum()
    });
    let took = t.elapsed();
    let twice = ids
        .iter()
        .filter(|id| a.history(**id).expect("history").iter().filter(|h| h.event == "task_overdue").count() != 1)
        .count();
    println!(
        "timers: {} deadlines due at once across two nodes (started in {:.1} s) fired in {:.2} s, {:.0}/s; fired {fired}, cases not fired exactly once: {twice}",
        ids.len(),
        setup.as_secs_f64(),
        took.as_secs_f64(),
        ids.len() as f64 / took.as_secs_f64()
    );
    assert_eq!((fired, twice), (ids.len(), 0), "every deadline fires exactly once");
}
