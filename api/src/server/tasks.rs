//! `/tasks`: inboxes by user or role, and the commands on a task (claim, release, reassign,
//! delegate, complete).

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{Body, Q};
use super::instances::run;
use super::json::{fields_from, page_limit, parse_task_id};
use super::views;
use super::{blocking, Shared};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use caseflow_core::case::Command;
use serde::Deserialize;
use serde_json::{Map, Value as Json};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct InboxQuery {
    user: Option<String>,
    role: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only tasks of this step (its name), to work a pile of the same task in a row.
    step: Option<String>,
}

/// Tasks
///
/// Open tasks of a user or role, soonest deadline first, a page at a time.
#[utoipa::path(
    get,
    path = "/tasks",
    params(InboxQuery),
    responses(
        (status = 200, description = "A page of open tasks, soonest due first (no deadline last), and `next_cursor`", body = views::TaskPage),
        (status = 403, description = "Not your inbox or role")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn inbox(
    State(state): State<Shared>,
    Caller(actor, _): Caller,
    Q(q): Q<InboxQuery>,
) -> Result<axum::Json<views::TaskPage>, ApiError> {
    // Staff see their own inbox and their roles'; administrators anyone's.
    let (user, role) = match (q.user, q.role) {
        (None, None) => (Some(actor.id.clone()), None),
        (Some(u), r) => (Some(u), r),
        (None, Some(r)) => (None, Some(r)),
    };
    let foreign =
        user.as_ref().is_some_and(|u| *u != actor.id) || role.as_ref().is_some_and(|r| !actor.roles.contains(r));
    if foreign && !actor.admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "you may read your own inbox and your roles' only",
        ));
    }
    let limit = page_limit(q.limit)?;
    let s = state.clone();
    let cursor = q.cursor;
    let step = q.step;
    let page = blocking(move || {
        let Some(step) = step else {
            return Ok(s.engine.tasks_page(user.as_deref(), role.as_deref(), cursor.as_deref(), limit)?);
        };
        // Piled execution: pages of the inbox, kept to one step, until this page is full.
        let mut found = Vec::new();
        let mut cursor = cursor;
        loop {
            // No more than the page still lacks, so that the cursor resumes right after it.
            let want = limit - found.len();
            let page = s.engine.tasks_page(user.as_deref(), role.as_deref(), cursor.as_deref(), want)?;
            found.extend(page.tasks.into_iter().filter(|t| t.task.step_name == step));
            if found.len() >= limit || page.next_cursor.is_none() {
                return Ok(caseflow_engine::service::TaskPage { tasks: found, next_cursor: page.next_cursor });
            }
            cursor = page.next_cursor;
        }
    })
    .await?;
    let tasks = page.tasks.iter().map(views::TaskRow::from).collect();
    Ok(axum::Json(views::TaskPage { tasks, next_cursor: page.next_cursor }))
}

/// Claim a task
///
/// Takes a task offered to one's role; one claimed by someone else needs the `reassign` permission (recorded).
#[utoipa::path(
    post,
    path = "/tasks/{id}/claim",
    params(("id" = String, Path, description = "Task id INSTANCE-SEQ")),
    responses(
        (status = 200, description = "Claimed", body = views::Instance),
        (status = 403, description = "Not your task or role"),
        (status = 409, description = "Not open")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn claim(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<views::Instance>, ApiError> {
    let (instance, task) = parse_task_id(&id)?;
    run(state, caller, instance, Command::Claim { task }).await
}

/// Release a task
///
/// Gives a claimed task back to its role.
#[utoipa::path(
    post,
    path = "/tasks/{id}/release",
    params(("id" = String, Path, description = "Task id INSTANCE-SEQ")),
    responses(
        (status = 200, description = "Released", body = views::Instance),
        (status = 403, description = "Not yours"),
        (status = 409, description = "Not open")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn release(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<views::Instance>, ApiError> {
    let (instance, task) = parse_task_id(&id)?;
    run(state, caller, instance, Command::Release { task }).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"to": "zhang_wei", "reason": "left the team"}))]
pub(crate) struct ReassignRequest {
    pub(crate) to: String,
    pub(crate) reason: String,
}

/// Reassign a task
///
/// Gives one open task to another user: the `reassign` permission (managers). Recorded in
/// the case's history.
#[utoipa::path(
    post,
    path = "/tasks/{id}/reassign",
    params(("id" = String, Path, description = "Task id INSTANCE-SEQ")),
    request_body = ReassignRequest,
    responses(
        (status = 200, description = "Reassigned", body = views::Instance),
        (status = 403, description = "No `reassign` permission"),
        (status = 409, description = "Not open"),
        (status = 422, description = "No such user")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn reassign_task(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<ReassignRequest>,
) -> Result<axum::Json<views::Instance>, ApiError> {
    let (instance, task) = parse_task_id(&id)?;
    run(state, caller, instance, Command::Reassign { task, to: req.to, reason: req.reason }).await
}

/// Delegate a task
///
/// The assignee passes their task to a colleague who holds one of its roles: the `delegate`
/// permission. Recorded in the history; the task shows `delegated_by`.
#[utoipa::path(
    post,
    path = "/tasks/{id}/delegate",
    params(("id" = String, Path, description = "Task id INSTANCE-SEQ")),
    request_body = ReassignRequest,
    responses(
        (status = 200, description = "Delegated", body = views::Instance),
        (status = 403, description = "Not your task, or no `delegate` permission"),
        (status = 409, description = "Not open"),
        (status = 422, description = "The colleague may not work on it")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delegate_task(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<ReassignRequest>,
) -> Result<axum::Json<views::Instance>, ApiError> {
    let (instance, task) = parse_task_id(&id)?;
    run(state, caller, instance, Command::Delegate { task, to: req.to, reason: req.reason }).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"fields": {"cause": "quality"}}))]
pub(crate) struct CompleteRequest {
    /// The task's answers. Their JSON Schema is `tasks.STEP` of
    /// `GET /processes/{process}/schema`, STEP being the task's `step`.
    #[serde(default)]
    #[schema(value_type = Object)]
    fields: Map<String, Json>,
}

/// Complete a task
///
/// Records the task's answers and moves the case on; answers the case and `next_for_you`.
#[utoipa::path(
    post,
    path = "/tasks/{id}/complete",
    params(("id" = String, Path, description = "Task id INSTANCE-SEQ")),
    request_body = CompleteRequest,
    responses(
        (status = 200, description = "Completed; the case moved on", body = views::Completed),
        (status = 403, description = "Not your task or role"),
        (status = 409, description = "Not open: someone completed it first"),
        (status = 422, description = "The form is invalid")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn complete(
    State(state): State<Shared>,
    Caller(actor, service): Caller,
    Path(id): Path<String>,
    Body(req): Body<CompleteRequest>,
) -> Result<axum::Json<views::Completed>, ApiError> {
    if service {
        return Err(ApiError::forbidden("service tokens may not work on tasks"));
    }
    let (instance, task) = parse_task_id(&id)?;
    let fields = fields_from(&req.fields)?;
    let axum::Json(instance) =
        run(state, Caller(actor.clone(), service), instance, Command::CompleteTask { task, fields }).await?;
    // Chained execution: the tasks of this case that are now the caller's, to go on with.
    let next_for_you = instance
        .tasks
        .iter()
        .filter(|t| t.assignee.as_deref() == Some(actor.id.as_str()))
        .map(|t| t.id.clone())
        .collect();
    Ok(axum::Json(views::Completed { instance, next_for_you }))
}

/// Start work on a task
///
/// The assignee says they are working on the task: inboxes and the case show who, since when,
/// until it changes hands or completes. Starting it again changes nothing.
#[utoipa::path(
    post,
    path = "/tasks/{id}/start",
    params(("id" = String, Path, description = "Task id INSTANCE-SEQ")),
    responses(
        (status = 200, description = "Started", body = views::Instance),
        (status = 403, description = "Not the task's assignee (claim it first)"),
        (status = 409, description = "Not open")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn start_work(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<views::Instance>, ApiError> {
    if caller.1 {
        return Err(ApiError::forbidden("service tokens may not work on tasks"));
    }
    let (instance, task) = parse_task_id(&id)?;
    run(state, caller, instance, Command::StartWork { task }).await
}

/// Save a task's draft
///
/// The assignee saves answers to finish later, replacing any earlier draft: fields the task
/// asks for, each of its type (what is required is checked at completion). The draft stays
/// with the task when it changes hands, so whoever takes it over sees it.
#[utoipa::path(
    put,
    path = "/tasks/{id}/draft",
    params(("id" = String, Path, description = "Task id INSTANCE-SEQ")),
    request_body = CompleteRequest,
    responses(
        (status = 200, description = "Saved", body = views::Instance),
        (status = 403, description = "Not the task's assignee (claim it first)"),
        (status = 409, description = "Not open"),
        (status = 422, description = "A field the task does not ask for, or a value not of its type")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn save_draft(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<CompleteRequest>,
) -> Result<axum::Json<views::Instance>, ApiError> {
    if caller.1 {
        return Err(ApiError::forbidden("service tokens may not work on tasks"));
    }
    let (instance, task) = parse_task_id(&id)?;
    let fields = fields_from(&req.fields)?;
    run(state, caller, instance, Command::SaveDraft { task, fields }).await
}
