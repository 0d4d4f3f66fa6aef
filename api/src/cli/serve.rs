//! `caseflow serve`: the HTTP server on the configured store, processes and rules.

use anyhow::{bail, Context, Result};
use caseflow::{config, server};
use caseflow_engine::Storage;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

// One piece (over 100 lines): the start-up sequence in the order it must run (logging, configuration, store, rules, processes, state, listener, background tasks, shutdown).
pub(crate) fn serve(config_path: Option<&Path>) -> Result<ExitCode> {
    use caseflow_engine::clock::{Clock, SystemClock};
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
    let store = config.open_store()?;
    let key_file = config.field_key_file();
    if !key_file.exists() && caseflow_engine::Engine::holds_data(&store)? {
        bail!(
            "no field key at {}, but the data in {} was written with one: a new key could not read its \
             sensitive fields. Set field_key_file (CASEFLOW_FIELD_KEY_FILE) to the key's file, or move it there \
             (before this version the default was ./data/field.key, whatever the data directory)",
            key_file.display(),
            config.store_place()
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
    engine.set_claim_lease(std::time::Duration::from_secs(config.claim_lease_secs.max(1)));
    if engine.store().shared() {
        // `/events` on this node carries what every node does, in commit order.
        engine.listen_for_changes().context("listening for the nodes' changes")?;
    }
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
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(caseflow::listen::tls_acceptor(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let state = std::sync::Arc::new(server::AppState {
        metrics_need_token: config.metrics_need_token,
        rules_dir: Some(config.rules_dir.clone()),
        backup_dir: Some(config.backup_dir.clone()),
        rules_files: std::sync::Mutex::new(rules_files),
        rules_refused: std::sync::Mutex::new(rules_refused),
        console: caseflow::console::ConsoleState::new(caseflow::console::ConsoleSettings {
            // Cookies only over HTTPS when it is served, here or by a proxy in front.
            secure_cookies: config.console.behind_https_proxy || tls.is_some(),
            ..config.console.settings()?
        }),
        ..server::AppState::new(engine.clone(), clock.clone(), config.tokens.clone())
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
            "caseflow listening on {scheme}://{local} (data in {}, {} processes)",
            config.store_place(),
            deployed.len()
        );
        spawn_vital(
            "the timer driver",
            server::timer_driver(engine.clone(), clock.clone(), std::time::Duration::from_millis(25)),
        );
        spawn_vital(
            "indexing earlier cases",
            server::reindex_driver(engine.clone(), clock, std::time::Duration::from_secs(1)),
        );
        if !config.webhooks.is_empty() {
            spawn_vital(
                "the webhook delivery",
                caseflow::webhooks::deliver(
                    engine.clone(),
                    config.webhooks.clone(),
                    std::time::Duration::from_millis(100),
                ),
            );
        }
        if engine.store().shared() {
            spawn_vital(
                "taking in other nodes' changes",
                server::take_in_other_nodes(state.clone(), std::time::Duration::from_secs(1)),
            );
        }
        spawn_vital(
            "the folder watcher",
            server::watch_folders(watcher_state, config.processes_dir.clone(), std::time::Duration::from_secs(2)),
        );
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
        let stopped = caseflow::listen::serve_with(listener, app, limits, tls, signalled).await;
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

/// Spawns a task the server cannot do without (timers, webhooks, the folder watcher): if it
/// panics, the process stops with a message, as a store thread's panic does
/// (`caseflow_engine::sync::spawn_guarded`), instead of serving on without it.
fn spawn_vital(what: &'static str, task: impl std::future::Future<Output = ()> + Send + 'static) {
    let handle = tokio::spawn(task);
    tokio::spawn(async move {
        if let Err(e) = handle.await {
            if e.is_panic() {
                eprintln!(
                    "caseflow: stopping: {what} panicked (its message is above); without it the server would serve \
                     on half-working. Nothing acknowledged is lost: a restart recovers from the store."
                );
                std::process::abort();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    /// Run in a child process (the abort would end the test binary): a vital task that panics
    /// stops the process with the message, instead of the server serving on without it.
    #[test]
    fn a_vital_task_that_panics_stops_the_process() {
        if std::env::var("CASEFLOW_POISON_CHILD").as_deref() == Ok("vital") {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                super::spawn_vital("a test task", async { panic!("a panic in a vital task") });
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            });
            println!("NOT STOPPED");
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "cli::serve::tests::a_vital_task_that_panics_stops_the_process", "--nocapture"])
            .env("CASEFLOW_POISON_CHILD", "vital")
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(6), "{stdout}\n{stderr}");
        assert!(!stdout.contains("NOT STOPPED"));
        assert!(stderr.contains("caseflow: stopping: a test task panicked"), "{stderr}");
    }
}
