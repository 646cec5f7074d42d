//! `POST /v1/buckets/{b}/uploads/{upload_id}/confirm`: accept, publish, and (sync) wait.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::error::ApiError;
use super::extract::{ApiPath, BodySchema, OptionalJson, StrictQuery, Tenant};
use super::{buckets, uploads, AppState};
use crate::confirm::{confirm_result, stored_failure, ConfirmOptions};
use crate::domain::{confirm_is_async, new_id, IdKind, TaskStatus, TaskType, UploadStatus};
use crate::queue::ConfirmJob;
use crate::store::outbox::OutboxMessage;
use crate::store::tasks::NewTask;
use crate::store::uploads::{begin_confirmation, ConfirmStart};
use crate::store::{self, TaskRow, UploadRow};

#[derive(Debug, Deserialize)]
pub struct ConfirmBody {
    etag: Option<String>,
    file_size_bytes: Option<i64>,
    auto_submit_batch: Option<bool>,
}

impl BodySchema for ConfirmBody {
    const FIELDS: &'static [&'static str] = &["etag", "file_size_bytes", "auto_submit_batch"];
}

#[derive(Debug, Deserialize)]
pub struct ConfirmQuery {
    #[serde(default, rename = "async")]
    run_async: bool,
}

/// Fallback re-read while waiting, in case a notification was lost with a connection.
const RECHECK_EVERY: Duration = Duration::from_secs(2);

fn async_answer(upload_id: &str, task_id: &str) -> Json<Value> {
    Json(json!({
        "upload_id": upload_id,
        "status": UploadStatus::Processing.as_str(),
        "task_id": task_id,
        "message": format!("Confirmation in progress; poll GET /v1/tasks/{task_id}"),
    }))
}

fn options_from(body: ConfirmBody) -> Result<ConfirmOptions, ApiError> {
    uploads::check_declared_size(body.file_size_bytes)?;
    if let Some(etag) = &body.etag {
        if etag.trim().is_empty() || etag.len() > 1024 {
            return Err(ApiError::invalid(
                "value_error",
                &["body", "etag"],
                "etag must be 1 to 1024 characters",
            ));
        }
    }
    Ok(ConfirmOptions {
        etag: body.etag,
        file_size_bytes: body.file_size_bytes,
        auto_submit_batch: body.auto_submit_batch.unwrap_or(false),
    })
}

pub async fn confirm(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath((bucket_ident, upload_id)): ApiPath<(String, String)>,
    StrictQuery(query): StrictQuery<ConfirmQuery>,
    OptionalJson(body): OptionalJson<ConfirmBody>,
) -> Result<Json<Value>, ApiError> {
    let bucket = buckets::resolve(&state, &tenant, &bucket_ident).await?;
    let mut upload = uploads::resolve(&state, &bucket, &upload_id).await?;
    let options = options_from(body)?;
    let run_async = confirm_is_async(
        query.run_async,
        options.file_size_bytes.or(upload.file_size_bytes),
        state.settings.async_threshold_bytes,
    );

    // A concurrent confirm may move the upload between our read and our write: re-decide then.
    for _ in 0..3 {
        let status = UploadStatus::parse(&upload.status);
        let task_id = match status {
            Some(UploadStatus::Completed) => return Ok(Json(confirm_result(&upload))),
            Some(UploadStatus::Canceled) => {
                return Err(ApiError::bad_request(
                    "the upload was canceled and cannot be confirmed",
                ))
            }
            Some(UploadStatus::Processing) => upload.task_id.clone().ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!(
                    "processing upload {} has no task",
                    upload.id
                ))
            })?,
            Some(UploadStatus::Pending | UploadStatus::Failed) => {
                match start(&state, &tenant, &upload, &options).await? {
                    ConfirmStart::Started { task_id, .. } => task_id,
                    ConfirmStart::NotStarted(current) => {
                        upload = *current;
                        continue;
                    }
                }
            }
            None => {
                return Err(ApiError::Internal(anyhow::anyhow!(
                    "upload {} has an unknown status {}",
                    upload.id,
                    upload.status
                )))
            }
        };
        if run_async {
            return Ok(async_answer(&upload.id, &task_id));
        }
        return wait_for_result(&state, &upload.id, &task_id).await;
    }
    Err(ApiError::Unavailable(
        "the upload is changing too fast; retry".into(),
    ))
}

/// Records the confirmation and its job, then publishes the job at once.
async fn start(
    state: &AppState,
    tenant: &Tenant,
    upload: &UploadRow,
    options: &ConfirmOptions,
) -> Result<ConfirmStart, ApiError> {
    let task_id = new_id(IdKind::Task);
    let inputs = json!({
        "upload_id": upload.id,
        "bucket_id": upload.bucket_id,
        "options": options,
    });
    let job = ConfirmJob {
        task_id: task_id.clone(),
        upload_id: upload.id.clone(),
    };
    let payload = serde_json::to_value(&job).map_err(|e| ApiError::Internal(e.into()))?;
    let queue = state.publisher.topology().confirm_queue();
    let started = begin_confirmation(
        &state.pool,
        &upload.id,
        &NewTask {
            id: &task_id,
            organization_id: &tenant.organization_id,
            namespace_id: &tenant.namespace.id,
            task_type: TaskType::UploadConfirm.as_str(),
            status: TaskStatus::Queued.as_str(),
            inputs: &inputs,
            outputs: None,
        },
        &OutboxMessage {
            exchange: "",
            routing_key: &queue,
            message_id: &task_id,
            payload: &payload,
        },
    )
    .await?;
    if let ConfirmStart::Started { outbox_id, .. } = &started {
        publish_now(state, *outbox_id, &queue, &task_id, &payload).await;
    }
    Ok(started)
}

/// Publishing right after commit saves a relay interval; if it fails, the relay publishes later.
async fn publish_now(
    state: &AppState,
    outbox_id: i64,
    queue: &str,
    task_id: &str,
    payload: &Value,
) {
    let bytes = payload.to_string();
    match state
        .publisher
        .publish("", queue, task_id, bytes.as_bytes())
        .await
    {
        Ok(()) => {
            if let Err(e) = store::outbox::delete(&state.pool, outbox_id).await {
                tracing::warn!(error = %e, outbox_id, "published job left in the outbox; the relay will resend it");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, outbox_id, "job not published; the relay will publish it")
        }
    }
}

/// Waits for the task, up to the sync bound, and answers with its result or the async form.
async fn wait_for_result(
    state: &AppState,
    upload_id: &str,
    task_id: &str,
) -> Result<Json<Value>, ApiError> {
    let deadline = Instant::now() + state.settings.sync_wait;
    let mut events = state.events.subscribe(task_id);
    loop {
        let task = store::tasks::find(&state.pool, task_id)
            .await?
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("task {task_id} vanished")))?;
        if let Some(answer) = settled(state, &task, upload_id).await? {
            return Ok(answer);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(async_answer(upload_id, task_id));
        }
        let wait = (deadline - now).min(RECHECK_EVERY);
        let _ = tokio::time::timeout(wait, events.changed()).await;
    }
}

/// The answer a task's state allows now, if any.
async fn settled(
    state: &AppState,
    task: &TaskRow,
    upload_id: &str,
) -> Result<Option<Json<Value>>, ApiError> {
    // A worker found the object large: that confirmation is async, however far it got.
    let total = task
        .progress
        .as_ref()
        .and_then(|p| p.get("bytes_total"))
        .and_then(Value::as_i64);
    if total.is_some_and(|t| t >= state.settings.async_threshold_bytes) {
        return Ok(Some(async_answer(upload_id, &task.id)));
    }
    match TaskStatus::parse(&task.status) {
        Some(TaskStatus::Completed) => {
            let upload = store::uploads::find(&state.pool, upload_id)
                .await?
                .ok_or_else(|| ApiError::not_found("upload"))?;
            Ok(Some(Json(confirm_result(&upload))))
        }
        Some(TaskStatus::Failed) => Err(stored_failure(task.outputs.as_ref())),
        Some(TaskStatus::Canceled) => Err(ApiError::bad_request("the confirmation was canceled")),
        _ => Ok(None),
    }
}
