//! Random processes that use the shipped rules — decision-table lookups, `rules.VALUE[field]`
//! deadlines, business-key formats, `assign role from FIELD` — some right, many subtly wrong
//! (a misspelt input, a choice value the table or value map lacks, a range the table does not
//! cover, an unknown `%` code). The property: a file the checker accepts, started with random
//! valid fields and driven with random completions and time, never panics, never fails with
//! anything but a refusal of bad input, and never ends in an incident. The checker has to
//! catch, before a case runs, whatever would fail at run time.

#[path = "../core/tests/support/mod.rs"]
mod support;

use caseflow_core::case::{Actor, Command, InstanceId, Status};
use caseflow_core::value::Value;
use caseflow_engine::{Engine, EngineError, MemoryStore};
use chrono::{DateTime, Duration, TimeZone, Utc};
use std::collections::BTreeMap;
use support::FlowGen;

use caseflow_tests::shipped_rules as rules;

/// A field as generated: its declaration and the values a start may give it.
struct GenField {
    name: &'static str,
    decl: String,
    values: Vec<Value>,
}

fn choice(name: &'static str, options: &[&str]) -> GenField {
    GenField {
        name,
        decl: format!("{name}: choice({}) required", options.join(", ")),
        values: options.iter().map(|o| Value::Text(o.to_string())).collect(),
    }
}

/// An int field in `lo..hi`; `unbounded` declares it without a range (the values stay the
/// same few, and the checker must assume any).
fn int_range(name: &'static str, lo: i64, hi: i64, unbounded: bool) -> GenField {
    let decl = if unbounded { format!("{name}: int required") } else { format!("{name}: int({lo}..{hi}) required") };
    GenField { name, decl, values: (lo..=hi).map(Value::Int).collect() }
}

fn pick<'a, T>(g: &mut FlowGen, items: &'a [T]) -> &'a T {
    &items[g.pick(items.len())]
}

/// A random process over the shipped rules, and its fields.
fn process(seed: u64) -> (String, Vec<GenField>) {
    let mut g = FlowGen::choices(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    // The right shapes are picked more often than each mistake, so that enough files pass.
    const URGENCIES: [&[&str]; 5] = [
        &["high", "medium", "low"],
        &["high", "medium", "low"],
        &["high", "medium", "low"],
        &["high", "medium"],
        &["high", "medium", "urgent"],
    ];
    const CAUSES: [&[&str]; 4] = [
        &["quality", "expectation", "communication"],
        &["quality", "expectation", "communication"],
        &["quality", "expectation", "communication"],
        &["quality", "expectation", "communication", "other"],
    ];
    const CHANNELS: [&[&str]; 3] = [&["phone", "web", "email"], &["phone", "web", "email"], &["phone", "wechat"]];
    let urgency = *pick(&mut g, &URGENCIES);
    let cause = *pick(&mut g, &CAUSES);
    let channel = *pick(&mut g, &CHANNELS);
    let (plo, phi) = *pick(&mut g, &[(1, 5), (1, 5), (1, 5), (0, 5), (1, 6), (2, 3)]);
    let (ilo, ihi) = *pick(&mut g, &[(1, 5), (1, 5), (1, 5), (1, 7), (3, 5)]);
    let fields = vec![
        choice("urgency", urgency),
        choice("cause", cause),
        choice("channel", channel),
        int_range("probability", plo, phi, g.pick(8) == 0),
        int_range("impact", ilo, ihi, false),
    ];
    let key = match g.pick(6) {
        0 => String::new(),
        _ => {
            let date = pick(&mut g, &["%Y%m%d", "%Y%m%d", "%Y%m%d", "%y", "%Y-%m", "%Q", "%j", "%%", "%E", "%Y%"]);
            let seq =
                pick(&mut g, &["{seq}", "{seq:03}", "{seq:03}", "{seq:03}", "{seq:0}", "{seq:012}", "{seq:x}", ""]);
            let field = pick(&mut g, &["", "", "-{urgency}", "-{cause}", "-{urgncy}", "-{probability}"]);
            format!("  key \"K{{date:{date}}}{seq}{field}\"\n")
        }
    };
    let mut steps = Vec::new();
    let n = 1 + g.pick(4);
    let mut looked_up_risk = false;
    for i in 0..n {
        let next = if i + 1 == n { "done".to_string() } else { format!("s{}", i + 1) };
        let step = match g.pick(6) {
            0 => {
                let a = pick(&mut g, &["cause", "cause", "cause", "cause", "cause", "caus", "urgency"]);
                let b = pick(&mut g, &["channel", "channel", "channel", "channel", "channel", "chanel", "impact"]);
                let out = pick(&mut g, &["department", "department", "department", "department", "dept", "level"]);
                format!(
                    "  auto s{i} {{\n    lookup complaint_routing {{ {a}, {b} }} => {{ {out} }}\n    -> {next}\n  }}\n"
                )
            }
            1 => {
                looked_up_risk = true;
                let outs = pick(&mut g, &["level, owner", "level, owner", "level, owner", "owner", "level, ownr"]);
                format!(
                    "  auto s{i} {{\n    lookup risk_level {{ probability, impact }} => {{ {outs} }}\n    -> {next}\n  }}\n"
                )
            }
            2 | 3 => {
                let due = pick(
                    &mut g,
                    &[
                        "rules.response_time[urgency]",
                        "rules.response_time[urgency]",
                        "rules.response_time[urgency]",
                        "rules.feedback_window",
                        "rules.escalation_delay[\"director\"]",
                        "rules.response_time[cause]",
                        "rules.feedback_window",
                        "rules.response_time",
                        "rules.feedback_windw",
                        "rules.escalation_delay[\"director\"]",
                        "rules.escalation_delay[\"ceo\"]",
                    ],
                );
                format!("  task s{i} {{\n    assign role cs_rep\n    due {due}\n    -> {next}\n  }}\n")
            }
            4 if looked_up_risk => {
                format!("  task s{i} {{\n    assign role from owner\n    due 1 workday\n    -> {next}\n  }}\n")
            }
            _ => {
                let cond = pick(
                    &mut g,
                    &[
                        "urgency == high",
                        "cause == quality",
                        "probability >= 3",
                        "channel == phone",
                        "urgency == urgent",
                    ],
                );
                format!("  auto s{i} {{\n    -> decide {{\n      when {cond} -> {next}\n      else -> {next}\n    }}\n  }}\n")
            }
        };
        steps.push(step);
    }
    let decls: Vec<String> = fields.iter().map(|f| format!("    {}", f.decl)).collect();
    let source = format!(
        "process p {{\n  source \"generated\"\n{key}\n  fields {{\n{}\n    department: text\n    level: text\n    owner: text\n  }}\n\n  start -> s0\n\n{}\n  end done\n}}\n",
        decls.join("\n"),
        steps.join("\n")
    );
    (source, fields)
}

#[test]
fn accepted_files_over_the_rules_never_end_in_an_incident() {
    let cases: u64 = std::env::var("RULES_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000);
    let rules = rules();
    let catalog = rules.catalog();
    let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
    let (mut accepted, mut started) = (0, 0);
    for seed in 0..cases {
        let (source, fields) = process(seed);
        let files = [caseflow_dsl::SourceFile { name: "p.flow".into(), text: source.clone() }];
        let checked = caseflow_dsl::check_files(&files, Some(&catalog)).remove(0).checked;
        if checked.process.is_none() {
            if std::env::var("RULES_FUZZ_WHY").is_ok() {
                for d in checked.diagnostics.iter().filter(|d| d.is_error()) {
                    eprintln!("REFUSED {}: {}", d.code.as_str(), d.message);
                }
            }
            continue;
        }
        accepted += 1;
        let engine = Engine::open(MemoryStore::new(), rules.clone()).unwrap();
        let mut now: DateTime<Utc> =
            chrono_tz::Asia::Shanghai.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap().with_timezone(&Utc);
        engine
            .deploy(&source, now)
            .unwrap_or_else(|e| panic!("seed {seed}: the checker took it, deploy did not: {e:?}\n{source}"));
        let mut g = FlowGen::choices(seed | 1);
        for _ in 0..4 {
            let start: BTreeMap<String, Value> =
                fields.iter().map(|f| (f.name.to_string(), pick(&mut g, &f.values).clone())).collect();
            let inst = match engine.start("p", start.clone(), &admin, None, now) {
                Ok(i) => i,
                Err(e) => panic!("seed {seed}: a valid start failed ({e}) with {start:?}\n{source}"),
            };
            started += 1;
            for _ in 0..6 {
                let current = engine.instance(inst.id).unwrap().unwrap();
                if let Status::Incident { reason, .. } = &current.status {
                    panic!("seed {seed}: an accepted file ended in an incident: {reason}\nstart {start:?}\n{source}");
                }
                if current.status.is_ended() {
                    break;
                }
                match current.tasks.keys().next() {
                    Some(task) if g.pick(3) > 0 => {
                        let done = engine.command(
                            inst.id,
                            &admin,
                            Command::CompleteTask { task: *task, fields: BTreeMap::new() },
                            now,
                        );
                        if let Err(e) = done {
                            assert!(matches!(e, EngineError::Command(_)), "seed {seed}: {e}\n{source}");
                        }
                    }
                    _ => {
                        now += Duration::hours(g.pick(72) as i64);
                        engine.fire_due(now, 64).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{source}"));
                    }
                }
            }
            let last = engine.instance(InstanceId(inst.id.0)).unwrap().unwrap();
            if let Status::Incident { reason, .. } = &last.status {
                panic!("seed {seed}: an accepted file ended in an incident: {reason}\nstart {start:?}\n{source}");
            }
        }
    }
    // The generator must reach both sides: files refused, and files that run.
    assert!(accepted > cases / 10, "only {accepted} of {cases} files were accepted");
    assert!(accepted < cases, "every file was accepted: the mistakes are not being generated");
    eprintln!("{accepted} of {cases} files accepted, {started} cases run");
}
