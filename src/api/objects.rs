//! `GET /v1/buckets/{b}/objects/{object_id}`.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiError, ErrorEnvelope};
use super::extract::{ApiPath, Tenant};
use super::{buckets, AppState};
use crate::store::{objects, ObjectRow};

pub fn object_json(o: &ObjectRow) -> Value {
    json!({
        "object_id": o.id,
        "bucket_id": o.bucket_id,
        "blobs": o.blobs,
        "metadata": o.metadata,
        "status": o.status,
        "created_at": o.created_at,
        "updated_at": o.updated_at,
    })
}

#[utoipa::path(get, path = "/v1/buckets/{bucket_identifier}/objects/{object_id}", tag = "objects", params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("object_id" = String, Path), ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")), responses((status = 200, description = "The object and its blobs", body = Object), (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope), (status = 404, description = "Unknown namespace, bucket or resource", body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath((bucket_ident, object_id)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let bucket = buckets::resolve(&state, &tenant, &bucket_ident).await?;
    let object = objects::find_in_bucket(&state.pool, &bucket.id, &object_id)
        .await?
        .ok_or_else(|| ApiError::not_found("object"))?;
    Ok(Json(object_json(&object)))
}
