//! Live updates for open inboxes (`/ui/events`). One task per server listens to the engine's
//! durable changes, reads each changed case once, and wakes only the streams of the people and
//! roles who hold the case's tasks (everyone's when a task ended, since it leaves no trace in
//! the case to tell whose it was). A stream that is woken several times before it runs sends
//! one event: a burst of changes costs each person one message, not one per change, and a
//! change of someone else's tasks costs them nothing.

use crate::server::{durable_events, Delivery, Shared};
use caseflow_core::case::{HistoryEvent, Instance};
use caseflow_engine::sync::Unpoisoned;
use futures_core::Stream as _;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Notify;

/// One open stream: woken by the hub, it reads how many changes it missed and the last case.
#[derive(Default)]
pub struct Watcher {
    pub notify: Notify,
    changes: AtomicU64,
    last_case: AtomicU64,
}

impl Watcher {
    /// The changes since the last call, and the last case changed.
    pub fn take(&self) -> (u64, u64) {
        (self.changes.swap(0, Ordering::AcqRel), self.last_case.load(Ordering::Acquire))
    }

    fn changed(&self, case: u64) {
        self.last_case.store(case, Ordering::Release);
        self.changes.fetch_add(1, Ordering::AcqRel);
        // A permit is kept when the stream is busy: the wake-ups of a burst become one.
        self.notify.notify_one();
    }
}

/// Who watches what: streams by the person and by each of their roles.
#[derive(Default)]
pub struct LiveUpdates {
    by_key: Mutex<HashMap<String, Vec<Weak<Watcher>>>>,
    hub_started: AtomicBool,
}

fn user_key(user: &str) -> String {
    format!("u:{user}")
}

fn role_key(role: &str) -> String {
    format!("r:{role}")
}

/// The events that change what an inbox shows.
fn changes_inboxes(event: HistoryEvent) -> bool {
    use HistoryEvent as H;
    matches!(
        event,
        H::TaskOpened
            | H::TaskCompleted
            | H::TaskClaimed
            | H::TaskReleased
            | H::TaskReassigned
            | H::TaskDelegated
            | H::TaskOverdue
            | H::Escalated
            | H::TaskClosed
            | H::Cancelled
            | H::Suspended
            | H::Resumed
    )
}

/// Tasks that ended leave no trace in the case: whoever may have had them on screen is told.
fn ends_tasks(event: HistoryEvent) -> bool {
    matches!(event, HistoryEvent::TaskCompleted | HistoryEvent::TaskClosed | HistoryEvent::Cancelled)
}

/// Who holds a case's open tasks, as watch keys: assignees and candidate roles.
fn holders(case: Option<&Instance>) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for t in case.into_iter().flat_map(|c| c.tasks.values()) {
        keys.extend(t.assignee.as_deref().map(user_key));
        keys.extend(t.candidates.iter().map(|r| role_key(r)));
    }
    keys
}

impl LiveUpdates {
    /// A new stream for `user` with `roles`; the hub starts with the first.
    pub fn watch(self: &Arc<Self>, state: &Shared, user: &str, roles: &[String]) -> Arc<Watcher> {
        if !self.hub_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(hub(self.clone(), state.clone()));
        }
        let watcher = Arc::new(Watcher::default());
        let mut by_key = self.by_key.lock().unpoisoned();
        for key in std::iter::once(user_key(user)).chain(roles.iter().map(|r| role_key(r))) {
            by_key.entry(key).or_default().push(Arc::downgrade(&watcher));
        }
        watcher
    }

    /// Wakes each live watcher under `keys` (all of them when `keys` is `None`) once, and
    /// forgets those whose stream ended.
    fn wake(&self, keys: Option<&BTreeSet<String>>, case: u64) {
        let mut by_key = self.by_key.lock().unpoisoned();
        let mut woken: BTreeSet<*const Watcher> = BTreeSet::new();
        let mut wake = |list: &mut Vec<Weak<Watcher>>| {
            list.retain(|w| match w.upgrade() {
                Some(watcher) => {
                    if woken.insert(Arc::as_ptr(&watcher)) {
                        watcher.changed(case);
                    }
                    true
                }
                None => false,
            });
        };
        match keys {
            None => by_key.values_mut().for_each(&mut wake),
            Some(keys) => {
                for key in keys {
                    if let Some(list) = by_key.get_mut(key) {
                        wake(list);
                    }
                }
            }
        }
        by_key.retain(|_, list| !list.is_empty());
    }

    /// Streams open now (for the tests and the bench).
    pub fn watching(&self) -> usize {
        let by_key = self.by_key.lock().unpoisoned();
        let all: BTreeSet<*const Watcher> =
            by_key.values().flatten().filter(|w| w.strong_count() > 0).map(Weak::as_ptr).collect();
        all.len()
    }
}

/// Reads the engine's changes and wakes whom they concern, until the server stops.
async fn hub(live: Arc<LiveUpdates>, state: Shared) {
    let deliveries = durable_events(&state);
    let mut deliveries = std::pin::pin!(deliveries);
    while let Some(delivery) = std::future::poll_fn(|cx| deliveries.as_mut().poll_next(cx)).await {
        match delivery {
            Delivery::Event(e) if changes_inboxes(e.event) => {
                let case = e.instance.0;
                if ends_tasks(e.event) {
                    live.wake(None, case);
                    continue;
                }
                let engine = state.engine.clone();
                let keys =
                    tokio::task::spawn_blocking(move || holders(engine.instance(e.instance).ok().flatten().as_ref()))
                        .await
                        .unwrap_or_default();
                live.wake(Some(&keys), case);
            }
            Delivery::Event(_) => {}
            // Changes were missed: every inbox fetches its rows again.
            Delivery::Lagged(_) => live.wake(None, 0),
        }
    }
    // The server is stopping: a later stream (there should be none) starts a new hub.
    live.hub_started.store(false, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watcher_is_woken_once_per_change_whatever_keys_match_and_dropped_ones_are_forgotten() {
        let live = LiveUpdates::default();
        let register = |user: &str, roles: &[&str]| {
            let w = Arc::new(Watcher::default());
            let mut by_key = live.by_key.lock().unpoisoned();
            for key in std::iter::once(user_key(user)).chain(roles.iter().map(|r| role_key(r))) {
                by_key.entry(key).or_default().push(Arc::downgrade(&w));
            }
            w
        };
        let rep = register("liu_yang", &["cs_rep"]);
        let manager = register("li_na", &["cs_manager"]);
        let keys: BTreeSet<String> = [user_key("liu_yang"), role_key("cs_rep")].into();
        live.wake(Some(&keys), 7);
        live.wake(Some(&keys), 8);
        assert_eq!(rep.take(), (2, 8), "one per change, though two keys matched; the last case");
        assert_eq!(manager.take(), (0, 0), "not theirs");
        live.wake(None, 9);
        assert_eq!(manager.take(), (1, 9), "an ending reaches everyone");
        drop(rep);
        live.wake(None, 10);
        assert_eq!(live.watching(), 1);
        assert!(!live.by_key.lock().unpoisoned().contains_key(&user_key("liu_yang")), "forgotten");
    }
}
