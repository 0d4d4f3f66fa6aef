//! Every ```toml block of docs/rules.md is a valid rules file on its own.

use caseflow_engine::{RuleSet, RulesFile};
use caseflow_tests::*;

#[test]
fn rules_reference_examples_load() {
    let doc = read(&root().join("docs/rules.md"));
    let blocks = code_blocks(&doc, "toml");
    assert!(blocks.len() >= 4, "docs/rules.md lost its examples");
    for (line, text) in blocks {
        let file = RulesFile { name: format!("docs/rules.md (example at line {line})"), text };
        if let Err(errors) = RuleSet::load(&[file]) {
            panic!("{}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"));
        }
    }
}
