//! Any bytes: parse, check, format, draw. Must never panic, and formatting what parses must be
//! idempotent.
#![no_main]

use caseflow_dsl::{check_files, fmt, graph, SourceFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let reports = check_files(&[SourceFile { name: "fuzz.flow".into(), text: text.clone() }], None);
    let checked = &reports[0].checked;
    assert_eq!(checked.process.is_some(), !checked.diagnostics.iter().any(|d| d.is_error()));
    let _ = caseflow_dsl::diag::render("fuzz.flow", &text, &checked.diagnostics, false);
    if let Some(p) = &checked.process {
        let _ = graph::to_dot(p);
        let _ = graph::to_mermaid(p);
    }
    if let Ok(once) = fmt::format_source(&text) {
        assert_eq!(fmt::format_source(&once).ok().as_deref(), Some(once.as_str()), "fmt not idempotent");
    }
});
