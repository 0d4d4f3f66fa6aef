//! `POST /admin/backup`: a consistent copy of the running sled store, taken while requests go
//! on (`Store::backup`), written to the server's `backup_dir`. `caseflow import` restores it
//! into an empty data directory. On PostgreSQL the database's own tools back it up.

use super::auth::{require_admin, Caller};
use super::error::ApiError;
use super::{blocking, Shared};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// A backup taken.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"file": "backups/caseflow-20261123T020000Z.dump", "entries": 120433, "cases": 10021, "took_ms": 812}))]
pub struct BackupTaken {
    /// The file on the server, as the server names it.
    pub file: String,
    pub entries: u64,
    pub cases: usize,
    pub took_ms: u64,
}

/// Back up the running store
///
/// Writes a copy of the whole store as it was at one instant, while requests go on, to a new
/// file in the server's `backup_dir`; `caseflow import FILE` restores it into an empty data
/// directory. Administrators only; one backup at a time. On PostgreSQL, back the database up
/// with `pg_dump` or continuous archiving instead (409).
#[utoipa::path(
    post,
    path = "/admin/backup",
    responses(
        (status = 201, description = "Taken", body = BackupTaken),
        (status = 403, description = "Administrators only"),
        (status = 409, description = "Another backup is running, or the store is not sled")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn backup(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
) -> Result<(StatusCode, Json<BackupTaken>), ApiError> {
    require_admin(&actor)?;
    let Some(dir) = state.backup_dir.clone() else {
        return Err(ApiError::new(StatusCode::CONFLICT, "backup-not-here", "this server takes no backups"));
    };
    if state.engine.store().sled().is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "backup-not-here",
            "the store is PostgreSQL: back it up with pg_dump or continuous archiving",
        ));
    }
    let Ok(_one) = state.backing_up.try_lock() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "backup-running",
            "a backup is being taken; try again after it",
        ));
    };
    let s = state.clone();
    let by = actor.id.clone();
    let taken = blocking(move || {
        let failed = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "backup failed");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "backup-failed", format!("the backup failed: {e}"))
        };
        let store = s.engine.store().sled().expect("checked above");
        std::fs::create_dir_all(&dir).map_err(|e| failed(&e))?;
        let name = format!("caseflow-{}.dump", s.clock.now().format("%Y%m%dT%H%M%S%.3fZ"));
        let file = dir.join(&name);
        let partial = dir.join(format!("{name}.partial"));
        let started = std::time::Instant::now();
        let summary = (|| -> Result<_, caseflow_engine::storage::dump::DumpError> {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&partial)?);
            let summary = store.backup(&mut out, &dir.join(format!("{name}.scan")))?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&partial, &file)?;
            Ok(summary)
        })();
        let summary = summary.map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            failed(&e)
        })?;
        tracing::info!(file = %file.display(), entries = summary.entries, by = %by, "backup taken");
        Ok(BackupTaken {
            file: file.display().to_string(),
            entries: summary.entries,
            cases: summary.cases.len(),
            took_ms: started.elapsed().as_millis() as u64,
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(taken)))
}
