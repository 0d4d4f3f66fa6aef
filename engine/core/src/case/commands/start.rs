//! `Start`: a fresh case takes its fields and runs from the start step.

use crate::case::fields::conform;
use crate::case::run::Run;
use crate::case::{CommandError, HistoryEvent, Token, Waiting};
use crate::value::Value;
use std::collections::BTreeMap;

impl Run<'_> {
    pub(crate) fn start(&mut self, fields: BTreeMap<String, Value>) -> Result<(), CommandError> {
        if self.inst.history_len > 0 {
            return Err(CommandError::WrongStatus("already started"));
        }
        self.inst.started_by = self.actor.id.clone();
        // `own` user fields: the caller, or someone else only with `act_for_others`.
        let mut fields = fields;
        for f in self.ctx.model.fields.iter().filter(|f| f.own) {
            match fields.get(&f.name) {
                None => {
                    fields.insert(f.name.clone(), Value::Text(self.actor.id.clone()));
                }
                Some(Value::Text(u)) if *u == self.actor.id => {}
                Some(_) if self.may("act_for_others") => {}
                Some(_) => {
                    return Err(self.forbidden(&format!(
                        "file `{}` in someone else's name (the `act_for_others` permission)",
                        f.name
                    )))
                }
            }
        }
        let mut values = self.validate_fields(&fields, true)?;
        // Defaults, in declaration order, so a default may use an earlier field.
        for f in &self.ctx.model.fields {
            if values.contains_key(&f.name) {
                continue;
            }
            if let Some(default) = &f.default {
                self.inst.fields = values.clone();
                let v = self.scope_eval(default).map_err(|e| CommandError::InvalidField {
                    field: f.name.clone(),
                    problem: format!("default: {e}"),
                })?;
                let v = conform(&f.ty, &v)
                    .map_err(|problem| CommandError::InvalidField { field: f.name.clone(), problem })?;
                values.insert(f.name.clone(), v);
            }
        }
        self.inst.fields = BTreeMap::new();
        let key = self.inst.business_key.clone();
        self.set_fields(values, HistoryEvent::Started, None);
        if let Some(e) = self.history.last_mut() {
            e.detail = format!("business key {key}");
        }
        let start = self.ctx.model.start.clone();
        let token = self.seq();
        let first = self
            .choose(&start)
            .map_err(|e| CommandError::InvalidField { field: "(start)".into(), problem: e.to_string() })?;
        self.inst.tokens.insert(
            token,
            Token { step: first, entered_at: self.now(), waiting: Waiting::Wait, group: None, item: None },
        );
        self.enter(token, first)?;
        self.settle()
    }
}
