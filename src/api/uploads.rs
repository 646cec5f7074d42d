//! `POST /v1/buckets/{b}/uploads`, `GET /v1/buckets/{b}/uploads/{upload_id}`.

use std::time::Duration;

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::buckets;
use super::error::{ApiError, BodyRefusals, ErrorEnvelope, NamespaceRefusals};
use super::extract::{
    parse_value, ApiPath, BodySchema, OptionalJson, StrictJson, StrictQuery, Tenant,
};
use super::filters::{self, Field};
use super::pages::{Page, PageAsk, PageQuery, Pagination};
use super::AppState;
use crate::blob::PresignedPut;
use crate::domain::{
    blob_type_for, check_quota, new_id, BlobProperty, BlobType, ContentHash, ContentType, Filename,
    IdKind, InvalidValue, PartPlan, UploadKeys, UploadStatus, MAX_SINGLE_PUT_BYTES,
};
use crate::store::filter::{ColumnKind, Condition, TextMatch};
use crate::store::uploads::{self, NewUpload, UploadCancel, UploadSort};
use crate::store::{BucketRow, UploadRow};

/// The SDK's `CreateUploadRequest`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUpload {
    /// No `/`, `\\`, `..` or control characters; its UTF-8 must fit the S3 key.
    #[schema(min_length = 1, max_length = 255)]
    filename: String,
    /// A MIME type `type/subtype`; the PUT must send the same `Content-Type`.
    #[schema(
        min_length = 3,
        max_length = 255,
        pattern = r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$"
    )]
    content_type: String,
    /// At most 5 TiB, the most S3 stores; past 5 GiB the upload is multipart.
    #[schema(minimum = 1, maximum = 5497558138880.0)]
    file_size_bytes: Option<i64>,
    /// Seconds the PUT URL is valid (default 3600).
    #[schema(minimum = 60, maximum = 86400)]
    presigned_url_expiration: Option<i64>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Map<String, Value>>,
    create_object_on_confirm: Option<bool>,
    #[schema(value_type = Option<Object>)]
    object_metadata: Option<serde_json::Map<String, Value>>,
    /// Default: the schema's one property of the blob's type, else the filename's stem.
    #[schema(pattern = r"^[A-Za-z0-9_]+$", max_length = 255)]
    blob_property: Option<String>,
    /// A `BucketSchemaFieldType` (any case); default from the content type.
    blob_type: Option<String>,
    /// The SHA-256 of the content, 64 lower-case hex characters.
    #[schema(pattern = r"^[0-9a-f]{64}$", min_length = 64, max_length = 64)]
    file_hash: Option<String>,
    skip_duplicates: Option<bool>,
    /// Sign `file_hash` into the PUT URL (needs `file_hash`): the store refuses other bytes,
    /// and confirm reads none. The PUT must send every header of `upload_headers`.
    /// Not with a multipart upload, whose parts sign their own `sha256`.
    enforce_file_hash: Option<bool>,
    /// Upload in parts (needs `file_size_bytes`): the answer gives `multipart` instead of a
    /// `presigned_url`, and `POST .../uploads/{upload_id}/parts` signs part URLs. Implied
    /// past 5 GiB, the most one PUT may carry.
    multipart: Option<bool>,
    /// The size of every part but the last (5 MiB to 5 GiB, at most 10,000 parts); implies
    /// `multipart`. Default: 8 MiB, or what keeps the parts within 10,000.
    #[schema(minimum = 5242880.0, maximum = 5368709120.0)]
    part_size_bytes: Option<i64>,
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
        "enforce_file_hash",
        "multipart",
        "part_size_bytes",
    ];
}

/// How a multipart upload is cut: all parts but the last have `part_size_bytes`.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct MultipartPlan {
    pub part_size_bytes: i64,
    pub part_count: i32,
}

impl MultipartPlan {
    pub fn of(u: &UploadRow) -> Option<MultipartPlan> {
        u.part_plan().map(|p| MultipartPlan {
            part_size_bytes: p.part_size_bytes,
            part_count: p.part_count,
        })
    }
}

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
    Duplicate(Box<UploadResponse>),
    /// A new upload to store, and how its bytes are to arrive.
    New(Box<NewUpload>, Access),
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
    let plan = part_plan(&body)?;
    let enforce_file_hash = match (body.enforce_file_hash, plan) {
        (Some(true), Some(_)) => {
            return Err(ApiError::invalid(
                "value_error",
                &["body", "enforce_file_hash"],
                "a multipart upload cannot sign one SHA-256 for the whole object: sign each part's sha256 when its URL is made, and confirm checks file_hash",
            ))
        }
        (Some(asked), _) => asked,
        // The server's default applies where it can: to a single PUT.
        (None, Some(_)) => false,
        (None, None) => state.settings.enforce_declared_hash && file_hash.is_some(),
    };
    if enforce_file_hash && file_hash.is_none() {
        return Err(ApiError::invalid(
            "missing",
            &["body", "file_hash"],
            "enforce_file_hash needs file_hash: the SHA-256 the store is to check",
        ));
    }
    let (blob_property, blob_type) = blob_slot(
        bucket,
        &filename,
        &content_type,
        body.blob_property.as_deref(),
        body.blob_type.as_deref(),
    )?;
    if let Some(size) = body.file_size_bytes {
        check_quota(&tenant.namespace.limits(), size)?;
    }
    let skip_duplicates = body.skip_duplicates.unwrap_or(true);
    if let (Some(hash), true) = (&file_hash, skip_duplicates) {
        if let Some(original) =
            uploads::find_original(&state.pool, &bucket.id, hash.as_str()).await?
        {
            let mut answer = UploadResponse::new(&original, None);
            answer.is_duplicate = true;
            answer.duplicate_of_upload_id = Some(original.id.clone().into());
            answer.existing_object_id = original.object_id.clone().map(String::from);
            answer.message = Some(format!(
                "Content already uploaded as {}; nothing to upload",
                original.id
            ));
            return Ok(Prepared::Duplicate(Box::new(answer)));
        }
    }

    let id = new_id(IdKind::Upload);
    let s3_key = UploadKeys::new(&tenant.namespace.id, &bucket.id, &id, &filename)
        .map_err(field_error("filename"))?
        .staging;
    let created_at = now_micros();
    let expires_at = created_at + chrono::Duration::seconds(expiration);
    let access = match plan {
        Some(_) => Access::Parts,
        None => Access::Put(
            presign(
                state,
                &s3_key,
                &content_type,
                file_hash.as_ref().filter(|_| enforce_file_hash),
                created_at,
                expiration,
            )
            .await?,
        ),
    };
    let upload = NewUpload {
        id,
        bucket_id: bucket.id.clone().into(),
        namespace_id: tenant.namespace.id.clone().into(),
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
        enforce_file_hash,
        multipart_upload_id: None,
        part_size_bytes: plan.map(|p| p.part_size_bytes),
        part_count: plan.map(|p| p.part_count),
        created_at,
        expires_at,
    };
    Ok(Prepared::New(Box::new(upload), access))
}

/// How the bytes of a new upload reach the store.
enum Access {
    /// One PUT to this URL.
    Put(PresignedPut),
    /// Parts of a multipart upload, started in the store just before the upload is stored.
    Parts,
}

/// The parts an upload is cut into, when it is to be uploaded in parts: on request, or
/// because one PUT cannot carry it.
fn part_plan(body: &CreateUpload) -> Result<Option<PartPlan>, ApiError> {
    let too_big = body
        .file_size_bytes
        .is_some_and(|s| s > MAX_SINGLE_PUT_BYTES);
    let wanted = match body.multipart {
        Some(false) if too_big => {
            return Err(ApiError::invalid(
                "value_error",
                &["body", "multipart"],
                format!("one PUT carries at most {MAX_SINGLE_PUT_BYTES} bytes (5 GiB): a larger file is uploaded in parts"),
            ))
        }
        Some(false) if body.part_size_bytes.is_some() => {
            return Err(ApiError::invalid(
                "value_error",
                &["body", "part_size_bytes"],
                "part_size_bytes is for a multipart upload, and multipart is false",
            ))
        }
        Some(asked) => asked || too_big,
        None => too_big || body.part_size_bytes.is_some(),
    };
    if !wanted {
        return Ok(None);
    }
    let Some(size) = body.file_size_bytes else {
        return Err(ApiError::invalid(
            "missing",
            &["body", "file_size_bytes"],
            "a multipart upload needs file_size_bytes to cut the file into parts",
        ));
    };
    let field = if body.part_size_bytes.is_some() {
        "part_size_bytes"
    } else {
        "file_size_bytes"
    };
    PartPlan::new(size, body.part_size_bytes)
        .map(Some)
        .map_err(field_error(field))
}

/// The PUT URL of a single-request upload, signing the hash when it is enforced.
async fn presign(
    state: &AppState,
    s3_key: &str,
    content_type: &ContentType,
    enforced_hash: Option<&ContentHash>,
    created_at: DateTime<Utc>,
    expiration: i64,
) -> Result<PresignedPut, ApiError> {
    let signed_hash = enforced_hash.map(ContentHash::to_base64);
    let put = state
        .blob
        .presign_put_with(
            s3_key,
            content_type.as_str(),
            signed_hash.as_deref(),
            created_at.into(),
            Duration::from_secs(expiration.unsigned_abs()),
        )
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    // The SDK's UploadResponse holds a presigned_url of at most 2083 characters; a name
    // whose percent-encoded key makes a longer one would be unusable through it.
    if put.url.len() > MAX_URL_CHARS {
        return Err(ApiError::invalid(
            "string_too_long",
            &["body", "filename"],
            format!(
                "this filename makes a presigned URL of {} characters, past the {MAX_URL_CHARS} a URL may hold; shorten it (non-ASCII characters take up to 12 each once encoded)",
                put.url.len()
            ),
        ));
    }
    Ok(put)
}

/// Starts the store's multipart upload of each new upload in parts, at its confirmed key:
/// completing it is what puts the object there, and once completed no part URL can
/// change it. An upload whose row is never stored leaves its multipart upload to the
/// sweep, which aborts those no upload owns.
async fn start_multiparts(state: &AppState, new: &mut [NewUpload]) -> Result<(), ApiError> {
    for upload in new.iter_mut().filter(|u| u.part_count.is_some()) {
        let key = UploadKeys::of(&upload.s3_key).confirmed;
        let id = state
            .blob
            .create_multipart(&key, &upload.content_type)
            .await
            .map_err(|err| {
                tracing::warn!(error = %err, "could not start a multipart upload");
                ApiError::Unavailable(
                    "the object store did not start the multipart upload; retry".into(),
                )
            })?;
        upload.multipart_upload_id = Some(id);
    }
    Ok(())
}

/// Longest presigned URL a client can take: the SDK's `UploadResponse.presigned_url` limit.
const MAX_URL_CHARS: usize = 2083;

/// The answer for a created upload: with its PUT URL, or its parts, and what to do next.
fn created_answer(upload: &UploadRow, access: Access) -> UploadResponse {
    let put = match access {
        Access::Put(put) => put,
        Access::Parts => {
            let mut answer = UploadResponse::new(upload, None);
            if let Some(plan) = upload.part_plan() {
                let last = plan.part_len(plan.part_count);
                answer.message = Some(format!(
                    "Upload {} parts of {} bytes (the last of {last}): get their URLs from POST /v1/buckets/{}/uploads/{}/parts, PUT each before {}, then confirm",
                    plan.part_count,
                    plan.part_size_bytes,
                    upload.bucket_id,
                    upload.id,
                    upload.expires_at.to_rfc3339()
                ));
            }
            return answer;
        }
    };
    let headers: Vec<&str> = put.headers.keys().map(String::as_str).collect();
    let message = format!(
        "PUT the file to presigned_url with the headers of upload_headers ({}) before {}, then confirm",
        headers.join(", "),
        upload.expires_at.to_rfc3339()
    );
    let mut answer = UploadResponse::new(upload, Some(put));
    answer.message = Some(message);
    answer
}

#[utoipa::path(post, path = "/v1/buckets/{bucket_identifier}/uploads", tag = "uploads", operation_id = "create_upload",
    params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")),
    request_body = CreateUpload,
    responses((status = 200, description = "The new upload with its presigned_url; or, for content already in the bucket, the original with is_duplicate true and no URL", body = UploadResponse),
        (status = 403, description = "Quota exceeded", body = ErrorEnvelope),
        NamespaceRefusals, BodyRefusals))]
pub async fn create(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath(bucket_ident): ApiPath<String>,
    StrictJson(body): StrictJson<CreateUpload>,
) -> Result<Json<UploadResponse>, ApiError> {
    let bucket = buckets::resolve(&state, &tenant, &bucket_ident).await?;
    match prepare(&state, &tenant, &bucket, body).await? {
        Prepared::Duplicate(answer) => Ok(Json(*answer)),
        Prepared::New(mut new, access) => {
            start_multiparts(&state, std::slice::from_mut(&mut *new)).await?;
            let upload = store_new(&state, std::slice::from_ref(&*new))
                .await?
                .pop()
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the upload was not stored")))?;
            Ok(Json(created_answer(&upload, access)))
        }
    }
}

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

/// Stores new uploads; when that fails, aborts the multipart uploads started for them.
async fn store_new(state: &AppState, new: &[NewUpload]) -> Result<Vec<UploadRow>, ApiError> {
    match uploads::insert_many(&state.pool, new).await {
        Ok(rows) => Ok(rows),
        Err(err) => {
            for upload in new {
                if let Some(id) = &upload.multipart_upload_id {
                    let key = UploadKeys::of(&upload.s3_key).confirmed;
                    if let Err(e) = state.blob.abort_multipart(&key, id).await {
                        tracing::warn!(error = %e, "a multipart upload of an upload not stored is left to the sweep");
                    }
                }
            }
            Err(err.into())
        }
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

/// The SDK's `ListUploadsRequest`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListUploads {
    /// `{AND|OR|NOT: [{field, operator, value}], case_sensitive}` or `{field: value}`, on
    /// status, is_duplicate, filename, content_type, file_hash, upload_id, file_size_bytes,
    /// blob_property, blob_type, object_id, task_id.
    #[schema(value_type = Option<Object>)]
    filters: Option<Value>,
    /// Matched anywhere in the filename, case-insensitively.
    #[schema(max_length = 255)]
    search: Option<String>,
    /// `{field, direction}`: created_at, updated_at, filename, file_size_bytes or status.
    #[schema(value_type = Option<Object>)]
    sort: Option<Value>,
    /// Accepted and ignored: a PUT URL is given once, at creation.
    #[allow(dead_code)]
    return_presigned_urls: Option<bool>,
    #[schema(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    #[schema(minimum = 0)]
    offset: Option<i64>,
}

impl BodySchema for ListUploads {
    const FIELDS: &'static [&'static str] = &[
        "filters",
        "search",
        "sort",
        "return_presigned_urls",
        "limit",
        "offset",
    ];
}

/// The SDK's `UploadListStats`, over every upload the list's filters select.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadListStats {
    pub total_uploads: i64,
    /// Declared or verified bytes of those uploads.
    pub total_size_bytes: i64,
    /// Every upload status, with how many uploads have it.
    pub uploads_by_status: BTreeMap<String, i64>,
    pub avg_file_size_bytes: f64,
    pub unique_buckets: i64,
}

/// The SDK's `ListUploadsResponse`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListUploadsResponse {
    pub results: Vec<UploadResponse>,
    pub pagination: Pagination,
    pub stats: UploadListStats,
}

const UPLOAD_FIELDS: [Field; 11] = [
    Field::new("status", "status", ColumnKind::Text).one_of(UploadStatus::NAMES),
    Field::new("is_duplicate", "is_duplicate", ColumnKind::Bool),
    Field::new("filename", "filename", ColumnKind::Text),
    Field::new("content_type", "content_type", ColumnKind::Text),
    Field::new("file_hash", "file_hash", ColumnKind::Text),
    Field::new("upload_id", "id", ColumnKind::Text),
    Field::new("file_size_bytes", "file_size_bytes", ColumnKind::Int),
    Field::new("blob_property", "blob_property", ColumnKind::Text),
    Field::new("blob_type", "blob_type", ColumnKind::Text),
    Field::new("object_id", "object_id", ColumnKind::Text),
    Field::new("task_id", "task_id", ColumnKind::Text),
];

fn parse_sort(sort: Option<&Value>) -> Result<(UploadSort, bool), ApiError> {
    let Some(sort) = sort.filter(|s| !s.is_null()) else {
        return Ok((UploadSort::CreatedAt, true));
    };
    let field = sort
        .get("field")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let field = UploadSort::parse(field).ok_or_else(|| {
        ApiError::invalid(
            "enum",
            &["body", "sort", "field"],
            format!(
                "uploads can be sorted by {}, not '{field}'",
                UploadSort::NAMES.join(", ")
            ),
        )
    })?;
    if let Some(extra) = sort.as_object().and_then(|o| {
        o.keys()
            .find(|k| !["field", "direction"].contains(&k.as_str()))
    }) {
        return Err(ApiError::invalid(
            "extra_forbidden",
            &["body", "sort", extra],
            format!("sort has field and direction, not '{extra}'"),
        ));
    }
    let descending = match sort.get("direction") {
        None | Some(Value::Null) => true,
        Some(Value::String(d)) if d == "desc" => true,
        Some(Value::String(d)) if d == "asc" => false,
        Some(other) => {
            return Err(ApiError::invalid(
                "enum",
                &["body", "sort", "direction"],
                format!("direction is 'asc' or 'desc', not {other}"),
            ))
        }
    };
    Ok((field, descending))
}

/// `POST /v1/buckets/{b}/uploads/list`: a page of uploads, with counts per status (the
/// list's other filters applied) in `stats`.
#[utoipa::path(post, path = "/v1/buckets/{bucket_identifier}/uploads/list", tag = "uploads", operation_id = "list_uploads",
    params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), PageQuery, ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")),
    request_body(content = Option<ListUploads>),
    responses((status = 200, description = "A page of uploads, and stats over all that match", body = ListUploadsResponse),
        NamespaceRefusals, BodyRefusals))]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath(bucket_ident): ApiPath<String>,
    StrictQuery(query): StrictQuery<PageQuery>,
    OptionalJson(body): OptionalJson<ListUploads>,
) -> Result<Json<ListUploadsResponse>, ApiError> {
    let bucket = buckets::resolve(&state, &tenant, &bucket_ident).await?;
    let page = Page::resolve(PageAsk::limit_offset(body.limit, body.offset), &query, 100)?;
    let mut filter = vec![filters::parse(body.filters.as_ref(), &UPLOAD_FIELDS)?];
    if let Some(search) = filters::search(body.search)? {
        filter.push(Condition::Text {
            column: "filename",
            how: TextMatch::Contains,
            pattern: search,
            case_sensitive: false,
        });
    }
    let filter = Condition::All(filter);
    let (sort, descending) = parse_sort(body.sort.as_ref())?;
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
    let total: i64 = facets.iter().map(|(_, n, _)| n).sum();
    let total_size_bytes = facets
        .iter()
        .fold(0i64, |sum, (_, _, bytes)| sum.saturating_add(*bytes));
    let mut uploads_by_status: BTreeMap<String, i64> = UploadStatus::NAMES
        .iter()
        .map(|s| ((*s).to_owned(), 0))
        .collect();
    for (status, n, _) in &facets {
        uploads_by_status.insert(status.clone(), *n);
    }
    Ok(Json(ListUploadsResponse {
        results: rows.iter().map(|u| UploadResponse::new(u, None)).collect(),
        pagination: page.pagination(total),
        stats: UploadListStats {
            total_uploads: total,
            total_size_bytes,
            uploads_by_status,
            avg_file_size_bytes: if total > 0 {
                total_size_bytes as f64 / total as f64
            } else {
                0.0
            },
            unique_buckets: i64::from(total > 0),
        },
    }))
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
