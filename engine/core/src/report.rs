//! The KPIs the manuals ask for (000 §2.4.1, §6.2.4; 002 duties §3; 004), computed from the
//! stored cases of one process started in a period: counts by status, outcome and every choice
//! field (cause, channel, ...); per human step the handling time (median, p90) and the share
//! of deadlines met; first-contact resolution; satisfaction and the weighted five-dimension
//! service-quality score.
//!
//! A read-only scan of the cases started in the period (instances are stored in id order,
//! which is start order). Fine for the department's volumes; an incremental aggregate would be
//! the next step for large histories.

use crate::case::{HistoryEntry, HistoryEvent, Instance, Status};
use crate::value::Value;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// The five SERVQUAL dimensions and their importance weights (004).
pub const SERVICE_QUALITY_WEIGHTS: [(&str, f64); 5] =
    [("reliability", 30.0), ("responsiveness", 25.0), ("assurance", 20.0), ("empathy", 16.0), ("tangibles", 7.0)];

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepStats {
    pub completed: usize,
    pub handling_minutes_median: Option<f64>,
    pub handling_minutes_p90: Option<f64>,
    /// Completed tasks that were never overdue, over completed tasks with a deadline.
    pub deadlines_met_share: Option<f64>,
}

/// The KPIs of one process over a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"process": "complaint", "from": "2026-11-01T00:00:00Z", "to": null, "cases": 2, "by_status": {"completed": 1, "running": 1}, "by_outcome": {"closed": 1}, "by_field": {"urgency": {"high": 2}}, "steps": {"receive": {"completed": 2, "handling_minutes_median": 4.0, "handling_minutes_p90": 6.0, "deadlines_met_share": 1.0}}, "first_contact_resolution_share": 1.0, "satisfaction_average": 5.0, "service_quality": {}, "service_quality_weighted": null})))]
pub struct Report {
    pub process: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub cases: usize,
    /// Cases by status name.
    pub by_status: BTreeMap<String, usize>,
    pub by_outcome: BTreeMap<String, usize>,
    /// For every choice field: value → count (cause, channel, urgency, ...).
    pub by_field: BTreeMap<String, BTreeMap<String, usize>>,
    pub steps: BTreeMap<String, StepStats>,
    /// Completed cases resolved at first contact, over completed cases (see `first_contact`).
    pub first_contact_resolution_share: Option<f64>,
    pub satisfaction_average: Option<f64>,
    /// Average of each dimension, and the weighted score (1–5) averaged over cases that have all five.
    pub service_quality: BTreeMap<String, f64>,
    pub service_quality_weighted: Option<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Decimal(d) => Some(*d),
        _ => None,
    }
}

/// Resolved at first contact: the first task that answered the case's first-contact outcome
/// (`solved_on_phone` in repair, `resolved` at the phone step in complaint) answered true. A
/// task records every answer, so `resolved = false` at the phone step counts as not resolved
/// there even though the field already held false.
fn first_contact(history: &[HistoryEntry]) -> Option<bool> {
    history
        .iter()
        .filter(|h| h.event == HistoryEvent::TaskCompleted)
        .find_map(|h| h.changes.iter().find(|(f, _, _)| f == "solved_on_phone" || f == "resolved"))
        .map(|(_, _, answer)| *answer == Value::Bool(true))
}

/// Builds the report from cases and their histories. `choice_fields` names the process's
/// choice fields.
pub fn build(
    process: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    choice_fields: &[String],
    cases: &[(Instance, Vec<HistoryEntry>)],
) -> Report {
    let mut r = Report { process: process.to_string(), from, to, ..Report::default() };
    let mut handling: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut deadlines: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut fcr_yes, mut fcr_all) = (0usize, 0usize);
    let mut satisfaction = Vec::new();
    let mut dims: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut weighted = Vec::new();
    for (inst, history) in cases {
        r.cases += 1;
        *r.by_status.entry(inst.status.name().to_string()).or_default() += 1;
        if let Status::Completed { outcome } = &inst.status {
            *r.by_outcome.entry(outcome.clone()).or_default() += 1;
            if let Some(yes) = first_contact(history) {
                fcr_all += 1;
                fcr_yes += usize::from(yes);
            }
        }
        for f in choice_fields {
            if let Some(Value::Text(v)) = inst.fields.get(f) {
                *r.by_field.entry(f.clone()).or_default().entry(v.clone()).or_default() += 1;
            }
        }
        // Tasks: opened → completed, and whether they went overdue.
        let mut opened: BTreeMap<u32, (DateTime<Utc>, &str)> = BTreeMap::new();
        let mut overdue: Vec<u32> = Vec::new();
        for h in history {
            let Some(task) = h.task else { continue };
            match h.event {
                HistoryEvent::TaskOpened => {
                    opened.insert(task, (h.at, h.step.as_deref().unwrap_or("")));
                }
                HistoryEvent::TaskOverdue => overdue.push(task),
                HistoryEvent::TaskCompleted => {
                    if let Some((at, step)) = opened.get(&task) {
                        handling.entry(step.to_string()).or_default().push((h.at - *at).num_seconds() as f64 / 60.0);
                        let d = deadlines.entry(step.to_string()).or_default();
                        d.0 += 1;
                        d.1 += usize::from(!overdue.contains(&task));
                    }
                }
                _ => {}
            }
        }
        if let Some(s) = inst.fields.get("satisfaction").and_then(number) {
            satisfaction.push(s);
        }
        let scores: Vec<Option<f64>> =
            SERVICE_QUALITY_WEIGHTS.iter().map(|(d, _)| inst.fields.get(*d).and_then(number)).collect();
        for ((d, _), s) in SERVICE_QUALITY_WEIGHTS.iter().zip(&scores) {
            if let Some(s) = s {
                dims.entry(d).or_default().push(*s);
            }
        }
        if scores.iter().all(Option::is_some) {
            let total: f64 = SERVICE_QUALITY_WEIGHTS.iter().map(|(_, w)| w).sum();
            weighted.push(
                SERVICE_QUALITY_WEIGHTS.iter().zip(&scores).map(|((_, w), s)| w * s.unwrap_or(0.0)).sum::<f64>()
                    / total,
            );
        }
    }
    for (step, mut times) in handling {
        times.sort_by(f64::total_cmp);
        let (all, met) = deadlines.get(&step).copied().unwrap_or_default();
        r.steps.insert(
            step,
            StepStats {
                completed: times.len(),
                handling_minutes_median: percentile(&times, 0.5),
                handling_minutes_p90: percentile(&times, 0.9),
                deadlines_met_share: (all > 0).then(|| met as f64 / all as f64),
            },
        );
    }
    let avg = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    r.first_contact_resolution_share = (fcr_all > 0).then(|| fcr_yes as f64 / fcr_all as f64);
    r.satisfaction_average = avg(&satisfaction);
    r.service_quality = dims.iter().filter_map(|(d, v)| avg(v).map(|a| (d.to_string(), a))).collect();
    r.service_quality_weighted = avg(&weighted);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(percentile(&v, 0.5), Some(5.0));
        assert_eq!(percentile(&v, 0.9), Some(9.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
