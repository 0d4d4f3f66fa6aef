//! The language server answers from whatever the editor holds: half-typed, broken, Chinese,
//! at any position. Shipped files cut and spliced, asked about at random positions, give
//! answers or nothing, never a panic; positions survive the trip to UTF-16 and back.

use caseflow::lsp::analysis::{self, LineIndex};
use caseflow_tests::*;
use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use std::sync::OnceLock;

fn corpus() -> &'static [String] {
    static CORPUS: OnceLock<Vec<String>> = OnceLock::new();
    CORPUS.get_or_init(|| files("processes", "flow").iter().map(|p| read(p)).collect())
}

fn rules() -> &'static caseflow_engine::RuleSet {
    static RULES: OnceLock<caseflow_engine::RuleSet> = OnceLock::new();
    RULES.get_or_init(shipped_rules)
}

const PIECES: &[&str] =
    &["->", " ", "\n", "\"", "#", "{", "}", "rules.", "==", "接收", "task x", "role ", "renamed from "];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128)))]

    #[test]
    fn any_text_any_position_gives_an_answer_or_nothing(
        which in any::<usize>(),
        cuts in proptest::collection::vec((any::<usize>(), 0usize..30, any::<usize>()), 0..5),
        asks in proptest::collection::vec((0u32..200, 0u32..120), 1..8),
    ) {
        let mut text = corpus()[which % corpus().len()].clone().into_bytes();
        for (at, len, piece) in cuts {
            let at = at % text.len().max(1);
            let end = (at + len).min(text.len());
            text.splice(at..end, PIECES[piece % PIECES.len()].bytes());
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        let index = LineIndex::new(&text);
        let parsed = caseflow_dsl::parse::parse(&text).ok();
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap();
        let diagnostics = analysis::diagnostics("fuzz.flow", &text, &[], Some(rules()));
        for d in &diagnostics {
            // A fix, when given, is a word the hint names.
            if let Some(fix) = &d.suggestion {
                prop_assert!(!fix.is_empty() && d.hint.as_deref().is_some_and(|h| h.contains(fix.as_str())), "{d:?}");
            }
            let (l, c) = index.position(d.span.start);
            prop_assert!(index.offset(l, c) <= text.len());
        }
        for (line, col) in asks {
            let offset = index.offset(line, col);
            prop_assert!(text.is_char_boundary(offset));
            let (l, c) = index.position(offset);
            prop_assert_eq!(index.offset(l, c), offset, "a position's round trip");
            if let Some(w) = analysis::word_at(&text, offset) {
                prop_assert_eq!(&text[w.start..w.end], w.text.as_str());
                for (s, e) in analysis::occurrences(&text, &w.text) {
                    prop_assert_eq!(&text[s..e], w.text.as_str());
                }
            }
            let _ = analysis::completions(parsed.as_ref(), &text, offset, Some(rules()));
            if let Some(p) = &parsed {
                let _ = analysis::hover(p, &text, offset, Some(rules()), now);
                let _ = analysis::symbols(p);
            }
        }
    }
}
