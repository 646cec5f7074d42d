//! Reading objects: HeadObject, an object opened by one GetObject, and a large object read
//! as ranges side by side.

use std::time::Duration;

use aws_sdk_s3::types::{ChecksumMode, ChecksumType};
use base64::Engine as _;
use futures::StreamExt as _;

use super::error::{error_chain, not_found_or_transient, transient};
use super::{BlobError, BlobStore};

/// Longest silence tolerated between two chunks of a streamed body.
pub(super) const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What HeadObject tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    /// Without surrounding double quotes.
    pub etag: String,
    /// Lowercase hex of the store's full-object SHA-256 checksum; `None` when absent or composite.
    pub sha256_hex: Option<String>,
    pub content_type: Option<String>,
}

impl BlobStore {
    /// HeadObject with checksum mode enabled.
    pub async fn head(&self, key: &str) -> Result<ObjectHead, BlobError> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| not_found_or_transient(&e))?;
        object_head(
            out.content_length(),
            out.e_tag(),
            out.checksum_type(),
            out.checksum_sha256(),
            out.content_type(),
        )
    }

    /// GetObject with checksum mode enabled: what HeadObject would tell, and the body unread.
    /// One request where HEAD then GET would take two.
    pub async fn open(&self, key: &str) -> Result<OpenObject, BlobError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| not_found_or_transient(&e))?;
        let head = object_head(
            out.content_length(),
            out.e_tag(),
            out.checksum_type(),
            out.checksum_sha256(),
            out.content_type(),
        )?;
        Ok(OpenObject {
            head,
            key: key.to_owned(),
            body: out.body,
            store: self.clone(),
            ranges: RangedRead::default(),
        })
    }

    /// Bytes `start..end` of the version of `key` whose ETag is `etag`, in the chunks they
    /// arrived in. A changed object answers 412, which is transient: the confirmation reruns.
    pub(super) async fn range(
        &self,
        key: &str,
        etag: &str,
        start: u64,
        end: u64,
    ) -> Result<Vec<bytes::Bytes>, BlobError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .if_match(format!("\"{etag}\""))
            .range(format!("bytes={start}-{}", end - 1))
            .send()
            .await
            .map_err(|e| transient(&e))?;
        let mut body = out.body;
        let mut chunks = Vec::new();
        let mut got = 0u64;
        loop {
            let next = tokio::time::timeout(READ_IDLE_TIMEOUT, body.next())
                .await
                .map_err(|_| {
                    BlobError::Transient(format!(
                        "no data for {}s while reading {key} at {}",
                        READ_IDLE_TIMEOUT.as_secs(),
                        start + got
                    ))
                })?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| {
                BlobError::Transient(format!(
                    "reading {key} at {start} failed: {}",
                    error_chain(&e)
                ))
            })?;
            got += chunk.len() as u64;
            chunks.push(chunk);
        }
        if got != end - start {
            return Err(BlobError::Transient(format!(
                "range {start}..{end} of {key} gave {got} bytes"
            )));
        }
        Ok(chunks)
    }

    /// Reads the whole object and throws the bytes away; returns how many arrived. The
    /// benchmark's measure of what the store delivers to this client with no work on the bytes.
    pub async fn read_discarding(&self, key: &str) -> Result<u64, BlobError> {
        let mut body = self.open(key).await?.body;
        let mut bytes = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Transient(error_chain(&e)))?;
            bytes += chunk.len() as u64;
        }
        Ok(bytes)
    }

    /// Reads the whole object as [`RangedRead`] ranges, `in_flight` at once, and throws the
    /// bytes away; returns how many arrived. The benchmark's measure of what the store serves
    /// to the ranged reads a worker hashes from, without the hashing.
    pub async fn read_ranges_discarding(
        &self,
        key: &str,
        ranges: RangedRead,
    ) -> Result<u64, BlobError> {
        let head = self.head(key).await?;
        let mut all = vec![(0, ranges.range.min(head.size))];
        all.extend(ranges.rest(head.size));
        let mut arriving = futures::stream::iter(all)
            .map(|(start, end)| self.range(key, &head.etag, start, end))
            .buffered(ranges.in_flight.max(1));
        let mut bytes = 0u64;
        while let Some(chunks) = arriving.next().await {
            bytes += chunks?.iter().map(|c| c.len() as u64).sum::<u64>();
        }
        Ok(bytes)
    }
}

/// How a large object is read: past `from` bytes, in ranges of `range` bytes of which up to
/// `in_flight` are requested at once, so one object arrives at what the store serves rather
/// than at one stream's speed. Memory stays below `in_flight × range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangedRead {
    pub from: u64,
    pub range: u64,
    pub in_flight: usize,
}

impl Default for RangedRead {
    fn default() -> Self {
        RangedRead {
            from: 32 << 20,
            range: 8 << 20,
            in_flight: 4,
        }
    }
}

impl RangedRead {
    /// The ranges after the first one, which the opening GET's own body serves.
    pub(super) fn rest(&self, size: u64) -> Vec<(u64, u64)> {
        let mut ranges = Vec::new();
        let mut start = self.range.min(size);
        while start < size {
            let end = (start + self.range).min(size);
            ranges.push((start, end));
            start = end;
        }
        ranges
    }
}

/// An object whose GetObject answered: its headers, and the body still to read.
pub struct OpenObject {
    pub head: ObjectHead,
    pub(super) key: String,
    pub(super) body: aws_sdk_s3::primitives::ByteStream,
    pub(super) store: BlobStore,
    pub(super) ranges: RangedRead,
}

impl OpenObject {
    /// Reads ranges as `ranges` says instead of the defaults.
    pub fn with_ranges(mut self, ranges: RangedRead) -> Self {
        self.ranges = ranges;
        self
    }
}

/// What HeadObject and GetObject both answer, checked.
fn object_head(
    content_length: Option<i64>,
    e_tag: Option<&str>,
    checksum_type: Option<&ChecksumType>,
    checksum_sha256: Option<&str>,
    content_type: Option<&str>,
) -> Result<ObjectHead, BlobError> {
    let size = content_length
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| BlobError::Transient("the store answered without Content-Length".into()))?;
    let etag = e_tag
        .map(|t| t.trim_matches('"').to_owned())
        .ok_or_else(|| BlobError::Transient("the store answered without an ETag".into()))?;
    let sha256_hex = match checksum_type {
        Some(ChecksumType::Composite) => None,
        _ => checksum_sha256.and_then(full_object_sha256_hex),
    };
    Ok(ObjectHead {
        size,
        etag,
        sha256_hex,
        content_type: content_type.map(str::to_owned),
    })
}

/// Hex of a base64 full-object SHA-256; composite values ("xxx-N") and malformed ones yield `None`.
pub(super) fn full_object_sha256_hex(b64: &str) -> Option<String> {
    if b64.contains('-') {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    (raw.len() == 32).then(|| hex::encode(raw))
}

#[cfg(all(test, feature = "embedded-s3"))]
mod tests {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};

    use super::RangedRead;
    use crate::blob::embedded::test_support::{hash, sha256_hex, Harness};
    use crate::blob::BlobError;

    #[tokio::test]
    async fn missing_object_is_not_found() {
        let h = Harness::new().await;
        assert!(matches!(
            h.store.head("nope").await,
            Err(BlobError::NotFound)
        ));
        let (res, seen) = hash(&h, "nope").await;
        assert!(matches!(res, Err(BlobError::NotFound)), "{res:?}");
        assert!(seen.is_empty());
    }

    #[tokio::test]
    async fn head_reports_stored_sha256_checksum() {
        let h = Harness::new().await;
        let body = b"checksummed body".to_vec();
        let digest = Sha256::digest(&body);
        h.store
            .client
            .put_object()
            .bucket(h.store.bucket())
            .key("sum/1")
            .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(digest))
            .body(body.clone().into())
            .send()
            .await
            .unwrap();
        let head = h.store.head("sum/1").await.unwrap();
        assert_eq!(head.sha256_hex, Some(sha256_hex(&body)));
        assert_eq!(head.size, body.len() as u64);
    }

    #[test]
    fn ranges_cover_the_rest_of_the_object_once() {
        let r = RangedRead {
            from: 0,
            range: 10,
            in_flight: 2,
        };
        assert_eq!(r.rest(35), vec![(10, 20), (20, 30), (30, 35)]);
        assert_eq!(r.rest(10), vec![]);
        assert_eq!(r.rest(7), vec![]);
    }

    #[test]
    fn composite_or_malformed_checksums_are_ignored() {
        let full = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(super::full_object_sha256_hex(&full), Some("07".repeat(32)));
        assert_eq!(super::full_object_sha256_hex(&format!("{full}-3")), None);
        assert_eq!(super::full_object_sha256_hex("not base64!"), None);
        assert_eq!(super::full_object_sha256_hex("AAAA"), None);
    }
}
