//! Moving a running case from one version of its process to another (pure: the engine reads
//! the cases and writes what comes back).
//!
//! Each place the case is at (a token's step, a join's arrivals, a group of `for each` tasks)
//! goes to a step of the new version: the one the migration's mapping names, else the one
//! declared `renamed from` it, else the one of the same name.
//! - At a step of the same name or `renamed from` it, the work **stays**: the open task keeps
//!   its number, assignee and opening time; its deadline, escalations and reminders are
//!   computed again from the new step's clauses when those changed; a wait keeps its timers
//!   unless its condition changed (then they are computed again from when it was entered).
//! - Mapped to another step, the old work **closes** and the new step is **entered** afresh
//!   (a task opens and is assigned as the new step says).
//! - A case **cannot move**, and is left on its version, when a place has no step to go to,
//!   when staying would change what it waits for (a task where the new version waits), when a
//!   field the new version requires has no value and no default, when a `for each` group
//!   would have to move to another step, or when a suspended case would have to enter one.

use crate::case::fields::conform;
use crate::case::run::Run;
use crate::case::{
    invariants, Actor, Context, Effect, HistoryEntry, HistoryEvent, Instance, Status, Task, TimerKind, Waiting,
    REMINDERS_MAX,
};
use crate::value::Value;
use caseflow_dsl::model::{Process, StepId, StepKind};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// Where a migration sends each old step: `mapping` first (old name → new name), then
/// `renamed from`, then the same name.
pub fn target(from_name: &str, to: &Process, mapping: &BTreeMap<String, String>) -> Option<StepId> {
    if let Some(mapped) = mapping.get(from_name) {
        return to.step_named(mapped).map(|s| s.id);
    }
    to.steps
        .iter()
        .find(|s| s.renamed_from.as_deref() == Some(from_name))
        .or_else(|| to.step_named(from_name))
        .map(|s| s.id)
}

/// What moving one case does.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CasePlan {
    /// Each place of the case: the old step and the new one.
    pub moves: Vec<StepMove>,
    /// Open tasks that stay (their ids), now at their new step.
    pub tasks_kept: Vec<String>,
    /// Open tasks closed because their step is mapped to another one.
    pub tasks_closed: Vec<String>,
    /// Tasks opened at the steps entered afresh (`step` for `assignee`).
    pub tasks_opened: Vec<String>,
    /// Deadlines computed again: task, old due time, new due time.
    pub deadlines: Vec<DeadlineChange>,
    /// Fields the new version adds, given their default.
    pub fields_defaulted: Vec<String>,
    /// Fields the new version no longer declares: their values are dropped.
    pub fields_dropped: Vec<String>,
    /// Where the case is once moved, incidents included.
    pub landing: Landing,
}

/// Where a moved case ends up: what a dry run must say before anything moves.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Landing {
    /// `running`, `suspended` or `incident`.
    pub status: String,
    /// Each place with work, `step (task|wait|call|incident)`, sorted.
    pub at: Vec<String>,
    /// At an incident: the step and why (an automatic step entered afresh that cannot run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
}

impl Landing {
    pub fn of(model: &Process, inst: &Instance) -> Landing {
        let mut at: Vec<String> = inst
            .tokens
            .values()
            .map(|t| {
                let what = match t.waiting {
                    Waiting::Task(_) => "task",
                    Waiting::Wait => "wait",
                    Waiting::Child => "call",
                    Waiting::Incident => "incident",
                };
                let name = model.steps.get(t.step.index()).map_or("?", |s| s.name.as_str());
                format!("{name} ({what})")
            })
            .collect();
        at.sort();
        let incident = match &inst.status {
            Status::Incident { step, reason } => Some(format!("`{step}`: {reason}")),
            _ => None,
        };
        Landing { status: inst.status.name().to_string(), at, incident }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepMove {
    pub from: String,
    pub to: String,
    /// `stays` (same step, renamed or not) or `entered` (mapped to another step).
    pub how: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadlineChange {
    pub task: String,
    pub step: String,
    pub old: Option<DateTime<Utc>>,
    pub new: Option<DateTime<Utc>>,
}

/// A migrated case, its history entries and what was done; or why it cannot move.
pub struct Migrated {
    pub instance: Instance,
    pub history: Vec<HistoryEntry>,
    /// What the shell does after the write (tasks opened, sub-processes started, …).
    pub effects: Vec<Effect>,
    pub plan: CasePlan,
}

/// Moves `inst` (of version `from`) to `ctx.model`, numbered `to_version`, at the request of
/// `by` (named on the `migrated` history entry). Changes nothing on refusal: the reasons come
/// back, each a sentence for the process owner.
///
/// In phases: where each place of the case goes (`Migration::places`), every reason it cannot
/// move (`Migration::refusals`), the case as the new version sees it (`Migration::translated`),
/// then, on that case, the `migrated` entry and new fields' defaults, the work that stays timed
/// again (`retime_stays`) and the steps mapped to entered afresh (`enter_mapped`).
pub fn migrate(
    ctx: &Context,
    from: &Process,
    inst: &Instance,
    to_version: u32,
    mapping: &BTreeMap<String, String>,
    by: &Actor,
) -> Result<Migrated, Vec<String>> {
    if inst.status.is_ended() {
        return Err(vec![format!("the case has ended ({})", inst.status.name())]);
    }
    let m = Migration { from, to: ctx.model, inst, to_version, mapping };
    let mut plan = CasePlan::default();
    let (places, mut reasons) = m.places(&mut plan);
    reasons.extend(m.refusals());
    if !reasons.is_empty() {
        reasons.sort();
        reasons.dedup();
        return Err(reasons);
    }
    let moved = m.translated(&places.stay, &mut plan);
    let mut run = Run::new(ctx, &moved, by);
    run.record(
        HistoryEvent::Migrated,
        None,
        format!(
            "version {} to {to_version}: {}",
            inst.version,
            plan.moves.iter().map(|m| format!("{} -> {} ({})", m.from, m.to, m.how)).collect::<Vec<_>>().join(", ")
        ),
    );
    default_new_fields(&mut run, &mut plan)?;
    m.retime_stays(&mut run, &places.stay, &mut plan)?;
    m.enter_mapped(&mut run, &places.enter, &mut plan)?;
    if let Err(broken) = invariants(m.to, &run.inst) {
        return Err(vec![format!("the moved case would be inconsistent ({broken}): map its steps differently")]);
    }
    plan.landing = Landing::of(m.to, &run.inst);
    run.inst.updated_at = ctx.now;
    let mut effects = run.effects;
    effects
        .extend(run.round_robin.into_inner().into_iter().map(|(role, count)| Effect::RoundRobinTaken { role, count }));
    Ok(Migrated { instance: run.inst, history: run.history, effects, plan })
}

/// One case's move between two versions, as asked.
struct Migration<'a> {
    from: &'a Process,
    to: &'a Process,
    inst: &'a Instance,
    to_version: u32,
    mapping: &'a BTreeMap<String, String>,
}

/// Where the case's tokens go: those whose work stays at a step (same, or renamed), and those
/// that enter a step afresh (mapped elsewhere). Each `(token, new step)`.
struct Places {
    stay: Vec<(u32, StepId)>,
    enter: Vec<(u32, StepId)>,
}

impl Migration<'_> {
    /// An old step's name, where it goes, and whether its work stays there.
    fn place(&self, id: StepId) -> (String, Option<StepId>, bool) {
        let name = self.from.steps.get(id.index()).map(|s| s.name.clone()).unwrap_or_default();
        let t = target(&name, self.to, self.mapping);
        let stays = t.is_some_and(|t| {
            let new = self.to.step(t);
            !self.mapping.contains_key(&name) || new.name == name || new.renamed_from.as_deref() == Some(name.as_str())
        });
        (name, t, stays)
    }

    /// Where each token goes, and why some cannot (a place with no step, a task where a wait
    /// is, work that can only stay, a case on hold that would enter a step).
    fn places(&self, plan: &mut CasePlan) -> (Places, Vec<String>) {
        let (from, to, to_version) = (self.from, self.to, self.to_version);
        let kind = |p: &Process, id: StepId| p.step(id).kind.keyword_name();
        let mut reasons = Vec::new();
        let mut places = Places { stay: Vec::new(), enter: Vec::new() };
        for (id, tok) in &self.inst.tokens {
            let (name, t, stays) = self.place(tok.step);
            let Some(t) = t else {
                reasons.push(format!(
                    "it waits at `{name}`, which version {to_version} does not have: map `{name}` to one of its steps"
                ));
                continue;
            };
            let new = to.step(t);
            if stays || tok.waiting == Waiting::Incident {
                let fits = match (&tok.waiting, &new.kind) {
                    (Waiting::Task(_), StepKind::Task(def)) => {
                        let old_each = matches!(&from.step(tok.step).kind, StepKind::Task(d) if d.each.is_some());
                        old_each == def.each.is_some()
                    }
                    (Waiting::Wait, StepKind::Wait(_)) => true,
                    (Waiting::Child, StepKind::Call(c)) => {
                        matches!(&from.step(tok.step).kind, StepKind::Call(o) if o.process == c.process)
                    }
                    (Waiting::Incident, _) => true,
                    _ => false,
                };
                if !fits {
                    reasons.push(format!(
                        "it waits at `{name}` ({}), and `{}` is a {} in version {to_version}: map `{name}` to a step to enter instead",
                        kind(from, tok.step),
                        new.name,
                        kind(to, t)
                    ));
                    continue;
                }
                places.stay.push((*id, t));
                plan.moves.push(StepMove { from: name, to: new.name.clone(), how: "stays" });
            } else {
                let why = if tok.group.is_some() {
                    Some(format!("`{name}` has a task for each item under way: it can only stay at a step of its name"))
                } else if matches!(tok.waiting, Waiting::Child) {
                    Some(format!("`{name}` waits for a sub-process case: it can only stay at a `call` of its name"))
                } else if !matches!(self.inst.status, Status::Running) {
                    // A case on hold enters no step: nothing would open until it runs again.
                    Some(format!(
                        "`{name}` would enter `{}`, and the case is {}: resume it first",
                        new.name,
                        self.inst.status.name()
                    ))
                } else {
                    None
                };
                if let Some(why) = why {
                    reasons.push(why);
                    continue;
                }
                places.enter.push((*id, t));
                plan.moves.push(StepMove { from: name, to: new.name.clone(), how: "entered" });
            }
        }
        (places, reasons)
    }

    /// Why the case as a whole cannot move: joins, fields, values, parallel splits.
    fn refusals(&self) -> Vec<String> {
        let (to, inst, to_version) = (self.to, self.inst, self.to_version);
        let mut reasons = Vec::new();
        // Joins that branches have reached must be joins in the new version too.
        for join in inst.join_arrivals.keys().chain(inst.join_expected.keys()) {
            let (name, t, _) = self.place(*join);
            if !t.is_some_and(|t| matches!(to.step(t).kind, StepKind::Join { .. })) {
                reasons
                    .push(format!("branches have reached the join `{name}`, which is no join in version {to_version}"));
            }
        }
        // Fields the new version requires.
        for f in &to.fields {
            if f.required && f.default.is_none() && !inst.fields.contains_key(&f.name) {
                reasons.push(format!(
                    "version {to_version} requires the field `{}`, which the case has no value for: give it a default",
                    f.name
                ));
            }
        }
        // Values the case holds must be values the new version allows (a choice it dropped
        // would leave, say, a deadline looked up by that value with nothing to find).
        for (name, value) in &inst.fields {
            if let Some(f) = to.field(name) {
                if let Err(problem) = conform(&f.ty, value) {
                    reasons.push(format!(
                        "its field `{name}` holds {value}, which version {to_version} does not allow ({problem}): \
                         update the field first, or keep the value in version {to_version}"
                    ));
                }
            }
        }
        reasons.extend(split_reasons(self.from, to, inst, to_version, &|id| self.place(id)));
        reasons
    }

    /// The case as the new version sees it: every step id translated, the work that stays at
    /// its new step, fields the new version no longer declares dropped.
    fn translated(&self, stay: &[(u32, StepId)], plan: &mut CasePlan) -> Instance {
        let (from, to, inst) = (self.from, self.to, self.inst);
        let remap = |id: StepId| self.place(id).1;
        let mut moved = inst.clone();
        moved.version = self.to_version;
        moved.join_arrivals = inst.join_arrivals.iter().filter_map(|(k, v)| Some((remap(*k)?, *v))).collect();
        moved.join_expected = inst.join_expected.iter().filter_map(|(k, v)| Some((remap(*k)?, *v))).collect();
        moved.cycle_anchors = inst.cycle_anchors.iter().filter_map(|(k, v)| Some((remap(*k)?, *v))).collect();
        moved.done_by = inst.done_by.iter().filter_map(|(k, v)| Some((remap(*k)?, v.clone()))).collect();
        for g in moved.each_groups.values_mut() {
            if let Some(t) = remap(g.step) {
                g.step = t;
            }
        }
        for (id, t) in stay {
            if let Some(tok) = moved.tokens.get_mut(id) {
                tok.step = *t;
            }
        }
        for task in moved.tasks.values_mut() {
            if let Some(&(_, t)) = stay.iter().find(|(id, _)| *id == task.token) {
                let new = to.step(t);
                task.step = t;
                task.step_name = new.name.clone();
                task.name = new.display_name().to_string();
            }
        }
        if let Status::Incident { step, reason } = &inst.status {
            let new_step = from.step_named(step).and_then(|s| remap(s.id)).map(|t| to.step(t).name.clone());
            moved.status = Status::Incident { step: new_step.unwrap_or_else(|| step.clone()), reason: reason.clone() };
        }
        plan.fields_dropped = inst.fields.keys().filter(|k| to.field(k).is_none()).cloned().collect();
        for k in &plan.fields_dropped {
            moved.fields.remove(k);
        }
        moved
    }

    /// Work that stays: its timers again where the new step's clauses changed.
    fn retime_stays(&self, run: &mut Run, stay: &[(u32, StepId)], plan: &mut CasePlan) -> Result<(), Vec<String>> {
        let inst = self.inst;
        for (token, t) in stay {
            let (old_step, new_step) = (self.from.step(inst.tokens[token].step), self.to.step(*t));
            match (&inst.tokens[token].waiting, &old_step.kind, &new_step.kind) {
                (Waiting::Task(seq), StepKind::Task(old), StepKind::Task(new)) => {
                    let Some(task) = run.inst.tasks.get(seq).cloned() else { continue };
                    plan.tasks_kept.push(run.inst.task_id(*seq).to_string());
                    let same = same_shape(
                        &(&old.due, &old.remind_every, &old.handlers),
                        &(&new.due, &new.remind_every, &new.handlers),
                    );
                    if !same {
                        plan.deadlines.extend(retime_task(run, &task, new));
                    }
                }
                (Waiting::Wait, StepKind::Wait(old), StepKind::Wait(new)) if !same_shape(old, new) => {
                    let since = inst.tokens[token].entered_at;
                    run.cancel_token_timers(*token);
                    if let Err(e) = run.arm_wait(*token, *t, new, since) {
                        return Err(vec![format!("the wait `{}` cannot be timed again: {e}", new_step.name)]);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Work mapped elsewhere: the old task closed (told as `task_closed`), the new step
    /// entered afresh.
    fn enter_mapped(&self, run: &mut Run, enter: &[(u32, StepId)], plan: &mut CasePlan) -> Result<(), Vec<String>> {
        let inst = self.inst;
        for (token, t) in enter {
            if let Waiting::Task(seq) = inst.tokens[token].waiting {
                let task_id = run.inst.task_id(seq).to_string();
                // Told as its own event, so that a client mirroring inboxes drops the task.
                let old_step = self.from.step(inst.tokens[token].step).name.clone();
                let entry = run.record(
                    HistoryEvent::TaskClosed,
                    None,
                    format!("task {task_id}: its step is mapped to `{}`", self.to.step(*t).name),
                );
                entry.step = Some(old_step);
                entry.task = Some(seq);
                plan.tasks_closed.push(task_id);
                run.close_task(seq, "migrated");
            }
            run.cancel_token_timers(*token);
            let opened_before = run.inst.next_seq;
            if let Err(e) = run.enter(*token, *t) {
                return Err(vec![format!("entering `{}` fails: {e}", self.to.step(*t).name)]);
            }
            plan.tasks_opened.extend(
                run.inst
                    .tasks
                    .values()
                    .filter(|k| k.seq >= opened_before)
                    .map(|k| format!("{} for {}", k.step_name, k.assignee.as_deref().unwrap_or("(unassigned)"))),
            );
        }
        Ok(())
    }
}

/// Fields the new version adds, given their default (recorded on the `migrated` entry).
fn default_new_fields(run: &mut Run, plan: &mut CasePlan) -> Result<(), Vec<String>> {
    let mut defaults = BTreeMap::new();
    for f in &run.ctx.model.fields {
        if let (Some(d), false) = (&f.default, run.inst.fields.contains_key(&f.name)) {
            match run.scope_eval(d) {
                Ok(v) => {
                    defaults.insert(f.name.clone(), v);
                }
                Err(e) => {
                    return Err(vec![format!("the default of the new field `{}` does not evaluate: {e}", f.name)])
                }
            }
        }
    }
    plan.fields_defaulted = defaults.keys().cloned().collect();
    if !defaults.is_empty() {
        let changes: Vec<(String, Option<Value>, Value)> =
            defaults.iter().map(|(k, v)| (k.clone(), None, v.clone())).collect();
        run.inst.fields.extend(defaults);
        if let Some(entry) = run.history.last_mut() {
            entry.changes = changes;
        }
    }
    Ok(())
}

/// A kept task's deadline and timers under its new step's clauses, from when it opened.
///
/// A task already overdue stays so and keeps the deadline it missed (what fired, the overdue
/// mark and its escalations, is history); of the new step's escalations, those still ahead of
/// now, timed from that deadline, are set. Reminders keep their rhythm from when the task
/// opened: the next one is the first of `opened + k × interval` after now.
fn retime_task(run: &mut Run, task: &Task, def: &caseflow_dsl::model::Task) -> Option<DeadlineChange> {
    let seq = task.seq;
    run.cancel_timers(|k| {
        !matches!(k, TimerKind::Due { task } | TimerKind::Escalation { task, .. }
            | TimerKind::Threshold { task, .. } | TimerKind::Reminder { task, .. } if *task == seq)
    });
    let now = run.now();
    let due = match (task.overdue, task.due_at) {
        (true, Some(missed)) => {
            for (i, h) in def.handlers.iter().enumerate() {
                if let caseflow_dsl::model::Trigger::Overdue { after: Some(delay) } = &h.trigger {
                    if let Ok(at) = run.instant_of(delay, missed) {
                        if at > now {
                            run.set_timer(at, TimerKind::Escalation { task: seq, handler: i });
                        }
                    }
                }
            }
            Some(missed)
        }
        _ => {
            let due = def.due.as_ref().and_then(|e| run.instant_of(e, task.opened_at).ok());
            if let Some(t) = run.inst.tasks.get_mut(&seq) {
                t.due_at = due;
            }
            if let Some(d) = due {
                let _ = run.schedule_deadline(seq, def, task.opened_at, d);
            }
            due
        }
    };
    if let Some(every) = &def.remind_every {
        if let Ok(span) = run.span_of(every) {
            let calendar = &run.ctx.rules.calendar;
            let mut at = calendar.add(task.opened_at, span).ok();
            let mut steps = 0;
            while let Some(t) = at.filter(|t| *t <= now && steps < REMINDERS_MAX) {
                at = calendar.add(t, span).ok();
                steps += 1;
            }
            if let Some(at) = at.filter(|t| *t > now) {
                run.set_timer(at, TimerKind::Reminder { task: seq, every: span });
            }
        }
    }
    (due != task.due_at).then(|| DeadlineChange {
        task: run.inst.task_id(seq).to_string(),
        step: task.step_name.clone(),
        old: task.due_at,
        new: due,
    })
}

/// Two parts of a model alike but for where they are written (spans).
fn same_shape<T: Serialize>(a: &T, b: &T) -> bool {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("span");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let (mut a, mut b) = (serde_json::to_value(a).unwrap_or_default(), serde_json::to_value(b).unwrap_or_default());
    strip(&mut a);
    strip(&mut b);
    a == b
}

/// Why a case cannot move because of the parallel splits it is inside (or would land inside):
/// a join counts the branches its split started, so the split must start as many branches in
/// both versions, and a place cannot land inside a split the case never entered (its join
/// would wait for branches that never started).
fn split_reasons(
    from: &Process,
    to: &Process,
    inst: &Instance,
    to_version: u32,
    place: &dyn Fn(StepId) -> (String, Option<StepId>, bool),
) -> Vec<String> {
    let mut reasons = Vec::new();
    let inside = |region: &[StepId], join: StepId| {
        inst.tokens.values().any(|t| region.contains(&t.step)) || inst.join_arrivals.contains_key(&join)
    };
    // The old splits the case is inside, and where each goes.
    let mut entered_splits: Vec<(StepId, Option<StepId>)> = Vec::new();
    for s in &from.steps {
        let StepKind::Split { branches, join, region, .. } = &s.kind else { continue };
        if !inside(region, *join) {
            continue;
        }
        let (name, t, _) = place(s.id);
        entered_splits.push((s.id, t));
        match t.map(|t| &to.step(t).kind) {
            Some(StepKind::Split { branches: now_branches, .. }) if now_branches.len() == branches.len() => {}
            Some(StepKind::Split { branches: now_branches, .. }) => reasons.push(format!(
                "it is inside the parallel split `{name}`, which starts {} branches in version {to_version} and \
                 started {} for this case: its join would wait for a branch that never started; \
                 migrate it once it has passed the join",
                now_branches.len(),
                branches.len()
            )),
            _ => reasons.push(format!(
                "it is inside the parallel split `{name}`, which is no split in version {to_version}: \
                 migrate it once it has passed the join"
            )),
        }
    }
    // Every branch of a split the case is inside stays inside that split (else its join would
    // wait for it for ever).
    for (old, new) in &entered_splits {
        let (StepKind::Split { region: old_region, .. }, Some(new)) = (&from.step(*old).kind, new) else { continue };
        let StepKind::Split { region: new_region, .. } = &to.step(*new).kind else { continue };
        for tok in inst.tokens.values().filter(|t| old_region.contains(&t.step)) {
            let (name, t, _) = place(tok.step);
            if let Some(t) = t.filter(|t| !new_region.contains(t)) {
                reasons.push(format!(
                    "`{name}` is a branch of the parallel split `{}` and would land at `{}`, outside it: \
                     its join would wait for it for ever; map `{name}` to a step inside the split",
                    from.step(*old).name,
                    to.step(t).name
                ));
            }
        }
    }
    // Every place landing inside a split of the new version comes from inside its old split.
    for tok in inst.tokens.values() {
        let (name, Some(t), _) = place(tok.step) else { continue };
        for s in &to.steps {
            let StepKind::Split { region, .. } = &s.kind else { continue };
            if !region.contains(&t) {
                continue;
            }
            let from_inside = entered_splits.iter().any(|(old, new)| {
                *new == Some(s.id)
                    && matches!(&from.step(*old).kind, StepKind::Split { region, .. } if region.contains(&tok.step))
            });
            if !from_inside {
                reasons.push(format!(
                    "`{name}` would land at `{}`, inside the parallel split `{}` of version {to_version}, \
                     without the split's other branches: map `{name}` to a step outside the split",
                    to.step(t).name,
                    s.name
                ));
            }
        }
    }
    reasons
}
