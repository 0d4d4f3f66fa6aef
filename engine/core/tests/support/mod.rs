//! Shared by the engine's property tests: random process graphs and the token conservation
//! check (`core.rs` drives them through the core, `graphs.rs` through the whole engine).
#![allow(dead_code)]

use caseflow_core::case::Instance;
use caseflow_dsl::model::{Process, StepId};

/// The processes a generated graph may call: `helper` waits for a person, `quick` ends at once.
pub const CALLEES: [&str; 2] = [
    "process helper {\n  source \"generated\"\n  fields {\n    x: bool \"x\" = false\n  }\n  start -> h\n  task h { assign role cs_rep due 1h asks x -> done }\n  end done\n}\n",
    "process quick {\n  source \"generated\"\n  fields {\n    x: bool \"x\" = true\n  }\n  start -> done\n  end done\n}\n",
];

/// Random process text from a stream of choices: tasks, waits, decisions (with arms that end
/// the case or jump anywhere), nested splits, overdue and message handlers that jump. Most
/// jumps make graphs the checker refuses; the rest are what the engine must run soundly.
pub struct FlowGen {
    pub rng: u64,
    steps: Vec<String>,
    names: Vec<String>,
    /// Also `call` steps (to `helper`, which waits for a person, or `quick`, which ends at once).
    calls: bool,
}

impl FlowGen {
    /// A generator of choices only (for driving a case).
    pub fn choices(seed: u64) -> FlowGen {
        FlowGen { rng: seed | 1, steps: Vec::new(), names: Vec::new(), calls: false }
    }

    pub fn pick(&mut self, n: usize) -> usize {
        // xorshift64*: deterministic per seed, so a failure prints a reproducible source.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    fn name(&mut self, prefix: &str) -> String {
        let n = format!("{prefix}{}", self.names.len());
        self.names.push(n.clone());
        n
    }

    /// A jump target filled in once every name exists (`@N`).
    fn jump(&mut self) -> String {
        format!("@{}", self.pick(1000))
    }

    /// Emits a block that leads to `next`; returns its first step.
    fn block(&mut self, next: &str, depth: usize) -> String {
        let handler = |g: &mut FlowGen| match g.pick(6) {
            0 => format!(" when overdue: -> {}", g.jump()),
            1 => format!(" when message ping: -> {}", g.jump()),
            2 => " when overdue: remind".to_string(),
            _ => String::new(),
        };
        if self.calls && self.pick(4) == 0 {
            let name = self.name("c");
            let callee = if self.pick(3) == 0 { "quick" } else { "helper" };
            self.steps.push(format!("call {name} process {callee} {{ output x = x -> {next} }}"));
            return name;
        }
        let kind = if depth <= 1 && self.pick(2) == 0 { 5 } else { self.pick(if depth > 2 { 3 } else { 7 }) };
        match kind {
            0 | 1 if self.pick(4) == 0 => {
                // A task for each item, in parallel or one at a time, maybe until one is done.
                let name = self.name("m");
                let turn = if self.pick(2) == 0 { " one at a time" } else { "" };
                let enough = if self.pick(3) == 0 { " until 1 done" } else { "" };
                self.steps.push(format!(
                    "task {name} {{ for each y in ys{turn}{enough} assign role cs_rep due 1h asks x -> {next} }}"
                ));
                name
            }
            0 | 1 => {
                let name = self.name("t");
                let h = handler(self);
                self.steps.push(format!("task {name} {{ assign role cs_rep due 1h asks x{h} -> {next} }}"));
                name
            }
            2 => {
                let name = self.name("w");
                let body = match self.pick(3) {
                    0 => format!("for 2h -> {next}"),
                    1 => format!(
                        "on message ping -> {next} on timeout 3h -> {}",
                        if self.pick(3) == 0 { self.jump() } else { next.to_string() }
                    ),
                    _ => format!("for 90min on message ping -> {} -> {next}", self.jump()),
                };
                self.steps.push(format!("wait {name} {{ {body} }}"));
                name
            }
            3 | 4 => {
                let name = self.name("d");
                let a = self.block(next, depth + 1);
                let b = match self.pick(5) {
                    0 | 2 if depth > 0 => "done".to_string(),
                    1 => self.jump(),
                    _ => self.block(next, depth + 1),
                };
                let h = handler(self);
                self.steps.push(format!(
                    "task {name} {{ assign role cs_rep due 1h asks x{h} -> decide {{ when x -> {a} else -> {b} }} }}"
                ));
                name
            }
            5 => {
                let split = self.name("s");
                let join = self.name("j");
                let k = 2 + self.pick(2);
                // Sometimes the join fires at the first arrival and withdraws the rest.
                let on = if self.pick(4) == 0 { " on first" } else { "" };
                self.steps.push(format!("join {join} of {split}{on} -> {next}"));
                let guarded = self.pick(3) == 0;
                let branches: Vec<String> = (0..k)
                    .map(|_| {
                        let b = self.block(&join, depth + 1);
                        // Multi-choice: a branch that starts only when its condition holds.
                        match (guarded, self.pick(3)) {
                            (true, 0) => format!("{b} when x"),
                            (true, 1) => format!("{b} when not x"),
                            _ => b,
                        }
                    })
                    .collect();
                self.steps.push(format!("split {split} -> {}", branches.join(", ")));
                split
            }
            _ => {
                let second = self.block(next, depth + 1);
                self.block(&second, depth + 1)
            }
        }
    }

    pub fn source(seed: u64, calls: bool) -> String {
        let mut g =
            FlowGen { rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1, steps: Vec::new(), names: Vec::new(), calls };
        let entry = g.block("done", 0);
        let mut text = format!(
            "process g {{\n  source \"generated\"\n  fields {{\n    x: bool \"x\" = false\n    ys: list text \"ys\" = [\"a\", \"b\", \"c\"]\n  }}\n  start -> {entry}\n"
        );
        // Sometimes `ping` is kept for a step that will listen.
        if g.pick(3) == 0 && g.steps.iter().any(|s| s.contains("message ping")) {
            text.push_str("  keep message ping for 1h\n");
        }
        // Sometimes a process-level interrupt, to the end or anywhere.
        match g.pick(4) {
            0 => text.push_str("  on message stop -> done\n"),
            1 => text.push_str(&format!("  on message stop -> {} \n", g.jump())),
            _ => {}
        }
        for s in g.steps.iter().rev() {
            text.push_str("  ");
            text.push_str(s);
            text.push('\n');
        }
        text.push_str("  end done\n}\n");
        // Fill in the jumps, longest placeholder first so `@12` is not read as `@1` + "2".
        let mut placeholders: Vec<usize> = (0..1000).collect();
        placeholders.sort_by_key(|n| std::cmp::Reverse(n.to_string().len()));
        for n in placeholders {
            let target = g.names[n % g.names.len()].clone();
            text = text.replace(&format!("@{n} "), &format!("{target} "));
        }
        text
    }
}

/// The steps between each split and its join (reached from its branches without the join).
pub fn regions(model: &Process) -> Vec<(StepId, StepId, usize, Vec<bool>)> {
    use caseflow_dsl::model::StepKind;
    let mut out = Vec::new();
    for s in &model.steps {
        let StepKind::Split { branches, join, .. } = &s.kind else { continue };
        let mut inside = vec![false; model.steps.len()];
        let mut todo: Vec<StepId> = branches.clone();
        while let Some(id) = todo.pop() {
            if id == *join || std::mem::replace(&mut inside[id.index()], true) {
                continue;
            }
            for n in model.graph.neighbors(model.node(id)) {
                if let caseflow_dsl::model::Node::Step(next) = model.graph[n] {
                    todo.push(next);
                }
            }
        }
        out.push((s.id, *join, branches.len(), inside));
    }
    out
}

/// Token conservation at every split: while a split's region is active, the branches still
/// on their way (a token, or a nested split standing for one) plus those arrived at its join
/// make exactly the number of branches. A join that fired early, or a lost or extra token,
/// breaks it.
pub fn branches_conserved(model: &Process, inst: &Instance) -> Result<(), String> {
    if inst.status.is_ended() {
        return Ok(());
    }
    let regions = regions(model);
    // The innermost region holding a step: the one with the fewest steps.
    let innermost = |step: StepId| {
        regions.iter().filter(|r| r.3[step.index()]).min_by_key(|r| r.3.iter().filter(|b| **b).count()).map(|r| r.0)
    };
    let active = |join: StepId, inside: &[bool]| {
        inst.join_arrivals.get(&join).copied().unwrap_or(0) > 0 || inst.tokens.values().any(|t| inside[t.step.index()])
    };
    for (split, join, branches, _) in &regions {
        let branches = &(inst.join_expected.get(join).map_or(*branches, |n| *n as usize));
        let arrived = inst.join_arrivals.get(join).copied().unwrap_or(0) as usize;
        // The instances of a task for each item stand for the one branch that entered it.
        let groups: std::collections::BTreeSet<u32> = inst.tokens.values().filter_map(|t| t.group).collect();
        let tokens = inst.tokens.values().filter(|t| t.group.is_none() && innermost(t.step) == Some(*split)).count()
            + groups.iter().filter(|g| innermost(inst.each_groups[g].step) == Some(*split)).count();
        let nested =
            regions.iter().filter(|(s2, j2, _, in2)| innermost(*s2) == Some(*split) && active(*j2, in2)).count();
        let on_the_way = tokens + nested;
        if (on_the_way > 0 || arrived > 0) && on_the_way + arrived != *branches {
            return Err(format!(
                "split `{}`: {on_the_way} branch(es) on the way and {arrived} arrived at `{}`, of {branches}",
                model.step(*split).name,
                model.step(*join).name
            ));
        }
    }
    Ok(())
}
