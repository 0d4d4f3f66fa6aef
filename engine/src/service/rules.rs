//! The rules in force: changing them (all or nothing, recorded with a diff), what a restart
//! falls back on, recomputing open deadlines, reassigning a user's work.

use super::{Engine, EngineError, RulesChange};
use crate::storage::codec::{decode, encode};
use crate::storage::keys::{self, Prefix};
use crate::storage::{Batch, Storage};
use crate::sync::Unpoisoned;
use caseflow_core::case::{self, Actor, Command, NoWorkload, StatusKind};
use caseflow_core::rules::{RuleSet, RulesFile};
use caseflow_dsl::{check_files, Diagnostic, SourceFile};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl<S: Storage> Engine<S> {
    /// The version of the rules in force (0 until a change is recorded).
    pub fn rules_version(&self) -> u64 {
        self.rules_version.load(Ordering::SeqCst)
    }

    /// The rules in force and their version, read together.
    pub(crate) fn rules_and_version(&self) -> (Arc<RuleSet>, u64) {
        let guard = self.rules.read().unpoisoned();
        // The writer changes both under the write lock, so this pair is consistent.
        (guard.clone(), self.rules_version.load(Ordering::SeqCst))
    }

    /// Recomputes open tasks' deadlines of every running or suspended case under the rules in
    /// force. Returns how many cases changed.
    pub fn recompute_deadlines(&self, now: DateTime<Utc>) -> Result<usize, EngineError> {
        let processes: Vec<String> = self.definitions().into_iter().map(|(p, _)| p).collect();
        let mut changed = 0;
        for p in processes {
            for status in [StatusKind::Running, StatusKind::Suspended] {
                for id in self.instances(&p, status.as_str(), usize::MAX)? {
                    let before = self.instance(id)?.map(|i| i.history_len);
                    let after = self.command(id, Actor::system(), Command::RecomputeDeadlines, now)?;
                    if before != Some(after.history_len) {
                        changed += 1;
                    }
                }
            }
        }
        Ok(changed)
    }

    /// Gives every open task of `user` to `to` (for a user leaving a role). Returns the count.
    pub fn reassign_all(
        &self,
        user: &str,
        to: &str,
        by: &Actor,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, EngineError> {
        let tasks = self.tasks(Some(user), None, usize::MAX)?;
        for t in &tasks {
            let cmd = Command::Reassign { task: t.task.seq, to: to.to_string(), reason: reason.to_string() };
            self.command(t.instance, by, cmd, now)?;
        }
        Ok(tasks.len())
    }

    /// Replaces the rules in force after checking that every deployed process still finds the
    /// roles, values and tables it uses. Records the change (who, when, diff) and the files
    /// now in force durably before the new rules apply; on any error the old rules stay in
    /// force.
    pub fn change_rules(
        &self,
        rules: RuleSet,
        files: &[RulesFile],
        by: &str,
        diff: String,
        now: DateTime<Utc>,
    ) -> Result<RulesChange, EngineError> {
        self.check_processes_against(&rules)?;
        let mut current = self.rules.write().unpoisoned();
        let version = self.rules_version.load(Ordering::SeqCst) + 1;
        let change = RulesChange { version, at: now, by: by.to_string(), diff };
        let mut batch = Batch::default();
        // On condition that no other node changed the rules since this one took them in.
        let read = (version > 1).then(|| crate::storage::Bytes::copy_from_slice(&(version - 1).to_be_bytes()));
        batch.expect(keys::RULES_VERSION.to_vec(), read);
        batch.insert(keys::RULES_VERSION.to_vec(), version.to_be_bytes().to_vec());
        batch.insert(keys::rules_change(version), encode(&change));
        batch.insert(keys::RULES_FILES.to_vec(), encode(&files));
        let ticket = self.store.write(batch)?;
        self.store.wait_durable(ticket)?;
        *current = Arc::new(rules);
        self.rules_version.store(version, Ordering::SeqCst);
        Ok(change)
    }

    /// Refuses rules that the latest deployed version of some process no longer checks
    /// against (a role, value or table it uses is gone).
    fn check_processes_against(&self, rules: &RuleSet) -> Result<(), EngineError> {
        let catalog = rules.catalog();
        let sources: Vec<SourceFile> = {
            let defs = self.definitions.read().unpoisoned();
            defs.values()
                .filter_map(|v| v.values().next_back())
                .map(|d| SourceFile { name: format!("{}.flow", d.process), text: d.source.clone() })
                .collect()
        };
        let mut problems = Vec::new();
        for report in check_files(&sources, Some(&catalog)) {
            problems.extend(report.checked.diagnostics.into_iter().filter(Diagnostic::is_error));
        }
        match problems.is_empty() {
            true => Ok(()),
            false => Err(EngineError::Rejected(problems)),
        }
    }

    /// What candidate rules would do to open work if they were applied and open deadlines
    /// recomputed, and which open cases' decision-table lookups would come out differently (`PUT /admin/rules/files/{name}?dry_run=true`), without writing anything:
    /// every running or suspended case goes through the core's `RecomputeDeadlines` under the
    /// candidate rules, on a copy. Refused like `change_rules` when a deployed process would
    /// not check against them. Reads every open case: seconds for a hundred thousand.
    ///
    /// `recompute` says whether the change would recompute open deadlines: without it they
    /// stay as they are, and the deadline figures say so (nothing moves).
    pub fn rules_impact(
        &self,
        candidate: &RuleSet,
        recompute: bool,
        now: DateTime<Utc>,
    ) -> Result<RulesImpact, EngineError> {
        self.check_processes_against(candidate)?;
        let mut impact = RulesImpact { recompute, ..RulesImpact::default() };
        let mut shifts: Vec<i64> = Vec::new();
        let in_force = self.rules();
        for (process, _) in self.definitions() {
            for status in [StatusKind::Running, StatusKind::Suspended] {
                for id in self.instances(&process, status.as_str(), usize::MAX)? {
                    let Some(inst) = self.instance(id)? else { continue };
                    let Some(def) = self.definition(&inst.process, Some(inst.version)) else { continue };
                    impact.cases += 1;
                    impact.open_tasks += inst.tasks.len();
                    let ctx = case::Context { model: &def.model, rules: candidate, workload: &NoWorkload, now };
                    // Decision tables: what each lookup of the process gives this case now,
                    // under the rules in force and under the candidate.
                    let before = case::Context { rules: &in_force, ..ctx };
                    for (old, new) in case::lookups(&before, &inst).into_iter().zip(case::lookups(&ctx, &inst)) {
                        if old.outputs != new.outputs {
                            *impact.lookups_changed.entry(format!("{}.{}", inst.process, old.step)).or_insert(0) += 1;
                        }
                    }
                    let Ok((after, _)) = case::applied(&ctx, &inst, Actor::system(), Command::RecomputeDeadlines)
                    else {
                        impact.not_recomputed += 1;
                        continue;
                    };
                    let today = now.with_timezone(&candidate.calendar.time_zone).date_naive();
                    for task in inst.tasks.values() {
                        let Some(assignee) = &task.assignee else { continue };
                        // Only what the candidate adds: an escalated task's manager holds none
                        // of its roles under either, yet her absence is the candidate's doing.
                        let was = assignee_problems(&in_force, assignee, &task.candidates, today);
                        let Some(reason) = assignee_problems(candidate, assignee, &task.candidates, today)
                            .into_iter()
                            .find(|p| !was.contains(p))
                        else {
                            continue;
                        };
                        let step = format!("{}.{}", inst.process, task.step_name);
                        *impact.assignees_lost_by_step.entry(step.clone()).or_insert(0) += 1;
                        if impact.assignees_lost.len() < 100 {
                            impact.assignees_lost.push(AssigneeLost {
                                task: inst.task_id(task.seq).to_string(),
                                step,
                                assignee: assignee.clone(),
                                reason,
                            });
                        }
                    }
                    for (seq, task) in inst.tasks.iter().filter(|_| recompute) {
                        let Some(new) = after.tasks.get(seq) else { continue };
                        if new.due_at == task.due_at {
                            continue;
                        }
                        impact.deadlines_moved += 1;
                        if let (Some(old), Some(due)) = (task.due_at, new.due_at) {
                            shifts.push((due - old).num_minutes());
                            if due <= now && old > now {
                                impact.overdue_at_once += 1;
                            }
                        }
                        let step = format!("{}.{}", inst.process, task.step_name);
                        *impact.moved_by_step.entry(step).or_insert(0) += 1;
                    }
                }
            }
        }
        shifts.sort_unstable();
        impact.shift_minutes = (!shifts.is_empty()).then(|| ShiftMinutes {
            earliest: shifts[0],
            median: shifts[shifts.len() / 2],
            latest: shifts[shifts.len() - 1],
        });
        Ok(impact)
    }

    /// Records `files` as the rules in force, without a change: for a store that has no
    /// record of them yet (created before they were recorded, or new).
    pub fn record_rules_files(&self, files: &[RulesFile]) -> Result<(), EngineError> {
        let mut batch = Batch::default();
        batch.insert(keys::RULES_FILES.to_vec(), encode(&files));
        let ticket = self.store.write(batch)?;
        Ok(self.store.wait_durable(ticket)?)
    }

    /// The rules files last accepted (by a change, or recorded at a start), if any: what a
    /// restart falls back on when the folder holds a broken file.
    pub fn rules_files_in_force(store: &S) -> Result<Option<Vec<RulesFile>>, EngineError> {
        match store.get(keys::RULES_FILES)? {
            Some(v) => Ok(Some(decode(keys::RULES_FILES, &v)?)),
            None => Ok(None),
        }
    }

    /// Every accepted rules change, oldest first.
    pub fn rules_changes(&self) -> Result<Vec<RulesChange>, EngineError> {
        self.store
            .scan_prefix(Prefix::RulesChange.bytes())
            .map(|r| {
                let (k, v) = r?;
                Ok(decode(&k, &v)?)
            })
            .collect()
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.read().unpoisoned().clone()
    }

    /// Takes in what other nodes on a shared store changed: versions deployed there, and the
    /// rules in force when their version moved on. True when something changed. The rules
    /// were checked by the node that changed them; files that no longer load here (another
    /// caseflow version) are said so, and the rules in force stay.
    pub fn refresh(&self) -> Result<bool, EngineError> {
        let mut changed = self.load_definitions()?;
        let stored = self.store.get_u64(keys::RULES_VERSION)?.unwrap_or(0);
        if stored > self.rules_version.load(Ordering::SeqCst) {
            let files = Self::rules_files_in_force(&self.store)?.unwrap_or_default();
            let rules = RuleSet::load(&files).map_err(|errors| {
                let said: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                super::corrupt("m/rules_files", &format!("the rules in force do not load: {}", said.join("; ")))
            })?;
            let mut current = self.rules.write().unpoisoned();
            *current = Arc::new(rules);
            self.rules_version.store(stored, Ordering::SeqCst);
            changed = true;
        }
        Ok(changed)
    }
}

/// What candidate rules would do to open work if applied (`Engine::rules_impact`): open
/// deadlines move only when recomputed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RulesImpact {
    /// Whether open deadlines would be recomputed. Without it they stay as they are, and the
    /// deadline figures below are zero.
    pub recompute: bool,
    /// Running and suspended cases looked at.
    pub cases: usize,
    /// Their open tasks.
    pub open_tasks: usize,
    /// Open tasks whose deadline would move.
    pub deadlines_moved: usize,
    /// By how many minutes those deadlines would move (negative: sooner), when any would.
    pub shift_minutes: Option<ShiftMinutes>,
    /// Tasks not overdue now whose new deadline has already passed.
    pub overdue_at_once: usize,
    /// Moved deadlines by `process.step`.
    pub moved_by_step: BTreeMap<String, usize>,
    /// Cases whose decision-table lookup at `process.step` would give another result (or
    /// fail, or succeed where it failed), whether or not they have reached that step yet.
    pub lookups_changed: BTreeMap<String, usize>,
    /// Cases the core refused to recompute under the candidate rules (left out of the counts).
    pub not_recomputed: usize,
    /// Open tasks whose assignee the candidate rules would take off them: no longer in any of
    /// the task's roles, or away today. By `process.step`.
    pub assignees_lost_by_step: BTreeMap<String, usize>,
    /// Those tasks one by one (the first 100): task, step, assignee, why.
    pub assignees_lost: Vec<AssigneeLost>,
}

/// An open task whose assignee the candidate rules take off it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssigneeLost {
    pub task: String,
    pub step: String,
    pub assignee: String,
    /// `not in role cs_rep`, `no longer a user`, or `away today`.
    pub reason: String,
}

/// Why `rules` would not let `assignee` keep a task of these roles today: every reason.
fn assignee_problems(rules: &RuleSet, assignee: &str, roles: &[String], today: chrono::NaiveDate) -> Vec<String> {
    let Some(user) = rules.users.get(assignee) else { return vec!["no longer a user".into()] };
    let mut out = Vec::new();
    if !roles.is_empty() && !roles.iter().any(|r| user.roles.contains(r)) {
        out.push(format!("not in role {}", roles.join(" or ")));
    }
    if rules.is_away(assignee, today) {
        out.push("away today".into());
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShiftMinutes {
    pub earliest: i64,
    pub median: i64,
    pub latest: i64,
}
