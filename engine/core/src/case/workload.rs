//! What the engine knows about current work, given to the core as a snapshot.

use crate::case::{Instance, Status};
use crate::eval::{eval, Scope};
use crate::rules::RuleSet;
use caseflow_dsl::model::Process;

/// What the engine knows about current work, for assignment. A snapshot: the core reads it
/// and does not change it.
pub trait Workload {
    fn open_tasks(&self, user: &str) -> usize;
    /// `open_tasks` of each of `users`, in their order: what one assignment compares, read
    /// at once where the engine can.
    fn open_tasks_of(&self, users: &[&str]) -> Vec<usize> {
        users.iter().map(|u| self.open_tasks(u)).collect()
    }
    /// Tasks given to the role by round robin so far: the rotation's position. Read, never
    /// advanced here: the core reports what it took as `Effect::RoundRobinTaken`.
    fn round_robin_position(&self, role: &str) -> u64;
    /// Who last completed `step` in a case of `process` whose `field` held `value`.
    fn familiar(&self, process: &str, field: &str, value: &str, step: &str) -> Option<String>;
    /// How many cases of `process` its tally `name` counted under these keys.
    fn tally(&self, process: &str, name: &str, keys: &[String]) -> u64;
}

/// No workload information: every user has no open tasks.
pub struct NoWorkload;

impl Workload for NoWorkload {
    fn open_tasks(&self, _: &str) -> usize {
        0
    }
    fn round_robin_position(&self, _: &str) -> u64 {
        0
    }
    fn familiar(&self, _: &str, _: &str, _: &str, _: &str) -> Option<String> {
        None
    }
    fn tally(&self, _: &str, _: &str, _: &[String]) -> u64 {
        0
    }
}

/// The tallies a case counts in as it ends: (tally name, keys) for each tally of the process
/// whose outcome is the case's. Pure: the shell writes them in the same batch.
pub fn tally_entries(model: &Process, rules: &RuleSet, inst: &Instance) -> Vec<(String, Vec<String>)> {
    let Status::Completed { outcome } = &inst.status else { return Vec::new() };
    let declared = |n: &str| model.field(n).is_some();
    let no_tally = |_: &str, _: &[String]| 0;
    let actor_of = |step: Option<&str>| match step {
        None => Some(inst.started_by.clone()),
        Some(name) => model.step_named(name).and_then(|s| inst.done_by.get(&s.id).cloned()),
    };
    let scope = Scope {
        fields: &inst.fields,
        declared: &declared,
        rules,
        now: inst.updated_at,
        tally: &no_tally,
        actor_of: &actor_of,
    };
    model
        .tallies
        .iter()
        .filter(|(_, _, o)| o == outcome)
        .filter_map(|(name, keys, _)| {
            let keys =
                keys.iter().map(|k| eval(k, &scope).map(|v| crate::eval::key_text(&v))).collect::<Result<Vec<_>, _>>();
            keys.ok().map(|k| (name.clone(), k))
        })
        .collect()
}
