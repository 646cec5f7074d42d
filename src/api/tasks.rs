//! `GET /v1/tasks/{task_id}` (with long-poll), `POST /v1/tasks/list`, `DELETE /v1/tasks/{task_id}`.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::buckets::sort_term;
use super::error::{ApiError, BodyRefusals, ErrorEnvelope};
use super::extract::{ApiPath, BodySchema, Caller, OptionalJson, StrictQuery};
use super::filters::{self, Field};
use super::pages::{Page, PageAsk, PageQuery, Pagination};
use super::AppState;
use crate::domain::{TaskId, TaskType};
use crate::store::cancel::{cancel_task, CancelOutcome};
use crate::store::filter::{ColumnKind, Comparison, Condition, Scalar, TextMatch};
use crate::store::{tasks, TaskRow};

/// Longest a long-poll holds a request (seconds).
pub const MAX_WAIT_SECONDS: u64 = 60;

/// Every status the SDK's `TaskStatusEnum` names; ours are a subset.
pub const SDK_STATUSES: [&str; 16] = [
    "PENDING",
    "QUEUED",
    "IN_PROGRESS",
    "PROCESSING",
    "COMPLETED",
    "COMPLETED_WITH_ERRORS",
    "FAILED",
    "CANCELED",
    "INTERRUPTED",
    "UNKNOWN",
    "SKIPPED",
    "DRAFT",
    "ACTIVE",
    "ARCHIVED",
    "SUSPENDED",
    "DEACTIVATED",
];

/// A task, as the SDK's `TaskResponse` parses it: `inputs` and `outputs` are lists.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskResponse {
    pub task_id: String,
    /// `api_buckets_uploads_confirm`, `api_buckets_uploads_batch_confirm` or
    /// `api_buckets_batches_submit`.
    pub task_type: String,
    pub status: String,
    /// A confirmation: `[{upload_id, bucket_id, options}]`; a batch confirmation: one
    /// `{upload_id, options}` per item, in request order.
    #[schema(value_type = Vec<Object>)]
    pub inputs: Vec<Value>,
    /// A confirmation: `[result]` (or `[{upload_id, status_code, error}]` when it failed);
    /// a batch confirmation: one result per item, in request order.
    #[schema(value_type = Vec<Object>)]
    pub outputs: Vec<Value>,
    /// A batch confirmation's counts (`total`, `completed`, `failed`, `canceled`,
    /// `duplicates`) and its `bucket_id`.
    #[schema(value_type = Option<Object>)]
    pub additional_data: Option<Value>,
    pub error: Option<String>,
    /// `{bytes_done, bytes_total, percentage}` while a large object is hashed.
    #[schema(value_type = Option<Object>)]
    pub progress: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A stored object `key: [items]` gives its items; any other object is a list of one.
fn as_list(stored: Option<&Value>, key: &str, rest: &mut Map<String, Value>) -> Vec<Value> {
    match stored {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Object(map)) => match map.get(key) {
            Some(Value::Array(items)) => {
                for (k, v) in map {
                    if k != key {
                        rest.insert(k.clone(), v.clone());
                    }
                }
                items.clone()
            }
            _ => vec![Value::Object(map.clone())],
        },
        Some(other) => vec![other.clone()],
    }
}

impl TaskResponse {
    pub fn new(t: &TaskRow) -> Self {
        let mut extra = match &t.additional_data {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        };
        let inputs = as_list(Some(&t.inputs), "confirmations", &mut extra);
        let outputs = as_list(t.outputs.as_ref(), "results", &mut extra);
        TaskResponse {
            task_id: t.id.clone().into(),
            task_type: t.task_type.to_string(),
            status: t.status.to_string(),
            inputs,
            outputs,
            additional_data: (!extra.is_empty() || t.additional_data.is_some())
                .then_some(Value::Object(extra)),
            error: t.error.clone(),
            progress: t.progress.clone(),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

fn is_terminal(task: &TaskRow) -> bool {
    task.status.is_terminal()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// Hold the request up to this many seconds until the task is terminal.
    #[param(minimum = 0, maximum = 60)]
    wait_seconds: Option<u64>,
}

/// With `wait_seconds`, the request is held until the task is terminal or that time passes;
/// it wakes on the task's change notice, not by polling.
#[utoipa::path(get, path = "/v1/tasks/{task_id}", tag = "tasks", operation_id = "get_task",
    params(("task_id" = String, Path), TaskQuery),
    responses((status = 200, description = "The task", body = TaskResponse),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope),
        (status = 404, description = "Unknown task", body = ErrorEnvelope),
        (status = 422, description = "Invalid query", body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(task_id): ApiPath<String>,
    StrictQuery(query): StrictQuery<TaskQuery>,
) -> Result<Json<TaskResponse>, ApiError> {
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
        return Ok(Json(TaskResponse::new(&task)));
    }
    let deadline = Instant::now() + Duration::from_secs(wait);
    // Subscribed before the first read, so a change between the two is not missed.
    let mut events = state.events.subscribe(&task_id);
    loop {
        let task = find().await?.ok_or_else(|| ApiError::not_found("task"))?;
        if is_terminal(&task) || Instant::now() >= deadline {
            return Ok(Json(TaskResponse::new(&task)));
        }
        events.changed_before(deadline).await;
    }
}

/// The SDK's `ListTasksRequest` (and `limit`/`offset`, which it sends in the query).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTasks {
    /// A `TaskStatusEnum` value.
    status: Option<String>,
    /// A `TaskType` value.
    task_type: Option<String>,
    /// `{AND|OR|NOT: [{field, operator, value}]}` or `{field: value}` on task_id, status,
    /// task_type.
    #[schema(value_type = Option<Object>)]
    filters: Option<Value>,
    /// `{field: "created_at", direction}`.
    #[schema(value_type = Option<Object>)]
    sort: Option<Value>,
    /// Matched anywhere in the task id or type.
    #[schema(max_length = 255)]
    search: Option<String>,
    #[schema(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    #[schema(minimum = 0)]
    offset: Option<i64>,
}

impl BodySchema for ListTasks {
    const FIELDS: &'static [&'static str] = &[
        "status",
        "task_type",
        "filters",
        "sort",
        "search",
        "limit",
        "offset",
    ];
}

/// The SDK's `ListTasksResponse`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListTasksResponse {
    pub results: Vec<TaskResponse>,
    pub pagination: Pagination,
    /// How many tasks match, as `pagination.total`.
    pub total_count: i64,
}

const TASK_FIELDS: [Field; 3] = [
    Field::new("task_id", "id", ColumnKind::Text),
    Field::new("status", "status", ColumnKind::Text).one_of(&SDK_STATUSES),
    Field::new("task_type", "task_type", ColumnKind::Text),
];

fn equals(column: &'static str, value: String) -> Condition {
    Condition::Compare {
        column,
        op: Comparison::Eq,
        value: Scalar::Text(value),
        case_sensitive: true,
    }
}

/// `POST /v1/tasks/list`: the organization's tasks, newest first.
#[utoipa::path(post, path = "/v1/tasks/list", tag = "tasks", operation_id = "list_tasks",
    params(PageQuery),
    request_body(content = Option<ListTasks>),
    responses((status = 200, description = "A page of tasks", body = ListTasksResponse),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope),
        BodyRefusals))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    StrictQuery(query): StrictQuery<PageQuery>,
    OptionalJson(body): OptionalJson<ListTasks>,
) -> Result<Json<ListTasksResponse>, ApiError> {
    let page = Page::resolve(PageAsk::limit_offset(body.limit, body.offset), &query, 1000)?;
    let mut filter = vec![filters::parse(body.filters.as_ref(), &TASK_FIELDS)?];
    if let Some(status) = body.status {
        if !SDK_STATUSES.contains(&status.as_str()) {
            return Err(ApiError::invalid(
                "enum",
                &["body", "status"],
                format!(
                    "'{status}' is not a task status ({})",
                    SDK_STATUSES.join(", ")
                ),
            ));
        }
        filter.push(equals("status", status));
    }
    if let Some(kind) = body.task_type {
        if TaskType::parse(&kind).is_none() {
            let known: Vec<&str> = TaskType::ALL.iter().map(|t| t.as_str()).collect();
            return Err(ApiError::invalid(
                "enum",
                &["body", "task_type"],
                format!("'{kind}' is not a task type ({})", known.join(", ")),
            ));
        }
        filter.push(equals("task_type", kind));
    }
    if let Some(search) = filters::search(body.search)? {
        filter.push(Condition::Any(
            ["id", "task_type"]
                .into_iter()
                .map(|column| Condition::Text {
                    column,
                    how: TextMatch::Contains,
                    pattern: search.clone(),
                    case_sensitive: false,
                })
                .collect(),
        ));
    }
    let oldest_first = match body.sort.as_ref().filter(|s| !s.is_null()) {
        None => false,
        Some(sort) => {
            sort_term(sort, &[("created_at", "created_at")], &["body", "sort"])?.contains("ASC")
        }
    };
    let (rows, total) = tasks::list(
        &state.pool,
        &caller.organization_id,
        &Condition::All(filter),
        oldest_first,
        page.limit,
        page.offset,
    )
    .await?;
    Ok(Json(ListTasksResponse {
        results: rows.iter().map(TaskResponse::new).collect(),
        pagination: page.pagination(total),
        total_count: total,
    }))
}

/// The SDK's `GenericDeleteResponse`, with the task and its status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KillResponse {
    pub success: bool,
    pub message: String,
    pub task_id: String,
    pub status: String,
}

/// `DELETE /v1/tasks/{task_id}`: a task not yet terminal becomes `CANCELED`, and its job
/// changes nothing when it runs. Killing a task that has ended changes nothing and succeeds.
#[utoipa::path(delete, path = "/v1/tasks/{task_id}", tag = "tasks", operation_id = "kill_task",
    params(("task_id" = String, Path)),
    responses((status = 200, description = "Canceled, or already ended", body = KillResponse),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope),
        (status = 404, description = "Unknown task", body = ErrorEnvelope)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(task_id): ApiPath<String>,
) -> Result<Json<KillResponse>, ApiError> {
    let (task, message) = match cancel_task(
        &state.pool,
        &caller.organization_id,
        &TaskId::from(task_id.as_str()),
    )
    .await?
    {
        CancelOutcome::NotFound => return Err(ApiError::not_found("task")),
        CancelOutcome::Canceled(task) => {
            let message = format!("Task {} canceled", task.id);
            (task, message)
        }
        CancelOutcome::AlreadyCanceled(task) => {
            let message = format!("Task {} was already canceled", task.id);
            (task, message)
        }
        CancelOutcome::Terminal(task) => {
            let message = format!(
                "Task {} already ended {}; nothing to cancel",
                task.id, task.status
            );
            (task, message)
        }
    };
    Ok(Json(KillResponse {
        success: true,
        message,
        task_id: task.id.into(),
        status: task.status.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_objects_become_lists() {
        let mut rest = Map::new();
        let single = json!({"upload_id": "upl_1", "status": "COMPLETED"});
        assert_eq!(
            as_list(Some(&single), "results", &mut rest),
            vec![single.clone()]
        );
        assert!(rest.is_empty());
        let batch = json!({"results": [{"upload_id": "a"}, {"upload_id": "b"}], "total": 2});
        let items = as_list(Some(&batch), "results", &mut rest);
        assert_eq!(items.len(), 2);
        assert_eq!(items[1]["upload_id"], "b");
        assert_eq!(rest["total"], 2);
        assert!(as_list(None, "results", &mut rest).is_empty());
        assert!(as_list(Some(&Value::Null), "results", &mut rest).is_empty());
    }
}
