//! The rules dry run tells the truth: on random open cases and random candidate response
//! times, what `Engine::rules_impact` predicts (deadlines that move, by step, and tasks overdue
//! at once) is what applying the rules and recomputing really does; and without `recompute`,
//! it predicts no move and applying moves none.

use caseflow_core::case::{Actor, Command, InstanceId};
use caseflow_core::value::Value;
use caseflow_engine::{Engine, MemoryStore, RuleSet, RulesFile};
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use std::collections::BTreeMap;

const SPANS: [&str; 6] = ["5min", "10min", "30min", "2 workhours", "4 workhours", "1 workday"];
const URGENCIES: [&str; 3] = ["high", "medium", "low"];

fn rules_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

/// The shipped rules with the response times set to these spans (high, medium, low).
fn candidate(spans: [usize; 3]) -> (RuleSet, Vec<RulesFile>) {
    let files: Vec<RulesFile> = caseflow_engine::read_rules_dir(&rules_dir())
        .unwrap()
        .into_iter()
        .map(|mut f| {
            if f.name.ends_with("values.toml") {
                let mut text = f.text.clone();
                for (urgency, was) in [("high", "10min"), ("medium", "4 workhours"), ("low", "1 workday")] {
                    let i = URGENCIES.iter().position(|u| *u == urgency).unwrap();
                    assert!(text.contains(&format!("{urgency} = \"{was}\"")), "the response times moved");
                    text = text.replacen(
                        &format!("{urgency} = \"{was}\""),
                        &format!("{urgency} = \"{}\"", SPANS[spans[i]]),
                        1,
                    );
                }
                f.text = text;
            }
            f
        })
        .collect();
    (RuleSet::load(&files).unwrap(), files)
}

/// Each open task, by (case, task): its `process.step` and its deadline.
type Deadlines = BTreeMap<(u64, u32), (String, Option<DateTime<Utc>>)>;

/// Every open task's deadline, by (case, task), with its `process.step`.
fn deadlines(engine: &Engine<MemoryStore>, ids: &[InstanceId]) -> Deadlines {
    let mut out = BTreeMap::new();
    for id in ids {
        let inst = engine.instance(*id).unwrap().unwrap();
        for t in inst.tasks.values() {
            out.insert((id.0, t.seq), (format!("{}.{}", inst.process, t.step_name), t.due_at));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)))]

    #[test]
    fn the_dry_run_predicts_what_applying_the_rules_does(
        cases in proptest::collection::vec((0usize..3, 0u32..600, any::<bool>()), 1..8),
        spans in [0usize..6, 0usize..6, 0usize..6],
        later in 0u32..900,
        recompute in any::<bool>(),
    ) {
        let engine = Engine::open(MemoryStore::new(), caseflow_tests::shipped_rules()).unwrap();
        let monday = chrono_tz::Asia::Shanghai.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap().with_timezone(&Utc);
        let source = std::fs::read_to_string(rules_dir().join("../processes/complaint.flow")).unwrap();
        engine.deploy(&source, monday).unwrap();
        let crm = Actor { id: "crm".into(), roles: vec![], admin: false };
        let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
        let mut ids = Vec::new();
        for (urgency, minute, answered) in &cases {
            let at = monday + Duration::minutes((*minute).into());
            let fields: BTreeMap<String, Value> = [
                ("customer", "第一中学"), ("contact", "138"), ("content", "投影仪无法开机"), ("urgency", URGENCIES[*urgency]),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), Value::Text(v.to_string())))
            .collect();
            let inst = engine.start("complaint", fields, &crm, None, at).unwrap();
            if *answered {
                let seq = inst.tasks.values().next().unwrap().seq;
                let cause = [("cause".to_string(), Value::Text("quality".into()))].into();
                engine.command(inst.id, &admin, Command::CompleteTask { task: seq, fields: cause }, at).unwrap();
            }
            ids.push(inst.id);
        }
        let now = monday + Duration::minutes(600 + i64::from(later));
        let (rules, files) = candidate(spans);
        let impact = engine.rules_impact(&rules, recompute, now).unwrap();
        let before = deadlines(&engine, &ids);
        engine.change_rules(rules, &files, "test", String::new(), now).unwrap();
        if recompute {
            engine.recompute_deadlines(now).unwrap();
        }
        let after = deadlines(&engine, &ids);
        let mut moved_by_step: BTreeMap<String, usize> = BTreeMap::new();
        let mut overdue_at_once = 0;
        for (task, (step, old)) in &before {
            let new = after.get(task).and_then(|(_, d)| *d);
            if new != *old {
                *moved_by_step.entry(step.clone()).or_insert(0) += 1;
                if let (Some(old), Some(new)) = (old, new) {
                    overdue_at_once += usize::from(new <= now && *old > now);
                }
            }
        }
        prop_assert_eq!(impact.recompute, recompute);
        prop_assert_eq!(impact.deadlines_moved, moved_by_step.values().sum::<usize>(), "{:?}", impact);
        prop_assert_eq!(&impact.moved_by_step, &moved_by_step);
        prop_assert_eq!(impact.overdue_at_once, overdue_at_once);
        prop_assert_eq!(impact.open_tasks, before.len());
    }
}
