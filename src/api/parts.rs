//! `POST` and `GET /v1/buckets/{b}/uploads/{upload_id}/parts`: a multipart upload's part
//! URLs, signed a window at a time, and the parts the store holds.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::buckets;
use super::error::{ApiError, BodyRefusals, NamespaceRefusals};
use super::extract::{ApiPath, BodySchema, StrictJson, Tenant};
use super::uploads;
use super::AppState;
use crate::blob::BlobError;
use crate::domain::{ContentHash, PartPlan, UploadKeys, UploadStatus};
use crate::store::uploads as rows;
use crate::store::UploadRow;

/// Most part URLs one request signs.
const MAX_PARTS_PER_REQUEST: usize = 1000;

/// Which parts to sign.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignParts {
    /// 1 to 1000 distinct part numbers, each from 1 to the upload's `part_count`.
    #[schema(min_items = 1, max_items = 1000)]
    part_numbers: Vec<i32>,
    /// Part number (as a string) → that part's SHA-256, 64 lower-case hex characters. Its
    /// URL then signs `x-amz-checksum-sha256`, and the store refuses other bytes.
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    sha256: Option<BTreeMap<String, String>>,
    /// Seconds the URLs are valid (default 3600). The upload's `expires_at` moves to
    /// their expiry when that is later, so parts signed late are not swept early.
    #[schema(minimum = 60, maximum = 86400)]
    expiration: Option<i64>,
}

impl BodySchema for SignParts {
    const FIELDS: &'static [&'static str] = &["part_numbers", "sha256", "expiration"];
}

/// One part's URL.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PartUrl {
    pub part_number: i32,
    /// The bytes this part must hold: `part_size_bytes`, or the rest for the last part.
    pub size_bytes: i64,
    pub url: String,
    /// Every header the PUT must send, with its value (none unless a `sha256` is signed).
    pub headers: BTreeMap<String, String>,
}

/// Signed part URLs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PartUrls {
    pub upload_id: String,
    pub part_size_bytes: i64,
    pub part_count: i32,
    /// When these URLs expire.
    pub urls_expire_at: DateTime<Utc>,
    /// When the upload expires if not confirmed (moved by signing when later).
    pub expires_at: DateTime<Utc>,
    pub parts: Vec<PartUrl>,
}

/// A part the store holds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadedPart {
    pub part_number: i32,
    pub etag: String,
    pub size_bytes: i64,
    /// The SHA-256 the part was uploaded with (hex), when its URL signed one.
    pub sha256: Option<String>,
    pub last_modified: Option<DateTime<Utc>>,
}

/// The parts a multipart upload has so far.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadedParts {
    pub upload_id: String,
    /// The upload's status: parts are listed while it is `PENDING`, `FAILED` or `PROCESSING`.
    pub status: String,
    pub part_size_bytes: i64,
    pub part_count: i32,
    /// The parts of the plan the store holds, in part order.
    pub parts: Vec<UploadedPart>,
    /// Part numbers of the plan not uploaded yet.
    pub missing: Vec<i32>,
    /// Bytes held by the parts listed.
    pub bytes_uploaded: i64,
}

/// The upload's plan, if it is a multipart upload.
fn plan_of(upload: &UploadRow) -> Result<(PartPlan, &str), ApiError> {
    match (upload.part_plan(), upload.multipart_upload_id.as_deref()) {
        (Some(plan), Some(id)) => Ok((plan, id)),
        _ => Err(ApiError::bad_request(
            "this upload is not in parts: PUT the file to the presigned_url it was created with",
        )),
    }
}

fn refused_status(upload: &UploadRow, what: &str) -> ApiError {
    ApiError::BadRequest {
        message: format!("an upload that is {} {what}", upload.status),
        details: serde_json::json!({ "status": upload.status }),
    }
}

/// An upload the sweep expired: its parts were dropped with its multipart upload.
fn expired(upload: &UploadRow) -> ApiError {
    ApiError::BadRequest {
        message: "this upload expired before it was confirmed, and its parts were dropped; create a new upload".into(),
        details: serde_json::json!({ "status": upload.status, "reason": "expired" }),
    }
}

fn store_unavailable(err: &BlobError) -> ApiError {
    tracing::warn!(error = %err, "the store did not answer a parts request");
    ApiError::Unavailable("the object store did not answer; retry".into())
}

/// Checks the part numbers and their hashes; answers each number with its signed hash.
fn parts_to_sign(
    plan: &PartPlan,
    body: &SignParts,
) -> Result<Vec<(i32, Option<String>)>, ApiError> {
    if body.part_numbers.is_empty() || body.part_numbers.len() > MAX_PARTS_PER_REQUEST {
        return Err(ApiError::invalid(
            if body.part_numbers.is_empty() {
                "too_short"
            } else {
                "too_long"
            },
            &["body", "part_numbers"],
            format!(
                "part_numbers must hold 1 to {MAX_PARTS_PER_REQUEST} numbers, not {}",
                body.part_numbers.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for (i, &n) in body.part_numbers.iter().enumerate() {
        if !plan.has(n) {
            return Err(ApiError::invalid(
                "value_error",
                &["body", "part_numbers", &i.to_string()],
                format!(
                    "part {n} is not a part of this upload: its parts are 1 to {}",
                    plan.part_count
                ),
            ));
        }
        if !seen.insert(n) {
            return Err(ApiError::invalid(
                "value_error",
                &["body", "part_numbers", &i.to_string()],
                format!("part {n} is asked for twice"),
            ));
        }
    }
    let mut hashes: BTreeMap<i32, String> = BTreeMap::new();
    for (key, hex) in body.sha256.iter().flatten() {
        let at = ["body", "sha256", key.as_str()];
        let number = key
            .parse::<i32>()
            .ok()
            .filter(|n| seen.contains(n))
            .ok_or_else(|| {
                ApiError::invalid(
                    "value_error",
                    &at,
                    format!("'{key}' is not one of the part_numbers asked for"),
                )
            })?;
        let hash =
            ContentHash::parse(hex).map_err(|e| ApiError::invalid("value_error", &at, e.0))?;
        hashes.insert(number, hash.to_base64());
    }
    Ok(body
        .part_numbers
        .iter()
        .map(|&n| (n, hashes.remove(&n)))
        .collect())
}

#[utoipa::path(post, path = "/v1/buckets/{bucket_identifier}/uploads/{upload_id}/parts", tag = "uploads", operation_id = "sign_upload_parts",
    params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("upload_id" = String, Path), ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")),
    request_body = SignParts,
    responses((status = 200, description = "A URL per part asked for, in the order asked", body = PartUrls),
        (status = 503, description = "The store did not answer; retry", body = super::error::ErrorEnvelope),
        NamespaceRefusals, BodyRefusals))]
pub async fn sign(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath((bucket_ident, upload_id)): ApiPath<(String, String)>,
    StrictJson(body): StrictJson<SignParts>,
) -> Result<Json<PartUrls>, ApiError> {
    let bucket = buckets::resolve(&state, &tenant, &bucket_ident).await?;
    let upload = uploads::resolve(&state, &bucket, &upload_id).await?;
    let (plan, multipart_id) = plan_of(&upload)?;
    if !upload.status.can_confirm() {
        return Err(refused_status(&upload, "takes no more parts"));
    }
    if upload.error.as_deref() == Some(rows::EXPIRED_ERROR) {
        return Err(expired(&upload));
    }
    let wanted = parts_to_sign(&plan, &body)?;
    let expiration = body.expiration.unwrap_or(3600);
    if !(60..=86_400).contains(&expiration) {
        return Err(ApiError::invalid(
            "value_error",
            &["body", "expiration"],
            "expiration must be between 60 and 86400 seconds",
        ));
    }
    let now = Utc::now();
    let urls_expire_at = now + chrono::Duration::seconds(expiration);
    // Expired meanwhile, or confirmed or canceled: the row says which.
    let Some(expires_at) = rows::extend_expiry(&state.pool, &upload.id, urls_expire_at).await?
    else {
        let now = uploads::resolve(&state, &bucket, &upload.id).await?;
        return Err(if now.error.as_deref() == Some(rows::EXPIRED_ERROR) {
            expired(&now)
        } else {
            refused_status(&now, "takes no more parts")
        });
    };
    let key = UploadKeys::of(&upload.s3_key).confirmed;
    let mut parts = Vec::with_capacity(wanted.len());
    for (number, sha256) in wanted {
        let put = state
            .blob
            .presign_part(
                &key,
                multipart_id,
                number,
                sha256.as_deref(),
                now.into(),
                Duration::from_secs(expiration.unsigned_abs()),
            )
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
        parts.push(PartUrl {
            part_number: number,
            size_bytes: plan.part_len(number),
            url: put.url,
            headers: put.headers,
        });
    }
    Ok(Json(PartUrls {
        upload_id: upload.id.into(),
        part_size_bytes: plan.part_size_bytes,
        part_count: plan.part_count,
        urls_expire_at,
        expires_at,
        parts,
    }))
}

#[utoipa::path(get, path = "/v1/buckets/{bucket_identifier}/uploads/{upload_id}/parts", tag = "uploads", operation_id = "list_upload_parts",
    params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("upload_id" = String, Path), ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")),
    responses((status = 200, description = "The parts the store holds, and those still missing", body = UploadedParts),
        (status = 503, description = "The store did not answer; retry", body = super::error::ErrorEnvelope),
        NamespaceRefusals))]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath((bucket_ident, upload_id)): ApiPath<(String, String)>,
) -> Result<Json<UploadedParts>, ApiError> {
    let bucket = buckets::resolve(&state, &tenant, &bucket_ident).await?;
    let upload = uploads::resolve(&state, &bucket, &upload_id).await?;
    let (plan, multipart_id) = plan_of(&upload)?;
    if !(upload.status.can_confirm() || upload.status == UploadStatus::Processing) {
        return Err(refused_status(&upload, "has no parts in progress"));
    }
    let key = UploadKeys::of(&upload.s3_key).confirmed;
    let stored = match state.blob.list_parts(&key, multipart_id).await {
        Ok(stored) => stored,
        Err(BlobError::NotFound) => {
            return Err(ApiError::bad_request(
                "the store no longer has this upload's parts: they were assembled or removed",
            ))
        }
        Err(err) => return Err(store_unavailable(&err)),
    };
    let stored: Vec<_> = stored.into_iter().filter(|p| plan.has(p.number)).collect();
    let held: HashSet<i32> = stored.iter().map(|p| p.number).collect();
    let missing = (1..=plan.part_count)
        .filter(|n| !held.contains(n))
        .collect();
    let bytes_uploaded = stored.iter().map(|p| p.size).sum();
    let parts = stored
        .into_iter()
        .map(|p| UploadedPart {
            part_number: p.number,
            etag: p.etag,
            size_bytes: p.size,
            sha256: p.sha256_hex,
            last_modified: p.last_modified.map(DateTime::<Utc>::from),
        })
        .collect();
    Ok(Json(UploadedParts {
        upload_id: upload.id.into(),
        status: upload.status.to_string(),
        part_size_bytes: plan.part_size_bytes,
        part_count: plan.part_count,
        parts,
        missing,
        bytes_uploaded,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(numbers: &[i32], sha: &[(&str, &str)]) -> SignParts {
        SignParts {
            part_numbers: numbers.to_vec(),
            sha256: (!sha.is_empty()).then(|| {
                sha.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect()
            }),
            expiration: None,
        }
    }

    #[test]
    fn part_numbers_and_hashes_are_checked() {
        let plan = PartPlan::new(15 << 20, Some(5 << 20)).unwrap();
        let hex = "ab".repeat(32);
        let ok = parts_to_sign(&plan, &body(&[3, 1], &[("1", &hex)])).unwrap();
        assert_eq!(ok[0], (3, None));
        assert_eq!(ok[1].0, 1);
        assert!(ok[1].1.is_some());
        let refused = [
            body(&[], &[]),
            body(&[0], &[]),
            body(&[4], &[]),
            body(&[1, 1], &[]),
            body(&[1], &[("2", &hex)]),
            body(&[1], &[("one", &hex)]),
            body(&[1], &[("1", "nothex")]),
        ];
        for b in refused {
            let err = parts_to_sign(&plan, &b).unwrap_err();
            assert_eq!(err.status().as_u16(), 422, "{b:?}");
        }
    }
}
