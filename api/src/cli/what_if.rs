//! `caseflow what-if`: closed cases replayed through candidate rules or processes.

use super::{collect, color, open_data_dir, plural, read, rules_or_report};
use crate::OutputFormat;
use anyhow::Result;
use caseflow_dsl::{check_files, diag, SourceFile};
use std::path::Path;
use std::process::ExitCode;

// One piece (over 100 lines): the command's sequence (validate the period, read the candidates, replay, print), most of it the printer.
pub(crate) fn what_if(
    data: &Path,
    candidate_rules: Option<&Path>,
    candidate_processes: Option<&Path>,
    current_rules: &Path,
    (from, to): (Option<chrono::NaiveDate>, Option<chrono::NaiveDate>),
    field_key: Option<&Path>,
    format: OutputFormat,
) -> Result<ExitCode> {
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            eprintln!("error: --from {f} is not before --to {t}: the period [from, to) would hold no case");
            return Ok(ExitCode::FAILURE);
        }
    }
    let Some(in_force) = rules_or_report(current_rules)? else { return Ok(ExitCode::FAILURE) };
    let candidate = match candidate_rules {
        Some(dir) => match rules_or_report(dir)? {
            Some(r) => r,
            None => return Ok(ExitCode::FAILURE),
        },
        None => in_force.clone(),
    };
    let engine = open_data_dir(data, &in_force, field_key)?;
    let mut models = engine.deployed_models();
    if let Some(dir) = candidate_processes {
        let mut paths = Vec::new();
        collect(dir, "flow", &mut paths)?;
        if paths.is_empty() {
            eprintln!("error: no .flow files in {}: no candidate process to replay", dir.display());
            return Ok(ExitCode::FAILURE);
        }
        let sources: Vec<SourceFile> = paths
            .iter()
            .map(|p| Ok(SourceFile { name: p.display().to_string(), text: read(p)? }))
            .collect::<Result<_>>()?;
        let catalog = candidate.catalog();
        let mut broken = false;
        for (report, source) in check_files(&sources, Some(&catalog)).into_iter().zip(&sources) {
            match report.checked.process {
                Some(p) => {
                    models.candidate.insert(p.id.clone(), p);
                }
                None => {
                    eprint!("{}", diag::render(&report.name, &source.text, &report.checked.diagnostics, color()));
                    broken = true;
                }
            }
        }
        if broken {
            eprintln!("error: candidate processes that do not check cannot be replayed");
            return Ok(ExitCode::FAILURE);
        }
    }
    let zone = in_force.calendar.time_zone;
    let day = |d: chrono::NaiveDate| {
        use chrono::TimeZone;
        zone.from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
            .earliest()
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let cases = engine.closed_cases(from.and_then(day), to.and_then(day))?;
    let started = std::time::Instant::now();
    let report = caseflow_engine::whatif::what_if(&cases, &models, &in_force, &candidate);
    let secs = started.elapsed().as_secs_f64();
    if let OutputFormat::Json = format {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "what-if over {} closed case{} (nothing changed): {} replayed, {} diverged, {} not replayable; {} route{} changed, {} outcome{} changed",
        report.cases,
        plural(report.cases),
        report.replayed,
        report.diverged,
        report.not_replayable,
        report.routes_changed,
        plural(report.routes_changed),
        report.outcomes_changed,
        plural(report.outcomes_changed)
    );
    for (process, p) in &report.by_process {
        println!(
            "  {process}: {} cases, {} routes changed, {} outcomes changed, {} diverged",
            p.cases, p.routes_changed, p.outcomes_changed, p.diverged
        );
    }
    for (step, s) in &report.by_step {
        let mut parts = Vec::new();
        if s.deadlines_before + s.deadlines_after > 0 {
            parts.push(format!(
                "deadlines met {}/{} -> {}/{}",
                s.met_before, s.deadlines_before, s.met_after, s.deadlines_after
            ));
        }
        if s.tasks_before != s.tasks_after {
            parts.push(format!("tasks {} -> {}", s.tasks_before, s.tasks_after));
        }
        if s.assignees_changed > 0 {
            parts.push(format!(
                "{} task{} to someone other than who had {}",
                s.assignees_changed,
                plural(s.assignees_changed),
                if s.assignees_changed == 1 { "it" } else { "them" }
            ));
        }
        if s.decisions_changed > 0 {
            parts.push(format!("decided otherwise in {} case{}", s.decisions_changed, plural(s.decisions_changed)));
        }
        if s.assignees_not_comparable > 0 {
            parts.push(format!(
                "{} assignee{} not comparable (depended on other cases' work)",
                s.assignees_not_comparable,
                plural(s.assignees_not_comparable)
            ));
        }
        if !parts.is_empty() {
            println!("  {step}: {}", parts.join("; "));
        }
    }
    for d in &report.divergences {
        println!("  diverged: {d}");
    }
    eprintln!("replayed {} commands in {secs:.2} s", report.commands);
    Ok(ExitCode::SUCCESS)
}
