//! `POST /v1/buckets/{b}/uploads`: a new upload, validated, presigned and stored.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::super::buckets;
use super::super::error::{ApiError, BodyRefusals, ErrorEnvelope, NamespaceRefusals};
use super::super::extract::{ApiPath, BodySchema, StrictJson, Tenant};
use super::super::AppState;
use super::access::{part_plan, presign, start_multiparts, Access};
use super::{check_declared_size, field_error, UploadResponse};
use crate::domain::{
    blob_type_for, check_quota, new_id, BlobProperty, BlobType, ContentHash, ContentType, Filename,
    IdKind, UploadKeys,
};
use crate::store::uploads::{self, NewUpload};
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
    pub(super) file_size_bytes: Option<i64>,
    /// Seconds the PUT URL is valid (default 3600).
    #[schema(minimum = 60, maximum = 86400)]
    presigned_url_expiration: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub(super) metadata: Option<serde_json::Map<String, Value>>,
    create_object_on_confirm: Option<bool>,
    #[schema(value_type = Option<Object>)]
    pub(super) object_metadata: Option<serde_json::Map<String, Value>>,
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
    pub(super) multipart: Option<bool>,
    /// The size of every part but the last (5 MiB to 5 GiB, at most 10,000 parts); implies
    /// `multipart`. Default: 8 MiB, or what keeps the parts within 10,000.
    #[schema(minimum = 5242880.0, maximum = 5368709120.0)]
    pub(super) part_size_bytes: Option<i64>,
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
pub(super) enum Prepared {
    /// The content is already in the bucket: the original, answered as a duplicate.
    Duplicate(Box<UploadResponse>),
    /// A new upload to store, and how its bytes are to arrive.
    New(Box<NewUpload>, Access),
}

/// Validates one creation request and presigns its URL; stores nothing.
pub(super) async fn prepare(
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

/// The answer for a created upload: with its PUT URL, or its parts, and what to do next.
pub(super) fn created_answer(upload: &UploadRow, access: Access) -> UploadResponse {
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

/// Stores new uploads; when that fails, aborts the multipart uploads started for them.
pub(super) async fn store_new(
    state: &AppState,
    new: &[NewUpload],
) -> Result<Vec<UploadRow>, ApiError> {
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
