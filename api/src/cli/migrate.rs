//! `caseflow migrate`: running cases of a stopped server moved to another version.

use super::{load_rules, open_data_dir, plural};
use crate::OutputFormat;
use anyhow::{bail, Result};
use std::path::Path;
use std::process::ExitCode;

/// The migration `caseflow migrate` asks for: `--map OLD=NEW` pairs read, and who asks
/// (`--by`, else the login name).
pub(crate) fn order(
    process: String,
    (from, to): (u32, u32),
    mapping: &[String],
    dry_run: bool,
    by: Option<String>,
) -> Result<caseflow_engine::MigrationOrder> {
    let mut map = std::collections::BTreeMap::new();
    for m in mapping {
        let Some((old, new)) = m.split_once('=') else {
            bail!("`--map {m}`: write OLD=NEW, the old step's name and the new one's");
        };
        map.insert(old.trim().to_string(), new.trim().to_string());
    }
    let by = by.or_else(|| std::env::var("USER").ok()).filter(|b| !b.trim().is_empty());
    Ok(caseflow_engine::MigrationOrder {
        process,
        from,
        to,
        mapping: map,
        dry_run,
        by: caseflow_core::case::Actor { id: by.unwrap_or_else(|| "cli".into()), roles: Vec::new(), admin: true },
    })
}

pub(crate) fn migrate(
    order: &caseflow_engine::MigrationOrder,
    data: &Path,
    rules_dir: &Path,
    field_key: Option<&Path>,
    format: OutputFormat,
) -> Result<ExitCode> {
    use caseflow_engine::clock::Clock;
    let rules =
        load_rules(rules_dir)?.map_err(|_| anyhow::anyhow!("the rules of {} do not load", rules_dir.display()))?;
    let zone = rules.calendar.time_zone;
    let engine = open_data_dir(data, &rules, field_key)?;
    let report = match engine.migrate(order, caseflow_engine::clock::SystemClock.now()) {
        Ok(r) => r,
        Err(
            e @ (caseflow_engine::EngineError::BadMigration(_)
            | caseflow_engine::EngineError::UnknownProcess(_)
            | caseflow_engine::EngineError::UnknownVersion { .. }),
        ) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    if let OutputFormat::Json = format {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render_migration(&report, zone));
    Ok(ExitCode::SUCCESS)
}

/// A migration report for a person: counts, where cases land, why the others cannot move and
/// which they are, then case by case what changes; times in the calendar's zone, to the second.
pub(crate) fn render_migration(report: &caseflow_engine::MigrationReport, zone: chrono_tz::Tz) -> String {
    use std::fmt::Write;
    let (process, from, to, dry_run) = (&report.process, report.from, report.to, report.dry_run);
    let mut out = String::new();
    let verb = if dry_run { "would move" } else { "moved" };
    let _ = writeln!(
        out,
        "{process} version {from} -> {to}{}: {} running case{}, {} {verb}, {} cannot move",
        if dry_run { " (dry run: nothing changed)" } else { "" },
        report.cases,
        plural(report.cases),
        report.moved,
        report.refused
    );
    for (landing, n) in &report.landing {
        let _ = writeln!(out, "  {landing}: {n}");
    }
    for (incident, n) in &report.incidents {
        let _ = writeln!(out, "  lands at an incident ({n}): {incident}");
    }
    for (reason, n) in &report.refusals {
        let _ = writeln!(out, "  cannot move ({n}): {reason}");
    }
    let show = |t: &Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.with_timezone(&zone).format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_else(|| "none".into())
    };
    for r in &report.results {
        if !r.moved {
            let _ = writeln!(out, "  case {} cannot move: {}", r.business_key, r.reasons.join("; "));
            continue;
        }
        let Some(plan) = &r.plan else { continue };
        let mut parts = Vec::new();
        if !plan.tasks_closed.is_empty() {
            parts.push(format!("closes {}", plan.tasks_closed.join(", ")));
        }
        if !plan.tasks_opened.is_empty() {
            parts.push(format!("opens {}", plan.tasks_opened.join(", ")));
        }
        for d in &plan.deadlines {
            parts.push(format!("task {} due {} (was {})", d.task, show(&d.new), show(&d.old)));
        }
        if !plan.fields_defaulted.is_empty() {
            parts.push(format!("defaults {}", plan.fields_defaulted.join(", ")));
        }
        if let Some(incident) = &plan.landing.incident {
            parts.push(format!("lands at an incident: {incident}"));
        }
        if !parts.is_empty() {
            let _ = writeln!(out, "  case {}: {}", r.business_key, parts.join("; "));
        }
    }
    if report.cases > report.results.len() {
        let _ = writeln!(out, "  (the first {} cases are listed; --format json for the data)", report.results.len());
    }
    out
}
