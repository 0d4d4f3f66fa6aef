//! Decision tables: each hit policy, condition kinds, and that `unique` tables accepted by
//! the loader never find two rows at run time.

use caseflow_core::table::{DecisionTable, TableError};
use caseflow_core::value::Value;
use caseflow_engine::{RuleSet, RulesFile};
use proptest::prelude::*;

fn load(toml: &str) -> Result<RuleSet, Vec<caseflow_engine::RulesError>> {
    RuleSet::load(&[RulesFile { name: "t.toml".into(), text: toml.into() }])
}

fn table(toml: &str, name: &str) -> DecisionTable {
    let rules = load(toml).unwrap_or_else(|e| panic!("{e:?}"));
    rules.tables[name].clone()
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

const GRADES: &str = r#"
[decision_tables.grade]
hit_policy = "HIT"
inputs = ["score", "channel"]
outputs = ["grade"]
output_order = ["gold", "silver", "bronze"]
rows = [
  { score = ">= 90", grade = "gold" },
  { score = "70..89", channel = ["web", "email"], grade = "silver" },
  { score = ">= 50", channel = "!= letter", grade = "bronze" },
  { score = "< 50", grade = "none" },
]
"#;

fn grade(policy: &str) -> DecisionTable {
    table(&GRADES.replace("HIT", policy), "grade")
}

fn outputs(t: &DecisionTable, score: i64, channel: &str) -> Vec<String> {
    let hits = t.evaluate(&[Value::Int(score), text(channel)]).expect("evaluates");
    t.outputs_of(&hits).into_iter().map(|row| row[0].1.to_string()).collect()
}

#[test]
fn first_takes_the_first_matching_row() {
    let t = grade("first");
    assert_eq!(outputs(&t, 95, "phone"), ["gold"]);
    assert_eq!(outputs(&t, 75, "web"), ["silver"]);
    assert_eq!(outputs(&t, 75, "phone"), ["bronze"]);
    assert_eq!(outputs(&t, 75, "letter"), Vec::<String>::new());
    assert_eq!(outputs(&t, 10, "letter"), ["none"]);
}

#[test]
fn collect_takes_every_matching_row_in_order() {
    let t = grade("collect");
    assert_eq!(outputs(&t, 95, "web"), ["gold", "bronze"]);
    assert_eq!(outputs(&t, 80, "email"), ["silver", "bronze"]);
}

#[test]
fn priority_takes_the_highest_ranked_output() {
    let t = grade("priority");
    assert_eq!(outputs(&t, 80, "email"), ["silver"]);
    assert_eq!(outputs(&t, 95, "web"), ["gold"]);
    // `none` is not in output_order: it ranks last but still matches alone.
    assert_eq!(outputs(&t, 10, "phone"), ["none"]);
}

#[test]
fn unique_refuses_overlapping_rows_when_loading() {
    let errors = load(&GRADES.replace("HIT", "unique")).unwrap_err();
    assert!(errors.iter().any(|e| e.message.contains("rows 0 (line 8) and 2 (line 10) can both match")), "{errors:?}");
}

#[test]
fn unique_accepts_disjoint_rows() {
    let t = table(
        r#"
[decision_tables.level]
hit_policy = "unique"
inputs = ["p"]
outputs = ["level"]
rows = [{ p = "1..2", level = "low" }, { p = "3..4", level = "mid" }, { p = 5, level = "high" }]
"#,
        "level",
    );
    let get = |p| t.outputs_of(&t.evaluate(&[Value::Int(p)]).unwrap()).first().map(|r| r[0].1.to_string());
    assert_eq!(get(2).as_deref(), Some("low"));
    assert_eq!(get(3).as_deref(), Some("mid"));
    assert_eq!(get(5).as_deref(), Some("high"));
    assert_eq!(get(6), None);
}

#[test]
fn wrong_number_of_inputs_is_an_error_not_a_panic() {
    let t = grade("first");
    assert!(matches!(t.evaluate(&[Value::Int(1)]), Err(TableError::Arity { .. })));
}

#[test]
fn the_shipped_shift_swap_rules_name_the_rule_broken() {
    let rules = load(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/tables.toml")).unwrap())
        .expect("shipped tables load on their own");
    let t = &rules.tables["shift_swap"];
    let swap = |n, consecutive, holiday| {
        let inputs =
            [Value::Int(n), Value::Bool(consecutive), Value::Bool(false), Value::Bool(false), Value::Bool(holiday)];
        let hits = t.evaluate(&inputs).unwrap();
        t.outputs_of(&hits)[0].iter().map(|(_, v)| v.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(swap(0, false, false), ["allow", ""]);
    assert_eq!(swap(3, false, false), ["deny", "每人每月换班不得超过3次"]);
    assert_eq!(swap(1, true, false), ["deny", "不得连续换班"]);
    assert_eq!(swap(1, false, true), ["deny", "节假日值班人员不得换班或请假"]);
}

/// A cell condition drawn at random, as TOML text.
fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"*\"".to_string()),
        (0i64..10).prop_map(|v| v.to_string()),
        (0i64..10, 0i64..10).prop_map(|(a, b)| format!("\"{}..{}\"", a.min(b), a.max(b))),
        (0i64..10).prop_map(|v| format!("\">= {v}\"")),
        (0i64..10).prop_map(|v| format!("\"< {v}\"")),
        proptest::collection::vec(0i64..10, 1..3).prop_map(|v| format!("{v:?}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)))]

    /// Soundness of the overlap check: if the loader accepts a `unique` table, no input
    /// matches two rows.
    #[test]
    fn accepted_unique_tables_never_match_twice(
        rows in proptest::collection::vec((cell(), cell()), 1..6),
        inputs in proptest::collection::vec((-1i64..11, -1i64..11), 1..40),
    ) {
        let rows: Vec<String> = rows.iter().enumerate().map(|(i, (a, b))| format!("{{ a = {a}, b = {b}, out = {i} }}")).collect();
        let toml = format!(
            "[decision_tables.t]\nhit_policy = \"unique\"\ninputs = [\"a\", \"b\"]\noutputs = [\"out\"]\nrows = [\n{}\n]\n",
            rows.join(",\n")
        );
        if let Ok(rules) = load(&toml) {
            let t = &rules.tables["t"];
            for (a, b) in inputs {
                prop_assert!(t.evaluate(&[Value::Int(a), Value::Int(b)]).is_ok(), "{toml}\ninput a={a} b={b}");
            }
        }
    }
}
