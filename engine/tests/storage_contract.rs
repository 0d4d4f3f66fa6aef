//! What every `Storage` must do, checked on each implementation: sled with its log (on disk
//! and temporary), PostgreSQL (on the server `scripts/postgres.sh` starts) and the map in
//! memory, each also through `AnyStorage` (what the server holds).

use caseflow_engine::storage::keys::prefix_end;
use caseflow_engine::storage::postgres::{PgOptions, PgStore};
use caseflow_engine::storage::{Batch, Bytes, Claim, Storage, StoreError};
use caseflow_engine::{AnyStorage, Durability, MemoryStore, Store, StoreOptions};
use std::collections::BTreeMap;
use std::time::Duration;

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
    fn get_many(&self, keys: &[Vec<u8>]) -> Vec<Option<Vec<u8>>>;
    fn scan(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)>;
    fn range(&self, from: &[u8], to: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)>;
    /// Scans `prefix`, calling `during` after each entry read.
    fn scan_writing(&self, prefix: &[u8], during: &mut dyn FnMut(&[u8])) -> usize;
    fn get_u64(&self, key: &[u8]) -> Result<Option<u64>, StoreError>;
    fn claim(&self, from: &[u8], to: &[u8], limit: usize, lease: Duration) -> Claim;
    fn renew(&self, claim: &Claim, lease: Duration) -> usize;
    fn release(&self, claim: &Claim);
    fn shared(&self) -> bool;
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
    fn get_many(&self, keys: &[Vec<u8>]) -> Vec<Option<Vec<u8>>> {
        Storage::get_many(self, keys).unwrap().into_iter().map(|v| v.map(|v| v.to_vec())).collect()
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
    fn claim(&self, from: &[u8], to: &[u8], limit: usize, lease: Duration) -> Claim {
        Storage::claim(self, from, to, limit, lease).unwrap()
    }
    fn renew(&self, claim: &Claim, lease: Duration) -> usize {
        Storage::renew(self, claim, lease).unwrap()
    }
    fn release(&self, claim: &Claim) {
        Storage::release(self, claim).unwrap()
    }
    fn shared(&self) -> bool {
        Storage::shared(self)
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
        let many = s.get_many(&[b"a/3".to_vec(), b"a/1".to_vec(), b"a/2".to_vec(), b"a/3".to_vec()]);
        let expected = [Some(b"".to_vec()), None, Some(b"two".to_vec()), Some(b"".to_vec())];
        assert_eq!(many, expected, "several keys read at once, in the order asked");
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

/// Counters moved by `Batch::add`: concurrent batches adding to the same counters all count,
/// with no conflict between them; negative amounts count down below zero; a batch refused on
/// its condition moves nothing; a batch of adds alone is a write.
#[test]
fn counters_added_to_at_once_lose_no_addition() {
    each_storage("adds", |open| {
        let s = open();
        const THREADS: i64 = 4;
        const EACH: i64 = 100;
        let value = |k: &[u8]| caseflow_engine::storage::counter_value(s.get(k).as_deref());
        let mut first = Batch::default();
        first.add(b"w/b".to_vec(), -3);
        assert!(!first.is_empty());
        s.write(first).unwrap();
        assert_eq!(value(b"w/b"), -3);
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let s = &s;
                scope.spawn(move || {
                    for i in 0..EACH {
                        let mut b = Batch::default();
                        // Two counters in one batch, in both orders across batches.
                        let (x, y): (&[u8], &[u8]) = if (t + i) % 2 == 0 { (b"w/a", b"w/b") } else { (b"w/b", b"w/a") };
                        b.add(x.to_vec(), 1);
                        b.add(y.to_vec(), 2);
                        b.insert(format!("n/{t}/{i:04}").into_bytes(), Vec::new());
                        s.write(b).unwrap();
                    }
                });
            }
        });
        let (a, b) = (value(b"w/a"), value(b"w/b"));
        assert_eq!(a + b, 3 * THREADS * EACH - 3, "every addition counted once: {a} + {b}");
        assert_eq!(s.scan(b"n/").len() as i64, THREADS * EACH);
        let mut refused = Batch::default();
        refused.expect(b"m/absent".to_vec(), Some(Bytes::from_static(b"x")));
        refused.add(b"w/a".to_vec(), 1000);
        assert!(matches!(s.write(refused), Err(StoreError::Conflict(_))));
        assert_eq!(value(b"w/a"), a, "a refused batch adds nothing");
    });
}

/// Claims (`Storage::claim`), what several nodes divide due timers and the outbox with: two
/// claims never hold one key while a lease lasts; a write under a claim is refused once the
/// claim is lost (taken over after its lease, or the key gone), and nothing of it is written;
/// a renewed lease outlasts the first; a released key is free at once. Checked where claims
/// hold something back: the map in memory (engines sharing it) and PostgreSQL. A store one
/// process has (sled) hands every key to every claim, with token 0, which fences nothing.
#[test]
fn claims_divide_keys_and_a_lost_claim_cannot_write() {
    let keys = |c: &Claim| c.keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect::<Vec<_>>();
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let long = Duration::from_secs(60);
    each_storage("claims", |open| {
        let s = open();
        let mut b = Batch::default();
        for k in ["t/1", "t/2", "t/3", "t/4", "t/5", "t/6", "x/1"] {
            b.insert(k.as_bytes().to_vec(), b"".to_vec());
        }
        s.write(b).unwrap();
        let under = |key: &str, token: u64| {
            let mut b = Batch::default();
            b.expect_claimed(key.as_bytes().to_vec(), token);
            b.insert(b"w/written".to_vec(), key.as_bytes().to_vec());
            b.remove(key.as_bytes().to_vec());
            s.write(b)
        };
        // Two claims divide the range, in key order; a third finds nothing free.
        let a = s.claim(b"t/", b"t0", 4, long);
        assert_eq!(keys(&a), names(&["t/1", "t/2", "t/3", "t/4"]));
        if a.token == 0 {
            assert!(!s.shared(), "a store several processes share holds claims");
            assert_eq!(keys(&s.claim(b"t/", b"t0", 4, long)), keys(&a), "nothing held back");
            under("t/1", 0).unwrap();
            return;
        }
        let b = s.claim(b"t/", b"t0", 10, long);
        assert_eq!(keys(&b), names(&["t/5", "t/6"]));
        assert!(a.token != 0 && b.token != 0 && a.token != b.token);
        assert!(s.claim(b"t/", b"t0", 10, long).keys.is_empty());
        // A write under the claim holds; under another's token it is refused whole.
        under("t/1", a.token).unwrap();
        assert_eq!(s.get(b"t/1"), None);
        match under("t/2", b.token) {
            Err(StoreError::ClaimLost(k)) => assert_eq!(k, "t/2"),
            other => panic!("expected the claim lost, got {other:?}"),
        }
        assert_eq!(s.get(b"w/written").as_deref(), Some(&b"t/1"[..]), "the refused write wrote nothing");
        // A key gone is a claim lost too.
        assert!(matches!(under("t/1", a.token), Err(StoreError::ClaimLost(_))));
        // Released: free at once. Claimed again with a short lease, which runs out: taken
        // over by the next claim, and the first holder's late write is refused.
        s.release(&a);
        assert_eq!(s.renew(&a, long), 0, "a released claim holds nothing");
        let short = s.claim(b"t/", b"t0", 10, Duration::from_millis(150));
        assert_eq!(keys(&short), names(&["t/2", "t/3", "t/4"]));
        std::thread::sleep(Duration::from_millis(400));
        let took_over = s.claim(b"t/", b"t0", 10, long);
        assert_eq!(keys(&took_over), names(&["t/2", "t/3", "t/4"]));
        assert!(matches!(under("t/2", short.token), Err(StoreError::ClaimLost(_))));
        assert_eq!(s.renew(&short, long), 0);
        under("t/2", took_over.token).unwrap();
        assert_eq!(s.get(b"w/written").as_deref(), Some(&b"t/2"[..]));
        // A renewed lease outlasts the first one.
        let renewed = s.claim(b"x/", b"x0", 1, Duration::from_millis(300));
        assert_eq!(s.renew(&renewed, long), 1);
        std::thread::sleep(Duration::from_millis(500));
        assert!(s.claim(b"x/", b"x0", 1, long).keys.is_empty(), "still held after the first lease");
        under("x/1", renewed.token).unwrap();
    });
}
