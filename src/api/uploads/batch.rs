//! `POST /v1/buckets/{b}/uploads/batch`: many uploads created at once, all or none.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::super::buckets;
use super::super::error::{ApiError, BodyRefusals, ErrorEnvelope, NamespaceRefusals};
use super::super::extract::{parse_value, ApiPath, BodySchema, StrictJson, Tenant};
use super::super::AppState;
use super::access::start_multiparts;
use super::creation::{created_answer, prepare, store_new, CreateUpload, Prepared};
use super::UploadResponse;
use crate::store::uploads::NewUpload;

/// The SDK's `BatchUploadRequest`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchCreate {
    /// 1 to 100 uploads, each as `POST .../uploads` takes it.
    #[schema(value_type = Vec<CreateUpload>, min_items = 1, max_items = 100)]
    uploads: Vec<Value>,
    #[schema(value_type = Option<Object>)]
    shared_metadata: Option<serde_json::Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    shared_object_metadata: Option<serde_json::Map<String, Value>>,
}

impl BodySchema for BatchCreate {
    const FIELDS: &'static [&'static str] =
        &["uploads", "shared_metadata", "shared_object_metadata"];
}

/// Most items a batch route takes.
pub const MAX_BATCH_ITEMS: usize = 100;

/// Refuses an empty list or one longer than [`MAX_BATCH_ITEMS`].
pub fn check_batch_len(field: &str, len: usize) -> Result<(), ApiError> {
    if (1..=MAX_BATCH_ITEMS).contains(&len) {
        return Ok(());
    }
    Err(ApiError::invalid(
        if len == 0 { "too_short" } else { "too_long" },
        &["body", field],
        format!("{field} must hold 1 to {MAX_BATCH_ITEMS} items, not {len}"),
    ))
}

/// `shared` under `own`: the item's keys win.
fn merged(
    shared: Option<&serde_json::Map<String, Value>>,
    own: Option<serde_json::Map<String, Value>>,
) -> Option<serde_json::Map<String, Value>> {
    match (shared, own) {
        (None, own) => own,
        (Some(shared), None) => Some(shared.clone()),
        (Some(shared), Some(own)) => {
            let mut all = shared.clone();
            all.extend(own);
            Some(all)
        }
    }
}

/// The SDK's `BatchUploadResponse`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchUploadResponse {
    pub uploads: Vec<UploadResponse>,
    pub total: usize,
}

/// `POST /v1/buckets/{b}/uploads/batch`: all items are valid and created, or none is.
#[utoipa::path(post, path = "/v1/buckets/{bucket_identifier}/uploads/batch", tag = "uploads", operation_id = "create_uploads_batch",
    params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")),
    request_body = BatchCreate,
    responses((status = 200, description = "The uploads in request order", body = BatchUploadResponse),
        (status = 403, description = "Quota exceeded", body = ErrorEnvelope),
        NamespaceRefusals, BodyRefusals))]
pub async fn create_batch(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath(bucket_ident): ApiPath<String>,
    StrictJson(body): StrictJson<BatchCreate>,
) -> Result<Json<BatchUploadResponse>, ApiError> {
    let bucket = buckets::resolve(&state, &tenant, &bucket_ident).await?;
    check_batch_len("uploads", body.uploads.len())?;
    let mut prepared = Vec::with_capacity(body.uploads.len());
    for (index, item) in body.uploads.into_iter().enumerate() {
        let mut item: CreateUpload = parse_value(item).map_err(|e| e.at_item("uploads", index))?;
        item.metadata = merged(body.shared_metadata.as_ref(), item.metadata);
        item.object_metadata = merged(body.shared_object_metadata.as_ref(), item.object_metadata);
        prepared.push(
            prepare(&state, &tenant, &bucket, item)
                .await
                .map_err(|e| e.at_item("uploads", index))?,
        );
    }
    let mut new: Vec<NewUpload> = prepared
        .iter()
        .filter_map(|p| match p {
            Prepared::New(n, _) => Some((**n).clone()),
            Prepared::Duplicate(_) => None,
        })
        .collect();
    start_multiparts(&state, &mut new).await?;
    let mut stored = store_new(&state, &new).await?.into_iter();
    let mut answers = Vec::with_capacity(prepared.len());
    for p in prepared {
        answers.push(match p {
            Prepared::Duplicate(answer) => *answer,
            Prepared::New(_, url) => {
                let row = stored.next().ok_or_else(|| {
                    ApiError::Internal(anyhow::anyhow!("a created upload was not returned"))
                })?;
                created_answer(&row, url)
            }
        });
    }
    Ok(Json(BatchUploadResponse {
        total: answers.len(),
        uploads: answers,
    }))
}
