//! caseflow's deterministic core. State + command + time in, new state + effects + history
//! out: `case` (cases and the commands that move them), `eval` (the `.flow` expression
//! language at run time), `calendar` (working time), `rules` (the administrators' TOML),
//! `table` (decision tables), `sla` (a task's SLA clock), `report` (KPIs over stored cases).
//!
//! Invariant, enforced by this crate's dependencies: nothing here reads the clock, the disk
//! or a random source. The shells (`caseflow-engine`, `caseflow`) pass instants, file
//! contents and workload figures in, and carry the effects out.

pub mod calendar;
pub mod case;
pub mod duration;
pub mod eval;
pub mod report;
pub mod rules;
pub mod sla;
pub mod table;
pub mod value;

pub use calendar::BusinessCalendar;
pub use rules::{RuleSet, RulesError, RulesFile};
