//! What-if replays (`caseflow_engine::whatif`), on the closed cases the shipped scenarios leave
//! behind: replayed under the rules and versions they ran on, every case takes the route its
//! history shows, and replayed under candidate rules or a candidate process, the differences
//! are the candidate's.

use caseflow_engine::scenario::{self, ScenarioFile, Setup};
use caseflow_engine::whatif::{self, ClosedCase, Models};
use caseflow_engine::{MemoryStore, RuleSet, RulesFile};
use caseflow_tests::*;

/// Every shipped scenario that ends its case, run; the closed cases and the models.
fn closed_cases() -> Vec<(ClosedCase, Models, RuleSet)> {
    let setup = Setup::new(shipped_processes(), shipped_rules()).unwrap();
    let mut out = Vec::new();
    for folder in std::fs::read_dir(root().join("processes/tests")).unwrap() {
        let rel = folder.unwrap().path().strip_prefix(root()).unwrap().display().to_string();
        for path in files(&rel, "toml") {
            let text = read(&path);
            if text.contains("[[earlier]]") {
                continue; // their routes depend on other cases, which a replay does not carry
            }
            let file = ScenarioFile { name: path.display().to_string(), text, dir: None };
            let (outcome, case) = scenario::run_keeping(&setup, &file, MemoryStore::new());
            assert!(outcome.passed(), "{:?}", outcome.failure);
            let Some((engine, _)) = case else { continue };
            let rules = (*engine.rules()).clone();
            out.extend(
                engine
                    .closed_cases(None, None)
                    .unwrap()
                    .into_iter()
                    .map(|c| (c, engine.deployed_models(), rules.clone())),
            );
        }
    }
    assert!(out.len() >= 40, "only {} closed cases", out.len());
    out
}

fn rules_with(change: impl Fn(&str) -> String) -> RuleSet {
    let files: Vec<RulesFile> = files("rules", "toml")
        .iter()
        .map(|p| RulesFile { name: p.display().to_string(), text: change(&read(p)) })
        .collect();
    RuleSet::load(&files).unwrap()
}

#[test]
fn replayed_under_the_same_rules_every_case_takes_its_recorded_route() {
    let mut routes_differ = Vec::new();
    for (case, models, rules) in closed_cases() {
        let report = whatif::what_if(std::slice::from_ref(&case), &models, &rules, &rules);
        let key = &case.root.business_key;
        assert_eq!(report.not_replayable, 0, "{key}: {report:?}");
        assert_eq!((report.diverged, report.routes_changed, report.outcomes_changed), (0, 0, 0), "{key}: {report:?}");
        for (step, s) in &report.by_step {
            assert_eq!(
                (s.tasks_before, s.met_before, s.assignees_changed),
                (s.tasks_after, s.met_after, 0),
                "{key} {step}"
            );
        }
        // The baseline replay walks the route the real history shows.
        let replayed = whatif::replay(&case, &models, &rules, false);
        let route = |entries: &[(usize, caseflow_core::case::HistoryEntry)]| -> Vec<String> {
            entries
                .iter()
                .filter(|(i, e)| {
                    *i == 0 && matches!(e.event.as_str(), "task_opened" | "reached_end" | "decided" | "task_overdue")
                })
                .map(|(_, e)| format!("{}@{}", e.event, e.step.clone().unwrap_or_default()))
                .collect()
        };
        if route(&replayed.entries) != route(&case.entries) {
            routes_differ.push(format!(
                "{key}:\n  recorded {:?}\n  replayed {:?}",
                route(&case.entries),
                route(&replayed.entries)
            ));
        }
    }
    assert!(routes_differ.is_empty(), "{}", routes_differ.join("\n"));
}

#[test]
fn candidate_rules_and_processes_show_what_they_would_have_changed() {
    let cases = closed_cases();
    // Medium-urgency complaints are received within 4 working hours; with 30 minutes, the ones
    // received later than that miss the deadline.
    let shorter = rules_with(|t| t.replace("medium = \"4 workhours\"", "medium = \"30min\""));
    let complaints: Vec<_> = cases.iter().filter(|(c, _, _)| c.root.process == "complaint").collect();
    let mut before = 0;
    let mut after = 0;
    for (case, models, rules) in &complaints {
        let report = whatif::what_if(std::slice::from_ref(case), models, rules, &shorter);
        if let Some(s) = report.by_step.get("complaint.receive") {
            before += s.met_before;
            after += s.met_after;
        }
    }
    assert!(after < before, "deadlines met at receive: {before} before, {after} after");
    // A candidate complaint process that sends every case the phone resolved to an engineer:
    // the routes change, and the recorded feedback no longer applies where it did.
    let shipped = read(&root().join("processes/complaint.flow"));
    let source = shipped.replacen(
        "when resolved -> feedback\n      else -> engineer_callback",
        "when resolved -> engineer_callback\n      else -> engineer_callback",
        1,
    );
    assert_ne!(source, shipped);
    let catalog = shipped_catalog();
    let ctx = caseflow_dsl::CheckContext { catalog: Some(&catalog), processes: None };
    let candidate = caseflow_dsl::compile(&source, &ctx).process.expect("the candidate checks");
    let (mut changed, mut diverged) = (0, 0);
    for (case, models, rules) in &complaints {
        let models = Models {
            candidate: [("complaint".to_string(), candidate.clone())].into(),
            deployed: models.deployed.clone(),
        };
        let report = whatif::what_if(std::slice::from_ref(case), &models, rules, rules);
        changed += report.routes_changed;
        diverged += report.diverged;
        assert!(report.divergences.iter().all(|d| d.contains("no open task at `feedback`")), "{report:?}");
    }
    assert!(changed > 0 && diverged > 0, "{changed} routes changed, {diverged} diverged");
}

/// A candidate that only renames a step (`renamed from`) changes nothing: the recorded actions
/// at the old name apply to the renamed step, and the routes are the same routes.
#[test]
fn a_rename_only_candidate_changes_nothing() {
    let shipped = read(&root().join("processes/complaint.flow"));
    let source = shipped
        .replace("task verify \"核实\" {", "task check_evidence \"核实\" renamed from verify {")
        .replace("-> verify", "-> check_evidence");
    assert_ne!(source, shipped);
    let catalog = shipped_catalog();
    let ctx = caseflow_dsl::CheckContext { catalog: Some(&catalog), processes: None };
    let candidate = caseflow_dsl::compile(&source, &ctx).process.expect("the candidate checks");
    let mut replayed = 0;
    for (case, models, rules) in closed_cases().iter().filter(|(c, _, _)| c.root.process == "complaint") {
        let models = Models {
            candidate: [("complaint".to_string(), candidate.clone())].into(),
            deployed: models.deployed.clone(),
        };
        let report = whatif::what_if(std::slice::from_ref(case), &models, rules, rules);
        let key = &case.root.business_key;
        assert_eq!((report.diverged, report.routes_changed, report.outcomes_changed), (0, 0, 0), "{key}: {report:?}");
        assert!(!report.by_step.contains_key("complaint.check_evidence"), "counted under its old name: {report:?}");
        assert!(report.by_step.values().all(|s| s.assignees_changed == 0 && s.decisions_changed == 0), "{report:?}");
        replayed += report.replayed;
    }
    assert!(replayed >= 3, "{replayed}");
}

/// A changed decision table shows where it decides otherwise; tasks that no longer open (or
/// open only under the candidate) are not counted as given to someone else.
#[test]
fn decision_table_changes_show_and_missing_tasks_are_not_reassignments() {
    let rerouted = rules_with(|t| {
        t.replace(r#"{ cause = "quality", department = "rnd" }"#, r#"{ cause = "quality", department = "quality" }"#)
    });
    let (mut decided_otherwise, mut tasks_differ) = (0, 0);
    for (case, models, rules) in closed_cases().iter().filter(|(c, _, _)| c.root.process == "complaint") {
        let quality = case.root.fields.get("cause").is_some_and(|c| c.to_string() == "quality");
        let report = whatif::what_if(std::slice::from_ref(case), models, rules, &rerouted);
        let route = report.by_step.get("complaint.route").map_or(0, |s| s.decisions_changed);
        assert_eq!(route, usize::from(quality), "{}: {report:?}", case.root.business_key);
        decided_otherwise += route;
    }
    assert!(decided_otherwise > 0);
    // Every resolved phone call sent to an engineer: feedback opens later or not at all.
    let shipped = read(&root().join("processes/complaint.flow"));
    let source =
        shipped.replacen("-> decide {\n      when resolved -> feedback", "-> decide {\n      when resolved -> file", 1);
    assert_ne!(source, shipped);
    let catalog = shipped_catalog();
    let ctx = caseflow_dsl::CheckContext { catalog: Some(&catalog), processes: None };
    let candidate = caseflow_dsl::compile(&source, &ctx).process.expect("the candidate checks");
    for (case, models, rules) in closed_cases().iter().filter(|(c, _, _)| c.root.process == "complaint") {
        let models = Models {
            candidate: [("complaint".to_string(), candidate.clone())].into(),
            deployed: models.deployed.clone(),
        };
        let report = whatif::what_if(std::slice::from_ref(case), &models, rules, rules);
        let s = report.by_step.get("complaint.feedback").cloned().unwrap_or_default();
        tasks_differ += usize::from(s.tasks_before != s.tasks_after);
        assert_eq!(s.assignees_changed, 0, "{}: {report:?}", case.root.business_key);
    }
    assert!(tasks_differ > 0, "no case skipped the feedback");
}
