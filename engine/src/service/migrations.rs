//! Moving running cases from one version of a process to another: the dry run that says where
//! each would land, and the migration that moves each case in one atomic write (the core's
//! `case::migrate` decides; this file finds the cases, locks each family, writes, publishes).

use super::workload::EngineWorkload;
use super::{Engine, EngineError, Unit};
use crate::storage::Storage;
use caseflow_core::case::migrate::{self, CasePlan};
use caseflow_core::case::{self, Actor, InstanceId, Outcome, StatusKind};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// Cases a report lists one by one; the counts cover all of them.
pub const MIGRATION_LISTED_MAX: usize = 1000;

/// A migration asked for: the cases of `process` on version `from`, to version `to`.
#[derive(Debug, Clone)]
pub struct MigrationOrder {
    pub process: String,
    pub from: u32,
    pub to: u32,
    /// Old step name to new step name; other steps go by `renamed from` or by name.
    pub mapping: BTreeMap<String, String>,
    /// Say where every case would land, and change nothing.
    pub dry_run: bool,
    /// Who asked: named on each case's `migrated` history entry.
    pub by: Actor,
}

/// What a migration did, or (dry run) would do.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"process": "complaint", "from": 1, "to": 2, "dry_run": true, "cases": 3, "moved": 2, "refused": 1, "landing": {"receive -> receive (stays)": 1, "remote_assistance -> onsite_visit (entered)": 1}, "refusals": {"it waits at `file`, which version 2 does not have: map `file` to one of its steps": 1}, "incidents": {}, "results": [{"id": 1, "business_key": "20261123-001", "moved": true, "reasons": [], "plan": {"moves": [{"from": "receive", "to": "receive", "how": "stays"}], "tasks_kept": ["1-2"], "tasks_closed": [], "tasks_opened": [], "deadlines": [], "fields_defaulted": ["region"], "fields_dropped": [], "landing": {"status": "running", "at": ["receive (task)"]}}}]})))]
pub struct MigrationReport {
    pub process: String,
    pub from: u32,
    pub to: u32,
    pub dry_run: bool,
    /// Running cases of version `from` (running, suspended or at an incident).
    pub cases: usize,
    /// Moved (or, in a dry run, that would move).
    pub moved: usize,
    /// Left on version `from`.
    pub refused: usize,
    /// Where cases land: `old -> new (stays|entered)`, with how many.
    pub landing: BTreeMap<String, usize>,
    /// Why cases cannot move, with how many.
    pub refusals: BTreeMap<String, usize>,
    /// Cases that land at an incident (an automatic step entered afresh that cannot run yet),
    /// by `step`: reason, with how many. They move, and wait for a fix and `retry`.
    pub incidents: BTreeMap<String, usize>,
    /// Case by case (the first 1,000).
    pub results: Vec<CaseMigration>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaseMigration {
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub id: InstanceId,
    pub business_key: String,
    pub moved: bool,
    /// Why it cannot move; empty when it moves.
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<CasePlan>,
}

impl<S: Storage> Engine<S> {
    /// Moves the running cases of `process` from version `from` to `to` (a dry run changes
    /// nothing). `mapping` sends old step names to new ones; other steps go by `renamed from`
    /// or by name. Each case moves in one write with a `migrated` history entry; a case that
    /// cannot move stays on its version and the report says why.
    pub fn migrate(&self, order: &MigrationOrder, now: DateTime<Utc>) -> Result<MigrationReport, EngineError> {
        let MigrationOrder { process, from, to, mapping, dry_run, .. } = order;
        let (process, from, to, dry_run) = (process.as_str(), *from, *to, *dry_run);
        let version = |v: u32| self.definition(process, Some(v)).ok_or_else(|| self.unknown_version(process, v));
        let (old, new) = (version(from)?, version(to)?);
        if from == to {
            return Err(EngineError::BadMigration(format!("`from` and `to` are both version {from}")));
        }
        for (o, n) in mapping {
            if old.model.step_named(o).is_none() {
                return Err(EngineError::BadMigration(format!(
                    "the mapping names `{o}`, which version {from} has no step of"
                )));
            }
            if new.model.step_named(n).is_none() {
                return Err(EngineError::BadMigration(format!(
                    "the mapping sends `{o}` to `{n}`, which version {to} has no step of"
                )));
            }
        }
        let mut report = MigrationReport {
            process: process.to_string(),
            from,
            to,
            dry_run,
            cases: 0,
            moved: 0,
            refused: 0,
            landing: BTreeMap::new(),
            refusals: BTreeMap::new(),
            incidents: BTreeMap::new(),
            results: Vec::new(),
        };
        for status in StatusKind::OPEN {
            let mut after = None;
            loop {
                let ids = self.instances_after(process, status.as_str(), after, 512)?;
                let Some(last) = ids.last().copied() else { break };
                after = Some(last);
                for id in ids {
                    let result =
                        self.rerun_on_conflict(|| self.migrate_case(id, &old.model, &new.model, order, now))?;
                    let Some(result) = result else { continue };
                    report.cases += 1;
                    if result.moved {
                        report.moved += 1;
                        for m in result.plan.iter().flat_map(|p| &p.moves) {
                            *report.landing.entry(format!("{} -> {} ({})", m.from, m.to, m.how)).or_insert(0) += 1;
                        }
                        if let Some(incident) = result.plan.as_ref().and_then(|p| p.landing.incident.clone()) {
                            *report.incidents.entry(incident).or_insert(0) += 1;
                        }
                    } else {
                        report.refused += 1;
                        for r in &result.reasons {
                            *report.refusals.entry(r.clone()).or_insert(0) += 1;
                        }
                    }
                    if report.results.len() < MIGRATION_LISTED_MAX {
                        report.results.push(result);
                    }
                }
            }
        }
        report.results.sort_by_key(|r| r.id);
        Ok(report)
    }

    /// One case under its family's lock; `None` when it is not on version `from` (any more).
    fn migrate_case(
        &self,
        id: InstanceId,
        old: &caseflow_dsl::model::Process,
        new: &caseflow_dsl::model::Process,
        order: &MigrationOrder,
        now: DateTime<Utc>,
    ) -> Result<Option<CaseMigration>, EngineError> {
        let MigrationOrder { from, to, mapping, dry_run, by, .. } = order;
        let (from, to, dry_run) = (*from, *to, *dry_run);
        let (guard, before) = self.lock_family(id)?;
        let stored = before.clone();
        let before = before.instance;
        if before.version != from || before.status.is_ended() {
            return Ok(None);
        }
        let (rules, rules_version) = self.rules_and_version();
        let mut result = CaseMigration {
            id,
            business_key: before.business_key.clone(),
            moved: false,
            reasons: Vec::new(),
            plan: None,
        };
        // As `run_core`: a step entered afresh may take a task by round robin; the rotation
        // moves on only if no other command moved it meanwhile, else the core runs again.
        let migrated = loop {
            // A dry run takes no position from the store: it reads the next one.
            let workload = EngineWorkload { peek: dry_run, ..EngineWorkload::new(self) };
            let ctx = case::Context { model: new, rules: &rules, workload: &workload, now };
            let migrated = match migrate::migrate(&ctx, old, &before, to, mapping, by) {
                Ok(m) => m,
                Err(reasons) => {
                    result.reasons = reasons;
                    return Ok(Some(result));
                }
            };
            if dry_run {
                break (migrated, None);
            }
            if let Some(reservation) = workload.settle(&before, &migrated.instance, &migrated.effects) {
                break (migrated, Some(reservation));
            }
        };
        let (migrated, reservation) = migrated;
        result.moved = true;
        result.plan = Some(migrated.plan);
        if dry_run {
            return Ok(Some(result));
        }
        let mut history = migrated.history;
        history.iter_mut().for_each(|h| h.rules_version = rules_version);
        let effects = migrated.effects;
        let mut unit = Unit { reserved: reservation.into_iter().collect(), ..Unit::default() };
        unit.add(Some(stored), migrated.instance, Outcome { effects: effects.clone(), history });
        let written = self.cascade(&mut unit, id, effects.clone(), now).and_then(|()| self.commit(&mut unit, None));
        drop(guard);
        let ticket = written.inspect_err(|e| self.give_back(&unit, e))?;
        let (instance, outcome, others) = unit.split_first();
        self.confirm(super::Applied { instance, outcome, ticket, others }.into())?;
        Ok(Some(result))
    }
}
