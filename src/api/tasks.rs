//! `GET /v1/tasks/{task_id}` (with long-poll), `POST /v1/tasks/list`, `DELETE /v1/tasks/{task_id}`.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::error::{ApiError, ErrorEnvelope};
use super::extract::{ApiPath, BodySchema, Caller, OptionalJson, StrictQuery};
use super::pages::Page;
use super::AppState;
use crate::domain::{TaskStatus, TaskType};
use crate::store::cancel::{cancel_task, CancelOutcome};
use crate::store::{tasks, TaskRow};

/// Longest a long-poll holds a request (seconds).
pub const MAX_WAIT_SECONDS: u64 = 60;

pub fn task_json(t: &TaskRow) -> Value {
    json!({
        "task_id": t.id,
        "task_type": t.task_type,
        "status": t.status,
        "inputs": t.inputs,
        "outputs": t.outputs,
        "additional_data": t.additional_data,
        "error": t.error,
        "progress": t.progress,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
    })
}

fn is_terminal(task: &TaskRow) -> bool {
    TaskStatus::parse(&task.status).is_some_and(TaskStatus::is_terminal)
}

#[derive(Debug, Deserialize)]
pub struct TaskQuery {
    wait_seconds: Option<u64>,
}

/// With `wait_seconds`, the request is held until the task is terminal or that time passes;
/// it wakes on the task's change notice, not by polling.
#[utoipa::path(get, path = "/v1/tasks/{task_id}", tag = "tasks", params(("task_id" = String, Path), ("wait_seconds" = Option<u64>, Query, description = "Hold the request up to this many seconds (max 60) until the task is terminal")), responses((status = 200, description = "TaskResponse", body = Object), (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope), (status = 404, description = "Unknown namespace, bucket or resource", body = ErrorEnvelope), (status = 422, description = "Invalid body or query", body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(task_id): ApiPath<String>,
    StrictQuery(query): StrictQuery<TaskQuery>,
) -> Result<Json<Value>, ApiError> {
    let wait = query.wait_seconds.unwrap_or(0);
    if wait > MAX_WAIT_SECONDS {
        return Err(ApiError::invalid(
            "less_than_equal",
            &["query", "wait_seconds"],
            format!("wait_seconds is at most {MAX_WAIT_SECONDS}"),
        ));
    }
    let find = || tasks::find_for_organization(&state.pool, &caller.organization_id, &task_id);
    if wait == 0 {
        let task = find().await?.ok_or_else(|| ApiError::not_found("task"))?;
        return Ok(Json(task_json(&task)));
    }
    let deadline = Instant::now() + Duration::from_secs(wait);
    // Subscribed before the first read, so a change between the two is not missed.
    let mut events = state.events.subscribe(&task_id);
    loop {
        let task = find().await?.ok_or_else(|| ApiError::not_found("task"))?;
        if is_terminal(&task) || Instant::now() >= deadline {
            return Ok(Json(task_json(&task)));
        }
        events.changed_before(deadline).await;
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ListTasks {
    status: Option<String>,
    task_type: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

impl BodySchema for ListTasks {
    const FIELDS: &'static [&'static str] = &["status", "task_type", "limit", "offset"];
}

/// `POST /v1/tasks/list`: the organization's tasks, newest first.
#[utoipa::path(post, path = "/v1/tasks/list", tag = "tasks", request_body(content = Option<ListTasks>), responses((status = 200, description = "{results, pagination}", body = Object), (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope), (status = 422, description = "Invalid body or query", body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    OptionalJson(body): OptionalJson<ListTasks>,
) -> Result<Json<Value>, ApiError> {
    let page = Page::parse(body.limit, body.offset)?;
    if let Some(status) = &body.status {
        if TaskStatus::parse(status).is_none() {
            return Err(ApiError::invalid(
                "enum",
                &["body", "status"],
                format!("'{status}' is not a task status"),
            ));
        }
    }
    if let Some(kind) = &body.task_type {
        if TaskType::parse(kind).is_none() {
            let known: Vec<&str> = TaskType::ALL.iter().map(|t| t.as_str()).collect();
            return Err(ApiError::invalid(
                "enum",
                &["body", "task_type"],
                format!("'{kind}' is not a task type ({})", known.join(", ")),
            ));
        }
    }
    let (rows, total) = tasks::list(
        &state.pool,
        &caller.organization_id,
        body.status.as_deref(),
        body.task_type.as_deref(),
        page.limit,
        page.offset,
    )
    .await?;
    Ok(Json(json!({
        "results": rows.iter().map(task_json).collect::<Vec<_>>(),
        "pagination": page.json(total),
    })))
}

/// `DELETE /v1/tasks/{task_id}`: a task not yet terminal becomes `CANCELED`, and its job
/// changes nothing when it runs. Canceling a canceled task again is fine.
#[utoipa::path(delete, path = "/v1/tasks/{task_id}", tag = "tasks", params(("task_id" = String, Path)), responses((status = 200, description = "{success: true, message}", body = Object), (status = 400, description = "Request refused in the current state", body = ErrorEnvelope), (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope), (status = 404, description = "Unknown namespace, bucket or resource", body = ErrorEnvelope)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(task_id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    match cancel_task(&state.pool, &caller.organization_id, &task_id).await? {
        CancelOutcome::NotFound => Err(ApiError::not_found("task")),
        CancelOutcome::Canceled(task) => Ok(Json(json!({
            "success": true,
            "message": format!("Task {} canceled", task.id),
            "task_id": task.id,
            "status": task.status,
        }))),
        CancelOutcome::AlreadyCanceled(task) => Ok(Json(json!({
            "success": true,
            "message": format!("Task {} was already canceled", task.id),
            "task_id": task.id,
            "status": task.status,
        }))),
        CancelOutcome::Terminal(task) => Err(ApiError::BadRequest {
            message: format!(
                "task {} already ended {}; there is nothing to cancel",
                task.id, task.status
            ),
            details: json!({ "status": task.status }),
        }),
    }
}
