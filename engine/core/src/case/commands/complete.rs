//! `CompleteTask`: the assignee finishes a task, with the fields it asks for; an instance of
//! a `for each` task completes its item.

use crate::case::run::Run;
use crate::case::{CommandError, HistoryEvent, TaskId, Token, Waiting};
use crate::eval::truth;
use crate::value::Value;
use caseflow_dsl::model::StepKind;
use std::collections::BTreeMap;

impl Run<'_> {
    pub(crate) fn complete(&mut self, seq: u32, fields: BTreeMap<String, Value>) -> Result<(), CommandError> {
        let task = self.open_task(seq)?;
        if !self.may_work_on(&task) {
            return Err(self.forbidden("complete this task"));
        }
        self.four_eyes(&task, "complete this task")?;
        // A claim holds: only its holder completes the task, unless someone may reassign it.
        if let Some(holder) = task.assignee.as_deref().filter(|a| task.claimed && *a != self.actor.id) {
            if !self.may("reassign") {
                return Err(self.forbidden(&format!("complete a task claimed by {holder}")));
            }
            self.record(HistoryEvent::ClaimOverridden, Some(task.step), format!("claimed by {holder}"));
        }
        let StepKind::Task(def) = &self.step(task.step).kind else {
            return Err(CommandError::TaskNotOpen(self.inst.task_id(seq)));
        };
        for name in fields.keys() {
            if !def.form.iter().any(|f| f.field == *name) {
                let form: Vec<&str> = def.form.iter().map(|f| f.field.as_str()).collect();
                return Err(CommandError::InvalidField {
                    field: name.clone(),
                    problem: format!(
                        "this task does not ask for it; it asks for: {}",
                        if form.is_empty() { "nothing".into() } else { form.join(", ") }
                    ),
                });
            }
        }
        for f in def.form.iter().filter(|f| f.required) {
            if !fields.contains_key(&f.field) {
                return Err(CommandError::InvalidField {
                    field: f.field.clone(),
                    problem: "this task requires it".into(),
                });
            }
        }
        let next = def.next.clone();
        let changes = self.validate_fields(&fields, false)?;
        self.close_task(seq, "completed");
        // What the person answered, all of it (an answer equal to the field's value is an
        // outcome too: `resolved = false` at the phone step), then the fields it changed.
        let answers: Vec<(String, Option<Value>, Value)> =
            changes.iter().map(|(k, v)| (k.clone(), self.inst.fields.get(k).cloned(), v.clone())).collect();
        self.set_fields(changes, HistoryEvent::TaskCompleted, Some(task.step));
        if let Some(e) = self.history.last_mut() {
            e.detail = format!("task {}", TaskId { instance: self.inst.id, seq });
            e.task = Some(seq);
            e.changes = answers;
        }
        self.inst.done_by.insert(task.step, self.actor.id.clone());
        if let Some(group) = self.inst.tokens.get(&task.token).and_then(|t| t.group) {
            self.each_done(task.token, group, &fields)?;
        } else {
            self.follow(task.token, task.step, &next)?;
        }
        self.settle()
    }

    /// One instance of a task `for each` item is done: collect its answers, open the next
    /// item (one at a time), or, once enough are done, withdraw the rest and go on.
    pub(crate) fn each_done(
        &mut self,
        token: u32,
        group: u32,
        fields: &BTreeMap<String, Value>,
    ) -> Result<(), CommandError> {
        let Some(tok) = self.inst.tokens.remove(&token) else { return Ok(()) };
        let step = self.step(tok.step).clone();
        let StepKind::Task(def) = &step.kind else { return Ok(()) };
        let item = tok.item.clone().unwrap_or_default();
        let mut collected = BTreeMap::new();
        for (field, list) in &def.collect {
            let Some(v) = fields.get(field) else { continue };
            let mut all = match self.inst.fields.get(list) {
                Some(Value::List(l)) => l.clone(),
                _ => Vec::new(),
            };
            all.push(Value::Text(format!("{item}: {}", v.to_string().trim_matches('"'))));
            collected.insert(list.clone(), Value::List(all));
        }
        if !collected.is_empty() {
            self.set_fields(collected, HistoryEvent::Collected, Some(step.id));
        }
        let Some(g) = self.inst.each_groups.get_mut(&group) else { return Ok(()) };
        g.done += 1;
        let (done, needed, next, total) = (g.done, g.needed, g.next, g.items.len());
        // `until CONDITION`, on the case as this answer left it.
        let condition_met = match def.each.as_ref().and_then(|e| e.until.as_ref()) {
            Some(cond) => match self.scope_eval(cond).and_then(|v| truth(&v)) {
                Ok(met) => met,
                Err(e) => {
                    self.record(HistoryEvent::UntilNotEvaluated, Some(step.id), e.to_string());
                    false
                }
            },
            None => false,
        };
        if done >= needed || condition_met {
            let rest: Vec<(u32, Token)> = self
                .inst
                .tokens
                .iter()
                .filter(|(_, t)| t.group == Some(group))
                .map(|(id, t)| (*id, t.clone()))
                .collect();
            let withdrawn = self.withdraw_tokens(rest, &[]);
            self.inst.each_groups.remove(&group);
            let mut detail = format!("{done} of {total} done");
            if !withdrawn.is_empty() {
                detail.push_str(&format!("; withdrew {}", withdrawn.len()));
            }
            self.record(HistoryEvent::InstancesDone, Some(step.id), detail);
            let t = self.seq();
            self.inst.tokens.insert(
                t,
                Token { step: step.id, entered_at: self.now(), waiting: Waiting::Wait, group: None, item: None },
            );
            return self.follow(t, step.id, &def.next.clone());
        }
        if def.each.as_ref().is_some_and(|e| e.in_turn) && next < total {
            let item = self.inst.each_groups[&group].items[next].clone();
            if let Some(g) = self.inst.each_groups.get_mut(&group) {
                g.next += 1;
            }
            self.open_instance(group, &step, def, item);
        }
        Ok(())
    }
}
