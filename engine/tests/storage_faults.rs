//! What a write's answer means when storage fails, with faults injected: a write that is
//! refused was not applied; a write that was applied is never reported as refused; and once
//! the fault is gone, writes are taken again without a restart.

use caseflow_engine::store::{Batch, StoreError};
use caseflow_engine::Store;

fn write(store: &Store, i: u32) -> Result<u64, StoreError> {
    let mut b = Batch::default();
    b.insert(format!("k/{i:06}"), vec![7u8; 64]);
    store.write(b)
}

#[test]
fn a_refused_write_was_not_applied_and_an_applied_one_is_not_refused() {
    let store = Store::temporary().unwrap();
    // Every apply of the memtable to sled fails from now on, as on a full disk.
    store.inject_apply_failures(u32::MAX);
    let mut acknowledged = Vec::new();
    let mut refused_at = None;
    for i in 0..40_000u32 {
        match write(&store, i) {
            Ok(_) => acknowledged.push(i),
            Err(e) => {
                assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
                refused_at = Some(i);
                break;
            }
        }
    }
    let refused = refused_at.expect("once the memtable must be applied and cannot be, writes are refused");
    // Everything acknowledged is there (in the memtable, logged); the refused write is not.
    for i in &acknowledged {
        assert!(store.get(format!("k/{i:06}").as_bytes()).unwrap().is_some(), "acknowledged write {i} is missing");
    }
    assert!(store.get(format!("k/{refused:06}").as_bytes()).unwrap().is_none(), "a refused write must not be applied");
    assert!(store.degraded().is_some(), "the store says it is failing");
    // Still failing: refused again, still nothing applied.
    assert!(matches!(write(&store, refused), Err(StoreError::Unavailable(_))));
    assert!(store.get(format!("k/{refused:06}").as_bytes()).unwrap().is_none());
    // The disk has room again: the next write retries the apply and is taken.
    store.inject_apply_failures(0);
    write(&store, refused).expect("taken once storage recovers, without a restart");
    assert!(store.degraded().is_none());
    for i in acknowledged.iter().chain([&refused]) {
        assert!(store.get(format!("k/{i:06}").as_bytes()).unwrap().is_some(), "write {i} is missing after recovery");
    }
}
