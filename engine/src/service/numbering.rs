//! Ids, business keys and idempotency keys: id blocks, key templates with a sequence number
//! taken only once a start succeeds, and the record an idempotency key leaves.

use crate::storage::keys;
use caseflow_core::case::{Actor, Effect, Instance, InstanceId, Outcome};
use caseflow_core::value::Value;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Mutex;

/// What an idempotency key recorded: the case it started and its request's digest (none for
/// keys recorded before digests were).
pub(crate) type KeyRecord = (InstanceId, Option<[u8; 32]>);

/// An idempotency key as the store knows it: scoped to the caller who sent it, with a digest
/// of the request it first came with, so that the same key with another body is refused.
pub(crate) struct IdempotencyKey<'a> {
    /// The key as the caller sent it (for messages).
    pub(crate) given: &'a str,
    /// `caller NUL key`: two callers may use the same key for different cases.
    pub(crate) scoped: String,
    pub(crate) request: [u8; 32],
}

impl<'a> IdempotencyKey<'a> {
    pub(crate) fn new(given: &'a str, actor: &Actor, process: &str, fields: &BTreeMap<String, Value>) -> Self {
        use sha2::{Digest, Sha256};
        let mut digest = Sha256::new();
        digest.update(process.as_bytes());
        digest.update([0]);
        // Fields are a BTreeMap: the same fields serialise to the same bytes.
        digest.update(serde_json::to_vec(fields).unwrap_or_default());
        IdempotencyKey { given, scoped: format!("{}\0{given}", actor.id), request: digest.finalize().into() }
    }

    pub(crate) fn store_key(&self) -> Vec<u8> {
        keys::idempotency(&self.scoped)
    }

    /// The record: the case's id, then the request's digest.
    pub(crate) fn record(&self, id: InstanceId) -> Vec<u8> {
        keys::idempotency_value(id, &self.request)
    }
}

/// Instance ids are reserved `ID_BLOCK` at a time: `m/next_instance` is written once per block,
/// not once per start, conditionally on the bound read, so that two processes on one store
/// never reserve the same block. A restart continues after the block, so ids only grow (and
/// may skip).
pub(crate) const ID_BLOCK: u64 = 1000;

#[derive(Default)]
pub(crate) struct IdBlock {
    /// The next id to hand out.
    pub(crate) next: u64,
    /// The first id not reserved by this process; `next == end` when a block must be reserved.
    pub(crate) end: u64,
}

impl IdBlock {
    /// Takes an id from the block reserved; `None` when it is used up.
    pub(crate) fn take(&mut self) -> Option<InstanceId> {
        (self.next < self.end).then(|| {
            self.next += 1;
            InstanceId(self.next - 1)
        })
    }

    /// Gives back the id just taken (the start was refused), if no other was taken since; its
    /// block, if it reserved one, is stored already and stays.
    pub(crate) fn give_back(&mut self, id: InstanceId) {
        if self.next == id.0 + 1 {
            self.next = id.0;
        }
    }
}

/// A business key rendered before its case starts: `{seq}` is left as `SEQUENCE_PLACEHOLDER`
/// until the start has succeeded and takes the next number of `sequence` (the counter's key
/// and the number's width).
pub(crate) struct BusinessKey {
    pub(crate) text: String,
    pub(crate) sequence: Option<(Vec<u8>, usize)>,
}

/// Stands for the sequence number in a business key until it is taken; no key, field value or
/// message contains it otherwise (a NUL).
pub(crate) const SEQUENCE_PLACEHOLDER: char = '\u{0}';

/// Puts the sequence number taken for a started case wherever its key was written: the case,
/// and the texts of its history and notifications.
pub(crate) fn fill_sequence(inst: &mut Instance, outcome: &mut Outcome, seq: &str) {
    let fill = |text: &mut String| {
        if text.contains(SEQUENCE_PLACEHOLDER) {
            *text = text.replacen(SEQUENCE_PLACEHOLDER, seq, 1);
        }
    };
    fill(&mut inst.business_key);
    outcome.history.iter_mut().for_each(|h| fill(&mut h.detail));
    for e in &mut outcome.effects {
        if let Effect::Notify { message, .. } = e {
            fill(message);
        }
    }
}

/// What is being given out, under locks of its own.
#[derive(Default)]
pub(crate) struct Numbering {
    /// Serialises id, business-key and idempotency allocation; holds the reserved ids.
    pub(crate) allocation: Mutex<IdBlock>,
    /// Idempotency keys of starts between allocation and the write of their case.
    pub(crate) starting: Mutex<BTreeSet<String>>,
}
