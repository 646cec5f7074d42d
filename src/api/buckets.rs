//! `POST /v1/buckets`, `GET /v1/buckets/{bucket_identifier}`.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ErrorEnvelope};
use super::extract::{ApiPath, BodySchema, OptionalJson, StrictJson, Tenant};
use super::pages::Page;
use super::AppState;
use crate::domain::{new_id, BlobType, IdKind};
use crate::store::{tenancy, BucketRow};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateBucket {
    bucket_name: String,
    description: Option<String>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    schema: Option<Value>,
}

impl BodySchema for CreateBucket {
    const FIELDS: &'static [&'static str] = &["bucket_name", "description", "metadata", "schema"];
}

pub fn bucket_json(b: &BucketRow) -> Value {
    json!({
        "bucket_id": b.id,
        "bucket_name": b.name,
        "description": b.description,
        "metadata": b.metadata,
        "schema": b.schema,
        "created_at": b.created_at,
        "updated_at": b.updated_at,
    })
}

fn check_bucket_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "value_error",
            &["body", "bucket_name"],
            "bucket_name must be 1 to 255 characters of letters, digits, '-', '_' or '.'",
        ))
    }
}

/// A schema is `{properties: {NAME: {type: TYPE}}}`.
fn check_schema(schema: &Value) -> Result<(), ApiError> {
    let bad = |message: &str| ApiError::invalid("value_error", &["body", "schema"], message);
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("schema must be an object with a 'properties' object"))?;
    for (name, property) in properties {
        crate::domain::BlobProperty::parse(name).map_err(|e| bad(&e.0))?;
        let kind = property
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(&format!("property '{name}' needs a 'type'")))?;
        BlobType::parse(kind).map_err(|e| bad(&format!("property '{name}': {e}")))?;
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/buckets", tag = "buckets", params(("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")), request_body = CreateBucket, responses((status = 200, description = "The bucket", body = Object), (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope), (status = 404, description = "Unknown namespace, bucket or resource", body = ErrorEnvelope), (status = 409, description = "Name taken", body = ErrorEnvelope), (status = 422, description = "Invalid body or query", body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    tenant: Tenant,
    StrictJson(body): StrictJson<CreateBucket>,
) -> Result<Json<Value>, ApiError> {
    check_bucket_name(&body.bucket_name)?;
    if let Some(schema) = &body.schema {
        check_schema(schema)?;
    }
    let metadata = Value::Object(body.metadata.unwrap_or_default());
    let bucket = tenancy::insert_bucket(
        &state.pool,
        &new_id(IdKind::Bucket),
        &tenant.namespace.id,
        &body.bucket_name,
        body.description.as_deref(),
        &metadata,
        body.schema.as_ref(),
    )
    .await?
    .ok_or_else(|| {
        ApiError::AlreadyExists(format!(
            "a bucket named '{}' already exists in this namespace",
            body.bucket_name
        ))
    })?;
    Ok(Json(bucket_json(&bucket)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ListBuckets {
    search: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

impl BodySchema for ListBuckets {
    const FIELDS: &'static [&'static str] = &["search", "limit", "offset"];
}

/// `POST /v1/buckets/list`: the namespace's buckets, newest first; `search` matches names.
#[utoipa::path(post, path = "/v1/buckets/list", tag = "buckets", params(("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")), request_body(content = Option<ListBuckets>), responses((status = 200, description = "{results, pagination}", body = Object), (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope), (status = 404, description = "Unknown namespace, bucket or resource", body = ErrorEnvelope), (status = 422, description = "Invalid body or query", body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    OptionalJson(body): OptionalJson<ListBuckets>,
) -> Result<Json<Value>, ApiError> {
    let page = Page::parse(body.limit, body.offset)?;
    let search = body.search.filter(|s| !s.is_empty());
    let (rows, total) = tenancy::list_buckets(
        &state.pool,
        &tenant.namespace.id,
        search.as_deref(),
        page.limit,
        page.offset,
    )
    .await?;
    Ok(Json(json!({
        "results": rows.iter().map(bucket_json).collect::<Vec<_>>(),
        "pagination": page.json(total),
    })))
}

/// The bucket a path names, in the caller's namespace.
pub async fn resolve(
    state: &AppState,
    tenant: &Tenant,
    ident: &str,
) -> Result<BucketRow, ApiError> {
    tenancy::find_bucket(&state.pool, &tenant.namespace.id, ident)
        .await?
        .ok_or_else(|| ApiError::not_found("bucket"))
}

#[utoipa::path(get, path = "/v1/buckets/{bucket_identifier}", tag = "buckets", params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")), responses((status = 200, description = "The bucket", body = Object), (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope), (status = 404, description = "Unknown namespace, bucket or resource", body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath(ident): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(bucket_json(&resolve(&state, &tenant, &ident).await?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        for ok in ["photos", "a", "my-bucket_1.x"] {
            assert!(check_bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", ".hidden", "sp ace", &"x".repeat(256)] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schemas() {
        assert!(check_schema(&json!({"properties": {"image": {"type": "IMAGE"}}})).is_ok());
        assert!(check_schema(&json!({"properties": {}})).is_ok());
        assert!(check_schema(&json!({})).is_err());
        assert!(check_schema(&json!({"properties": {"bad-name": {"type": "IMAGE"}}})).is_err());
        assert!(check_schema(&json!({"properties": {"x": {"type": "image"}}})).is_err());
        assert!(check_schema(&json!({"properties": {"x": {}}})).is_err());
    }
}
