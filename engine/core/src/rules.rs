//! The administrators' rules: business calendar, roles and users, absences and the duty roster,
//! named values and decision tables, read from the TOML files of a `rules/` folder.
//!
//! Loading validates everything and reports every problem with its file, line, column and key
//! path; a rule set is only ever built whole. The reference is `docs/rules.md`.

use crate::calendar::{BusinessCalendar, Period};
use crate::duration;
use crate::table::{Condition, DecisionTable, HitPolicy, Row};
use crate::value::Value;
use chrono::{NaiveDate, NaiveTime, Weekday};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use toml_edit::{ImDocument, Item, Table, TableLike};

/// Most rows in one decision table.
pub const TABLE_ROWS_MAX: usize = 10_000;
/// Largest rules file accepted.
pub const RULES_FILE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// One problem in the rules, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RulesError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The dotted key path, e.g. `decision_tables.risk_level.rows[3].impact`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}: {}", self.file, self.line, self.column, self.key, self.message)
    }
}

/// A rules source: a file name (for messages) and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RulesFile {
    pub name: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Strategy {
    RoundRobin,
    FewestOpen,
    Skill,
}

/// `a, b or c`.
fn one_of(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

impl Strategy {
    /// A strategy by the name `.flow` files and rules use (`caseflow_dsl::model::STRATEGIES`).
    pub fn parse(name: &str) -> Option<Strategy> {
        match name {
            "round_robin" => Some(Strategy::RoundRobin),
            "fewest_open" => Some(Strategy::FewestOpen),
            "skill" => Some(Strategy::Skill),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Role {
    pub name: String,
    pub label: Option<String>,
    pub strategy: Strategy,
    /// Who gets the work when no member fits (everyone away or off shift).
    pub fallback: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub id: String,
    pub name: Option<String>,
    pub roles: Vec<String>,
    /// Skill names (product lines, languages), each with a level from 1 to 5 (`"zh"` is level
    /// 1, `"classroom_display:4"` level 4).
    pub skills: Vec<String>,
    /// Their manager: where `escalate to manager of assignee` goes.
    pub reports_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Absence {
    pub user: String,
    pub from: NaiveDate,
    /// Inclusive.
    pub to: NaiveDate,
    pub stand_in: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shift {
    pub user: String,
    pub days: Vec<Weekday>,
    #[serde(skip)]
    pub hours: Period,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RuleValue {
    Scalar(Value),
    Keyed(BTreeMap<String, Value>),
}

/// Everything the rules folder says, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    pub calendar: BusinessCalendar,
    pub roles: BTreeMap<String, Role>,
    pub users: BTreeMap<String, User>,
    pub away: Vec<Absence>,
    pub roster: Vec<Shift>,
    pub values: BTreeMap<String, RuleValue>,
    pub tables: BTreeMap<String, DecisionTable>,
    /// Business-key templates by process id; they take precedence over a process's own `key`.
    pub key_formats: BTreeMap<String, String>,
    /// Actions beyond working one's own tasks (`reassign`, `cancel`) and the roles allowed them;
    /// administrators may always.
    pub permissions: BTreeMap<String, Vec<String>>,
}

/// The actions `[permissions]` may grant.
pub const PERMISSIONS: [&str; 7] =
    ["reassign", "delegate", "cancel", "suspend", "update_fields", "act_for_others", "read_rules"];

impl User {
    /// This user's level in a skill: 0 without it, 1 when no level is written.
    pub fn skill_level(&self, skill: &str) -> u8 {
        self.skills
            .iter()
            .filter_map(|s| match s.split_once(':') {
                Some((name, level)) if name == skill => level.parse().ok(),
                None if s == skill => Some(1),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }
}

impl RuleSet {
    /// Loads and validates a set of files as one rule set. Every file may hold any section;
    /// a name defined twice is an error.
    pub fn load(files: &[RulesFile]) -> Result<RuleSet, Vec<RulesError>> {
        let mut loader = Loader::default();
        for f in files {
            loader.file(f);
        }
        loader.finish()
    }

    /// Members of a role, in id order.
    pub fn members<'a>(&'a self, role: &'a str) -> impl Iterator<Item = &'a User> + 'a {
        self.users.values().filter(move |u| u.roles.iter().any(|r| r == role))
    }

    /// Whether the duty roster has `user` working on `date` (002 §二): a user with shifts works
    /// on their shifts' weekdays; one with none works the calendar's working days.
    pub fn on_duty(&self, user: &str, date: chrono::NaiveDate) -> bool {
        use chrono::Datelike;
        let mut shifts = self.roster.iter().filter(|s| s.user == user).peekable();
        match shifts.peek() {
            None => self.calendar.is_working_day(date),
            Some(_) => shifts.any(|s| s.days.contains(&date.weekday())),
        }
    }

    /// Whether `user` is away (on leave) on `date`, by the rules' `[[away]]` list.
    pub fn is_away(&self, user: &str, date: chrono::NaiveDate) -> bool {
        self.away.iter().any(|a| a.user == user && a.from <= date && date <= a.to)
    }

    /// Looks up `rules.name` or `rules.name[key]`.
    pub fn value(&self, name: &str, key: Option<&str>) -> Option<&Value> {
        match (self.values.get(name)?, key) {
            (RuleValue::Scalar(v), None) => Some(v),
            (RuleValue::Keyed(map), Some(k)) => map.get(k),
            _ => None,
        }
    }

    /// The names the checker of .flow files needs.
    pub fn catalog(&self) -> caseflow_dsl::RuleCatalog {
        caseflow_dsl::RuleCatalog {
            roles: self.roles.keys().cloned().collect(),
            values: self
                .values
                .iter()
                .map(|(n, v)| {
                    use caseflow_dsl::catalog::{RuleValueShape, ValueKind};
                    let kind_of = |v: &Value| match v {
                        Value::Text(_) => ValueKind::Text,
                        Value::Int(_) => ValueKind::Int,
                        Value::Decimal(_) => ValueKind::Decimal,
                        Value::Bool(_) => ValueKind::Bool,
                        Value::Date(_) | Value::DateTime(_) => ValueKind::Date,
                        Value::Duration(_) => ValueKind::Duration,
                        Value::List(_) => ValueKind::Mixed,
                    };
                    let shape = match v {
                        RuleValue::Scalar(x) => RuleValueShape { keyed: false, kind: kind_of(x), keys: Vec::new() },
                        RuleValue::Keyed(map) => {
                            let mut kinds = map.values().map(kind_of);
                            let first = kinds.next().unwrap_or(ValueKind::Mixed);
                            let kind = if kinds.all(|k| k == first) { first } else { ValueKind::Mixed };
                            RuleValueShape { keyed: true, kind, keys: map.keys().cloned().collect() }
                        }
                    };
                    (n.clone(), shape)
                })
                .collect(),
            tables: self
                .tables
                .iter()
                .map(|(n, t)| {
                    (
                        n.clone(),
                        caseflow_dsl::catalog::TableShape {
                            inputs: t.inputs.clone(),
                            outputs: t.outputs.clone(),
                            rows: t.rows.iter().map(|r| r.conditions.iter().map(cell_match).collect()).collect(),
                            output_texts: t
                                .outputs
                                .iter()
                                .enumerate()
                                .map(|(i, o)| {
                                    let texts = t
                                        .rows
                                        .iter()
                                        .filter_map(|r| match r.outputs.get(i) {
                                            Some(Value::Text(s)) => Some(s.clone()),
                                            _ => None,
                                        })
                                        .collect();
                                    (o.clone(), texts)
                                })
                                .collect(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// A table condition as the checker's coverage check sees it.
fn cell_match(c: &crate::table::Condition) -> caseflow_dsl::catalog::CellMatch {
    use crate::table::Condition;
    use caseflow_dsl::catalog::{Atom, CellMatch};
    let atom = |v: &Value| match v {
        Value::Text(t) => Some(Atom::Text(t.clone())),
        Value::Int(i) => Some(Atom::Int(*i)),
        Value::Bool(b) => Some(Atom::Bool(*b)),
        _ => None,
    };
    let atoms = |vs: &[Value]| vs.iter().map(atom).collect::<Option<Vec<_>>>();
    let int = |v: &Option<Value>, inclusive: bool| match v {
        None => Some(None),
        Some(Value::Int(i)) => Some(Some((*i, inclusive))),
        Some(_) => None,
    };
    match c {
        Condition::Any => CellMatch::Any,
        Condition::Equals(v) => atoms(std::slice::from_ref(v)).map_or(CellMatch::Unknown, CellMatch::Is),
        Condition::NotEquals(v) => atoms(std::slice::from_ref(v)).map_or(CellMatch::Unknown, CellMatch::IsNot),
        Condition::OneOf(vs) => atoms(vs).map_or(CellMatch::Unknown, CellMatch::Is),
        Condition::Range { min, max, min_inclusive, max_inclusive } => {
            match (int(min, *min_inclusive), int(max, *max_inclusive)) {
                (Some(min), Some(max)) => CellMatch::IntRange { min, max },
                _ => CellMatch::Unknown,
            }
        }
    }
}

/// Where a key sits, for messages.
#[derive(Clone)]
struct Loc<'a> {
    file: &'a RulesFile,
    key: String,
    span: Option<Range<usize>>,
}

impl<'a> Loc<'a> {
    fn child(&self, key: impl fmt::Display, span: Option<Range<usize>>) -> Loc<'a> {
        let key = if self.key.is_empty() { key.to_string() } else { format!("{}.{key}", self.key) };
        Loc { file: self.file, key, span: span.or_else(|| self.span.clone()) }
    }

    fn index(&self, i: usize, span: Option<Range<usize>>) -> Loc<'a> {
        Loc { file: self.file, key: format!("{}[{i}]", self.key), span: span.or_else(|| self.span.clone()) }
    }

    fn line(&self) -> usize {
        line_col(&self.file.text, self.span.as_ref().map_or(0, |s| s.start)).0
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
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
struct Loader {
    errors: Vec<RulesError>,
    calendar: Option<BusinessCalendar>,
    roles: BTreeMap<String, Role>,
    users: BTreeMap<String, User>,
    away: Vec<(Absence, String, usize)>,
    roster: Vec<(Shift, String, usize)>,
    values: BTreeMap<String, RuleValue>,
    tables: BTreeMap<String, DecisionTable>,
    key_formats: BTreeMap<String, String>,
    permissions: BTreeMap<String, Vec<String>>,
    permission_refs: Vec<(String, RulesError)>,
    /// Where each name was defined, to report duplicates and cross-references.
    defined_at: BTreeMap<String, String>,
    /// References to check once every file is read: (what, name, where).
    user_refs: Vec<(String, String, RulesError)>,
    /// Where each user's `reports_to` was written, for the error of a circle of managers.
    manager_at: BTreeMap<String, RulesError>,
}

const SECTIONS: [&str; 9] =
    ["calendar", "roles", "users", "away", "roster", "values", "decision_tables", "key_formats", "permissions"];

impl Loader {
    fn err(&mut self, loc: &Loc, message: impl Into<String>) {
        let (line, column) = line_col(&loc.file.text, loc.span.as_ref().map_or(0, |s| s.start));
        self.errors.push(RulesError {
            file: loc.file.name.clone(),
            line,
            column,
            key: loc.key.clone(),
            message: message.into(),
        });
    }

    fn file(&mut self, file: &RulesFile) {
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
            match key {
                "calendar" => self.calendar_section(&loc, item),
                "roles" => self.each_table(&loc, item, Self::role),
                "users" => self.each_table(&loc, item, Self::user),
                "away" => self.each_array_entry(&loc, item, Self::absence),
                "roster" => self.each_array_entry(&loc, item, Self::shift),
                "values" => self.values_section(&loc, item),
                "decision_tables" => self.each_table(&loc, item, Self::table),
                "key_formats" => self.key_formats_section(&loc, item),
                "permissions" => self.permissions_section(&loc, item),
                other => {
                    let hint = closest(other, &SECTIONS).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default();
                    self.err(
                        &loc,
                        format!("unknown section `{other}`{hint}; the sections are: {}", SECTIONS.join(", ")),
                    )
                }
            }
        }
    }

    fn define(&mut self, loc: &Loc, kind: &str, name: &str) -> bool {
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

    fn each_table(&mut self, loc: &Loc, item: &Item, f: fn(&mut Self, &Loc, &str, &dyn TableLike)) {
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

    fn each_array_entry(&mut self, loc: &Loc, item: &Item, f: fn(&mut Self, &Loc, &dyn TableLike)) {
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
    fn known_keys(&mut self, loc: &Loc, t: &dyn TableLike, known: &[&str]) {
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

    fn str_of<'t>(&mut self, loc: &Loc, t: &'t dyn TableLike, key: &str) -> Option<&'t str> {
        let item = t.get(key)?;
        match item.as_str() {
            Some(s) => Some(s),
            None => {
                self.err(&loc.child(key, item.span()), "expected a string");
                None
            }
        }
    }

    fn str_list(&mut self, loc: &Loc, t: &dyn TableLike, key: &str) -> Vec<String> {
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

    fn date_of(&mut self, loc: &Loc, item: &Item) -> Option<NaiveDate> {
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

    // ------------------------------------------------------------ calendar

    fn calendar_section(&mut self, loc: &Loc, item: &Item) {
        let Some(t) = item.as_table_like() else {
            self.err(loc, "expected a table: `[calendar]`");
            return;
        };
        if self.calendar.is_some() {
            self.err(loc, "the calendar is defined in more than one file");
            return;
        }
        self.known_keys(
            loc,
            t,
            &["time_zone", "hours", "holidays", "makeup_workdays", "makeup_schedule", "covered_through"],
        );
        let mut cal = BusinessCalendar::standard_china();
        if let Some(tz) = self.str_of(loc, t, "time_zone") {
            match tz.parse::<chrono_tz::Tz>() {
                Ok(z) => cal.time_zone = z,
                Err(_) => {
                    let span = t.get("time_zone").and_then(Item::span);
                    self.err(
                        &loc.child("time_zone", span),
                        format!("`{tz}` is not an IANA time zone such as Asia/Shanghai"),
                    )
                }
            }
        }
        const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        if let Some(hours) = t.get("hours") {
            let hloc = loc.child("hours", hours.span());
            match hours.as_table_like() {
                None => self.err(&hloc, "expected a table of weekdays: `mon = [\"09:00-12:00\", \"13:30-18:00\"]`"),
                Some(h) => {
                    self.known_keys(&hloc, h, &DAYS);
                    for (i, day) in DAYS.iter().enumerate() {
                        if let Some(item) = h.get(day) {
                            let dloc = hloc.child(day, item.span());
                            cal.week[i] = self.periods(&dloc, item);
                        }
                    }
                }
            }
        }
        for (key, set) in [("holidays", &mut cal.holidays), ("makeup_workdays", &mut cal.makeup_workdays)] {
            let Some(item) = t.get(key) else { continue };
            let kloc = loc.child(key, item.span());
            let Some(list) = item.as_array() else {
                self.err(&kloc, "expected a list of dates: `[2026-10-01, 2026-10-02]`");
                continue;
            };
            for (i, v) in list.iter().enumerate() {
                let vloc = kloc.index(i, v.span());
                if let Some(d) = self.date_of(&vloc, &Item::Value(v.clone())) {
                    if !set.insert(d) {
                        self.err(&vloc, format!("{d} is listed twice"));
                    }
                }
            }
        }
        for d in cal.holidays.intersection(&cal.makeup_workdays) {
            self.err(loc, format!("{d} is both a holiday and a make-up working day"));
        }
        if let Some(s) = self.str_of(loc, t, "makeup_schedule") {
            match DAYS.iter().position(|d| *d == s) {
                Some(i) => cal.makeup_schedule = weekday(i),
                None => self.err(loc, format!("makeup_schedule `{s}` is not one of {}", DAYS.join(", "))),
            }
        }
        if cal.week.iter().all(Vec::is_empty) {
            self.err(loc, "the calendar has no working time on any weekday: `3 workdays` could never end");
        }
        // How far the official schedule is known: said, or the end of the last year it lists.
        cal.covered_through = match t.get("covered_through") {
            Some(item) => self.date_of(&loc.child("covered_through", item.span()), item),
            None => cal
                .holidays
                .iter()
                .chain(&cal.makeup_workdays)
                .map(chrono::Datelike::year)
                .max()
                .and_then(|y| chrono::NaiveDate::from_ymd_opt(y, 12, 31)),
        };
        if let Some(last) = cal.covered_through {
            if let Some(later) = cal.holidays.iter().chain(&cal.makeup_workdays).find(|d| **d > last) {
                self.err(
                    loc,
                    format!("{later} is listed, but `covered_through` is {last}: raise it, or remove the date"),
                );
            }
        }
        self.calendar = Some(cal);
    }

    fn periods(&mut self, loc: &Loc, item: &Item) -> Vec<Period> {
        let Some(list) = item.as_array() else {
            self.err(
                loc,
                "expected a list of periods such as [\"09:00-12:00\", \"13:30-18:00\"] (or [] for a day off)",
            );
            return Vec::new();
        };
        let mut out: Vec<Period> = Vec::new();
        for (i, v) in list.iter().enumerate() {
            let vloc = loc.index(i, v.span());
            match v.as_str().and_then(parse_period) {
                Some(p) => out.push(p),
                None => self.err(&vloc, "expected a period \"HH:MM-HH:MM\" with the start before the end"),
            }
        }
        out.sort();
        for w in out.windows(2) {
            if w[1].start < w[0].end {
                self.err(loc, format!("periods {} and {} overlap", w[0], w[1]));
            }
        }
        out
    }

    // ------------------------------------------------------------ people

    fn role(&mut self, loc: &Loc, name: &str, t: &dyn TableLike) {
        self.known_keys(loc, t, &["name", "strategy", "fallback"]);
        if !self.define(loc, "role", name) {
            return;
        }
        let strategy = match self.str_of(loc, t, "strategy") {
            None => Strategy::RoundRobin,
            Some(name) => Strategy::parse(name).unwrap_or_else(|| {
                self.err(
                    &loc.child("strategy", None),
                    format!("`{name}` is not a strategy: {}", one_of(&caseflow_dsl::model::STRATEGIES)),
                );
                Strategy::RoundRobin
            }),
        };
        let fallback = self.str_of(loc, t, "fallback").map(str::to_string);
        if let Some(f) = &fallback {
            self.refer_user("fallback of role", f, loc);
        }
        let label = self.str_of(loc, t, "name").map(str::to_string);
        self.roles.insert(name.to_string(), Role { name: name.to_string(), label, strategy, fallback });
    }

    fn user(&mut self, loc: &Loc, id: &str, t: &dyn TableLike) {
        self.known_keys(loc, t, &["name", "roles", "skills", "reports_to"]);
        if !self.define(loc, "user", id) {
            return;
        }
        let reports_to = self.str_of(loc, t, "reports_to").map(str::to_string);
        if let Some(m) = &reports_to {
            if m == id {
                self.err(loc, "a user cannot report to themselves");
            }
            self.refer_user("manager (reports_to)", m, loc);
            let (line, column) = line_col(&loc.file.text, loc.span.as_ref().map_or(0, |s| s.start));
            let at =
                RulesError { file: loc.file.name.clone(), line, column, key: loc.key.clone(), message: String::new() };
            self.manager_at.insert(id.to_string(), at);
        }
        let user = User {
            id: id.to_string(),
            name: self.str_of(loc, t, "name").map(str::to_string),
            roles: self.str_list(loc, t, "roles"),
            skills: {
                let skills = self.str_list(loc, t, "skills");
                for s in &skills {
                    if let Some((_, level)) = s.split_once(':') {
                        if !matches!(level.parse::<u8>(), Ok(1..=5)) {
                            self.err(
                                &loc.child("skills", t.get("skills").and_then(|i| i.span())),
                                format!("skill `{s}`: the level after `:` is 1 to 5"),
                            );
                        }
                    }
                }
                skills
            },
            reports_to,
        };
        self.users.insert(id.to_string(), user);
    }

    fn refer_user(&mut self, what: &str, user: &str, loc: &Loc) {
        let (line, column) = line_col(&loc.file.text, loc.span.as_ref().map_or(0, |s| s.start));
        let e = RulesError { file: loc.file.name.clone(), line, column, key: loc.key.clone(), message: String::new() };
        self.user_refs.push((what.to_string(), user.to_string(), e));
    }

    fn absence(&mut self, loc: &Loc, t: &dyn TableLike) {
        self.known_keys(loc, t, &["user", "from", "to", "stand_in"]);
        let user = self.str_of(loc, t, "user").map(str::to_string);
        let from = t.get("from").and_then(|i| self.date_of(&loc.child("from", i.span()), i));
        let to = t.get("to").and_then(|i| self.date_of(&loc.child("to", i.span()), i));
        let stand_in = self.str_of(loc, t, "stand_in").map(str::to_string);
        let (Some(user), Some(from), Some(to)) = (user, from, to) else {
            self.err(loc, "an absence needs `user`, `from` and `to`");
            return;
        };
        if from > to {
            self.err(loc, format!("the absence ends ({to}) before it starts ({from})"));
        }
        self.refer_user("absent user", &user, loc);
        if let Some(s) = &stand_in {
            self.refer_user("stand-in", s, loc);
            if *s == user {
                self.err(loc, "a user cannot stand in for themselves");
            }
        }
        let line = loc.line();
        self.away.push((Absence { user, from, to, stand_in }, loc.file.name.clone(), line));
    }

    fn shift(&mut self, loc: &Loc, t: &dyn TableLike) {
        self.known_keys(loc, t, &["user", "days", "hours"]);
        let user = self.str_of(loc, t, "user").map(str::to_string);
        let days: Vec<Weekday> = self
            .str_list(loc, t, "days")
            .iter()
            .filter_map(|d| {
                let i = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"].iter().position(|x| x == d);
                if i.is_none() {
                    self.err(&loc.child("days", None), format!("`{d}` is not a weekday (mon … sun)"));
                }
                i.map(weekday)
            })
            .collect();
        let hours = self.str_of(loc, t, "hours").and_then(|h| {
            let p = parse_period(h);
            if p.is_none() {
                self.err(&loc.child("hours", None), "expected \"HH:MM-HH:MM\"");
            }
            p
        });
        let (Some(user), Some(hours)) = (user, hours) else {
            self.err(loc, "a shift needs `user`, `days` and `hours`");
            return;
        };
        self.refer_user("user on the roster", &user, loc);
        let line = loc.line();
        self.roster.push((Shift { user, days, hours }, loc.file.name.clone(), line));
    }

    // ------------------------------------------------------------ permissions

    fn permissions_section(&mut self, loc: &Loc, item: &Item) {
        let Some(t) = item.as_table_like() else {
            self.err(loc, "expected a table: `[permissions]` with `reassign = [\"cs_manager\"]`");
            return;
        };
        self.known_keys(loc, t, &PERMISSIONS);
        for action in PERMISSIONS {
            if t.get(action).is_none() {
                continue;
            }
            let span = t.get(action).and_then(Item::span);
            let aloc = loc.child(action, span);
            if !self.define(&aloc, "permission", action) {
                continue;
            }
            let roles = self.str_list(loc, t, action);
            for r in &roles {
                let (line, column) = line_col(&aloc.file.text, aloc.span.as_ref().map_or(0, |s| s.start));
                let e = RulesError {
                    file: aloc.file.name.clone(),
                    line,
                    column,
                    key: aloc.key.clone(),
                    message: String::new(),
                };
                self.permission_refs.push((r.clone(), e));
            }
            self.permissions.insert(action.to_string(), roles);
        }
    }

    // ------------------------------------------------------------ key formats

    fn key_formats_section(&mut self, loc: &Loc, item: &Item) {
        let Some(t) = item.as_table_like() else {
            self.err(loc, "expected a table: `[key_formats]` with `process = \"{date:%Y%m%d}-{seq:03}\"`");
            return;
        };
        for (process, v) in t.iter() {
            let span = t.get_key_value(process).and_then(|(k, _)| k.span()).or(v.span());
            let kloc = loc.child(process, span);
            if !self.define(&kloc, "key format", process) {
                continue;
            }
            let Some(template) = v.as_str() else {
                self.err(&kloc, "expected a template string such as \"{date:%Y%m%d}-{seq:03}\"");
                continue;
            };
            match check_key_template(template) {
                Ok(()) => {
                    self.key_formats.insert(process.to_string(), template.to_string());
                }
                Err(problem) => self.err(&kloc, problem),
            }
        }
    }

    // ------------------------------------------------------------ values

    fn values_section(&mut self, loc: &Loc, item: &Item) {
        let Some(t) = item.as_table_like() else {
            self.err(loc, "expected a table: `[values]`");
            return;
        };
        for (name, v) in t.iter() {
            let span = t.get_key_value(name).and_then(|(k, _)| k.span()).or(v.span());
            let vloc = loc.child(name, span);
            if !valid_name(name) {
                self.err(&vloc, format!("`{name}` is not a valid name: use lower-case snake_case"));
                continue;
            }
            if !self.define(&vloc, "value", name) {
                continue;
            }
            let value = match v.as_table_like() {
                Some(keyed) => {
                    let mut map = BTreeMap::new();
                    let mut first_kind: Option<(&'static str, String)> = None;
                    for (k, kv) in keyed.iter() {
                        let kloc = vloc.child(k, kv.span());
                        if let Some(x) = self.scalar(&kloc, kv) {
                            // A keyed table is looked up by key in one place of a process: its
                            // entries must be of one kind, or a lookup would change type by key.
                            match &first_kind {
                                None => first_kind = Some((x.type_name(), k.to_string())),
                                Some((kind, first)) if *kind != x.type_name() => self.err(
                                    &kloc,
                                    format!("`{k}` is a {} but `{first}` is a {kind}: entries of one table must be of one kind", x.type_name()),
                                ),
                                _ => {}
                            }
                            map.insert(k.to_string(), x);
                        }
                    }
                    RuleValue::Keyed(map)
                }
                None => match self.scalar(&vloc, v) {
                    Some(x) => RuleValue::Scalar(x),
                    None => continue,
                },
            };
            self.values.insert(name.to_string(), value);
        }
    }

    /// A TOML scalar as a value; strings that read as durations become durations.
    fn scalar(&mut self, loc: &Loc, item: &Item) -> Option<Value> {
        let v = match item.as_value() {
            Some(toml_edit::Value::String(s)) => {
                let s = s.value();
                match duration::parse(s) {
                    Ok(d) => Value::Duration(d),
                    Err(_) if s.starts_with(|c: char| c.is_ascii_digit()) => {
                        // Starts like a duration but is not one: most likely a typo.
                        self.err(loc, duration::parse(s).unwrap_err());
                        return None;
                    }
                    Err(_) => Value::Text(s.to_string()),
                }
            }
            Some(toml_edit::Value::Integer(i)) => Value::Int(*i.value()),
            Some(toml_edit::Value::Float(f)) => Value::Decimal(*f.value()),
            Some(toml_edit::Value::Boolean(b)) => Value::Bool(*b.value()),
            Some(toml_edit::Value::Datetime(_)) => Value::Date(self.date_of(loc, item)?),
            _ => {
                self.err(loc, "expected a string, number, bool, date or duration");
                return None;
            }
        };
        Some(v)
    }

    // ------------------------------------------------------------ decision tables

    fn table(&mut self, loc: &Loc, name: &str, t: &dyn TableLike) {
        self.known_keys(loc, t, &["hit_policy", "inputs", "outputs", "rows", "output_order", "description"]);
        if !self.define(loc, "decision table", name) {
            return;
        }
        let hit_policy = match self.str_of(loc, t, "hit_policy") {
            None | Some("first") => HitPolicy::First,
            Some("unique") => HitPolicy::Unique,
            Some("collect") => HitPolicy::Collect,
            Some("priority") => HitPolicy::Priority,
            Some(other) => {
                let span = t.get("hit_policy").and_then(Item::span);
                self.err(
                    &loc.child("hit_policy", span),
                    format!("`{other}` is not a hit policy: first, unique, collect or priority"),
                );
                HitPolicy::First
            }
        };
        let inputs = self.str_list(loc, t, "inputs");
        let outputs = self.str_list(loc, t, "outputs");
        if outputs.is_empty() {
            self.err(loc, "a decision table needs at least one output: `outputs = [\"department\"]`");
        }
        for col in inputs.iter().chain(&outputs) {
            if !valid_name(col) {
                self.err(loc, format!("column `{col}` is not a valid name: use lower-case snake_case"));
            }
        }
        let mut seen = BTreeSet::new();
        for col in inputs.iter().chain(&outputs) {
            if !seen.insert(col) {
                self.err(loc, format!("column `{col}` appears twice among the inputs and outputs"));
            }
        }
        let mut rows = Vec::new();
        let rows_item = t.get("rows");
        let rloc = loc.child("rows", rows_item.and_then(Item::span));
        let row_tables: Vec<(&dyn TableLike, Option<Range<usize>>)> = match rows_item {
            Some(Item::ArrayOfTables(a)) => a.iter().map(|r| (r as &dyn TableLike, r.span())).collect(),
            Some(Item::Value(toml_edit::Value::Array(a))) => a
                .iter()
                .filter_map(|v| match v.as_inline_table() {
                    Some(r) => Some((r as &dyn TableLike, v.span())),
                    None => {
                        self.err(&rloc, "each row is a table: `{ cause = \"quality\", department = \"qa\" }`");
                        None
                    }
                })
                .collect(),
            Some(_) => {
                self.err(&rloc, "expected a list of rows");
                Vec::new()
            }
            None => {
                self.err(loc, "a decision table needs `rows`");
                Vec::new()
            }
        };
        if row_tables.len() > TABLE_ROWS_MAX {
            self.err(&rloc, format!("{} rows; the limit is {TABLE_ROWS_MAX}", row_tables.len()));
            return;
        }
        for (i, (r, span)) in row_tables.into_iter().enumerate() {
            let row_loc = rloc.index(i, span);
            let known: Vec<&str> = inputs.iter().chain(&outputs).map(String::as_str).collect();
            self.known_keys(&row_loc, r, &known);
            let conditions = inputs
                .iter()
                .map(|input| match r.get(input) {
                    None => Condition::Any,
                    Some(cell) => self.condition(&row_loc.child(input, cell.span()), cell),
                })
                .collect();
            let outs = outputs
                .iter()
                .filter_map(|o| match r.get(o) {
                    Some(cell) => self.scalar(&row_loc.child(o, cell.span()), cell),
                    None => {
                        self.err(&row_loc, format!("the row gives no value for output `{o}`"));
                        None
                    }
                })
                .collect::<Vec<_>>();
            if outs.len() == outputs.len() {
                rows.push(Row { conditions, outputs: outs, line: row_loc.line() });
            }
        }
        let mut output_order = Vec::new();
        if let Some(order) = t.get("output_order") {
            let oloc = loc.child("output_order", order.span());
            match order.as_array() {
                Some(a) => {
                    for (i, v) in a.iter().enumerate() {
                        if let Some(x) = self.scalar(&oloc.index(i, v.span()), &Item::Value(v.clone())) {
                            output_order.push(x);
                        }
                    }
                }
                None => self.err(&oloc, "expected a list of output values, highest priority first"),
            }
        }
        if hit_policy == HitPolicy::Priority && output_order.is_empty() {
            self.err(
                loc,
                "hit policy `priority` needs `output_order`: the first output's values, highest priority first",
            );
        }
        let table = DecisionTable { name: name.to_string(), hit_policy, inputs, outputs, rows, output_order };
        if hit_policy == HitPolicy::Unique {
            for (a, b) in table.overlapping_rows() {
                let at = Loc { file: loc.file, key: format!("{}[{b}]", rloc.key), span: None };
                let mut e_loc = at.clone();
                e_loc.span = Some(offset_of_line(&loc.file.text, table.rows[b].line));
                self.err(
                    &e_loc,
                    format!(
                        "rows {a} (line {}) and {b} (line {}) can both match the same input, but the hit policy is `unique`",
                        table.rows[a].line, table.rows[b].line
                    ),
                );
            }
        }
        self.tables.insert(name.to_string(), table);
    }

    fn condition(&mut self, loc: &Loc, cell: &Item) -> Condition {
        if let Some(list) = cell.as_array() {
            let mut values = Vec::new();
            for (i, v) in list.iter().enumerate() {
                if let Some(x) = self.scalar(&loc.index(i, v.span()), &Item::Value(v.clone())) {
                    values.push(x);
                }
            }
            return Condition::OneOf(values);
        }
        if let Some(s) = cell.as_str() {
            let s = s.trim();
            if s == "*" || s == "-" || s.is_empty() {
                return Condition::Any;
            }
            for (op, make) in [(">=", (true, true)), ("<=", (false, true)), (">", (true, false)), ("<", (false, false))]
            {
                if let Some(rest) = s.strip_prefix(op) {
                    let v = Value::parse_loose(rest.trim());
                    let (lower, inclusive) = make;
                    return if lower {
                        Condition::Range { min: Some(v), max: None, min_inclusive: inclusive, max_inclusive: true }
                    } else {
                        Condition::Range { min: None, max: Some(v), min_inclusive: true, max_inclusive: inclusive }
                    };
                }
            }
            if let Some(rest) = s.strip_prefix("!=") {
                return Condition::NotEquals(Value::parse_loose(rest.trim()));
            }
            if let Some((a, b)) = s.split_once("..") {
                let (lo, hi) = (Value::parse_loose(a.trim()), Value::parse_loose(b.trim()));
                if matches!(lo, Value::Int(_) | Value::Decimal(_) | Value::Date(_)) && lo.compare(&hi).is_some() {
                    if lo.compare(&hi) == Some(std::cmp::Ordering::Greater) {
                        self.err(loc, format!("the range `{s}` is empty: write the smaller bound first"));
                    }
                    return Condition::Range { min: Some(lo), max: Some(hi), min_inclusive: true, max_inclusive: true };
                }
                self.err(loc, format!("`{s}` is not a range of numbers or dates such as `1..5`"));
                return Condition::Any;
            }
        }
        match self.scalar(loc, cell) {
            Some(v) => Condition::Equals(v),
            None => Condition::Any,
        }
    }

    fn finish(mut self) -> Result<RuleSet, Vec<RulesError>> {
        for user in self.users.values() {
            for role in &user.roles {
                if !self.roles.contains_key(role) {
                    let hint = closest(role, &self.roles.keys().map(String::as_str).collect::<Vec<_>>())
                        .map(|c| format!(" (did you mean `{c}`?)"))
                        .unwrap_or_default();
                    let at = self.defined_at.get(&format!("user {}", user.id)).cloned().unwrap_or_default();
                    let (file, line) =
                        at.rsplit_once(':').map_or((at.as_str(), 0), |(f, l)| (f, l.parse().unwrap_or(0)));
                    self.errors.push(RulesError {
                        file: file.to_string(),
                        line,
                        column: 1,
                        key: format!("users.{}.roles", user.id),
                        message: format!(
                            "user `{}` holds role `{role}`, which is not defined under [roles]{hint}",
                            user.id
                        ),
                    });
                }
            }
        }
        for (role, mut e) in std::mem::take(&mut self.permission_refs) {
            if !self.roles.contains_key(&role) {
                e.message = format!("role `{role}` is not defined under [roles]");
                self.errors.push(e);
            }
        }
        for (what, user, mut e) in std::mem::take(&mut self.user_refs) {
            if !self.users.contains_key(&user) {
                e.message = format!("{what} `{user}` is not defined under [users]");
                self.errors.push(e);
            }
        }
        // A chain of managers ends: no one is their own manager's manager.
        for start in self.users.keys() {
            // Reporting to oneself is refused where it is read.
            if self.users.get(start).and_then(|u| u.reports_to.as_deref()) == Some(start.as_str()) {
                continue;
            }
            let mut seen = BTreeSet::new();
            let mut at = start.as_str();
            while let Some(next) = self.users.get(at).and_then(|u| u.reports_to.as_deref()) {
                if !seen.insert(at) {
                    break;
                }
                if next == start {
                    // Reported once, at the circle's first user by name.
                    if seen.iter().all(|u| *u >= start.as_str()) {
                        let chain = seen.iter().copied().collect::<Vec<_>>().join(", ");
                        let mut e = self.manager_at.get(start).cloned().unwrap_or(RulesError {
                            file: String::new(),
                            line: 0,
                            column: 0,
                            key: format!("users.{start}"),
                            message: String::new(),
                        });
                        e.message = format!("`reports_to` goes round in a circle through {chain}");
                        self.errors.push(e);
                    }
                    break;
                }
                at = next;
            }
        }
        if !self.errors.is_empty() {
            self.errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
            return Err(self.errors);
        }
        Ok(RuleSet {
            calendar: self.calendar.unwrap_or_else(BusinessCalendar::standard_china),
            roles: self.roles,
            users: self.users,
            away: self.away.into_iter().map(|(a, _, _)| a).collect(),
            roster: self.roster.into_iter().map(|(s, _, _)| s).collect(),
            values: self.values,
            tables: self.tables,
            key_formats: self.key_formats,
            permissions: self.permissions,
        })
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

fn key_span(table: &Table, key: &str) -> Option<Range<usize>> {
    table.get_key_value(key).and_then(|(k, _)| k.span())
}

fn offset_of_line(text: &str, line: usize) -> Range<usize> {
    let start = text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum::<usize>();
    start..start
}

fn weekday(i: usize) -> Weekday {
    [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun][i % 7]
}

fn parse_period(s: &str) -> Option<Period> {
    let (a, b) = s.split_once('-')?;
    let start = NaiveTime::parse_from_str(a.trim(), "%H:%M").ok()?;
    let end = NaiveTime::parse_from_str(b.trim(), "%H:%M").ok()?;
    (start < end).then_some(Period { start, end })
}

fn valid_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    caseflow_dsl::diag::closest(name, candidates.iter().copied())
}

#[cfg(test)]
mod strategy_tests {
    use super::Strategy;

    #[test]
    fn every_strategy_the_language_names_parses() {
        for name in caseflow_dsl::model::STRATEGIES {
            assert!(Strategy::parse(name).is_some(), "{name}");
        }
        assert_eq!(Strategy::parse("random"), None);
    }
}
