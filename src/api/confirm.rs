//! `POST /v1/buckets/{b}/uploads/{upload_id}/confirm`: accept, publish, and (sync) wait.
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::backlog::admit_bulk;
use super::error::{ApiError, ErrorEnvelope};
use super::extract::{ApiPath, BodySchema, OptionalJson, StrictQuery, Tenant};
use super::task_outputs::stored_failure;
use super::{buckets, uploads, AppState};
use crate::domain::{confirm_is_async, ConfirmOptions, TaskId, TaskStatus, TaskType, UploadStatus};
use crate::queue::{ConfirmJob, Lane};
use crate::store::outbox::OutboxMessage;
use crate::store::tasks::NewTask;
use crate::store::uploads::{begin_confirmation, ConfirmStart};
use crate::store::{self, TaskRow, UploadRow};

/// The SDK's `ConfirmUploadRequest`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    /// Compared with S3's ETag (quotes and case ignored).
    #[schema(min_length = 1, max_length = 1024)]
    pub(super) etag: Option<String>,
    /// Compared with the object's size.
    #[schema(minimum = 1)]
    pub(super) file_size_bytes: Option<i64>,
    /// Create and submit a batch holding the new object.
    pub(super) auto_submit_batch: Option<bool>,
}

impl BodySchema for ConfirmBody {
    const FIELDS: &'static [&'static str] = &["etag", "file_size_bytes", "auto_submit_batch"];
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConfirmQuery {
    /// Answer at once with a task_id instead of waiting for the result.
    #[serde(default, rename = "async")]
    #[param(rename = "async")]
    run_async: bool,
    /// Accepted and ignored: buckets here have no unique key for a policy to apply to.
    #[allow(dead_code)]
    policy: Option<String>,
}

/// The SDK's `ConfirmUploadResponse`: the result when it is ready (`COMPLETED`), else the
/// async form `{upload_id, status: PROCESSING, task_id, message}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConfirmUploadResponse {
    pub upload_id: String,
    pub status: String,
    pub etag: Option<String>,
    pub file_size_bytes: Option<i64>,
    pub file_hash: Option<String>,
    pub verified_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub object_id: Option<String>,
    /// The confirmation's task; with a submitted batch, the batch's submit task.
    pub task_id: Option<String>,
    pub batch_id: Option<String>,
    pub is_duplicate: bool,
    pub duplicate_of_upload_id: Option<String>,
    pub message: Option<String>,
}

impl ConfirmUploadResponse {
    /// A confirmed upload's stored result.
    pub fn completed(u: &UploadRow) -> Self {
        ConfirmUploadResponse {
            upload_id: u.id.clone().into(),
            status: u.status.to_string(),
            etag: u.etag.clone(),
            file_size_bytes: u.file_size_bytes,
            file_hash: u.file_hash.clone(),
            verified_at: u.verified_at,
            completed_at: u.completed_at,
            object_id: u.object_id.clone().map(String::from),
            task_id: u
                .batch_task_id
                .clone()
                .or_else(|| u.task_id.clone())
                .map(String::from),
            batch_id: u.batch_id.clone().map(String::from),
            is_duplicate: u.is_duplicate,
            duplicate_of_upload_id: u.duplicate_of_upload_id.clone().map(String::from),
            message: u.message.clone(),
        }
    }

    /// A confirmation still running.
    pub fn in_progress(upload_id: &str, task_id: &str) -> Self {
        ConfirmUploadResponse {
            upload_id: upload_id.to_owned(),
            status: UploadStatus::Processing.to_string(),
            etag: None,
            file_size_bytes: None,
            file_hash: None,
            verified_at: None,
            completed_at: None,
            object_id: None,
            task_id: Some(task_id.to_owned()),
            batch_id: None,
            is_duplicate: false,
            duplicate_of_upload_id: None,
            message: Some(format!(
                "Confirmation in progress; poll GET /v1/tasks/{task_id}"
            )),
        }
    }
}

fn async_answer(upload_id: &str, task_id: &str) -> Json<ConfirmUploadResponse> {
    Json(ConfirmUploadResponse::in_progress(upload_id, task_id))
}

pub(super) fn options_from(body: ConfirmBody) -> Result<ConfirmOptions, ApiError> {
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

#[utoipa::path(post, path = "/v1/buckets/{bucket_identifier}/uploads/{upload_id}/confirm", tag = "uploads", operation_id = "confirm_upload",
    params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("upload_id" = String, Path), ConfirmQuery, ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")),
    request_body(content = Option<ConfirmBody>),
    responses((status = 200, description = "The result (COMPLETED), or PROCESSING with a task_id when async or not ready within the sync bound", body = ConfirmUploadResponse),
        (status = 400, description = "Verification failed (details.reason) or the upload was canceled", body = ErrorEnvelope),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope),
        (status = 403, description = "Quota exceeded", body = ErrorEnvelope),
        (status = 404, description = "Unknown namespace, bucket or upload", body = ErrorEnvelope),
        (status = 413, description = "Body too large", body = ErrorEnvelope),
        (status = 415, description = "Body is not JSON", body = ErrorEnvelope),
        (status = 422, description = "Invalid body or query", body = ErrorEnvelope),
        (status = 503, description = "Dependency unavailable; retry", body = ErrorEnvelope)))]
pub async fn confirm(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath((bucket_ident, upload_id)): ApiPath<(String, String)>,
    StrictQuery(query): StrictQuery<ConfirmQuery>,
    OptionalJson(body): OptionalJson<ConfirmBody>,
) -> Result<Json<ConfirmUploadResponse>, ApiError> {
    let began = Instant::now();
    let mut run_async = query.run_async;
    let answer = confirm_upload(
        &state,
        &tenant,
        &bucket_ident,
        &upload_id,
        body,
        &mut run_async,
    )
    .await;
    let status = match &answer {
        Ok(_) => StatusCode::OK,
        Err(err) => err.status(),
    };
    metrics::histogram!(
        crate::service::metrics::CONFIRM_SECONDS,
        "mode" => if run_async { "async" } else { "sync" },
        "status" => status.as_str().to_owned()
    )
    .record(began.elapsed().as_secs_f64());
    answer
}

/// The confirm route's work; `run_async` ends up saying which way it was answered.
async fn confirm_upload(
    state: &AppState,
    tenant: &Tenant,
    bucket_ident: &str,
    upload_id: &str,
    body: ConfirmBody,
    run_async: &mut bool,
) -> Result<Json<ConfirmUploadResponse>, ApiError> {
    let bucket = buckets::resolve(state, tenant, bucket_ident).await?;
    let mut upload = uploads::resolve(state, &bucket, upload_id).await?;
    let options = options_from(body)?;
    *run_async = confirm_is_async(
        *run_async,
        options.file_size_bytes.or(upload.file_size_bytes),
        state.settings.async_threshold_bytes,
    );
    let run_async = *run_async;

    // A concurrent confirm may move the upload between our read and our write: re-decide then.
    for _ in 0..3 {
        let task_id = match upload.status {
            UploadStatus::Completed => return Ok(Json(ConfirmUploadResponse::completed(&upload))),
            UploadStatus::Canceled => {
                return Err(ApiError::bad_request(
                    "the upload was canceled and cannot be confirmed",
                ))
            }
            UploadStatus::Processing => upload.task_id.clone().ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!(
                    "processing upload {} has no task",
                    upload.id
                ))
            })?,
            UploadStatus::Pending | UploadStatus::Failed => {
                let lane = if run_async {
                    admit_bulk(state, tenant, 1).await?;
                    Lane::Bulk
                } else {
                    Lane::Interactive
                };
                match start(state, tenant, &upload, &options, lane).await? {
                    ConfirmStart::Started { task_id, .. } => task_id,
                    ConfirmStart::NotStarted(current) => {
                        upload = *current;
                        continue;
                    }
                }
            }
        };
        tracing::Span::current().record("task_id", task_id.as_str());
        if run_async {
            return Ok(async_answer(&upload.id, &task_id));
        }
        return wait_for_result(state, &upload.id, &task_id).await;
    }
    Err(ApiError::Unavailable(
        "the upload is changing too fast; retry".into(),
    ))
}

/// Records the confirmation and its job. An interactive job is published at once; a bulk
/// job waits for the dispatcher's fair share.
async fn start(
    state: &AppState,
    tenant: &Tenant,
    upload: &UploadRow,
    options: &ConfirmOptions,
    lane: Lane,
) -> Result<ConfirmStart, ApiError> {
    let task_id = TaskId::generate();
    let inputs = json!({
        "upload_id": upload.id,
        "bucket_id": upload.bucket_id,
        "options": options,
    });
    let job = ConfirmJob::accepted_now(&task_id, &upload.id, &tenant.namespace.id);
    let payload = serde_json::to_value(&job).map_err(|e| ApiError::Internal(e.into()))?;
    let queue = state.publisher.topology().queue(lane);
    let bulk = lane == Lane::Bulk;
    let started = begin_confirmation(
        &state.pool,
        &upload.id,
        &NewTask {
            id: &task_id,
            organization_id: &tenant.organization_id,
            namespace_id: &tenant.namespace.id,
            task_type: TaskType::UploadConfirm,
            status: TaskStatus::Queued,
            inputs: &inputs,
            outputs: None,
        },
        &OutboxMessage {
            exchange: "",
            routing_key: &queue,
            message_id: &task_id,
            payload: &payload,
            namespace_id: bulk.then_some(tenant.namespace.id.as_str()),
        },
    )
    .await?;
    if let (ConfirmStart::Started { outbox_id, .. }, false) = (&started, bulk) {
        publish_now(
            state,
            &[Committed {
                outbox_id: *outbox_id,
                exchange: "",
                routing_key: &queue,
                message_id: &task_id,
                payload: &payload,
            }],
        )
        .await;
    }
    Ok(started)
}

/// A message committed to the outbox, to publish at once.
pub struct Committed<'a> {
    pub outbox_id: i64,
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub message_id: &'a str,
    pub payload: &'a Value,
}

/// Publishing right after commit saves a relay interval; what fails, the relay publishes later.
pub async fn publish_now(state: &AppState, messages: &[Committed<'_>]) {
    let publishes = messages.iter().map(|m| async move {
        let bytes = m.payload.to_string();
        state
            .publisher
            .publish(m.exchange, m.routing_key, m.message_id, bytes.as_bytes())
            .await
            .map(|()| m.outbox_id)
            .map_err(|e| (m.outbox_id, e))
    });
    let mut confirmed = Vec::with_capacity(messages.len());
    for result in futures::future::join_all(publishes).await {
        match result {
            Ok(id) => confirmed.push(id),
            Err((outbox_id, e)) => {
                tracing::warn!(error = %e, outbox_id, "message not published; the relay will publish it")
            }
        }
    }
    if confirmed.is_empty() {
        return;
    }
    let deleted = match state.pool.acquire().await {
        Ok(mut conn) => store::outbox::delete_many(&mut conn, &confirmed).await,
        Err(e) => Err(e),
    };
    if let Err(e) = deleted {
        tracing::warn!(error = %e, "published messages left in the outbox; the relay will resend them");
    }
}

/// Waits for the task, up to the sync bound, and answers with its result or the async form.
async fn wait_for_result(
    state: &AppState,
    upload_id: &str,
    task_id: &str,
) -> Result<Json<ConfirmUploadResponse>, ApiError> {
    let deadline = Instant::now() + state.settings.sync_wait;
    let mut events = state.events.subscribe(task_id);
    loop {
        let task = store::tasks::find(&state.pool, task_id)
            .await?
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("task {task_id} vanished")))?;
        if let Some(answer) = settled(state, &task, upload_id).await? {
            return Ok(answer);
        }
        if Instant::now() >= deadline {
            return Ok(async_answer(upload_id, task_id));
        }
        events.changed_before(deadline).await;
    }
}

/// The answer a task's state allows now, if any.
async fn settled(
    state: &AppState,
    task: &TaskRow,
    upload_id: &str,
) -> Result<Option<Json<ConfirmUploadResponse>>, ApiError> {
    // A worker found the object large: that confirmation is async, however far it got.
    let total = task
        .progress
        .as_ref()
        .and_then(|p| p.get("bytes_total"))
        .and_then(Value::as_i64);
    if total.is_some_and(|t| t >= state.settings.async_threshold_bytes) {
        return Ok(Some(async_answer(upload_id, &task.id)));
    }
    match task.status {
        TaskStatus::Completed => {
            let upload = store::uploads::find(&state.pool, upload_id)
                .await?
                .ok_or_else(|| ApiError::not_found("upload"))?;
            Ok(Some(Json(ConfirmUploadResponse::completed(&upload))))
        }
        TaskStatus::Failed => Err(stored_failure(task.outputs.as_ref())),
        TaskStatus::Canceled => Err(ApiError::bad_request("the confirmation was canceled")),
        _ => Ok(None),
    }
}
