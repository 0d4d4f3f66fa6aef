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

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableShape {
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// The text values each output column can give, so that a field filled from a table is
    /// checked where its value must name something (a role).
    pub output_texts: BTreeMap<String, BTreeSet<String>>,
}
