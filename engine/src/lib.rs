//! caseflow's shells around the core (`caseflow-core`): storage as the engine sees it
//! (`storage`: the `Storage` trait, every key, value encoding, index entries, an in-memory
//! implementation), the default storage on sled with its write-ahead log (`store`), the
//! engine service that applies commands, keeps workload figures and fires timers
//! (`service`), field encryption (`crypto`), where time comes from (`clock`) and the fault
//! points tests arm (`faults`).
//!
//! Only `store` writes to disk; `read_rules_dir` is the one reader of files outside it.

pub mod clock;
pub mod crypto;
pub mod faults;
pub mod scenario;
pub mod service;
pub mod storage;
pub mod store;
pub mod sync;
pub mod whatif;

pub use caseflow_core::{BusinessCalendar, RuleSet, RulesError, RulesFile};
pub use service::{DeployOutcome, Engine, EngineError, MigrationOrder, MigrationReport, Pending};
pub use storage::any::AnyStorage;
pub use storage::memory::MemoryStore;
pub use storage::Storage;
pub use store::{CheckpointStats, Durability, Store, StoreOptions};

/// Reads every `.toml` file of a rules folder, in name order. Loading and validating them stay
/// pure, in `RuleSet::load`.
pub fn read_rules_dir(dir: &std::path::Path) -> std::io::Result<Vec<RulesFile>> {
    let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| Ok(RulesFile { name: p.display().to_string(), text: std::fs::read_to_string(&p)? }))
        .collect()
}
