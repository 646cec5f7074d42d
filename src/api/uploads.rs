//! `POST /v1/buckets/{b}/uploads`, `GET /v1/buckets/{b}/uploads/{upload_id}`.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::buckets;
use super::error::{ApiError, ErrorEnvelope};
use super::extract::{
    parse_value, ApiPath, BodySchema, OptionalJson, StrictJson, StrictQuery, Tenant,
};
use super::pages::Page;
use super::AppState;
use crate::domain::{
    blob_type_for, new_id, BlobProperty, BlobType, ContentHash, ContentType, Filename, IdKind,
    InvalidValue, UploadKeys, UploadStatus,
};
use crate::store::uploads::{self, NewUpload, UploadCancel, UploadFilter, UploadSort};
use crate::store::{BucketRow, NamespaceRow, UploadRow};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateUpload {
    filename: String,
    content_type: String,
    file_size_bytes: Option<i64>,
    presigned_url_expiration: Option<i64>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Map<String, Value>>,
    create_object_on_confirm: Option<bool>,
    #[schema(value_type = Option<Object>)]
    object_metadata: Option<serde_json::Map<String, Value>>,
    blob_property: Option<String>,
    blob_type: Option<String>,
    file_hash: Option<String>,
    skip_duplicates: Option<bool>,
}

impl BodySchema for CreateUpload {
    const FIELDS: &'static [&'static str] = &[
        "filename",
        "content_type",
        "file_size_bytes",
        "presigned_url_expiration",
        "metadata",
        "create_object_on_confirm",
        "object_metadata",
        "blob_property",
        "blob_type",
        "file_hash",
        "skip_duplicates",
    ];
}

/// The wire form of an upload; the PUT URL only on creation.
pub fn upload_json(u: &UploadRow, presigned_url: Option<&str>) -> Value {
    json!({
        "upload_id": u.id,
        "bucket_id": u.bucket_id,
        "filename": u.filename,
        "content_type": u.content_type,
        "file_size_bytes": u.file_size_bytes,
        "presigned_url": presigned_url,
        "presigned_url_expiration": u.presigned_url_expiration,
        "s3_key": u.s3_key,
        "status": u.status,
        "metadata": u.metadata,
        "create_object_on_confirm": u.create_object_on_confirm,
        "object_metadata": u.object_metadata,
        "blob_property": u.blob_property,
        "blob_type": u.blob_type,
        "file_hash": u.file_hash,
        "skip_duplicates": u.skip_duplicates,
        "is_duplicate": u.is_duplicate,
        "duplicate_of_upload_id": u.duplicate_of_upload_id,
        "message": u.message,
        "created_at": u.created_at,
        "expires_at": u.expires_at,
        "verified_at": u.verified_at,
        "completed_at": u.completed_at,
        "etag": u.etag,
        "object_id": u.object_id,
        "task_id": u.task_id,
        "error": u.error,
    })
}

fn field_error(field: &str) -> impl Fn(InvalidValue) -> ApiError + '_ {
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

/// Refuses a size past the namespace's per-file limit or its remaining storage.
pub fn check_quota(namespace: &NamespaceRow, size: i64) -> Result<(), ApiError> {
    if let Some(limit) = namespace.max_file_size_bytes {
        if size > limit {
            return Err(ApiError::QuotaExceeded {
                message: format!(
                    "file of {size} bytes exceeds the per-file limit of {limit} bytes"
                ),
                resource: "file_size_bytes".into(),
                current: size,
                limit,
            });
        }
    }
    if let Some(limit) = namespace.storage_quota_bytes {
        let current = namespace.storage_used_bytes;
        if current.saturating_add(size) > limit {
            return Err(ApiError::QuotaExceeded {
                message: format!(
                    "storing {size} more bytes would exceed the storage quota ({current} of {limit} bytes used)"
                ),
                resource: "storage_bytes".into(),
                current,
                limit,
            });
        }
    }
    Ok(())
}

/// The blob property and type, checked against the bucket's schema when it has one.
fn blob_slot(
    bucket: &BucketRow,
    filename: &Filename,
    content_type: &ContentType,
    property: Option<&str>,
    kind: Option<&str>,
) -> Result<(BlobProperty, BlobType), ApiError> {
    let kind = match kind {
        Some(k) => BlobType::parse(k).map_err(field_error("blob_type"))?,
        None => blob_type_for(content_type),
    };
    let given = property
        .map(BlobProperty::parse)
        .transpose()
        .map_err(field_error("blob_property"))?;
    let Some(properties) = bucket
        .schema
        .as_ref()
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .filter(|p| !p.is_empty())
    else {
        return Ok((
            given.unwrap_or_else(|| BlobProperty::from_stem(filename.stem())),
            kind,
        ));
    };
    let type_of = |name: &str| {
        properties
            .get(name)
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
    };
    let property =
        match given {
            Some(p) => p,
            // Without a name, the schema's only property compatible with the type is meant.
            None => {
                let fits: Vec<&String> = properties
                    .keys()
                    .filter(|name| type_of(name) == Some(kind.as_str()))
                    .collect();
                match fits.as_slice() {
                    [one] => BlobProperty::parse(one).map_err(field_error("blob_property"))?,
                    _ => return Err(ApiError::invalid(
                        "value_error",
                        &["body", "blob_property"],
                        "the bucket has a schema: blob_property must name one of its properties",
                    )),
                }
            }
        };
    match type_of(property.as_str()) {
        None => Err(ApiError::invalid(
            "value_error",
            &["body", "blob_property"],
            format!(
                "'{}' is not a property of the bucket's schema (properties: {})",
                property.as_str(),
                properties.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )),
        Some(expected) if expected != kind.as_str() => Err(ApiError::invalid(
            "value_error",
            &["body", "content_type"],
            format!(
                "property '{}' holds {expected}, not {}",
                property.as_str(),
                kind.as_str()
            ),
        )),
        Some(_) => Ok((property, kind)),
    }
}

/// Timestamps as PostgreSQL stores them (microseconds), so what we answer is what we keep.
fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// What creating one upload comes to, once validated.
enum Prepared {
    /// The content is already in the bucket: the original, answered as a duplicate.
    Duplicate(Value),
    /// A new upload to store, with its PUT URL.
    New(Box<NewUpload>, String),
}

/// Validates one creation request and presigns its URL; stores nothing.
async fn prepare(
    state: &AppState,
    tenant: &Tenant,
    bucket: &BucketRow,
    body: CreateUpload,
) -> Result<Prepared, ApiError> {
    let filename = Filename::parse(&body.filename).map_err(field_error("filename"))?;
    // A key ending in the dot segment `.` is rewritten by every URL parser, so the
    // presigned URL would address another key.
    if filename.as_str() == "." {
        return Err(ApiError::invalid(
            "value_error",
            &["body", "filename"],
            "filename must not be '.'",
        ));
    }
    let content_type =
        ContentType::parse(&body.content_type).map_err(field_error("content_type"))?;
    check_declared_size(body.file_size_bytes)?;
    let expiration = body.presigned_url_expiration.unwrap_or(3600);
    if !(60..=86_400).contains(&expiration) {
        return Err(ApiError::invalid(
            "value_error",
            &["body", "presigned_url_expiration"],
            "presigned_url_expiration must be between 60 and 86400 seconds",
        ));
    }
    let file_hash = body
        .file_hash
        .as_deref()
        .map(ContentHash::parse)
        .transpose()
        .map_err(field_error("file_hash"))?;
    let (blob_property, blob_type) = blob_slot(
        bucket,
        &filename,
        &content_type,
        body.blob_property.as_deref(),
        body.blob_type.as_deref(),
    )?;
    if let Some(size) = body.file_size_bytes {
        check_quota(&tenant.namespace, size)?;
    }
    let skip_duplicates = body.skip_duplicates.unwrap_or(true);
    if let (Some(hash), true) = (&file_hash, skip_duplicates) {
        if let Some(original) =
            uploads::find_original(&state.pool, &bucket.id, hash.as_str()).await?
        {
            let mut answer = upload_json(&original, None);
            answer["is_duplicate"] = json!(true);
            answer["duplicate_of_upload_id"] = json!(original.id);
            answer["message"] = json!(format!(
                "Content already uploaded as {}; nothing to upload",
                original.id
            ));
            return Ok(Prepared::Duplicate(answer));
        }
    }

    let id = new_id(IdKind::Upload);
    let s3_key = UploadKeys::new(&tenant.namespace.id, &bucket.id, &id, &filename)
        .map_err(field_error("filename"))?
        .staging;
    let created_at = now_micros();
    let expires_at = created_at + chrono::Duration::seconds(expiration);
    let presigned_url = state
        .blob
        .presign_put(
            &s3_key,
            content_type.as_str(),
            created_at.into(),
            Duration::from_secs(expiration.unsigned_abs()),
        )
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let upload = NewUpload {
        id,
        bucket_id: bucket.id.clone(),
        namespace_id: tenant.namespace.id.clone(),
        filename: filename.as_str().to_owned(),
        content_type: content_type.as_str().to_owned(),
        file_size_bytes: body.file_size_bytes,
        presigned_url_expiration: i32::try_from(expiration).unwrap_or(3600),
        s3_key,
        metadata: Value::Object(body.metadata.unwrap_or_default()),
        create_object_on_confirm: body.create_object_on_confirm.unwrap_or(true),
        object_metadata: body.object_metadata.map(Value::Object),
        blob_property: blob_property.as_str().to_owned(),
        blob_type: blob_type.as_str().to_owned(),
        file_hash: file_hash.map(|h| h.as_str().to_owned()),
        skip_duplicates,
        created_at,
        expires_at,
    };
    Ok(Prepared::New(Box::new(upload), presigned_url))
}

/// The answer for a created upload: with its PUT URL and what to do with it.
fn created_json(upload: &UploadRow, presigned_url: &str) -> Value {
    let mut answer = upload_json(upload, Some(presigned_url));
    answer["message"] = json!(format!(
        "PUT the file to presigned_url with Content-Type: {} before {}, then confirm",
        upload.content_type,
        upload.expires_at.to_rfc3339()
    ));
    answer
}

#[utoipa::path(post, path = "/v1/buckets/{bucket_identifier}/uploads", tag = "uploads", params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")), request_body = CreateUpload, responses((status = 201, description = "UploadResponse with its presigned_url", body = Object), (status = 200, description = "Duplicate: the existing upload, is_duplicate true", body = Object), (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope), (status = 403, description = "Quota exceeded", body = ErrorEnvelope), (status = 404, description = "Unknown namespace, bucket or resource", body = ErrorEnvelope), (status = 422, description = "Invalid body or query", body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath(bucket_ident): ApiPath<String>,
    StrictJson(body): StrictJson<CreateUpload>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let bucket = buckets::resolve(&state, &tenant, &bucket_ident).await?;
    match prepare(&state, &tenant, &bucket, body).await? {
        Prepared::Duplicate(answer) => Ok((StatusCode::OK, Json(answer))),
        Prepared::New(new, url) => {
            let upload = uploads::insert(&state.pool, &new).await?;
            Ok((StatusCode::CREATED, Json(created_json(&upload, &url))))
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct BatchCreate {
    /// 1 to 100 uploads, each as `POST .../uploads` takes it.
    #[schema(value_type = Vec<CreateUpload>)]
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

/// `POST /v1/buckets/{b}/uploads/batch`: all items are valid and created, or none is.
#[utoipa::path(post, path = "/v1/buckets/{bucket_identifier}/uploads/batch", tag = "uploads", params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")), request_body = BatchCreate, responses((status = 200, description = "{uploads: [UploadResponse in request order], total}", body = Object), (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope), (status = 403, description = "Quota exceeded", body = ErrorEnvelope), (status = 404, description = "Unknown namespace, bucket or resource", body = ErrorEnvelope), (status = 422, description = "Invalid body or query", body = ErrorEnvelope)))]
pub async fn create_batch(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath(bucket_ident): ApiPath<String>,
    StrictJson(body): StrictJson<BatchCreate>,
) -> Result<Json<Value>, ApiError> {
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
    let new: Vec<NewUpload> = prepared
        .iter()
        .filter_map(|p| match p {
            Prepared::New(n, _) => Some((**n).clone()),
            Prepared::Duplicate(_) => None,
        })
        .collect();
    let mut stored = uploads::insert_many(&state.pool, &new).await?.into_iter();
    let mut answers = Vec::with_capacity(prepared.len());
    for p in prepared {
        answers.push(match p {
            Prepared::Duplicate(answer) => answer,
            Prepared::New(_, url) => {
                let row = stored.next().ok_or_else(|| {
                    ApiError::Internal(anyhow::anyhow!("a created upload was not returned"))
                })?;
                created_json(&row, &url)
            }
        });
    }
    Ok(Json(json!({ "total": answers.len(), "uploads": answers })))
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

#[utoipa::path(get, path = "/v1/buckets/{bucket_identifier}/uploads/{upload_id}", tag = "uploads", params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("upload_id" = String, Path), ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")), responses((status = 200, description = "UploadResponse (never the PUT URL again)", body = Object), (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope), (status = 404, description = "Unknown namespace, bucket or resource", body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath((bucket_ident, upload_id)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let bucket = buckets::resolve(&state, &tenant, &bucket_ident).await?;
    Ok(Json(upload_json(
        &resolve(&state, &bucket, &upload_id).await?,
        None,
    )))
}

/// `filters.status`: one status or several.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UploadFilters {
    status: Option<OneOrMany>,
    is_duplicate: Option<bool>,
}

impl BodySchema for UploadFilters {
    const FIELDS: &'static [&'static str] = &["status", "is_duplicate"];
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SortSpec {
    field: String,
    direction: Option<String>,
}

impl BodySchema for SortSpec {
    const FIELDS: &'static [&'static str] = &["field", "direction"];
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ListUploads {
    #[schema(value_type = Option<UploadFilters>)]
    filters: Option<Value>,
    search: Option<String>,
    #[schema(value_type = Option<SortSpec>)]
    sort: Option<Value>,
    limit: Option<i64>,
    offset: Option<i64>,
}

impl BodySchema for ListUploads {
    const FIELDS: &'static [&'static str] = &["filters", "search", "sort", "limit", "offset"];
}

fn parse_filters(filters: Option<Value>) -> Result<UploadFilter, ApiError> {
    let Some(filters) = filters.filter(|f| !f.is_null()) else {
        return Ok(UploadFilter::default());
    };
    let f: UploadFilters = parse_value(filters).map_err(|e| e.nested(&["filters"]))?;
    let statuses = match f.status {
        None => None,
        Some(OneOrMany::One(s)) => Some(vec![s]),
        Some(OneOrMany::Many(v)) => Some(v),
    };
    if let Some(statuses) = &statuses {
        if let Some(bad) = statuses.iter().find(|s| UploadStatus::parse(s).is_none()) {
            return Err(ApiError::invalid(
                "enum",
                &["body", "filters", "status"],
                format!(
                    "'{bad}' is not an upload status (PENDING, PROCESSING, COMPLETED, FAILED, CANCELED)"
                ),
            ));
        }
    }
    Ok(UploadFilter {
        statuses,
        is_duplicate: f.is_duplicate,
        search: None,
    })
}

fn parse_sort(sort: Option<Value>) -> Result<(UploadSort, bool), ApiError> {
    let Some(sort) = sort.filter(|s| !s.is_null()) else {
        return Ok((UploadSort::CreatedAt, true));
    };
    let spec: SortSpec = parse_value(sort).map_err(|e| e.nested(&["sort"]))?;
    let field = UploadSort::parse(&spec.field).ok_or_else(|| {
        ApiError::invalid(
            "enum",
            &["body", "sort", "field"],
            format!(
                "uploads can be sorted by {}, not '{}'",
                UploadSort::NAMES.join(", "),
                spec.field
            ),
        )
    })?;
    let descending = match spec.direction.as_deref().unwrap_or("desc") {
        "desc" => true,
        "asc" => false,
        other => {
            return Err(ApiError::invalid(
                "enum",
                &["body", "sort", "direction"],
                format!("direction is 'asc' or 'desc', not '{other}'"),
            ))
        }
    };
    Ok((field, descending))
}

/// `POST /v1/buckets/{b}/uploads/list`: a page of uploads, with counts per status (the
/// list's other filters applied) in `stats`.
#[utoipa::path(post, path = "/v1/buckets/{bucket_identifier}/uploads/list", tag = "uploads", params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")), request_body(content = Option<ListUploads>), responses((status = 200, description = "{results, pagination, stats}", body = Object), (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope), (status = 404, description = "Unknown namespace, bucket or resource", body = ErrorEnvelope), (status = 422, description = "Invalid body or query", body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath(bucket_ident): ApiPath<String>,
    OptionalJson(body): OptionalJson<ListUploads>,
) -> Result<Json<Value>, ApiError> {
    let bucket = buckets::resolve(&state, &tenant, &bucket_ident).await?;
    let page = Page::parse(body.limit, body.offset)?;
    let mut filter = parse_filters(body.filters)?;
    filter.search = body.search.filter(|s| !s.is_empty());
    if filter.search.as_ref().is_some_and(|s| s.len() > 255) {
        return Err(ApiError::invalid(
            "string_too_long",
            &["body", "search"],
            "search is at most 255 characters",
        ));
    }
    let (sort, descending) = parse_sort(body.sort)?;
    let rows = uploads::list(
        &state.pool,
        &bucket.id,
        &filter,
        sort,
        descending,
        page.limit,
        page.offset,
    )
    .await?;
    let facets = uploads::count_by_status(&state.pool, &bucket.id, &filter).await?;
    let selected = |status: &str| {
        filter
            .statuses
            .as_ref()
            .is_none_or(|wanted| wanted.iter().any(|w| w == status))
    };
    let total: i64 = facets
        .iter()
        .filter(|(status, _, _)| selected(status))
        .map(|(_, n, _)| n)
        .sum();
    let mut by_status = serde_json::Map::new();
    for status in [
        UploadStatus::Pending,
        UploadStatus::Processing,
        UploadStatus::Completed,
        UploadStatus::Failed,
        UploadStatus::Canceled,
    ] {
        let n = facets
            .iter()
            .find(|(s, _, _)| s == status.as_str())
            .map_or(0, |(_, n, _)| *n);
        by_status.insert(status.as_str().to_owned(), json!(n));
    }
    let completed_bytes = facets
        .iter()
        .find(|(s, _, _)| s == UploadStatus::Completed.as_str())
        .map_or(0, |(_, _, bytes)| *bytes);
    Ok(Json(json!({
        "results": rows.iter().map(|u| upload_json(u, None)).collect::<Vec<_>>(),
        "pagination": page.json(total),
        "stats": {
            "total": facets.iter().map(|(_, n, _)| n).sum::<i64>(),
            "by_status": by_status,
            "completed_bytes": completed_bytes,
        },
    })))
}

#[derive(Debug, Deserialize)]
pub struct CancelQuery {
    #[serde(default)]
    delete_s3_object: bool,
}

/// `DELETE /v1/buckets/{b}/uploads/{upload_id}`: `PENDING` or `FAILED` → `CANCELED`;
/// repeating it changes nothing. With `delete_s3_object`, the object goes too.
#[utoipa::path(delete, path = "/v1/buckets/{bucket_identifier}/uploads/{upload_id}", tag = "uploads", params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("upload_id" = String, Path), ("delete_s3_object" = Option<bool>, Query, description = "Also delete the S3 object"), ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")), responses((status = 204, description = "Canceled (or already)"), (status = 400, description = "Request refused in the current state", body = ErrorEnvelope), (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope), (status = 404, description = "Unknown namespace, bucket or resource", body = ErrorEnvelope), (status = 422, description = "Invalid body or query", body = ErrorEnvelope), (status = 503, description = "Dependency unavailable; retry", body = ErrorEnvelope)))]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(max: Option<i64>, quota: Option<i64>, used: i64) -> NamespaceRow {
        NamespaceRow {
            id: "ns_x".into(),
            organization_id: "org_x".into(),
            name: "n".into(),
            max_file_size_bytes: max,
            storage_quota_bytes: quota,
            storage_used_bytes: used,
        }
    }

    #[test]
    fn quota_decisions() {
        let table = [
            (namespace(None, None, 0), 1_000_000, None),
            (namespace(Some(50), None, 0), 50, None),
            (namespace(Some(50), None, 0), 51, Some("file_size_bytes")),
            (namespace(None, Some(100), 60), 40, None),
            (namespace(None, Some(100), 60), 41, Some("storage_bytes")),
            (namespace(None, Some(10), 0), 100, Some("storage_bytes")),
        ];
        for (ns, size, want) in table {
            let got = match check_quota(&ns, size) {
                Ok(()) => None,
                Err(ApiError::QuotaExceeded { resource, .. }) => Some(resource),
                Err(other) => panic!("{other:?}"),
            };
            assert_eq!(got.as_deref(), want, "{size}");
        }
    }
}
