//! What-if: the closed cases of a period replayed through candidate rules or process versions.
//!
//! The core is deterministic, so a case's recorded actions (`scenario::actions_of`: each
//! completion, message, cancellation, … at the time it happened, by whom) applied again give
//! the same case. Each case is replayed twice, in memory and without storage: under the rules
//! in force and the versions it ran on (the baseline), and under the candidate. The timers
//! fire exactly when due between actions. Both replays share the same stand-in for workload
//! (no other open work; round robin rotating within the case), so what differs between them is
//! the candidate's doing. A replay stops where the recorded action no longer applies (a task
//! that is not open on the candidate's route): that case *diverged*, and the report says where.

use crate::scenario::{actions_of, Action, Recorded};
use crate::{Engine, EngineError, RuleSet, Storage};
use caseflow_core::case::{
    self, Actor, Command, Effect, HistoryEntry, HistoryEvent, Instance, InstanceId, Status, StatusKind, Workload,
};
use caseflow_dsl::model::{Process, StepKind};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// Timers one replay may fire before it is stopped (a cycle every minute for years).
const TIMERS_MAX: usize = 100_000;

/// A closed case and its sub-process cases, with their history in the order it happened.
pub struct ClosedCase {
    pub root: Instance,
    /// The family's cases; `entries` refer to them by index (0: the case itself).
    pub family: Vec<Instance>,
    pub entries: Vec<(usize, HistoryEntry)>,
}

/// The process models a replay runs on: the candidate's, else the version the case ran on.
#[derive(Default)]
pub struct Models {
    pub candidate: BTreeMap<String, Process>,
    pub deployed: BTreeMap<(String, u32), Process>,
}

impl Models {
    fn get(&self, process: &str, version: u32, candidate: bool) -> Option<&Process> {
        candidate
            .then(|| self.candidate.get(process))
            .flatten()
            .or_else(|| self.deployed.get(&(process.to_string(), version)))
    }

    /// A called process's model: the candidate's, else its latest deployed version (what a
    /// `call` starts).
    fn called(&self, process: &str, candidate: bool) -> Option<&Process> {
        candidate.then(|| self.candidate.get(process)).flatten().or_else(|| {
            self.deployed.range((process.to_string(), 0)..=(process.to_string(), u32::MAX)).next_back().map(|(_, m)| m)
        })
    }
}

/// One replay of one case.
pub struct Replayed {
    pub entries: Vec<(usize, HistoryEntry)>,
    pub family: Vec<Instance>,
    /// The model each family member ran on.
    pub models: Vec<Process>,
    /// Where the recorded actions stopped applying.
    pub diverged: Option<String>,
    /// Commands applied (start, timers, actions, sub-process commands).
    pub commands: usize,
}

/// No other open work; round robin rotates within the replayed case.
struct ReplayWorkload {
    rotation: RefCell<BTreeMap<String, u64>>,
}

impl Workload for ReplayWorkload {
    fn open_tasks(&self, _: &str) -> usize {
        0
    }
    fn round_robin_position(&self, role: &str) -> u64 {
        self.rotation.borrow().get(role).copied().unwrap_or(0)
    }
    fn familiar(&self, _: &str, _: &str, _: &str, _: &str) -> Option<String> {
        None
    }
    fn tally(&self, _: &str, _: &str, _: &[String]) -> u64 {
        0
    }
}

struct Replay<'a> {
    models: &'a Models,
    rules: &'a RuleSet,
    candidate: bool,
    workload: ReplayWorkload,
    family: Vec<Instance>,
    /// The process model of each family member.
    versions: Vec<Process>,
    entries: Vec<(usize, HistoryEntry)>,
    now: DateTime<Utc>,
    commands: usize,
    timers: usize,
}

/// Replays one closed case under `rules` and (with `candidate`) the candidate models.
pub fn replay(case: &ClosedCase, models: &Models, rules: &RuleSet, candidate: bool) -> Replayed {
    let recorded = actions_of(&case.entries);
    let mut r = Replay {
        models,
        rules,
        candidate,
        workload: ReplayWorkload { rotation: RefCell::new(BTreeMap::new()) },
        family: Vec::new(),
        versions: Vec::new(),
        entries: Vec::new(),
        now: recorded.started_at.unwrap_or(case.root.started_at),
        commands: 0,
        timers: 0,
    };
    let diverged = r.run(case, &recorded).err();
    Replayed { entries: r.entries, family: r.family, models: r.versions, diverged, commands: r.commands }
}

impl Replay<'_> {
    fn run(&mut self, case: &ClosedCase, rec: &Recorded) -> Result<(), String> {
        let model = self
            .models
            .get(&case.root.process, case.root.version, self.candidate)
            .ok_or_else(|| format!("no model of {} version {}", case.root.process, case.root.version))?
            .clone();
        let mut root = Instance::new(case.root.id, &model, case.root.version, case.root.business_key.clone(), self.now);
        root.started_by = rec.started_by.clone();
        self.family.push(root);
        self.versions.push(model);
        let starter = self.actor(&rec.started_by);
        self.apply(0, &starter, Command::Start { fields: rec.fields.clone() })
            .map_err(|e| format!("the start is refused: {e}"))?;
        for action in &rec.actions {
            self.fire_until(action.at)?;
            self.now = self.now.max(action.at);
            let actor = self.actor(&action.by);
            let (idx, command) = self.command(action)?;
            self.apply(idx, &actor, command).map_err(|e| format!("{:?} at {}: {e}", action.act, action.at))?;
        }
        let end = case.entries.iter().map(|(_, e)| e.at).max().unwrap_or(self.now);
        self.fire_until(end)
    }

    /// Replayed actions act as administrators under their own names: a what-if is about the
    /// process and the rules, not about who may press which button.
    fn actor(&self, id: &str) -> Actor {
        let roles = self.rules.users.get(id).map(|u| u.roles.clone()).unwrap_or_default();
        Actor { id: id.to_string(), roles, admin: true }
    }

    /// The command an action is, and the family member it goes to (`Act::command`, the
    /// translation scenarios share). A recorded step name finds the step a candidate declares
    /// `renamed from` it.
    fn command(&self, action: &Action) -> Result<(usize, Command), String> {
        let task_at = |step: &str| {
            self.family.iter().enumerate().find_map(|(i, inst)| {
                let renamed = self.versions[i].steps.iter().find(|s| s.renamed_from.as_deref() == Some(step));
                let name = renamed.map_or(step, |s| s.name.as_str());
                inst.tasks.values().find(|t| t.step_name == name).map(|t| (i, t.seq))
            })
        };
        action.act.command(&action.values, 0, task_at).map_err(|e| format!("{e} on this route"))
    }

    /// Fires every timer of the family due by `until`, each at its due time, in order.
    fn fire_until(&mut self, until: DateTime<Utc>) -> Result<(), String> {
        let mut skipped: Vec<(usize, u32)> = Vec::new();
        loop {
            let next = self
                .family
                .iter()
                .enumerate()
                .filter(|(_, inst)| matches!(inst.status, Status::Running))
                .flat_map(|(i, inst)| inst.timers.values().map(move |t| (t.due_at, i, t.seq)))
                .filter(|(at, i, seq)| *at <= until && !skipped.contains(&(*i, *seq)))
                .min();
            let Some((at, i, seq)) = next else { return Ok(()) };
            self.now = self.now.max(at);
            self.timers += 1;
            if self.timers > TIMERS_MAX {
                return Err(format!("more than {TIMERS_MAX} timers fell due"));
            }
            if self.apply(i, Actor::system(), Command::FireTimer { timer: seq }).is_err() {
                skipped.push((i, seq));
            }
        }
    }

    /// Applies a command to a family member and carries its effects through the family, as
    /// the engine does (sub-process cases started, parents told of their end, children
    /// cancelled with their parent).
    fn apply(&mut self, idx: usize, actor: &Actor, command: Command) -> Result<(), String> {
        let mut work = std::collections::VecDeque::from([(idx, actor.clone(), command)]);
        while let Some((i, actor, command)) = work.pop_front() {
            let ctx =
                case::Context { model: &self.versions[i], rules: self.rules, workload: &self.workload, now: self.now };
            let (after, outcome) = case::applied(&ctx, &self.family[i], &actor, command).map_err(|e| e.to_string())?;
            self.commands += 1;
            self.family[i] = after;
            self.entries.extend(outcome.history.into_iter().map(|e| (i, e)));
            for effect in outcome.effects {
                match effect {
                    Effect::RoundRobinTaken { role, count } => {
                        *self.workload.rotation.borrow_mut().entry(role).or_insert(0) += count;
                    }
                    Effect::StartChild { token, process, fields } => {
                        let model = self
                            .models
                            .called(&process, self.candidate)
                            .ok_or_else(|| format!("no model of the called process {process}"))?
                            .clone();
                        let child_id = InstanceId(u64::MAX - self.family.len() as u64);
                        let mut child = Instance::new(child_id, &model, 0, String::new(), self.now);
                        child.parent = Some((self.family[i].id, token));
                        self.family.push(child);
                        self.versions.push(model);
                        let c = self.family.len() - 1;
                        // Started first, then its parent told (the engine's order).
                        work.push_back((c, Actor::system().clone(), Command::Start { fields }));
                        work.push_back((i, Actor::system().clone(), Command::ChildStarted { token, child: child_id }));
                    }
                    Effect::Ended { status } => {
                        let Some((parent, token)) = self.family[i].parent else { continue };
                        let Some(p) = self.family.iter().position(|f| f.id == parent) else { continue };
                        let command = match status {
                            Status::Completed { .. } => {
                                Command::ChildEnded { token, fields: self.family[i].fields.clone() }
                            }
                            Status::Cancelled { reason } => Command::ChildCancelled { token, reason },
                            _ => continue,
                        };
                        work.push_back((p, Actor::system().clone(), command));
                    }
                    Effect::CancelChildren { children } => {
                        for child in children {
                            if let Some(c) = self.family.iter().position(|f| f.id == child) {
                                let reason = "the parent case ended".to_string();
                                work.push_back((c, Actor::system().clone(), Command::Cancel { reason }));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// What one run of a case did, as the report compares it. Steps are named as the case's own
/// version names them: a candidate's step `renamed from` an old one counts as the old one.
struct Facts {
    /// `task_opened@step` and `reached_end@step`, in order.
    route: Vec<String>,
    /// Per `process.step`: assignees in the order the tasks opened; tasks with a deadline;
    /// deadlines missed.
    steps: BTreeMap<String, StepFacts>,
    outcome: String,
}

#[derive(Default)]
struct StepFacts {
    assignees: Vec<String>,
    with_deadline: usize,
    missed: usize,
    /// What each decision or decision-table lookup at the step gave, in order.
    decisions: Vec<String>,
}

fn facts(run: &Replayed) -> Facts {
    let models: Vec<&Process> = run.models.iter().collect();
    facts_of(&run.entries, &run.family, &models)
}

fn facts_of(entries: &[(usize, HistoryEntry)], family: &[Instance], models: &[&Process]) -> Facts {
    let mut f = Facts { route: Vec::new(), steps: BTreeMap::new(), outcome: String::new() };
    for (i, e) in entries {
        let (Some(inst), Some(model)) = (family.get(*i), models.get(*i)) else { continue };
        let Some(step) = &e.step else { continue };
        let at = model.step_named(step);
        let step = at.and_then(|s| s.renamed_from.as_ref()).unwrap_or(step);
        let key = format!("{}.{step}", inst.process);
        match e.event {
            HistoryEvent::TaskOpened => {
                f.route.push(format!("task_opened@{step}"));
                let s = f.steps.entry(key).or_default();
                s.assignees.push(e.detail.rsplit(" for ").next().unwrap_or_default().to_string());
                let due = at.is_some_and(|st| matches!(&st.kind, StepKind::Task(t) if t.due.is_some()));
                if due {
                    s.with_deadline += 1;
                }
            }
            HistoryEvent::TaskOverdue => f.steps.entry(key).or_default().missed += 1,
            HistoryEvent::Decided => f.steps.entry(key).or_default().decisions.push(e.detail.clone()),
            HistoryEvent::DecisionTable => {
                let outputs: Vec<String> = e.changes.iter().map(|(k, _, v)| format!("{k} = {v}")).collect();
                f.steps.entry(key).or_default().decisions.push(outputs.join(", "));
            }
            HistoryEvent::ReachedEnd => {
                f.route.push(format!("reached_end@{step}"));
                if *i == 0 {
                    f.outcome = step.clone();
                }
            }
            HistoryEvent::Cancelled if *i == 0 => f.outcome = "cancelled".into(),
            _ => {}
        }
    }
    f
}

/// A step's figures before (the baseline replay) and after (the candidate's).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StepWhatIf {
    pub tasks_before: usize,
    pub tasks_after: usize,
    /// Tasks with a deadline, and how many of those deadlines were met.
    pub deadlines_before: usize,
    pub met_before: usize,
    pub deadlines_after: usize,
    pub met_after: usize,
    /// Tasks the candidate gives to someone other than who really had them (paired in the
    /// order they opened), where the replay under the rules in force gives them to that same
    /// person; tasks that open only on one side are counted by `tasks_before`/`tasks_after`.
    pub assignees_changed: usize,
    /// Tasks whose real assignee the replay cannot reproduce (it depended on other cases'
    /// open work, which a replay does not see): not compared.
    pub assignees_not_comparable: usize,
    /// Cases whose decisions or decision-table results at the step differ.
    pub decisions_changed: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProcessWhatIf {
    pub cases: usize,
    pub routes_changed: usize,
    pub outcomes_changed: usize,
    pub diverged: usize,
}

/// What candidate rules or process versions would have done to the closed cases of a period.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WhatIfReport {
    pub cases: usize,
    /// Replayed to their end under both.
    pub replayed: usize,
    /// Cases where a recorded action no longer applied under the candidate (see `divergences`).
    pub diverged: usize,
    /// Cases the baseline itself could not replay (their history needs what a replay cannot
    /// give, such as other cases' workload): left out.
    pub not_replayable: usize,
    pub routes_changed: usize,
    pub outcomes_changed: usize,
    /// Commands applied by both replays.
    pub commands: usize,
    pub by_process: BTreeMap<String, ProcessWhatIf>,
    /// Per `process.step`.
    pub by_step: BTreeMap<String, StepWhatIf>,
    /// The first 100 divergences: case, and the action that no longer applied.
    pub divergences: Vec<String>,
}

/// Compares the baseline and candidate replays of `cases`.
pub fn what_if(cases: &[ClosedCase], models: &Models, in_force: &RuleSet, candidate: &RuleSet) -> WhatIfReport {
    let mut report = WhatIfReport::default();
    for case in cases {
        report.cases += 1;
        let process = report.by_process.entry(case.root.process.clone()).or_default();
        process.cases += 1;
        let before = replay(case, models, in_force, false);
        report.commands += before.commands;
        if before.diverged.is_some() {
            report.not_replayable += 1;
            continue;
        }
        let after = replay(case, models, candidate, true);
        report.commands += after.commands;
        let (b, a) = (facts(&before), facts(&after));
        // Who really had each task: the recorded history, on the versions the case ran on.
        let ran_on: Vec<&Process> =
            case.family.iter().filter_map(|inst| models.get(&inst.process, inst.version, false)).collect();
        let real = (ran_on.len() == case.family.len()).then(|| facts_of(&case.entries, &case.family, &ran_on));
        if let Some(why) = &after.diverged {
            report.diverged += 1;
            process.diverged += 1;
            if report.divergences.len() < 100 {
                report.divergences.push(format!("case {}: {why}", case.root.business_key));
            }
        } else {
            report.replayed += 1;
        }
        if a.route != b.route {
            report.routes_changed += 1;
            process.routes_changed += 1;
        }
        if a.outcome != b.outcome && after.diverged.is_none() {
            report.outcomes_changed += 1;
            process.outcomes_changed += 1;
        }
        let steps: std::collections::BTreeSet<&String> = b.steps.keys().chain(a.steps.keys()).collect();
        for step in steps {
            let (sb, sa) = (b.steps.get(step), a.steps.get(step));
            let w = report.by_step.entry(step.clone()).or_default();
            let empty = StepFacts::default();
            let (sb, sa) = (sb.unwrap_or(&empty), sa.unwrap_or(&empty));
            w.tasks_before += sb.assignees.len();
            w.tasks_after += sa.assignees.len();
            w.deadlines_before += sb.with_deadline;
            w.met_before += sb.with_deadline.saturating_sub(sb.missed);
            w.deadlines_after += sa.with_deadline;
            w.met_after += sa.with_deadline.saturating_sub(sa.missed);
            let really = real.as_ref().and_then(|r| r.steps.get(step)).map_or(&empty, |r| r);
            for ((simulated, had), candidate) in sb.assignees.iter().zip(&really.assignees).zip(&sa.assignees) {
                if simulated != had {
                    w.assignees_not_comparable += 1;
                } else if candidate != had {
                    w.assignees_changed += 1;
                }
            }
            if sb.decisions != sa.decisions {
                w.decisions_changed += 1;
            }
        }
    }
    report
}

impl<S: Storage> Engine<S> {
    /// The closed cases (completed or cancelled, not sub-process cases themselves) started in
    /// `[from, to)`, each with its family's history.
    pub fn closed_cases(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<ClosedCase>, EngineError> {
        let mut out = Vec::new();
        for (process, _) in self.definitions() {
            for status in [StatusKind::Completed, StatusKind::Cancelled] {
                let mut after = None;
                loop {
                    let ids = self.instances_after(&process, status.as_str(), after, 512)?;
                    let Some(last) = ids.last().copied() else { break };
                    after = Some(last);
                    for id in ids {
                        let Some(root) = self.instance(id)? else { continue };
                        let in_period =
                            from.is_none_or(|f| root.started_at >= f) && to.is_none_or(|t| root.started_at < t);
                        if root.parent.is_some() || !in_period {
                            continue;
                        }
                        let mut family = Vec::new();
                        let entries = crate::scenario::family_history(self, root.clone(), &mut family)?;
                        out.push(ClosedCase { root, family, entries });
                    }
                }
            }
        }
        out.sort_by_key(|c| c.root.id);
        Ok(out)
    }

    /// The deployed models, every version, for replays.
    pub fn deployed_models(&self) -> Models {
        let mut models = Models::default();
        for (process, versions) in self.definitions() {
            for v in versions {
                if let Some(d) = self.definition(&process, Some(v)) {
                    models.deployed.insert((process.clone(), v), d.model.clone());
                }
            }
        }
        models
    }
}
