//! Named limits: oversized or pathological input gets a diagnostic, never a crash or a hang.

use caseflow_dsl::parse::{EXPR_NODES_MAX, NESTING_DEPTH_MAX, SOURCE_BYTES_MAX};
use caseflow_dsl::{check::STEPS_MAX, compile, synth, CheckContext, Code};

fn codes(source: &str) -> Vec<Code> {
    compile(source, &CheckContext::default()).diagnostics.iter().map(|d| d.code).collect()
}

#[test]
fn file_over_the_size_limit_is_refused() {
    let mut source = synth::process_with_steps(10);
    source.push_str(&"#".repeat(SOURCE_BYTES_MAX));
    assert_eq!(codes(&source), [Code::FileTooLarge]);
}

#[test]
fn too_many_steps_are_refused() {
    let source = synth::process_with_steps(STEPS_MAX + 1);
    assert!(source.len() <= SOURCE_BYTES_MAX, "the generated file must hit the step limit, not the size limit");
    assert_eq!(codes(&source), [Code::TooManySteps]);
}

#[test]
fn a_large_valid_process_checks_clean() {
    let source = synth::process_with_steps(2_000);
    let checked = compile(&source, &CheckContext::default());
    assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
    assert!(checked.process.expect("clean").steps.len() >= 2_000);
}

fn in_auto_step(expr: &str) -> String {
    format!("process p {{ source \"t\" fields {{ x: int }} start -> a auto a {{ set x = {expr} -> done }} end done }}")
}

#[test]
fn deep_nesting_is_refused_before_the_parser_recurses() {
    // Far deeper than any stack would survive if pest saw it.
    let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
    assert_eq!(codes(&in_auto_step(&deep)), [Code::NestingTooDeep]);
    // Unbalanced and in lists too.
    assert_eq!(codes(&in_auto_step(&"[".repeat(NESTING_DEPTH_MAX + 1))), [Code::NestingTooDeep]);
    // At the limit it still parses.
    let ok = format!("{}1{}", "(".repeat(NESTING_DEPTH_MAX - 3), ")".repeat(NESTING_DEPTH_MAX - 3));
    assert!(codes(&in_auto_step(&ok)).is_empty());
}

#[test]
fn long_operator_chains_are_refused() {
    let long = vec!["1"; EXPR_NODES_MAX].join(" + ");
    assert_eq!(codes(&in_auto_step(&long)), [Code::NestingTooDeep]);
    // Spread over lines changes nothing.
    assert_eq!(codes(&in_auto_step(&long.replace(' ', "\n"))), [Code::NestingTooDeep]);
    let fine = vec!["1"; EXPR_NODES_MAX / 4].join(" + ");
    assert!(codes(&in_auto_step(&fine)).is_empty());
    // Prefix operators recurse too.
    let nots = format!("{}true", "not ".repeat(100_000));
    let source = format!(
        "process p {{ source \"t\" fields {{ b: bool }} start -> a auto a {{ set b = {nots} -> done }} end done }}"
    );
    assert_eq!(codes(&source), [Code::NestingTooDeep]);
    let negs = format!("{}1", "- ".repeat(100_000));
    assert_eq!(codes(&in_auto_step(&negs)), [Code::NestingTooDeep]);
}

/// Text as editors save it: a file that is not UTF-8 says where and what to do; a UTF-8 file
/// with a byte-order mark, or a tab between a number and its unit, is fine.
#[test]
fn encodings_and_blanks_editors_produce() {
    let mut bytes = b"process p {\n  source \"t\"\n  start -> done\n  end done \"".to_vec();
    bytes.extend([0xb2, 0xe9, b'"', b'\n', b'}']); // GBK, not UTF-8
    let (text, d) = *caseflow_dsl::decode(bytes).expect_err("not UTF-8");
    assert_eq!(d.code, Code::NotUtf8);
    assert_eq!(&text[..d.span.start], "process p {\n  source \"t\"\n  start -> done\n  end done \"");
    assert!(d.hint.as_deref().is_some_and(|h| h.contains("UTF-8")));

    let valid = "process p {\n  source \"t\"\n  start -> a\n  task a { assign role cs_rep due 3\tworkdays -> done }\n  end done\n}\n";
    assert_eq!(codes(valid), Vec::<Code>::new(), "a tab between the number and the unit");
    let marked = format!("\u{feff}{valid}");
    assert_eq!(codes(&marked), Vec::<Code>::new(), "a byte-order mark");
    // Positions in a marked file still point at the right place.
    let broken = format!("\u{feff}{}", valid.replace("-> done }", "-> nowhere }"));
    let d = compile(&broken, &CheckContext::default()).diagnostics;
    assert_eq!(d[0].code, Code::UnknownStep);
    assert_eq!(&broken[d[0].span.clone()], "nowhere");
}

/// Every valid file draws, whatever its shape: the SVG of 3,000 steps whose decisions skip
/// ahead (which the old layout never finished) names every step. Its time is a benchmark's
/// (`cargo bench -p caseflow-dsl --bench graph`), not this test's.
#[test]
fn large_graphs_with_skipping_decisions_draw() {
    let source = synth::skipping_decisions(3_000);
    let model = compile(&source, &CheckContext::default()).process.expect("checks clean");
    let svg = caseflow_dsl::graph::to_svg(&model).expect("draws");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for i in (0..3_000).step_by(97) {
        assert!(svg.contains(&format!(">s{i}</tspan>")), "step s{i} is drawn");
    }
}
