//! Helpers shared by the engine's benches (`mod common;` in each).
#![allow(dead_code)] // each bench uses some of them

use caseflow_engine::{RuleSet, RulesFile};

// The allocator the `caseflow` binary uses, so that memory figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The value after `name` on the command line, or `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `cargo bench` passes `--bench`: run the full-size measurement, not the quick smoke run.
pub fn full() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// This process's resident memory (VmRSS), in MiB.
pub fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Rules with one role, `cs_rep`, and `users` members `u0`, `u1`, ….
pub fn reps(users: usize) -> RuleSet {
    let mut text = String::from("[roles.cs_rep]\nname = \"rep\"\n");
    for u in 0..users {
        text.push_str(&format!("[users.u{u}]\nroles = [\"cs_rep\"]\n"));
    }
    RuleSet::load(&[RulesFile { name: "bench.toml".into(), text }]).expect("bench rules")
}

/// The reference workload's process: the complaint shape (start, an automatic step, a
/// decision, one human task, end).
pub const REFERENCE_SHAPE: &str = r#"
process reference {
  source "benchmark: the complaint shape"
  fields {
    urgency: choice(high, medium, low) required
    score: int = 0
    resolved: bool = false
  }
  start -> triage
  auto triage {
    set score = 1
    -> decide {
      when urgency == high -> handle
      else -> handle
    }
  }
  task handle {
    assign role cs_rep
    due 1 workday
    asks resolved
    -> closed
  }
  end closed
}
"#;
