//! What the language server knows about one `.flow` document, computed from its text, the
//! rules and the other processes of its folder: pure functions, no protocol.

use caseflow_core::eval::{eval, Scope};
use caseflow_core::value::Value;
use caseflow_dsl::ast::{self, StepKind, TypeExpr};
use caseflow_dsl::{check_files, Diagnostic, SourceFile};
use caseflow_engine::RuleSet;
use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use std::collections::BTreeMap;

/// Byte offsets ↔ LSP positions (0-based line, UTF-16 column: labels are often Chinese).
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> LineIndex<'a> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    pub fn position(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|s| *s <= offset) - 1;
        let start = self.starts[line];
        let col: usize = self.text[start..offset].chars().map(char::len_utf16).sum();
        (line as u32, col as u32)
    }

    pub fn offset(&self, line: u32, col: u32) -> usize {
        let Some(&start) = self.starts.get(line as usize) else { return self.text.len() };
        let end = self.starts.get(line as usize + 1).copied().unwrap_or(self.text.len());
        let mut units = 0u32;
        for (i, c) in self.text[start..end].char_indices() {
            if units >= col || c == '\n' {
                return start + i;
            }
            units += c.len_utf16() as u32;
        }
        end
    }
}

/// Every diagnostic of the document, checked with the other `.flow` files of its folder (so a
/// `call` finds its process) against the rules' names.
pub fn diagnostics(name: &str, text: &str, siblings: &[SourceFile], rules: Option<&RuleSet>) -> Vec<Diagnostic> {
    let mut sources = vec![SourceFile { name: name.to_string(), text: text.to_string() }];
    sources.extend(siblings.iter().cloned());
    let catalog = rules.map(RuleSet::catalog);
    let mut reports = check_files(&sources, catalog.as_ref());
    reports.swap_remove(0).checked.diagnostics
}

/// An identifier in the text: where, and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// The identifier at a byte offset (or just before it).
pub fn word_at(text: &str, offset: usize) -> Option<Word> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let offset = offset.min(text.len());
    // Just after the last character that is not part of a name (which may be several bytes).
    let start = text[..offset].char_indices().rev().find(|(_, c)| !is_ident(*c)).map_or(0, |(i, c)| i + c.len_utf8());
    let end = text[offset..].find(|c: char| !is_ident(c)).map_or(text.len(), |i| offset + i);
    (start < end && !text[start..].starts_with(|c: char| c.is_ascii_digit())).then(|| Word {
        start,
        end,
        text: text[start..end].to_string(),
    })
}

/// Every whole-word occurrence of `name` outside strings and comments.
pub fn occurrences(text: &str, name: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let (mut i, mut in_string) = (0, false);
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if b == b'\\' {
                i += 2;
                continue;
            }
            in_string = b != b'"';
            i += 1;
        } else if b == b'"' {
            in_string = true;
            i += 1;
        } else if b == b'#' {
            i = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
        } else if is_ident(b) {
            let start = i;
            while i < bytes.len() && is_ident(bytes[i]) {
                i += 1;
            }
            if &text[start..i] == name {
                out.push((start, i));
            }
        } else {
            i += 1;
        }
    }
    out
}

/// What a name in the document declares.
pub enum Declared<'a> {
    Step(&'a ast::Step),
    Field(&'a ast::FieldDecl),
}

pub fn declared<'a>(process: &'a ast::Process, name: &str) -> Option<Declared<'a>> {
    if let Some(s) = process.steps.iter().find(|s| s.id.name == name) {
        return Some(Declared::Step(s));
    }
    process.fields.iter().find(|f| f.name.name == name).map(Declared::Field)
}

/// Hover text (Markdown) for the name at `offset`.
pub fn hover(
    process: &ast::Process,
    text: &str,
    offset: usize,
    rules: Option<&RuleSet>,
    now: DateTime<Utc>,
) -> Option<String> {
    // Where a person points at a deadline (`due 1 workday`, `due rules.response_time[urgency]`,
    // the keyword or anywhere in its expression): the due times it gives.
    let line_start = text[..offset.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    for s in &process.steps {
        let StepKind::Task(t) = &s.kind else { continue };
        let Some(due) = &t.due else { continue };
        let on_clause = due.span.contains(&offset)
            || (line_start <= due.span.start
                && text[line_start..due.span.start].trim() == "due"
                && offset < due.span.end);
        if on_clause {
            let mut out = format!("**deadline** of `{}`: `due {}`", s.id.name, &text[due.span.clone()]);
            match rules {
                Some(rules) => out.push_str(&due_examples(process, due, rules, now)),
                None => out.push_str(
                    "

(no rules folder found: the due times cannot be computed)",
                ),
            }
            return Some(out);
        }
    }
    let word = word_at(text, offset)?;
    match declared(process, &word.text)? {
        Declared::Field(f) => {
            let mut out = format!("**field** `{}`: {}", f.name.name, type_text(&f.ty));
            if let Some(l) = &f.label {
                out.push_str(&format!(" — {l}"));
            }
            let flags: Vec<&str> = [(f.required, "required"), (f.sensitive, "sensitive"), (f.own, "own")]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| *n)
                .collect();
            if !flags.is_empty() {
                out.push_str(&format!("\n\n{}", flags.join(", ")));
            }
            Some(out)
        }
        Declared::Step(s) => {
            let body = caseflow_dsl::fmt::step_to_string(s);
            let kind = body.split_whitespace().next().unwrap_or("step");
            let mut out = format!("**{kind}** `{}`", s.id.name);
            if let Some(l) = &s.label {
                out.push_str(&format!(" — {l}"));
            }
            for line in body.lines().map(str::trim).filter(|l| l.starts_with("assign") || l.starts_with("due")) {
                out.push_str(&format!("\n\n`{line}`"));
            }
            if let (StepKind::Task(t), Some(rules)) = (&s.kind, rules) {
                if let Some(due) = &t.due {
                    out.push_str(&due_examples(process, due, rules, now));
                }
            }
            Some(out)
        }
    }
}

fn type_text(t: &TypeExpr) -> String {
    match t {
        TypeExpr::Text => "text".into(),
        TypeExpr::Decimal => "decimal".into(),
        TypeExpr::Bool => "bool".into(),
        TypeExpr::Date => "date".into(),
        TypeExpr::DateTime => "datetime".into(),
        TypeExpr::User => "user".into(),
        TypeExpr::Int { range: Some((a, b)) } => format!("int({a}..{b})"),
        TypeExpr::Int { range: None } => "int".into(),
        TypeExpr::Choice(values) => {
            format!("choice({})", values.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", "))
        }
        TypeExpr::ListOfText => "list".into(),
    }
}

/// The due time a deadline gives for a case started now and on the coming Friday evening, on
/// the business calendar; per value of a choice field when it depends on one.
fn due_examples(process: &ast::Process, due: &ast::Expr, rules: &RuleSet, now: DateTime<Utc>) -> String {
    let zone = rules.calendar.time_zone;
    let local = now.with_timezone(&zone);
    let days_to_friday = (4 + 7 - local.weekday().num_days_from_monday() as i64) % 7;
    let friday = (local.date_naive() + Duration::days(days_to_friday)).and_hms_opt(18, 30, 0).expect("a time");
    let friday = zone.from_local_datetime(&friday).earliest().map(|t| t.with_timezone(&Utc)).unwrap_or(now);
    let starts = [("now", now), ("Friday 18:30", friday)];
    let show = |t: DateTime<Utc>| t.with_timezone(&zone).format("%a %Y-%m-%d %H:%M").to_string();
    let due_for = |fields: &BTreeMap<String, Value>, start: DateTime<Utc>| -> Option<DateTime<Utc>> {
        let declared = |n: &str| process.fields.iter().any(|f| f.name.name == n);
        let scope = Scope { fields, declared: &declared, rules, now: start, tally: &|_, _| 0, actor_of: &|_| None };
        match eval(due, &scope).ok()? {
            Value::Duration(span) => rules.calendar.add(start, span).ok(),
            Value::DateTime(t) => Some(t),
            _ => None,
        }
    };
    let mut out = String::from("\n\nDue, on the calendar:");
    let empty = BTreeMap::new();
    if due_for(&empty, now).is_some() {
        for (what, start) in starts {
            if let Some(d) = due_for(&empty, start) {
                out.push_str(&format!("\n- started {what} ({}): **{}**", show(start), show(d)));
            }
        }
        return out;
    }
    for f in &process.fields {
        let TypeExpr::Choice(values) = &f.ty else { continue };
        let per_value: Vec<String> = values
            .iter()
            .filter_map(|v| {
                let fields = [(f.name.name.clone(), Value::Text(v.name.clone()))].into();
                let times: Vec<String> = starts.iter().filter_map(|(_, s)| due_for(&fields, *s).map(show)).collect();
                (times.len() == 2).then(|| {
                    format!("\n- {} = {}: **{}** (now), **{}** (Friday 18:30)", f.name.name, v.name, times[0], times[1])
                })
            })
            .collect();
        if per_value.len() == values.len() {
            out.extend(per_value);
            return out;
        }
    }
    String::new()
}

/// Where completion is asked: what may come there.
pub fn completions(
    process: Option<&ast::Process>,
    text: &str,
    offset: usize,
    rules: Option<&RuleSet>,
) -> Vec<(String, &'static str)> {
    let line_start = text[..offset.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..offset.min(text.len())];
    let partial_start = before
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let context = before[..partial_start].trim_end();
    let steps =
        || process.map(|p| p.steps.iter().map(|s| (s.id.name.clone(), "step")).collect::<Vec<_>>()).unwrap_or_default();
    let fields = || {
        process.map(|p| p.fields.iter().map(|f| (f.name.name.clone(), "field")).collect::<Vec<_>>()).unwrap_or_default()
    };
    if context.ends_with("->")
        || context.ends_with("same as")
        || context.ends_with(" of")
        || context.ends_with(',') && context.contains("->")
    {
        return steps();
    }
    if context.ends_with("role") || context.ends_with("escalate to role") {
        return rules.map(|r| r.roles.keys().map(|k| (k.clone(), "role")).collect()).unwrap_or_default();
    }
    if context.ends_with("rules.") || before[..partial_start].ends_with("rules.") {
        let Some(r) = rules else { return Vec::new() };
        return r
            .values
            .keys()
            .map(|k| (k.clone(), "value"))
            .chain(r.tables.keys().map(|k| (k.clone(), "table")))
            .collect();
    }
    if context.ends_with("==") || context.ends_with("!=") || context.ends_with(" in") {
        // A choice's values, for the field just compared.
        let field = context.trim_end_matches("==").trim_end_matches("!=").trim_end_matches(" in").trim_end();
        let field = field.rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or_default();
        if let Some(ast::FieldDecl { ty: TypeExpr::Choice(values), .. }) =
            process.and_then(|p| p.fields.iter().find(|f| f.name.name == field))
        {
            return values.iter().map(|v| (v.name.clone(), "value")).collect();
        }
    }
    let mut all = fields();
    all.extend(steps());
    all
}

/// A field or step in the outline.
pub struct Symbol {
    pub name: String,
    pub kind: &'static str,
    pub label: Option<String>,
    /// The whole declaration, and its name.
    pub whole: std::ops::Range<usize>,
    pub name_span: std::ops::Range<usize>,
}

/// The document's outline: its fields and its steps.
pub fn symbols(process: &ast::Process) -> Vec<Symbol> {
    let mut out: Vec<Symbol> = process
        .fields
        .iter()
        .map(|f| Symbol {
            name: f.name.name.clone(),
            kind: "field",
            label: f.label.clone(),
            whole: f.span.clone(),
            name_span: f.name.span.clone(),
        })
        .collect();
    out.extend(process.steps.iter().map(|s| Symbol {
        name: s.id.name.clone(),
        kind: s.kind.keyword(),
        label: s.label.clone(),
        whole: s.span.clone(),
        name_span: s.id.span.clone(),
    }));
    out
}

/// Where a `rules.NAME` (a value or a decision table) or a role is defined in the rules files:
/// (file, byte offset of its key), as the rules loader reads them.
pub fn rules_definition(files: &[caseflow_engine::RulesFile], name: &str) -> Option<(String, usize)> {
    caseflow_core::rules::definition_of(files, name).map(|(file, span)| (file, span.start))
}
