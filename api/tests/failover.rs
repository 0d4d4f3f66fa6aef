//! caseflow nodes on PostgreSQL while the database fails, under a steady load of starts: the
//! database restarted after a crash, and a synchronous standby promoted after the primary is
//! killed. Each test has a PostgreSQL server of its own (`caseflow_tests::OwnPostgres`).
//!
//! What every answer means is checked afterwards: a 201 is a case that is there; a 503
//! `storage` ("not applied") is a start that is not there, so its retry with the same
//! `Idempotency-Key` starts a new case; a 503 `storage-outcome-unknown` is either, and its retry
//! answers the case if there is one. Nothing else may be answered, and no request may hang.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "common/served.rs"]
mod served;
use served::{cleanup, json, raw_at, temp_data, Server};

const START: &str = r#"{"process":"complaint","fields":{"customer":"第一中学","contact":"138-0000-0000","content":"投影仪无法开机","urgency":"medium"}}"#;

/// One start as its client saw it.
#[derive(Debug, Clone)]
struct Answer {
    key: String,
    status: u16,
    /// The problem's type for an error; the case id for a 201.
    what: String,
    at: Instant,
}

/// Clients starting cases, each with an `Idempotency-Key` of its own, on the given nodes in
/// turn, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn run(addrs: &[String], clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|c| {
                let (stop, answers, addrs) = (stop.clone(), answers.clone(), addrs.to_vec());
                std::thread::spawn(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("load-{c}-{n}");
                        let answer = start(&addrs[n % addrs.len()], &key);
                        // A client backs off after a refusal, as a real one would.
                        if answer.status != 201 {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        answers.lock().unwrap().push(answer);
                        n += 1;
                    }
                })
            })
            .collect();
        Load { stop, answers, threads }
    }

    /// Waits until an answer given after `since` satisfies `what`, at most `limit`.
    fn wait_for(&self, since: Instant, limit: Duration, what: impl Fn(&Answer) -> bool) -> Answer {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(a) = self.answers.lock().unwrap().iter().find(|a| a.at > since && what(a)) {
                return a.clone();
            }
            assert!(Instant::now() < deadline, "no such answer within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("a client thread panicked");
        }
        Arc::try_unwrap(self.answers).unwrap().into_inner().unwrap()
    }
}

/// A start with `key`, answered within the client's timeout (a hang panics).
fn start(addr: &str, key: &str) -> Answer {
    let (status, _, body) = raw_at(
        addr,
        "POST",
        b"/instances",
        &["Authorization: Bearer dev-crm", "Content-Type: application/json", &format!("Idempotency-Key: {key}")],
        START.as_bytes(),
    );
    let what = match status {
        201 => json(&body)["id"].to_string(),
        _ => json(&body)["type"].as_str().unwrap_or("").rsplit('/').next().unwrap_or("").to_string(),
    };
    Answer { key: key.to_string(), status, what, at: Instant::now() }
}

/// Every complaint case the node lists.
fn stored_cases(node: &Server) -> std::collections::BTreeSet<String> {
    let (mut stored, mut cursor) = (std::collections::BTreeSet::new(), None::<String>);
    loop {
        let path = match cursor {
            Some(c) => format!("/instances?process=complaint&limit=500&cursor={c}"),
            None => "/instances?process=complaint&limit=500".to_string(),
        };
        let (status, page) = node.call("GET", &path, "dev-admin", None);
        assert_eq!(status, 200, "{page}");
        let page = json(&page);
        stored.extend(page["instances"].as_array().unwrap().iter().map(|i| i["id"].to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return stored,
        }
    }
}

/// Checks what every answer meant, against what the store holds now (read through `node`).
fn every_answer_meant_what_it_said(node: &Server, answers: &[Answer]) {
    let stored = stored_cases(node);
    let mut refused = 0;
    let mut unknown_applied = 0;
    // The cases some answer accounts for.
    let mut explained = std::collections::BTreeSet::new();
    for a in answers {
        match (a.status, a.what.as_str()) {
            (201, id) => {
                assert!(stored.contains(id), "case {id} was acknowledged ({}) and is not there", a.key);
                explained.insert(id.to_string());
            }
            (503, kind @ ("storage" | "storage-outcome-unknown")) => {
                // Retried with its key: a refused start was not applied, so the retry starts
                // a case that was not there before.
                let again = start(&node.addr, &a.key);
                assert_eq!(again.status, 201, "the retry of {}: {again:?}", a.key);
                let there = stored.contains(&again.what);
                if kind == "storage" {
                    assert!(!there, "{} was answered `not applied`, and case {} is there", a.key, again.what);
                    refused += 1;
                } else if there {
                    unknown_applied += 1;
                    explained.insert(again.what.clone());
                }
            }
            _ => panic!("an answer that is neither a case nor an outage: {a:?}"),
        }
    }
    let acknowledged = answers.iter().filter(|a| a.status == 201).count();
    let unexplained: Vec<&String> = stored.difference(&explained).collect();
    assert!(unexplained.is_empty(), "cases no answer accounts for: {unexplained:?}");
    assert_eq!(stored.len(), acknowledged + unknown_applied, "only acknowledged cases and applied unknowns are there");
    eprintln!(
        "{} answers: {acknowledged} acknowledged, {refused} refused as not applied, {} unknown ({unknown_applied} applied)",
        answers.len(),
        answers.len() - acknowledged - refused
    );
    assert!(refused > 0, "the outage was never seen");
}

/// A PostgreSQL server of its own, a node on it, and four clients starting cases on the node,
/// returned once the node has acknowledged a start; then the ending that every test shares:
/// the load stopped, `/health` 200 again, and every answer checked for what it said.
struct UnderLoad {
    pg: caseflow_tests::OwnPostgres,
    data: std::path::PathBuf,
    server: Server,
    load: Load,
}

impl UnderLoad {
    fn start(name: &str) -> Option<UnderLoad> {
        let pg = caseflow_tests::OwnPostgres::start(name)?;
        let url = pg.database(&format!("caseflow_{name}"));
        let data = temp_data(&format!("pg-{name}"));
        std::fs::create_dir_all(&data).unwrap();
        let server = Server::start_with(&data, None, &[("CASEFLOW_DATABASE_URL", url.as_str())]);
        let load = Load::run(std::slice::from_ref(&server.addr), 4);
        load.wait_for(Instant::now(), Duration::from_secs(10), |a| a.status == 201);
        std::thread::sleep(Duration::from_millis(500));
        Some(UnderLoad { pg, data, server, load })
    }

    /// Waits for a start acknowledged after `since` (up to 30 s), then ends as described above.
    fn served_again_since(self, since: Instant, what: &str) {
        let UnderLoad { pg, data, server, load } = self;
        let served = load.wait_for(since, Duration::from_secs(30), |a| a.status == 201);
        eprintln!("served again {:?} after {what}", served.at - since);
        std::thread::sleep(Duration::from_millis(500));
        let answers = load.finish();
        let (status, health) = server.call("GET", "/health", "", None);
        assert_eq!(status, 200, "{health}");
        every_answer_meant_what_it_said(&server, &answers);
        assert!(server.stop().success());
        cleanup(&data);
        drop(pg);
    }
}

/// PostgreSQL killed under load and started again: the node answers 503 meanwhile (and
/// `/health` says why), serves again without a restart, and loses nothing it acknowledged.
#[test]
fn postgresql_restarted_under_load_is_served_again_without_a_restart_and_loses_nothing() {
    let Some(run) = UnderLoad::start("restart") else { return };
    let crashed = Instant::now();
    run.pg.crash();
    run.load.wait_for(crashed, Duration::from_secs(10), |a| a.status == 503);
    let (status, health) = run.server.call("GET", "/health", "", None);
    assert_eq!(status, 503, "{health}");
    assert!(json(&health)["storage"]["error"].is_string(), "{health}");
    std::thread::sleep(Duration::from_secs(1));

    let restarted = Instant::now();
    run.pg.start_again();
    run.served_again_since(restarted, "the database started");
}

/// PostgreSQL that hangs under load (every process of it paused, its connections left open):
/// the node stops waiting within seconds, not the 30 s a call may take, answers 503 to what
/// comes meanwhile (`/health` says why), serves again once the database answers, and every
/// answer meant what it said. Without the watchdog the first 503 came after 30 s.
#[test]
fn postgresql_that_hangs_under_load_is_answered_503_within_seconds_and_served_again() {
    let Some(run) = UnderLoad::start("hang") else { return };
    let frozen = Instant::now();
    run.pg.freeze();
    let refused = run.load.wait_for(frozen, Duration::from_secs(10), |a| a.status == 503);
    eprintln!("first 503 {:?} after the database hung ({})", refused.at - frozen, refused.what);
    let asked = Instant::now();
    let (status, health) = run.server.call("GET", "/health", "", None);
    assert_eq!(status, 503, "{health}");
    assert!(json(&health)["storage"]["error"].as_str().unwrap_or("").contains("not answering"), "{health}");
    assert!(asked.elapsed() < Duration::from_secs(5), "/health took {:?}", asked.elapsed());
    std::thread::sleep(Duration::from_secs(1));

    let thawed = Instant::now();
    run.pg.thaw();
    run.served_again_since(thawed, "the database answered");
}

/// Two nodes on a primary with a synchronous standby, the URL naming both hosts with
/// `target_session_attrs=read-write`. The primary is killed under load and the standby
/// promoted: both nodes find the new primary without a restart, and every start either node
/// acknowledged is there.
#[test]
fn a_synchronous_standby_promoted_after_the_primary_is_killed_loses_nothing_acknowledged() {
    let Some(primary) = caseflow_tests::OwnPostgres::start("primary") else { return };
    primary.database("caseflow_failover");
    let standby = primary.standby("standby");
    let url = format!(
        "postgres://caseflow@127.0.0.1:{},127.0.0.1:{}/caseflow_failover?target_session_attrs=read-write",
        primary.port, standby.port
    );
    let data = temp_data("pg-failover");
    let (a_dir, b_dir) = (data.join("a"), data.join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let key = data.join("field.key");
    let env = [("CASEFLOW_DATABASE_URL", url.as_str()), ("CASEFLOW_FIELD_KEY_FILE", key.to_str().unwrap())];
    let a = Server::start_with(&a_dir, None, &env);
    let b = Server::start_with(&b_dir, None, &env);
    let load = Load::run(&[a.addr.clone(), b.addr.clone()], 4);
    let began = Instant::now();
    load.wait_for(began, Duration::from_secs(10), |x| x.status == 201);
    std::thread::sleep(Duration::from_millis(500));

    let killed = Instant::now();
    primary.crash();
    load.wait_for(killed, Duration::from_secs(10), |x| x.status == 503);
    std::thread::sleep(Duration::from_secs(1));

    let promoted = Instant::now();
    standby.promote();
    // Both nodes serve again (the load goes to each in turn).
    for node in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, _) = node.call("GET", "/health", "", None);
            if status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "{} never found the new primary", node.addr);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let served = load.wait_for(promoted, Duration::from_secs(30), |x| x.status == 201);
    eprintln!("served again {:?} after the promotion", served.at - promoted);
    std::thread::sleep(Duration::from_millis(500));
    let answers = load.finish();
    every_answer_meant_what_it_said(&b, &answers);
    // A, too, reads every acknowledged case.
    assert_eq!(stored_cases(&a), stored_cases(&b));
    assert!(a.stop().success());
    assert!(b.stop().success());
    cleanup(&data);
}

/// A node on a database that takes TLS connections only. With `sslmode=require` and the
/// authority that signed the server's certificate (`database_ca_file`) it serves, its
/// listener included; with another authority it refuses to start, naming the certificate;
/// without `sslmode=require` the database refuses it, and it says so.
#[test]
fn a_node_reaches_a_database_that_takes_tls_only_and_checks_its_certificate() {
    let Some(pg) = caseflow_tests::OwnPostgres::start("tls") else { return };
    pg.database("caseflow_tls");
    let data = temp_data("pg-tls");
    std::fs::create_dir_all(&data).unwrap();
    // An authority, and the server's certificate it signs, for the address the URL names.
    let authority = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        (cert, key)
    };
    let (ca, ca_key) = authority("caseflow test authority");
    let (other, _) = authority("another authority");
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let file = |name: &str, text: String| {
        let path = data.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (cert, key) = (file("server.crt", server_cert.pem()), file("server.key", server_key.serialize_pem()));
    let (ca_file, other_file) = (file("ca.pem", ca.pem()), file("other.pem", other.pem()));
    pg.tls(&cert, &key);
    let url = format!("postgres://caseflow@127.0.0.1:{}/caseflow_tls?sslmode=require", pg.port);

    let trusted = [("CASEFLOW_DATABASE_URL", url.as_str()), ("CASEFLOW_DATABASE_CA_FILE", ca_file.to_str().unwrap())];
    let server = Server::start_with(&data, None, &trusted);
    let answer = start(&server.addr, "tls-1");
    assert_eq!(answer.status, 201, "{answer:?}");
    let (status, health) = server.call("GET", "/health", "", None);
    assert_eq!(status, 200, "{health}");
    assert!(server.stop().success());

    let refusal = |env: &[(&str, &str)]| -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_caseflow"))
            .arg("serve")
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .env("CASEFLOW_BIND", "127.0.0.1:0")
            .env("CASEFLOW_DATA_DIR", &data)
            .env("CASEFLOW_FIELD_KEY_FILE", data.join("field.key"))
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success(), "it started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let untrusted =
        refusal(&[("CASEFLOW_DATABASE_URL", &url), ("CASEFLOW_DATABASE_CA_FILE", other_file.to_str().unwrap())]);
    assert!(untrusted.contains("certificate"), "{untrusted}");
    let plain = url.replace("?sslmode=require", "");
    let in_clear = refusal(&[("CASEFLOW_DATABASE_URL", &plain)]);
    assert!(in_clear.contains("no encryption") || in_clear.contains("pg_hba.conf"), "{in_clear}");
    let ca_without_tls =
        refusal(&[("CASEFLOW_DATABASE_URL", &plain), ("CASEFLOW_DATABASE_CA_FILE", ca_file.to_str().unwrap())]);
    assert!(ca_without_tls.contains("sslmode=require"), "{ca_without_tls}");
    cleanup(&data);
}
