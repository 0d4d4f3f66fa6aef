//! caseflow's execution layer: the deterministic core (`core`: state + event + time -> new
//! state + effects), the administrators' rules (`rules`), decision tables (`table`), the
//! business calendar (`calendar`) and SLA clocks (`sla`), and the shells around the core: the
//! storage on sled (`store`) and the engine service that applies commands and fires timers
//! (`service`).
//!
//! Architecture invariant: `core` and the rules and calendar code read neither the clock nor
//! the file system; callers pass instants and file contents in. Only `store` and its log
//! (`wal`) touch disk, with `rules::read_dir` the one reader of files outside the store.

pub mod calendar;
pub mod clock;
pub mod core;
pub mod crypto;
pub mod duration;
pub mod eval;
pub mod faults;
mod memtable;
pub mod report;
pub mod rules;
pub mod service;
pub mod sla;
pub mod store;
pub mod table;
pub mod value;
pub mod wal;

pub use calendar::BusinessCalendar;
pub use rules::{RuleSet, RulesError, RulesFile};
pub use service::{Engine, EngineError, Pending};
pub use store::{CheckpointStats, Durability, Store, StoreOptions};
