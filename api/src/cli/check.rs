//! `caseflow check`, `graph`, `fmt` and `diff`: the .flow files themselves.

use super::{collect, color, load_catalog, plural, read};
use crate::{GraphFormat, OutputFormat};
use anyhow::{Context, Result};
use caseflow_dsl::{check_files, diag, graph, SourceFile};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub(crate) fn check(paths: &[PathBuf], rules: Option<&Path>, format: OutputFormat) -> Result<ExitCode> {
    let catalog = match rules.map(load_catalog).transpose()? {
        Some(None) => return Ok(ExitCode::FAILURE),
        Some(Some(c)) => Some(c),
        None => None,
    };
    let mut files = Vec::new();
    for p in paths {
        collect(p, "flow", &mut files)?;
    }
    // A file that is not UTF-8 is reported on its own; the others are checked together.
    let (mut sources, mut undecodable) = (Vec::new(), Vec::new());
    for f in &files {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        match caseflow_dsl::decode(bytes) {
            Ok(text) => sources.push(SourceFile { name: f.display().to_string(), text }),
            Err(e) => {
                let (text, d) = *e;
                undecodable.push((SourceFile { name: f.display().to_string(), text }, d))
            }
        }
    }
    let reports = check_files(&sources, catalog.as_ref());
    let (mut errors, mut warnings) = (undecodable.len(), 0);
    let mut json = Vec::new();
    for (source, d) in &undecodable {
        let diags = std::slice::from_ref(d);
        match format {
            OutputFormat::Human => eprint!("{}", diag::render(&source.name, &source.text, diags, color())),
            OutputFormat::Json => json.push(d.to_json(&source.name, &source.text)),
        }
    }
    for (report, source) in reports.iter().zip(&sources) {
        let diags = &report.checked.diagnostics;
        errors += diags.iter().filter(|d| d.is_error()).count();
        warnings += diags.iter().filter(|d| !d.is_error()).count();
        match format {
            OutputFormat::Human => eprint!("{}", diag::render(&report.name, &source.text, diags, color())),
            OutputFormat::Json => json.extend(diags.iter().map(|d| d.to_json(&report.name, &source.text))),
        }
    }
    match format {
        OutputFormat::Human => eprintln!(
            "checked {} file{}: {errors} error{}, {warnings} warning{}",
            files.len(),
            plural(files.len()),
            plural(errors),
            plural(warnings)
        ),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&json)?),
    }
    Ok(if errors > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// `caseflow diff OLD NEW`: what changed between two versions of a process.
pub(crate) fn diff(old: &Path, new: &Path, format: OutputFormat) -> Result<ExitCode> {
    let mut versions = Vec::new();
    for file in [old, new] {
        let text = read(file)?;
        match caseflow_dsl::parse::parse(&text) {
            Ok(ast) => versions.push(ast),
            Err(diagnostics) => {
                eprint!("{}", diag::render(&file.display().to_string(), &text, &diagnostics, color()));
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if versions[0].id.name != versions[1].id.name {
        eprintln!(
            "error: {} defines process `{}` and {} defines `{}`: compare two versions of one process",
            old.display(),
            versions[0].id.name,
            new.display(),
            versions[1].id.name
        );
        return Ok(ExitCode::FAILURE);
    }
    let d = caseflow_dsl::diff::diff(&versions[0], &versions[1]);
    match format {
        OutputFormat::Human => print!("{}", d.render()),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&d)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// `caseflow graph FILE`: the process drawn as DOT, Mermaid or SVG.
pub(crate) fn graph(file: &Path, format: GraphFormat) -> Result<ExitCode> {
    let text = read(file)?;
    // Checked with the other .flow files of its folder, so that a `call` finds the
    // process it names, as `caseflow check FOLDER` and the server check it.
    let mut sources = vec![SourceFile { name: file.display().to_string(), text: text.clone() }];
    let mut siblings = Vec::new();
    if let Some(dir) = file.parent().filter(|d| d.is_dir()) {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        collect(dir, "flow", &mut siblings)?;
    }
    for s in siblings.iter().filter(|s| s.canonicalize().ok() != file.canonicalize().ok()) {
        if let Ok(Ok(text)) = std::fs::read(s).map(caseflow_dsl::decode) {
            sources.push(SourceFile { name: s.display().to_string(), text });
        }
    }
    let report = check_files(&sources, None);
    let report = &report[0];
    // A call whose process is not beside the file (or does not fit it) does not stop
    // the drawing: the file alone, its calls unchecked, is drawn, with a warning.
    let alone = || caseflow_dsl::compile(&text, &caseflow_dsl::CheckContext::default()).process;
    let drawn = match &report.checked.process {
        Some(p) => Some(p.clone()),
        None => alone().inspect(|_| {
            let call_problems: Vec<String> =
                report.checked.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.message.clone()).collect();
            eprintln!(
                "warning: drawn without checking its calls against the processes beside it ({})",
                call_problems.join("; ")
            );
        }),
    };
    let Some(process) = &drawn else {
        eprint!("{}", diag::render(&report.name, &text, &report.checked.diagnostics, color()));
        return Ok(ExitCode::FAILURE);
    };
    let text = match format {
        GraphFormat::Dot => graph::to_dot(process),
        GraphFormat::Mermaid => graph::to_mermaid(process),
        GraphFormat::Svg => graph::to_svg(process).map_err(anyhow::Error::msg)?,
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// `caseflow fmt FILES`: the canonical layout, in place, checked (`--check`) or printed.
pub(crate) fn fmt(files: Vec<PathBuf>, check: bool, stdout: bool) -> Result<ExitCode> {
    let mut unformatted = false;
    for file in files {
        let text = read(&file)?;
        let formatted = match caseflow_dsl::fmt::format_source(&text) {
            Ok(f) => f,
            Err(diagnostics) => {
                eprint!("{}", diag::render(&file.display().to_string(), &text, &diagnostics, color()));
                return Ok(ExitCode::FAILURE);
            }
        };
        if stdout {
            print!("{formatted}");
        } else if formatted != text {
            if check {
                eprintln!("{} is not formatted", file.display());
                unformatted = true;
            } else {
                std::fs::write(&file, formatted).with_context(|| format!("writing {}", file.display()))?;
            }
        }
    }
    Ok(if unformatted { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
