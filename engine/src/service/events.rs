//! Durable changes told to observers (the event stream) and kept in the outbox (webhooks).

use super::Observer;
use super::{Engine, EngineError};
use crate::storage::codec::decode;
use crate::storage::keys;
use crate::storage::{Batch, Storage, StoreError};
use crate::sync::Unpoisoned;
use caseflow_core::case::{self, HistoryEvent, Instance, InstanceId, Outcome};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::RwLock;

pub(crate) fn event_of(inst: &Instance, h: &case::HistoryEntry) -> EngineEvent {
    EngineEvent {
        instance: inst.id,
        business_key: inst.business_key.clone(),
        process: inst.process.clone(),
        seq: h.seq,
        at: h.at,
        event: h.event,
        step: h.step.clone(),
        detail: h.detail.clone(),
        status: inst.status.name().to_string(),
    }
}

/// A durable change, as published to observers (the API's event stream).
///
/// In the API, one event of `GET /events`: the `data` of each Server-Sent Event, whose `event`
/// field is `event` below and whose `id` is `INSTANCE-SEQ`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Event, example = json!({"instance": 1, "business_key": "20261123-001", "process": "complaint", "seq": 3, "at": "2026-11-23T02:00:00Z", "event": "task_opened", "step": "receive", "detail": "assigned to liu_yang", "status": "running"})))]
pub struct EngineEvent {
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub instance: InstanceId,
    pub business_key: String,
    pub process: String,
    /// The history entry's number in its case.
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// The history entry's event (`started`, `task_opened`, `task_completed`, `escalated`, ...).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub event: HistoryEvent,
    pub step: Option<String>,
    pub detail: String,
    /// The case's status after the change.
    #[cfg_attr(feature = "openapi", schema(value_type = caseflow_core::case::StatusKind))]
    pub status: String,
}

impl<S: Storage> Engine<S> {
    /// Registers an observer of durable changes. Called on the thread that made the change,
    /// after it is durable: keep it quick (the API forwards into a channel).
    pub fn observe(&self, f: impl Fn(&EngineEvent) + Send + Sync + 'static) {
        self.events.observers.write().unpoisoned().push(Box::new(f));
    }

    /// Turns the durable outbox on: from now on every history entry is also written to `o/`.
    pub fn enable_outbox(&self) {
        self.events.outbox.store(true, Ordering::Relaxed);
    }

    /// The oldest undelivered outbox events, in order.
    pub fn outbox_peek(&self, limit: usize) -> Result<Vec<(Vec<u8>, EngineEvent)>, EngineError> {
        self.store
            .scan_prefix(keys::OUTBOX)
            .take(limit)
            .map(|r| {
                let (k, v) = r?;
                Ok((k.to_vec(), decode(&k, &v)?))
            })
            .collect()
    }

    /// Marks an outbox event delivered (durably), under the delivery lease: once another node
    /// took the lease over, the outbox is theirs, and this is refused (`StoreError::ClaimLost`).
    pub fn outbox_ack(&self, key: &[u8], lease: &OutboxLease) -> Result<(), EngineError> {
        let mut batch = Batch::default();
        batch.remove(key.to_vec());
        batch.expect_claimed(keys::OUTBOX_LEASE.to_vec(), lease.0.token);
        let ticket = self.store.write(batch)?;
        self.store.wait_durable(ticket)?;
        Ok(())
    }

    /// Takes the outbox's delivery lease, so that one node at a time delivers webhooks (in
    /// order, one event before the next): `None` while another node holds it. On a store no
    /// other process shares, always this engine's.
    pub fn outbox_lease(&self) -> Result<Option<OutboxLease>, EngineError> {
        if self.store.shared() && self.store.get(keys::OUTBOX_LEASE)?.is_none() {
            let mut batch = Batch::default();
            batch.expect(keys::OUTBOX_LEASE.to_vec(), None);
            batch.insert(keys::OUTBOX_LEASE.to_vec(), Vec::new());
            match self.store.write_now(batch) {
                // Another node made it first: as good.
                Ok(()) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut end = keys::OUTBOX_LEASE.to_vec();
        end.push(0);
        let claim = self.store.claim(keys::OUTBOX_LEASE, &end, 1, self.claim_lease())?;
        Ok((!claim.keys.is_empty() || !self.store.shared()).then_some(OutboxLease(claim)))
    }

    /// The delivering node's heartbeat: extends its lease; false once another node has it.
    pub fn renew_outbox_lease(&self, lease: &OutboxLease) -> Result<bool, EngineError> {
        Ok(!self.store.shared() || self.store.renew(&lease.0, self.claim_lease())? > 0)
    }

    /// On a shared store, this engine's observers hear changes only through this: every
    /// node's, this one's included, once they committed, each case's in order
    /// (`Storage::listen`), so that `/events` on any node carries every node's changes. (Told
    /// straight after its own commits, a node would tell its own later change of a case before
    /// another node's earlier one it had not heard yet.) A live feed like the rest of it: what
    /// is announced while the listener cannot reach the store for long is not heard (the
    /// history has it).
    pub fn listen_for_changes(self: &std::sync::Arc<Self>) -> Result<(), EngineError> {
        let engine = std::sync::Arc::downgrade(self);
        let hear = move |bytes: &[u8]| {
            let Some(engine) = engine.upgrade() else { return };
            let Ok(heard) = decode::<Announced>(b"announcement", bytes) else { return };
            for o in engine.events.observers.read().unpoisoned().iter() {
                o(&heard.event);
            }
        };
        Ok(self.store.listen(Box::new(hear))?)
    }

    pub(crate) fn publish(&self, inst: &Instance, outcome: &Outcome) {
        // On a shared store the store tells every node, this one too (`listen_for_changes`).
        if self.store.shared() {
            return;
        }
        let observers = self.events.observers.read().unpoisoned();
        if observers.is_empty() {
            return;
        }
        for h in &outcome.history {
            let e = event_of(inst, h);
            for o in observers.iter() {
                o(&e);
            }
        }
    }
}

/// A history entry announced on a shared store, to every node's observers.
#[derive(Serialize, Deserialize)]
pub(crate) struct Announced {
    pub(crate) event: EngineEvent,
}

/// An announcement goes to every node through the store's change feed, a row each: a longer
/// detail is cut there (the history keeps it whole).
const ANNOUNCED_DETAIL_MAX: usize = 1_000;

pub(crate) fn announcement(inst: &Instance, h: &case::HistoryEntry) -> Vec<u8> {
    let mut event = event_of(inst, h);
    if event.detail.len() > ANNOUNCED_DETAIL_MAX {
        let mut cut = ANNOUNCED_DETAIL_MAX;
        while !event.detail.is_char_boundary(cut) {
            cut -= 1;
        }
        event.detail.truncate(cut);
        event.detail.push('…');
    }
    crate::storage::codec::encode(&Announced { event })
}

/// Who hears of durable changes.
#[derive(Default)]
pub(crate) struct Events {
    /// Write every history entry to the outbox (`o/`) in the command's own batch, for
    /// at-least-once delivery to webhooks.
    pub(crate) outbox: std::sync::atomic::AtomicBool,
    /// Told of each history entry once it is durable.
    pub(crate) observers: RwLock<Vec<Observer>>,
}

/// The right to deliver the outbox (`Engine::outbox_lease`), held by one node at a time.
pub struct OutboxLease(crate::storage::Claim);
