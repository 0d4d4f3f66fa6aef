//! `caseflow user password USER`: sets a person's console password, on a stopped server's
//! data directory or through a running server (`--url`, an administrator's token). The
//! password is read from the terminal without echo (twice), or as one line from stdin when
//! piped; never from the command line, where other users and the shell history would see it.

use super::{http_call, problem_detail, rules_or_report};
use anyhow::{bail, Context, Result};
use caseflow::passwords;
use caseflow_engine::clock::{Clock, SystemClock};
use caseflow_engine::service::accounts::{self, PasswordRecord};
use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

/// The new password: asked twice at a terminal, else the first line of stdin.
fn read_password(user: &str) -> Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("New console password for {user}: "))?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            bail!("the two passwords differ; nothing was changed");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub(crate) fn password(
    user: &str,
    data: &Path,
    rules: &Path,
    url: Option<&str>,
    token: Option<&str>,
) -> Result<ExitCode> {
    let password = read_password(user)?;
    if let Some(why) = passwords::refusal(user, &password) {
        bail!("the password is refused: {why}; nothing was changed");
    }
    if let Some(url) = url {
        let base = url.trim_end_matches('/');
        if !base.starts_with("http://") && !base.starts_with("https://") {
            bail!("`{url}`: give the server's address as http://host:port");
        }
        let token = token.context("--url needs an administrator's token: --token or CASEFLOW_TOKEN")?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let body = serde_json::json!({ "password": password }).to_string();
        let target = format!("{base}/admin/users/{user}/password");
        return match runtime.block_on(http_call("PUT", &target, token, Some(body)))? {
            (204, _) => {
                println!("{user}'s console password is set; their sessions were ended");
                Ok(ExitCode::SUCCESS)
            }
            (status, body) => {
                eprintln!("error: {base} answered {status}: {}", problem_detail(&body));
                Ok(ExitCode::FAILURE)
            }
        };
    }
    let Some(rules) = rules_or_report(rules)? else { return Ok(ExitCode::FAILURE) };
    if !rules.users.contains_key(user) {
        let known: Vec<&str> = rules.users.keys().map(String::as_str).collect();
        let hint = caseflow_dsl::diag::closest(user, known.iter().copied())
            .map(|c| format!("did you mean `{c}`?"))
            .unwrap_or_else(|| "people are listed in the rules' people.toml".into());
        bail!("`{user}` is not a person in the rules ({hint}); nothing was changed");
    }
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let options = caseflow_engine::StoreOptions { checkpoint_bytes: None, ..Default::default() };
    let store = caseflow_engine::Store::open(data, &options)
        .with_context(|| format!("opening the store in {} (is a server running on it? use --url)", data.display()))?;
    let by = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
    let record = PasswordRecord { phc: passwords::hash(&password), set_at: SystemClock.now(), set_by: by };
    accounts::set_password(&store, user, &record, None)?;
    caseflow_engine::Storage::flush(&store)?;
    println!("{user}'s console password is set in {}; their sessions were ended", data.display());
    Ok(ExitCode::SUCCESS)
}
