//! Golden tests: each `tests/diagnostics/*.flow` is checked (with the shipped processes, for
//! `call` targets, and the shipped rules) and its rendered diagnostics must equal the `.expected`
//! file beside it. `UPDATE_EXPECT=1 cargo test -p caseflow-tests --test golden_diagnostics`
//! rewrites the expectations; review the diff before committing.

use caseflow_dsl::{check_files, diag, Code};
use caseflow_tests::*;
use std::collections::BTreeSet;

#[test]
fn diagnostics_match_golden_files() {
    let catalog = shipped_catalog();
    let mut failures = Vec::new();
    let mut seen_codes = BTreeSet::new();
    let cases = files("tests/diagnostics", "flow");
    assert!(cases.len() >= 20, "the golden folder lost its files");
    for case in cases {
        let mut sources = vec![source_file(&case)];
        sources.extend(shipped_processes());
        let reports = check_files(&sources, Some(&catalog));
        let report = &reports[0];
        let diags = &report.checked.diagnostics;
        seen_codes.extend(diags.iter().map(|d| d.code));
        let mut rendered = diag::render(&report.name, &sources[0].text, diags, false);
        let json: Vec<_> = diags.iter().map(|d| d.to_json(&report.name, &sources[0].text)).collect();
        rendered.push_str("--- json\n");
        rendered.push_str(&serde_json::to_string_pretty(&json).expect("diagnostics serialise"));
        rendered.push('\n');
        // Invariant: a model exists exactly when there is no error.
        assert_eq!(report.checked.process.is_some(), !diags.iter().any(|d| d.is_error()), "{}", report.name);
        if let Some(diff) = compare_golden(&case.with_extension("expected"), &rendered) {
            failures.push(diff);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // File-size and step-count limits need generated inputs: `limits.rs` covers them. A process
    // defined twice needs two files: `check_files`'s tests in `dsl` cover it. A version that
    // breaks a deployed caller needs a deployed set: the deploy tests of `api/tests/http_owners.rs`.
    let generated = [Code::FileTooLarge, Code::TooManySteps, Code::NotUtf8, Code::DuplicateProcess, Code::BreaksCaller];
    let untested: Vec<_> =
        Code::ALL.iter().filter(|c| !seen_codes.contains(c) && !generated.contains(c)).map(|c| c.as_str()).collect();
    assert!(untested.is_empty(), "no golden file shows these codes: {untested:?}");
}

#[test]
fn every_code_is_documented() {
    let docs = read(&root().join("docs/diagnostics.md"));
    for code in Code::ALL {
        let heading = format!("## {} — {}", code.as_str(), code.title());
        assert!(docs.contains(&heading), "docs/diagnostics.md lacks the heading `{heading}`");
    }
}
