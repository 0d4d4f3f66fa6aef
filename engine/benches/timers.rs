//! Timers: N pending timers (one waiting case each) due over the next W seconds, fired by the
//! same loop as the server's timer driver (fire what is due, group-commit it with fsync, sleep
//! until the next due time). Prints the lateness of each firing, measured from its due time to
//! when it is durable and observed (p50, p99, max), how many fired early (must be 0), and the
//! restart time with the timers stored.
//!
//! `cargo bench -p caseflow-engine --bench timers -- --timers 1000000 --window 600`

mod common;

use caseflow_core::case::Actor;
use caseflow_core::value::Value;
use caseflow_engine::clock::{Clock, SystemClock};
use caseflow_engine::Storage;
use caseflow_engine::{Durability, Engine, Store, StoreOptions};
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SHAPE: &str = r#"
process timed {
  source "benchmark: one timer per case"
  fields { at: datetime required }
  start -> pause
  wait pause { until at -> closed }
  end closed
}
"#;

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros() / 1000
}

fn main() {
    let full = common::full();
    let n = common::arg("--timers", if full { 100_000 } else { 2_000 });
    let window_ms = common::arg("--window", if full { 60 } else { 5 }) as i64 * 1000;
    let dir = std::env::temp_dir().join(format!("caseflow-timers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let load = StoreOptions { durability: Durability::None, ..StoreOptions::default() };
    // Timers come due from `base` on: leave time to load them all first.
    let budget_ms = (n as i64 / 3) + 5_000;
    let base = SystemClock.now() + chrono::Duration::milliseconds(budget_ms);
    // Due time (ms) per instance id.
    let due: Arc<Vec<AtomicI64>> = Arc::new((0..=n + 1).map(|_| AtomicI64::new(0)).collect());
    {
        let engine = Arc::new(Engine::open(Store::open(&dir, &load).expect("store"), common::reps(0)).expect("engine"));
        engine.deploy(SHAPE, SystemClock.now()).expect("deploy");
        let t = Instant::now();
        let threads = 8;
        let next = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (engine, due, next) = (engine.clone(), due.clone(), next.clone());
                std::thread::spawn(move || {
                    let crm = Actor { id: "crm".into(), roles: vec![], admin: false };
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        // Spread over the window in a scrambled order (a multiplicative hash).
                        let offset = ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % window_ms as u64) as i64;
                        let at = base + chrono::Duration::milliseconds(offset);
                        let fields = [("at".to_string(), Value::DateTime(at))].into();
                        let inst = engine.start("timed", fields, &crm, None, SystemClock.now()).expect("start");
                        due[inst.id.0 as usize].store(millis(at), Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
        engine.store().flush().expect("flush");
        println!("loaded {n} pending timers in {:.1} s", t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    let durable = StoreOptions { durability: Durability::Fsync, ..StoreOptions::default() };
    let engine = Engine::open(Store::open(&dir, &durable).expect("reopen"), common::reps(0)).expect("engine");
    println!(
        "restart with {n} pending timers: ready in {:.0} ms ({} pending)",
        t.elapsed().as_secs_f64() * 1e3,
        engine.count_pending_timers().expect("count")
    );
    // (due ms, lateness ms) of each firing.
    let lateness: Arc<Mutex<Vec<(i64, i64)>>> = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let early = Arc::new(AtomicUsize::new(0));
    {
        let (lateness, early, due) = (lateness.clone(), early.clone(), due.clone());
        engine.observe(move |e| {
            if e.event == "timer_fired" {
                let now = millis(SystemClock.now());
                let due_ms = due[e.instance.0 as usize].load(Ordering::Relaxed);
                if millis(e.at) < due_ms {
                    early.fetch_add(1, Ordering::Relaxed);
                }
                lateness.lock().unwrap().push((due_ms, now - due_ms));
            }
        });
    }
    let wait = (base - SystemClock.now()).to_std().unwrap_or_default();
    if wait.is_zero() {
        println!("warning: loading overran the budget; the first timers are late before the driver starts");
    }
    std::thread::sleep(wait);
    // The server's driver loop (api::server::timer_driver), synchronously.
    let poll = Duration::from_millis(1000);
    let mut rounds = 0usize;
    while lateness.lock().unwrap().len() < n {
        engine.fire_due(SystemClock.now(), 10_000).expect("fire");
        rounds += 1;
        let sleep = match engine.next_due().expect("next") {
            Some(t) => (t - SystemClock.now()).to_std().unwrap_or_default().min(poll),
            None => poll,
        };
        std::thread::sleep(sleep);
    }
    let fired = lateness.lock().unwrap().clone();
    // After the first 10 s: the driver caught up with what came due while the store was cold.
    let mut steady: Vec<i64> = fired.iter().filter(|f| f.0 >= millis(base) + 10_000).map(|f| f.1).collect();
    steady.sort_unstable();
    if !steady.is_empty() {
        println!(
            "after the first 10 s: p50 {} ms, p99 {} ms, max {} ms over {} timers",
            steady[steady.len() / 2],
            steady[steady.len() * 99 / 100],
            steady[steady.len() - 1],
            steady.len()
        );
    }
    let mut l: Vec<i64> = fired.iter().map(|f| f.1).collect();
    l.sort_unstable();
    // Where the late ones were: the worst seconds of the window.
    let start_ms = millis(base);
    let mut worst_by_second = std::collections::BTreeMap::<i64, i64>::new();
    for (due_ms, late) in &fired {
        let w = worst_by_second.entry((due_ms - start_ms) / 1000).or_default();
        *w = (*w).max(*late);
    }
    let mut seconds: Vec<(i64, i64)> = worst_by_second.into_iter().collect();
    let over = seconds.iter().filter(|s| s.1 > 50).count();
    seconds.sort_by_key(|s| std::cmp::Reverse(s.1));
    let worst: Vec<String> = seconds.iter().take(5).map(|(s, l)| format!("{l} ms at {s} s")).collect();
    println!(
        "seconds of the window with a timer over 50 ms late: {over} of {}; worst: {}",
        seconds.len(),
        worst.join(", ")
    );
    println!(
        "{n} timers over {} s ({:.0}/s), fsync group commit, {rounds} driver rounds: lateness p50 {} ms, p99 {} ms, max {} ms; fired early: {}",
        window_ms / 1000,
        n as f64 * 1000.0 / window_ms as f64,
        l[l.len() / 2],
        l[l.len() * 99 / 100],
        l[l.len() - 1],
        early.load(Ordering::Relaxed)
    );
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
}
