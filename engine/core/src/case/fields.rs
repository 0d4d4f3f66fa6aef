//! A case's fields: validating what a command brings, setting them with a history entry, and
//! what moves when they change (derived timers, `for each` groups).

use crate::case::run::Run;
use crate::case::{CommandError, EachGroup, Effect, HistoryEvent, Task, TimerKind, Token, Waiting};
use crate::value::Value;
use caseflow_dsl::model::{FieldType, StepId, StepKind, WaitCondition};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Whether an expression reads the field `name`.
pub(crate) fn mentions(e: &caseflow_dsl::ast::Expr, name: &str) -> bool {
    use caseflow_dsl::ast::ExprKind as K;
    match &e.kind {
        K::Name(n) => n == name,
        K::List(items) => items.iter().any(|i| mentions(i, name)),
        K::Rule { key, .. } => key.as_ref().is_some_and(|k| mentions(k, name)),
        K::Call { args, .. } => args.iter().any(|a| mentions(a, name)),
        K::Not(x) | K::Neg(x) | K::Paren(x) => mentions(x, name),
        K::Binary { lhs, rhs, .. } => mentions(lhs, name) || mentions(rhs, name),
        _ => false,
    }
}

/// A value made to fit a field's type: ints into decimals, text into a choice that lists it,
/// ranges and choice membership checked. `Err` says what is wrong.
pub fn conform(ty: &FieldType, v: &Value) -> Result<Value, String> {
    match (ty, v) {
        (FieldType::Text | FieldType::User, Value::Text(_)) => Ok(v.clone()),
        (FieldType::Int { min, max }, Value::Int(i)) => {
            if min.is_some_and(|m| *i < m) || max.is_some_and(|m| *i > m) {
                Err(format!("{i} is outside {}..{}", min.unwrap_or(i64::MIN), max.unwrap_or(i64::MAX)))
            } else {
                Ok(v.clone())
            }
        }
        (FieldType::Decimal, Value::Decimal(_)) => Ok(v.clone()),
        (FieldType::Decimal, Value::Int(i)) => Ok(Value::Decimal(*i as f64)),
        (FieldType::Bool, Value::Bool(_)) => Ok(v.clone()),
        (FieldType::Date, Value::Date(_)) => Ok(v.clone()),
        (FieldType::Date, Value::Text(t)) => chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .map(Value::Date)
            .map_err(|_| format!("`{t}` is not a date (YYYY-MM-DD)")),
        (FieldType::DateTime, Value::DateTime(_)) => Ok(v.clone()),
        (FieldType::DateTime, Value::Text(t)) => DateTime::parse_from_rfc3339(t)
            .map(|d| Value::DateTime(d.with_timezone(&Utc)))
            .map_err(|_| format!("`{t}` is not an RFC 3339 date-time")),
        (FieldType::Choice(values), Value::Text(t)) => {
            if values.contains(t) {
                Ok(v.clone())
            } else {
                Err(format!("`{t}` is not one of: {}", values.join(", ")))
            }
        }
        (FieldType::ListOfText, Value::List(items)) if items.iter().all(|i| matches!(i, Value::Text(_))) => {
            Ok(v.clone())
        }
        (ty, v) => Err(format!("expected {ty}, got a {}", v.type_name())),
    }
}

impl Run<'_> {
    /// Checks values against the process's field types. `starting`: required fields must be
    /// present and defaults are applied by the caller.
    /// Checks values against the process's field types and reports every bad field at once.
    /// `starting`: required fields must be present (defaults are applied by the caller).
    pub(crate) fn validate_fields(
        &self,
        given: &BTreeMap<String, Value>,
        starting: bool,
    ) -> Result<BTreeMap<String, Value>, CommandError> {
        let mut out = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, value) in given {
            let Some(field) = self.ctx.model.field(name) else {
                let known: Vec<&str> = self.ctx.model.fields.iter().map(|f| f.name.as_str()).collect();
                problems.push((
                    name.clone(),
                    format!("the process has no such field; its fields are: {}", known.join(", ")),
                ));
                continue;
            };
            match conform(&field.ty, value) {
                // A user field names someone the rules know.
                Ok(Value::Text(u)) if field.ty == FieldType::User && !self.ctx.rules.users.contains_key(&u) => {
                    problems.push((name.clone(), format!("no user `{u}` in the rules")));
                }
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err(problem) => problems.push((name.clone(), problem)),
            }
        }
        if starting {
            for f in &self.ctx.model.fields {
                // A default fills a required field the caller left out (`required = north`).
                if f.required && f.default.is_none() && !given.contains_key(&f.name) {
                    problems.push((f.name.clone(), "required".into()));
                }
            }
        }
        match problems.len() {
            0 => Ok(out),
            1 => {
                let (field, problem) = problems.remove(0);
                Err(CommandError::InvalidField { field, problem })
            }
            _ => Err(CommandError::InvalidFields(problems)),
        }
    }

    pub(crate) fn set_fields(&mut self, changes: BTreeMap<String, Value>, event: HistoryEvent, step: Option<StepId>) {
        let mut recorded = Vec::new();
        for (name, value) in changes {
            let old = self.inst.fields.insert(name.clone(), value.clone());
            if old.as_ref() != Some(&value) {
                recorded.push((name, old, value));
            }
        }
        let changed: Vec<String> = recorded.iter().map(|(n, _, _)| n.clone()).collect();
        if !recorded.is_empty() || event != HistoryEvent::FieldsUpdated {
            let entry = self.record(event, step, "");
            entry.changes = recorded;
        }
        if event != HistoryEvent::Collected {
            self.grow_each_groups(&changed);
        }
        if !changed.is_empty() {
            self.move_derived_timers(&changed);
        }
    }

    /// Timers computed from fields move when the fields change: a wait `until planned_date - 1
    /// workday`, a task due `rules.response_time[urgency]`. Each move is in the history.
    pub(crate) fn move_derived_timers(&mut self, changed: &[String]) {
        let touches = |e: &caseflow_dsl::ast::Expr| changed.iter().any(|f| mentions(e, f));
        let waiting: Vec<(u32, Token)> = self
            .inst
            .tokens
            .iter()
            .filter(|(_, t)| t.waiting == Waiting::Wait)
            .map(|(id, t)| (*id, t.clone()))
            .collect();
        for (token, tok) in waiting {
            let StepKind::Wait(w) = &self.step(tok.step).kind else { continue };
            let w = w.clone();
            let fixed = |kind: &TimerKind| matches!(kind, TimerKind::Wait { token: t } if *t == token);
            let new_at = match &w.condition {
                Some(WaitCondition::Until(e)) if touches(e) => self.instant_of(e, tok.entered_at),
                Some(WaitCondition::For(e)) if touches(e) => self.instant_of(e, tok.entered_at),
                _ => continue,
            };
            let Some(old) = self.inst.timers.values().find(|t| fixed(&t.kind)).map(|t| (t.seq, t.due_at)) else {
                continue;
            };
            match new_at {
                Ok(at) if at != old.1 => {
                    self.inst.timers.remove(&old.0);
                    self.effects.push(Effect::TimerCancelled { seq: old.0 });
                    self.set_timer(at, TimerKind::Wait { token });
                    self.record(
                        HistoryEvent::TimerMoved,
                        Some(tok.step),
                        format!(
                            "{} → {} (the fields it is computed from changed)",
                            old.1.to_rfc3339(),
                            at.to_rfc3339()
                        ),
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    self.record(HistoryEvent::TimerNotMoved, Some(tok.step), e.to_string());
                }
            }
        }
        // Task deadlines computed from the fields.
        let stale: Vec<Task> = self
            .inst
            .tasks
            .values()
            .filter(
                |t| matches!(&self.step(t.step).kind, StepKind::Task(def) if def.due.as_ref().is_some_and(&touches)),
            )
            .cloned()
            .collect();
        for t in stale {
            self.recompute_deadline(&t);
        }
    }

    /// Items appended to the list a task `for each` item runs over, while its tasks are open,
    /// get tasks of their own (the number of instances is known only when the last is done).
    pub(crate) fn grow_each_groups(&mut self, changed: &[String]) {
        let groups: Vec<(u32, EachGroup)> = self.inst.each_groups.iter().map(|(g, x)| (*g, x.clone())).collect();
        for (g, group) in groups {
            let step = self.step(group.step).clone();
            let StepKind::Task(def) = &step.kind else { continue };
            let Some(each) = &def.each else { continue };
            let caseflow_dsl::ast::ExprKind::Name(list) = &each.list.kind else { continue };
            if !changed.contains(list) {
                continue;
            }
            let Some(Value::List(now)) = self.inst.fields.get(list) else { continue };
            let now: Vec<String> = now
                .iter()
                .map(|v| match v {
                    Value::Text(t) => t.clone(),
                    other => other.to_string(),
                })
                .collect();
            // Only an append is followed: the tasks already opened stay as they are.
            if now.len() <= group.items.len() || !now.starts_with(&group.items) {
                continue;
            }
            let added: Vec<String> = now[group.items.len()..].to_vec();
            let Some(x) = self.inst.each_groups.get_mut(&g) else { continue };
            x.items.extend(added.iter().cloned());
            if each.enough.is_none() {
                x.needed = x.items.len() as u32;
            }
            self.record(HistoryEvent::InstancesAdded, Some(step.id), added.join(", "));
            // One at a time: the task now open opens the next one when done.
            if !each.in_turn {
                if let Some(x) = self.inst.each_groups.get_mut(&g) {
                    x.next = x.items.len();
                }
                for item in added {
                    self.open_instance(g, &step, def, item);
                }
            }
        }
    }
}
