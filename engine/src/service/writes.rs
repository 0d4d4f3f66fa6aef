//! Starts and commands: the unit of a command (a family of cases carried through the core's
//! effects and written in one batch), the core run on a workload snapshot, the batch that
//! writes it, pipelining (`start_pending`, `command_pending`, `confirm`).

use super::events::event_of;
use super::numbering::{
    fill_sequence, BusinessKey, IdBlock, IdempotencyKey, KeyRecord, ID_BLOCK, SEQUENCE_PLACEHOLDER,
};
use super::workload::{inbox_deltas, EngineWorkload, Reservation};
use super::{
    corrupt, Applied, Engine, EngineError, IndexChange, Pending, Stored, Unit, CALL_DEPTH_MAX, CONFLICT_RUNS_MAX,
    STRIPES,
};
use crate::storage::codec::encode;
use crate::storage::index::index_entries;
use crate::storage::keys::{self, Prefix};
use crate::storage::{Batch, Storage, StoreError};
use crate::sync::Unpoisoned;
use caseflow_core::case::{self, Actor, Command, CommandError, Effect, Instance, InstanceId, Outcome, Status};
use caseflow_core::rules::RuleSet;
use caseflow_core::value::Value;
use caseflow_dsl::model::Process;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

/// The history entries `familiar by` reads: for each task step whose assignment names a field,
/// who completed it in this case, when that changed in this write.
pub(crate) fn familiar_entries(
    model: &Process,
    before: Option<&Instance>,
    after: &Instance,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for s in &model.steps {
        let caseflow_dsl::model::StepKind::Task(def) = &s.kind else { continue };
        let Some(caseflow_dsl::model::Assignee::Role { familiar: Some(field), .. }) = &def.assign else { continue };
        let Some(user) = after.done_by.get(&s.id) else { continue };
        if before.and_then(|b| b.done_by.get(&s.id)) == Some(user) {
            continue;
        }
        if let Some(Value::Text(v)) = after.fields.get(field) {
            out.push((keys::familiar(&after.process, field, v, &s.name), user.as_bytes().to_vec()));
        }
    }
    out
}

impl<S: Storage> Engine<S> {
    /// Starts a case of the latest version. With an idempotency key, a repeated start returns
    /// the instance the first one created, and changes nothing.
    pub fn start(
        &self,
        process: &str,
        fields: BTreeMap<String, Value>,
        actor: &Actor,
        idempotency_key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Instance, EngineError> {
        self.confirm(self.start_pending(process, fields, actor, idempotency_key, now)?)
    }

    /// `start` without waiting for durability: see `Pending`.
    pub fn start_pending(
        &self,
        process: &str,
        fields: BTreeMap<String, Value>,
        actor: &Actor,
        idempotency_key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Pending, EngineError> {
        self.rerun_on_conflict(|| self.start_inner(process, fields.clone(), actor, idempotency_key, now))
    }

    /// Calls `done` once a pending write is durable, without blocking a thread (on the log's
    /// writer thread; `done` must be quick). `confirm` then returns at once.
    pub fn when_durable(&self, pending: &Pending, done: impl FnOnce(Result<(), EngineError>) + Send + 'static) {
        match pending.ticket {
            Some(ticket) => self.store.when_durable(ticket, Box::new(move |r| done(r.map_err(EngineError::from)))),
            None => done(Ok(())),
        }
    }

    /// Waits until a pending start or command is durable, publishes its events and returns
    /// the case: the acknowledgement.
    pub fn confirm(&self, pending: Pending) -> Result<Instance, EngineError> {
        if let Some(ticket) = pending.ticket {
            self.store.wait_durable(ticket)?;
        }
        if let Some(outcome) = &pending.outcome {
            self.publish(&pending.instance, outcome);
        }
        for (inst, outcome) in &pending.others {
            self.publish(inst, outcome);
        }
        Ok(pending.instance)
    }

    pub(crate) fn start_inner(
        &self,
        process: &str,
        fields: BTreeMap<String, Value>,
        actor: &Actor,
        idempotency_key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Pending, EngineError> {
        let def = self.definition(process, None).ok_or_else(|| EngineError::UnknownProcess(process.to_string()))?;
        let (rules, rules_version) = self.rules_and_version();
        // Allocation happens under a lock, briefly, in two steps around the start itself, so
        // that starts run their steps in parallel. First the id (and the idempotency key's
        // claim); then, once the start has succeeded, the business key's sequence number, so
        // that a refused start never takes one (ids may skip).
        // The number is taken (`Storage::take_number`) before the case is written, so that
        // counters only ever grow: a crash or a failed write in between leaves an unused
        // number, never a reused one. The idempotency record is written with the case, on
        // condition that no other start (on any node) recorded the key first.
        let idem = idempotency_key.map(|k| IdempotencyKey::new(k, actor, process, &fields));
        let alloc = self.numbering.allocation.lock().unpoisoned();
        if let Some(k) = &idem {
            if let Some((id, request)) = self.idempotency_record(k)? {
                drop(alloc);
                if request.is_some_and(|r| r != k.request) {
                    return Err(EngineError::IdempotencyKeyReused(k.given.to_string()));
                }
                if let Some(existing) = self.instance(id)? {
                    return Ok(Pending { instance: existing, outcome: None, ticket: None, others: Vec::new() });
                }
                if self.numbering.starting.lock().unpoisoned().contains(&k.scoped) {
                    return Err(EngineError::StartInProgress(k.given.to_string()));
                }
                // Taken by a start that crashed before writing its case: take it again.
                return self.start_after_crashed_reservation(process, fields, actor, k, now);
            }
            if !self.numbering.starting.lock().unpoisoned().insert(k.scoped.clone()) {
                return Err(EngineError::StartInProgress(k.given.to_string()));
            }
        }
        drop(alloc);
        let release_key = || {
            if let Some(k) = &idem {
                self.numbering.starting.lock().unpoisoned().remove(&k.scoped);
            }
        };
        let mut unit = Unit::default();
        // A new case is its own family: no one else can reach it before it is written.
        let started = self.take_id().and_then(|id| {
            unit.started.push((id, self.business_key(&def.model, &rules, &fields, id, now)));
            let key_text = unit.started[0].1.text.clone();
            let mut inst = Instance::new(id, &def.model, def.version, key_text, now);
            inst.rules_version = rules_version;
            let (inst, outcome) =
                self.run_core(&def.model, &rules, &inst, actor, Command::Start { fields }, now, &mut unit.reserved)?;
            let effects = outcome.effects.clone();
            unit.add(None, inst, outcome);
            self.cascade(&mut unit, id, effects, now)?;
            Ok(id)
        });
        let written = started.and_then(|_| self.commit(&mut unit, idem.as_ref()));
        release_key();
        // A unit not written gives back the ids it took.
        let ticket = written.inspect_err(|e| self.give_back(&unit, e))?;
        let (instance, outcome, others) = unit.split_first();
        Ok(Pending { instance, outcome: Some(outcome), ticket: Some(ticket), others })
    }

    /// Takes a new instance id, reserving a block in the store when one is used up: from the
    /// stored bound, on condition that no other process moved it meanwhile.
    pub(crate) fn take_id(&self) -> Result<InstanceId, EngineError> {
        let mut alloc = self.numbering.allocation.lock().unpoisoned();
        if let Some(id) = alloc.take() {
            return Ok(id);
        }
        for _ in 0..CONFLICT_RUNS_MAX {
            let stored = self.store.get(keys::NEXT_INSTANCE)?;
            let start = match &stored {
                Some(v) => keys::u64_value(v).ok_or_else(|| corrupt("m/next_instance", "expected 8 bytes"))?,
                None => 1,
            };
            let mut block = Batch::default();
            block.expect(keys::NEXT_INSTANCE, stored);
            block.insert(keys::NEXT_INSTANCE, (start + ID_BLOCK).to_be_bytes());
            match self.store.write(block) {
                Ok(_) => {
                    *alloc = IdBlock { next: start, end: start + ID_BLOCK };
                    return Ok(alloc.take().expect("a block was just reserved"));
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict("m/next_instance".into()).into())
    }

    /// The ids a unit that was not written took, back (newest first, so each is the last one
    /// taken). Not when its write failed with its outcome unknown: it may have been applied,
    /// and an id given again would then name a second case.
    pub(crate) fn give_back(&self, unit: &Unit, why: &EngineError) {
        if matches!(why, EngineError::Store(StoreError::OutcomeUnknown(_))) {
            return;
        }
        let mut alloc = self.numbering.allocation.lock().unpoisoned();
        for (id, _) in unit.started.iter().rev() {
            alloc.give_back(*id);
        }
    }

    /// Loads a case into the unit, unless it is there already.
    pub(crate) fn stage(&self, unit: &mut Unit, id: InstanceId) -> Result<(), EngineError> {
        if !unit.cases.contains_key(&id) {
            let stored = self.instance_stored(id)?.ok_or_else(|| EngineError::UnknownInstance(id.to_string()))?;
            let inst = stored.instance.clone();
            unit.add(Some(stored), inst, Outcome { effects: Vec::new(), history: Vec::new() });
        }
        Ok(())
    }

    /// Applies a command to a staged case; returns the effects it had.
    pub(crate) fn apply_staged(
        &self,
        unit: &mut Unit,
        id: InstanceId,
        actor: &Actor,
        command: Command,
        now: DateTime<Utc>,
    ) -> Result<Vec<Effect>, EngineError> {
        self.stage(unit, id)?;
        let staged = unit.cases.get_mut(&id).expect("staged above");
        let def = self
            .definition(&staged.after.process, Some(staged.after.version))
            .ok_or_else(|| self.unknown_version(&staged.after.process, staged.after.version))?;
        let (rules, rules_version) = self.rules_and_version();
        let (after, mut outcome) =
            self.run_core(&def.model, &rules, &staged.after, actor, command, now, &mut unit.reserved)?;
        staged.after = after;
        outcome.history.iter_mut().for_each(|h| h.rules_version = rules_version);
        let effects = outcome.effects.clone();
        staged.outcome.history.append(&mut outcome.history);
        staged.outcome.effects.append(&mut outcome.effects);
        Ok(effects)
    }

    /// Carries a command's effects through the family, in the same unit: sub-processes
    /// started (and run as far as they go), parents told their child ended or was
    /// cancelled, children cancelled with their parent. Any refusal refuses the whole unit.
    pub(crate) fn cascade(
        &self,
        unit: &mut Unit,
        from: InstanceId,
        effects: Vec<Effect>,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let mut work: std::collections::VecDeque<(InstanceId, Effect)> =
            effects.into_iter().map(|e| (from, e)).collect();
        while let Some((id, effect)) = work.pop_front() {
            let inst = &unit.cases[&id].after;
            let (parent, family, depth) = (inst.parent, inst.family.unwrap_or(id), inst.depth);
            let more = match effect {
                Effect::StartChild { token, process, fields } => {
                    if depth as usize + 1 > CALL_DEPTH_MAX {
                        return Err(EngineError::TooDeep);
                    }
                    let def = self
                        .definition(&process, None)
                        .ok_or_else(|| EngineError::UnknownProcess(process.to_string()))?;
                    let (rules, rules_version) = self.rules_and_version();
                    let child = self.take_id()?;
                    let key = self.business_key(&def.model, &rules, &fields, child, now);
                    let mut inst = Instance::new(child, &def.model, def.version, key.text.clone(), now);
                    unit.started.push((child, key));
                    (inst.parent, inst.family, inst.depth, inst.rules_version) =
                        (Some((id, token)), Some(family), depth + 1, rules_version);
                    let (inst, mut outcome) = self.run_core(
                        &def.model,
                        &rules,
                        &inst,
                        Actor::system(),
                        Command::Start { fields },
                        now,
                        &mut unit.reserved,
                    )?;
                    outcome.history.iter_mut().for_each(|h| h.rules_version = rules_version);
                    let effects = outcome.effects.clone();
                    unit.add(None, inst, outcome);
                    self.apply_staged(unit, id, Actor::system(), Command::ChildStarted { token, child }, now)?;
                    effects.into_iter().map(|e| (child, e)).collect()
                }
                Effect::Ended { status } => match (parent, status) {
                    (Some((parent, token)), Status::Completed { .. }) => {
                        let fields = unit.cases[&id].after.fields.clone();
                        let cmd = Command::ChildEnded { token, fields };
                        self.tell_parent(unit, parent, cmd, now)?.into_iter().map(|e| (parent, e)).collect()
                    }
                    (Some((parent, token)), Status::Cancelled { reason }) => {
                        let cmd = Command::ChildCancelled { token, reason };
                        self.tell_parent(unit, parent, cmd, now)?.into_iter().map(|e| (parent, e)).collect()
                    }
                    _ => Vec::new(),
                },
                Effect::CancelChildren { children } => {
                    let mut more = Vec::new();
                    for child in children {
                        let cmd = Command::Cancel { reason: format!("the parent case {id} ended") };
                        match self.apply_staged(unit, child, Actor::system(), cmd, now) {
                            Ok(effects) => more.extend(effects.into_iter().map(|e| (child, e))),
                            // Ended meanwhile (it is being told to its parent in this unit).
                            Err(EngineError::Command(CommandError::WrongStatus(_))) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    more
                }
                _ => Vec::new(),
            };
            work.extend(more);
        }
        Ok(())
    }

    /// A parent told of its child's end; a parent that moved on (ended, or its token no
    /// longer waits) has nothing to do with it.
    pub(crate) fn tell_parent(
        &self,
        unit: &mut Unit,
        parent: InstanceId,
        command: Command,
        now: DateTime<Utc>,
    ) -> Result<Vec<Effect>, EngineError> {
        match self.apply_staged(unit, parent, Actor::system(), command, now) {
            Err(EngineError::Command(CommandError::NotWaitingForChild(_) | CommandError::WrongStatus(_))) => {
                Ok(Vec::new())
            }
            other => other,
        }
    }

    /// Runs a command through the core on a snapshot of the workload, then moves each role's
    /// round-robin rotation on by the tasks the command took and reserves the tasks it gave
    /// (into `reserved`, until the unit's write returns). Two commands that read the same
    /// position, or the same loads, at once would give their tasks to the same person: the
    /// later one finds them changed and runs again on the fresh figures (the core is pure, so
    /// running again is safe). A command the core refuses moves nothing. (On a shared store
    /// positions are taken from the store as the core asks for them: see `EngineWorkload`.)
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_core(
        &self,
        model: &Process,
        rules: &RuleSet,
        inst: &Instance,
        actor: &Actor,
        command: Command,
        now: DateTime<Utc>,
        reserved: &mut Vec<Reservation>,
    ) -> Result<(Instance, Outcome), EngineError> {
        loop {
            let workload = EngineWorkload::new(self);
            let ctx = case::Context { model, rules, workload: &workload, now };
            let (after, outcome) = case::applied(&ctx, inst, actor, command.clone())?;
            if let Some(reservation) = workload.settle(inst, &after, &outcome.effects) {
                reserved.push(reservation);
                return Ok((after, outcome));
            }
        }
    }

    /// Writes a unit in one batch, once the business keys of the cases it started have their
    /// numbers (`Storage::take_number`): every case it changed (each on condition that it is
    /// still as read), those business keys, and its idempotency key (on condition that no
    /// other start recorded it). A batch refused on a condition writes nothing: the
    /// caller runs the command again on what the store holds now.
    pub(crate) fn commit(&self, unit: &mut Unit, idempotency_key: Option<&IdempotencyKey>) -> Result<u64, EngineError> {
        let mut batch = Batch::default();
        let mut written = Written::default();
        self.fill_batch(unit, idempotency_key, &mut batch, &mut written)?;
        self.write_filled(batch, written, unit.cases.len())
    }

    /// Several units as one batch, one transaction (timers firing on a shared database): each
    /// case on condition that it is as read, each unit's fence checked. The units must touch
    /// distinct cases. Refused as a whole when any condition fails.
    pub(crate) fn commit_group(&self, units: &mut [Unit]) -> Result<u64, EngineError> {
        let mut batch = Batch::default();
        let mut written = Written::default();
        for unit in units.iter_mut() {
            self.fill_batch(unit, None, &mut batch, &mut written)?;
        }
        let cases = units.iter().map(|u| u.cases.len()).sum();
        self.write_filled(batch, written, cases)
    }

    /// Writes a filled batch, keeping the open-task counts and the timer cursor in step.
    fn write_filled(&self, mut batch: Batch, written: Written, cases: usize) -> Result<u64, EngineError> {
        let Written { deltas, timers, reserved } = written;
        self.count_open_tasks(&mut batch, &deltas);
        let ticket = self.workload.open_counts.around(&deltas, reserved, || self.store.write(batch))?;
        // Once the entries are visible (see `TimerCursor`).
        for k in timers {
            self.timer_cursor.added(&k);
        }
        self.commands.fetch_add(cases as u64, Ordering::Relaxed);
        Ok(ticket)
    }

    /// Puts a unit's writes into `batch` (see `commit`).
    fn fill_batch(
        &self,
        unit: &mut Unit,
        idempotency_key: Option<&IdempotencyKey>,
        batch: &mut Batch,
        written: &mut Written,
    ) -> Result<(), EngineError> {
        // Numbers are taken once the unit has run (a start the core refuses takes none), one
        // at a time in this process so that they follow the order of the starts here.
        let numbered = unit.started.iter().any(|(_, k)| k.sequence.is_some());
        if numbered {
            let _alloc = self.numbering.allocation.lock().unpoisoned();
            for (id, key) in &unit.started {
                let Some((seq_key, width)) = &key.sequence else { continue };
                let seq = self.store.take_number(seq_key)?;
                let staged = unit.cases.get_mut(id).expect("a started case is staged");
                fill_sequence(&mut staged.after, &mut staged.outcome, &format!("{seq:0width$}"));
            }
        }
        if let (Some(k), Some((id, _))) = (idempotency_key, unit.started.first()) {
            batch.expect(k.store_key(), None);
            batch.insert(k.store_key(), k.record(*id));
        }
        // The rotations this unit moved, so a restart carries on where they were.
        let rotated: BTreeSet<&str> = (unit.cases.values().flat_map(|c| &c.outcome.effects))
            .filter_map(|e| match e {
                Effect::RoundRobinTaken { role, .. } => Some(role.as_str()),
                _ => None,
            })
            .collect();
        // (On a shared store the positions were taken in the store as they were given.)
        if !rotated.is_empty() && !self.store.shared() {
            let rotation = self.workload.round_robin.lock().unpoisoned();
            for role in rotated {
                let position = rotation.get(role).copied().unwrap_or(0);
                batch.insert(keys::round_robin(role), position.to_be_bytes().to_vec());
            }
        }
        if let Some((key, token)) = &unit.fence {
            batch.expect_claimed(key.clone(), *token);
        }
        for (id, _) in &unit.started {
            let key = &unit.cases[id].after.business_key;
            batch.insert(keys::business_key(key), id.0.to_be_bytes().to_vec());
            // A new case never replaces one: its id is new, and this holds it to that.
            batch.expect(keys::instance(*id), None);
        }
        for id in &unit.order {
            let staged = &unit.cases[id];
            if staged.before.as_ref() == Some(&staged.after) {
                continue;
            }
            if let Some(stored) = &staged.stored {
                batch.expect(keys::instance(*id), Some(stored.clone()));
            }
            let (d, timer) = self.put_instance(batch, staged.before.as_ref(), &staged.after, &staged.outcome)?;
            if let Some(def) = self.definition(&staged.after.process, Some(staged.after.version)) {
                for (k, v) in familiar_entries(&def.model, staged.before.as_ref(), &staged.after) {
                    batch.insert(k, v);
                }
                // A case that ends now counts in its process's tallies.
                if staged.before.as_ref().is_none_or(|b| !b.status.is_ended()) {
                    for (name, by) in case::tally_entries(&def.model, &self.rules(), &staged.after) {
                        batch.insert(keys::tally_entry(&staged.after.process, &name, &by, staged.after.id), Vec::new());
                    }
                }
            }
            for (user, n) in d {
                *written.deltas.entry(user).or_insert(0) += n;
            }
            written.timers.extend(timer);
        }
        written.reserved.append(&mut unit.reserved);
        Ok(())
    }

    /// A start whose idempotency key was reserved by a start that crashed before writing its
    /// case: the stale reservation is dropped and the start runs again.
    pub(crate) fn start_after_crashed_reservation(
        &self,
        process: &str,
        fields: BTreeMap<String, Value>,
        actor: &Actor,
        key: &IdempotencyKey,
        now: DateTime<Utc>,
    ) -> Result<Pending, EngineError> {
        {
            let _alloc = self.numbering.allocation.lock().unpoisoned();
            // Still stale under the lock (no start of this key began meanwhile)?
            if self.numbering.starting.lock().unpoisoned().contains(&key.scoped) {
                return Err(EngineError::StartInProgress(key.given.to_string()));
            }
            let mut batch = Batch::default();
            let x = key.store_key();
            if let Some(record) = self.store.get(&x)? {
                let id = keys::idempotency_of(&record).map(|(id, _)| id);
                if id.is_none_or(|id| self.store.get(&keys::instance(id)).ok().flatten().is_none()) {
                    batch.remove(x);
                }
            }
            if !batch.is_empty() {
                self.store.write(batch)?;
            }
        }
        self.start_inner(process, fields, actor, Some(key.given), now)
    }

    /// The case a key started and the digest of its request.
    pub(crate) fn idempotency_record(&self, key: &IdempotencyKey) -> Result<Option<KeyRecord>, EngineError> {
        let x = key.store_key();
        let Some(record) = self.store.get(&x)? else { return Ok(None) };
        let record = keys::idempotency_of(&record).ok_or_else(|| StoreError::Corrupt {
            key: String::from_utf8_lossy(&x).into_owned(),
            problem: format!("expected a case id and a request digest, found {} bytes", record.len()),
        })?;
        Ok(Some(record))
    }

    /// Renders the key template: `{date:%Y%m%d}-{seq:03}` → `20261123-007`. The sequence
    /// counts per rendered prefix, so it restarts each day.
    #[allow(clippy::type_complexity)]
    pub(crate) fn business_key(
        &self,
        model: &Process,
        rules: &RuleSet,
        fields: &BTreeMap<String, Value>,
        id: InstanceId,
        now: DateTime<Utc>,
    ) -> BusinessKey {
        // The rules' key format for this process, if any, overrides the .flow file's.
        let Some(template) = rules.key_formats.get(&model.id).or(model.key.as_ref()) else {
            return BusinessKey { text: format!("{}-{}", model.id, id), sequence: None };
        };
        let local = now.with_timezone(&rules.calendar.time_zone);
        let mut out = String::new();
        let mut seq_width = None;
        let mut rest = template.as_str();
        let mut prefix_at_seq = None;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
            let inner = &rest[open + 1..close];
            let (name, format) = inner.split_once(':').unwrap_or((inner, ""));
            match name {
                "date" => {
                    // The checker refuses a format chrono cannot render; never panic on one anyway.
                    use chrono::format::{Item, StrftimeItems};
                    let usable = !StrftimeItems::new(format).any(|i| matches!(i, Item::Error));
                    out.push_str(&local.format(if usable { format } else { "%Y%m%d" }).to_string());
                }
                "seq" if prefix_at_seq.is_none() => {
                    prefix_at_seq = Some(out.len());
                    seq_width = Some(format.trim_start_matches('0').parse::<usize>().unwrap_or(1));
                    out.push(SEQUENCE_PLACEHOLDER);
                }
                "seq" => {}
                field => out.push_str(&fields.get(field).map(|v| v.to_string()).unwrap_or_default()),
            }
            rest = rest.get(close + 1..).unwrap_or("");
        }
        out.push_str(rest);
        let (Some(at), Some(width)) = (prefix_at_seq, seq_width) else {
            return BusinessKey { text: out, sequence: None };
        };
        let seq_key = keys::sequence(&model.id, &out[..at]);
        BusinessKey { text: out, sequence: Some((seq_key, width)) }
    }

    pub(crate) fn put_instance(
        &self,
        batch: &mut Batch,
        before: Option<&Instance>,
        after: &Instance,
        outcome: &Outcome,
    ) -> Result<IndexChange, EngineError> {
        let old = before.map(|b| self.index_entries_of(b)).unwrap_or_default();
        let new = self.index_entries_of(after);
        let earliest_timer =
            new.keys().filter(|k| k.starts_with(Prefix::Timer.bytes()) && !old.contains_key(*k)).min().cloned();
        let removed: Vec<&Vec<u8>> = old.keys().filter(|k| !new.contains_key(*k)).collect();
        let deltas = inbox_deltas(&removed, &new.keys().filter(|k| !old.contains_key(*k)).collect::<Vec<_>>());
        for k in removed {
            batch.remove(k.clone());
        }
        for (k, v) in new.into_iter().filter(|(k, v)| old.get(k) != Some(v)) {
            batch.insert(k, v);
        }
        let stored = encode(&self.seal_instance(after)?);
        match self.store.keeps_documents() {
            true => batch.insert_documented(keys::instance(after.id), stored, self.document_of(after)),
            false => batch.insert(keys::instance(after.id), stored),
        }
        if self.store.shared() {
            for h in &outcome.history {
                batch.announce(super::events::announcement(after, h));
            }
        }
        if self.events.outbox.load(Ordering::Relaxed) {
            for h in &outcome.history {
                // Keyed by the batch's place in the write-ahead log: the outbox keeps command
                // order, across restarts.
                batch.insert_sequenced(keys::OUTBOX, encode(&event_of(after, h)));
            }
        }
        // A command's history entries are one value under its first sequence number: one key
        // per command, not per entry, keeps sled's nodes (16 keys a leaf) and its log small.
        if let Some(first) = outcome.history.first() {
            let sealed = self.seal_history(after, outcome.history.clone(), true)?;
            batch.insert(keys::history(after.id, first.seq), encode(&sealed));
        }
        Ok((deltas, earliest_timer))
    }

    /// The index entries a case implies, its fields' (`index FIELD`) among them.
    fn index_entries_of(&self, inst: &Instance) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut entries = index_entries(inst);
        self.field_index_entries(inst, &mut entries);
        entries
    }

    /// Applies a command to an instance, durably.
    pub fn command(
        &self,
        id: InstanceId,
        actor: &Actor,
        command: Command,
        now: DateTime<Utc>,
    ) -> Result<Instance, EngineError> {
        self.confirm(self.apply_and_write(id, actor, command, now)?.into())
    }

    /// `command` without waiting for durability: see `Pending`.
    pub fn command_pending(
        &self,
        id: InstanceId,
        actor: &Actor,
        command: Command,
        now: DateTime<Utc>,
    ) -> Result<Pending, EngineError> {
        Ok(self.apply_and_write(id, actor, command, now)?.into())
    }

    /// Takes the lock of the case's family and reads the case under it. The lock spares this
    /// process conflicts between its own commands; the write's conditions are what serialise
    /// commands of several processes on one store.
    pub(crate) fn lock_family(&self, id: InstanceId) -> Result<(std::sync::MutexGuard<'_, ()>, Stored), EngineError> {
        let stripe = |family: InstanceId| (family.0 as usize) % STRIPES;
        let lock = |i: usize| self.stripes[i].lock().unpoisoned();
        let read = || self.instance_stored(id)?.ok_or_else(|| EngineError::UnknownInstance(id.to_string()));
        let mut guard = lock(stripe(id));
        let mut before = read()?;
        if let Some(family) = before.instance.family.filter(|f| stripe(*f) != stripe(id)) {
            // A sub-process: its family's stripe is the one that counts (a family never changes).
            drop(guard);
            guard = lock(stripe(family));
            before = read()?;
        }
        Ok((guard, before))
    }

    /// Runs `attempt` again while its write is refused because another writer changed what
    /// it read (each attempt reads afresh), up to `CONFLICT_RUNS_MAX` times.
    pub(crate) fn rerun_on_conflict<T>(
        &self,
        mut attempt: impl FnMut() -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let mut runs = 1;
        loop {
            match attempt() {
                Err(EngineError::Store(StoreError::Conflict(_))) if runs < CONFLICT_RUNS_MAX => runs += 1,
                other => return other,
            }
        }
    }

    /// Applies a command and writes its batch, without waiting for durability: the caller
    /// waits on `ticket` (once, for a whole group) and then publishes.
    ///
    /// Commands are serialised per family (a case and its sub-processes share the stripe of
    /// the case at the top), so a command and what it does to the family's other cases are
    /// one write.
    pub(crate) fn apply_and_write(
        &self,
        id: InstanceId,
        actor: &Actor,
        command: Command,
        now: DateTime<Utc>,
    ) -> Result<Applied, EngineError> {
        self.apply_and_write_fenced(id, actor, command, now, None)
    }

    /// `apply_and_write`, written only while the claim `fence` (a key and its claim's token)
    /// holds: a due timer fired under a claim another node may take over.
    pub(crate) fn apply_and_write_fenced(
        &self,
        id: InstanceId,
        actor: &Actor,
        command: Command,
        now: DateTime<Utc>,
        fence: Option<(Vec<u8>, u64)>,
    ) -> Result<Applied, EngineError> {
        self.rerun_on_conflict(|| {
            let (guard, before) = self.lock_family(id)?;
            let mut unit = Unit { fence: fence.clone(), ..Unit::default() };
            let inst = before.instance.clone();
            unit.add(Some(before), inst, Outcome { effects: Vec::new(), history: Vec::new() });
            let written = self
                .apply_staged(&mut unit, id, actor, command.clone(), now)
                .and_then(|effects| self.cascade(&mut unit, id, effects, now))
                .and_then(|()| self.commit(&mut unit, None));
            drop(guard);
            // A unit not written gives back the ids it took.
            let ticket = written.inspect_err(|e| self.give_back(&unit, e))?;
            let (instance, outcome, others) = unit.split_first();
            Ok(Applied { instance, outcome, ticket, others })
        })
    }
}

/// What a filled batch changes beside its keys: open tasks per user, and the timers it adds.
#[derive(Default)]
struct Written {
    deltas: BTreeMap<String, i64>,
    timers: Vec<Vec<u8>>,
    /// The units' tasks given, in flight until the write returns.
    reserved: Vec<Reservation>,
}
