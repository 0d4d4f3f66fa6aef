//! What-if replay speed: closed cases replayed through the core (baseline and candidate), in
//! recorded commands per second (start, timers fired, actions). Target: at least 50,000/s.
//!
//! `cargo bench -p caseflow-engine --bench whatif -- --cases 5000` (5 rounds; the median).

mod common;

use caseflow_core::case::{Actor, Command};
use caseflow_core::value::Value;
use caseflow_engine::whatif;
use caseflow_engine::{Engine, MemoryStore};
use chrono::{DateTime, Duration, Utc};
use std::time::Instant;

const SHAPE: &str = r#"
process handled {
  source "benchmark"
  fields {
    urgency: choice(high, low) required
    fixed: bool
  }
  start -> triage
  task triage { assign role cs_rep by round_robin due 4h remind every 1h -> work }
  task work {
    assign role cs_rep by round_robin
    due 1 workday
    asks fixed required
    -> decide {
      when fixed -> confirm
      else -> escalate
    }
  }
  task escalate { assign role cs_rep by round_robin due 1 workday -> confirm }
  task confirm { assign role cs_rep by round_robin due 2 workdays -> closed }
  end closed
}
"#;

fn main() {
    let full = common::full();
    let n: usize = common::arg("--cases", if full { 5_000 } else { 500 });
    let rules = common::reps(20);
    let engine = Engine::open(MemoryStore::new(), rules.clone()).expect("engine");
    let t0: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-11-23T09:00:00+08:00").unwrap().to_utc();
    engine.deploy(SHAPE, t0).expect("deploy");
    let crm = Actor { id: "crm".into(), roles: vec![], admin: false };
    for i in 0..n {
        let at = t0 + Duration::minutes(i as i64 % 600);
        let urgency = if i % 2 == 0 { "high" } else { "low" };
        let inst =
            engine.start("handled", [("urgency".into(), Value::Text(urgency.into()))].into(), &crm, None, at).unwrap();
        let mut now = at;
        for step in 0..4 {
            let Some(inst) = engine.instance(inst.id).unwrap() else { break };
            let Some(task) = inst.tasks.values().next().cloned() else { break };
            now += Duration::minutes(if step == 1 && i % 3 == 0 { 900 } else { 30 });
            // Timers due by then fire first, as the server's driver would have fired them.
            while engine.fire_due(now, 100).unwrap() > 0 {}
            let fields = if task.step_name == "work" {
                [("fixed".to_string(), Value::Bool(i % 4 != 0))].into()
            } else {
                Default::default()
            };
            let by =
                Actor { id: task.assignee.clone().unwrap_or("u0".into()), roles: vec!["cs_rep".into()], admin: false };
            engine.command(inst.id, &by, Command::CompleteTask { task: task.seq, fields }, now).unwrap();
        }
    }
    let cases = engine.closed_cases(None, None).unwrap();
    let models = engine.deployed_models();
    println!("{} closed cases, {} history entries", cases.len(), cases.iter().map(|c| c.entries.len()).sum::<usize>());
    let mut rates = Vec::new();
    for round in 0..5 {
        let t = Instant::now();
        let report = whatif::what_if(&cases, &models, &rules, &rules);
        let secs = t.elapsed().as_secs_f64();
        assert_eq!((report.diverged, report.not_replayable), (0, 0), "{:?}", report.divergences);
        let rate = report.commands as f64 / secs;
        println!("round {round}: {} commands replayed in {:.3} s: {:.0} commands/s", report.commands, secs, rate);
        rates.push(rate);
    }
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("what-if replay: median {:.0} commands/s (target: at least 50,000)", rates[rates.len() / 2]);
}
