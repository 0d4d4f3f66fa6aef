//! caseflow's execution layer.
//!
//! Today: the administrators' rules (`rules`), decision tables (`table`), the business
//! calendar (`calendar`), durations and runtime values. The deterministic core, the storage
//! shell and the timer driver arrive with the engine issue.
//!
//! Architecture invariant: nothing here reads the clock or the file system; callers pass
//! instants and file contents in.

pub mod calendar;
pub mod clock;
pub mod core;
pub mod crypto;
pub mod duration;
pub mod eval;
pub mod report;
pub mod rules;
pub mod service;
pub mod sla;
pub mod store;
pub mod table;
pub mod value;

pub use calendar::BusinessCalendar;
pub use rules::{RuleSet, RulesError, RulesFile};
pub use service::{Engine, EngineError};
pub use store::{CheckpointStats, Durability, Store, StoreOptions};
