//! The scenario format (TOML). Unknown keys are refused, so a misspelt expectation cannot pass
//! unnoticed. See `docs/testing.md`.

use super::run::Failure;
use serde::Deserialize;
use toml::Spanned;

/// A scenario's text and the name to report it under (its path, as given).
#[derive(Debug, Clone)]
pub struct ScenarioFile {
    pub name: String,
    pub text: String,
    /// Where the `.flow` files a step deploys are read from (the scenario's folder); `None`
    /// (a scenario sent over HTTP) refuses such steps.
    pub dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub description: String,
    pub process: String,
    pub start_at: Spanned<String>,
    #[serde(default)]
    pub fields: toml::Table,
    /// Expect the start itself to be refused with an error containing this text.
    pub start_refused: Option<String>,
    /// Who starts the case (a user of the rules); by default the CRM's service account `crm`.
    pub started_by: Option<String>,
    /// Cases of the same process run before this one (facts across cases: workload, repeats).
    #[serde(default)]
    pub earlier: Vec<Earlier>,
    #[serde(default)]
    pub step: Vec<Spanned<Step>>,
}

/// A case run before the scenario's own, its steps as in a scenario.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Earlier {
    pub started_by: Option<String>,
    #[serde(default)]
    pub fields: toml::Table,
    #[serde(default)]
    pub step: Vec<Spanned<Step>>,
    pub expect_outcome: Option<String>,
}

/// One step: an action and/or expectations, checked after the action.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Step {
    // actions
    pub advance_to: Option<String>,
    pub complete: Option<String>,
    pub by: Option<String>,
    #[serde(default)]
    pub fields: toml::Table,
    pub message: Option<String>,
    pub cancel: Option<String>,
    pub reassign: Option<String>,
    /// The assignee (or `by`) passes this step's task to `to`.
    pub delegate: Option<String>,
    /// `by` claims this step's task.
    pub claim: Option<String>,
    /// The assignee (or `by`) gives this step's task back to its role's queue.
    pub release: Option<String>,
    /// An administrator (or `by`) suspends, resumes or retries the case.
    #[serde(default)]
    pub suspend: bool,
    #[serde(default)]
    pub resume: bool,
    #[serde(default)]
    pub retry: bool,
    /// An administrator (or `by`) updates the case's fields.
    #[serde(default)]
    pub set_fields: toml::Table,
    pub to: Option<String>,
    /// Deploy a new version of a process: a `.flow` file beside the scenario. Running cases
    /// stay on their version until migrated.
    pub deploy: Option<String>,
    /// Migrate the scenario's case (and the other running cases of its version) to version
    /// `to`, with an optional `mapping` of old step names to new ones.
    pub migrate: Option<MigrateStep>,
    /// Expect the action to be refused with an error containing this text (for `migrate`:
    /// a reason the case cannot move).
    pub refused: Option<String>,
    // expectations
    /// The version of the process the case is on.
    pub expect_version: Option<u32>,
    /// After `migrate`: where the case's places landed, `old -> new (stays|entered)`.
    pub expect_landing: Option<Vec<String>>,
    pub expect_tasks: Option<Vec<ExpectTask>>,
    #[serde(default)]
    pub expect_fields: toml::Table,
    pub expect_history: Option<Vec<String>>,
    pub expect_status: Option<String>,
    pub expect_outcome: Option<String>,
    pub expect_reminders: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateStep {
    pub to: u32,
    #[serde(default)]
    pub mapping: std::collections::BTreeMap<String, String>,
    /// Only report; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// The administrator who asks (named on the `migrated` entry); `admin` if not given.
    pub by: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectTask {
    pub step: String,
    /// The item of a task for each item.
    pub item: Option<String>,
    pub assignee: Option<String>,
    pub due: Option<String>,
    pub overdue: Option<bool>,
    pub priority: Option<u8>,
}

/// Reads a scenario; a file that is not one fails with the line and column of the problem.
pub fn parse(file: &ScenarioFile) -> Result<Scenario, Failure> {
    toml::from_str(&file.text).map_err(|e| {
        let line = e.span().map(|s| line_of(&file.text, s.start));
        Failure {
            step: None,
            line,
            action: "read the scenario".into(),
            expected: "a scenario file (docs/testing.md)".into(),
            found: e.message().trim().to_string(),
        }
    })
}

/// The 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}
