//! Coverage: what a process offers to reach, and which of it the scenarios reached.

use caseflow_dsl::model::{Action, Process, StepKind, Transition};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Something a scenario reached in a process.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fact {
    pub process: String,
    pub what: Reach,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// A step entered.
    Step(String),
    /// A decision arm taken: `branch N` (1-based, in the order written) or `else`.
    Arm { step: String, arm: String },
    /// A reminder sent for a task.
    Reminder(String),
    /// A task's deadline missed.
    Overdue(String),
    /// A task escalated (a `when …: escalate to …` handler ran).
    Escalation(String),
    /// The case cancelled.
    Cancelled,
}

impl std::fmt::Display for Reach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reach::Step(s) => write!(f, "step `{s}`"),
            Reach::Arm { step, arm } => write!(f, "`{step}` {arm}"),
            Reach::Reminder(s) => write!(f, "a reminder at `{s}`"),
            Reach::Overdue(s) => write!(f, "the deadline of `{s}` missed"),
            Reach::Escalation(s) => write!(f, "an escalation of `{s}`"),
            Reach::Cancelled => write!(f, "a cancellation"),
        }
    }
}

impl Serialize for Reach {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a process offers: every step and decision arm; with `full`, also every reminder,
/// every deadline missed, every task's escalation, and a cancellation.
pub fn required(model: &Process, full: bool) -> Vec<Reach> {
    let mut out: Vec<Reach> = model.steps.iter().map(|s| Reach::Step(s.name.clone())).collect();
    for s in &model.steps {
        let next = match &s.kind {
            StepKind::Task(t) => {
                if t.remind_every.is_some() && full {
                    out.push(Reach::Reminder(s.name.clone()));
                }
                if t.due.is_some() && full {
                    out.push(Reach::Overdue(s.name.clone()));
                }
                let escalates = t.handlers.iter().any(|h| h.actions.iter().any(|a| matches!(a, Action::Escalate(_))));
                if escalates && full {
                    out.push(Reach::Escalation(s.name.clone()));
                }
                Some(&t.next)
            }
            StepKind::Auto { next, .. } | StepKind::Join { next, .. } => Some(next),
            StepKind::Wait(w) => w.next.as_ref(),
            StepKind::Call(c) => Some(&c.next),
            StepKind::Split { .. } | StepKind::End => None,
        };
        if let Some(Transition::Decide { branches, otherwise }) = next {
            out.extend((1..=branches.len()).map(|i| Reach::Arm { step: s.name.clone(), arm: format!("branch {i}") }));
            if otherwise.is_some() {
                out.push(Reach::Arm { step: s.name.clone(), arm: "else".into() });
            }
        }
    }
    if full {
        out.push(Reach::Cancelled);
    }
    out
}

/// What the scenarios reached of a process.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessCoverage {
    pub process: String,
    pub reached: usize,
    pub required: usize,
    pub percent: f64,
    /// Steps, decision arms, reminders, missed deadlines, escalations and the cancellation never reached.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub missing: Vec<Reach>,
}

/// The coverage of each of `processes` by what was reached.
pub fn coverage<'a>(
    processes: impl IntoIterator<Item = &'a str>,
    models: &BTreeMap<String, Process>,
    reached: &BTreeSet<Fact>,
    full: bool,
) -> Vec<ProcessCoverage> {
    processes
        .into_iter()
        .filter_map(|process| {
            let required = required(models.get(process)?, full);
            let missing: Vec<Reach> = required
                .iter()
                .filter(|r| !reached.contains(&Fact { process: process.to_string(), what: (*r).clone() }))
                .cloned()
                .collect();
            let hit = required.len() - missing.len();
            let percent = percent(hit, required.len());
            Some(ProcessCoverage {
                process: process.to_string(),
                reached: hit,
                required: required.len(),
                percent,
                missing,
            })
        })
        .collect()
}

/// `hit` of `required` as a percentage to one decimal, rounded to the nearest (17 of 35 is
/// 48.6); short of all is never shown as 100.0.
fn percent(hit: usize, required: usize) -> f64 {
    if required == 0 {
        return 100.0;
    }
    let tenths = (hit * 1000 + required / 2) / required;
    let tenths = if hit < required { tenths.min(999) } else { tenths };
    tenths as f64 / 10.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentages_round_to_the_nearest_tenth_and_never_claim_all() {
        assert_eq!(super::percent(17, 35), 48.6);
        assert_eq!(super::percent(1, 3), 33.3);
        assert_eq!(super::percent(2, 3), 66.7);
        assert_eq!(super::percent(1999, 2000), 99.9);
        assert_eq!(super::percent(5, 5), 100.0);
        assert_eq!(super::percent(0, 0), 100.0);
    }
}
