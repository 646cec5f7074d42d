//! Multipart uploads in the store: created with the upload, parts presigned just in time,
//! listed for a client that resumes, completed by the confirmation, aborted by a cancel or
//! a sweep.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::client::whole_object_attempt;
use super::error::{failure, not_found_or_failure};
use super::presign::presigning;
use super::read::full_object_sha256_hex;
use super::{BlobError, BlobStore, PresignedPut};

/// A part the store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    pub number: i32,
    /// Without surrounding double quotes.
    pub etag: String,
    pub size: i64,
    /// The SHA-256 the part was uploaded with (hex), when one was signed.
    pub sha256_hex: Option<String>,
    pub last_modified: Option<SystemTime>,
}

/// A multipart upload the store has in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InProgress {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<SystemTime>,
}

/// NoSuchUpload (or a 404) is `NotFound`; the rest as any other answer of the store.
fn upload_failure<E>(err: &SdkError<E>) -> BlobError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    not_found_or_failure(err, &["NoSuchUpload"])
}

impl BlobStore {
    /// Starts a multipart upload of `key`; answers its id.
    pub async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
    ) -> Result<String, BlobError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| failure(&e))?;
        out.upload_id
            .ok_or_else(|| BlobError::Transient("the store answered without an upload id".into()))
    }

    /// A presigned PUT of one part; with `sha256_base64`, its signature covers
    /// `x-amz-checksum-sha256`, so the store refuses other bytes. No network I/O.
    pub async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        sha256_base64: Option<&str>,
        start: SystemTime,
        expires_in: Duration,
    ) -> Result<PresignedPut, BlobError> {
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .set_checksum_sha256(sha256_base64.map(str::to_owned))
            .presigned(presigning(start, expires_in)?)
            .await
            .map_err(|e| BlobError::Transient(e.to_string()))?;
        Ok(PresignedPut::of(&request))
    }

    /// Every part the store holds for the upload, in part order. [`BlobError::NotFound`]
    /// when the upload is no longer in progress (completed or aborted).
    pub async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<StoredPart>, BlobError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(|e| upload_failure(&e))?;
            for part in out.parts() {
                let (Some(number), Some(size)) = (part.part_number(), part.size()) else {
                    continue;
                };
                parts.push(StoredPart {
                    number,
                    etag: part
                        .e_tag()
                        .unwrap_or_default()
                        .trim_matches('"')
                        .to_owned(),
                    size,
                    sha256_hex: part.checksum_sha256().and_then(full_object_sha256_hex),
                    last_modified: part
                        .last_modified()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                });
            }
            match (out.is_truncated(), out.next_part_number_marker()) {
                (Some(true), Some(next)) if !next.is_empty() => marker = Some(next.to_owned()),
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.number);
        parts.dedup_by_key(|p| p.number);
        Ok(parts)
    }

    /// Assembles the object from `parts` (in order). [`BlobError::NotFound`] when the upload
    /// is no longer in progress.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[StoredPart],
    ) -> Result<(), BlobError> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        CompletedPart::builder()
                            .part_number(p.number)
                            .e_tag(format!("\"{}\"", p.etag))
                            .build()
                    })
                    .collect(),
            ))
            .build();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .customize()
            // The store may take minutes to assemble a large object.
            .config_override(whole_object_attempt())
            .send()
            .await
            .map_err(|e| upload_failure(&e))?;
        Ok(())
    }

    /// Aborts a multipart upload and drops its parts; one no longer in progress is Ok.
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), BlobError> {
        let aborted = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
        match aborted.map_err(|e| upload_failure(&e)) {
            Ok(_) | Err(BlobError::NotFound) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The multipart uploads in progress under `prefix`, one page of the store's listing
    /// at a time, at most `limit` in all.
    pub async fn multipart_uploads(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<InProgress>, BlobError> {
        let mut found = Vec::new();
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(markers.0.take())
                .set_upload_id_marker(markers.1.take())
                .send()
                .await
                .map_err(|e| failure(&e))?;
            for upload in out.uploads() {
                let (Some(key), Some(upload_id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                found.push(InProgress {
                    key: key.to_owned(),
                    upload_id: upload_id.to_owned(),
                    initiated: upload
                        .initiated()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                });
            }
            let next = (
                out.next_key_marker().map(str::to_owned),
                out.next_upload_id_marker().map(str::to_owned),
            );
            if found.len() >= limit || out.is_truncated() != Some(true) || next.0.is_none() {
                break;
            }
            markers = next;
        }
        found.truncate(limit);
        Ok(found)
    }
}
