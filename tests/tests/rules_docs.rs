//! Every ```toml block of docs/rules.md is a valid rules file on its own.

use caseflow_engine::{RuleSet, RulesFile};
use caseflow_tests::*;

#[test]
fn rules_reference_examples_load() {
    let doc = read(&root().join("docs/rules.md"));
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in doc.lines().enumerate() {
        match (&mut current, line.trim_end()) {
            (None, "```toml") => current = Some((i + 2, String::new())),
            (Some(_), "```") => blocks.push(current.take().expect("inside a block")),
            (Some((_, text)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(blocks.len() >= 4, "docs/rules.md lost its examples");
    for (line, text) in blocks {
        let file = RulesFile { name: format!("docs/rules.md (example at line {line})"), text };
        if let Err(errors) = RuleSet::load(&[file]) {
            panic!("{}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"));
        }
    }
}
