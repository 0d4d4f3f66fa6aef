//! Scale: N instances waiting at a human task (on disk, not in RAM), then
//! - the process's resident memory (VmRSS) after loading them,
//! - the time to reopen the store and be ready to serve, the first time (sled replays its log)
//!   and a second time,
//! - p50/p99 of looking up one user's open tasks (a page of 50) among 1,000 users.
//!
//! `cargo bench -p caseflow-engine --bench scale -- --instances 1000000` (`--sizes`: also the
//! keys and values stored per waiting case, by prefix; `--note-bytes N`: each case also carries
//! a text field of N letters that do not compress, to see how the disk grows with the values)
//!
//! `--data DIR` keeps the store in DIR; when DIR already holds one, the load is skipped and the
//! restart figures are those of that store (copy it first: a restart changes it). `--load-only`
//! stops after loading.

mod common;

use caseflow_core::case::Actor;
use caseflow_core::value::Value;
use caseflow_engine::clock::{Clock, SystemClock};
use caseflow_engine::Storage;
use caseflow_engine::{Durability, Engine, Store, StoreOptions};
use std::sync::Arc;
use std::time::Instant;

const SHAPE: &str = r#"
process waiting {
  source "benchmark"
  fields {
    urgency: choice(high, low) required
    note: text
  }
  start -> handle
  task handle { assign role cs_rep by round_robin due 1 workday -> closed }
  end closed
}
"#;

fn main() {
    let full = common::full();
    let n = common::arg("--instances", if full { 100_000 } else { 1_000 });
    let note_bytes: usize = common::arg("--note-bytes", 0);
    let users = 1_000;
    let cache_mib: u64 = common::arg("--cache-mib", StoreOptions::default().cache_bytes >> 20);
    let kept: Option<std::path::PathBuf> =
        common::arg("--data", String::new()).parse().ok().filter(|p: &std::path::PathBuf| !p.as_os_str().is_empty());
    let dir =
        kept.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("caseflow-scale-{}", std::process::id())));
    let load = !dir.exists();
    if kept.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let options =
        StoreOptions { durability: Durability::None, cache_bytes: cache_mib << 20, ..StoreOptions::default() };
    if load {
        let engine =
            Arc::new(Engine::open(Store::open(&dir, &options).expect("store"), common::reps(users)).expect("engine"));
        engine.deploy(SHAPE, SystemClock.now()).expect("deploy");
        let t = Instant::now();
        let threads = 8;
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let engine = engine.clone();
                std::thread::spawn(move || {
                    let crm = Actor { id: "crm".into(), roles: vec![], admin: false };
                    // A xorshift stream: letters LZ4 cannot shorten.
                    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (thread as u64 + 1);
                    for _ in 0..n / threads {
                        let mut fields: std::collections::BTreeMap<String, Value> =
                            [("urgency".to_string(), Value::Text("low".into()))].into();
                        if note_bytes > 0 {
                            let note: String = (0..note_bytes)
                                .map(|_| {
                                    seed ^= seed << 13;
                                    seed ^= seed >> 7;
                                    seed ^= seed << 17;
                                    char::from(b'a' + (seed % 26) as u8)
                                })
                                .collect();
                            fields.insert("note".into(), Value::Text(note));
                        }
                        engine.start("waiting", fields, &crm, None, SystemClock.now()).expect("start");
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
        engine.store().flush().expect("flush");
        println!(
            "loaded {n} waiting instances in {:.1} s ({:.0}/s)",
            t.elapsed().as_secs_f64(),
            n as f64 / t.elapsed().as_secs_f64()
        );
        println!(
            "resident memory with {n} waiting instances: {:.0} MiB (sled cache capped at {cache_mib} MiB)",
            common::rss_mib()
        );
        let disk = engine.store().size_on_disk().unwrap_or(0);
        println!("disk: {:.0} MiB, {:.0} bytes per waiting case", disk as f64 / 1048576.0, disk as f64 / n as f64);
        // `--sizes`: where the bytes go, keys and values stored per prefix, per waiting case
        // (sled's own overhead per entry and its unused page space are the rest of the disk
        // figure). Off by default: the scan warms sled's cache and would skew the figures after.
        if std::env::args().any(|a| a == "--sizes") {
            print_sizes(&engine, n);
        }
        let c = engine.store().checkpoints();
        println!(
            "checkpoints while loading: {}, the longest took {:.0} ms, the last {:.0} ms (beside the writers)",
            c.count,
            c.longest.as_secs_f64() * 1e3,
            c.last.as_secs_f64() * 1e3
        );
    }
    if std::env::args().any(|a| a == "--load-only") {
        return;
    }
    // Reopen: ready to serve means the engine is open and answers a query.
    let t = Instant::now();
    let store = Store::open(&dir, &options).expect("reopen");
    let opened = t.elapsed();
    let rss_store = common::rss_mib();
    let engine = Engine::open(store, common::reps(users)).expect("engine");
    let first = engine.tasks(Some("u1"), None, 50).expect("query").len();
    println!(
        "  store open {:.0} ms, resident memory {rss_store:.0} MiB; engine open and first page: {:.0} MiB",
        opened.as_secs_f64() * 1e3,
        common::rss_mib()
    );
    println!(
        "restart with {n} instances stored: ready in {:.0} ms (first inbox page: {first} tasks)",
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut times: Vec<f64> = (0..2_000)
        .map(|i| {
            let user = format!("u{}", (i * 7919) % users);
            let t = Instant::now();
            let page = engine.tasks(Some(&user), None, 50).expect("query");
            std::hint::black_box(page);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "one user's open tasks (page of 50, {users} users, {n} instances): p50 {:.3} ms, p99 {:.3} ms",
        times[times.len() / 2],
        times[times.len() * 99 / 100]
    );
    println!("resident memory after the restart and 2,000 inbox pages: {:.0} MiB", common::rss_mib());
    // sled snapshots its page table only while opening: a second open has nothing to replay.
    drop(engine);
    let t = Instant::now();
    let engine = Engine::open(Store::open(&dir, &options).expect("reopen"), common::reps(users)).expect("engine");
    let first = engine.tasks(Some("u1"), None, 50).expect("query").len();
    println!(
        "second restart (log replayed at the first): ready in {:.0} ms (first inbox page: {first} tasks)",
        t.elapsed().as_secs_f64() * 1e3
    );
    drop(engine);
    if kept.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Keys and values stored per prefix, per waiting case.
fn print_sizes(engine: &Engine<Store>, n: usize) {
    let mut by_prefix: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for item in engine.store().scan_prefix(b"") {
        let (k, v) = item.expect("scan");
        let e = by_prefix.entry(String::from_utf8_lossy(&k[..k.len().min(2)]).into_owned()).or_default();
        e.0 += 1;
        e.1 += (k.len() + v.len()) as u64;
    }
    let stored: u64 = by_prefix.values().map(|(_, b)| b).sum();
    let per_case: Vec<String> = by_prefix
        .iter()
        .map(|(p, (count, bytes))| {
            format!("{p} {:.2} keys {:.0} B", *count as f64 / n as f64, *bytes as f64 / n as f64)
        })
        .collect();
    println!("stored per waiting case: {:.0} B of keys and values ({})", stored as f64 / n as f64, per_case.join(", "));
}
