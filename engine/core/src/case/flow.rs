//! How tokens move through the graph: transitions and their conditions, entering a step
//! (tasks, waits, splits, joins, calls, ends), withdrawing branches, ending the case.

use crate::case::fields::conform;
use crate::case::invariants::join_needs;
use crate::case::run::Run;
use crate::case::{
    CommandError, EachGroup, Effect, HistoryEvent, InstanceId, Status, Task, TimerKind, Token, Waiting,
    STEPS_PER_COMMAND_MAX, TOKENS_MAX,
};
use crate::eval::{truth, EvalError};
use crate::value::Value;
use caseflow_dsl::model::{self, Assignee, AutoAction, StepId, StepKind, Transition, WaitCondition};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

impl Run<'_> {
    /// Picks the next step of a transition.
    pub(crate) fn choose(&self, t: &Transition) -> Result<StepId, EvalError> {
        self.choose_branch(t).map(|(target, _)| target)
    }

    /// The chosen step and, for a decision, which arm chose it (1-based; 0 for `else`).
    pub(crate) fn choose_branch(&self, t: &Transition) -> Result<(StepId, Option<usize>), EvalError> {
        match t {
            Transition::To(s) => Ok((*s, None)),
            Transition::Decide { branches, otherwise } => {
                for (i, (cond, target)) in branches.iter().enumerate() {
                    if truth(&self.scope_eval(cond)?)? {
                        return Ok((*target, Some(i + 1)));
                    }
                }
                otherwise
                    .map(|o| (o, Some(0)))
                    .ok_or_else(|| EvalError::Type("no branch of the decision matched".into()))
            }
        }
    }

    /// Leaves `from` along `t` and enters the chosen step. Decisions are recorded with the arm
    /// taken, so the history explains why a case went where it went.
    pub(crate) fn follow(&mut self, token: u32, from: StepId, t: &Transition) -> Result<(), CommandError> {
        match self.choose_branch(t) {
            Ok((next, arm)) => {
                if let Some(arm) = arm {
                    let target = self.step(next).name.clone();
                    let detail =
                        if arm == 0 { format!("else -> {target}") } else { format!("branch {arm} -> {target}") };
                    self.record(HistoryEvent::Decided, Some(from), detail);
                }
                self.enter(token, next)
            }
            Err(e) => {
                self.park(token, from, e);
                Ok(())
            }
        }
    }

    /// The timers of a token waiting at a wait step entered at `since`: its `for`, `until` or
    /// `every`, and its `on timeout`.
    pub(crate) fn arm_wait(
        &mut self,
        token: u32,
        step_id: StepId,
        w: &model::Wait,
        since: DateTime<Utc>,
    ) -> Result<(), EvalError> {
        let timer = match &w.condition {
            None => None,
            Some(WaitCondition::For(e)) => Some(self.instant_of(e, since)?),
            Some(WaitCondition::Until(e)) => Some(self.instant_of(e, since)?),
            Some(WaitCondition::Every(e)) => Some(self.next_cycle(step_id, e)?),
        };
        if let Some(at) = timer {
            self.set_timer(at, TimerKind::Wait { token });
        }
        if let Some((e, _)) = &w.on_timeout {
            let at = self.instant_of(e, since)?;
            self.set_timer(at, TimerKind::Timeout { token });
        }
        Ok(())
    }

    /// Puts a token in the incident state at `step`.
    pub(crate) fn park(&mut self, token: u32, step: StepId, e: EvalError) {
        if let Some(t) = self.inst.tokens.get_mut(&token) {
            t.step = step;
            t.waiting = Waiting::Incident;
        }
        let name = self.step(step).name.clone();
        self.inst.status = Status::Incident { step: name, reason: e.to_string() };
        self.record(HistoryEvent::Incident, Some(step), e.to_string());
    }

    // One piece (over 100 lines): one match over the step kinds, what entering each one does.
    pub(crate) fn enter(&mut self, token: u32, step_id: StepId) -> Result<(), CommandError> {
        self.steps_run += 1;
        if self.steps_run > STEPS_PER_COMMAND_MAX {
            return Err(CommandError::Runaway);
        }
        if !matches!(self.inst.status, Status::Running) {
            // A cancellation or incident earlier in this command stops the walk.
            return Ok(());
        }
        let now = self.now();
        // An instance of a task `for each` item keeps its group and item when entered again
        // (a retry); any other token enters afresh.
        let (group, item) = match self.inst.tokens.get(&token) {
            Some(t) if t.step == step_id && t.group.is_some() => (t.group, t.item.clone()),
            _ => (None, None),
        };
        let entered = Token { step: step_id, entered_at: now, waiting: Waiting::Wait, group, item };
        self.inst.tokens.insert(token, entered);
        let step = self.step(step_id).clone();
        match &step.kind {
            StepKind::Task(def) if def.each.is_some() && group.is_none() => self.open_each(token, &step, def),
            StepKind::Task(def) => match self.open_new_task(token, &step, def) {
                Ok(()) => self.deliver_kept(token, step_id),
                Err(e) => {
                    self.park(token, step_id, e);
                    Ok(())
                }
            },
            StepKind::Auto { actions, next } => {
                for action in actions {
                    if let Err(e) = self.auto_action(step_id, action) {
                        self.park(token, step_id, e);
                        return Ok(());
                    }
                }
                self.follow(token, step_id, next)
            }
            StepKind::Wait(w) => {
                self.record(HistoryEvent::Waiting, Some(step_id), "");
                if let Err(e) = self.arm_wait(token, step_id, w, now) {
                    self.park(token, step_id, e);
                    return Ok(());
                }
                self.deliver_kept(token, step_id)
            }
            StepKind::Split { branches, join, guards, .. } => {
                // A branch with a condition starts only if it holds (multi-choice); the join
                // then waits for the branches started.
                let mut started = Vec::with_capacity(branches.len());
                for (b, guard) in branches.iter().zip(guards) {
                    let go = match guard {
                        None => Ok(true),
                        Some(g) => self.scope_eval(g).and_then(|v| truth(&v)),
                    };
                    match go {
                        Ok(true) => started.push(*b),
                        Ok(false) => {}
                        Err(e) => {
                            self.park(token, step_id, e);
                            return Ok(());
                        }
                    }
                }
                let names: Vec<&str> = started.iter().map(|b| self.step(*b).name.as_str()).collect();
                let detail = if guards.iter().any(Option::is_some) { names.join(", ") } else { String::new() };
                self.record(HistoryEvent::Split, Some(step_id), detail);
                if started.is_empty() {
                    // No condition held: nothing to wait for, go on past the join.
                    let StepKind::Join { next, .. } = &self.step(*join).kind else { unreachable!("checked") };
                    let next = next.clone();
                    self.record(HistoryEvent::Joined, Some(*join), "no branch started");
                    return self.follow(token, *join, &next);
                }
                self.inst.tokens.remove(&token);
                if self.inst.tokens.len() + started.len() > TOKENS_MAX {
                    self.park(token, step_id, EvalError::Type(format!("more than {TOKENS_MAX} parallel branches")));
                    return Ok(());
                }
                if started.len() < branches.len() {
                    self.inst.join_expected.insert(*join, started.len() as u32);
                }
                for b in started {
                    let t = self.seq();
                    self.enter(t, b)?;
                }
                Ok(())
            }
            StepKind::Join { split, next, quorum } => {
                let needed = join_needs(self.ctx.model, &self.inst, step_id).unwrap_or(1);
                let arrived = self.inst.join_arrivals.entry(step_id).or_insert(0);
                *arrived += 1;
                let arrived = *arrived;
                if arrived < needed {
                    self.inst.tokens.remove(&token);
                    return Ok(());
                }
                self.inst.join_arrivals.remove(&step_id);
                self.inst.join_expected.remove(&step_id);
                let mut detail = String::new();
                if quorum.is_some() {
                    let StepKind::Split { region, .. } = &self.step(*split).kind else { unreachable!("checked") };
                    let withdrawn = self.withdraw(token, &region.clone());
                    detail = format!("{arrived} arrived");
                    if !withdrawn.is_empty() {
                        detail.push_str(&format!("; withdrew {}", withdrawn.join(", ")));
                    }
                }
                self.record(HistoryEvent::Joined, Some(step_id), detail);
                self.follow(token, step_id, next)
            }
            StepKind::Call(call) => {
                let mut fields = BTreeMap::new();
                for (child_field, e) in &call.inputs {
                    match self.scope_eval(e) {
                        Ok(v) => {
                            fields.insert(child_field.clone(), v);
                        }
                        Err(e) => {
                            self.park(token, step_id, e);
                            return Ok(());
                        }
                    }
                }
                if let Some(t) = self.inst.tokens.get_mut(&token) {
                    t.waiting = Waiting::Child;
                }
                self.record(HistoryEvent::SubProcessStarted, Some(step_id), call.process.clone());
                self.effects.push(Effect::StartChild { token, process: call.process.clone(), fields });
                Ok(())
            }
            StepKind::End => {
                // An `end` ends the case, also from inside parallel branches: the other
                // branches' work is cancelled (a join waiting for them would wait forever).
                self.inst.tokens.remove(&token);
                self.record(HistoryEvent::ReachedEnd, Some(step_id), step.display_name().to_string());
                let others: Vec<String> = self.inst.tokens.values().map(|t| self.step(t.step).name.clone()).collect();
                if !others.is_empty() {
                    self.record(HistoryEvent::BranchesCancelled, Some(step_id), others.join(", "));
                }
                self.end(Status::Completed { outcome: step.name.clone() });
                Ok(())
            }
        }
    }

    /// After a command's walk: nothing to do today but keep the invariants checkable.
    pub(crate) fn settle(&mut self) -> Result<(), CommandError> {
        debug_assert!(self.inst.tasks.values().all(|t| self
            .inst
            .tokens
            .get(&t.token)
            .is_some_and(|k| k.waiting == Waiting::Task(t.seq))));
        Ok(())
    }

    pub(crate) fn next_cycle(
        &mut self,
        step: StepId,
        period: &caseflow_dsl::ast::Expr,
    ) -> Result<DateTime<Utc>, EvalError> {
        let span = self.span_of(period)?;
        let anchor = *self.inst.cycle_anchors.entry(step).or_insert(self.ctx.now);
        let mut t = anchor;
        // Fixed rate: the first tick after now, counted from the anchor.
        for _ in 0..100_000 {
            t = self.ctx.rules.calendar.add(t, span)?;
            if t > self.ctx.now {
                return Ok(t);
            }
        }
        Err(EvalError::Type("the cycle period is too short".into()))
    }

    pub(crate) fn auto_action(&mut self, step: StepId, action: &AutoAction) -> Result<(), EvalError> {
        match action {
            AutoAction::Set { field, value } => {
                let v = self.scope_eval(value)?;
                let ty = &self.ctx.model.field(field).expect("checked").ty;
                let v = conform(ty, &v).map_err(|p| EvalError::Type(format!("field `{field}`: {p}")))?;
                let mut changes = BTreeMap::new();
                changes.insert(field.clone(), v);
                self.set_fields(changes, HistoryEvent::FieldsSet, Some(step));
                Ok(())
            }
            AutoAction::Lookup { table, inputs, outputs } => {
                let (row, changes) = self.lookup(table, inputs, outputs)?;
                let t = &self.ctx.rules.tables[table];
                self.set_fields(changes, HistoryEvent::DecisionTable, Some(step));
                if let Some(e) = self.history.last_mut() {
                    e.detail = format!("{table} row {row} (line {})", t.rows[row].line);
                }
                Ok(())
            }
        }
    }

    /// What a `lookup` gives for the case as it is: the row that matched and the fields it
    /// sets, conformed to their types.
    pub(crate) fn lookup(
        &self,
        table: &str,
        inputs: &[(String, caseflow_dsl::ast::Expr)],
        outputs: &[(String, String)],
    ) -> Result<(usize, BTreeMap<String, Value>), EvalError> {
        let t =
            self.ctx.rules.tables.get(table).ok_or(EvalError::MissingRule { name: table.to_string(), key: None })?;
        let mut args = Vec::with_capacity(t.inputs.len());
        for input in &t.inputs {
            let v = match inputs.iter().find(|(n, _)| n == input) {
                Some((_, e)) => self.scope_eval(e)?,
                None => return Err(EvalError::Type(format!("table `{table}` needs input `{input}`"))),
            };
            args.push(v);
        }
        let hits = t.evaluate(&args).map_err(|e| EvalError::Type(e.to_string()))?;
        let Some(&row) = hits.0.first() else {
            return Err(EvalError::Type(format!("no row of table `{table}` matched")));
        };
        let mut changes = BTreeMap::new();
        for (field, column) in outputs {
            let i = t
                .outputs
                .iter()
                .position(|o| o == column)
                .ok_or(EvalError::Type(format!("table `{table}` has no output `{column}`")))?;
            let ty = &self.ctx.model.field(field).expect("checked").ty;
            let v =
                conform(ty, &t.rows[row].outputs[i]).map_err(|p| EvalError::Type(format!("field `{field}`: {p}")))?;
            changes.insert(field.clone(), v);
        }
        Ok((row, changes))
    }

    /// Enters a task `for each` item: one instance (token and task) per item, or the first
    /// one only when one at a time. No item: the step is done at once.
    pub(crate) fn open_each(&mut self, token: u32, step: &model::Step, def: &model::Task) -> Result<(), CommandError> {
        let each = def.each.as_ref().expect("open_each is for tasks for each item");
        let items = match self.scope_eval(&each.list) {
            Ok(Value::List(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::Text(t) => t,
                    other => other.to_string(),
                })
                .collect::<Vec<_>>(),
            Ok(other) => {
                self.park(
                    token,
                    step.id,
                    EvalError::Type(format!("`for each` needs a list, found {}", other.type_name())),
                );
                return Ok(());
            }
            Err(e) => {
                self.park(token, step.id, e);
                return Ok(());
            }
        };
        if items.is_empty() {
            self.record(HistoryEvent::InstancesOpened, Some(step.id), "no item");
            return self.follow(token, step.id, &def.next.clone());
        }
        if self.inst.tokens.len() + items.len() > TOKENS_MAX {
            self.park(token, step.id, EvalError::Type(format!("more than {TOKENS_MAX} tasks at once")));
            return Ok(());
        }
        let needed = each.enough.map_or(items.len() as u32, |n| n.min(items.len() as u32));
        let opened = if each.in_turn { 1 } else { items.len() };
        self.inst.tokens.remove(&token);
        let group = self.seq();
        self.inst
            .each_groups
            .insert(group, EachGroup { step: step.id, items: items.clone(), next: opened, done: 0, needed });
        self.record(HistoryEvent::InstancesOpened, Some(step.id), format!("{} of {}", opened, items.len()));
        for item in items.into_iter().take(opened) {
            self.open_instance(group, step, def, item);
        }
        Ok(())
    }

    pub(crate) fn open_instance(&mut self, group: u32, step: &model::Step, def: &model::Task, item: String) {
        let token = self.seq();
        let t = Token {
            step: step.id,
            entered_at: self.now(),
            waiting: Waiting::Wait,
            group: Some(group),
            item: Some(item),
        };
        self.inst.tokens.insert(token, t);
        if let Err(e) = self.open_new_task(token, step, def) {
            self.park(token, step.id, e);
        }
    }

    pub(crate) fn open_new_task(&mut self, token: u32, step: &model::Step, def: &model::Task) -> Result<(), EvalError> {
        let now = self.now();
        let due_at = def.due.as_ref().map(|e| self.instant_of(e, now)).transpose()?;
        let assignee = def.assign.as_ref().and_then(|a| self.assign(a, step.id, None));
        let mut candidates = def.candidates.clone();
        let role = match &def.assign {
            Some(Assignee::Role { role, .. }) => Some(role.clone()),
            Some(from @ Assignee::RoleFrom { .. }) => self.role_from(from),
            _ => None,
        };
        if let Some(role) = role.filter(|r| !candidates.contains(r)) {
            candidates.push(role);
        }
        let item = self.inst.tokens.get(&token).and_then(|t| t.item.clone());
        let seq = self.seq();
        let beyond_calendar = due_at.is_some_and(|d| self.ctx.rules.calendar.beyond_coverage(d));
        let task = Task {
            beyond_calendar,
            step_name: step.name.clone(),
            delegated_by: None,
            item,
            seq,
            token,
            step: step.id,
            name: step.display_name().to_string(),
            assignee: assignee.clone(),
            candidates,
            claimed: false,
            priority: 0,
            opened_at: now,
            due_at,
            overdue: false,
            reminders_sent: 0,
            started: None,
            draft: None,
        };
        self.inst.tasks.insert(seq, task);
        if let Some(t) = self.inst.tokens.get_mut(&token) {
            t.waiting = Waiting::Task(seq);
        }
        let task_id = self.inst.task_id(seq);
        self.effects.push(Effect::TaskOpened { task: task_id, assignee: assignee.clone() });
        self.record(
            HistoryEvent::TaskOpened,
            Some(step.id),
            format!("task {task_id} for {}", assignee.as_deref().unwrap_or("(unassigned)")),
        )
        .task = Some(seq);
        if let Some(due) = due_at {
            self.schedule_deadline(seq, def, now, due)?;
            if beyond_calendar {
                self.note_beyond_calendar(step.id, due);
            }
        }
        if let Some(every) = &def.remind_every {
            let span = self.span_of(every)?;
            let at = self.ctx.rules.calendar.add(now, span)?;
            self.set_timer(at, TimerKind::Reminder { task: seq, every: span });
        }
        Ok(())
    }

    pub(crate) fn close_task(&mut self, seq: u32, reason: &str) {
        if self.inst.tasks.remove(&seq).is_some() {
            self.cancel_timers(|k| match k {
                TimerKind::Due { task }
                | TimerKind::Escalation { task, .. }
                | TimerKind::Threshold { task, .. }
                | TimerKind::Reminder { task, .. } => *task != seq,
                _ => true,
            });
            let task_id = self.inst.task_id(seq);
            self.effects.push(Effect::TaskClosed { task: task_id, reason: reason.to_string() });
        }
    }

    /// Withdraws every token (but `keep`) on a step of `region`: their tasks closed, timers
    /// cancelled, sub-process cases cancelled, joins inside reset. Returns the steps they were at.
    pub(crate) fn withdraw(&mut self, keep: u32, region: &[StepId]) -> Vec<String> {
        let gone: Vec<(u32, Token)> = self
            .inst
            .tokens
            .iter()
            .filter(|(id, t)| **id != keep && region.binary_search(&t.step).is_ok())
            .map(|(id, t)| (*id, t.clone()))
            .collect();
        self.withdraw_tokens(gone, region)
    }

    pub(crate) fn withdraw_tokens(&mut self, gone: Vec<(u32, Token)>, region: &[StepId]) -> Vec<String> {
        let mut steps = Vec::new();
        let mut children = Vec::new();
        for (id, t) in gone {
            if let Some(g) = t.group {
                self.inst.each_groups.remove(&g);
            }
            if let Waiting::Task(seq) = t.waiting {
                self.close_task(seq, "branch withdrawn");
            }
            self.cancel_token_timers(id);
            children.extend(self.inst.children.remove(&id));
            self.inst.tokens.remove(&id);
            steps.push(self.step(t.step).name.clone());
        }
        for s in region {
            self.inst.join_arrivals.remove(s);
            self.inst.join_expected.remove(s);
        }
        if !children.is_empty() {
            self.effects.push(Effect::CancelChildren { children });
        }
        steps
    }

    pub(crate) fn end(&mut self, status: Status) {
        let open: Vec<u32> = self.inst.tasks.keys().copied().collect();
        let reason = match &status {
            Status::Cancelled { .. } => "case cancelled",
            _ => "case ended",
        };
        for seq in open {
            self.close_task(seq, reason);
        }
        self.cancel_timers(|_| false);
        let children: Vec<InstanceId> = std::mem::take(&mut self.inst.children).into_values().collect();
        if !children.is_empty() {
            self.effects.push(Effect::CancelChildren { children });
        }
        self.inst.tokens.clear();
        self.inst.join_arrivals.clear();
        self.inst.join_expected.clear();
        self.inst.each_groups.clear();
        self.inst.mailbox.clear();
        self.inst.status = status.clone();
        self.effects.push(Effect::Ended { status });
    }
}
