//! How the bytes of a new upload reach the store: one presigned PUT, or parts of a
//! multipart upload started at its confirmed key.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::super::error::ApiError;
use super::super::AppState;
use super::creation::CreateUpload;
use super::field_error;
use crate::blob::PresignedPut;
use crate::domain::{ContentHash, ContentType, PartPlan, UploadKeys, MAX_SINGLE_PUT_BYTES};
use crate::store::uploads::NewUpload;

/// How the bytes of a new upload reach the store.
pub(super) enum Access {
    /// One PUT to this URL.
    Put(PresignedPut),
    /// Parts of a multipart upload, started in the store just before the upload is stored.
    Parts,
}

/// The parts an upload is cut into, when it is to be uploaded in parts: on request, or
/// because one PUT cannot carry it.
pub(super) fn part_plan(body: &CreateUpload) -> Result<Option<PartPlan>, ApiError> {
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
pub(super) async fn presign(
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
pub(super) async fn start_multiparts(
    state: &AppState,
    new: &mut [NewUpload],
) -> Result<(), ApiError> {
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
