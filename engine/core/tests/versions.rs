//! A running case moved between versions of its process (`case::migrate`), property-tested
//! on the core alone (`engine/tests/migration.rs` tests the engine's migration over random
//! version pairs).

use caseflow_core::case::*;
use caseflow_dsl::model::Process;
use chrono::Duration;
use proptest::prelude::*;
use std::collections::BTreeMap;

mod common;
use common::*;

// ------------------------------------------------------------ migration between versions

/// The complaint process with `verify` renamed (`renamed from verify`) and nothing else changed.
fn complaint_with_verify_renamed() -> Process {
    let source =
        std::fs::read_to_string(format!("{}/../../processes/complaint.flow", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let renamed = source
        .replace("task verify \"核实\" {", "task check_evidence \"核实\" renamed from verify {")
        .replace("-> verify", "-> check_evidence");
    assert_ne!(renamed, source);
    model(&renamed)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96)))]

    /// Wherever a case is (tasks open, overdue, escalated, suspended, waiting on timers), it
    /// moves to an identical version, or to one that only renames a step with `renamed from`,
    /// keeping every task as it is: same number, assignee, deadline and timers, nothing closed
    /// or opened. An ended case does not move.
    #[test]
    fn a_case_moves_to_an_equal_or_renamed_version_keeping_its_work(
        renamed in any::<bool>(),
        steps in proptest::collection::vec(step(), 0..40),
    ) {
        let mut c = Case::start(shipped("complaint"), bj(2026, 11, 27, 17, 30), complaint_fields("high"));
        let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
        for s in steps {
            match s {
                Step::CompleteAny(i, _) => {
                    let tasks: Vec<Task> = c.inst.tasks.values().cloned().collect();
                    if let Some(t) = tasks.get(i % tasks.len().max(1)) {
                        let f = form_values(&c.model, t, true);
                        let _ = c.run(&admin, Command::CompleteTask { task: t.seq, fields: f });
                    }
                }
                Step::Advance(minutes) => {
                    let t = c.now + Duration::minutes(minutes.into());
                    if c.inst.status == Status::Running { c.advance_to(t) } else { c.now = t }
                }
                Step::Suspend => { let _ = c.run(&admin, Command::Suspend); }
                Step::Resume => { let _ = c.run(&admin, Command::Resume); }
                Step::Cancel => { let _ = c.run(&admin, Command::Cancel { reason: "test".into() }); }
                _ => {}
            }
        }
        let target = if renamed { complaint_with_verify_renamed() } else { shipped("complaint") };
        let ctx = Context { model: &target, rules: &c.rules, workload: &NoWorkload, now: c.now };
        match migrate::migrate(&ctx, &c.model, &c.inst, 2, &BTreeMap::new(), &admin) {
            Err(reasons) => prop_assert!(c.inst.status.is_ended(), "refused: {reasons:?}"),
            Ok(m) => {
                prop_assert!(!c.inst.status.is_ended(), "an ended case moved");
                prop_assert_eq!(m.instance.version, 2);
                prop_assert!(m.plan.tasks_closed.is_empty() && m.plan.tasks_opened.is_empty(), "{:?}", m.plan);
                prop_assert_eq!(m.instance.timers, c.inst.timers.clone(), "timers kept");
                prop_assert_eq!(m.instance.tokens.keys().collect::<Vec<_>>(), c.inst.tokens.keys().collect::<Vec<_>>());
                for (seq, before) in &c.inst.tasks {
                    let after = &m.instance.tasks[seq];
                    prop_assert_eq!((&after.assignee, after.due_at, after.overdue), (&before.assignee, before.due_at, before.overdue));
                    let name = &c.model.step(before.step).name;
                    let expected = if renamed && name == "verify" { "check_evidence" } else { name.as_str() };
                    prop_assert_eq!(after.step_name.as_str(), expected);
                    prop_assert_eq!(&target.step(after.step).name, &after.step_name);
                }
                prop_assert_eq!(&m.instance.fields, &c.inst.fields);
                prop_assert_eq!(&m.instance.status, &c.inst.status);
                prop_assert!(m.history.iter().any(|h| h.event == HistoryEvent::Migrated));
            }
        }
    }
}

/// What a broken invariant says names the step, never an internal index: a migration that
/// would leave a join with all its arrivals unfired is refused in words an owner can act on.
#[test]
fn a_broken_invariant_names_the_join() {
    let f = fields(&[
        ("install_date", caseflow_core::value::Value::Date(chrono::NaiveDate::from_ymd_opt(2026, 12, 4).unwrap())),
        ("school", text("s")),
    ]);
    let c = Case::start(model(PARALLEL), bj(2026, 11, 23, 10, 0), f);
    let mut inst = c.inst.clone();
    let join = c.model.step_named("ready").unwrap().id;
    inst.join_arrivals.insert(join, 2);
    let broken = invariants(&c.model, &inst).unwrap_err();
    assert!(broken.contains("the join `ready`"), "{broken}");
}
