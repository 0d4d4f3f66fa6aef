//! A command in progress: the case being changed, the effects and history it produces, and
//! the helpers every command handler uses.

use crate::case::{Actor, CommandError, Context, Effect, HistoryEntry, HistoryEvent, Instance, Task};
use crate::duration::Span;
use crate::eval::{eval, EvalError, Scope};
use crate::value::Value;
use caseflow_dsl::model::{self, StepId};
use chrono::{DateTime, Utc};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// One command being applied to a copy of the case.
pub(crate) struct Run<'a> {
    pub(crate) ctx: &'a Context<'a>,
    pub(crate) inst: Instance,
    pub(crate) actor: &'a Actor,
    pub(crate) effects: Vec<Effect>,
    pub(crate) history: Vec<HistoryEntry>,
    pub(crate) steps_run: usize,
    /// Tasks this command gave by round robin, per role (the rotation moves on by these).
    pub(crate) round_robin: RefCell<BTreeMap<String, u64>>,
}

impl<'a> Run<'a> {
    /// A command about to run on a copy of `instance`.
    pub(crate) fn new(ctx: &'a Context<'a>, instance: &Instance, actor: &'a Actor) -> Run<'a> {
        Run {
            ctx,
            inst: instance.clone(),
            actor,
            effects: Vec::new(),
            history: Vec::new(),
            steps_run: 0,
            round_robin: RefCell::new(BTreeMap::new()),
        }
    }
}

impl Run<'_> {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.ctx.now
    }

    pub(crate) fn step(&self, id: StepId) -> &model::Step {
        self.ctx.model.step(id)
    }

    pub(crate) fn record(
        &mut self,
        event: HistoryEvent,
        step: Option<StepId>,
        detail: impl Into<String>,
    ) -> &mut HistoryEntry {
        let entry = HistoryEntry {
            seq: self.inst.history_len,
            at: self.now(),
            actor: self.actor.id.clone(),
            event,
            step: step.map(|s| self.step(s).name.clone()),
            detail: detail.into(),
            changes: Vec::new(),
            lateness_ms: None,
            rules_version: 0,
            task: None,
            act: None,
        };
        self.inst.history_len += 1;
        self.history.push(entry);
        self.history.last_mut().expect("just pushed")
    }

    pub(crate) fn seq(&mut self) -> u32 {
        let s = self.inst.next_seq;
        self.inst.next_seq += 1;
        s
    }

    /// Administrators, or holders of a role the rules' `[permissions]` grant the action to.
    pub(crate) fn may(&self, action: &str) -> bool {
        self.ctx.rules.permits(self.actor, action)
    }

    pub(crate) fn forbidden(&self, action: &str) -> CommandError {
        CommandError::Forbidden { actor: self.actor.id.clone(), action: action.into() }
    }

    /// An open task; a number the case never gave out is unknown (404), a task that was open
    /// and is no longer is not open (409).
    pub(crate) fn open_task(&self, seq: u32) -> Result<Task, CommandError> {
        if seq >= self.inst.next_seq {
            return Err(CommandError::UnknownTask(self.inst.task_id(seq)));
        }
        self.inst.tasks.get(&seq).cloned().ok_or(CommandError::TaskNotOpen(self.inst.task_id(seq)))
    }

    /// The assignee, a member of a candidate role, or an administrator.
    pub(crate) fn may_work_on(&self, t: &Task) -> bool {
        self.actor.admin
            || t.assignee.as_deref() == Some(&self.actor.id)
            || t.candidates.iter().any(|c| self.actor.roles.contains(c))
    }

    pub(crate) fn set_assignee(&mut self, seq: u32, to: Option<String>, claimed: bool) {
        let task_id = self.inst.task_id(seq);
        if let Some(t) = self.inst.tasks.get_mut(&seq) {
            let from = std::mem::replace(&mut t.assignee, to.clone());
            t.claimed = claimed;
            // Someone else holds it now: nobody is working on it until they start.
            if t.started.as_ref().is_some_and(|s| Some(&s.by) != to.as_ref()) {
                t.started = None;
            }
            self.effects.push(Effect::TaskReassigned { task: task_id, from, to });
        }
    }

    pub(crate) fn scope_eval(&self, e: &caseflow_dsl::ast::Expr) -> Result<Value, EvalError> {
        let model = self.ctx.model;
        let declared = |n: &str| model.field(n).is_some();
        let tally = |name: &str, keys: &[String]| self.ctx.workload.tally(&self.inst.process, name, keys);
        let actor_of = |step: Option<&str>| match step {
            None => Some(self.inst.started_by.clone()),
            Some(name) => model.step_named(name).and_then(|s| self.inst.done_by.get(&s.id).cloned()),
        };
        let scope = Scope {
            fields: &self.inst.fields,
            declared: &declared,
            rules: self.ctx.rules,
            now: self.now(),
            tally: &tally,
            actor_of: &actor_of,
        };
        eval(e, &scope)
    }

    /// An expression's value as an instant: a duration from now, or a date/datetime.
    pub(crate) fn instant_of(
        &self,
        e: &caseflow_dsl::ast::Expr,
        from: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, EvalError> {
        match self.scope_eval(e)? {
            Value::Duration(span) => Ok(self.ctx.rules.calendar.add(from, span)?),
            Value::DateTime(t) => Ok(t),
            Value::Date(d) => Ok(self.ctx.rules.calendar.date_start(d)),
            other => Err(EvalError::Type(format!("expected a duration or a date, found a {}", other.type_name()))),
        }
    }

    pub(crate) fn span_of(&self, e: &caseflow_dsl::ast::Expr) -> Result<Span, EvalError> {
        match self.scope_eval(e)? {
            Value::Duration(span) => Ok(span),
            other => Err(EvalError::Type(format!("expected a duration, found a {}", other.type_name()))),
        }
    }
}
