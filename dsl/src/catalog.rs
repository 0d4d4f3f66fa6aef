//! What the checker needs to know of the rules: the names they define.
//!
//! The rules themselves (calendars, tables, rows) belong to the engine's rules loader;
//! the checker only asks "is there a role `engineer`?", "a table `complaint_routing`
//! with an output `department`?". Reading files is the caller's job: this module parses
//! TOML text it is given.

use serde::Deserialize;
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

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct CatalogError {
    pub file: String,
    pub message: String,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    roles: BTreeMap<String, toml::Value>,
    #[serde(default)]
    values: BTreeMap<String, toml::Value>,
    #[serde(default)]
    decision_tables: BTreeMap<String, RawTable>,
}

#[derive(Deserialize)]
struct RawTable {
    inputs: Vec<RawColumn>,
    outputs: Vec<RawColumn>,
}

/// A column is written either as a bare name or as a table with a `name` key.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawColumn {
    Name(String),
    Table { name: String },
}

impl RawColumn {
    fn name(self) -> String {
        match self {
            RawColumn::Name(n) | RawColumn::Table { name: n } => n,
        }
    }
}

impl RuleCatalog {
    /// Adds the names one rules file defines. Unknown top-level keys are left to the rules
    /// loader to judge; this reads only `roles`, `values` and `decision_tables`.
    pub fn add_toml(&mut self, file: &str, text: &str) -> Result<(), CatalogError> {
        let raw: RawFile =
            toml::from_str(text).map_err(|e| CatalogError { file: file.to_string(), message: e.to_string() })?;
        self.roles.extend(raw.roles.into_keys());
        self.values.extend(raw.values.into_keys());
        for (name, t) in raw.decision_tables {
            let shape = TableShape {
                inputs: t.inputs.into_iter().map(RawColumn::name).collect(),
                outputs: t.outputs.into_iter().map(RawColumn::name).collect(),
            };
            self.tables.insert(name, shape);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names() {
        let mut c = RuleCatalog::default();
        c.add_toml(
            "r.toml",
            r#"
            [roles.cs_rep]
            members = ["zhang"]
            [values.response_time]
            high = "10min"
            [decision_tables.route]
            inputs = ["cause", { name = "product" }]
            outputs = ["department"]
            "#,
        )
        .unwrap();
        assert!(c.roles.contains("cs_rep"));
        assert!(c.values.contains("response_time"));
        assert_eq!(c.tables["route"].inputs, ["cause", "product"]);
    }

    #[test]
    fn bad_toml_names_the_file() {
        let err = RuleCatalog::default().add_toml("bad.toml", "[roles").unwrap_err();
        assert!(err.to_string().starts_with("bad.toml:"), "{err}");
    }
}
