//! `StartWork` and `SaveDraft`: work in progress on a task. Neither moves the case; both are
//! recorded, so the history says who worked on what and when.

use crate::case::run::Run;
use crate::case::{CommandError, Draft, HistoryEvent, Started};
use crate::value::Value;
use caseflow_dsl::model::StepKind;
use std::collections::BTreeMap;

impl Run<'_> {
    /// The assignee marks their task started; starting it again changes nothing.
    pub(crate) fn start_work(&mut self, seq: u32) -> Result<(), CommandError> {
        let t = self.open_task(seq)?;
        if t.assignee.as_deref() != Some(self.actor.id.as_str()) {
            return Err(self.forbidden(match &t.assignee {
                None => "start work on a task nobody holds (claim it first)",
                Some(_) => "start work on a task assigned to someone else",
            }));
        }
        if t.started.as_ref().is_some_and(|s| s.by == self.actor.id) {
            return Ok(());
        }
        let at = self.now();
        let by = self.actor.id.clone();
        if let Some(task) = self.inst.tasks.get_mut(&seq) {
            task.started = Some(Started { by, at });
        }
        self.record(HistoryEvent::WorkStarted, Some(t.step), "");
        Ok(())
    }

    /// The assignee saves answers to finish later, replacing an earlier draft. Only fields the
    /// task asks for, each of its type; what is required is checked at completion.
    pub(crate) fn save_draft(&mut self, seq: u32, fields: BTreeMap<String, Value>) -> Result<(), CommandError> {
        let t = self.open_task(seq)?;
        if t.assignee.as_deref() != Some(self.actor.id.as_str()) {
            return Err(self.forbidden("save a draft of a task assigned to someone else (claim it first)"));
        }
        let StepKind::Task(def) = &self.step(t.step).kind else {
            return Err(CommandError::TaskNotOpen(self.inst.task_id(seq)));
        };
        if let Some(name) = fields.keys().find(|n| !def.form.iter().any(|f| f.field == **n)) {
            return Err(CommandError::InvalidField {
                field: name.clone(),
                problem: "this task does not ask for it".into(),
            });
        }
        let fields = self.validate_fields(&fields, false)?;
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        // The values stay on the task, not in the history (whose changes are the case's).
        let detail = if names.is_empty() { "nothing yet".to_string() } else { names.join(", ") };
        let (by, at) = (self.actor.id.clone(), self.now());
        if let Some(task) = self.inst.tasks.get_mut(&seq) {
            task.draft = Some(Draft { by, at, fields });
        }
        self.record(HistoryEvent::DraftSaved, Some(t.step), detail);
        Ok(())
    }
}
