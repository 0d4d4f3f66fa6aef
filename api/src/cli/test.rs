//! `caseflow test`: scenario files run against the real engine (in memory, a manual clock),
//! the processes of `--processes` and the rules of `--rules`.

use super::{collect, open_data_dir, problem_detail, read, rules_or_report};
use crate::OutputFormat;
use anyhow::Result;
use caseflow_dsl::SourceFile;
use caseflow_engine::scenario::{self, ScenarioFile, ScenarioResult, Setup};
use caseflow_engine::MemoryStore;
use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn test(
    paths: &[PathBuf],
    processes: &[PathBuf],
    rules: &Path,
    format: OutputFormat,
    with_coverage: bool,
) -> Result<ExitCode> {
    let Some(rules) = rules_or_report(rules)? else { return Ok(ExitCode::FAILURE) };
    let mut flows = Vec::new();
    for p in processes {
        collect(p, "flow", &mut flows)?;
    }
    let sources: Vec<SourceFile> = flows
        .iter()
        .map(|f| Ok(SourceFile { name: f.display().to_string(), text: read(f)? }))
        .collect::<Result<_>>()?;
    let setup = match Setup::new(sources, rules) {
        Ok(s) => s,
        Err(refusals) => {
            for r in refusals {
                eprintln!("error: {r}");
            }
            eprintln!("the processes do not deploy; `caseflow check` shows every problem");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut files = Vec::new();
    for p in paths {
        collect(p, "toml", &mut files)?;
    }
    if files.is_empty() {
        eprintln!("error: no scenario files (*.toml) in {}", show_paths(paths));
        return Ok(ExitCode::FAILURE);
    }
    let mut outcomes = Vec::new();
    for f in &files {
        let dir = f.parent().map(Path::to_path_buf);
        let name = f.display().to_string();
        let bytes = std::fs::read(f).map_err(|e| anyhow::anyhow!("reading {name}: {e}"))?;
        // A file in another encoding fails alone; the others still run.
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                outcomes.push(ScenarioResult::unreadable(&name, e.as_bytes()));
                continue;
            }
        };
        let file = ScenarioFile { name, text, dir };
        outcomes.push(scenario::run(&setup, &file, MemoryStore::new()));
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let coverage = with_coverage.then(|| {
        let processes: BTreeSet<&str> = outcomes.iter().map(|o| o.process.as_str()).filter(|p| !p.is_empty()).collect();
        let reached = outcomes.iter().flat_map(|o| o.reached.iter().cloned()).collect();
        scenario::coverage(processes, setup.models(), &reached, true)
    });
    match format {
        OutputFormat::Json => {
            let report = serde_json::json!({
                "passed": outcomes.len() - failed,
                "failed": failed,
                "scenarios": outcomes,
                "coverage": coverage,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        OutputFormat::Human => {
            for o in &outcomes {
                print_outcome(o);
            }
            if let Some(coverage) = &coverage {
                println!(
                    "\ncoverage (steps, decision arms, reminders, missed deadlines, escalations, a cancellation):"
                );
                let width = coverage.iter().map(|c| c.process.len()).max().unwrap_or(0);
                for c in coverage {
                    println!(
                        "  {:width$}  {:>3}/{:<3} {:>5.1}%",
                        c.process,
                        c.reached,
                        c.required,
                        c.percent,
                        width = width
                    );
                    for m in &c.missing {
                        println!("  {:width$}    not reached: {m}", "", width = width);
                    }
                }
            }
            println!(
                "\n{} scenario{}: {} passed, {failed} failed",
                outcomes.len(),
                if outcomes.len() == 1 { "" } else { "s" },
                outcomes.len() - failed
            );
        }
    }
    Ok(if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn print_outcome(o: &ScenarioResult) {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let (red, green, reset) = if colour { ("\x1b[31m", "\x1b[32m", "\x1b[0m") } else { ("", "", "") };
    match &o.failure {
        None => println!("{green}ok{reset}    {}  {}", o.name, o.description),
        Some(f) => {
            let at = f.line.map(|l| format!(":{l}")).unwrap_or_default();
            let step = f.step.map(|s| format!("step {s}: ")).unwrap_or_default();
            println!("{red}FAIL{reset}  {}{at}  {}", o.name, o.description);
            println!("      {step}{}", f.action);
            println!("      expected: {}", f.expected);
            println!("      found:    {}", f.found);
        }
    }
}

fn show_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// `caseflow test --record CASE --data DATA_DIR`: the scenario of a real case, on stdout.
pub fn record(case: &str, data: &Path, rules: &Path, field_key: Option<&Path>) -> Result<ExitCode> {
    let Some(rules) = rules_or_report(rules)? else { return Ok(ExitCode::FAILURE) };
    let engine = open_data_dir(data, &rules, field_key)?;
    let by_key = engine.instance_by_key(case)?;
    let id = match (by_key, case.parse::<u64>()) {
        (Some(inst), _) => inst.id,
        (None, Ok(n)) if engine.instance(caseflow_core::case::InstanceId(n))?.is_some() => {
            caseflow_core::case::InstanceId(n)
        }
        _ => {
            eprintln!("error: no case with id or business key `{case}` in {}", data.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    match scenario::record(&engine, id) {
        Ok(text) => print!("{text}"),
        Err(caseflow_engine::EngineError::NotRecordable(why)) => {
            eprintln!("error: {why}");
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    }
    Ok(ExitCode::SUCCESS)
}

/// `caseflow test --record CASE --url URL`: the scenario of a case of a running server, from
/// `GET /instances/{id}/scenario` (a business key is looked up first).
pub fn record_from_server(case: &str, url: &str, token: &str) -> Result<ExitCode> {
    let base = url.trim_end_matches('/');
    if !base.starts_with("http://") {
        anyhow::bail!("`{url}`: give the server's address as http://host:port");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let get = |path: String| http_get(format!("{base}{path}"), token.to_string());
        let escaped: String = case
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let id = match get(format!("/instances/by-key/{escaped}")).await? {
            (200, body) => serde_json::from_str::<serde_json::Value>(&body)?["id"].as_u64().map(|n| n.to_string()),
            (404, _) => case.parse::<u64>().ok().map(|n| n.to_string()),
            (status, body) => anyhow::bail!("{base}: {status} {}", problem_detail(&body)),
        };
        let Some(id) = id else {
            eprintln!("error: no case with id or business key `{case}` at {base}");
            return Ok(ExitCode::FAILURE);
        };
        match get(format!("/instances/{id}/scenario")).await? {
            (200, text) => {
                print!("{text}");
                Ok(ExitCode::SUCCESS)
            }
            (404, _) => {
                eprintln!("error: no case with id or business key `{case}` at {base}");
                Ok(ExitCode::FAILURE)
            }
            (422, body) => {
                eprintln!("error: {}", problem_detail(&body));
                Ok(ExitCode::FAILURE)
            }
            (status, body) => anyhow::bail!("{base}: {status} {}", problem_detail(&body)),
        }
    })
}

async fn http_get(url: String, token: String) -> Result<(u16, String)> {
    super::http_call("GET", &url, &token, None).await
}
