//! Several engines on one store, as several caseflow nodes on one database: each engine has
//! its own in-process locks and caches, so only the store's conditional writes keep them
//! apart. Every check runs on two engines sharing a map in memory, two sharing a sled store,
//! and two nodes each with its own connections to one PostgreSQL database.

mod common;

use caseflow_core::case::{Actor, Command, CommandError, InstanceId};
use caseflow_core::value::Value;
use caseflow_engine::storage::postgres::{PgOptions, PgStore};
use caseflow_engine::{Engine, EngineError, MemoryStore, Storage, Store};
use common::{bj, complaint_source, crm, fields};
use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

use caseflow_tests::shipped_rules as rules;

/// Runs `check` on each pair of nodes, the process deployed on the first only.
fn on_two_nodes(name: &str, check: impl Fn(&dyn Nodes)) {
    on_two_nodes_with(name, &rules, check)
}

/// `on_two_nodes`, the nodes opened with `rules`.
fn on_two_nodes_with(name: &str, rules: &dyn Fn() -> caseflow_engine::RuleSet, check: impl Fn(&dyn Nodes)) {
    let memory = Arc::new(MemoryStore::new());
    check(&deployed(Engine::open(memory.clone(), rules()).unwrap(), Engine::open(memory, rules()).unwrap()));
    let sled = Arc::new(Store::temporary().unwrap());
    check(&deployed(Engine::open(sled.clone(), rules()).unwrap(), Engine::open(sled, rules()).unwrap()));
    if let Some(url) = caseflow_tests::postgres_database(&format!("nodes_{name}")) {
        let node = || Engine::open(PgStore::connect(&PgOptions::new(&url)).unwrap(), rules()).unwrap();
        check(&deployed(node(), node()));
    }
}

/// Deploys the complaint process on `a`; `b` takes it in as a node does (`refresh`).
fn deployed<S: Storage>(a: Engine<S>, b: Engine<S>) -> (Engine<S>, Engine<S>) {
    a.deploy(&complaint_source(), bj(2026, 11, 23, 9, 0)).unwrap();
    assert!(b.definition("complaint", None).is_none());
    assert!(b.refresh().unwrap(), "the other node's deploy is taken in");
    assert!(b.definition("complaint", None).is_some());
    (a, b)
}

/// Two nodes, whatever their storage.
trait Nodes: Sync {
    fn node(&self, i: usize) -> &dyn Node;
}

/// What the checks ask of a node.
trait Node: Sync {
    fn start(
        &self,
        urgency: &str,
        key: Option<&str>,
        minute: u32,
    ) -> Result<caseflow_core::case::Instance, EngineError>;
    fn command(&self, id: InstanceId, actor: &Actor, command: Command) -> Result<(), EngineError>;
    fn instance(&self, id: InstanceId) -> caseflow_core::case::Instance;
    fn history_events(&self, id: InstanceId) -> Vec<String>;
    fn fire_due(&self, at: chrono::DateTime<chrono::Utc>) -> usize;
    fn running(&self) -> Vec<InstanceId>;
    fn refresh(&self) -> bool;
    fn deploy(&self, source: &str) -> u32;
    fn latest_version(&self) -> u32;
    /// The role's round-robin position as stored.
    fn rotation(&self, role: &str) -> u64;
    /// `user`'s open tasks as assignment reads them (`Engine::inbox_counts`).
    fn open_counted(&self, user: &str) -> usize;
    /// `user`'s open tasks, listed.
    fn open_listed(&self, user: &str) -> usize;
    /// Starts a complaint (for checks that hold an engine, not a `Node`).
    fn start_case(&self, urgency: &str, minute: u32) -> InstanceId {
        self.start(urgency, None, minute).unwrap().id
    }
}

impl<S: Storage> Nodes for (Engine<S>, Engine<S>) {
    fn node(&self, i: usize) -> &dyn Node {
        match i % 2 {
            0 => &self.0,
            _ => &self.1,
        }
    }
}

impl<S: Storage> Node for Engine<S> {
    fn start(
        &self,
        urgency: &str,
        key: Option<&str>,
        minute: u32,
    ) -> Result<caseflow_core::case::Instance, EngineError> {
        Engine::start(self, "complaint", fields(urgency), &crm(), key, bj(2026, 11, 23, 10, minute))
    }
    fn command(&self, id: InstanceId, actor: &Actor, command: Command) -> Result<(), EngineError> {
        Engine::command(self, id, actor, command, bj(2026, 11, 23, 10, 30)).map(|_| ())
    }
    fn instance(&self, id: InstanceId) -> caseflow_core::case::Instance {
        Engine::instance(self, id).unwrap().unwrap()
    }
    fn history_events(&self, id: InstanceId) -> Vec<String> {
        self.history(id).unwrap().into_iter().map(|h| h.event.to_string()).collect()
    }
    fn fire_due(&self, at: chrono::DateTime<chrono::Utc>) -> usize {
        Engine::fire_due(self, at, 10_000).unwrap()
    }
    fn running(&self) -> Vec<InstanceId> {
        self.instances("complaint", "running", 10_000).unwrap()
    }
    fn refresh(&self) -> bool {
        Engine::refresh(self).unwrap()
    }
    fn deploy(&self, source: &str) -> u32 {
        Engine::deploy(self, source, bj(2026, 11, 23, 11, 0)).unwrap().version
    }
    fn latest_version(&self) -> u32 {
        self.definition("complaint", None).unwrap().version
    }
    fn open_counted(&self, user: &str) -> usize {
        let at = bj(2026, 11, 23, 10, 0);
        self.inbox_counts(user, at, at, at).unwrap().open
    }
    fn open_listed(&self, user: &str) -> usize {
        self.tasks(Some(user), None, usize::MAX).unwrap().len()
    }
    fn rotation(&self, role: &str) -> u64 {
        self.store().get_u64(&caseflow_engine::storage::keys::round_robin(role)).unwrap().unwrap_or(0)
    }
}

/// Runs `each(node, i)` for `i in 0..n` on two threads, one per node, started together.
fn both(nodes: &dyn Nodes, n: usize, each: &(dyn Fn(&dyn Node, usize) + Sync)) {
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        for side in 0..2 {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for i in (0..n).filter(|i| i % 2 == side) {
                    each(nodes.node(side), i);
                }
            });
        }
    });
}

#[test]
fn cases_started_on_two_nodes_get_ids_and_register_numbers_once_each() {
    on_two_nodes("numbers", |nodes| {
        let started = std::sync::Mutex::new(Vec::new());
        both(nodes, 80, &|node, _| {
            let inst = node.start("low", None, 0).unwrap();
            started.lock().unwrap().push((inst.id, inst.business_key));
        });
        let started = started.into_inner().unwrap();
        let ids: BTreeSet<_> = started.iter().map(|s| s.0).collect();
        assert_eq!(ids.len(), 80, "no id given twice");
        let keys: BTreeSet<_> = started.iter().map(|s| s.1.clone()).collect();
        let expected: BTreeSet<_> = (1..=80).map(|n| format!("20261123-{n:03}")).collect();
        assert_eq!(keys, expected, "the register has no number twice and no gap");
        // Both nodes read every case.
        for (id, key) in &started {
            assert_eq!(&nodes.node(1).instance(*id).business_key, key);
        }
    });
}

#[test]
fn the_same_idempotency_key_sent_to_two_nodes_at_once_starts_one_case() {
    on_two_nodes("idempotency", |nodes| {
        for k in 0..12 {
            let key = format!("crm-{k}");
            let got = std::sync::Mutex::new(Vec::new());
            let barrier = Barrier::new(2);
            std::thread::scope(|s| {
                for side in 0..2 {
                    let (got, barrier, key) = (&got, &barrier, &key);
                    s.spawn(move || {
                        barrier.wait();
                        match nodes.node(side).start("low", Some(key), 1) {
                            Ok(inst) => got.lock().unwrap().push(inst.id),
                            // The other node's start of this key is under way in this process
                            // only; across nodes the loser finds the winner's case.
                            Err(EngineError::StartInProgress(_)) => {}
                            Err(e) => panic!("{e}"),
                        }
                    });
                }
            });
            let got = got.into_inner().unwrap();
            assert!(!got.is_empty());
            assert!(got.iter().all(|id| *id == got[0]), "one case for `{key}`: {got:?}");
        }
        assert_eq!(nodes.node(0).running().len(), 12);
        assert_eq!(nodes.node(1).running().len(), 12);
    });
}

#[test]
fn a_task_completed_on_two_nodes_at_once_is_completed_once() {
    on_two_nodes("complete", |nodes| {
        let cases: Vec<_> = (0..10).map(|_| nodes.node(0).start("high", None, 2).unwrap()).collect();
        for case in &cases {
            let task = case.tasks.values().next().unwrap();
            let actor = Actor { id: task.assignee.clone().unwrap(), roles: vec!["cs_rep".into()], admin: false };
            let complete = Command::CompleteTask {
                task: task.seq,
                fields: [("cause".to_string(), Value::Text("quality".into()))].into(),
            };
            let results = std::sync::Mutex::new(Vec::new());
            let barrier = Barrier::new(2);
            std::thread::scope(|s| {
                for side in 0..2 {
                    let (results, barrier, actor, complete) = (&results, &barrier, &actor, &complete);
                    s.spawn(move || {
                        barrier.wait();
                        let r = nodes.node(side).command(case.id, actor, complete.clone());
                        results.lock().unwrap().push(r);
                    });
                }
            });
            let results = results.into_inner().unwrap();
            assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "exactly one wins: {results:?}");
            assert!(results.iter().any(|r| matches!(r, Err(EngineError::Command(CommandError::TaskNotOpen(_))))));
            let events = nodes.node(1).history_events(case.id);
            assert_eq!(events.iter().filter(|e| *e == "task_completed").count(), 1, "{events:?}");
        }
    });
}

#[test]
fn due_timers_fire_once_across_two_nodes() {
    on_two_nodes("timers", |nodes| {
        // Cases started on both nodes: each node's timers are in the other's scans too.
        let ids: Vec<InstanceId> = (0..30).map(|i| nodes.node(i).start("high", None, 3).unwrap().id).collect();
        let fired = std::sync::atomic::AtomicUsize::new(0);
        both(nodes, 2, &|node, _| {
            fired.fetch_add(node.fire_due(bj(2026, 11, 23, 12, 0)), std::sync::atomic::Ordering::SeqCst);
        });
        // Each case's deadline and its escalation to the manager: two timers, due by noon.
        assert_eq!(fired.into_inner(), 60, "every due timer fired, and once");
        for id in ids {
            let events = nodes.node(0).history_events(id);
            assert_eq!(events.iter().filter(|e| *e == "task_overdue").count(), 1, "{events:?}");
        }
        assert_eq!(
            nodes.node(1).fire_due(bj(2026, 11, 23, 12, 0)) + nodes.node(0).fire_due(bj(2026, 11, 23, 12, 0)),
            0
        );
    });
}

#[test]
fn a_version_deployed_on_one_node_is_in_force_on_the_other_after_a_refresh() {
    on_two_nodes("deploy", |nodes| {
        let changed =
            complaint_source().replace("due 1 workday\n    asks evidence", "due 2 workdays\n    asks evidence");
        assert_ne!(changed, complaint_source());
        assert_eq!(nodes.node(1).deploy(&changed), 2);
        assert_eq!(nodes.node(0).latest_version(), 1);
        assert!(nodes.node(0).refresh());
        assert_eq!(nodes.node(0).latest_version(), 2);
        assert!(!nodes.node(0).refresh(), "nothing new the second time");
        // Both deploy a third version at once: one is version 3, the other 4 (or the same
        // source, once: not twice under one number).
        let third = changed.replace("due 2 workdays", "due 3 workdays");
        let fourth = changed.replace("due 2 workdays", "due 4 workdays");
        let versions = std::sync::Mutex::new(Vec::new());
        both(nodes, 2, &|node, i| {
            versions.lock().unwrap().push(node.deploy(if i == 0 { &third } else { &fourth }));
        });
        let mut versions = versions.into_inner().unwrap();
        versions.sort();
        assert_eq!(versions, [3, 4]);
    });
}

/// PostgreSQL stopped under a running engine: every call answers that storage is unavailable
/// (nothing applied); started again, the engine serves on without being reopened (the pool
/// replaces its broken connections), and nothing acknowledged before is lost. On a cluster of
/// its own, so that stopping it stops no other test.
#[test]
fn a_restarted_database_fails_calls_meanwhile_and_is_served_again_without_a_reopen() {
    if caseflow_tests::postgres_database("probe_restart").is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("caseflow-pg-restart-{}", std::process::id()));
    let script = |args: &[&str]| {
        let out = std::process::Command::new(caseflow_tests::root().join("scripts/postgres.sh"))
            .args(args)
            .env("CASEFLOW_PG_DIR", &dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "postgres.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let url = script(&["database", "restart"]);
    let engine = Engine::open(PgStore::connect(&PgOptions::new(&url)).unwrap(), rules()).unwrap();
    engine.deploy(&complaint_source(), bj(2026, 11, 23, 9, 0)).unwrap();
    let before = engine.start("complaint", fields("low"), &crm(), None, bj(2026, 11, 23, 10, 0)).unwrap();
    script(&["stop"]);
    let refused = engine.start("complaint", fields("low"), &crm(), None, bj(2026, 11, 23, 10, 1));
    assert!(
        matches!(refused, Err(EngineError::Store(caseflow_engine::storage::StoreError::Unavailable(_)))),
        "{refused:?}"
    );
    assert!(engine.store().check_health().is_some(), "health says storage is failing");
    let port = |url: &str| url.rsplit_once(':').map(|(_, rest)| rest.split('/').next().unwrap_or("").to_string());
    assert_eq!(port(&script(&["start"])), port(&url), "the same address again");
    let after = engine.start("complaint", fields("low"), &crm(), None, bj(2026, 11, 23, 10, 2)).unwrap();
    assert_eq!(engine.store().check_health(), None);
    assert_eq!(Engine::instance(&engine, before.id).unwrap().unwrap().business_key, before.business_key);
    assert_eq!(after.business_key, "20261123-002", "the refused start took no number");
    script(&["stop"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `/events` on any node carries every node's changes: a node hears every node's history
/// entries as they commit (PostgreSQL's NOTIFY; the map in memory tells its listeners), its own
/// among them, once each and in order per case (a node's own later change of a case is not told
/// before another node's earlier one).
#[test]
fn a_node_hears_the_changes_the_other_node_makes_in_order_and_its_own_once() {
    fn check<S: Storage>(a: Arc<Engine<S>>, b: Arc<Engine<S>>) {
        a.deploy(&complaint_source(), bj(2026, 11, 23, 9, 0)).unwrap();
        b.refresh().unwrap();
        b.listen_for_changes().unwrap();
        let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = heard.clone();
        b.observe(move |e| into.lock().unwrap().push((e.instance, e.seq, e.event.to_string())));
        let case = a.start("complaint", fields("high"), &crm(), None, bj(2026, 11, 23, 10, 0)).unwrap();
        let task = case.tasks.values().next().unwrap();
        let actor = Actor { id: task.assignee.clone().unwrap(), roles: vec!["cs_rep".into()], admin: false };
        let complete = Command::CompleteTask {
            task: task.seq,
            fields: [("cause".to_string(), Value::Text("quality".into()))].into(),
        };
        // Completed on B: B tells its own observers itself, once.
        b.command(case.id, &actor, complete, bj(2026, 11, 23, 10, 5)).unwrap();
        a.fire_due(bj(2026, 11, 26, 10, 0), 100).unwrap();
        let history: Vec<_> =
            a.history(case.id).unwrap().into_iter().map(|h| (case.id, h.seq, h.event.to_string())).collect();
        // Delivery is asynchronous (after the other node's commit): wait for it, up to 10 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while heard.lock().unwrap().len() < history.len() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(*heard.lock().unwrap(), history, "every entry, in order, once");
    }
    let memory = Arc::new(MemoryStore::new());
    check(Arc::new(Engine::open(memory.clone(), rules()).unwrap()), Arc::new(Engine::open(memory, rules()).unwrap()));
    if let Some(url) = caseflow_tests::postgres_database("nodes_hear") {
        let node = || Arc::new(Engine::open(PgStore::connect(&PgOptions::new(&url)).unwrap(), rules()).unwrap());
        check(node(), node());
    }
}

/// Writers on two nodes at once, whose transactions commit out of the order they took their ids
/// in: a third node hears every change once, each case's in order, since the change feed is
/// read only below the oldest transaction still running.
#[test]
fn under_writers_on_two_nodes_a_third_hears_every_change_once_and_each_case_in_order() {
    let Some(url) = caseflow_tests::postgres_database("nodes_feed") else { return };
    let node = || Arc::new(Engine::open(PgStore::connect(&PgOptions::new(&url)).unwrap(), rules()).unwrap());
    let (a, b, third) = (node(), node(), node());
    a.deploy(&complaint_source(), bj(2026, 11, 23, 9, 0)).unwrap();
    b.refresh().unwrap();
    third.refresh().unwrap();
    third.listen_for_changes().unwrap();
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = heard.clone();
    third.observe(move |e| into.lock().unwrap().push((e.instance, e.seq)));
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let (mine, other) = if t % 2 == 0 { (a.clone(), b.clone()) } else { (b.clone(), a.clone()) };
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for i in 0..15 {
                    let at = bj(2026, 11, 23, 10, i);
                    let case = mine.start("complaint", fields("high"), &crm(), None, at).unwrap();
                    let task = case.tasks.values().next().unwrap();
                    let actor =
                        Actor { id: task.assignee.clone().unwrap(), roles: vec!["cs_rep".into()], admin: false };
                    let fields = [("cause".to_string(), Value::Text("quality".into()))].into();
                    other.command(case.id, &actor, Command::CompleteTask { task: task.seq, fields }, at).unwrap();
                    ids.push(case.id);
                }
                ids
            })
        })
        .collect();
    let ids: Vec<InstanceId> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    let history: Vec<Vec<(InstanceId, u64)>> =
        ids.iter().map(|id| a.history(*id).unwrap().into_iter().map(|h| (*id, h.seq)).collect()).collect();
    let total: usize = history.iter().map(Vec::len).sum();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while heard.lock().unwrap().len() < total && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Late duplicates would come within the next reads.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let heard = heard.lock().unwrap().clone();
    assert_eq!(heard.len(), total, "every entry of the {} cases once", ids.len());
    for (id, entries) in ids.iter().zip(&history) {
        let of_case: Vec<_> = heard.iter().filter(|(i, _)| i == id).cloned().collect();
        assert_eq!(&of_case, entries, "case {id:?} in order");
    }
}

/// A transaction left open on the database (a `psql` session idle in its transaction) holds the
/// change feed back: nothing after it is heard until it ends, and meanwhile the store names the
/// session (for `/health`); once it ends, what waited is heard.
#[test]
fn a_transaction_left_open_holds_the_change_feed_back_and_the_store_names_its_session() {
    use std::io::Write;
    let Some(url) = caseflow_tests::postgres_database("nodes_held") else { return };
    let node = || Arc::new(Engine::open(PgStore::connect(&PgOptions::new(&url)).unwrap(), rules()).unwrap());
    let (a, b) = (node(), node());
    a.deploy(&complaint_source(), bj(2026, 11, 23, 9, 0)).unwrap();
    b.refresh().unwrap();
    b.listen_for_changes().unwrap();
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = heard.clone();
    b.observe(move |e| into.lock().unwrap().push(e.seq));
    let psql = |sql: &str| {
        let out = std::process::Command::new("psql").args([url.as_str(), "-Atqc", sql]).output().expect("psql runs");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let mut session = std::process::Command::new("psql")
        .args([url.as_str(), "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("psql runs");
    let mut input = session.stdin.take().unwrap();
    writeln!(input, "BEGIN; SELECT pg_current_xact_id();").unwrap();
    input.flush().unwrap();
    let open = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'psql' AND backend_xid IS NOT NULL \
                AND datname = current_database()";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while psql(open) != "1" {
        assert!(std::time::Instant::now() < deadline, "the session never took a transaction id");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let case = a.start("complaint", fields("high"), &crm(), None, bj(2026, 11, 23, 10, 0)).unwrap();
    let entries = a.history(case.id).unwrap().len();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let named = loop {
        if let Some(why) = b.store().feed_held_back() {
            break why;
        }
        assert!(std::time::Instant::now() < deadline, "the store never said the feed is held back");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(named.contains("application `psql`") && named.contains("idle in transaction"), "{named}");
    assert!(heard.lock().unwrap().is_empty(), "nothing is heard past the open transaction");

    writeln!(input, "ROLLBACK;").unwrap();
    drop(input);
    session.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while (heard.lock().unwrap().len() < entries || b.store().feed_held_back().is_some())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(heard.lock().unwrap().len(), entries, "what waited is heard");
    assert_eq!(b.store().feed_held_back(), None);
}

/// The change feed keeps two minutes: older rows go when a node cleans it, newer ones stay.
#[test]
fn the_change_feed_keeps_two_minutes() {
    let Some(url) = caseflow_tests::postgres_database("nodes_feed_kept") else { return };
    let store = PgStore::connect(&PgOptions::new(&url)).unwrap();
    let psql = |sql: &str| {
        let out = std::process::Command::new("psql").args([url.as_str(), "-Atqc", sql]).output().expect("psql runs");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    psql("INSERT INTO caseflow_feed (at, notes) VALUES (now() - interval '121 seconds', '{old}'), (now() - interval '100 seconds', '{recent}')");
    store.clean_feed().unwrap();
    assert_eq!(psql("SELECT string_agg(notes[1], ',') FROM caseflow_feed"), "recent");
}

/// A rules change accepted on one node is in force on the other after `refresh` (the server
/// refreshes every second); two changes made at once on two nodes do not both pass on the same
/// version: the second is refused as a conflict, and the rules it would have replaced stay.
#[test]
fn a_rules_change_on_one_node_is_in_force_on_the_other_and_two_at_once_do_not_both_pass() {
    let files = caseflow_engine::read_rules_dir(&caseflow_tests::root().join("rules")).unwrap();
    let changed = |high: &str| {
        let files: Vec<_> = files
            .iter()
            .map(|f| caseflow_engine::RulesFile {
                name: f.name.clone(),
                text: f.text.replace("high = \"10min\"", &format!("high = \"{high}\"")),
            })
            .collect();
        (caseflow_engine::RuleSet::load(&files).unwrap(), files)
    };
    fn check<S: Storage>(
        a: Engine<S>,
        b: Engine<S>,
        changed: &dyn Fn(&str) -> (caseflow_engine::RuleSet, Vec<caseflow_engine::RulesFile>),
    ) {
        let at = bj(2026, 11, 23, 9, 0);
        let (rules, files) = changed("20min");
        a.change_rules(rules, &files, "admin", String::new(), at).unwrap();
        assert_eq!(b.rules_version(), 0);
        assert!(b.refresh().unwrap());
        assert_eq!(b.rules_version(), 1);
        let high = |e: &Engine<S>| format!("{:?}", e.rules().values.get("response_time"));
        assert_eq!(high(&a), high(&b), "the same rules in force on both");
        // B changes on version 1 while A, unaware of it, changes on version 1 too.
        let (rules, files) = changed("30min");
        b.change_rules(rules, &files, "admin", String::new(), at).unwrap();
        let (rules, files) = changed("40min");
        let refused = a.change_rules(rules, &files, "admin", String::new(), at);
        assert!(
            matches!(refused, Err(EngineError::Store(caseflow_engine::storage::StoreError::Conflict(_)))),
            "{refused:?}"
        );
        assert!(a.refresh().unwrap());
        assert_eq!((a.rules_version(), high(&a)), (2, high(&b)), "B's change, not lost");
    }
    let memory = Arc::new(MemoryStore::new());
    check(Engine::open(memory.clone(), rules()).unwrap(), Engine::open(memory, rules()).unwrap(), &changed);
    if let Some(url) = caseflow_tests::postgres_database("nodes_rules") {
        let node = || Engine::open(PgStore::connect(&PgOptions::new(&url)).unwrap(), rules()).unwrap();
        check(node(), node(), &changed);
    }
}

/// Due timers are divided between nodes by claims: what one node claimed the other's claim
/// passes over, and each fires only what it claimed. A node that stalled past its lease (a
/// pause, a long GC, a cut network) and comes back fires nothing the other node took over,
/// though the cases are still unfired when it tries: the claim's token fences it.
#[test]
fn nodes_divide_due_timers_by_claims_and_one_stalled_past_its_lease_fires_nothing_taken_over() {
    fn check<S: Storage>(a: Engine<S>, b: Engine<S>) {
        let (a, b) = deployed(a, b);
        let noon = bj(2026, 11, 23, 12, 0);
        let ids: Vec<InstanceId> =
            (0..30).map(|i| if i % 2 == 0 { &a } else { &b }.start_case("high", i as u32 % 30)).collect();
        // Each case's deadline and its escalation: 60 timers due by noon.
        let first = a.claim_due(noon, 40).unwrap();
        let rest = b.claim_due(noon, 100).unwrap();
        assert_eq!((first.len(), rest.len()), (40, 20), "the second claim passes over the first's");
        assert!(a.claim_due(noon, 100).unwrap().is_empty());
        assert_eq!(b.fire_claimed(rest, noon).unwrap(), 20);
        assert_eq!(a.fire_claimed(first, noon).unwrap(), 40);
        for id in &ids {
            let overdue = a.history(*id).unwrap().iter().filter(|h| h.event == "task_overdue").count();
            assert_eq!(overdue, 1);
        }

        // Due again the next day (the escalated tasks' deadlines): A claims them all and stalls.
        let later = bj(2026, 11, 30, 12, 0);
        a.set_claim_lease(std::time::Duration::from_millis(200));
        let stalled = a.claim_due(later, 1000).unwrap();
        let due = stalled.len();
        assert!(due > 0);
        assert!(b.claim_due(later, 1000).unwrap().is_empty(), "held while A's lease lasts");
        std::thread::sleep(std::time::Duration::from_millis(500));
        let taken_over = b.claim_due(later, 1000).unwrap();
        assert_eq!(taken_over.len(), due, "A's lease ran out: B takes its timers over");
        let histories = |e: &Engine<S>| ids.iter().map(|id| e.history(*id).unwrap().len()).collect::<Vec<_>>();
        let before = histories(&a);
        assert_eq!(a.fire_claimed(stalled, later).unwrap(), 0, "A, back, fires nothing B took over");
        assert_eq!(histories(&a), before, "and writes nothing");
        assert_eq!(b.fire_claimed(taken_over, later).unwrap(), due);
        assert!(histories(&a) != before);
        assert_eq!(a.fire_due(later, 1000).unwrap() + b.fire_due(later, 1000).unwrap(), 0);
    }
    let memory = Arc::new(MemoryStore::new());
    check(Engine::open(memory.clone(), rules()).unwrap(), Engine::open(memory, rules()).unwrap());
    if let Some(url) = caseflow_tests::postgres_database("nodes_claims") {
        let node = || Engine::open(PgStore::connect(&PgOptions::new(&url)).unwrap(), rules()).unwrap();
        check(node(), node());
    }
}

/// A role given work by round robin goes round exactly across nodes: starts made on both nodes
/// at once give each of the role's members the same number of tasks, and the stored rotation
/// moved by one per task (no position given twice, none skipped).
#[test]
fn round_robin_goes_round_exactly_across_two_nodes() {
    let files: Vec<_> = caseflow_engine::read_rules_dir(&caseflow_tests::root().join("rules"))
        .unwrap()
        .into_iter()
        .map(|f| caseflow_engine::RulesFile {
            text: f.text.replace("strategy = \"fewest_open\"", "strategy = \"round_robin\""),
            name: f.name,
        })
        .collect();
    let round_robin = || caseflow_engine::RuleSet::load(&files).unwrap();
    on_two_nodes_with("round_robin", &round_robin, |nodes| {
        let assignees = std::sync::Mutex::new(std::collections::BTreeMap::<String, usize>::new());
        both(nodes, 30, &|node, i| {
            let case = node.start("low", None, i as u32).unwrap();
            let task = case.tasks.values().next().unwrap();
            *assignees.lock().unwrap().entry(task.assignee.clone().unwrap()).or_default() += 1;
        });
        let assignees = assignees.into_inner().unwrap();
        assert_eq!(assignees.values().sum::<usize>(), 30);
        assert!(assignees.values().all(|n| *n == 30 / assignees.len()), "an even round: {assignees:?}");
        assert_eq!(nodes.node(0).rotation("cs_rep"), 30, "moved once per task");
    });
}

/// Open tasks per person, what `by fewest_open` reads, are counted in the store on a shared
/// one (`w/`, added to by every write that changes an inbox): after starts and completions on
/// both nodes at once, each node's count is every rep's listed tasks. A store without counts (imported from a copy, which leaves them out) has them made
/// by the first engine that opens it.
#[test]
fn open_tasks_are_counted_exactly_across_two_nodes() {
    let reps = ["liu_yang", "zhang_wei"];
    on_two_nodes("open_counts", |nodes| {
        both(nodes, 40, &|node, i| {
            let case = node.start("high", None, 1).unwrap();
            if i % 3 == 0 {
                let task = case.tasks.values().next().unwrap();
                let actor = Actor { id: task.assignee.clone().unwrap(), roles: vec!["cs_rep".into()], admin: false };
                let fields = [("cause".to_string(), Value::Text("quality".into()))].into();
                node.command(case.id, &actor, Command::CompleteTask { task: task.seq, fields }).unwrap();
            }
        });
        let listed: Vec<usize> = reps.iter().map(|u| nodes.node(0).open_listed(u)).collect();
        for side in 0..2 {
            let counted: Vec<usize> = reps.iter().map(|u| nodes.node(side).open_counted(u)).collect();
            assert_eq!(counted, listed, "node {side} counts what the inboxes list");
        }
    });
    // Made afresh where they are missing.
    fn made_again<S: Storage>(store: Arc<S>) {
        let reps = ["liu_yang", "zhang_wei"];
        let a = Engine::open(store.clone(), rules()).unwrap();
        a.deploy(&complaint_source(), bj(2026, 11, 23, 9, 0)).unwrap();
        for minute in 0..7 {
            Node::start(&a, "high", None, minute).unwrap();
        }
        let listed: Vec<usize> = reps.iter().map(|u| a.open_listed(u)).collect();
        assert_eq!(listed.iter().sum::<usize>(), 7);
        let mut drop_counts = caseflow_engine::storage::Batch::default();
        for item in store.scan_prefix(b"w/") {
            drop_counts.remove(item.unwrap().0.to_vec());
        }
        store.write(drop_counts).unwrap();
        assert!(store.scan_prefix(b"w/").next().is_none());
        let b = Engine::open(store, rules()).unwrap();
        let counted: Vec<usize> = reps.iter().map(|u| b.open_counted(u)).collect();
        assert_eq!(counted, listed);
    }
    made_again(Arc::new(MemoryStore::new()));
    if let Some(url) = caseflow_tests::postgres_database("nodes_open_counts_made") {
        made_again(Arc::new(PgStore::connect(&PgOptions::new(&url)).unwrap()));
    }
}

/// One node at a time delivers the webhook outbox: the one holding its lease. Another node
/// takes the lease over when its holder stops renewing it, and the old holder, back, can no
/// longer acknowledge (remove) what its successor now delivers.
#[test]
fn one_node_at_a_time_delivers_the_outbox_and_a_stalled_one_loses_it() {
    fn check<S: Storage>(a: Engine<S>, b: Engine<S>) {
        let (a, b) = deployed(a, b);
        a.enable_outbox();
        b.enable_outbox();
        b.start_case("high", 0);
        a.set_claim_lease(std::time::Duration::from_millis(200));
        let held = a.outbox_lease().unwrap().expect("the lease is free");
        assert!(b.outbox_lease().unwrap().is_none(), "A delivers");
        assert!(a.renew_outbox_lease(&held).unwrap());
        let pending = a.outbox_peek(100).unwrap();
        assert!(!pending.is_empty());
        a.outbox_ack(&pending[0].0, &held).unwrap();
        // A stalls past its lease: B takes over; A's acknowledgement is refused.
        std::thread::sleep(std::time::Duration::from_millis(500));
        let taken = b.outbox_lease().unwrap().expect("A's lease ran out");
        assert!(!a.renew_outbox_lease(&held).unwrap(), "A learns it lost the lease");
        let refused = a.outbox_ack(&pending[1].0, &held);
        assert!(
            matches!(refused, Err(EngineError::Store(caseflow_engine::storage::StoreError::ClaimLost(_)))),
            "{refused:?}"
        );
        assert_eq!(b.outbox_peek(100).unwrap().len(), pending.len() - 1, "the event stays for B");
        b.outbox_ack(&pending[1].0, &taken).unwrap();
    }
    let memory = Arc::new(MemoryStore::new());
    check(Engine::open(memory.clone(), rules()).unwrap(), Engine::open(memory, rules()).unwrap());
    if let Some(url) = caseflow_tests::postgres_database("nodes_outbox") {
        let node = || Engine::open(PgStore::connect(&PgOptions::new(&url)).unwrap(), rules()).unwrap();
        check(node(), node());
    }
}

/// A database's statistics, taken while its table was small, must not leave a node reading a
/// grown table by scanning it. A session plans a prepared statement (and each statement of
/// `caseflow_write`) once, from the statistics of that moment, and keeps the plan until the
/// next `ANALYZE`: on a new database, analysed at its first few dozen rows, that plan was a
/// scan of the whole table, for reads by key and for a write's locks and deletions alike, and
/// HTTP starts ran at half speed for the minute until autovacuum analysed again. Measured by
/// the blocks each statement touched (`pg_stat_statements`, nested statements included).
#[test]
fn reads_and_writes_by_key_go_by_the_index_after_the_table_grew_past_its_statistics() {
    let Some(url) = caseflow_tests::postgres_database("plans") else { return };
    let psql = |sql: &str| {
        let out = std::process::Command::new("psql").args([url.as_str(), "-Atqc", sql]).output().expect("psql runs");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    psql("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET pg_stat_statements.track = ''all''', current_database()); END $$");
    // One connection, so that every call below plans in the same session.
    let store = PgStore::connect(&PgOptions { pool_size: 1, ..PgOptions::new(&url) }).unwrap();
    let key = |i: u32| format!("k/{i:05}").into_bytes();
    let mut batch = caseflow_engine::storage::Batch::default();
    for i in 0..60 {
        batch.insert(key(i), vec![b'x'; 100]);
    }
    store.write(batch).unwrap();
    psql("ANALYZE caseflow_entries");
    let wanted: Vec<Vec<u8>> = (0..48).map(key).collect();
    // The session plans its statements now, against the small table's statistics.
    let calls = |round: u32| {
        assert_eq!(store.get_many(&wanted).unwrap().iter().flatten().count(), 48);
        let mut batch = caseflow_engine::storage::Batch::default();
        let old = store.get(&key(round)).unwrap();
        batch.expect(key(round), old);
        batch.insert(key(round), vec![b'y'; 100]);
        batch.remove(key(100 + round));
        store.write(batch).unwrap();
    };
    for round in 0..8 {
        calls(round);
    }
    // The table grows by another connection (another node), and no ANALYZE follows.
    psql("INSERT INTO caseflow_entries (key, value) SELECT convert_to('z/' || g, 'UTF8'), repeat('v', 100)::bytea FROM generate_series(1, 300000) g");
    let table_blocks: u64 = psql("SELECT pg_relation_size('caseflow_entries') / 8192").parse().unwrap();
    psql("SELECT pg_stat_statements_reset()");
    calls(8);
    let touched = psql(
        "SELECT coalesce(max(shared_blks_hit + shared_blks_read), 0) || ' ' \
         || coalesce(string_agg((shared_blks_hit + shared_blks_read) || ' blocks: ' || query, ' | '), '') \
         FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND query LIKE '%caseflow_entries%' AND query NOT LIKE '%pg_stat_statements%'",
    );
    let (blocks, queries) = touched.split_once(' ').unwrap();
    let blocks: u64 = blocks.parse().unwrap();
    assert!(queries.contains("ANY"), "the store's statements were counted: {queries}");
    assert!(
        blocks * 10 < table_blocks,
        "a statement touched {blocks} of the table's {table_blocks} blocks (a scan of the table): {queries}"
    );
}
