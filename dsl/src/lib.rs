//! The .flow language: source text → AST (`parse`) → checked, immutable process model
//! (`check`), plus diagnostics, canonical formatting and diagrams.
//!
//! Architecture invariant: this crate does no I/O. Callers hand it text and get values back;
//! reading files and directories is the binary's job.

pub mod ast;
pub mod catalog;
pub mod check;
pub mod diag;
pub mod diff;
pub mod fmt;
pub mod graph;
pub mod model;
pub mod parse;
pub mod synth;

pub use catalog::RuleCatalog;
pub use check::{check, compile, CheckContext, Checked, Signature};
pub use diag::{Code, Diagnostic, Severity};

use std::collections::BTreeMap;

/// One file handed to `check_files`.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// A file's bytes as text. A file that is not UTF-8 gives its text with the bad bytes
/// replaced (to show where) and a diagnostic at the first bad byte.
pub fn decode(bytes: Vec<u8>) -> Result<String, Box<(String, Diagnostic)>> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let d = Diagnostic::new(Code::NotUtf8, at..at + 1, "the file is not UTF-8 text from here on")
                .hint("save it as UTF-8 (in most editors: \"Save with encoding\" → UTF-8)");
            Err(Box::new((text, d)))
        }
    }
}

/// The result of checking one file among several.
#[derive(Debug)]
pub struct FileReport {
    pub name: String,
    pub checked: Checked,
}

/// Checks several files together, so that `call` steps are checked against the processes
/// they call (their ids and fields). Two files declaring the same process id is an error.
pub fn check_files(files: &[SourceFile], catalog: Option<&RuleCatalog>) -> Vec<FileReport> {
    let parsed: Vec<_> = files.iter().map(|f| parse::parse(&f.text)).collect();
    let mut signatures = BTreeMap::new();
    let mut first_file: BTreeMap<String, usize> = BTreeMap::new();
    let mut duplicates: BTreeMap<usize, Diagnostic> = BTreeMap::new();
    for (i, ast) in parsed.iter().enumerate() {
        if let Ok(ast) = ast {
            if let Some(&first) = first_file.get(&ast.id.name) {
                duplicates.insert(
                    i,
                    Diagnostic::new(
                        Code::DuplicateProcess,
                        ast.id.span.clone(),
                        format!("process `{}` is also defined in {}", ast.id.name, files[first].name),
                    )
                    .hint("each process id may be defined by one file only"),
                );
                continue;
            }
            first_file.insert(ast.id.name.clone(), i);
            signatures.insert(ast.id.name.clone(), Signature::of(ast));
        }
    }
    let ctx = CheckContext { catalog, processes: Some(&signatures) };
    let mut reports = parsed
        .iter()
        .enumerate()
        .map(|(i, ast)| {
            let mut checked = match ast {
                Ok(ast) => check(ast, &ctx),
                Err(diagnostics) => Checked { process: None, diagnostics: diagnostics.clone() },
            };
            if let Some(d) = duplicates.remove(&i) {
                checked.process = None;
                checked.diagnostics.insert(0, d);
            }
            FileReport { name: files[i].name.clone(), checked }
        })
        .collect::<Vec<_>>();
    refuse_endless_calls(&mut reports, &parsed);
    reports
}

/// Processes that call each other (or themselves) with no task or wait on the way would nest
/// cases without end: every such call is an error (FLOW037). Recursion that passes a task or a
/// wait is allowed; the engine bounds it at run time (`CALL_DEPTH_MAX` nested calls).
fn refuse_endless_calls(reports: &mut [FileReport], parsed: &[Result<ast::Process, Vec<Diagnostic>>]) {
    use petgraph::graph::{DiGraph, NodeIndex};
    let mut graph: DiGraph<usize, (usize, model::StepId)> = DiGraph::new();
    let nodes: BTreeMap<String, NodeIndex> = reports
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((r.checked.process.as_ref()?.id.clone(), graph.add_node(i))))
        .collect();
    for (i, r) in reports.iter().enumerate() {
        let Some(p) = &r.checked.process else { continue };
        for step in p.calls_without_waiting() {
            let model::StepKind::Call(c) = &p.step(step).kind else { continue };
            if let Some(&to) = nodes.get(&c.process) {
                graph.add_edge(nodes[&p.id], to, (i, step));
            }
        }
    }
    for scc in petgraph::algo::tarjan_scc(&graph) {
        let cyclic = scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
        if !cyclic {
            continue;
        }
        let mut names: Vec<String> =
            scc.iter().filter_map(|n| reports[graph[*n]].checked.process.as_ref().map(|p| p.id.clone())).collect();
        names.sort();
        let cycle = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        let edges: Vec<(usize, model::StepId)> = graph
            .edge_indices()
            .filter(|e| graph.edge_endpoints(*e).is_some_and(|(a, b)| scc.contains(&a) && scc.contains(&b)))
            .map(|e| graph[e])
            .collect();
        for (file, step) in edges {
            let Ok(ast) = &parsed[file] else { continue };
            let Some(ast::StepKind::Call(call)) = ast.steps.get(step.index()).map(|s| &s.kind) else { continue };
            let report = &mut reports[file];
            report.checked.process = None;
            report.checked.diagnostics.push(
                Diagnostic::new(
                    Code::EndlessCalls,
                    call.process.span.clone(),
                    format!(
                        "{cycle} {} with no task or wait on the way: every case would start another without end",
                        if names.len() == 1 { "calls itself" } else { "call each other" }
                    ),
                )
                .hint("let a person or time come between the levels (a `task` or `wait` before the call), and bound the depth with a field"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_id_defined_by_two_files_is_refused_in_the_second() {
        let text = "process twice \"两次\" {\n  source \"test\"\n  start -> done\n  end done\n}\n";
        let files = [
            SourceFile { name: "a.flow".into(), text: text.into() },
            SourceFile { name: "b.flow".into(), text: text.into() },
        ];
        let reports = check_files(&files, None);
        assert!(reports[0].checked.diagnostics.iter().all(|d| !d.is_error()), "{:?}", reports[0].checked.diagnostics);
        let second = &reports[1].checked.diagnostics;
        assert_eq!(second.iter().map(|d| d.code).collect::<Vec<_>>(), [Code::DuplicateProcess], "{second:?}");
        assert!(second[0].message.contains("also defined in a.flow"), "{}", second[0].message);
    }
}
