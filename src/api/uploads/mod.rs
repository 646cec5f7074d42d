//! Uploads: one file each, from its presigned URL to its object. This file answers
//! `GET` and `DELETE /v1/buckets/{b}/uploads/{upload_id}`; creating and listing live beside it.

mod access;
pub mod batch;
pub mod creation;
pub mod listing;

pub use batch::check_batch_len;
pub use creation::MultipartPlan;

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::buckets;
use super::error::{ApiError, ErrorEnvelope, NamespaceRefusals};
use super::extract::{ApiPath, StrictQuery, Tenant};
use super::AppState;
use crate::blob::PresignedPut;
use crate::domain::{InvalidValue, UploadKeys};
use crate::store::uploads::{self, UploadCancel};
use crate::store::{BucketRow, UploadRow};

/// An upload, as the SDK's `UploadResponse` parses it; the PUT URL only on creation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadResponse {
    pub upload_id: String,
    pub bucket_id: String,
    pub filename: String,
    pub content_type: String,
    pub file_size_bytes: Option<i64>,
    pub presigned_url: Option<String>,
    /// Every header the PUT to `presigned_url` must send, with its value (creation only).
    pub upload_headers: Option<BTreeMap<String, String>>,
    pub presigned_url_expiration: i32,
    pub s3_key: String,
    /// `PENDING`, `PROCESSING`, `COMPLETED`, `FAILED` or `CANCELED`.
    pub status: String,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub create_object_on_confirm: bool,
    #[schema(value_type = Option<Object>)]
    pub object_metadata: Option<Value>,
    pub blob_property: String,
    pub blob_type: String,
    pub file_hash: Option<String>,
    pub skip_duplicates: bool,
    /// The PUT URL signs `file_hash`: the store checked the bytes.
    pub enforce_file_hash: bool,
    /// For an upload in parts: how it is cut. Its part URLs come from
    /// `POST .../uploads/{upload_id}/parts`; there is no `presigned_url`.
    pub multipart: Option<MultipartPlan>,
    pub is_duplicate: bool,
    pub duplicate_of_upload_id: Option<String>,
    /// Always false: buckets have no unique keys here.
    pub skipped_unique_key: bool,
    /// On a duplicate, the original's object.
    pub existing_object_id: Option<String>,
    pub message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub verified_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub etag: Option<String>,
    pub object_id: Option<String>,
    pub task_id: Option<String>,
    pub batch_id: Option<String>,
    /// Why the upload failed, when it did.
    pub error: Option<String>,
}

impl UploadResponse {
    pub fn new(u: &UploadRow, put: Option<PresignedPut>) -> Self {
        let (presigned_url, upload_headers) = match put {
            Some(p) => (Some(p.url), Some(p.headers)),
            None => (None, None),
        };
        UploadResponse {
            upload_id: u.id.clone().into(),
            bucket_id: u.bucket_id.clone().into(),
            filename: u.filename.clone(),
            content_type: u.content_type.clone(),
            file_size_bytes: u.file_size_bytes,
            presigned_url,
            upload_headers,
            presigned_url_expiration: u.presigned_url_expiration,
            s3_key: u.s3_key.clone(),
            status: u.status.to_string(),
            metadata: u.metadata.clone(),
            create_object_on_confirm: u.create_object_on_confirm,
            object_metadata: u.object_metadata.clone(),
            blob_property: u.blob_property.clone(),
            blob_type: u.blob_type.clone(),
            file_hash: u.file_hash.clone(),
            skip_duplicates: u.skip_duplicates,
            enforce_file_hash: u.enforce_file_hash,
            multipart: MultipartPlan::of(u),
            is_duplicate: u.is_duplicate,
            duplicate_of_upload_id: u.duplicate_of_upload_id.clone().map(String::from),
            skipped_unique_key: false,
            existing_object_id: None,
            message: u.message.clone(),
            created_at: u.created_at,
            expires_at: u.expires_at,
            verified_at: u.verified_at,
            completed_at: u.completed_at,
            etag: u.etag.clone(),
            object_id: u.object_id.clone().map(String::from),
            task_id: u.task_id.clone().map(String::from),
            batch_id: u.batch_id.clone().map(String::from),
            error: u.error.clone(),
        }
    }
}

/// Turns a rejected value into a validation issue at `body.{field}`.
pub(super) fn field_error(field: &str) -> impl Fn(InvalidValue) -> ApiError + '_ {
    move |e| ApiError::invalid("value_error", &["body", field], e.0)
}

/// A size a client declares is at least one byte.
pub fn check_declared_size(size: Option<i64>) -> Result<(), ApiError> {
    match size {
        Some(s) if s < 1 => Err(ApiError::invalid(
            "greater_than_equal",
            &["body", "file_size_bytes"],
            "file_size_bytes must be at least 1",
        )),
        _ => Ok(()),
    }
}

/// The upload a path names, in the bucket.
pub async fn resolve(
    state: &AppState,
    bucket: &BucketRow,
    upload_id: &str,
) -> Result<UploadRow, ApiError> {
    uploads::find_in_bucket(&state.pool, &bucket.id, upload_id)
        .await?
        .ok_or_else(|| ApiError::not_found("upload"))
}

/// `GET .../uploads/{upload_id}` query: `return_presigned_urls` is accepted and ignored,
/// since a PUT URL is given once, at creation.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetUploadQuery {
    /// Accepted and ignored.
    #[allow(dead_code)]
    return_presigned_urls: Option<bool>,
}

#[utoipa::path(get, path = "/v1/buckets/{bucket_identifier}/uploads/{upload_id}", tag = "uploads", operation_id = "get_upload",
    params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("upload_id" = String, Path), GetUploadQuery, ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")),
    responses((status = 200, description = "The upload (never its PUT URL again)", body = UploadResponse),
        (status = 422, description = "Invalid query", body = ErrorEnvelope),
        NamespaceRefusals))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath((bucket_ident, upload_id)): ApiPath<(String, String)>,
    StrictQuery(_query): StrictQuery<GetUploadQuery>,
) -> Result<Json<UploadResponse>, ApiError> {
    let bucket = buckets::resolve(&state, &tenant, &bucket_ident).await?;
    Ok(Json(UploadResponse::new(
        &resolve(&state, &bucket, &upload_id).await?,
        None,
    )))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CancelQuery {
    /// Also delete the S3 object.
    #[serde(default)]
    delete_s3_object: bool,
}

/// `DELETE /v1/buckets/{b}/uploads/{upload_id}`: `PENDING` or `FAILED` → `CANCELED`;
/// repeating it changes nothing. A multipart upload's parts go; with `delete_s3_object`,
/// the object goes too.
#[utoipa::path(delete, path = "/v1/buckets/{bucket_identifier}/uploads/{upload_id}", tag = "uploads", operation_id = "delete_upload",
    params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("upload_id" = String, Path), CancelQuery, ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")),
    responses((status = 204, description = "Canceled (or already)"),
        (status = 422, description = "Invalid query", body = ErrorEnvelope),
        (status = 503, description = "Dependency unavailable; retry", body = ErrorEnvelope),
        NamespaceRefusals))]
pub async fn cancel(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath((bucket_ident, upload_id)): ApiPath<(String, String)>,
    StrictQuery(query): StrictQuery<CancelQuery>,
) -> Result<StatusCode, ApiError> {
    let bucket = buckets::resolve(&state, &tenant, &bucket_ident).await?;
    let upload = match uploads::cancel(&state.pool, &bucket.id, &upload_id).await? {
        UploadCancel::Canceled(u) => u,
        UploadCancel::NotFound => return Err(ApiError::not_found("upload")),
        UploadCancel::Refused(u) => {
            return Err(ApiError::BadRequest {
                message: format!(
                    "an upload that is {} cannot be canceled; only PENDING and FAILED uploads can",
                    u.status
                ),
                details: json!({ "status": u.status }),
            })
        }
    };
    // Parts serve no one once the upload is canceled: they go whether or not the object does.
    if let Some(multipart_id) = &upload.multipart_upload_id {
        let key = UploadKeys::of(&upload.s3_key).confirmed;
        state.blob.abort_multipart(&key, multipart_id).await.map_err(|err| {
            tracing::warn!(upload_id = %upload.id, error = %err, "could not abort a canceled upload's multipart upload");
            ApiError::Unavailable(
                "the upload is canceled, but its uploaded parts could not be removed; repeat the request".into(),
            )
        })?;
    }
    if query.delete_s3_object {
        state.blob.delete_upload_objects(&upload.s3_key).await.map_err(|err| {
            tracing::warn!(upload_id = %upload.id, error = %err, "could not delete a canceled upload's object");
            ApiError::Unavailable(
                "the upload is canceled, but its object could not be deleted; repeat the request".into(),
            )
        })?;
    }
    Ok(StatusCode::NO_CONTENT)
}
