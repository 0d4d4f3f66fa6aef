//! Scenario files: a case walked through time with a manual clock, against the real engine,
//! with what must be true after each step. `caseflow test`, `POST /processes/{id}/test` and
//! the cargo test suite all run them through this module.
//!
//! - `file.rs` — the TOML format, read with the line of every step;
//! - `run.rs` — walking one scenario on a given storage, and what failed where;
//! - `record.rs` — a scenario written from a case's real history;
//! - `coverage.rs` — what a process offers to reach (steps, decision arms, reminders, missed
//!   deadlines, a cancellation) and what the scenarios reached.
//!
//! Times in a scenario are local to the rules' business calendar: `2026-11-23T10:00`.

mod coverage;
mod file;
mod record;
mod run;

pub use coverage::{coverage, required, Fact, ProcessCoverage, Reach};
pub use file::{parse, Scenario, ScenarioFile};
pub(crate) use record::family_history;
pub use record::{actions_of, record, Act, Action, Recorded};
pub use run::{run, run_keeping, Failure, ScenarioResult, Setup};
