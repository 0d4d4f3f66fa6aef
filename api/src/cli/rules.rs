//! `caseflow rules check|eval`: a rules folder validated, its decision tables tried, and
//! (`--against`) what it would change in a stopped server's open work.

use super::{collect, engine_over, load_rules, open_store, plural, rules_or_report};
use crate::OutputFormat;
use anyhow::{bail, Result};
use caseflow_core::value::Value;
use caseflow_dsl::{check_files, SourceFile};
use caseflow_engine::RuleSet;
use std::path::Path;
use std::process::ExitCode;

pub(crate) fn rules_check(dir: &Path, processes: &Path) -> Result<ExitCode> {
    let Some(rules) = rules_or_report(dir)? else { return Ok(ExitCode::FAILURE) };
    eprintln!(
        "rules ok: {} roles, {} users, {} values, {} decision tables, calendar in {}",
        rules.roles.len(),
        rules.users.len(),
        rules.values.len(),
        rules.tables.len(),
        rules.calendar.time_zone
    );
    use caseflow_engine::clock::Clock;
    if let Some(w) = caseflow::server::calendar_warning(&rules, caseflow_engine::clock::SystemClock.now()) {
        eprintln!("warning: {w}");
    }
    if processes.exists() {
        // Values and tables no process refers to: a misspelt use, or a rule left behind.
        let mut files = Vec::new();
        collect(processes, "flow", &mut files)?;
        let sources: Vec<SourceFile> = files
            .iter()
            .filter_map(|f| {
                let text = caseflow_dsl::decode(std::fs::read(f).ok()?).ok()?;
                Some(SourceFile { name: f.display().to_string(), text })
            })
            .collect();
        let used: std::collections::BTreeSet<String> = check_files(&sources, Some(&rules.catalog()))
            .into_iter()
            .filter_map(|r| r.checked.process)
            .flat_map(|p| p.rules_used)
            .collect();
        for name in rules.values.keys().filter(|n| !used.contains(*n)) {
            eprintln!("warning: value `{name}` is used by no process in {}", processes.display());
        }
        for name in rules.tables.keys().filter(|n| !used.contains(*n)) {
            eprintln!("warning: decision table `{name}` is used by no process in {}", processes.display());
        }
        return super::check::check(&[processes.to_path_buf()], Some(dir), OutputFormat::Human);
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn rules_eval(dir: &Path, table: &str, inputs: &[String]) -> Result<ExitCode> {
    let Some(rules) = rules_or_report(dir)? else { return Ok(ExitCode::FAILURE) };
    let Some(t) = rules.tables.get(table) else {
        let names: Vec<&str> = rules.tables.keys().map(String::as_str).collect();
        bail!("no decision table `{table}`; the tables are: {}", names.join(", "));
    };
    let mut given = std::collections::BTreeMap::new();
    for arg in inputs {
        let Some((k, v)) = arg.split_once('=') else { bail!("`{arg}`: write inputs as name=value") };
        if !t.inputs.iter().any(|i| i == k) {
            bail!("table `{table}` has no input `{k}`; its inputs are: {}", t.inputs.join(", "));
        }
        given.insert(k.to_string(), Value::parse_loose(v));
    }
    let missing: Vec<&str> = t.inputs.iter().filter(|i| !given.contains_key(*i)).map(String::as_str).collect();
    if !missing.is_empty() {
        bail!("missing input{}: {}", plural(missing.len()), missing.join(", "));
    }
    let values: Vec<Value> = t.inputs.iter().map(|i| given[i].clone()).collect();
    let hits = t.evaluate(&values)?;
    let result: Vec<serde_json::Value> = hits
        .0
        .iter()
        .map(|&i| {
            let outputs: serde_json::Map<String, serde_json::Value> = t
                .outputs
                .iter()
                .zip(&t.rows[i].outputs)
                .map(|(n, v)| (n.clone(), serde_json::Value::String(v.to_string())))
                .collect();
            serde_json::json!({ "row": i, "line": t.rows[i].line, "outputs": outputs })
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(
            &serde_json::json!({ "table": table, "hit_policy": t.hit_policy, "hits": result })
        )?
    );
    Ok(if hits.0.is_empty() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The stopped server's data directory a rules check is measured against.
pub(crate) struct ImpactAgainst<'a> {
    pub(crate) data: &'a Path,
    /// The rules in force when the data directory recorded none.
    pub(crate) current_rules: &'a Path,
    pub(crate) field_key: Option<&'a Path>,
}

/// What the rules of `dir` would do to the open work stored in `data` (`rules check --against`),
/// compared with the rules in force there: those the server recorded, as the HTTP dry run
/// compares with the rules it runs with.
pub(crate) fn rules_impact(
    dir: &Path,
    against: &ImpactAgainst,
    recompute: bool,
    format: OutputFormat,
) -> Result<ExitCode> {
    use caseflow_engine::clock::Clock;
    let candidate = load_rules(dir)?.map_err(|_| anyhow::anyhow!("the rules of {} do not load", dir.display()))?;
    let data = against.data;
    let store = open_store(data)?;
    let in_force = match caseflow_engine::Engine::rules_files_in_force(&store)? {
        Some(files) => RuleSet::load(&files).map_err(|_| {
            anyhow::anyhow!("the rules recorded in {} as in force do not load any more", data.display())
        })?,
        None => load_rules(against.current_rules)?
            .map_err(|_| anyhow::anyhow!("the rules in force ({}) do not load", against.current_rules.display()))?,
    };
    let engine = engine_over(store, data, &in_force, against.field_key)?;
    let impact = engine.rules_impact(&candidate, recompute, caseflow_engine::clock::SystemClock.now())?;
    if let OutputFormat::Json = format {
        println!("{}", serde_json::to_string_pretty(&impact)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("against {} (nothing applied):", data.display());
    println!("  open cases: {}, open tasks: {}", impact.cases, impact.open_tasks);
    if recompute {
        println!("  deadlines that would move: {}", impact.deadlines_moved);
    } else {
        println!("  deadlines: none moves (open deadlines stay; --recompute shows what recomputing would move)");
    }
    if let Some(m) = impact.shift_minutes {
        println!("  by minutes: earliest {}, median {}, latest {}", m.earliest, m.median, m.latest);
    }
    println!("  tasks overdue at once: {}", impact.overdue_at_once);
    for (step, n) in &impact.moved_by_step {
        println!("  moved at {step}: {n}");
    }
    for (step, n) in &impact.lookups_changed {
        println!("  decision table at {step} would decide differently for: {n}");
    }
    for (step, n) in &impact.assignees_lost_by_step {
        println!("  tasks at {step} whose assignee these rules take off them: {n}");
    }
    for a in &impact.assignees_lost {
        println!("    task {} ({}): {} is {}", a.task, a.step, a.assignee, a.reason);
    }
    if impact.not_recomputed > 0 {
        println!("  cases the core could not recompute under these rules: {}", impact.not_recomputed);
    }
    Ok(ExitCode::SUCCESS)
}
