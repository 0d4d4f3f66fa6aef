//! `docs/processes.md` is generated from the shipped processes (diagram, roles, deadlines,
//! sources) and must match them: `UPDATE_EXPECT=1 cargo test -p caseflow-tests --test processes_doc`
//! rewrites it after a process changes.

use caseflow_dsl::model::{Assignee, Process, StepKind};
use caseflow_dsl::{check_files, fmt::expr_to_string, graph};
use caseflow_tests::*;
use std::collections::BTreeSet;
use std::fmt::Write;

fn section(p: &Process) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## {} — {}\n", p.id, p.label.as_deref().unwrap_or(""));
    if let Some(d) = &p.doc {
        let _ = writeln!(s, "{d}\n");
    }
    let _ = writeln!(s, "Follows: {}\n", p.source.as_deref().unwrap_or("(no source cited)"));
    let _ = writeln!(s, "```mermaid\n{}```\n", graph::to_mermaid(p));
    let mut roles = BTreeSet::new();
    let _ = writeln!(s, "| step | who | deadline | on the clock |\n| --- | --- | --- | --- |");
    for step in &p.steps {
        let StepKind::Task(t) = &step.kind else { continue };
        let who = t.assign.as_ref().map(|a| graph::assignee_text(p, a)).unwrap_or_else(|| "candidates".into());
        for r in t.candidates.iter().chain(t.assign.iter().filter_map(|a| match a {
            Assignee::Role { role, .. } => Some(role),
            _ => None,
        })) {
            roles.insert(r.clone());
        }
        let due = t.due.as_ref().map(expr_to_string).unwrap_or_else(|| "—".into());
        let mut clock = Vec::new();
        if let Some(r) = &t.remind_every {
            clock.push(format!("reminder every {}", expr_to_string(r)));
        }
        for h in &t.handlers {
            clock.push(graph::handler_text(p, h));
        }
        let label = step.label.as_deref().unwrap_or(&step.name);
        let _ = writeln!(
            s,
            "| `{}` {label} | {who} | {due} | {} |",
            step.name,
            if clock.is_empty() { "—".into() } else { clock.join("; ") }
        );
    }
    let _ = writeln!(s, "\nRoles: {}.\n", roles.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", "));
    let outcomes: Vec<String> =
        p.outcomes().map(|o| format!("`{}` {}", o.name, o.label.as_deref().unwrap_or(""))).collect();
    let _ = writeln!(s, "Outcomes: {}.\n", outcomes.join(", "));
    s
}

#[test]
fn processes_doc_is_in_sync() {
    let files = shipped_processes();
    let reports = check_files(&files, Some(&shipped_catalog()));
    let mut doc = String::from(
        "# The shipped processes\n\nGenerated from `processes/*.flow` by `tests/tests/processes_doc.rs`; do not edit by hand\n\
         (`UPDATE_EXPECT=1 cargo test -p caseflow-tests --test processes_doc` regenerates it).\n\n",
    );
    for r in &reports {
        let p = r.checked.process.as_ref().unwrap_or_else(|| panic!("{} does not check", r.name));
        // `caseflow graph` renders every process, in both formats, with every step.
        let dot = graph::to_dot(p);
        assert!(dot.starts_with("digraph {"), "{}", r.name);
        assert!(
            p.steps.iter().all(|s| dot.contains(&format!("({})", s.name))),
            "{}: a step is missing from the DOT",
            r.name
        );
        doc.push_str(&section(p));
    }
    if let Some(diff) = compare_golden(&root().join("docs/processes.md"), &doc) {
        panic!("docs/processes.md is out of date with processes/:\n{diff}");
    }
}
