//! Evaluating a 200-row decision table (target: under 5 µs median).
//! `cargo bench -p caseflow-engine --bench decision_table` prints the figures.

use caseflow_core::value::Value;
use caseflow_engine::{RuleSet, RulesFile};
use std::time::Instant;

fn main() {
    // 200 rows over three inputs (a choice, an int range and a list), first hit policy. The
    // probe inputs hit the first, middle and last rows and one that matches nothing, so the
    // figure covers full scans.
    let mut rows = Vec::new();
    for i in 0..200 {
        rows.push(format!(
            "{{ product = \"p{}\", amount = \"{}..{}\", channel = [\"web\", \"phone\"], department = \"d{i}\" }}",
            i % 20,
            i * 10,
            i * 10 + 9
        ));
    }
    let toml = format!(
        "[decision_tables.route]\nhit_policy = \"first\"\ninputs = [\"product\", \"amount\", \"channel\"]\noutputs = [\"department\"]\nrows = [\n{}\n]\n",
        rows.join(",\n")
    );
    let rules = RuleSet::load(&[RulesFile { name: "bench.toml".into(), text: toml }]).expect("bench table loads");
    let table = &rules.tables["route"];
    let probes: Vec<(&str, [Value; 3])> = vec![
        ("first row", [Value::Text("p0".into()), Value::Int(5), Value::Text("web".into())]),
        ("middle row", [Value::Text("p0".into()), Value::Int(1005), Value::Text("web".into())]),
        ("last row", [Value::Text("p19".into()), Value::Int(1995), Value::Text("phone".into())]),
        ("no match", [Value::Text("p3".into()), Value::Int(5), Value::Text("letter".into())]),
    ];
    let full = std::env::args().any(|a| a == "--bench");
    let (batches, per_batch) = if full { (101, 2_000) } else { (3, 10) };
    for (label, inputs) in &probes {
        let mut per_call_ns: Vec<f64> = (0..batches)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..per_batch {
                    std::hint::black_box(table.evaluate(std::hint::black_box(inputs)).expect("evaluates"));
                }
                t.elapsed().as_nanos() as f64 / per_batch as f64
            })
            .collect();
        per_call_ns.sort_by(f64::total_cmp);
        println!(
            "200-row table, {label:<10}: median {:>7.3} µs   p10 {:>7.3} µs   p90 {:>7.3} µs   ({batches} batches × {per_batch})",
            per_call_ns[batches / 2] / 1e3,
            per_call_ns[batches / 10] / 1e3,
            per_call_ns[batches * 9 / 10] / 1e3
        );
    }
}
