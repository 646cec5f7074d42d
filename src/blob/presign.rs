//! Presigned PUTs: the URL and headers a client uploads an object with, signed without
//! network I/O.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::PresigningConfig;

use super::error::transient;
use super::{BlobError, BlobStore};

/// A presigned PUT: the URL, and the headers (lower-case names) it must be sent with.
#[derive(Debug, Clone)]
pub struct PresignedPut {
    pub url: String,
    pub headers: std::collections::BTreeMap<String, String>,
}

impl PresignedPut {
    pub(super) fn of(request: &aws_sdk_s3::presigning::PresignedRequest) -> PresignedPut {
        PresignedPut {
            url: request.uri().to_string(),
            headers: request
                .headers()
                .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
                .collect(),
        }
    }
}

/// How long a presigned request is valid, from when.
pub(super) fn presigning(
    start: SystemTime,
    expires_in: Duration,
) -> Result<PresigningConfig, BlobError> {
    PresigningConfig::builder()
        .start_time(start)
        .expires_in(expires_in)
        .build()
        .map_err(|e| BlobError::Transient(format!("invalid presigning config: {e}")))
}

impl BlobStore {
    /// A presigned PUT URL for `key` whose signature covers the Content-Type header. No network I/O.
    pub async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        start: SystemTime,
        expires_in: Duration,
    ) -> Result<String, BlobError> {
        Ok(self
            .presign_put_with(key, content_type, None, start, expires_in)
            .await?
            .url)
    }

    /// A presigned PUT URL, and every header the PUT must send with its value. With
    /// `sha256_base64`, the signature also covers `x-amz-checksum-sha256`, so the store
    /// refuses bytes with another digest (BadDigest). No network I/O.
    pub async fn presign_put_with(
        &self,
        key: &str,
        content_type: &str,
        sha256_base64: Option<&str>,
        start: SystemTime,
        expires_in: Duration,
    ) -> Result<PresignedPut, BlobError> {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .set_checksum_sha256(sha256_base64.map(str::to_owned))
            .presigned(presigning(start, expires_in)?)
            .await
            .map_err(|e| transient(&e))?;
        Ok(PresignedPut::of(&request))
    }
}

#[cfg(all(test, feature = "embedded-s3"))]
mod tests {
    use crate::blob::embedded::test_support::{hash, sha256_hex, Harness, FOX, FOX_MD5};

    #[tokio::test]
    async fn presigned_put_then_head_and_hash() {
        let h = Harness::new().await;
        let url = h.presign("up/fox.txt", "text/plain").await;
        assert!(
            url.contains("X-Amz-SignedHeaders=content-type%3Bhost"),
            "{url}"
        );
        h.upload("up/fox.txt", "text/plain", FOX.to_vec()).await;

        let head = h.store.head("up/fox.txt").await.unwrap();
        assert_eq!(head.size, FOX.len() as u64);
        assert_eq!(head.etag, FOX_MD5);
        assert_eq!(head.content_type.as_deref(), Some("text/plain"));
        assert_eq!(h.store.head("up/fox.txt").await.unwrap(), head);

        let (hashed, seen) = hash(&h, "up/fox.txt").await;
        let hashed = hashed.unwrap();
        assert_eq!(hashed.sha256_hex, sha256_hex(FOX));
        assert_eq!(hashed.bytes, FOX.len() as u64);
        assert_eq!(seen.last().copied(), Some(FOX.len() as u64));
    }
}
