//! `GET /v1/tasks/{task_id}`.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{ApiPath, Caller};
use super::AppState;
use crate::store::{tasks, TaskRow};

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

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(task_id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let task = tasks::find_for_organization(&state.pool, &caller.organization_id, &task_id)
        .await?
        .ok_or_else(|| ApiError::not_found("task"))?;
    Ok(Json(task_json(&task)))
}
