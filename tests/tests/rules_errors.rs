//! Rules that must be refused: each `tests/rules/*.toml` is loaded (with its `_b` partner
//! for the `_a` files) and the located errors must equal the `.expected` file.
//! `UPDATE_EXPECT=1` rewrites expectations.

use caseflow_engine::{RuleSet, RulesFile};
use caseflow_tests::*;

#[test]
fn bad_rules_are_refused_with_located_errors() {
    let mut failures = Vec::new();
    let cases = files("tests/rules", "toml");
    assert!(cases.len() >= 7);
    for case in cases.iter().filter(|p| !p.to_string_lossy().ends_with("_b.toml")) {
        let mut sources = vec![case.clone()];
        if case.to_string_lossy().ends_with("_a.toml") {
            sources
                .push(case.with_file_name(case.file_name().unwrap().to_string_lossy().replace("_a.toml", "_b.toml")));
        }
        let files: Vec<RulesFile> = sources
            .iter()
            .map(|p| RulesFile { name: p.strip_prefix(root()).unwrap_or(p).display().to_string(), text: read(p) })
            .collect();
        let actual = match RuleSet::load(&files) {
            Ok(_) => "accepted\n".to_string(),
            Err(errors) => errors.iter().map(|e| format!("{e}\n")).collect(),
        };
        if let Some(diff) = compare_golden(&case.with_extension("expected"), &actual) {
            failures.push(diff);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn shipped_rules_load() {
    let rules = shipped_rules();
    assert!(rules.roles.contains_key("cs_rep"));
    assert!(rules.tables.contains_key("complaint_routing"));
    assert_eq!(rules.calendar.time_zone, chrono_tz::Asia::Shanghai);
}
