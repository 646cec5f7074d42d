//! `GET /v1/buckets/{b}/objects/{object_id}`.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{ApiError, ErrorEnvelope, NamespaceRefusals};
use super::extract::{ApiPath, StrictQuery, Tenant};
use super::{buckets, AppState};
use crate::store::{objects, ObjectRow};

/// `details` of a blob, as the SDK's `BlobDetails` parses it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BlobDetails {
    pub filename: Option<String>,
    pub size_bytes: Option<i64>,
    pub mime_type: Option<String>,
    /// The SHA-256 of the content.
    pub hash: Option<String>,
}

/// A blob, as the SDK's `BlobModel` parses it, and the flat fields it was stored with.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BlobModel {
    pub blob_id: String,
    pub property: String,
    /// A `BucketSchemaFieldType` value.
    #[serde(rename = "type")]
    pub kind: String,
    /// The S3 key of the bytes.
    pub key_prefix: Option<String>,
    pub details: BlobDetails,
    /// Everything stored about the blob.
    #[schema(value_type = Object)]
    pub properties: Value,
    pub s3_key: Option<String>,
    pub content_type: Option<String>,
    pub size_bytes: Option<i64>,
    pub file_hash: Option<String>,
    pub upload_id: Option<String>,
}

impl BlobModel {
    fn new(object_id: &str, index: usize, stored: &Value) -> Self {
        let text = |key: &str| stored.get(key).and_then(Value::as_str).map(str::to_owned);
        let s3_key = text("s3_key");
        let size_bytes = stored.get("size_bytes").and_then(Value::as_i64);
        BlobModel {
            blob_id: format!("{object_id}_{index}"),
            property: text("property").unwrap_or_default(),
            kind: text("type").unwrap_or_else(|| "string".to_owned()),
            key_prefix: s3_key.clone(),
            details: BlobDetails {
                filename: s3_key
                    .as_deref()
                    .and_then(|k| k.rsplit('/').next())
                    .map(str::to_owned),
                size_bytes,
                mime_type: text("content_type"),
                hash: text("file_hash"),
            },
            properties: stored.clone(),
            s3_key,
            content_type: text("content_type"),
            size_bytes,
            file_hash: text("file_hash"),
            upload_id: text("upload_id"),
        }
    }
}

/// An object, as the SDK's `ObjectResponse` parses it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ObjectResponse {
    pub object_id: String,
    pub bucket_id: String,
    pub blobs: Vec<BlobModel>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ObjectResponse {
    pub fn new(o: &ObjectRow) -> Self {
        let blobs = o.blobs.as_array().map(Vec::as_slice).unwrap_or_default();
        ObjectResponse {
            object_id: o.id.clone().into(),
            bucket_id: o.bucket_id.clone().into(),
            blobs: blobs
                .iter()
                .enumerate()
                .map(|(i, b)| BlobModel::new(&o.id, i, b))
                .collect(),
            metadata: o.metadata.clone(),
            status: o.status.to_string(),
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

/// Query of `GET .../objects/{id}`: both accepted and ignored.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ObjectQuery {
    /// Accepted and ignored: blobs are read from S3 with the service's credentials.
    return_presigned_urls: Option<bool>,
    /// Accepted and ignored: objects have no documents here.
    include_document_count: Option<bool>,
}

#[utoipa::path(get, path = "/v1/buckets/{bucket_identifier}/objects/{object_id}", tag = "objects", operation_id = "get_object",
    params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("object_id" = String, Path), ObjectQuery, ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")),
    responses((status = 200, description = "The object and its blobs", body = ObjectResponse),
        (status = 422, description = "Invalid query", body = ErrorEnvelope),
        NamespaceRefusals))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath((bucket_ident, object_id)): ApiPath<(String, String)>,
    StrictQuery(_query): StrictQuery<ObjectQuery>,
) -> Result<Json<ObjectResponse>, ApiError> {
    let bucket = buckets::resolve(&state, &tenant, &bucket_ident).await?;
    let object = objects::find_in_bucket(&state.pool, &bucket.id, &object_id)
        .await?
        .ok_or_else(|| ApiError::not_found("object"))?;
    Ok(Json(ObjectResponse::new(&object)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn blobs_carry_sdk_details() {
        let stored = json!({"property": "image", "type": "image", "s3_key": "ns/b/u/cat.png",
            "content_type": "image/png", "size_bytes": 5, "file_hash": "ab", "upload_id": "upl_1"});
        let blob = BlobModel::new("obj_1", 0, &stored);
        assert_eq!(blob.details.filename.as_deref(), Some("cat.png"));
        assert_eq!(blob.details.size_bytes, Some(5));
        assert_eq!(blob.details.hash.as_deref(), Some("ab"));
        assert_eq!(blob.key_prefix.as_deref(), Some("ns/b/u/cat.png"));
        assert_eq!(blob.kind, "image");
    }
}
