//! Recording: a scenario written from a case's real history, so that a case that went wrong
//! becomes a test. The actions (completions, messages, cancellations, reassignments, …) are
//! taken from the history in order, each at the time it happened; what followed each of them
//! (decisions, tasks opened, deadlines missed, escalations) becomes the step's
//! `expect_history`, and the case as it is now its last step's expectations. Replayed under
//! the same process version and rules, the scenario passes; the owner then edits what should
//! have happened instead.

use crate::{Engine, EngineError, Storage};
use caseflow_core::case::{HistoryEntry, HistoryEvent, Instance, InstanceId, Status};
use caseflow_core::value::Value;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::collections::BTreeMap;
use std::fmt::Write;

pub use caseflow_core::case::Act;

/// An act, when and by whom, its values (a task's answers, fields set: the entry's changes),
/// and the entries that followed it (`event@step`).
#[derive(Debug, Clone)]
pub struct Action {
    pub at: DateTime<Utc>,
    pub by: String,
    pub act: Act,
    pub values: BTreeMap<String, Value>,
    pub expect: Vec<String>,
}

/// A case's history read as a start and the actions taken on it.
pub struct Recorded {
    pub started_at: Option<DateTime<Utc>>,
    pub started_by: String,
    pub fields: BTreeMap<String, Value>,
    pub actions: Vec<Action>,
    /// The entries after the last action, with when they happened.
    pub tail: Vec<(DateTime<Utc>, String)>,
}

/// The actions of a family's history (the case's entries carry index 0; sub-process cases',
/// others), in the order they happened: each entry that carries its act (`HistoryEntry::act`)
/// is an action. Acts on the whole case (cancel, suspend, resume, retry) count on the case
/// itself only: on a sub-process case they are the engine carrying the parent's out.
pub fn actions_of(entries: &[(usize, HistoryEntry)]) -> Recorded {
    let mut rec = Recorded {
        started_at: None,
        started_by: String::new(),
        fields: BTreeMap::new(),
        actions: Vec::new(),
        tail: Vec::new(),
    };
    // Entries after the last action that its step cannot check yet: a timer's (it fires during
    // the next step's advance, even at the same instant) and what followed it.
    let mut pending: Vec<(DateTime<Utc>, String)> = Vec::new();
    let mut after_timer = false;
    let values =
        |e: &HistoryEntry| e.changes.iter().map(|(k, _, v)| (k.clone(), v.clone())).collect::<BTreeMap<_, _>>();
    for (n, e) in entries {
        if e.event == HistoryEvent::Started && *n == 0 {
            rec.fields = values(e);
            rec.started_by = e.actor.clone();
            rec.started_at = Some(e.at);
            continue;
        }
        let act = e.act.as_deref().cloned().or_else(|| {
            // Before acts were stored, one message heard by several steps left one entry each.
            legacy_act(e).filter(|a| !rec.actions.last().is_some_and(|last| last.at == e.at && last.act == *a))
        });
        let on_case = matches!(act, Some(Act::Cancel { .. } | Act::Suspend | Act::Resume | Act::Retry));
        let Some(act) = act.filter(|_| *n == 0 || !on_case) else {
            follows(&mut rec.actions, &mut pending, &mut after_timer, e);
            continue;
        };
        let expect = pending.drain(..).map(|(_, name)| name).collect();
        rec.actions.push(Action { at: e.at, by: e.actor.clone(), act, values: values(e), expect });
        after_timer = false;
    }
    rec.tail = pending;
    rec
}

/// The act of an entry written before acts were stored on entries, read from its event and
/// text as earlier versions wrote them; `None` for what was not an act.
fn legacy_act(e: &HistoryEntry) -> Option<Act> {
    // Most entries are not acts: nothing is allocated until an arm says this one is.
    let step = || e.step.clone().unwrap_or_default();
    let to = || e.detail.strip_prefix("to ").and_then(|d| d.split(':').next()).unwrap_or_default().to_string();
    Some(match e.event {
        HistoryEvent::TaskCompleted => Act::Complete { step: step() },
        // A kept message delivered later is the flow's doing, not an act.
        HistoryEvent::MessageReceived | HistoryEvent::MessageKept if !e.detail.contains("(kept since") => {
            Act::Message { name: e.detail.split(" until ").next().unwrap_or_default().to_string() }
        }
        HistoryEvent::Cancelled => Act::Cancel { reason: e.detail.clone() },
        HistoryEvent::TaskReassigned => Act::Reassign { step: step(), to: to(), reason: "replayed".into() },
        HistoryEvent::TaskDelegated => Act::Delegate { step: step(), to: to(), reason: "replayed".into() },
        HistoryEvent::TaskClaimed => Act::Claim { step: step() },
        HistoryEvent::TaskReleased => Act::Release { step: step() },
        HistoryEvent::FieldsUpdated => Act::SetFields,
        HistoryEvent::Suspended => Act::Suspend,
        HistoryEvent::Resumed => Act::Resume,
        HistoryEvent::Retried => Act::Retry,
        _ => return None,
    })
}

/// The scenario of case `id` (and its sub-process cases), as TOML text.
pub fn record<S: Storage>(engine: &Engine<S>, id: InstanceId) -> Result<String, EngineError> {
    let Some(root) = engine.instance(id)? else {
        return Err(EngineError::UnknownInstance(id.to_string()));
    };
    let zone = engine.rules().calendar.time_zone;
    let users = engine.rules().users.clone();
    let mut family = Vec::new();
    let entries = family_history(engine, root.clone(), &mut family)?;
    // A scenario starts a case on the version deployed now and cannot move it between
    // versions: a migrated case's recording could never pass.
    if let Some((_, m)) = entries.iter().find(|(_, e)| e.event == HistoryEvent::Migrated) {
        return Err(EngineError::NotRecordable(format!(
            "case {} was migrated ({}, at {}): a scenario cannot replay a migration; record a case \
             that ran on one version, or write the migration as `deploy` and `migrate` steps (docs/testing.md)",
            root.business_key,
            m.detail,
            local(zone, m.at)
        )));
    }
    // Without the field key, sensitive values read back sealed: they would land in the file as
    // ciphertext and replay as nonsense.
    let sealed = entries.iter().flat_map(|(_, e)| &e.changes).find(|(_, old, new)| {
        crate::crypto::FieldCipher::is_encrypted(new)
            || old.as_ref().is_some_and(crate::crypto::FieldCipher::is_encrypted)
    });
    if let Some((field, _, _)) = sealed {
        return Err(EngineError::NotRecordable(format!(
            "the sensitive field `{field}` of case {} is sealed: give the data directory's field key \
             (`--field-key`, or DATA_DIR/field.key) to record it",
            root.business_key
        )));
    }
    let rec = actions_of(&entries);
    let start_fields: Vec<String> = rec.fields.iter().map(|(k, v)| format!("{} = {}", key(k), toml_value(v))).collect();
    let started_by = users.contains_key(&rec.started_by).then(|| rec.started_by.clone());
    let actions = rec.actions;
    let tail = rec.tail;

    let mut out = String::new();
    let def_version = root.version;
    let _ = writeln!(
        out,
        "description = {}",
        toml_str(&format!(
            "Recorded from case {} ({} version {def_version}); edit the expectations to what should have happened",
            root.business_key, root.process
        ))
    );
    let _ = writeln!(out, "process = {}", toml_str(&root.process));
    let _ = writeln!(out, "start_at = {}", toml_str(&local(zone, root.started_at)));
    if let Some(u) = started_by {
        let _ = writeln!(out, "started_by = {}", toml_str(&u));
    }
    if !start_fields.is_empty() {
        let _ = writeln!(out, "\n[fields]\n{}", start_fields.join("\n"));
    }
    let mut clock = root.started_at;
    for a in &actions {
        out.push_str("\n[[step]]\n");
        if a.at > clock {
            let _ = writeln!(out, "advance_to = {}", toml_str(&local(zone, a.at)));
            clock = a.at;
        }
        for l in lines_of(a) {
            let _ = writeln!(out, "{l}");
        }
        if !a.expect.is_empty() {
            let _ = writeln!(out, "expect_history = [{}]", dedup(&a.expect).join(", "));
        }
    }
    // The last step: the rest of the history, and the case as it is now.
    out.push_str("\n[[step]]\n");
    if let Some(last) = tail.iter().map(|(at, _)| *at).max().filter(|t| *t > clock) {
        let _ = writeln!(out, "advance_to = {}", toml_str(&local(zone, last)));
    }
    if !tail.is_empty() {
        let names: Vec<String> = tail.into_iter().map(|(_, n)| n).collect();
        let _ = writeln!(out, "expect_history = [{}]", dedup(&names).join(", "));
    }
    let _ = writeln!(out, "expect_tasks = [{}]", open_tasks(engine, &family, zone).join(", "));
    let _ = writeln!(out, "expect_status = {}", toml_str(root.status.name()));
    if let Status::Completed { outcome } = &root.status {
        let _ = writeln!(out, "expect_outcome = {}", toml_str(outcome));
    }
    Ok(out)
}

/// An action as a scenario step's lines.
fn lines_of(a: &Action) -> Vec<String> {
    let by = format!("by = {}", toml_str(&a.by));
    let table = |fields: &BTreeMap<String, Value>| {
        let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{} = {}", key(k), toml_value(v))).collect();
        format!("{{ {} }}", parts.join(", "))
    };
    match &a.act {
        Act::Complete { step } => {
            let mut l = vec![format!("complete = {}", toml_str(step)), by];
            if !a.values.is_empty() {
                l.push(format!("fields = {}", table(&a.values)));
            }
            l
        }
        Act::Message { name } => vec![format!("message = {}", toml_str(name))],
        Act::Cancel { reason } => vec![format!("cancel = {}", toml_str(reason)), by],
        Act::Reassign { step, to, .. } => {
            vec![format!("reassign = {}", toml_str(step)), format!("to = {}", toml_str(to)), by]
        }
        Act::Delegate { step, to, .. } => {
            vec![format!("delegate = {}", toml_str(step)), format!("to = {}", toml_str(to)), by]
        }
        Act::Claim { step } => vec![format!("claim = {}", toml_str(step)), by],
        Act::Release { step } => vec![format!("release = {}", toml_str(step)), by],
        Act::SetFields => vec![format!("set_fields = {}", table(&a.values)), by],
        Act::Suspend => vec!["suspend = true".into(), by],
        Act::Resume => vec!["resume = true".into(), by],
        Act::Retry => vec!["retry = true".into(), by],
    }
}

/// Files an entry that is not an action: with the last action when that action caused it (same
/// instant, no timer since), otherwise for the next step.
fn follows(
    actions: &mut [Action],
    pending: &mut Vec<(DateTime<Utc>, String)>,
    after_timer: &mut bool,
    e: &HistoryEntry,
) {
    *after_timer |= matches!(
        e.event,
        HistoryEvent::TimerFired
            | HistoryEvent::TaskOverdue
            | HistoryEvent::ReminderSent
            | HistoryEvent::EscalationDue
            | HistoryEvent::WaitTimedOut
            | HistoryEvent::SlaThreshold
            | HistoryEvent::MessageExpired
    );
    match actions.last_mut() {
        Some(last) if !*after_timer && last.at == e.at => last.expect.push(history_name(e)),
        _ => {
            *after_timer = true;
            pending.push((e.at, history_name(e)));
        }
    }
}

/// The history of a case and its sub-process cases in the order it happened. Each sub-case's
/// entries come after the entry that started it and, at one instant, before the entry that
/// took its result (a scenario's clock often stands still for several steps).
pub(crate) fn family_history<S: Storage>(
    engine: &Engine<S>,
    inst: Instance,
    family: &mut Vec<Instance>,
) -> Result<Vec<(usize, HistoryEntry)>, EngineError> {
    let me = family.len();
    family.push(inst.clone());
    let mut merged: Vec<(usize, HistoryEntry)> = engine.history(inst.id)?.into_iter().map(|e| (me, e)).collect();
    let mut taken_starts = 0usize;
    let mut taken_returns: Vec<u64> = Vec::new();
    for sub in engine.sub_cases(inst.id)? {
        let Some(child) = engine.instance(sub.id)? else { continue };
        let child_entries = family_history(engine, child, family)?;
        // The parent's entry that started this sub-case, and the one that took its result.
        let starts: Vec<usize> = merged
            .iter()
            .enumerate()
            .filter(|(_, (n, e))| *n == me && e.event == HistoryEvent::SubProcessStarted)
            .map(|(i, _)| i)
            .collect();
        let Some(&start) = starts.get(taken_starts).or(starts.last()) else {
            merged.extend(child_entries);
            continue;
        };
        taken_starts += 1;
        let call_step = merged[start].1.step.clone();
        let returned = merged.iter().skip(start).find(|(n, e)| {
            *n == me
                && e.event == HistoryEvent::SubProcessReturned
                && e.step == call_step
                && !taken_returns.contains(&e.seq)
        });
        let returned_seq = returned.map(|(_, e)| e.seq);
        taken_returns.extend(returned_seq);
        let rest = merged.split_off(start + 1);
        let (mut p, mut c) = (rest.into_iter().peekable(), child_entries.into_iter().peekable());
        loop {
            let take_parent = match (p.peek(), c.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((pn, pe)), Some((_, ce))) => {
                    pe.at < ce.at || (pe.at == ce.at && (*pn != me || returned_seq.is_none_or(|r| pe.seq < r)))
                }
            };
            merged.extend(if take_parent { p.next() } else { c.next() });
        }
    }
    Ok(merged)
}

fn open_tasks<S: Storage>(engine: &Engine<S>, family: &[Instance], zone: Tz) -> Vec<String> {
    let mut out = Vec::new();
    for inst in family {
        let Some(def) = engine.definition(&inst.process, Some(inst.version)) else { continue };
        for t in inst.tasks.values() {
            let mut parts = vec![format!("step = {}", toml_str(&def.model.step(t.step).name))];
            if let Some(a) = &t.assignee {
                parts.push(format!("assignee = {}", toml_str(a)));
            }
            if let Some(d) = t.due_at {
                parts.push(format!("due = {}", toml_str(&local(zone, d))));
            }
            out.push(format!("{{ {} }}", parts.join(", ")));
        }
    }
    out
}

/// `event@step`, as `expect_history` writes it.
fn history_name(e: &HistoryEntry) -> String {
    toml_str(&format!("{}{}", e.event, e.step.as_ref().map(|s| format!("@{s}")).unwrap_or_default()))
}

fn dedup(names: &[String]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    names.iter().filter(|n| seen.insert(n.as_str())).cloned().collect()
}

fn local(zone: Tz, t: DateTime<Utc>) -> String {
    super::run::show_local(zone, t)
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A bare key when it is one, quoted otherwise.
fn key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        k.to_string()
    } else {
        toml_str(k)
    }
}

fn toml_value(v: &Value) -> String {
    match v {
        Value::Text(s) => toml_str(s),
        Value::Int(i) => i.to_string(),
        Value::Decimal(d) => toml::Value::Float(*d).to_string(),
        Value::Bool(b) => b.to_string(),
        Value::List(items) => format!("[{}]", items.iter().map(toml_value).collect::<Vec<_>>().join(", ")),
        other => toml_str(&other.to_string()),
    }
}
