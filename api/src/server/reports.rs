//! `/reports`: a process's KPIs over a period.

use super::auth::Caller;
use super::error::ApiError;
use super::extract::Q;
use super::{blocking, Shared};
use axum::extract::State;
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportQuery {
    process: String,
    /// Cases started at or after (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// Cases started before (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<chrono::DateTime<chrono::Utc>>,
}

/// Reports
///
/// KPIs of one process over a period: cases by status, outcome and choice field; per step
/// handling time (median, p90) and deadlines met; first-contact resolution; satisfaction and
/// the weighted five-dimension service-quality score.
#[utoipa::path(
    get,
    path = "/reports",
    params(ReportQuery),
    responses(
        (status = 200, description = "The report", body = caseflow_core::report::Report),
        (status = 404, description = "No such process")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn report(
    State(state): State<Shared>,
    _caller: Caller,
    Q(q): Q<ReportQuery>,
) -> Result<axum::Json<caseflow_core::report::Report>, ApiError> {
    let s = state.clone();
    let r = blocking(move || Ok(s.engine.report(&q.process, q.from, q.to)?)).await?;
    Ok(axum::Json(r))
}
