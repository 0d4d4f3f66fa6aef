//! The loader: each file parsed (toml_edit, for spans), each section handed to its reader,
//! every error with its file, line, column and key.

use super::*;

/// Where a key sits, for messages.
#[derive(Clone)]
pub(super) struct Loc<'a> {
    pub(super) file: &'a RulesFile,
    pub(super) key: String,
    pub(super) span: Option<Range<usize>>,
}

impl<'a> Loc<'a> {
    pub(super) fn child(&self, key: impl fmt::Display, span: Option<Range<usize>>) -> Loc<'a> {
        let key = if self.key.is_empty() { key.to_string() } else { format!("{}.{key}", self.key) };
        Loc { file: self.file, key, span: span.or_else(|| self.span.clone()) }
    }

    pub(super) fn index(&self, i: usize, span: Option<Range<usize>>) -> Loc<'a> {
        Loc { file: self.file, key: format!("{}[{i}]", self.key), span: span.or_else(|| self.span.clone()) }
    }

    pub(super) fn line(&self) -> usize {
        line_col(&self.file.text, self.span.as_ref().map_or(0, |s| s.start)).0
    }
}

pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before[before.rfind('\n').map_or(0, |i| i + 1)..].chars().count() + 1;
    (line, col)
}

#[derive(Default)]
pub(super) struct Loader {
    pub(super) errors: Vec<RulesError>,
    pub(super) calendar: Option<BusinessCalendar>,
    pub(super) roles: BTreeMap<String, Role>,
    pub(super) users: BTreeMap<String, User>,
    pub(super) away: Vec<(Absence, String, usize)>,
    pub(super) roster: Vec<(Shift, String, usize)>,
    pub(super) values: BTreeMap<String, RuleValue>,
    pub(super) tables: BTreeMap<String, DecisionTable>,
    pub(super) key_formats: BTreeMap<String, String>,
    pub(super) permissions: BTreeMap<String, Vec<String>>,
    pub(super) permission_refs: Vec<(String, RulesError)>,
    /// Where each name was defined, to report duplicates and cross-references.
    pub(super) defined_at: BTreeMap<String, String>,
    /// References to check once every file is read: (what, name, where).
    pub(super) user_refs: Vec<(String, String, RulesError)>,
    /// Where each user's `reports_to` was written, for the error of a circle of managers.
    pub(super) manager_at: BTreeMap<String, RulesError>,
}

/// How a section is read.
type SectionReader = fn(&mut Loader, &Loc, &Item);

/// Every section a rules file may hold, and its reader: the one list of section names (the
/// messages for an unknown section name them from here too).
pub(super) const SECTIONS: [(&str, SectionReader); 9] = [
    ("calendar", |l, loc, item| l.calendar_section(loc, item)),
    ("roles", |l, loc, item| l.each_table(loc, item, Loader::role)),
    ("users", |l, loc, item| l.each_table(loc, item, Loader::user)),
    ("away", |l, loc, item| l.each_array_entry(loc, item, Loader::absence)),
    ("roster", |l, loc, item| l.each_array_entry(loc, item, Loader::shift)),
    ("values", |l, loc, item| l.values_section(loc, item)),
    ("decision_tables", |l, loc, item| l.each_table(loc, item, Loader::table)),
    ("key_formats", |l, loc, item| l.key_formats_section(loc, item)),
    ("permissions", |l, loc, item| l.permissions_section(loc, item)),
];

impl Loader {
    pub(super) fn err(&mut self, loc: &Loc, message: impl Into<String>) {
        let (line, column) = line_col(&loc.file.text, loc.span.as_ref().map_or(0, |s| s.start));
        self.errors.push(RulesError {
            file: loc.file.name.clone(),
            line,
            column,
            key: loc.key.clone(),
            message: message.into(),
        });
    }

    pub(super) fn file(&mut self, file: &RulesFile) {
        let root = Loc { file, key: String::new(), span: None };
        if file.text.len() > RULES_FILE_BYTES_MAX {
            self.err(&root, format!("the file is {} bytes; the limit is {RULES_FILE_BYTES_MAX}", file.text.len()));
            return;
        }
        let doc = match ImDocument::parse(file.text.clone()) {
            Ok(d) => d,
            Err(e) => {
                let loc = Loc { file, key: "(syntax)".into(), span: e.span() };
                let message = e.message().trim().replace('\n', "; ");
                self.err(&loc, format!("not valid TOML: {message}"));
                return;
            }
        };
        for (key, item) in doc.as_table().iter() {
            let loc = root.child(key, key_span(doc.as_table(), key).or(item.span()));
            match SECTIONS.iter().find(|(name, _)| *name == key) {
                Some((_, read)) => read(self, &loc, item),
                None => {
                    let names: Vec<&str> = SECTIONS.iter().map(|(name, _)| *name).collect();
                    let hint = closest(key, &names).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default();
                    self.err(&loc, format!("unknown section `{key}`{hint}; the sections are: {}", names.join(", ")))
                }
            }
        }
    }

    pub(super) fn define(&mut self, loc: &Loc, kind: &str, name: &str) -> bool {
        let id = format!("{kind} {name}");
        let here = format!("{}:{}", loc.file.name, loc.line());
        if let Some(first) = self.defined_at.get(&id) {
            let first = first.clone();
            self.err(loc, format!("{kind} `{name}` is already defined at {first}"));
            return false;
        }
        self.defined_at.insert(id, here);
        true
    }

    pub(super) fn each_table(&mut self, loc: &Loc, item: &Item, f: fn(&mut Self, &Loc, &str, &dyn TableLike)) {
        let Some(table) = item.as_table_like() else {
            self.err(loc, "expected a table of named entries, e.g. `[roles.cs_rep]`");
            return;
        };
        for (name, entry) in table.iter() {
            let span = table.get_key_value(name).and_then(|(k, _)| k.span()).or(entry.span());
            let entry_loc = loc.child(name, span);
            if !valid_name(name) {
                self.err(&entry_loc, format!("`{name}` is not a valid name: use lower-case snake_case"));
                continue;
            }
            match entry.as_table_like() {
                Some(t) => f(self, &entry_loc, name, t),
                None => self.err(&entry_loc, "expected a table"),
            }
        }
    }

    pub(super) fn each_array_entry(&mut self, loc: &Loc, item: &Item, f: fn(&mut Self, &Loc, &dyn TableLike)) {
        let entries: Vec<(&dyn TableLike, Option<Range<usize>>)> = match item {
            Item::ArrayOfTables(a) => a.iter().map(|t| (t as &dyn TableLike, t.span())).collect(),
            Item::Value(toml_edit::Value::Array(a)) => {
                let mut out = Vec::new();
                for v in a.iter() {
                    match v.as_inline_table() {
                        Some(t) => out.push((t as &dyn TableLike, v.span())),
                        None => self.err(loc, "expected tables: write `[[away]]` entries"),
                    }
                }
                out
            }
            _ => {
                self.err(loc, format!("expected a list of entries: write `[[{}]]`", loc.key));
                return;
            }
        };
        for (i, (t, span)) in entries.into_iter().enumerate() {
            f(self, &loc.index(i, span), t);
        }
    }

    /// Rejects keys a section does not know, naming the ones it does.
    pub(super) fn known_keys(&mut self, loc: &Loc, t: &dyn TableLike, known: &[&str]) {
        for (k, v) in t.iter() {
            if !known.contains(&k) {
                let hint = closest(k, known).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default();
                let span = t.get_key_value(k).and_then(|(key, _)| key.span()).or(v.span());
                self.err(
                    &loc.child(k, span),
                    format!("unknown key `{k}`{hint}; expected one of: {}", known.join(", ")),
                );
            }
        }
    }

    pub(super) fn str_of<'t>(&mut self, loc: &Loc, t: &'t dyn TableLike, key: &str) -> Option<&'t str> {
        let item = t.get(key)?;
        match item.as_str() {
            Some(s) => Some(s),
            None => {
                self.err(&loc.child(key, item.span()), "expected a string");
                None
            }
        }
    }

    pub(super) fn str_list(&mut self, loc: &Loc, t: &dyn TableLike, key: &str) -> Vec<String> {
        let Some(item) = t.get(key) else { return Vec::new() };
        let here = loc.child(key, item.span());
        match item.as_array() {
            Some(a) => a
                .iter()
                .filter_map(|v| match v.as_str() {
                    Some(s) => Some(s.to_string()),
                    None => {
                        self.err(&here, "expected a list of strings");
                        None
                    }
                })
                .collect(),
            None => {
                self.err(&here, "expected a list of strings, e.g. `[\"a\", \"b\"]`");
                Vec::new()
            }
        }
    }

    pub(super) fn date_of(&mut self, loc: &Loc, item: &Item) -> Option<NaiveDate> {
        let parsed = match item.as_value() {
            Some(toml_edit::Value::Datetime(d)) => {
                let d = d.value();
                match (d.date, d.time) {
                    (Some(date), None) => NaiveDate::from_ymd_opt(date.year.into(), date.month.into(), date.day.into()),
                    _ => None,
                }
            }
            Some(toml_edit::Value::String(s)) => NaiveDate::parse_from_str(s.value(), "%Y-%m-%d").ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.err(loc, "expected a date such as 2026-10-01");
        }
        parsed
    }
}

/// A business-key template: `{date:FORMAT}`, `{seq}` / `{seq:0N}` and `{field}` placeholders,
/// with a `{seq}` so that keys are unique.
pub fn check_key_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    let mut has_seq = false;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').ok_or("a `{` is never closed")? + open;
        let inner = &rest[open + 1..close];
        let (name, format) = inner.split_once(':').unwrap_or((inner, ""));
        match name {
            "date" => {
                use chrono::format::{Item as F, StrftimeItems};
                if format.is_empty() || StrftimeItems::new(format).any(|i| matches!(i, F::Error)) {
                    return Err(format!("`{{{inner}}}` needs a valid date format such as %Y%m%d"));
                }
            }
            "seq" => {
                has_seq = true;
                let zero_padded = format.strip_prefix('0').and_then(|w| w.parse::<u8>().ok()).is_some_and(|w| w <= 12);
                if !(format.is_empty() || zero_padded) {
                    return Err(format!("`{{{inner}}}`: write `{{seq}}` or `{{seq:03}}` (width up to 12)"));
                }
            }
            field if valid_name(field) => {}
            other => return Err(format!("`{{{other}}}` is not date, seq or a field name")),
        }
        rest = &rest[close + 1..];
    }
    if has_seq {
        Ok(())
    } else {
        Err("the template has no `{seq}`, so two cases could get the same key".into())
    }
}

/// Where `name` is defined in the rules files: the key of `[values]` (a scalar value, or a
/// table of them), of `[decision_tables]` or of `[roles]`, found by the loader's own parser:
/// (file name, byte range of the key). For editors' "go to definition".
pub fn definition_of(files: &[RulesFile], name: &str) -> Option<(String, Range<usize>)> {
    for section in ["values", "decision_tables", "roles"] {
        for f in files {
            let Ok(doc) = ImDocument::parse(f.text.clone()) else { continue };
            let Some(table) = doc.as_table().get(section).and_then(Item::as_table_like) else { continue };
            if let Some(span) = table.get_key_value(name).and_then(|(k, _)| k.span()) {
                return Some((f.name.clone(), span));
            }
        }
    }
    None
}

pub(super) fn key_span(table: &Table, key: &str) -> Option<Range<usize>> {
    table.get_key_value(key).and_then(|(k, _)| k.span())
}

pub(super) fn offset_of_line(text: &str, line: usize) -> Range<usize> {
    let start = text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum::<usize>();
    start..start
}

pub(super) fn weekday(i: usize) -> Weekday {
    [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun][i % 7]
}

pub(super) fn parse_period(s: &str) -> Option<Period> {
    let (a, b) = s.split_once('-')?;
    let start = NaiveTime::parse_from_str(a.trim(), "%H:%M").ok()?;
    let end = NaiveTime::parse_from_str(b.trim(), "%H:%M").ok()?;
    (start < end).then_some(Period { start, end })
}

pub(super) fn valid_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

pub(super) fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    caseflow_dsl::diag::closest(name, candidates.iter().copied())
}
