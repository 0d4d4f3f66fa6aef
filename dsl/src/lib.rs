//! The .flow language: source text → AST (`parse`) → checked, immutable process model
//! (`check`), plus diagnostics, canonical formatting and diagrams.
//!
//! Architecture invariant: this crate does no I/O. Callers hand it text and get values back;
//! reading files and directories is the binary's job.

pub mod ast;
pub mod catalog;
pub mod check;
pub mod diag;
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
                        Code::DuplicateStep,
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
    parsed
        .into_iter()
        .enumerate()
        .map(|(i, ast)| {
            let mut checked = match ast {
                Ok(ast) => check(&ast, &ctx),
                Err(diagnostics) => Checked { process: None, diagnostics },
            };
            if let Some(d) = duplicates.remove(&i) {
                checked.process = None;
                checked.diagnostics.insert(0, d);
            }
            FileReport { name: files[i].name.clone(), checked }
        })
        .collect()
}
