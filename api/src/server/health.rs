//! `/health` (liveness and readiness, with storage and rules state) and `/metrics`.

use super::auth::caller;
use super::error::ApiError;
use super::{blocking, views, Shared};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use caseflow_core::case::StatusKind;
use caseflow_engine::sync::Unpoisoned;
use caseflow_engine::Storage;

/// Liveness and readiness
///
/// 200 while storage takes writes; 503 `degraded` while it is failing (a full disk, a failing device). Also the calendar's coverage and whether the rules folder stands refused.
#[utoipa::path(
    get,
    path = "/health",
    responses(
        (status = 200, description = "Live and ready", body = views::Health),
        (status = 503, description = "Storage is failing: writes are refused until it recovers", body = views::Health)
    ),
    security(())
)]
pub(crate) async fn health(State(state): State<Shared>) -> (StatusCode, axum::Json<views::Health>) {
    // The calendar's holidays run out: deadlines past them treat holidays as working days.
    let calendar = state.engine.rules().calendar.coverage(state.clock.now()).map(|(last, days_left, status)| {
        views::CalendarCoverage { covered_through: last.to_string(), days_left, status }
    });
    // Not ready while storage is failing: writes are refused until it recovers. What failed
    // is tried again here, so a freed disk shows as recovered without waiting for a write.
    let s = state.clone();
    let storage = tokio::task::spawn_blocking(move || s.engine.store().check_health())
        .await
        .unwrap_or_else(|e| Some(format!("the health check failed: {e}")));
    let status = if storage.is_some() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    // Refused rules do not make the server unready: the last accepted rules serve. The
    // problems themselves are for administrators (`GET /admin/rules`), not for anyone.
    let refused = state.rules_refused.lock().unpoisoned().clone();
    let version = state.engine.rules_version();
    let rules = match refused {
        None => views::RulesHealth { status: "ok", version, refused_at: None, problems: None, detail: None },
        Some(r) => views::RulesHealth {
            status: "refused",
            version,
            refused_at: Some(r.at.to_rfc3339()),
            problems: Some(r.problems()),
            detail: Some("the rules folder holds files that were refused; the last accepted rules are in force (GET /admin/rules lists the problems)"),
        },
    };
    let body = views::Health {
        status: if storage.is_some() { "degraded" } else { "ok" },
        storage: views::StorageHealth {
            status: if storage.is_some() { "failing" } else { "ok" },
            error: storage,
            warning: state.engine.store().postgres().and_then(|p| p.feed_held_back()),
        },
        rules,
        processes: state.engine.definitions().len(),
        commands: state.engine.commands_applied(),
        calendar,
    };
    (status, axum::Json(body))
}

/// A warning line when the calendar's known holidays end within 60 days or have ended.
pub fn calendar_warning(rules: &caseflow_engine::RuleSet, now: chrono::DateTime<chrono::Utc>) -> Option<String> {
    let (last, days, status) = rules.calendar.coverage(now)?;
    let when = if days < 0 { format!("{} days ago", -days) } else { format!("in {days} days") };
    (status != "ok").then(|| {
        format!(
            "the calendar knows holidays through {last} only ({when}): deadlines after it count holidays as working days; \
             add next year's official schedule to the calendar rules (docs/rules.md, \"Next year's calendar\")"
        )
    })
}

/// Metrics
///
/// Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String, example = json!("# TYPE caseflow_commands_total counter\ncaseflow_commands_total 42\n")),
        (status = 401, description = "A token is required (`metrics_need_token` in caseflow.toml) and none was sent")
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn metrics(State(state): State<Shared>, headers: HeaderMap) -> Result<Response, ApiError> {
    if state.metrics_need_token {
        caller(&state, &headers)?;
    }
    let s = state.clone();
    let body = blocking(move || {
        let mut out = String::new();
        out.push_str(
            "# HELP caseflow_commands_total Commands applied since start.\n# TYPE caseflow_commands_total counter\n",
        );
        out.push_str(&format!("caseflow_commands_total {}\n", s.engine.commands_applied()));
        out.push_str(
            "# HELP caseflow_rules_version The version of the rules in force.\n# TYPE caseflow_rules_version gauge\n",
        );
        out.push_str(&format!("caseflow_rules_version {}\n", s.engine.rules_version()));
        out.push_str("# HELP caseflow_rules_refused 1 while the rules folder holds refused files (the last accepted rules serve).\n# TYPE caseflow_rules_refused gauge\n");
        let refused = s.rules_refused.lock().unpoisoned().is_some();
        out.push_str(&format!("caseflow_rules_refused {}\n", u8::from(refused)));
        out.push_str("# HELP caseflow_instances Instances by process and status.\n# TYPE caseflow_instances gauge\n");
        for (process, _) in s.engine.definitions() {
            for status in StatusKind::ALL.map(StatusKind::as_str) {
                let n = s.engine.count_instances(&process, status)?;
                out.push_str(&format!("caseflow_instances{{process=\"{process}\",status=\"{status}\"}} {n}\n"));
            }
        }
        out.push_str("# HELP caseflow_timers_pending Timers waiting to fire.\n# TYPE caseflow_timers_pending gauge\n");
        out.push_str(&format!("caseflow_timers_pending {}\n", s.engine.count_pending_timers()?));
        out.push_str("# HELP caseflow_index_backfills Processes whose earlier cases are still being indexed for a field a new version indexes.\n# TYPE caseflow_index_backfills gauge\n");
        out.push_str(&format!("caseflow_index_backfills {}\n", s.engine.reindex_pending()?.len()));
        out.push_str("# HELP caseflow_console_signins_failed_total Failed console sign-ins (and wrong current passwords) since start.\n# TYPE caseflow_console_signins_failed_total counter\n");
        out.push_str(&format!(
            "caseflow_console_signins_failed_total {}\n",
            s.console.failed_signins.load(std::sync::atomic::Ordering::Relaxed)
        ));
        // What only the embedded store has: its checkpoints, memtable and log.
        if let Some(store) = s.engine.store().sled() {
            sled_metrics(&mut out, store);
        }
        if let Some(store) = s.engine.store().postgres() {
            postgres_metrics(&mut out, store);
        }
        Ok(out)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

/// What this node asked of PostgreSQL: divided by `caseflow_commands_total`, the cost of a
/// command that `docs/deploy.md` predicts a larger machine from.
fn postgres_metrics(out: &mut String, store: &caseflow_engine::storage::postgres::PgStore) {
    out.push_str("# HELP caseflow_db_round_trips_total Round trips to the database (statements sent together count once).\n# TYPE caseflow_db_round_trips_total counter\n");
    out.push_str(&format!("caseflow_db_round_trips_total {}\n", store.round_trips()));
    out.push_str("# HELP caseflow_db_commits_total Transactions this node committed (writes and numbers taken).\n# TYPE caseflow_db_commits_total counter\n");
    out.push_str(&format!("caseflow_db_commits_total {}\n", store.commits()));
}

/// The sled store's own figures: checkpoints, the memtable, the write-ahead log.
fn sled_metrics(out: &mut String, store: &caseflow_engine::Store) {
    let checkpoints = store.checkpoints();
    out.push_str("# HELP caseflow_store_checkpoints_total Snapshots of the database's page table that bound restart time (written beside the writers).\n# TYPE caseflow_store_checkpoints_total counter\n");
    out.push_str(&format!("caseflow_store_checkpoints_total {}\n", checkpoints.count));
    out.push_str("# HELP caseflow_store_checkpoint_failures_total Checkpoints that failed; the next one tries again.\n# TYPE caseflow_store_checkpoint_failures_total counter\n");
    out.push_str(&format!("caseflow_store_checkpoint_failures_total {}\n", checkpoints.failures));
    out.push_str("# HELP caseflow_store_last_checkpoint_seconds How long the last checkpoint took (it stops nothing).\n# TYPE caseflow_store_last_checkpoint_seconds gauge\n");
    out.push_str(&format!("caseflow_store_last_checkpoint_seconds {:.3}\n", checkpoints.last.as_secs_f64()));
    let (memtable_entries, apply_failures) = store.memtable_stats();
    out.push_str("# HELP caseflow_memtable_entries Keys written and not yet applied to the database (held in memory and in the log).\n# TYPE caseflow_memtable_entries gauge\n");
    out.push_str(&format!("caseflow_memtable_entries {memtable_entries}\n"));
    out.push_str("# HELP caseflow_memtable_apply_failures_total Applies of the memtable to the database that failed; the next one tries again.\n# TYPE caseflow_memtable_apply_failures_total counter\n");
    out.push_str(&format!("caseflow_memtable_apply_failures_total {apply_failures}\n"));
    let log = store.log_stats();
    out.push_str("# HELP caseflow_log_groups_total Group commits of the write-ahead log (one write, and one fdatasync under fsync, each).\n# TYPE caseflow_log_groups_total counter\n");
    out.push_str(&format!("caseflow_log_groups_total {}\n", log.groups));
    out.push_str("# HELP caseflow_log_records_total Batches committed through the write-ahead log.\n# TYPE caseflow_log_records_total counter\n");
    out.push_str(&format!("caseflow_log_records_total {}\n", log.records));
    out.push_str("# HELP caseflow_log_write_seconds_total Time spent writing and syncing log groups.\n# TYPE caseflow_log_write_seconds_total counter\n");
    out.push_str(&format!("caseflow_log_write_seconds_total {:.6}\n", log.write_micros as f64 / 1e6));
}
