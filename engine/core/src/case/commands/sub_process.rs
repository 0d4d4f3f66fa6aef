//! What the shell reports of a `call` step's sub-process case: started, ended, cancelled.

use crate::case::run::Run;
use crate::case::{CommandError, HistoryEvent, InstanceId, Waiting};
use crate::eval::EvalError;
use crate::value::Value;
use caseflow_dsl::model::StepKind;
use std::collections::BTreeMap;

impl Run<'_> {
    /// The shell started the sub-process case the token waits for.
    pub(crate) fn child_started(&mut self, token: u32, child: InstanceId) -> Result<(), CommandError> {
        if !self.inst.tokens.get(&token).is_some_and(|t| t.waiting == Waiting::Child) {
            return Err(CommandError::NotWaitingForChild(token));
        }
        self.inst.children.insert(token, child);
        Ok(())
    }

    /// The sub-process case was cancelled: the `call` step becomes an incident.
    pub(crate) fn child_cancelled(&mut self, token: u32, reason: String) -> Result<(), CommandError> {
        let Some(tok) = self.inst.tokens.get(&token).filter(|t| t.waiting == Waiting::Child).cloned() else {
            return Err(CommandError::NotWaitingForChild(token));
        };
        let child = self.inst.children.remove(&token).map_or_else(String::new, |c| format!(" {c}"));
        self.park(token, tok.step, EvalError::Type(format!("the sub-process case{child} was cancelled: {reason}")));
        Ok(())
    }

    /// The sub-process case completed: its outputs are copied and the token moves on.
    pub(crate) fn child_ended(&mut self, token: u32, fields: BTreeMap<String, Value>) -> Result<(), CommandError> {
        let Some(tok) = self.inst.tokens.get(&token).filter(|t| t.waiting == Waiting::Child).cloned() else {
            return Err(CommandError::NotWaitingForChild(token));
        };
        self.inst.children.remove(&token);
        let StepKind::Call(call) = &self.step(tok.step).kind else {
            return Err(CommandError::NotWaitingForChild(token));
        };
        let mut changes = BTreeMap::new();
        for (parent_field, child_field) in &call.outputs {
            if let Some(v) = fields.get(child_field) {
                changes.insert(parent_field.clone(), v.clone());
            }
        }
        let next = call.next.clone();
        let changes = self.validate_fields(&changes, false)?;
        self.set_fields(changes, HistoryEvent::SubProcessReturned, Some(tok.step));
        self.follow(token, tok.step, &next)?;
        self.settle()
    }
}
