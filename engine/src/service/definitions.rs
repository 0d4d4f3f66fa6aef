//! Deployed process versions: deploying (a new version only when the source changed), checking
//! a folder's files together, and compiling stored versions again on open.

use super::{Engine, EngineError, Verdict};
use crate::storage::codec::encode;
use crate::storage::keys;
use crate::storage::{Batch, Storage};
use crate::sync::Unpoisoned;
use caseflow_dsl::model::Process;
use caseflow_dsl::{check_files, SourceFile};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;

#[derive(Serialize, Deserialize)]
pub(crate) struct StoredDefinition {
    pub(crate) source: String,
    pub(crate) deployed_at: DateTime<Utc>,
}

/// A deployed version of a process.
pub struct Deployed {
    pub process: String,
    pub version: u32,
    pub source: String,
    pub model: Process,
    pub deployed_at: DateTime<Utc>,
}

/// What a deploy did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Deployed, example = json!({"process": "complaint", "version": 2, "changed": true, "warnings": []})))]
pub struct DeployOutcome {
    pub process: String,
    pub version: u32,
    /// False when the source equals the latest version's: nothing was deployed.
    pub changed: bool,
    pub warnings: Vec<String>,
}

/// When the deployed process `file` fails its check with errors it did not have before, the
/// candidates it calls (all of them, if it calls none of them) are refused with FLOW040, which
/// names the caller and its errors. Returns (candidate index, diagnostic).
fn broken_callers(
    report: &caseflow_dsl::FileReport,
    file: &SourceFile,
    already_failing: &BTreeSet<(String, String)>,
    sources: &[SourceFile],
    candidates: &[usize],
) -> Vec<(usize, caseflow_dsl::diag::Diagnostic)> {
    let new_errors: Vec<&caseflow_dsl::diag::Diagnostic> = report
        .checked
        .diagnostics
        .iter()
        .filter(|d| d.is_error() && !already_failing.contains(&error_key(file, d)))
        .collect();
    if new_errors.is_empty() {
        return Vec::new();
    }
    let called = called_processes(&file.text);
    let caller = file.name.trim_end_matches(".flow");
    let blamed: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|i| process_id(&sources[*i].text).is_some_and(|(id, _)| called.contains(&id)))
        .collect();
    let blamed = if blamed.is_empty() { candidates.to_vec() } else { blamed };
    let what: Vec<String> = new_errors
        .iter()
        .map(|d| {
            let at = caseflow_dsl::diag::line_col(&file.text, d.span.start);
            format!("{caller}.flow:{}:{}: {} {}", at.line, at.column, d.code.as_str(), d.message)
        })
        .collect();
    blamed
        .into_iter()
        .map(|i| {
            let span = process_id(&sources[i].text).map(|(_, s)| s).unwrap_or(0..0);
            let d = caseflow_dsl::diag::Diagnostic::new(
                caseflow_dsl::diag::Code::BreaksCaller,
                span,
                format!("this version breaks the deployed process `{caller}`: {}", what.join("; ")),
            )
            .hint(format!("keep what `{caller}` uses, or deploy `{caller}`'s new version together with this one"));
            (i, d)
        })
        .collect()
}

/// The errors of a checked file, as (file, code and message) keys that survive edits elsewhere.
fn error_keys(report: &caseflow_dsl::FileReport, file: &SourceFile) -> Vec<(String, String)> {
    report.checked.diagnostics.iter().filter(|d| d.is_error()).map(|d| error_key(file, d)).collect()
}

fn error_key(file: &SourceFile, d: &caseflow_dsl::diag::Diagnostic) -> (String, String) {
    (file.name.clone(), format!("{} {}", d.code.as_str(), d.message))
}

/// The process id a source declares, with its span.
fn process_id(text: &str) -> Option<(String, std::ops::Range<usize>)> {
    caseflow_dsl::parse::parse(text).ok().map(|a| (a.id.name, a.id.span))
}

/// The processes a source's `call` steps call.
fn called_processes(text: &str) -> BTreeSet<String> {
    let Ok(ast) = caseflow_dsl::parse::parse(text) else { return BTreeSet::new() };
    ast.steps
        .iter()
        .filter_map(|s| match &s.kind {
            caseflow_dsl::ast::StepKind::Call(c) => Some(c.process.name.clone()),
            _ => None,
        })
        .collect()
}

/// Compiles a stored definition again on start. It passed every check when it was deployed
/// (rules, called processes); here only the language matters, so neither is consulted: a
/// stored version never becomes unloadable because a rule or another process changed since.
pub(crate) fn compile_one(source: &str) -> Result<Process, EngineError> {
    let checked = caseflow_dsl::compile(source, &caseflow_dsl::CheckContext::default());
    checked.process.ok_or(EngineError::Rejected(checked.diagnostics))
}

impl<S: Storage> Engine<S> {
    /// The error for a version that is not deployed: no such process at all, or its versions.
    pub(crate) fn unknown_version(&self, process: &str, version: u32) -> EngineError {
        let defs = self.definitions.read().unpoisoned();
        match defs.get(process).filter(|v| !v.is_empty()) {
            None => EngineError::UnknownProcess(process.to_string()),
            Some(versions) => EngineError::UnknownVersion {
                process: process.to_string(),
                version,
                deployed: versions.keys().map(u32::to_string).collect::<Vec<_>>().join(", "),
            },
        }
    }

    /// Checks a source and deploys it as a new version if it differs from the latest.
    pub fn deploy(&self, source: &str, now: DateTime<Utc>) -> Result<DeployOutcome, EngineError> {
        let mut results =
            self.deploy_together(&[SourceFile { name: "deploy.flow".into(), text: source.into() }], now)?;
        results.remove(0)
    }

    /// Checks several sources together with the latest deployed version of every other
    /// process (so processes that call each other check as `caseflow check` checks a
    /// folder), and deploys each one that passes. One result per source, in order.
    pub fn deploy_together(
        &self,
        sources: &[SourceFile],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<DeployOutcome, EngineError>>, EngineError> {
        let rules = self.rules();
        let catalog = rules.catalog();
        // What the deployed processes already fail today (a rule changed since, say): only
        // errors a change adds to them are the change's.
        let deployed: Vec<SourceFile> = {
            let defs = self.definitions.read().unpoisoned();
            defs.values()
                .filter_map(|v| v.values().next_back())
                .map(|l| SourceFile { name: format!("{}.flow", l.process), text: l.source.clone() })
                .collect()
        };
        let already_failing: BTreeSet<(String, String)> = check_files(&deployed, Some(&catalog))
            .into_iter()
            .zip(&deployed)
            .flat_map(|(r, f)| error_keys(&r, f))
            .collect();
        // Refused sources drop out and the check runs again, so nothing deploys against a
        // process that is not deployed in the end.
        let mut verdicts: Vec<Option<Verdict>> = vec![None; sources.len()];
        loop {
            let candidates: Vec<usize> = (0..sources.len()).filter(|i| verdicts[*i].is_none()).collect();
            let mut files: Vec<SourceFile> = candidates.iter().map(|i| sources[*i].clone()).collect();
            let new_ids: BTreeSet<String> =
                files.iter().filter_map(|f| caseflow_dsl::parse::parse(&f.text).ok().map(|a| a.id.name)).collect();
            {
                let defs = self.definitions.read().unpoisoned();
                // A new source replaces its own latest version among the signatures.
                for versions in defs.values() {
                    if let Some(latest) = versions.values().next_back().filter(|l| !new_ids.contains(&l.process)) {
                        files
                            .push(SourceFile { name: format!("{}.flow", latest.process), text: latest.source.clone() });
                    }
                }
            }
            let mut reports = check_files(&files, Some(&catalog));
            let others = reports.split_off(candidates.len());
            let mut refused_now = false;
            // A deployed process the change breaks (a caller copying back a field the new
            // version renamed) refuses the versions it calls: one check over the deployed set
            // as it would be after the change, for every way in.
            for (report, file) in others.iter().zip(&files[candidates.len()..]) {
                for (i, d) in broken_callers(report, file, &already_failing, sources, &candidates) {
                    match &mut verdicts[i] {
                        Some(Err(list)) => list.push(d),
                        slot => *slot = Some(Err(vec![d])),
                    }
                    refused_now = true;
                }
            }
            let mut passed = Vec::new();
            for (report, i) in reports.into_iter().zip(candidates) {
                if verdicts[i].is_some() {
                    continue;
                }
                match report.checked.process {
                    Some(model) => {
                        let warnings = report
                            .checked
                            .diagnostics
                            .iter()
                            .map(|d| format!("{}: {}", d.code.as_str(), d.message))
                            .collect();
                        passed.push((i, model, warnings));
                    }
                    None => {
                        refused_now = true;
                        verdicts[i] = Some(Err(report.checked.diagnostics));
                    }
                }
            }
            if !refused_now {
                for (i, model, warnings) in passed {
                    verdicts[i] = Some(Ok((model, warnings)));
                }
                break;
            }
        }
        let mut results = Vec::with_capacity(sources.len());
        for (verdict, file) in verdicts.into_iter().zip(sources) {
            results.push(match verdict.expect("every source has a verdict") {
                Ok((model, warnings)) => self.deploy_checked(model, &file.text, warnings, now),
                Err(diagnostics) => Err(EngineError::Rejected(diagnostics)),
            });
        }
        Ok(results)
    }

    /// Stores a checked model as a new version, unless its source equals the latest.
    pub(crate) fn deploy_checked(
        &self,
        model: Process,
        source: &str,
        warnings: Vec<String>,
        now: DateTime<Utc>,
    ) -> Result<DeployOutcome, EngineError> {
        let mut defs = self.definitions.write().unpoisoned();
        let versions = defs.entry(model.id.clone()).or_default();
        if let Some(latest) = versions.values().next_back() {
            if latest.source == source {
                return Ok(DeployOutcome {
                    process: model.id.clone(),
                    version: latest.version,
                    changed: false,
                    warnings,
                });
            }
        }
        let version = versions.keys().next_back().map_or(1, |v| v + 1);
        let stored = StoredDefinition { source: source.to_string(), deployed_at: now };
        let mut batch = Batch::default();
        // Another node on the same database may have deployed this version meanwhile.
        batch.expect(keys::definition(&model.id, version), None);
        let indexed_before: BTreeSet<String> =
            versions.values().flat_map(|d| d.model.indexes.iter().cloned()).collect();
        let indexed_before: Vec<String> = indexed_before.into_iter().collect();
        self.mark_backfill(&mut batch, &model.id, !versions.is_empty(), &indexed_before, &model.indexes, now)?;
        batch.insert(keys::definition(&model.id, version), encode(&stored));
        let ticket = match self.store.write(batch) {
            Err(crate::storage::StoreError::Conflict(_)) => {
                drop(defs);
                self.refresh()?;
                return self.deploy_checked(model, source, warnings, now);
            }
            other => other?,
        };
        self.store.wait_durable(ticket)?;
        let process = model.id.clone();
        versions.insert(
            version,
            Arc::new(Deployed {
                process: process.clone(),
                version,
                source: source.to_string(),
                model,
                deployed_at: now,
            }),
        );
        Ok(DeployOutcome { process, version, changed: true, warnings })
    }

    pub fn definition(&self, process: &str, version: Option<u32>) -> Option<Arc<Deployed>> {
        let defs = self.definitions.read().unpoisoned();
        let versions = defs.get(process)?;
        match version {
            Some(v) => versions.get(&v).cloned(),
            None => versions.values().next_back().cloned(),
        }
    }

    /// Every process with its versions, latest last.
    pub fn definitions(&self) -> Vec<(String, Vec<u32>)> {
        let defs = self.definitions.read().unpoisoned();
        defs.iter().map(|(n, v)| (n.clone(), v.keys().copied().collect())).collect()
    }
}
