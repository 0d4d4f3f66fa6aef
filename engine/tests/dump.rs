//! A store moved whole between implementations (`storage::dump`, behind `caseflow export` and
//! `caseflow import`): from sled into PostgreSQL and back, the same cases, checksums and
//! answers; a damaged dump or a store that is not empty is refused with nothing written.

mod common;

use caseflow_core::case::{Actor, Command};
use caseflow_core::value::Value;
use caseflow_engine::storage::dump::{self, DumpError};
use caseflow_engine::storage::postgres::{PgOptions, PgStore};
use caseflow_engine::storage::Storage;
use caseflow_engine::{Engine, MemoryStore, Store};
use common::{bj, complaint_source, crm, fields};
use std::io::Read;

use caseflow_tests::shipped_rules as rules;

fn dumped<S: Storage>(store: &S) -> (Vec<u8>, dump::Summary) {
    let mut bytes = Vec::new();
    let summary = dump::dump(store, &mut bytes).unwrap();
    (bytes, summary)
}

fn load<S: Storage>(store: &S, bytes: &[u8]) -> Result<dump::Summary, DumpError> {
    let bytes = bytes.to_vec();
    dump::load(store, &move || -> std::io::Result<Box<dyn Read>> { Ok(Box::new(std::io::Cursor::new(bytes.clone()))) })
}

/// What an engine answers about its cases, to compare across stores.
fn answers<S: Storage>(engine: &Engine<S>) -> String {
    let mut out = String::new();
    for status in ["running", "completed"] {
        for id in engine.instances("complaint", status, 1000).unwrap() {
            let inst = engine.instance(id).unwrap().unwrap();
            let history: Vec<_> = engine.history(id).unwrap().into_iter().map(|h| h.event.to_string()).collect();
            out += &format!("{status} {inst:?} {history:?}\n");
        }
    }
    // Open tasks per rep as assignment reads them: a shared store counts them in `w/` rows,
    // which a copy leaves out and the engine opening it makes again.
    let at = bj(2026, 11, 23, 12, 0);
    for rep in ["liu_yang", "wang_fang", "zhang_wei", "li_na"] {
        out += &format!("{rep} {}\n", engine.inbox_counts(rep, at, at, at).unwrap().open);
    }
    out + &format!("{:?}\n", engine.outbox_peek(1000).unwrap().into_iter().map(|(_, e)| e).collect::<Vec<_>>())
}

/// A sled store with cases in every state: running, completed, timers fired, outbox pending.
fn busy_sled() -> Engine<Store> {
    let engine = Engine::open(Store::temporary().unwrap(), rules()).unwrap();
    engine.deploy(&complaint_source(), bj(2026, 11, 23, 9, 0)).unwrap();
    engine.enable_outbox();
    for i in 0..12 {
        let case =
            engine.start("complaint", fields(["low", "high"][i % 2]), &crm(), None, bj(2026, 11, 23, 10, 0)).unwrap();
        if i % 3 == 0 {
            let task = case.tasks.values().next().unwrap();
            let actor = Actor { id: task.assignee.clone().unwrap(), roles: vec!["cs_rep".into()], admin: false };
            let fields = [("cause".to_string(), Value::Text("quality".into()))].into();
            engine
                .command(case.id, &actor, Command::CompleteTask { task: task.seq, fields }, bj(2026, 11, 23, 10, 5))
                .unwrap();
        }
    }
    engine.fire_due(bj(2026, 11, 23, 12, 0), 1000).unwrap();
    engine
}

/// Takes the dump into `store`, checks it against `summary`, and returns the engine on it.
fn moved<S: Storage>(store: S, bytes: &[u8], summary: &dump::Summary) -> Engine<S> {
    assert_eq!(&load(&store, bytes).unwrap(), summary, "the count and every case's checksum");
    Engine::open(store, rules()).unwrap()
}

#[test]
fn a_store_moved_from_sled_to_postgres_and_back_holds_the_same_cases_and_answers() {
    let sled = busy_sled();
    let (bytes, summary) = dumped(sled.store());
    assert_eq!(summary.cases.len(), 12);
    assert!(!sled.outbox_peek(10).unwrap().is_empty(), "the outbox moves too");
    let expected = answers(&sled);

    let memory = moved(MemoryStore::new(), &bytes, &summary);
    assert_eq!(answers(&memory), expected);
    let mut stores = vec![dumped(memory.store()).0];
    if let Some(url) = caseflow_tests::postgres_database("dump") {
        let store = PgStore::connect(&PgOptions::new(&url)).unwrap();
        let pg = moved(store, &bytes, &summary);
        assert_eq!(answers(&pg), expected, "the same answers on PostgreSQL");
        let (from_pg, _) = dumped(pg.store());
        // The moved store goes on: a new case takes an id and a register number after the
        // moved ones, and its outbox events sort after the moved events.
        pg.enable_outbox();
        let case = pg.start("complaint", fields("low"), &crm(), None, bj(2026, 11, 23, 11, 0)).unwrap();
        assert!(case.id.0 > 12 && case.business_key == "20261123-013", "{} {}", case.id, case.business_key);
        assert_eq!(pg.outbox_peek(1000).unwrap().last().unwrap().1.instance, case.id);
        stores.push(from_pg);
    }
    // And back into sled, from each: the same cases and answers.
    for again in stores {
        let back = moved(Store::temporary().unwrap(), &again, &summary);
        assert_eq!(answers(&back), expected);
    }
}

#[test]
fn a_damaged_dump_or_a_store_that_is_not_empty_is_refused_and_nothing_is_written() {
    let (bytes, _) = dumped(busy_sled().store());
    let empty = MemoryStore::new();
    let cut = &bytes[..bytes.len() - 40];
    assert!(matches!(load(&empty, cut), Err(DumpError::Damaged(_))), "cut short");
    let mut flipped = bytes.clone();
    let at = bytes.len() / 2;
    flipped[at] ^= 0x20;
    assert!(matches!(load(&empty, &flipped), Err(DumpError::Damaged(_))), "a byte changed");
    assert!(matches!(load(&empty, b"PK\x03\x04 not a dump"), Err(DumpError::NotADump)));
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(matches!(load(&empty, &extra), Err(DumpError::Damaged(_))), "bytes after its end");
    assert_eq!(empty.scan_prefix(b"").count(), 0, "nothing written from a damaged dump");

    let used = MemoryStore::new();
    let mut b = caseflow_engine::storage::Batch::default();
    b.insert(b"m/other".to_vec(), b"x".to_vec());
    used.write(b).unwrap();
    assert!(matches!(load(&used, &bytes), Err(DumpError::NotEmpty(k)) if k == "m/other"));
    assert_eq!(used.scan_prefix(b"").count(), 1, "the store that held something is unchanged");
}

/// `Store::backup` copies a running sled store as it was at one instant: writers go on during
/// the backup, each batch setting `a/{i}` and `z/{i}` to the same value, and in the copy every
/// pair agrees (a plain scan reads `a/` before `z/` and catches pairs half old, half new); every
/// write acknowledged before the backup began is in it.
#[test]
fn a_backup_of_a_running_sled_store_is_the_store_at_one_instant() {
    let dir = common::TempDir::new("backup");
    let store = Store::open(&dir.0, &caseflow_engine::StoreOptions::default()).unwrap();
    let pair = |i: u64, v: u64| {
        let mut b = caseflow_engine::storage::Batch::default();
        b.insert(format!("a/{i:04}").into_bytes(), v.to_be_bytes().to_vec());
        b.insert(format!("z/{i:04}").into_bytes(), v.to_be_bytes().to_vec());
        if v.is_multiple_of(7) {
            b.remove(format!("a/{:04}", (i + 1) % 500).into_bytes());
            b.remove(format!("z/{:04}", (i + 1) % 500).into_bytes());
        }
        b
    };
    for i in 0..500 {
        store.write_now(pair(i, 1)).unwrap();
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let copies: Vec<Vec<u8>> = std::thread::scope(|s| {
        for t in 0..2u64 {
            let (store, stop) = (&store, &stop);
            s.spawn(move || {
                let mut v = 2 + t;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for i in (t..500).step_by(2) {
                        store.write_now(pair(i, v)).unwrap();
                    }
                    v += 2;
                }
            });
        }
        let copies = (0..4)
            .map(|n| {
                let mut out = Vec::new();
                store.backup(&mut out, &dir.0.join(format!("scratch-{n}"))).unwrap();
                out
            })
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        copies
    });
    for copy in copies {
        let restored = MemoryStore::new();
        load(&restored, &copy).unwrap();
        let side = |p: &[u8]| -> Vec<(String, Vec<u8>)> {
            restored
                .scan_prefix(p)
                .map(|r| {
                    let (k, v) = r.unwrap();
                    (String::from_utf8_lossy(&k[2..]).into_owned(), v.to_vec())
                })
                .collect()
        };
        let (a, z) = (side(b"a/"), side(b"z/"));
        assert!(a.len() > 400, "the pairs written before the backup are there: {}", a.len());
        assert_eq!(a, z, "every pair from the same instant");
    }
}
