//! The console's pages under load of data: N cases waiting at a task of a role of 1,000 people,
//! then, for one of them signed in,
//! - the inbox page (their tasks and the role's first 200, in working-time order): server time
//!   p50/p99 and its size over the wire;
//! - a case page (fields, history, the diagram marked): p50/p99;
//! - memory for S open live-update streams (`/ui/events`).
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

fn rules(users: usize) -> RuleSet {
    let mut text = String::from("[roles.cs_rep]\nname = \"rep\"\n");
    for u in 0..users {
        text.push_str(&format!("[users.u{u}]\nname = \"用户{u}\"\nroles = [\"cs_rep\"]\n"));
    }
    RuleSet::load(&[RulesFile { name: "bench.toml".into(), text }]).expect("bench rules")
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
    let engine = Arc::new(Engine::open(Store::open(&dir, &options).expect("store"), rules(users)).expect("engine"));
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
    let state = Arc::new(AppState {
        engine: engine.clone(),
        clock: Arc::new(SystemClock),
        tokens: Vec::new(),
        metrics_need_token: false,
        rules_dir: None,
        rules_files: Default::default(),
        rules_refused: Default::default(),
        events: caseflow::server::event_channel(&engine),
        stopping: tokio::sync::watch::Sender::new(false),
        console: Default::default(),
    });
    let app = router(state, RequestLimits::default());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let login = Request::post("/ui/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from("user=u0&password=benchmark+password&next=%2Fui%2Finbox"))
            .unwrap();
        let resp = app.clone().oneshot(login).await.unwrap();
        let cookie = resp.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
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
        drop(open);
    });
    let _ = std::fs::remove_dir_all(&dir);
}
