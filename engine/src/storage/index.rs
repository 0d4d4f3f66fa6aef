//! The index entries a case implies (`s/`, `p/`, `t/`, `u/`, `r/`, and `n/` for the fields its
//! process indexes): derived from the instance (and the fields its version indexes), so writing
//! a command removes the entries that went and writes the new or changed ones in the same batch.

use crate::storage::codec::encode;
use crate::storage::keys::{self, Inbox};
use caseflow_core::case::{Instance, InstanceId, Status, Task};
use caseflow_core::value::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A task as the inbox shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    pub instance: InstanceId,
    pub business_key: String,
    pub process: String,
    pub task: Task,
}

/// Marks a role-inbox value that names the task's assignee instead of holding its view (the
/// view is under the assignee's `u/` entry with the same place). JSON never starts with this
/// byte.
const ASSIGNED_TO: u8 = 0x05;

/// The `u/` entry a role entry points to, when `value` names the assignee; `None` when
/// `value` holds the view itself.
pub(crate) fn assignee_entry(role_entry: &[u8], value: &[u8]) -> Option<Vec<u8>> {
    let (&marker, user) = value.split_first()?;
    if marker != ASSIGNED_TO {
        return None;
    }
    keys::user_entry_for(role_entry, user)
}

/// A field's value as its index entry holds it (and a search names it): text as it is, numbers,
/// dates and yes/no as written in JSON; `None` for what is not indexed (lists, durations).
pub fn index_text(value: &Value) -> Option<String> {
    match value {
        Value::Text(t) => Some(t.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Decimal(d) => Some(d.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Date(d) => Some(d.format("%Y-%m-%d").to_string()),
        Value::DateTime(t) => Some(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        Value::Duration(_) | Value::List(_) => None,
    }
}

/// The `n/` entries of the fields `indexed` (those the case's version declares `index`).
pub(crate) fn field_entries(indexed: &[String], inst: &Instance, entries: &mut BTreeMap<Vec<u8>, Vec<u8>>) {
    for field in indexed {
        if let Some(text) = inst.fields.get(field).and_then(index_text) {
            entries.insert(keys::field_index(&inst.process, field, &text, inst.id), Vec::new());
        }
    }
}

/// The index entries an instance implies, key to value. Writing a command removes the entries
/// that went and writes the ones that are new or changed, in the same batch.
pub(crate) fn index_entries(inst: &Instance) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut entries = BTreeMap::new();
    entries.insert(keys::status(&inst.process, inst.status.name(), inst.id), Vec::new());
    if let Some((parent, _)) = inst.parent {
        entries.insert(
            keys::sub_case(parent, inst.id),
            [inst.process.as_bytes(), b"\0", inst.status.name().as_bytes()].concat(),
        );
    }
    // Only a running case's timers can fire: a suspended case's (or one in incident) would sit
    // at the front of the due scan and, once there are more than a scan's batch, starve every
    // other case's timers. Resuming puts them back (the diff of the index entries).
    if inst.status == Status::Running {
        for t in inst.timers.values() {
            entries.insert(keys::timer(t.due_at, inst.id, t.seq), Vec::new());
        }
    }
    for t in inst.tasks.values() {
        // A draft shows in an inbox as whose and when, never with its values: they may be
        // sensitive, and only the case (which seals them) keeps them.
        let mut task = t.clone();
        if let Some(d) = task.draft.as_mut() {
            d.fields.clear();
        }
        let view = encode(&TaskView {
            instance: inst.id,
            business_key: inst.business_key.clone(),
            process: inst.process.clone(),
            task,
        });
        // An assigned task's view is stored once, under its assignee; the role entries point
        // there (`ASSIGNED_TO` and the user), which halves what the common case writes.
        let in_role = match &t.assignee {
            Some(a) => [&[ASSIGNED_TO][..], a.as_bytes()].concat(),
            None => view.clone(),
        };
        for role in &t.candidates {
            entries.insert(Inbox::Role(role).entry(t.due_at, inst.id, t.seq), in_role.clone());
        }
        if let Some(a) = &t.assignee {
            entries.insert(Inbox::User(a).entry(t.due_at, inst.id, t.seq), view);
        }
    }
    entries
}
