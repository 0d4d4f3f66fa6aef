//! What runs beside the requests: the timer driver, deploying a folder of processes, and
//! watching `rules/` and `processes/` for changes.

use super::health::calendar_warning;
use super::rules::reload_rules_from_dir;
use super::{AppState, Shared};
use caseflow_engine::clock::Clock;
use caseflow_engine::{Engine, EngineError};
use std::sync::Arc;

/// Fires due timers forever: wakes at the next due time, at most `poll` apart so that timers
/// created meanwhile are not late by more than that.
pub async fn timer_driver(engine: Arc<Engine>, clock: Arc<dyn Clock>, poll: std::time::Duration) {
    loop {
        let e = engine.clone();
        let now = clock.now();
        let fired = tokio::task::spawn_blocking(move || e.fire_due(now, 10_000)).await;
        // Nothing fired though timers are due: they are held by another node's claim (on a
        // shared database) or wait for a suspended case; look again shortly, not at once.
        let mut least = std::time::Duration::ZERO;
        match fired {
            Ok(Ok(0)) => least = poll.min(std::time::Duration::from_millis(200)),
            Ok(Ok(n)) => tracing::debug!(fired = n, "timers fired"),
            Ok(Err(err)) => {
                tracing::error!(error = %err, "firing timers failed");
                least = poll.min(std::time::Duration::from_secs(1));
            }
            // A panic while firing (a bug): the task that ran it is gone, the driver goes on.
            Err(err) => tracing::error!(error = %err, "firing timers panicked"),
        }
        let e = engine.clone();
        let next = tokio::task::spawn_blocking(move || e.next_due()).await.ok().and_then(Result::ok).flatten();
        let wait = match next {
            Some(t) => (t - clock.now()).to_std().unwrap_or_default().max(least).min(poll),
            None => poll,
        };
        tokio::time::sleep(wait).await;
    }
}

/// Indexes the stored cases of a process whose new version indexes a field no earlier version
/// did (`Engine::reindex_step`), and on a store that keeps search documents writes those cases
/// lack (`Engine::document_step`), a chunk at a time; looks for new work every `every`.
pub async fn reindex_driver(engine: Arc<Engine>, clock: Arc<dyn Clock>, every: std::time::Duration) {
    let mut documents_after = None;
    loop {
        let (e, now) = (engine.clone(), clock.now());
        let step = tokio::task::spawn_blocking(move || -> Result<(usize, Option<_>), caseflow_engine::EngineError> {
            match e.reindex_step(REINDEX_CHUNK, now)? {
                0 => e.document_step(documents_after, REINDEX_CHUNK),
                n => Ok((n, documents_after)),
            }
        });
        match step.await {
            Ok(Ok((n, after))) => {
                documents_after = after;
                match n {
                    0 => tokio::time::sleep(every).await,
                    n => tracing::debug!(examined = n, "cases indexed"),
                }
            }
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "indexing earlier cases failed; trying again");
                tokio::time::sleep(every).await;
            }
            Err(err) => {
                tracing::error!(error = %err, "indexing earlier cases panicked");
                tokio::time::sleep(every).await;
            }
        }
    }
}

/// Cases a backfill step examines: one batch of at most this many cases' entries.
const REINDEX_CHUNK: usize = 500;

/// On a database several nodes share: takes in, every `every`, the versions other nodes
/// deployed and the rules they changed (`Engine::refresh`), and the rules files in force.
pub async fn take_in_other_nodes(state: Shared, every: std::time::Duration) {
    loop {
        tokio::time::sleep(every).await;
        let s = state.clone();
        let taken = tokio::task::spawn_blocking(move || -> Result<bool, EngineError> {
            let changed = s.engine.refresh()?;
            if changed {
                if let Some(files) = Engine::rules_files_in_force(s.engine.store())? {
                    *s.rules_files.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = files;
                }
            }
            Ok(changed)
        })
        .await;
        match taken {
            Ok(Ok(true)) => tracing::info!("took in another node's deploy or rules change"),
            Ok(Ok(false)) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "reading other nodes' changes failed; trying again"),
            Err(err) => tracing::error!(error = %err, "reading other nodes' changes panicked"),
        }
    }
}

/// Deploys every `.flow` file of a folder, checked together as `caseflow check` checks a
/// folder (so processes that call each other deploy together). A broken file is refused on
/// its own; the others deploy. Returns (deployed, refused with their diagnostics).
pub fn deploy_folder(
    engine: &Engine,
    dir: &std::path::Path,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "flow"))
        .collect();
    entries.sort();
    let (mut files, mut refused) = (Vec::new(), Vec::new());
    for p in entries {
        // A file that is not UTF-8 is refused alone; the others deploy.
        match caseflow_dsl::decode(std::fs::read(&p)?) {
            Ok(text) => files.push(caseflow_dsl::SourceFile { name: p.display().to_string(), text }),
            Err(e) => {
                let (text, d) = *e;
                refused.push(caseflow_dsl::diag::render(&p.display().to_string(), &text, &[d], false))
            }
        }
    }
    let mut deployed = Vec::new();
    for (result, file) in engine.deploy_together(&files, now)?.into_iter().zip(&files) {
        match result {
            Ok(o) => deployed.push(format!("{} v{}{}", o.process, o.version, if o.changed { " (new)" } else { "" })),
            Err(EngineError::Rejected(d)) => {
                refused.push(caseflow_dsl::diag::render(&file.name, &file.text, &d, false))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((deployed, refused))
}

/// A cheap fingerprint of a folder: names, sizes and modification times of its files.
pub(crate) fn fingerprint(dir: &std::path::Path, ext: &str) -> Vec<(String, u64, Option<std::time::SystemTime>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == ext))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.path().display().to_string(), m.len(), m.modified().ok()))
        })
        .collect();
    out.sort();
    out
}

/// What the folder watcher saw last.
pub struct FolderWatch {
    processes_dir: std::path::PathBuf,
    rules_seen: Option<Vec<(String, u64, Option<std::time::SystemTime>)>>,
    processes_seen: Vec<(String, u64, Option<std::time::SystemTime>)>,
}

/// What one look at the folders did.
#[derive(Debug, Default, PartialEq)]
pub struct WatchReport {
    pub rules_version: Option<u64>,
    pub rules_refused: Option<String>,
    pub deployed: Vec<String>,
    pub refused: Vec<String>,
}

impl FolderWatch {
    pub fn new(state: &AppState, processes_dir: std::path::PathBuf) -> FolderWatch {
        FolderWatch {
            rules_seen: state.rules_dir.as_deref().map(|d| fingerprint(d, "toml")),
            processes_seen: fingerprint(&processes_dir, "flow"),
            processes_dir,
        }
    }

    /// Looks once: a changed rules folder is reloaded (a refused change keeps the old rules);
    /// changed .flow files are deployed as new versions (broken ones are refused and the
    /// previous version stays in force).
    pub fn poll(&mut self, state: &AppState) -> WatchReport {
        let mut report = WatchReport::default();
        if let Some(dir) = &state.rules_dir {
            let now = fingerprint(dir, "toml");
            if Some(&now) != self.rules_seen.as_ref() {
                self.rules_seen = Some(now);
                match reload_rules_from_dir(state, "file-watcher") {
                    Ok(change) => report.rules_version = Some(change.version),
                    Err(e) if e.kind == "unchanged" => {}
                    Err(e) => report.rules_refused = Some(e.detail),
                }
            }
        }
        let now = fingerprint(&self.processes_dir, "flow");
        if now != self.processes_seen {
            self.processes_seen = now;
            match deploy_folder(&state.engine, &self.processes_dir, state.clock.now()) {
                Ok((deployed, refused)) => {
                    report.deployed = deployed.into_iter().filter(|d| d.ends_with("(new)")).collect();
                    report.refused = refused;
                }
                Err(e) => report.refused.push(e.to_string()),
            }
        }
        report
    }
}

/// Polls the folders forever, logging what changed.
pub async fn watch_folders(state: Shared, processes_dir: std::path::PathBuf, every: std::time::Duration) {
    let mut watch = FolderWatch::new(&state, processes_dir);
    loop {
        tokio::time::sleep(every).await;
        let s = state.clone();
        // A panic while polling is the watcher's end: raised again here, so that whoever
        // spawned the watcher sees it instead of a watcher that silently stopped.
        let (report, w) = match tokio::task::spawn_blocking(move || {
            let report = watch.poll(&s);
            (report, watch)
        })
        .await
        {
            Ok(done) => done,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return,
        };
        watch = w;
        if let Some(v) = report.rules_version {
            tracing::info!(version = v, "rules reloaded");
            if let Some(w) = calendar_warning(&state.engine.rules(), state.clock.now()) {
                tracing::warn!("{w}");
            }
        }
        if let Some(problems) = report.rules_refused {
            tracing::error!(%problems, "rules change refused; the previous rules stay in force");
        }
        if !report.deployed.is_empty() {
            tracing::info!(processes = %report.deployed.join(", "), "deployed");
        }
        for r in report.refused {
            tracing::error!(diagnostics = %r, "process refused; the previous version stays in force");
        }
    }
}
