//! The `caseflow` command line: checking, drawing and formatting .flow files.
//!
//! Thin glue: it reads files and prints; all language work happens in `caseflow-dsl`.

use anyhow::{bail, Context, Result};
use caseflow_core::value::Value;
use caseflow_dsl::{check_files, diag, graph, RuleCatalog, SourceFile};
use caseflow_engine::{RuleSet, Storage};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// mimalloc, not glibc's malloc: with glibc's per-thread arenas, freed memory stayed resident
/// (892 MiB RSS with a million waiting cases against 259 MiB with mimalloc; `scale` bench).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use caseflow::{config, server};

mod test_command;

#[derive(Parser)]
#[command(name = "caseflow", version, about = "caseflow: workflow and rules engine for customer-service operations")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the HTTP server: sled in ./data, the processes of ./processes, the rules of ./rules
    /// (settings in caseflow.toml, each overridable by CASEFLOW_* environment variables).
    Serve {
        /// The settings file; without it, caseflow.toml in the working directory if present.
        /// Paths in it are relative to its folder.
        #[arg(long, env = "CASEFLOW_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the SHA-256 of a token, for the `tokens` list of caseflow.toml.
    TokenHash { token: String },
    /// Check .flow files (or folders of them); exit 1 if any has an error.
    Check {
        /// Files or folders; folders are searched for *.flow recursively.
        #[arg(default_value = "processes")]
        paths: Vec<PathBuf>,
        /// Rules folder to check role and table names against (default: ./rules if present).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Do not check names against any rules folder.
        #[arg(long, conflicts_with = "rules")]
        no_rules: bool,
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
    /// Compare two versions of a process: fields and steps added, removed, renamed and changed
    /// (assignment, deadline, what a task asks, handlers, transitions). Layout and comments
    /// do not count.
    Diff {
        old: PathBuf,
        new: PathBuf,
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
    /// Run scenario files: each starts a case, walks it through time on a manual clock and
    /// checks tasks, assignees, due times, reminders, fields, history and outcome (against
    /// the real engine, in memory). Exit 1 if any fails.
    Test {
        /// Scenario files or folders (searched for *.toml recursively).
        #[arg(default_value = "processes/tests")]
        paths: Vec<PathBuf>,
        /// The processes to deploy: .flow files or folders; repeat for several.
        #[arg(long, default_value = "processes")]
        processes: Vec<PathBuf>,
        /// The rules folder.
        #[arg(long, default_value = "rules")]
        rules: PathBuf,
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
        /// Also report, per process, the steps, decision arms, reminders, missed deadlines
        /// and cancellation that no scenario reached.
        #[arg(long)]
        coverage: bool,
        /// Instead of running scenarios, print one written from the real history of this case
        /// (its id or business key), from `--data` or `--url`: a case that went wrong becomes a
        /// test.
        #[arg(long, value_name = "CASE", requires = "record_from")]
        record: Option<String>,
        /// The (stopped) server's data directory to record from.
        #[arg(long, value_name = "DATA_DIR", requires = "record", group = "record_from")]
        data: Option<PathBuf>,
        /// A running server to record from (`http://host:port`), asked with an administrator's
        /// `--token` (`GET /instances/{id}/scenario`).
        #[arg(long, requires = "record", group = "record_from")]
        url: Option<String>,
        /// The bearer token for `--url`.
        #[arg(long, env = "CASEFLOW_TOKEN", requires = "url", hide_env_values = true)]
        token: Option<String>,
        /// The data directory's field key (default: DATA_DIR/field.key when present).
        #[arg(long, requires = "record")]
        field_key: Option<PathBuf>,
    },
    /// Move the running cases of a process from one version to another in a (stopped)
    /// server's data directory: where each lands, what it cannot move and why. `--dry-run`
    /// changes nothing.
    Migrate {
        process: String,
        #[arg(long)]
        from: u32,
        #[arg(long)]
        to: u32,
        /// Send an old step to a new one: `--map call_customer=visit` (repeatable); other
        /// steps go to the step `renamed from` them, or of the same name.
        #[arg(long = "map", value_name = "OLD=NEW")]
        mapping: Vec<String>,
        #[arg(long)]
        dry_run: bool,
        /// Who asks, named on each moved case's `migrated` history entry (default: the
        /// login name, `$USER`).
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        #[arg(long, value_name = "DATA_DIR")]
        data: PathBuf,
        #[arg(long, default_value = "rules")]
        rules: PathBuf,
        /// The data directory's field key (default: DATA_DIR/field.key when present).
        #[arg(long)]
        field_key: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
    /// A language server for .flow files over stdio (diagnostics, hover, definition,
    /// references, completion, rename, outline, formatting, quick fixes), for editors.
    Lsp {
        /// The rules folder; by default the nearest `rules/` above each document.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Replay the closed cases of a (stopped) server's data directory through candidate rules
    /// and/or process versions, and report what would have been different: deadlines met,
    /// routes, outcomes and assignees, per process and step. Nothing is written.
    WhatIf {
        #[arg(long, value_name = "DATA_DIR")]
        data: PathBuf,
        /// The candidate rules folder (default: the rules the cases ran under).
        #[arg(long, value_name = "NEW_RULES_DIR")]
        rules: Option<PathBuf>,
        /// A folder of candidate .flow files (default: the versions the cases ran on).
        #[arg(long, value_name = "NEW_DIR")]
        processes: Option<PathBuf>,
        /// The rules the cases ran under.
        #[arg(long, default_value = "rules")]
        current_rules: PathBuf,
        /// Cases started on or after this day (YYYY-MM-DD, in the calendar's time zone).
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// Cases started before this day.
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        /// The data directory's field key (default: DATA_DIR/field.key when present).
        #[arg(long)]
        field_key: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
    /// Print a process as a diagram.
    Graph {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Rewrite .flow files in canonical layout (comments kept).
    Fmt {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Change nothing; exit 1 if a file is not formatted.
        #[arg(long)]
        check: bool,
        /// Print the result instead of rewriting the file.
        #[arg(long, conflicts_with = "check")]
        stdout: bool,
    },
    /// Validate or try out the administrators' rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate a rules folder (every problem with file:line:col and key); exit 1 on errors.
    /// Also checks the processes in `--processes` against it.
    Check {
        #[arg(default_value = "rules")]
        dir: PathBuf,
        /// Processes that must find every role, value and table they use in these rules.
        #[arg(long, default_value = "processes")]
        processes: PathBuf,
        /// Also report what these rules would do to the open work of a (stopped) server's data
        /// directory, compared with the rules in force there: nothing is applied.
        #[arg(long, value_name = "DATA_DIR")]
        against: Option<PathBuf>,
        /// With `--against`: the change would also recompute open deadlines (as
        /// `recompute=true` over HTTP); without it they stay, and none moves.
        #[arg(long, requires = "against")]
        recompute: bool,
        /// With `--against`: the rules in force, for a data directory that has not recorded
        /// them (a server records the rules it runs with).
        #[arg(long, requires = "against", default_value = "rules")]
        current_rules: PathBuf,
        /// The data directory's field key, to read its sensitive fields (default:
        /// DATA_DIR/field.key when present).
        #[arg(long, requires = "against")]
        field_key: Option<PathBuf>,
        /// With `--against`: `json` prints the impact as `PUT /admin/rules/files/{name}?dry_run=true`
        /// gives it.
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
    /// Evaluate a decision table: `caseflow rules eval risk_level probability=4 impact=5`.
    Eval {
        table: String,
        /// Inputs as name=value; omitted inputs are an error.
        inputs: Vec<String>,
        #[arg(long, default_value = "rules")]
        dir: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Dot,
    Mermaid,
    Svg,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => serve(config.as_deref()),
        Command::TokenHash { token } => {
            println!("{}", config::sha256_hex(&token));
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { paths, rules, no_rules, format } => {
            let rules_dir = match (rules, no_rules) {
                (_, true) => None,
                (Some(dir), _) => Some(dir),
                (None, false) => Some(PathBuf::from("rules")).filter(|d| d.is_dir()),
            };
            check(&paths, rules_dir.as_deref(), format)
        }
        Command::Diff { old, new, format } => {
            let mut versions = Vec::new();
            for file in [&old, &new] {
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
        Command::Test { record: Some(case), data: Some(data), rules, field_key, .. } => {
            test_command::record(&case, &data, &rules, field_key.as_deref())
        }
        Command::Test { record: Some(case), url: Some(url), token, .. } => {
            test_command::record_from_server(&case, &url, token.as_deref().unwrap_or(""))
        }
        Command::Test { paths, processes, rules, format, coverage, .. } => {
            test_command::test(&paths, &processes, &rules, format, coverage)
        }
        Command::Migrate { process, from, to, mapping, dry_run, by, data, rules, field_key, format } => {
            let mut map = std::collections::BTreeMap::new();
            for m in &mapping {
                let Some((old, new)) = m.split_once('=') else {
                    bail!("`--map {m}`: write OLD=NEW, the old step's name and the new one's");
                };
                map.insert(old.trim().to_string(), new.trim().to_string());
            }
            let by = by.or_else(|| std::env::var("USER").ok()).filter(|b| !b.trim().is_empty());
            let order = caseflow_engine::MigrationOrder {
                process,
                from,
                to,
                mapping: map,
                dry_run,
                by: caseflow_core::case::Actor {
                    id: by.unwrap_or_else(|| "cli".into()),
                    roles: Vec::new(),
                    admin: true,
                },
            };
            migrate(&order, &data, &rules, field_key.as_deref(), format)
        }
        Command::Lsp { rules } => {
            caseflow::lsp::run(caseflow::lsp::rules_dir_arg(rules.as_deref())?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::WhatIf { data, rules, processes, current_rules, from, to, field_key, format } => what_if(
            &data,
            rules.as_deref(),
            processes.as_deref(),
            &current_rules,
            (from, to),
            field_key.as_deref(),
            format,
        ),
        Command::Graph { file, format } => {
            let text = read(&file)?;
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
        Command::Rules {
            command: RulesCommand::Check { dir, processes, against, recompute, current_rules, field_key, format },
        } => {
            let checked = rules_check(&dir, &processes)?;
            match against {
                Some(data) if checked == ExitCode::SUCCESS => {
                    let against =
                        ImpactAgainst { data: &data, current_rules: &current_rules, field_key: field_key.as_deref() };
                    rules_impact(&dir, &against, recompute, format)
                }
                _ => Ok(checked),
            }
        }
        Command::Rules { command: RulesCommand::Eval { table, inputs, dir } } => rules_eval(&dir, &table, &inputs),
        Command::Fmt { files, check, stdout } => {
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
    }
}

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Every file with the given extension under `path` (or `path` itself), sorted.
fn collect(path: &Path, extension: &str, out: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("listing {}", path.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for e in entries {
            if e.is_dir() || e.extension().is_some_and(|x| x == extension) {
                collect(&e, extension, out)?;
            }
        }
    } else if path.exists() {
        out.push(path.to_path_buf());
    } else {
        bail!("{} does not exist", path.display());
    }
    Ok(())
}

/// Reads a rules folder. `Ok(Err(..))` is rules that do not validate.
fn load_rules(dir: &Path) -> Result<Result<RuleSet, Vec<caseflow_engine::RulesError>>> {
    let files =
        caseflow_engine::read_rules_dir(dir).with_context(|| format!("reading the rules in {}", dir.display()))?;
    Ok(RuleSet::load(&files))
}

fn print_rules_errors(errors: &[caseflow_engine::RulesError]) {
    for e in errors {
        eprintln!("error: {e}");
    }
    eprintln!("rules refused: {} error{}", errors.len(), plural(errors.len()));
}

/// A rules folder's rules; `None`, with every error printed, when they do not validate.
fn rules_or_report(dir: &Path) -> Result<Option<RuleSet>> {
    Ok(load_rules(dir)?.map_err(|errors| print_rules_errors(&errors)).ok())
}

fn load_catalog(dir: &Path) -> Result<Option<RuleCatalog>> {
    Ok(rules_or_report(dir)?.map(|rules| rules.catalog()))
}

/// The stopped server's data directory a rules check is measured against.
struct ImpactAgainst<'a> {
    data: &'a Path,
    /// The rules in force when the data directory recorded none.
    current_rules: &'a Path,
    field_key: Option<&'a Path>,
}

/// What the rules of `dir` would do to the open work stored in `data` (`rules check --against`),
/// compared with the rules in force there: those the server recorded, as the HTTP dry run
/// compares with the rules it runs with.
fn rules_impact(dir: &Path, against: &ImpactAgainst, recompute: bool, format: OutputFormat) -> Result<ExitCode> {
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

fn migrate(
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
fn render_migration(report: &caseflow_engine::MigrationReport, zone: chrono_tz::Tz) -> String {
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

fn what_if(
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

/// The engine over a stopped server's data directory, with its field key (`field_key`, or
/// `DATA_DIR/field.key` when present) to read sensitive fields.
pub(crate) fn open_data_dir(data: &Path, rules: &RuleSet, field_key: Option<&Path>) -> Result<caseflow_engine::Engine> {
    engine_over(open_store(data)?, data, rules, field_key)
}

/// The store of a stopped server's data directory.
fn open_store(data: &Path) -> Result<caseflow_engine::Store> {
    if !data.join("db").is_file() {
        anyhow::bail!("{} holds no caseflow store (no `db` file): give a server's data directory", data.display());
    }
    let options = caseflow_engine::StoreOptions { checkpoint_bytes: None, ..Default::default() };
    caseflow_engine::Store::open(data, &options)
        .with_context(|| format!("opening the store in {} (is a server running on it? stop it first)", data.display()))
}

/// An engine over a data directory's store, with its field key.
fn engine_over(
    store: caseflow_engine::Store,
    data: &Path,
    rules: &RuleSet,
    field_key: Option<&Path>,
) -> Result<caseflow_engine::Engine> {
    let mut engine = caseflow_engine::Engine::open(store, rules.clone())?;
    if let Some(f) = field_key.filter(|f| !f.exists()) {
        anyhow::bail!("the field key {} does not exist", f.display());
    }
    let key_file = field_key.map(Path::to_path_buf).unwrap_or_else(|| data.join("field.key"));
    if key_file.exists() {
        let key = caseflow::config::field_key(&key_file)?;
        engine = engine.with_field_key(&key)?;
    } else {
        eprintln!("warning: no field key at {}: sensitive fields stay sealed", key_file.display());
    }
    Ok(engine)
}

fn rules_check(dir: &Path, processes: &Path) -> Result<ExitCode> {
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
        return check(&[processes.to_path_buf()], Some(dir), OutputFormat::Human);
    }
    Ok(ExitCode::SUCCESS)
}

fn rules_eval(dir: &Path, table: &str, inputs: &[String]) -> Result<ExitCode> {
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

fn check(paths: &[PathBuf], rules: Option<&Path>, format: OutputFormat) -> Result<ExitCode> {
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
            Err((text, d)) => undecodable.push((SourceFile { name: f.display().to_string(), text }, d)),
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

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn serve(config_path: Option<&Path>) -> Result<ExitCode> {
    use caseflow_engine::clock::{Clock, SystemClock};
    use caseflow_engine::Store;
    // Logs go to stderr; stdout carries only the "listening on" line, for scripts.
    tracing_subscriber::fmt()
        // Our own news at info, other crates' at warn (the layout crate narrates every diagram).
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,caseflow=info,tower_http=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = config::Config::load(config_path)?;
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let store = Store::open(&config.data_dir, &config.store_options())
        .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    let key_file = config.field_key_file();
    if !key_file.exists() && caseflow_engine::Engine::holds_data(&store)? {
        bail!(
            "no field key at {}, but the data in {} was written with one: a new key could not read its \
             sensitive fields. Set field_key_file (CASEFLOW_FIELD_KEY_FILE) to the key's file, or move it there \
             (before this version the default was ./data/field.key, whatever the data directory)",
            key_file.display(),
            config.data_dir.display()
        );
    }
    let key = config::field_key(&key_file)?;
    let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(SystemClock);
    let started = server::open_engine(store, &config.rules_dir, clock.now())?;
    if let Some(change) = &started.changed {
        tracing::info!(version = change.version, "the rules changed while the server was down; recorded as a change");
    }
    if let Some(refused) = &started.refused {
        tracing::error!(
            problems = %refused.detail,
            version = started.engine.rules_version(),
            "the rules in {} are refused; serving the last accepted rules (fix the files: they are reloaded when they change)",
            config.rules_dir.display()
        );
    }
    let (rules_files, rules_refused) = (started.files, started.refused);
    let engine = std::sync::Arc::new(started.engine.with_field_key(&key)?);
    if !config.webhooks.is_empty() {
        engine.enable_outbox();
    }
    let (deployed, refused) = server::deploy_folder(&engine, &config.processes_dir, clock.now())?;
    for r in &refused {
        eprint!("{r}");
    }
    let rules = engine.rules();
    tracing::info!(
        processes = %deployed.join(", "),
        refused = refused.len(),
        roles = rules.roles.len(),
        tables = rules.tables.len(),
        "loaded processes and rules"
    );
    if config.tokens.is_empty() {
        tracing::warn!("no tokens configured (allow_no_tokens): every API call will be refused with 401");
    }
    if let Some(w) = server::calendar_warning(&rules, clock.now()) {
        tracing::warn!("{w}");
    }
    let state = std::sync::Arc::new(server::AppState {
        engine: engine.clone(),
        clock: clock.clone(),
        tokens: config.tokens.clone(),
        metrics_need_token: config.metrics_need_token,
        rules_dir: Some(config.rules_dir.clone()),
        rules_files: std::sync::Mutex::new(rules_files),
        rules_refused: std::sync::Mutex::new(rules_refused),
        events: server::event_channel(&engine),
        stopping: tokio::sync::watch::Sender::new(false),
    });
    let watcher_state = state.clone();
    let app = server::router(
        state.clone(),
        server::RequestLimits {
            body_bytes_max: config.body_bytes_max,
            body_idle_timeout: std::time::Duration::from_secs(config.body_idle_timeout_secs),
        },
    );
    let open_files = caseflow::listen::raise_open_file_limit();
    let limits = caseflow::listen::Limits {
        header_read_timeout: std::time::Duration::from_secs(config.header_read_timeout_secs),
        connections_max: caseflow::listen::connections_max(config.connections_max, open_files),
        shutdown_grace: std::time::Duration::from_secs(config.shutdown_grace_secs),
    };
    if limits.connections_max < config.connections_max {
        tracing::warn!(
            open_files = open_files.unwrap_or(0),
            connections_max = limits.connections_max,
            "the open-file limit lowers the connection cap; raise it (ulimit -n, LimitNOFILE) for more"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(&config.bind).await.with_context(|| format!("binding {}", config.bind))?;
        let local = listener.local_addr()?;
        // Signal handlers are installed before anyone is told where we listen: a SIGTERM that
        // arrives right after must stop the server gracefully, not kill it.
        #[cfg(unix)]
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        println!(
            "caseflow listening on http://{local} (data in {}, {} processes)",
            config.data_dir.display(),
            deployed.len()
        );
        tokio::spawn(server::timer_driver(engine.clone(), clock, std::time::Duration::from_millis(25)));
        if !config.webhooks.is_empty() {
            tokio::spawn(caseflow::webhooks::deliver(
                engine.clone(),
                config.webhooks.clone(),
                std::time::Duration::from_millis(100),
            ));
        }
        tokio::spawn(server::watch_folders(
            watcher_state,
            config.processes_dir.clone(),
            std::time::Duration::from_secs(2),
        ));
        let signalled = async move {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
            #[cfg(not(unix))]
            let _ = ctrl_c.await;
            tracing::info!(
                grace_secs = limits.shutdown_grace.as_secs(),
                "shutting down: finishing requests, flushing storage"
            );
            state.stopping.send_replace(true);
        };
        let stopped = caseflow::listen::serve(listener, app, limits, signalled).await;
        if stopped.dropped > 0 {
            tracing::warn!(connections = stopped.dropped, "the grace period ran out; those connections were dropped");
        }
        engine.store().flush()?;
        anyhow::Ok(())
    })?;
    // Connections dropped above may still hold tasks; they go with the runtime, now.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(ExitCode::SUCCESS)
}
