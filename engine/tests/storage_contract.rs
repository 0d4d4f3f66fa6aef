//! What every `Storage` must do, checked on each implementation: sled with its log (on disk
//! and temporary), PostgreSQL (on the server `scripts/postgres.sh` starts) and the map in
//! memory, each also through `AnyStorage` (what the server holds).

use caseflow_engine::storage::keys::prefix_end;
use caseflow_engine::storage::postgres::{PgOptions, PgStore};
use caseflow_engine::storage::{Batch, Bytes, Storage, StoreError};
use caseflow_engine::{AnyStorage, Durability, MemoryStore, Store, StoreOptions};
use std::collections::BTreeMap;

/// Runs `check` on every implementation.
fn each_storage(name: &str, check: impl Fn(&dyn Fn() -> Box<dyn Checked>)) {
    check(&|| Box::new(MemoryStore::new()));
    check(&|| Box::new(Store::temporary().unwrap()));
    check(&|| Box::new(AnyStorage::from(MemoryStore::new())));
    check(&|| Box::new(AnyStorage::from(Store::temporary().unwrap())));
    let dir = std::env::temp_dir().join(format!("caseflow-contract-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = StoreOptions { durability: Durability::Flush, ..StoreOptions::default() };
    check(&|| {
        let _ = std::fs::remove_dir_all(&dir);
        Box::new(Store::open(&dir, &options).unwrap())
    });
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(url) = caseflow_tests::postgres_database(&format!("contract_{name}").replace('-', "_")) {
        let options = PgOptions::new(url);
        let fresh = || {
            let store = PgStore::connect(&options).unwrap();
            store.clear().unwrap();
            store
        };
        check(&|| Box::new(fresh()));
        check(&|| Box::new(AnyStorage::from(fresh())));
    }
}

/// The trait's operations, object-safe, so one check runs on every implementation.
trait Checked: Send + Sync {
    fn write(&self, batch: Batch) -> Result<u64, StoreError>;
    fn wait_durable(&self, ticket: u64) -> Result<(), StoreError>;
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    fn scan(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)>;
    fn range(&self, from: &[u8], to: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)>;
    /// Scans `prefix`, calling `during` after each entry read.
    fn scan_writing(&self, prefix: &[u8], during: &mut dyn FnMut(&[u8])) -> usize;
    fn get_u64(&self, key: &[u8]) -> Result<Option<u64>, StoreError>;
}

impl<S: Storage> Checked for S {
    fn write(&self, batch: Batch) -> Result<u64, StoreError> {
        Storage::write(self, batch)
    }
    fn wait_durable(&self, ticket: u64) -> Result<(), StoreError> {
        Storage::wait_durable(self, ticket)
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        Storage::get(self, key).unwrap().map(|v| v.to_vec())
    }
    fn scan(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.scan_prefix(prefix).map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect()
    }
    fn range(&self, from: &[u8], to: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        Storage::range(self, from, to).map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect()
    }
    fn scan_writing(&self, prefix: &[u8], during: &mut dyn FnMut(&[u8])) -> usize {
        let mut n = 0;
        for r in self.scan_prefix(prefix) {
            during(&r.unwrap().0);
            n += 1;
        }
        n
    }
    fn get_u64(&self, key: &[u8]) -> Result<Option<u64>, StoreError> {
        Storage::get_u64(self, key)
    }
}

#[test]
fn a_batch_is_applied_whole_and_read_back_at_once() {
    each_storage("batch", |open| {
        let s = open();
        let mut b = Batch::default();
        b.insert(b"a/1".to_vec(), b"one".to_vec());
        b.insert(b"a/2".to_vec(), b"two".to_vec());
        b.remove(b"a/1".to_vec());
        b.insert(b"a/3".to_vec(), b"".to_vec());
        let t = s.write(b).unwrap();
        s.wait_durable(t).unwrap();
        assert_eq!(s.get(b"a/1"), None, "the later remove wins within a batch");
        assert_eq!(s.get(b"a/2").as_deref(), Some(&b"two"[..]));
        assert_eq!(s.get(b"a/3").as_deref(), Some(&b""[..]), "an empty value is a value");
        let mut b = Batch::default();
        b.insert(b"a/2".to_vec(), b"2".to_vec());
        let t2 = s.write(b).unwrap();
        assert!(t2 > t, "tickets grow with write order");
        assert_eq!(s.get(b"a/2").as_deref(), Some(&b"2"[..]));
    });
}

#[test]
fn scans_read_in_key_order_within_their_bounds() {
    each_storage("scan", |open| {
        let s = open();
        let mut b = Batch::default();
        let mut expected = BTreeMap::new();
        for i in (0..200u32).rev() {
            for prefix in [&b"p/"[..], b"pa", b"q/"] {
                let k = [prefix, &i.to_be_bytes()].concat();
                b.insert(k.clone(), i.to_le_bytes().to_vec());
                expected.insert(k, i.to_le_bytes().to_vec());
            }
        }
        b.insert(vec![0xff, 0xff], b"top".to_vec());
        s.write(b).unwrap();
        let scanned = s.scan(b"p/");
        let want: Vec<_> =
            expected.iter().filter(|(k, _)| k.starts_with(b"p/")).map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(scanned, want, "a prefix scan is exactly the prefix, in order");
        let from = [&b"p/"[..], &10u32.to_be_bytes()].concat();
        let to = [&b"p/"[..], &20u32.to_be_bytes()].concat();
        assert_eq!(s.range(&from, &to).len(), 10, "the end is exclusive");
        assert_eq!(s.range(&to, &from).len(), 0, "an empty range");
        assert_eq!(s.scan(&[0xff]).len(), 1, "a prefix of all ones has no end key");
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(s.scan(b"nothing").len(), 0);
    });
}

#[test]
fn a_scan_lets_its_caller_write_and_sees_what_was_written_before_it() {
    each_storage("scan-write", |open| {
        let s = open();
        let mut b = Batch::default();
        for i in 0..100u32 {
            b.insert([&b"w/"[..], &(i * 2).to_be_bytes()].concat(), b"x".to_vec());
        }
        s.write(b).unwrap();
        // Removing each key as it is read, and writing keys elsewhere, does not stop the scan.
        let n = s.scan_writing(b"w/", &mut |k| {
            let mut b = Batch::default();
            b.remove(k.to_vec());
            b.insert([b"z/", k].concat(), b"moved".to_vec());
            s.write(b).unwrap();
        });
        assert_eq!(n, 100);
        assert_eq!(s.scan(b"w/").len(), 0);
        assert_eq!(s.scan(b"z/").len(), 100);
    });
}

#[test]
fn sequenced_inserts_grow_in_write_order() {
    each_storage("sequenced", |open| {
        let s = open();
        for _ in 0..3 {
            let mut b = Batch::default();
            b.insert_sequenced(&b"o/"[..], b"a".to_vec());
            b.insert_sequenced(&b"o/"[..], b"b".to_vec());
            s.write(b).unwrap();
        }
        let keys: Vec<Vec<u8>> = s.scan(b"o/").into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys.len(), 6);
        let values: Vec<Vec<u8>> = s.scan(b"o/").into_iter().map(|(_, v)| v).collect();
        assert_eq!(values, [b"a", b"b", b"a", b"b", b"a", b"b"].map(|v| v.to_vec()), "in write order");
    });
}

#[test]
fn counters_are_eight_bytes_and_anything_else_is_corrupt() {
    each_storage("u64", |open| {
        let s = open();
        let mut b = Batch::default();
        b.insert(b"m/n".to_vec(), 42u64.to_be_bytes().to_vec());
        b.insert(b"m/bad".to_vec(), b"abc".to_vec());
        s.write(b).unwrap();
        assert_eq!(s.get_u64(b"m/n").unwrap(), Some(42));
        assert_eq!(s.get_u64(b"m/none").unwrap(), None);
        assert!(matches!(s.get_u64(b"m/bad"), Err(StoreError::Corrupt { .. })));
    });
}

#[test]
fn a_conditional_batch_is_applied_only_while_every_key_holds_what_was_read() {
    each_storage("conditions", |open| {
        let s = open();
        let mut b = Batch::default();
        b.insert(b"c/case".to_vec(), b"v1".to_vec());
        s.write(b).unwrap();
        // Holds: the case as read, and a key expected absent.
        let mut b = Batch::default();
        b.expect(b"c/case".to_vec(), Some(Bytes::from_static(b"v1")));
        b.expect(b"c/key".to_vec(), None);
        b.insert(b"c/case".to_vec(), b"v2".to_vec());
        b.insert(b"c/key".to_vec(), b"taken".to_vec());
        s.write(b).unwrap();
        assert_eq!(s.get(b"c/case").as_deref(), Some(&b"v2"[..]));
        // Fails on each kind of condition: nothing of the batch is written.
        for (key, expected) in [(&b"c/case"[..], Some(Bytes::from_static(b"v1"))), (b"c/key", None)] {
            let mut b = Batch::default();
            b.insert(b"c/other".to_vec(), b"x".to_vec());
            b.remove(b"c/case".to_vec());
            b.expect(key.to_vec(), expected);
            match s.write(b) {
                Err(StoreError::Conflict(k)) => assert_eq!(k.as_bytes(), key),
                other => panic!("expected a conflict on {key:?}, got {other:?}"),
            }
            assert_eq!(s.get(b"c/other"), None, "a refused batch writes nothing");
            assert_eq!(s.get(b"c/case").as_deref(), Some(&b"v2"[..]));
        }
        // A key expected absent that was removed is absent again.
        let mut b = Batch::default();
        b.remove(b"c/key".to_vec());
        s.write(b).unwrap();
        let mut b = Batch::default();
        b.expect(b"c/key".to_vec(), None);
        b.insert(b"c/key".to_vec(), b"again".to_vec());
        s.write(b).unwrap();
        assert_eq!(s.get(b"c/key").as_deref(), Some(&b"again"[..]));
    });
}

/// The property several processes on one store stand on: concurrent read-then-write cycles,
/// each conditional on what it read, lose no update.
#[test]
fn concurrent_conditional_writers_lose_no_update() {
    each_storage("cas", |open| {
        let s = open();
        const THREADS: usize = 4;
        const EACH: u64 = 150;
        let conflicts = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let (s, conflicts) = (&s, &conflicts);
                scope.spawn(move || {
                    for i in 0..EACH {
                        loop {
                            let read = s.get(b"m/counter");
                            let n = read.as_deref().map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap()));
                            let mut b = Batch::default();
                            b.expect(b"m/counter".to_vec(), read.map(Bytes::from));
                            b.insert(b"m/counter".to_vec(), (n + 1).to_be_bytes().to_vec());
                            b.insert(format!("n/{:08}", n + 1).into_bytes(), format!("{t}/{i}").into_bytes());
                            match s.write(b) {
                                Ok(_) => break,
                                Err(StoreError::Conflict(_)) => {
                                    conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                });
            }
        });
        let total = THREADS as u64 * EACH;
        assert_eq!(s.get_u64(b"m/counter").unwrap(), Some(total), "every increment counted once");
        let numbered = s.scan(b"n/");
        assert_eq!(numbered.len() as u64, total, "no number given twice");
        let mut writers: Vec<Vec<u8>> = numbered.into_iter().map(|(_, v)| v).collect();
        writers.sort();
        writers.dedup();
        assert_eq!(writers.len() as u64, total, "each writer's increment is its own");
    });
}
