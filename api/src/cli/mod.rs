//! The subcommands, a module each (as rust-analyzer's `cli/`), and what they share: reading
//! files and folders, rules folders and stopped servers' data directories.

pub(crate) mod check;
pub(crate) mod migrate;
pub(crate) mod rules;
pub(crate) mod serve;
pub(crate) mod test;
pub(crate) mod transfer;
pub(crate) mod user;
pub(crate) mod what_if;

use anyhow::{bail, Context, Result};
use caseflow_dsl::RuleCatalog;
use caseflow_engine::RuleSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

pub(crate) fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

pub(crate) fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Every file with the given extension under `path` (or `path` itself), sorted.
pub(crate) fn collect(path: &Path, extension: &str, out: &mut Vec<PathBuf>) -> Result<()> {
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
pub(crate) fn load_rules(dir: &Path) -> Result<Result<RuleSet, Vec<caseflow_engine::RulesError>>> {
    let files =
        caseflow_engine::read_rules_dir(dir).with_context(|| format!("reading the rules in {}", dir.display()))?;
    Ok(RuleSet::load(&files))
}

pub(crate) fn print_rules_errors(errors: &[caseflow_engine::RulesError]) {
    for e in errors {
        eprintln!("error: {e}");
    }
    eprintln!("rules refused: {} error{}", errors.len(), plural(errors.len()));
}

/// A rules folder's rules; `None`, with every error printed, when they do not validate.
pub(crate) fn rules_or_report(dir: &Path) -> Result<Option<RuleSet>> {
    Ok(load_rules(dir)?.map_err(|errors| print_rules_errors(&errors)).ok())
}

pub(crate) fn load_catalog(dir: &Path) -> Result<Option<RuleCatalog>> {
    Ok(rules_or_report(dir)?.map(|rules| rules.catalog()))
}

/// The engine over a stopped server's data directory, with its field key (`field_key`, or
/// `DATA_DIR/field.key` when present) to read sensitive fields.
pub(crate) fn open_data_dir(data: &Path, rules: &RuleSet, field_key: Option<&Path>) -> Result<caseflow_engine::Engine> {
    engine_over(open_store(data)?, data, rules, field_key)
}

/// The store of a stopped server's data directory.
pub(crate) fn open_store(data: &Path) -> Result<caseflow_engine::Store> {
    if !data.join("db").is_file() {
        anyhow::bail!("{} holds no caseflow store (no `db` file): give a server's data directory", data.display());
    }
    let options = caseflow_engine::StoreOptions { checkpoint_bytes: None, ..Default::default() };
    caseflow_engine::Store::open(data, &options)
        .with_context(|| format!("opening the store in {} (is a server running on it? stop it first)", data.display()))
}

/// An engine over a data directory's store, with its field key.
pub(crate) fn engine_over(
    store: caseflow_engine::Store,
    data: &Path,
    rules: &RuleSet,
    field_key: Option<&Path>,
) -> Result<caseflow_engine::Engine> {
    let mut engine = caseflow_engine::Engine::open(store.into(), rules.clone())?;
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

pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// An HTTP request with a bearer token and an optional JSON body: the status and the body.
pub(crate) async fn http_call(method: &str, url: &str, token: &str, json: Option<String>) -> Result<(u16, String)> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<hyper::body::Bytes>>();
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    if json.is_some() {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let request = request.body(http_body_util::Full::new(hyper::body::Bytes::from(json.unwrap_or_default())))?;
    let response = client.request(request).await.map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The `detail` of a problem+json body, or the body.
pub(crate) fn problem_detail(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect())
}
