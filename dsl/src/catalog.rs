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
    /// Named values and keyed value tables (`rules.response_time[urgency]`).
    pub values: BTreeSet<String>,
    pub tables: BTreeMap<String, TableShape>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableShape {
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}
