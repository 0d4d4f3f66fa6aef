//! The `caseflow` command line: the server, and the process owners' and administrators'
//! tools. This file declares the commands and hands each to its module in `cli/` (one per
//! subcommand or family of them); those read files and folders, call `dsl` and `engine`, and
//! print.

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc, not glibc's malloc: with glibc's per-thread arenas, freed memory stayed resident
/// (892 MiB RSS with a million waiting cases against 354 MiB with mimalloc, measured when it
/// came in with the `scale` bench; ARCHITECTURE.md gives the same figures).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use caseflow::config;

mod cli;

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
    /// People's console accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Write a stopped server's whole store (sled in `data_dir`, or the database of
    /// `database_url`) to a file: to move it to the other kind of store with `import`, or to
    /// keep a copy.
    Export {
        file: PathBuf,
        /// The settings file that names the store (as for `serve`).
        #[arg(long, env = "CASEFLOW_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Back up a running server's sled store without stopping it: the server writes a copy of
    /// the store at one instant into its `backup_dir` (`POST /admin/backup`) and says where.
    /// `caseflow import FILE` restores it into an empty data directory.
    Backup {
        /// The running server (http://host:port).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// An administrator's token.
        #[arg(long, env = "CASEFLOW_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// Take a file written by `export` into an empty store (sled or PostgreSQL, as the settings
    /// say), then read the store back and check every case against the file.
    Import {
        file: PathBuf,
        #[arg(long, env = "CASEFLOW_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Set a person's console password (a user of the rules' people.toml), read from the
    /// terminal or as one line of stdin, never from the command line. On a stopped server's
    /// data directory, or through a running server with `--url` and an administrator's token.
    /// Ends the person's sessions.
    Password {
        user: String,
        /// The stopped server's data directory.
        #[arg(long, default_value = "data", conflicts_with = "url")]
        data: PathBuf,
        /// The rules folder the person must be in.
        #[arg(long, default_value = "rules", conflicts_with = "url")]
        rules: PathBuf,
        /// A running server (http://host:port): `PUT /admin/users/{user}/password`.
        #[arg(long)]
        url: Option<String>,
        /// An administrator's token for `--url`.
        #[arg(long, env = "CASEFLOW_TOKEN", requires = "url", hide_env_values = true)]
        token: Option<String>,
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
pub(crate) enum OutputFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum GraphFormat {
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
        Command::Serve { config } => cli::serve::serve(config.as_deref()),
        Command::Export { file, config } => cli::transfer::export(&file, config.as_deref()),
        Command::Import { file, config } => cli::transfer::import(&file, config.as_deref()),
        Command::Backup { url, token } => cli::transfer::backup(&url, &token),
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
            cli::check::check(&paths, rules_dir.as_deref(), format)
        }
        Command::Diff { old, new, format } => cli::check::diff(&old, &new, format),
        Command::Test { record: Some(case), data: Some(data), rules, field_key, .. } => {
            cli::test::record(&case, &data, &rules, field_key.as_deref())
        }
        Command::Test { record: Some(case), url: Some(url), token, .. } => {
            cli::test::record_from_server(&case, &url, token.as_deref().unwrap_or(""))
        }
        Command::Test { paths, processes, rules, format, coverage, .. } => {
            cli::test::test(&paths, &processes, &rules, format, coverage)
        }
        Command::Migrate { process, from, to, mapping, dry_run, by, data, rules, field_key, format } => {
            let order = cli::migrate::order(process, (from, to), &mapping, dry_run, by)?;
            cli::migrate::migrate(&order, &data, &rules, field_key.as_deref(), format)
        }
        Command::Lsp { rules } => {
            caseflow::lsp::run(caseflow::lsp::rules_dir_arg(rules.as_deref())?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::WhatIf { data, rules, processes, current_rules, from, to, field_key, format } => {
            cli::what_if::what_if(
                &data,
                rules.as_deref(),
                processes.as_deref(),
                &current_rules,
                (from, to),
                field_key.as_deref(),
                format,
            )
        }
        Command::Graph { file, format } => cli::check::graph(&file, format),
        Command::Rules {
            command: RulesCommand::Check { dir, processes, against, recompute, current_rules, field_key, format },
        } => {
            let checked = cli::rules::rules_check(&dir, &processes)?;
            match against {
                Some(data) if checked == ExitCode::SUCCESS => {
                    let against = cli::rules::ImpactAgainst {
                        data: &data,
                        current_rules: &current_rules,
                        field_key: field_key.as_deref(),
                    };
                    cli::rules::rules_impact(&dir, &against, recompute, format)
                }
                _ => Ok(checked),
            }
        }
        Command::Rules { command: RulesCommand::Eval { table, inputs, dir } } => {
            cli::rules::rules_eval(&dir, &table, &inputs)
        }
        Command::Fmt { files, check, stdout } => cli::check::fmt(files, check, stdout),
        Command::User { command: UserCommand::Password { user, data, rules, url, token } } => {
            cli::user::password(&user, &data, &rules, url.as_deref(), token.as_deref())
        }
    }
}
