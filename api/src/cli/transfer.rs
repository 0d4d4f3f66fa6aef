//! `caseflow export FILE` and `caseflow import FILE`: a whole store to a file and back, to move
//! it between sled and PostgreSQL (the settings say which store: `data_dir`, or
//! `database_url`). Export reads a stopped server's store; import writes into an empty one and
//! checks what it wrote against the file (count of entries, a checksum per case). `caseflow
//! backup` asks a running server for a copy of its store (`POST /admin/backup`).

use super::{http_call, problem_detail};
use crate::config::Config;
use anyhow::{Context, Result};
use caseflow_engine::storage::dump;
use std::path::Path;
use std::process::ExitCode;

pub(crate) fn export(file: &Path, config: Option<&Path>) -> Result<ExitCode> {
    let config = Config::load_store_settings(config)?;
    let store = config
        .open_store()
        .context("opening the store to export it (a running server holds sled's lock: stop it first)")?;
    // Written beside the target and renamed once whole: a failed export leaves no partial file.
    let partial = file.with_extension("partial");
    let out = std::fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut out = std::io::BufWriter::new(out);
    let summary = dump::dump(&store, &mut out).with_context(|| format!("exporting {}", config.store_place()))?;
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, file).with_context(|| format!("renaming {} to {}", partial.display(), file.display()))?;
    println!(
        "exported {} entries ({} cases) from {} to {}",
        summary.entries,
        summary.cases.len(),
        config.store_place(),
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn import(file: &Path, config: Option<&Path>) -> Result<ExitCode> {
    let config = Config::load_store_settings(config)?;
    let store = config.open_store()?;
    let open = || -> std::io::Result<Box<dyn std::io::Read>> { Ok(Box::new(std::fs::File::open(file)?)) };
    let summary = dump::load(&store, &open)
        .with_context(|| format!("importing {} into {}", file.display(), config.store_place()))?;
    println!(
        "imported {} entries ({} cases) into {}; read back, every case matches the file. Serve it with the \
         field key of the store it came from.",
        summary.entries,
        summary.cases.len(),
        config.store_place()
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn backup(url: &str, token: &str) -> Result<ExitCode> {
    let base = url.trim_end_matches('/');
    if !base.starts_with("http://") && !base.starts_with("https://") {
        anyhow::bail!("`{url}`: give the server's address as http://host:port");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match runtime.block_on(http_call("POST", &format!("{base}/admin/backup"), token, None))? {
        (201, body) => {
            let v: serde_json::Value = serde_json::from_str(&body).context("the server's answer")?;
            println!(
                "backed up {} entries ({} cases) in {} ms to {} (on the server); restore with `caseflow import`",
                v["entries"],
                v["cases"],
                v["took_ms"],
                v["file"].as_str().unwrap_or("?")
            );
            Ok(ExitCode::SUCCESS)
        }
        (status, body) => {
            eprintln!("error: {base} answered {status}: {}", problem_detail(&body));
            Ok(ExitCode::FAILURE)
        }
    }
}
