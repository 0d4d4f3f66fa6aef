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

mod calendar;
mod load;
mod people;
mod tables;
mod values;

use load::*;
pub use load::{check_key_template, definition_of};

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
    /// Whether `actor` may take `action` beyond working their own tasks: administrators
    /// always, anyone else when one of their roles is among those `[permissions]` grants it to.
    pub fn permits(&self, actor: &crate::case::Actor, action: &str) -> bool {
        actor.admin || self.permissions.get(action).is_some_and(|roles| roles.iter().any(|r| actor.roles.contains(r)))
    }

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
