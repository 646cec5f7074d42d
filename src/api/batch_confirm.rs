//! `POST /v1/buckets/{b}/uploads/confirm/batch`: one parent task whose items each follow an
//! ordinary confirmation, run by the workers side by side.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::backlog::admit_bulk;
use super::confirm::{options_from, ConfirmBody};
use super::error::{ApiError, BodyRefusals, NamespaceRefusals};
use super::extract::{parse_value, ApiPath, BodySchema, StrictJson, StrictQuery, Tenant};
use super::tasks::TaskResponse;
use super::{buckets, uploads, AppState};
use crate::domain::{TaskId, TaskStatus, TaskType};
use crate::queue::ConfirmJob;
use crate::store::batch_confirm::{self, BatchStart, ItemRequest};
use crate::store::tasks::NewTask;

/// One item of a batch confirmation.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmItem {
    #[schema(min_length = 1, max_length = 128)]
    upload_id: String,
    #[schema(min_length = 1, max_length = 1024)]
    etag: Option<String>,
    #[schema(minimum = 1)]
    file_size_bytes: Option<i64>,
}

impl BodySchema for ConfirmItem {
    const FIELDS: &'static [&'static str] = &["upload_id", "etag", "file_size_bytes"];
}

/// The SDK's `BatchConfirmRequest`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchConfirmBody {
    /// 1 to 100 confirmations.
    #[schema(value_type = Vec<ConfirmItem>, min_items = 1, max_items = 100)]
    confirmations: Vec<Value>,
}

/// `?policy=` of a batch confirmation: accepted and ignored (no unique keys here).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PolicyQuery {
    /// Accepted and ignored.
    #[allow(dead_code)]
    policy: Option<String>,
}

/// The SDK's `BatchConfirmResponse`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchConfirmResponse {
    pub task_id: String,
    pub status: String,
    pub confirmations_count: usize,
    pub task: TaskResponse,
    pub message: String,
}

impl BodySchema for BatchConfirmBody {
    const FIELDS: &'static [&'static str] = &["confirmations"];
}

/// `POST /v1/buckets/{b}/uploads/confirm/batch`: always async. Each item is an ordinary
/// confirmation (its own job, so workers run them side by side) that one parent task follows.
#[utoipa::path(post, path = "/v1/buckets/{bucket_identifier}/uploads/confirm/batch", tag = "uploads", operation_id = "confirm_uploads_batch",
    params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), PolicyQuery, ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")),
    request_body = BatchConfirmBody,
    responses((status = 200, description = "The batch confirmation's task, to poll", body = BatchConfirmResponse),
        NamespaceRefusals, BodyRefusals))]
pub async fn confirm_batch(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath(bucket_ident): ApiPath<String>,
    StrictQuery(_policy): StrictQuery<PolicyQuery>,
    StrictJson(body): StrictJson<BatchConfirmBody>,
) -> Result<Json<BatchConfirmResponse>, ApiError> {
    let bucket = buckets::resolve(&state, &tenant, &bucket_ident).await?;
    uploads::check_batch_len("confirmations", body.confirmations.len())?;
    let mut items = Vec::with_capacity(body.confirmations.len());
    for (index, item) in body.confirmations.into_iter().enumerate() {
        let at = |e: ApiError| e.at_item("confirmations", index);
        let item: ConfirmItem = parse_value(item).map_err(at)?;
        let options = options_from(ConfirmBody {
            etag: item.etag,
            file_size_bytes: item.file_size_bytes,
            auto_submit_batch: None,
        })
        .map_err(at)?;
        if item.upload_id.is_empty() || item.upload_id.len() > 128 {
            return Err(at(ApiError::invalid(
                "value_error",
                &["body", "upload_id"],
                "upload_id must be 1 to 128 characters",
            )));
        }
        items.push(ItemRequest {
            upload_id: item.upload_id,
            options: serde_json::to_value(&options).map_err(|e| ApiError::Internal(e.into()))?,
        });
    }

    admit_bulk(&state, &tenant, items.len()).await?;
    let task_id = TaskId::generate();
    let inputs = json!({
        "bucket_id": bucket.id,
        "confirmations": items.iter().map(|i| json!({"upload_id": i.upload_id, "options": i.options})).collect::<Vec<_>>(),
    });
    let queue = state.publisher.topology().confirm_queue();
    let started = batch_confirm::begin(
        &state.pool,
        &NewTask {
            id: &task_id,
            organization_id: &tenant.organization_id,
            namespace_id: &tenant.namespace.id,
            task_type: TaskType::UploadBatchConfirm,
            status: TaskStatus::Queued,
            inputs: &inputs,
            outputs: None,
        },
        &bucket.id,
        &items,
        &queue,
        |task_id, upload_id| {
            json!(ConfirmJob::accepted_now(
                task_id,
                upload_id,
                &tenant.namespace.id
            ))
        },
    )
    .await?;
    // The items are bulk jobs: the dispatcher publishes them.
    let parent = match started {
        BatchStart::Accepted(parent) => parent,
        BatchStart::Unknown(ids) => {
            return Err(ApiError::Missing {
                message: format!(
                    "{} upload(s) not found in this bucket: {}",
                    ids.len(),
                    ids.join(", ")
                ),
                details: json!({ "upload_ids": ids }),
            })
        }
    };
    Ok(Json(BatchConfirmResponse {
        task_id: parent.id.clone().into(),
        status: parent.status.to_string(),
        confirmations_count: items.len(),
        task: TaskResponse::new(&parent),
        message: format!(
            "{} confirmation(s) accepted; poll GET /v1/tasks/{}",
            items.len(),
            parent.id
        ),
    }))
}
