//! Diagnostics: what is wrong in a .flow file, where, and how to fix it.
//!
//! Every diagnostic carries a stable code (`FLOW001`, ...) documented in
//! `docs/diagnostics.md`; tests in `tests/` check that each code has its section there.

use crate::ast::Span;
use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

macro_rules! codes {
    ($($variant:ident = $code:literal, $severity:ident, $title:literal;)*) => {
        /// Stable diagnostic codes. Never renumber: editors and CI logs refer to them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $($variant,)* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$severity,)* }
            }

            /// A short title, used as the heading of the code's section in the docs.
            pub fn title(self) -> &'static str {
                match self { $(Code::$variant => $title,)* }
            }
        }
    };
}

codes! {
    Syntax = "FLOW001", Error, "syntax error";
    FileTooLarge = "FLOW002", Error, "file too large";
    NestingTooDeep = "FLOW003", Error, "nesting too deep";
    TooManySteps = "FLOW004", Error, "too many steps";
    NotUtf8 = "FLOW005", Error, "file is not UTF-8";
    DuplicateStep = "FLOW010", Error, "duplicate step name";
    UnknownStep = "FLOW011", Error, "unknown step";
    UnreachableStep = "FLOW012", Error, "step unreachable from start";
    NoPathToEnd = "FLOW013", Error, "step cannot reach an end";
    MissingStart = "FLOW014", Error, "missing or duplicate start";
    MissingNext = "FLOW015", Error, "step has no way out";
    DecisionNotExhaustive = "FLOW016", Error, "decision may match no branch";
    AutomaticLoop = "FLOW017", Error, "loop with no wait or human step";
    JoinWithoutSplit = "FLOW018", Error, "join matches no split";
    SplitWithoutJoin = "FLOW019", Error, "split has no join";
    DuplicateField = "FLOW020", Error, "duplicate field";
    UnknownField = "FLOW021", Error, "unknown field";
    TypeMismatch = "FLOW022", Error, "type mismatch";
    BadFieldDecl = "FLOW023", Error, "invalid field declaration";
    UnknownChoiceValue = "FLOW024", Error, "unknown choice value";
    UnknownFunction = "FLOW025", Error, "unknown function or wrong arguments";
    BadKey = "FLOW026", Error, "invalid business key template";
    UnknownRole = "FLOW030", Error, "unknown role";
    UnknownRule = "FLOW031", Error, "unknown rule value or table";
    BadHandler = "FLOW032", Error, "invalid deadline handler";
    BadAssignee = "FLOW033", Error, "invalid assignee";
    BadWait = "FLOW034", Error, "invalid wait";
    BadBranch = "FLOW035", Error, "invalid split or join branch";
    BranchLeavesSplit = "FLOW036", Error, "branch leaves its split other than through the join";
    EndlessCalls = "FLOW037", Error, "processes call each other with no task or wait";
    TableGap = "FLOW038", Error, "a decision table has no row for some values of its inputs";
    DuplicateProcess = "FLOW039", Error, "process id defined by two files";
    BreaksCaller = "FLOW040", Error, "the new version breaks a deployed process that calls it";
    BadEach = "FLOW041", Error, "invalid task for each item";
    MessageConflict = "FLOW042", Error, "conflicting message handling";
    UnusedField = "FLOW100", Warning, "unused field";
    TaskWithoutDue = "FLOW101", Warning, "task without a due time";
    MissingSource = "FLOW102", Warning, "process does not cite its source";
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub message: String,
    pub span: Span,
    /// Secondary places that explain the problem ("first defined here").
    pub notes: Vec<(Span, String)>,
    pub hint: Option<String>,
    /// The text that fixes the problem when it replaces `span` (a misspelt name's closest
    /// match): what editors offer as a quick fix, read from here, never from the hint's prose.
    pub suggestion: Option<String>,
}

/// A hint that may carry its fix: the closest candidate (`did you mean `x`?`, and `x` to put in
/// place), or advice when no candidate is close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advice {
    pub hint: String,
    pub replacement: Option<String>,
}

/// Advice with no fix to apply.
impl From<String> for Advice {
    fn from(hint: String) -> Advice {
        Advice { hint, replacement: None }
    }
}

impl From<&str> for Advice {
    fn from(hint: &str) -> Advice {
        Advice { hint: hint.to_string(), replacement: None }
    }
}

/// The closest of `candidates` to `name` as advice with its fix, else `otherwise`.
pub fn closest_or<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    otherwise: impl FnOnce() -> String,
) -> Advice {
    match closest(name, candidates) {
        Some(c) => Advice { hint: format!("did you mean `{c}`?"), replacement: Some(c.to_string()) },
        None => Advice { hint: otherwise(), replacement: None },
    }
}

impl Diagnostic {
    pub fn new(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic { code, message: message.into(), span, notes: Vec::new(), hint: None, suggestion: None }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The hint, with the fix when the advice names one.
    pub fn advice(mut self, advice: Advice) -> Self {
        self.hint = Some(advice.hint);
        self.suggestion = advice.replacement;
        self
    }

    pub fn note(mut self, span: Span, text: impl Into<String>) -> Self {
        self.notes.push((span, text.into()));
        self
    }

    pub fn severity(&self) -> Severity {
        self.code.severity()
    }

    pub fn is_error(&self) -> bool {
        self.severity() == Severity::Error
    }
}

/// A 1-based line and column (in characters, not bytes: labels are often Chinese).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LineCol {
    pub line: usize,
    pub column: usize,
}

pub fn line_col(source: &str, offset: usize) -> LineCol {
    let offset = floor_char_boundary(source, offset.min(source.len()));
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    LineCol { line, column: before[line_start..].chars().count() + 1 }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The machine-readable form of a diagnostic (`caseflow check --format json`, the API).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Diagnostic))]
pub struct JsonDiagnostic {
    pub file: String,
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    pub start: LineCol,
    pub end: LineCol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The text that fixes the problem when it replaces `start`..`end` (a quick fix).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
}

impl Diagnostic {
    pub fn to_json(&self, file: &str, source: &str) -> JsonDiagnostic {
        JsonDiagnostic {
            file: file.to_string(),
            code: self.code.as_str(),
            severity: self.severity(),
            message: self.message.clone(),
            start: line_col(source, self.span.start),
            end: line_col(source, self.span.end),
            hint: self.hint.clone(),
            suggestion: self.suggestion.clone(),
        }
    }
}

/// Renders diagnostics rustc-style: `error[FLOW011]: ...`, the file:line:col, the source
/// line with carets, notes and a hint.
pub fn render(file: &str, source: &str, diagnostics: &[Diagnostic], color: bool) -> String {
    let files = SimpleFile::new(file, source);
    let config = term::Config::default();
    let mut out = if color { termcolor::Buffer::ansi() } else { termcolor::Buffer::no_color() };
    for d in diagnostics {
        let clamp = |s: &Span| {
            let start = floor_char_boundary(source, s.start.min(source.len()));
            let end = floor_char_boundary(source, s.end.clamp(start, source.len()));
            start..end
        };
        let mut labels = vec![Label::primary((), clamp(&d.span))];
        labels.extend(d.notes.iter().map(|(s, t)| Label::secondary((), clamp(s)).with_message(t)));
        let base = match d.severity() {
            Severity::Error => CsDiagnostic::error(),
            Severity::Warning => CsDiagnostic::warning(),
        };
        let mut cs = base.with_code(d.code.as_str()).with_message(&d.message).with_labels(labels);
        if let Some(h) = &d.hint {
            cs = cs.with_notes(vec![format!("hint: {h}")]);
        }
        // Writing into an in-memory buffer cannot fail but for a bad span, which we clamped.
        let _ = term::emit(&mut out, &config, &files, &cs);
    }
    String::from_utf8_lossy(out.as_slice()).into_owned()
}

/// The closest candidate by edit distance, if close enough to be a likely typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = name.chars().count().max(3) / 3 + 1;
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(name, c);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// "did you mean `x`?" for the closest candidate.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    closest(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let src = "ab\n投诉x";
        assert_eq!(line_col(src, 0), LineCol { line: 1, column: 1 });
        assert_eq!(line_col(src, 3), LineCol { line: 2, column: 1 });
        assert_eq!(line_col(src, 6), LineCol { line: 2, column: 2 });
        // Inside a multi-byte char: clamps down rather than panicking.
        assert_eq!(line_col(src, 4), LineCol { line: 2, column: 1 });
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("engineeer", ["engineer", "cs_rep"]).as_deref(), Some("did you mean `engineer`?"));
        assert_eq!(did_you_mean("zzz", ["engineer"]), None);
    }
}
