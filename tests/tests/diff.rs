//! Golden tests of the structural diff (`caseflow diff`): each `tests/diff/NAME.new.flow` is
//! compared with `NAME.old.flow` beside it or, when there is none, with the shipped process of
//! the same id, and the rendered diff and its JSON must equal `NAME.expected`.
//! `UPDATE_EXPECT=1 cargo test -p caseflow-tests --test diff` rewrites the expectations.

use caseflow_dsl::diff::diff;
use caseflow_dsl::parse::parse;
use caseflow_tests::*;

fn ast(text: &str) -> caseflow_dsl::ast::Process {
    parse(text).unwrap_or_else(|d| panic!("{d:?}"))
}

#[test]
fn diffs_match_golden_files() {
    let cases: Vec<_> =
        files("tests/diff", "flow").into_iter().filter(|p| p.to_string_lossy().ends_with(".new.flow")).collect();
    assert!(!cases.is_empty(), "the diff folder lost its files");
    let mut failures = Vec::new();
    for new_path in cases {
        let new = ast(&read(&new_path));
        let stem = new_path.to_string_lossy().trim_end_matches(".new.flow").to_string();
        let old_path = std::path::PathBuf::from(format!("{stem}.old.flow"));
        let old_path =
            if old_path.exists() { old_path } else { root().join(format!("processes/{}.flow", new.id.name)) };
        let d = diff(&ast(&read(&old_path)), &new);
        let rendered = format!("{}--- json\n{}\n", d.render(), serde_json::to_string_pretty(&d).unwrap());
        if let Some(f) = compare_golden(std::path::Path::new(&format!("{stem}.expected")), &rendered) {
            failures.push(f);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn layout_comments_and_the_order_of_steps_are_not_changes() {
    let old = "process p {\n  fields { a: text }\n  start -> one\n  task one { assign role cs_rep -> two }\n  task two { assign role cs_rep -> done }\n  end done\n}\n";
    let new = "# a comment\nprocess p {\n  fields {\n    a: text   # trailing\n  }\n\n  start -> one\n\n  task two {\n    assign role cs_rep\n    -> done\n  }\n\n  task one {\n    assign role cs_rep\n    -> two\n  }\n\n  end done\n}\n";
    let d = diff(&ast(old), &ast(new));
    assert!(d.is_empty(), "{}", d.render());
    assert_eq!(d.render(), "no structural change\n");
}

#[test]
fn every_shipped_process_is_unchanged_against_itself_and_its_formatted_text() {
    for file in shipped_processes() {
        let p = ast(&file.text);
        let formatted = caseflow_dsl::fmt::format_source(&file.text).unwrap();
        assert!(diff(&p, &p).is_empty(), "{}", file.name);
        assert!(diff(&p, &ast(&formatted)).is_empty(), "{}: {}", file.name, diff(&p, &ast(&formatted)).render());
    }
}
