//! Migration proven on random pairs of versions and random case states: for every case the dry
//! run says moves, the real migration moves it to exactly the landing the dry run gave
//! (incidents included), the moved case holds the invariants, and it can still reach an end;
//! a case the dry run refuses is left as it was, and can reach an end on its own version.
//!
//! Versions differ from version 1 in the ways process owners change them: a step renamed
//! (`renamed from`) or replaced (a mapping then needed), a branch added to a split, an
//! automatic step added before the review, deadlines, reminders and escalations changed, and
//! choice values dropped.

use caseflow_core::case::migrate::Landing;
use caseflow_core::case::{invariants, Actor, Command, Instance, InstanceId, Status};
use caseflow_core::value::Value;
use caseflow_engine::{Engine, MemoryStore, MigrationOrder};
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use std::collections::BTreeMap;

use caseflow_tests::shipped_rules as rules;

/// How a version differs from version 1 (all defaults: version 1 itself).
#[derive(Debug, Clone, Default)]
struct Shape {
    /// `respond` renamed to `first_response` (`renamed from respond`).
    rename_respond: bool,
    /// 0: `inform` as is; 1: renamed (`renamed from`); 2: replaced by `call_back` (no relation).
    inform: u8,
    /// A third branch, `audit`, in the split.
    audit: bool,
    /// An automatic step `stamp` (needs `note`) between the join and the review.
    stamp: bool,
    /// Index into `RESPOND_DUES`.
    respond_due: usize,
    /// Index into `REMINDS` ("" for none).
    remind: usize,
    /// Index into `ESCALATIONS` ("" for none).
    escalate: usize,
    /// Index into `URGENCIES`.
    urgencies: usize,
    inspect_due: usize,
}

const RESPOND_DUES: [&str; 3] = ["rules.response_time[urgency]", "1 workday", "10min"];
const REMINDS: [&str; 3] = ["    remind every 1 workhour\n", "    remind every 2 workhours\n", ""];
const ESCALATIONS: [&str; 3] = [
    "    when overdue + 1 workhour: escalate to role cs_manager, raise priority\n",
    "    when overdue + 3 workhours: escalate to role cs_manager, raise priority\n",
    "",
];
const URGENCIES: [&[&str]; 3] = [&["high", "medium", "low"], &["high", "medium"], &["medium", "low"]];
const INSPECT_DUES: [&str; 2] = ["1 workday", "3 workhours"];

impl Shape {
    fn respond(&self) -> &'static str {
        if self.rename_respond {
            "first_response"
        } else {
            "respond"
        }
    }

    fn inform(&self) -> &'static str {
        ["inform", "tell_customer", "call_back"][usize::from(self.inform)]
    }

    fn source(&self, version: u32) -> String {
        let respond = self.respond();
        let inform = self.inform();
        let renamed_respond = if self.rename_respond { " renamed from respond" } else { "" };
        let renamed_inform = if self.inform == 1 { " renamed from inform" } else { "" };
        let branches = if self.audit { format!("inspect, {inform}, audit") } else { format!("inspect, {inform}") };
        let audit = if self.audit {
            "  task audit \"审计\" {\n    assign role cs_manager\n    due 1 workday\n    -> joined\n  }\n\n"
        } else {
            ""
        };
        let (after_join, stamp) = if self.stamp {
            ("stamp", "  auto stamp \"盖章\" {\n    set code = note\n    -> review\n  }\n\n")
        } else {
            ("review", "")
        };
        format!(
            "process ticket \"工单\" {{\n  source \"property test: version {version}\"\n\n  fields {{\n    \
             customer: text \"客户\" required\n    urgency: choice({urgencies}) \"紧急程度\" required\n    \
             note: text \"备注\"\n    code: text \"编号\"\n  }}\n\n  start -> {respond}\n\n  \
             task {respond} \"响应\"{renamed_respond} {{\n    assign role cs_rep\n    due {due}\n{remind}{escalate}    \
             -> fork\n  }}\n\n  split fork \"分头处理\" -> {branches}\n\n  task inspect \"检查\" {{\n    \
             assign role engineer\n    due {inspect_due}\n    -> joined\n  }}\n\n  \
             task {inform} \"告知客户\"{renamed_inform} {{\n    assign role cs_rep\n    due 1 workday\n    -> joined\n  }}\n\n\
             {audit}  join joined \"汇合\" of fork -> {after_join}\n\n{stamp}  task review \"复核\" {{\n    \
             assign role cs_manager\n    due 1 workday\n    asks note\n    -> done\n  }}\n\n  end done \"完成\"\n}}\n",
            urgencies = URGENCIES[self.urgencies].join(", "),
            due = RESPOND_DUES[self.respond_due],
            remind = REMINDS[self.remind],
            escalate = ESCALATIONS[self.escalate],
            inspect_due = INSPECT_DUES[self.inspect_due],
        )
    }

    /// Mappings a process owner might give between version 1 and this one: the needed one for
    /// a replaced step, and some that are wrong on purpose (into or out of the split).
    fn mapping_options(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = vec![("inspect", "review"), ("inspect", self.respond())];
        if self.inform == 2 {
            out.push(("inform", "call_back"));
        }
        if self.audit {
            out.push(("respond", "audit"));
        }
        if self.stamp {
            out.push(("review", "stamp"));
        }
        out
    }
}

fn shape() -> impl Strategy<Value = Shape> {
    (any::<bool>(), 0u8..3, any::<bool>(), any::<bool>(), 0usize..3, 0usize..3, 0usize..3, 0usize..3, 0usize..2)
        .prop_map(|(rename_respond, inform, audit, stamp, respond_due, remind, escalate, urgencies, inspect_due)| {
            Shape { rename_respond, inform, audit, stamp, respond_due, remind, escalate, urgencies, inspect_due }
        })
}

#[derive(Debug, Clone)]
enum Act {
    Complete(usize, bool),
    Advance(u32),
    Urgency(usize),
    Suspend,
    Resume,
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        4 => (any::<usize>(), any::<bool>()).prop_map(|(i, note)| Act::Complete(i, note)),
        3 => (1u32..16 * 60).prop_map(Act::Advance),
        1 => (0usize..3).prop_map(Act::Urgency),
        1 => Just(Act::Suspend),
        1 => Just(Act::Resume),
    ]
}

fn bj(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    chrono_tz::Asia::Shanghai.with_ymd_and_hms(y, m, d, h, min, 0).unwrap().with_timezone(&Utc)
}

fn admin() -> Actor {
    Actor { id: "wang_fang".into(), roles: vec!["cs_manager".into()], admin: true }
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

struct World {
    engine: Engine<MemoryStore>,
    now: DateTime<Utc>,
}

impl World {
    fn case(&self, id: InstanceId) -> Instance {
        self.engine.instance(id).unwrap().expect("the case exists")
    }

    fn advance(&mut self, minutes: u32) {
        self.now += Duration::minutes(minutes.into());
        // Fires what is due (a suspended case's timers wait for it to resume).
        for _ in 0..1000 {
            if self.engine.fire_due(self.now, 100).unwrap() == 0 {
                break;
            }
        }
    }

    fn command(&self, id: InstanceId, command: Command) -> bool {
        self.engine.command(id, &admin(), command, self.now).is_ok()
    }

    fn act(&mut self, id: InstanceId, a: &Act) {
        match a {
            Act::Complete(i, note) => {
                let inst = self.case(id);
                let tasks: Vec<u32> = inst.tasks.keys().copied().collect();
                if let Some(seq) = tasks.get(i % tasks.len().max(1)) {
                    let fields =
                        if *note { BTreeMap::from([("note".to_string(), text("已核实"))]) } else { BTreeMap::new() };
                    let is_review = inst.tasks[seq].step_name == "review";
                    // The review asks for the note: completing it without one leaves it unset.
                    let fields = if is_review { fields } else { BTreeMap::new() };
                    self.command(id, Command::CompleteTask { task: *seq, fields });
                }
            }
            Act::Advance(m) => self.advance(*m),
            Act::Urgency(u) => {
                let v = ["high", "medium", "low"][*u];
                self.command(id, Command::UpdateFields { fields: BTreeMap::from([("urgency".into(), text(v))]) });
            }
            Act::Suspend => {
                self.command(id, Command::Suspend);
            }
            Act::Resume => {
                self.command(id, Command::Resume);
            }
        }
    }

    /// Drives the case to an end the way staff would: resume it, fix and retry an incident,
    /// complete open tasks, or wait for its next timer. `Err` when it cannot end.
    fn finish(&mut self, id: InstanceId) -> Result<(), String> {
        for _ in 0..200 {
            let inst = self.case(id);
            match &inst.status {
                Status::Completed { .. } | Status::Cancelled { .. } => return Ok(()),
                Status::Suspended => {
                    if !self.command(id, Command::Resume) {
                        return Err("a suspended case does not resume".into());
                    }
                }
                Status::Incident { .. } => {
                    let note = BTreeMap::from([("note".to_string(), text("补充"))]);
                    self.command(id, Command::UpdateFields { fields: note });
                    if !self.command(id, Command::Retry) {
                        return Err(format!("an incident cannot be retried: {:?}", inst.status));
                    }
                }
                Status::Running => {
                    if let Some(task) = inst.tasks.values().next() {
                        let fields = BTreeMap::from([("note".to_string(), text("完成"))]);
                        let fields = if task.step_name == "review" { fields } else { BTreeMap::new() };
                        if let Err(e) = self.engine.command(
                            id,
                            &admin(),
                            Command::CompleteTask { task: task.seq, fields },
                            self.now,
                        ) {
                            return Err(format!("completing `{}` is refused: {e}", task.step_name));
                        }
                    } else {
                        match self.engine.next_due().unwrap() {
                            Some(t) => {
                                self.now = self.now.max(t);
                                self.engine.fire_due(self.now, 100).unwrap();
                            }
                            None => return Err(format!("running with no task and no timer: {inst:?}")),
                        }
                    }
                }
            }
        }
        Err(format!("no end after 200 moves: {:?}", self.case(id)))
    }
}

fn property_cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(property_cases()))]

    #[test]
    fn the_dry_run_is_what_happens_and_no_case_is_stranded(
        target in shape(),
        urgency in 0usize..3,
        acts in proptest::collection::vec(act(), 0..14),
        mapping in proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
    ) {
        let mut w = World { engine: Engine::open(MemoryStore::new(), rules()).unwrap(), now: bj(2026, 11, 23, 9, 30) };
        w.engine.deploy(&Shape::default().source(1), w.now).unwrap();
        let fields = BTreeMap::from([
            ("customer".to_string(), text("第一中学")),
            ("urgency".to_string(), text(["high", "medium", "low"][urgency])),
        ]);
        let crm = Actor { id: "crm".into(), roles: vec![], admin: false };
        let id = w.engine.start("ticket", fields, &crm, None, w.now).unwrap().id;
        for a in &acts {
            w.act(id, a);
        }
        let deployed = w.engine.deploy(&target.source(2), w.now).unwrap();
        prop_assert!(deployed.changed || deployed.version == 1);
        let to = deployed.version;
        let options = target.mapping_options();
        let mapping: BTreeMap<String, String> = mapping
            .iter()
            .map(|i| options[i.index(options.len())])
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let before = w.case(id);
        let order = |dry_run| MigrationOrder {
            process: "ticket".into(),
            from: 1,
            to,
            mapping: mapping.clone(),
            dry_run,
            by: admin(),
        };
        if to == 1 {
            return Ok(()); // the same source: nothing to migrate to
        }
        let dry = w.engine.migrate(&order(true), w.now).unwrap();
        prop_assert_eq!(&w.case(id), &before, "a dry run changed the case");
        let real = w.engine.migrate(&order(false), w.now).unwrap();
        let (d, r) = (dry.results.iter().find(|c| c.id == id), real.results.iter().find(|c| c.id == id));
        prop_assert_eq!(d.is_some(), r.is_some());
        let after = w.case(id);
        match (d, r) {
            (None, None) => prop_assert!(before.status.is_ended(), "a running case was not considered"),
            (Some(d), Some(r)) => {
                prop_assert_eq!(d.moved, r.moved, "dry run {:?}, real {:?}", d.reasons, r.reasons);
                prop_assert_eq!(&d.reasons, &r.reasons);
                prop_assert_eq!(&d.plan, &r.plan, "the dry run's plan is not what happened");
                if r.moved {
                    let model = &w.engine.definition("ticket", Some(to)).unwrap().model;
                    prop_assert_eq!(after.version, to);
                    let landing = Landing::of(model, &after);
                    prop_assert_eq!(&r.plan.as_ref().unwrap().landing, &landing, "the landing is not where it is");
                    if let Err(broken) = invariants(model, &after) {
                        prop_assert!(false, "the moved case breaks an invariant: {}", broken);
                    }
                    let history = w.engine.history(id).unwrap();
                    let migrated = history.iter().rev().find(|h| h.event == "migrated").unwrap();
                    prop_assert_eq!(&migrated.actor, "wang_fang");
                } else {
                    prop_assert_eq!(&after, &before, "a refused case changed");
                }
            }
            _ => unreachable!(),
        }
        if let Err(e) = w.finish(id) {
            prop_assert!(false, "{} (version {}, mapping {:?})\n{}", e, after.version, mapping, target.source(2));
        }
    }
}
