//! What the checker needs to know of the rules: the names they define.
//!
//! The rules themselves (calendars, tables, rows) belong to the engine's rules loader;
//! the checker only asks "is there a role `engineer`?", "a table `complaint_routing`
//! with an output `department`?". The engine's rules loader fills this in
//! (`caseflow_engine::RuleSet::catalog`).

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleCatalog {
    pub roles: BTreeSet<String>,
    /// Named values and keyed value tables (`rules.response_time[urgency]`), with the kind of
    /// value they hold, so that `due rules.x` is checked to be a duration.
    pub values: BTreeMap<String, RuleValueShape>,
    pub tables: BTreeMap<String, TableShape>,
}

/// What kind of value a named rules value holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Text,
    Int,
    Decimal,
    Bool,
    Date,
    Duration,
    /// Entries of different kinds: not checked.
    Mixed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleValueShape {
    /// `rules.NAME[key]` (true) or `rules.NAME` (false).
    pub keyed: bool,
    pub kind: ValueKind,
    /// The keys of a keyed value, so that `rules.NAME[choice_field]` is checked to cover
    /// every value of the field.
    pub keys: Vec<String>,
}

/// A value a table's condition names, as far as the checker compares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Atom {
    Text(String),
    Int(i64),
    Bool(bool),
}

/// A row's condition on one input, for the checker's coverage check (FLOW038).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellMatch {
    Any,
    Is(Vec<Atom>),
    IsNot(Vec<Atom>),
    /// Whole numbers between the bounds, each with whether it is inclusive.
    IntRange {
        min: Option<(i64, bool)>,
        max: Option<(i64, bool)>,
    },
    /// A condition the checker does not reason about (decimals, dates): taken to match.
    Unknown,
}

impl CellMatch {
    pub fn matches(&self, v: &Atom) -> bool {
        match self {
            CellMatch::Any | CellMatch::Unknown => true,
            CellMatch::Is(xs) => xs.contains(v),
            CellMatch::IsNot(xs) => !xs.contains(v),
            CellMatch::IntRange { min, max } => match v {
                Atom::Int(i) => {
                    min.is_none_or(|(m, inc)| if inc { *i >= m } else { *i > m })
                        && max.is_none_or(|(m, inc)| if inc { *i <= m } else { *i < m })
                }
                _ => false,
            },
        }
    }

    /// The whole numbers the condition names (bounds and listed values).
    pub fn ints(&self) -> Vec<i64> {
        let atoms =
            |xs: &[Atom]| xs.iter().filter_map(|a| if let Atom::Int(i) = a { Some(*i) } else { None }).collect();
        match self {
            CellMatch::Is(xs) | CellMatch::IsNot(xs) => atoms(xs),
            CellMatch::IntRange { min, max } => min.iter().chain(max).map(|(m, _)| *m).collect(),
            _ => Vec::new(),
        }
    }

    /// The texts the condition names.
    pub fn texts(&self) -> Vec<String> {
        match self {
            CellMatch::Is(xs) | CellMatch::IsNot(xs) => {
                xs.iter().filter_map(|a| if let Atom::Text(t) = a { Some(t.clone()) } else { None }).collect()
            }
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableShape {
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// Each row's condition per input, in input order: the checker finds input values no row
    /// matches (FLOW038). Empty: not checked.
    pub rows: Vec<Vec<CellMatch>>,
    /// The text values each output column can give, so that a field filled from a table is
    /// checked where its value must name something (a role).
    pub output_texts: BTreeMap<String, BTreeSet<String>>,
}
