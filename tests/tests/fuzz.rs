//! Property tests: whatever the input — random bytes, or valid files cut, spliced and
//! sprinkled with tokens — parsing, checking, formatting and drawing give diagnostics or
//! results, never a panic. And formatting what parses is idempotent.
//!
//! The suite runs a few hundred cases; for a longer hunt:
//! `PROPTEST_CASES=200000 cargo test --release -p caseflow-tests --test fuzz`.

use caseflow_dsl::{check_files, fmt, graph, SourceFile};
use caseflow_tests::*;
use proptest::prelude::*;
use std::sync::OnceLock;

/// Valid and invalid .flow texts to mutate: shipped processes, golden files, a synthetic one.
fn corpus() -> &'static [String] {
    static CORPUS: OnceLock<Vec<String>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut texts: Vec<String> = files("processes", "flow").iter().map(|p| read(p)).collect();
        texts.extend(files("tests/diagnostics", "flow").iter().map(|p| read(p)));
        texts.push(caseflow_dsl::synth::process_with_steps(20));
        texts
    })
}

const TOKENS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "->",
    ":",
    ",",
    "=",
    "=>",
    "\"",
    "#",
    "\n",
    " ",
    "task",
    "auto",
    "wait",
    "split",
    "join",
    "call",
    "end",
    "start",
    "when",
    "else",
    "decide",
    "due",
    "assign",
    "role",
    "same as",
    "field",
    "asks",
    "not",
    "and",
    "or",
    "in",
    "rules.x[",
    "now()",
    "1h",
    "3 workdays",
    "2026-13-45",
    "99999999999999999999",
    "%",
    "overdue",
    "-",
    "+",
    "*",
    "/",
    "==",
    "<",
    "接收",
    "\\",
    "every",
    "until",
    "on message m ->",
    "process",
    "of",
];

fn exercise(text: &str) {
    let file = SourceFile { name: "fuzz.flow".into(), text: text.to_string() };
    let reports = check_files(&[file], Some(&shipped_catalog()));
    let report = &reports[0];
    // The model exists exactly when no diagnostic is an error.
    assert_eq!(report.checked.process.is_some(), !report.checked.diagnostics.iter().any(|d| d.is_error()));
    let _ = caseflow_dsl::diag::render("fuzz.flow", text, &report.checked.diagnostics, false);
    for d in &report.checked.diagnostics {
        let _ = d.to_json("fuzz.flow", text);
    }
    if let Some(p) = &report.checked.process {
        let _ = graph::to_dot(p);
        let _ = graph::to_mermaid(p);
    }
    if let Ok(once) = fmt::format_source(text) {
        let twice = fmt::format_source(&once).expect("formatted output must parse");
        assert_eq!(once, twice, "fmt is not idempotent");
    }
}

/// 256 cases by default; `PROPTEST_CASES` raises it for a longer hunt.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, token: usize },
    Duplicate { at: usize, len: usize },
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for m in mutations {
        let n = bytes.len().max(1);
        match *m {
            Mutation::Delete { at, len } => {
                let at = at % n;
                let end = (at + len).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            Mutation::Insert { at, token } => {
                let at = (at % n).min(bytes.len());
                bytes.splice(at..at, TOKENS[token % TOKENS.len()].bytes());
            }
            Mutation::Duplicate { at, len } => {
                let at = (at % n).min(bytes.len());
                let end = (at + len).min(bytes.len());
                let piece = bytes[at..end].to_vec();
                bytes.splice(at..at, piece);
            }
        }
    }
    // Mutations may split a multi-byte character; the checker only ever sees valid UTF-8.
    String::from_utf8_lossy(&bytes).into_owned()
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), any::<usize>()).prop_map(|(at, token)| Mutation::Insert { at, token }),
        (any::<usize>(), 0usize..200).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2_000)) {
        exercise(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_token_soup_never_panics(tokens in proptest::collection::vec(any::<usize>(), 0..300)) {
        let text: String = tokens.iter().map(|t| TOKENS[t % TOKENS.len()]).collect::<Vec<_>>().join(" ");
        exercise(&text);
    }

    #[test]
    fn mutated_files_never_panic(
        which in any::<usize>(),
        mutations in proptest::collection::vec(mutation(), 1..8),
    ) {
        let corpus = corpus();
        exercise(&apply(&corpus[which % corpus.len()], &mutations));
    }
}

/// Scenario files cut, spliced and sprinkled with TOML and scenario tokens: `caseflow test`
/// and `POST /processes/{id}/test` run whatever they are given, so a broken file must come
/// back as a failed scenario, never a panic.
mod scenarios {
    use super::*;
    use caseflow_engine::scenario::{self, ScenarioFile, Setup};
    use caseflow_engine::MemoryStore;

    const SCENARIO_TOKENS: &[&str] = &[
        "[[step]]\n",
        "[fields]\n",
        "complete = \"receive\"\n",
        "advance_to = \"2026-11-23T10:00\"\n",
        "advance_to = \"9999-12-31T23:59\"\n",
        "advance_to = \"2026-02-30T25:61\"\n",
        "migrate = { to = 7 }\n",
        "deploy = \"../../etc/passwd\"\n",
        "expect_tasks = [{ step = \"x\" }]\n",
        "fields = { a = { b = 1 } }\n",
        "set_fields = { urgency = [1, [2]] }\n",
        "refused = \"\"\n",
        "message = \"\"\n",
        "cancel = \"x\"\n",
        "suspend = true\n",
        "\"",
        "=",
        "\n",
        "[",
        "]",
        "{",
        "}",
    ];

    fn setup() -> &'static Setup {
        static SETUP: OnceLock<Setup> = OnceLock::new();
        SETUP.get_or_init(|| Setup::new(shipped_processes(), shipped_rules()).expect("the shipped processes deploy"))
    }

    fn scenario_corpus() -> &'static [String] {
        static CORPUS: OnceLock<Vec<String>> = OnceLock::new();
        CORPUS.get_or_init(|| {
            let mut texts = Vec::new();
            for folder in ["processes/tests/complaint", "processes/tests/repair", "processes/tests/risk_review"] {
                texts.extend(files(folder, "toml").iter().map(|p| read(p)));
            }
            texts
        })
    }

    /// Whole lines dropped, or lines of the tokens put in, so that most results are still TOML
    /// (and reach the runner) while a few are not (and reach the reader).
    fn mutate(text: &str, edits: &[(usize, usize, usize)]) -> String {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        for &(at, kind, token) in edits {
            let at = at % (lines.len() + 1);
            match kind % 3 {
                0 if at < lines.len() => {
                    lines.remove(at);
                }
                1 if at < lines.len() => {
                    // A value replaced: the key kept, the value from the tokens.
                    if let Some((key, _)) = lines[at].split_once(" = ") {
                        let value =
                            SCENARIO_TOKENS[token % SCENARIO_TOKENS.len()].split_once(" = ").map_or("1", |(_, v)| v);
                        lines[at] = format!("{key} = {}", value.trim_end());
                    }
                }
                _ => lines.insert(at, SCENARIO_TOKENS[token % SCENARIO_TOKENS.len()].trim_end().to_string()),
            }
        }
        lines.join("\n")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases() / 4))]

        #[test]
        fn mutated_scenarios_fail_cleanly(
            which in any::<usize>(),
            edits in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<usize>()), 1..6),
        ) {
            let corpus = scenario_corpus();
            let text = mutate(&corpus[which % corpus.len()], &edits);
            // No folder: a `deploy` step must be refused, not read a file.
            let file = ScenarioFile { name: "fuzz.toml".into(), text, dir: None };
            let outcome = scenario::run(setup(), &file, MemoryStore::new());
            if let Some(f) = &outcome.failure {
                prop_assert!(!f.found.contains("root:"), "a file was read: {f:?}");
                prop_assert!(!f.action.is_empty() && !f.expected.is_empty(), "{f:?}");
            }
        }
    }
}
