//! The console's pages under load of data: N cases waiting at a task of a role of 1,000 people,
//! then, for one of them signed in,
//! - the inbox page (their tasks and the role's first 200, in working-time order): server time
//!   p50/p99 and its size over the wire;
//! - a case page (fields, history, the diagram marked), a task page: p50/p99;
//! - the cases list: a page of the index, filtered by assignee (from their inbox), and filtered
//!   by the day started with nothing matching (the 1,000 cases a page reads at most): p50/p99;
//! - a manager's team page (50 people reporting, their open tasks counted): p50/p99;
//! - memory for S open live-update streams (`/ui/events`), and the CPU they cost while a burst
//!   of new cases' events goes out to all of them (against the same burst with no stream).
//!
//! `cargo bench -p caseflow --bench console -- --instances 1000000 --streams 500`
//! (`cargo bench` alone: 100,000 cases; a plain run of the binary: a quick smoke run).

use axum::body::Body;
use axum::http::Request;
use caseflow::server::{router, AppState, RequestLimits};
use caseflow_core::case::Actor;
use caseflow_core::value::Value;
use caseflow_engine::clock::{Clock, SystemClock};
use caseflow_engine::service::accounts::{self, PasswordRecord};
use caseflow_engine::{Durability, Engine, RuleSet, RulesFile, Store, StoreOptions};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Instant;
use tower::ServiceExt;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SHAPE: &str = r#"
process waiting "等待" {
  source "benchmark"
  fields {
    customer: text "客户" required
    urgency: choice(high, low) required
    note: text "备注"
  }
  start -> handle
  task handle "处理" { assign role cs_rep by round_robin due 1 workday asks note -> closed }
  end closed
}
"#;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// People reporting to the manager, `boss`, whose team page is measured.
const TEAM: usize = 50;

fn rules(users: usize) -> RuleSet {
    let mut text = String::from(
        "[roles.cs_rep]\nname = \"rep\"\n[roles.cs_manager]\nname = \"manager\"\n[permissions]\nreassign = [\"cs_manager\"]\n\
         [users.boss]\nname = \"经理\"\nroles = [\"cs_manager\"]\n",
    );
    for u in 0..users {
        let reports = if u < TEAM { "reports_to = \"boss\"\n" } else { "" };
        text.push_str(&format!("[users.u{u}]\nname = \"用户{u}\"\nroles = [\"cs_rep\"]\n{reports}"));
    }
    RuleSet::load(&[RulesFile { name: "bench.toml".into(), text }]).expect("bench rules")
}

/// The process's CPU time so far (user and system), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the command name in parentheses: state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(14) + ticks(15)) / 100.0 // USER_HZ is 100 on Linux
}

/// CPU seconds to start `burst` cases and send out their events (the wait lets the streams
/// drain what they were sent).
async fn burst_cpu(engine: &Arc<Engine>, burst: usize) -> f64 {
    let before = cpu_seconds();
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || {
        let crm = Actor { id: "crm".into(), roles: vec![], admin: false };
        for i in 0..burst {
            let fields = [
                ("customer".to_string(), Value::Text(format!("突发{i}"))),
                ("urgency".to_string(), Value::Text("high".into())),
            ]
            .into();
            engine.start("waiting", fields, &crm, None, SystemClock.now()).expect("start");
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    cpu_seconds() - before
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Times `rounds` GETs of `uri` (a path built per round) with the session cookie: p50 and p99
/// in ms, and the last body's size.
async fn measure(app: &axum::Router, cookie: &str, rounds: usize, uri: impl Fn(usize) -> String) -> (f64, f64, usize) {
    let mut times = Vec::with_capacity(rounds);
    let mut bytes = 0;
    for i in 0..rounds {
        let req = Request::get(uri(i)).header("cookie", cookie).body(Body::empty()).unwrap();
        let t = Instant::now();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        bytes = resp.into_body().collect().await.unwrap().to_bytes().len();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    (percentile(&times, 0.5), percentile(&times, 0.99), bytes)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = arg("--instances", if full { 100_000 } else { 2_000 });
    let streams: usize = arg("--streams", if full { 500 } else { 50 });
    let rounds: usize = arg("--rounds", if full { 300 } else { 30 });
    let users = 1_000;
    let dir = std::env::temp_dir().join(format!("caseflow-console-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = StoreOptions { durability: Durability::None, ..StoreOptions::default() };
    let engine =
        Arc::new(Engine::open(Store::open(&dir, &options).expect("store").into(), rules(users)).expect("engine"));
    engine.deploy(SHAPE, SystemClock.now()).expect("deploy");
    let t = Instant::now();
    let threads = 4;
    let workers: Vec<_> = (0..threads)
        .map(|thread| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let crm = Actor { id: "crm".into(), roles: vec![], admin: false };
                for i in 0..n / threads {
                    let fields = [
                        ("customer".to_string(), Value::Text(format!("第{thread}-{i}中学"))),
                        ("urgency".to_string(), Value::Text(if i % 7 == 0 { "high" } else { "low" }.into())),
                    ]
                    .into();
                    engine.start("waiting", fields, &crm, None, SystemClock.now()).expect("start");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    println!("loaded {n} waiting cases in {:.1} s", t.elapsed().as_secs_f64());
    let record = PasswordRecord {
        phc: caseflow::passwords::hash("benchmark password"),
        set_at: SystemClock.now(),
        set_by: "bench".into(),
    };
    accounts::set_password(engine.store(), "u0", &record, None).expect("password");
    accounts::set_password(engine.store(), "boss", &record, None).expect("password");
    let state = Arc::new(AppState::new(engine.clone(), Arc::new(SystemClock), Vec::new()));
    let app = router(state, RequestLimits::default());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let sign_in = |user: &str| {
            let app = app.clone();
            let body = format!("user={user}&password=benchmark+password&next=%2Fui%2Finbox");
            async move {
                let login = Request::post("/ui/login")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::from(body))
                    .unwrap();
                let resp = app.oneshot(login).await.unwrap();
                resp.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string()
            }
        };
        let cookie = sign_in("u0").await;
        let (p50, p99, bytes) = measure(&app, &cookie, rounds, |_| "/ui/inbox".into()).await;
        println!(
            "inbox page ({n} cases, the role's first 200 read): p50 {p50:.2} ms, p99 {p99:.2} ms, {:.1} KB",
            bytes as f64 / 1024.0
        );
        let (p50, p99, bytes) =
            measure(&app, &cookie, rounds, |i| format!("/ui/cases/{}", 1 + (i * 7919) % n.max(1))).await;
        println!("case page: p50 {p50:.2} ms, p99 {p99:.2} ms, {:.1} KB", bytes as f64 / 1024.0);
        let (p50, p99, bytes) =
            measure(&app, &cookie, rounds, |i| format!("/ui/tasks/{}-2", 1 + (i * 7919) % n.max(1))).await;
        println!("task page: p50 {p50:.2} ms, p99 {p99:.2} ms, {:.1} KB", bytes as f64 / 1024.0);
        let list = "/ui/cases?process=waiting&status=running";
        let (p50, p99, bytes) = measure(&app, &cookie, rounds, |i| {
            // Pages across the whole index, not only its start.
            let cursor = (i * 7919) % n.max(1);
            format!("{list}&cursor={cursor}")
        })
        .await;
        println!("cases list, a page of 50: p50 {p50:.2} ms, p99 {p99:.2} ms, {:.1} KB", bytes as f64 / 1024.0);
        let (p50, p99, _) = measure(&app, &cookie, rounds, |i| format!("{list}&assignee=u{}", i % 1000)).await;
        println!("cases list by assignee: p50 {p50:.2} ms, p99 {p99:.2} ms");
        let (p50, p99, _) = measure(&app, &cookie, rounds.min(50), |_| format!("{list}&from=2999-01-01")).await;
        println!("cases list by day started, nothing matching (1,000 cases read): p50 {p50:.2} ms, p99 {p99:.2} ms");
        let boss = sign_in("boss").await;
        let (p50, p99, bytes) = measure(&app, &boss, rounds.min(100), |_| "/ui/team".into()).await;
        println!(
            "team page ({TEAM} people, each's open tasks counted): p50 {p50:.2} ms, p99 {p99:.2} ms, {:.1} KB",
            bytes as f64 / 1024.0
        );
        // Live-update streams over real connections (the server's accept loop on loopback):
        // each held open, with its connection, subscription and buffers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = caseflow::listen::Limits {
            header_read_timeout: std::time::Duration::from_secs(10),
            connections_max: streams + 100,
            shutdown_grace: std::time::Duration::from_secs(1),
        };
        tokio::spawn(caseflow::listen::serve(listener, app.clone(), limits, std::future::pending()));
        let before = rss_mib();
        // The clients block (std sockets) on a thread of their own; the server answers on the
        // runtime's.
        let client_cookie = cookie.clone();
        let open = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            (0..streams)
                .map(|_| {
                    let mut s = std::net::TcpStream::connect(addr).unwrap();
                    let req = format!("GET /ui/events HTTP/1.1\r\nHost: {addr}\r\nCookie: {client_cookie}\r\n\r\n");
                    s.write_all(req.as_bytes()).unwrap();
                    let mut head = vec![0u8; 1024];
                    let n = s.read(&mut head).unwrap();
                    assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head[..n]));
                    s
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        let after = rss_mib();
        println!(
            "{streams} open live-update streams: {:.1} MiB ({:.1} KiB each)",
            after - before,
            (after - before) * 1024.0 / streams as f64
        );
        // A burst of new cases while the streams are open: every event concerns all of them (one
        // role), so each is sent to every stream. The same burst with no stream open is the
        // baseline; the difference is what the live updates cost. The clients do not read:
        // the burst's events fit in their sockets' buffers.
        let burst = 1_000;
        let with_streams = burst_cpu(&engine, burst).await;
        drop(open);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let without = burst_cpu(&engine, burst).await;
        let per = (with_streams - without).max(0.0) * 1e6 / (burst as f64 * streams as f64);
        println!(
            "a burst of {burst} case starts: {with_streams:.2} s CPU with {streams} streams open, {without:.2} s without: \
             {per:.1} µs per case per stream"
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}
