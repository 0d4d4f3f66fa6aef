//! The language reference's examples and the shipped processes: each must check clean
//! (no errors, no warnings) against the shipped rules, and survive `fmt` unchanged in meaning.

use caseflow_dsl::{check_files, diag, fmt, SourceFile};
use caseflow_tests::*;

fn assert_clean(files: &[SourceFile], how_many: usize) {
    let reports = check_files(files, Some(&shipped_catalog()));
    let mut problems = String::new();
    for (report, file) in reports.iter().zip(files).take(how_many) {
        if !report.checked.diagnostics.is_empty() {
            problems.push_str(&diag::render(&report.name, &file.text, &report.checked.diagnostics, false));
        }
        assert!(report.checked.diagnostics.is_empty() || !problems.is_empty());
    }
    assert!(problems.is_empty(), "{problems}");
}

/// Formatting is idempotent and keeps the meaning: the formatted text checks to the same model.
fn assert_fmt_stable(name: &str, text: &str) {
    let once = fmt::format_source(text).unwrap_or_else(|d| panic!("{name} does not parse: {d:?}"));
    let twice = fmt::format_source(&once).expect("formatted text parses");
    assert_eq!(once, twice, "{name}: formatting twice changed the text");
    let comments = |t: &str| t.lines().filter(|l| l.trim_start().starts_with('#') || l.contains("  #")).count();
    assert_eq!(comments(text), comments(&once), "{name}: formatting lost or merged comments");
    let model = |t: &str| {
        let files = [SourceFile { name: name.into(), text: t.into() }];
        let mut all = files.to_vec();
        all.extend(shipped_processes());
        let r = check_files(&all, None);
        serde_json::to_string(&r[0].checked.process.as_ref().map(|p| (&p.fields, p.steps.len(), &p.start)))
            .expect("model serialises")
    };
    // Spans move when text is reformatted; compare what does not depend on layout.
    let strip = |s: String| s.split("\"span\"").count();
    assert_eq!(strip(model(text)), strip(model(&once)), "{name}: formatting changed the model");
}

#[test]
fn language_reference_examples_check_clean() {
    let doc = read(&root().join("docs/language.md"));
    let blocks = code_blocks(&doc, "flow");
    assert!(blocks.len() >= 9, "the reference lost its examples ({} left)", blocks.len());
    let mut files: Vec<SourceFile> = blocks
        .iter()
        .map(|(line, text)| SourceFile {
            name: format!("docs/language.md (example at line {line})"),
            text: text.clone(),
        })
        .collect();
    let examples = files.len();
    files.extend(shipped_processes());
    assert_clean(&files, examples);
    for f in &files[..examples] {
        assert_fmt_stable(&f.name, &f.text);
    }
}

#[test]
fn shipped_processes_check_clean_and_are_formatted() {
    let files = shipped_processes();
    assert!(!files.is_empty());
    assert_clean(&files, files.len());
    for f in &files {
        let formatted = fmt::format_source(&f.text).expect("shipped process parses");
        assert_eq!(formatted, f.text, "{} is not formatted: run `caseflow fmt {}`", f.name, f.name);
        assert_fmt_stable(&f.name, &f.text);
    }
}

/// The pattern examples of `tests/patterns/` (walked by their scenarios) are as clean as the
/// shipped processes.
#[test]
fn pattern_examples_check_clean_and_are_formatted() {
    let files: Vec<SourceFile> = files("tests/patterns", "flow").iter().map(|p| source_file(p)).collect();
    assert!(files.len() >= 8, "the pattern examples went missing");
    let mut all = files.clone();
    all.extend(shipped_processes());
    assert_clean(&all, files.len());
    for f in &files {
        let formatted = fmt::format_source(&f.text).expect("a pattern example parses");
        assert_eq!(formatted, f.text, "{} is not formatted: run `caseflow fmt {}`", f.name, f.name);
        assert_fmt_stable(&f.name, &f.text);
    }
}

#[test]
fn every_construct_is_shown_in_the_reference() {
    let doc = read(&root().join("docs/language.md"));
    let code: String = code_blocks(&doc, "flow").into_iter().map(|(_, t)| t).collect();
    for construct in [
        "process ",
        "doc ",
        "source ",
        "key ",
        "fields {",
        " text ",
        " int ",
        "int(",
        " decimal ",
        " bool ",
        " date ",
        " datetime ",
        "choice(",
        "list text",
        "required",
        "sensitive",
        "start ->",
        "index ",
        "task ",
        "assign role",
        "assign same as",
        "assign field",
        "notify user",
        " by ",
        "candidates",
        "due ",
        "remind every",
        "asks",
        "when overdue:",
        "when overdue +",
        "%:",
        "when message",
        "escalate to",
        "raise priority",
        "auto ",
        "set ",
        "lookup ",
        "-> decide",
        "else ->",
        " in [",
        " and ",
        "split ",
        "join ",
        "wait ",
        "for ",
        "until ",
        "every ",
        "on message",
        "on timeout",
        "call ",
        "input ",
        "output ",
        "end ",
        "rules.",
        "now()",
        " + ",
        " - ",
        " when ",
        " on first",
        "for each ",
        " one at a time",
        "collect ",
        "not same as",
        "keep message",
        "manager of assignee",
        "familiar by",
        "tally ",
        " own",
        ": user ",
    ] {
        assert!(code.contains(construct), "no example in docs/language.md uses `{}`", construct.trim());
    }
}

/// `docs/patterns.md` claims what the language does: every test, file and example it cites
/// exists, and the count of directly supported WCP-1..20 it states is the table's.
#[test]
fn the_patterns_table_cites_what_exists() {
    let table = read(&root().join("docs/patterns.md"));
    let language = read(&root().join("docs/language.md"));
    let tests = |file: &str| read(&root().join(file));
    let sources = [
        (
            "core",
            ["cases", "control_flow", "versions"]
                .iter()
                .map(|f| tests(&format!("engine/core/tests/{f}.rs")))
                .collect::<String>(),
        ),
        ("service", tests("engine/tests/service.rs")),
        ("http", tests("api/tests/http.rs")),
    ];
    let mut direct = 0;
    let mut problems = Vec::new();
    for row in table.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| #") && !l.starts_with("| ---")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let example = cells.get(4).map(|c| c.trim_end_matches(" |").trim_end_matches('|').trim()).unwrap_or("");
        for quoted in example.split('`').skip(1).step_by(2) {
            if let Some((suite, name)) = quoted.split_once("::") {
                let name = name.trim_end_matches('…');
                let Some((_, text)) = sources.iter().find(|(s, _)| *s == suite) else {
                    problems.push(format!("{row}: unknown suite `{suite}`"));
                    continue;
                };
                if !text.contains(&format!("fn {name}")) {
                    problems.push(format!("no test `{suite}::{name}…`"));
                }
            } else if quoted.contains('/') && !root().join(quoted).exists() {
                problems.push(format!("no file `{quoted}`"));
            } else if !quoted.contains('/')
                && !quoted.contains(' ')
                && example.contains("language.md")
                && !language.contains(&format!("process {quoted} "))
            {
                problems.push(format!("language.md has no process `{quoted}`"));
            }
        }
        let number: Option<u32> = cells.first().and_then(|c| c.trim_start_matches("| ").trim().parse().ok());
        if table[..table.find(row).unwrap_or(0)].contains("## Control flow: basic")
            && !table[..table.find(row).unwrap_or(0)].contains("## Control flow: WCP-21")
            && number.is_some_and(|n| (1..=20).contains(&n))
            && cells.get(2).is_some_and(|c| c.trim() == "+")
        {
            direct += 1;
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(table.contains(&format!("Directly supported: {direct} of 20")), "the table has {direct} direct WCP-1..20");
    assert!(direct >= 16, "issue 17's target: at least BPMN's 16");
}
