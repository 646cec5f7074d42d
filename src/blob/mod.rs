//! Access to the object store holding uploaded blobs: presigning, verification and hashing.

#[cfg(feature = "embedded-s3")]
pub mod embedded;
mod multipart;

pub use multipart::{InProgress, StoredPart};

use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{
    BucketLocationConstraint, ChecksumMode, ChecksumType, CreateBucketConfiguration,
};
use base64::Engine as _;
use futures::StreamExt as _;
use sha2::{Digest, Sha256};

use crate::domain::{unquote_etag, UploadKeys};

/// Time allowed to establish a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for one attempt up to the response headers; streamed bodies are not covered.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for one CopyObject: the store answers when the whole object is copied,
/// and a single-request object may have 5 GiB.
const COPY_TIMEOUT: Duration = Duration::from_secs(900);
/// Longest silence tolerated between two chunks of a streamed body.
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The caller retries with its own backoff, so the SDK only smooths over blips.
const MAX_ATTEMPTS: u32 = 2;
/// CreateBucket error codes meaning there is nothing left to do.
const BUCKET_EXISTS: [&str; 2] = ["BucketAlreadyOwnedByYou", "BucketAlreadyExists"];

/// How to reach the store.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `None` => AWS default endpoint resolution.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// Both set => static credentials; otherwise the aws-config default chain.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub force_path_style: bool,
}

/// A client bound to one bucket.
#[derive(Clone)]
pub struct BlobStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    region: String,
}

/// A presigned PUT: the URL, and the headers (lower-case names) it must be sent with.
#[derive(Debug, Clone)]
pub struct PresignedPut {
    pub url: String,
    pub headers: std::collections::BTreeMap<String, String>,
}

impl PresignedPut {
    fn of(request: &aws_sdk_s3::presigning::PresignedRequest) -> PresignedPut {
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
fn presigning(start: SystemTime, expires_in: Duration) -> Result<PresigningConfig, BlobError> {
    PresigningConfig::builder()
        .start_time(start)
        .expires_in(expires_in)
        .build()
        .map_err(|e| BlobError::Transient(format!("invalid presigning config: {e}")))
}

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

/// The result of streaming an object through SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedObject {
    pub sha256_hex: String,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// HeadObject/GetObject 404 / NoSuchKey.
    #[error("object not found")]
    NotFound,
    /// The store refused the request (a 4xx other than throttling or a timeout): asking
    /// again gets the same answer.
    #[error("object store refused the request: {0}")]
    Rejected(String),
    /// A conditional copy found its source changed or gone since it was verified.
    #[error("object changed: {0}")]
    Changed(String),
    /// Anything worth retrying: 5xx, throttling, timeouts, connection trouble.
    #[error("object store unavailable: {0}")]
    Transient(String),
}

impl BlobStore {
    /// Builds the client; does no network I/O.
    pub async fn connect(settings: &S3Settings) -> anyhow::Result<BlobStore> {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(
                id,
                secret,
                None,
                None,
                "upconfirm-static",
            ));
        }
        let shared = loader.load().await;
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(settings.force_path_style)
            // The object is hashed with SHA-256 anyway; a second SDK-side checksum only costs CPU.
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Ok(BlobStore {
            client: aws_sdk_s3::Client::from_conf(config),
            bucket: settings.bucket.clone(),
            region: settings.region.clone(),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket if it does not exist (idempotent).
    pub async fn ensure_bucket(&self) -> Result<(), BlobError> {
        // Probing first keeps this working under policies that allow HeadBucket but not CreateBucket.
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => return Ok(()),
            Err(err) if http_status(&err) == Some(404) => {}
            Err(err) => return Err(transient(&err)),
        }
        let mut create = self.client.create_bucket().bucket(&self.bucket);
        // us-east-1 is the one region that rejects an explicit location constraint.
        if self.region != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        match create.send().await {
            Err(err) if !err.code().is_some_and(|c| BUCKET_EXISTS.contains(&c)) => {
                Err(transient(&err))
            }
            _ => Ok(()),
        }
    }

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

    /// Streams the object through SHA-256 with bounded memory, reporting bytes hashed so far.
    pub async fn sha256(
        &self,
        key: &str,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<HashedObject, BlobError> {
        self.open(key).await?.sha256(progress).await
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
    async fn range(
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

    /// Deletes an object; a missing object is Ok.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let deleted = self.client.delete_object().bucket(&self.bucket).key(key);
        match deleted.send().await {
            Err(err) if err.code() != Some("NoSuchKey") => Err(failure(&err)),
            _ => Ok(()),
        }
    }

    /// Deletes both objects of an upload (see [`UploadKeys`]) from the key it records;
    /// missing ones are Ok.
    pub async fn delete_upload_objects(&self, s3_key: &str) -> Result<(), BlobError> {
        let keys = UploadKeys::of(s3_key);
        self.delete(&keys.staging).await?;
        self.delete(&keys.confirmed).await
    }

    /// Copies `from` to `to` inside the bucket, only if `from` still has ETag `etag`.
    /// [`BlobError::Changed`] when it has another or is gone.
    pub async fn copy_if_match(&self, from: &str, to: &str, etag: &str) -> Result<(), BlobError> {
        let copied = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(copy_source(&self.bucket, from))
            .copy_source_if_match(format!("\"{}\"", unquote_etag(etag)))
            .customize()
            .config_override(
                aws_sdk_s3::config::Builder::new().timeout_config(
                    TimeoutConfig::builder()
                        .operation_attempt_timeout(COPY_TIMEOUT)
                        .build(),
                ),
            )
            .send()
            .await;
        match copied {
            Ok(_) => Ok(()),
            Err(err) => match (err.code(), http_status(&err)) {
                (Some("PreconditionFailed"), _) | (_, Some(412)) => Err(BlobError::Changed(
                    format!("{from} no longer has ETag {etag}"),
                )),
                (Some("NoSuchKey"), _) => Err(BlobError::Changed(format!("{from} is gone"))),
                _ => Err(failure(&err)),
            },
        }
    }
}

/// The `x-amz-copy-source` of a key: `bucket/key`, percent-encoded but for `/`.
fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = String::with_capacity(bucket.len() + 1 + key.len());
    out.push_str(bucket);
    out.push('/');
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
    fn rest(&self, size: u64) -> Vec<(u64, u64)> {
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
    key: String,
    body: aws_sdk_s3::primitives::ByteStream,
    store: BlobStore,
    ranges: RangedRead,
}

impl OpenObject {
    /// Reads ranges as `ranges` says instead of the defaults.
    pub fn with_ranges(mut self, ranges: RangedRead) -> Self {
        self.ranges = ranges;
        self
    }

    /// Reads the body through SHA-256 with bounded memory, reporting bytes hashed so far.
    /// A large object's first range comes from this GET's body; the rest arrive as ranged
    /// GETs of the same version, several at once, and are hashed in order.
    pub async fn sha256(
        self,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<HashedObject, BlobError> {
        let OpenObject {
            head,
            key,
            mut body,
            store,
            ranges,
        } = self;
        let ranged = head.size >= ranges.from && ranges.range > 0;
        let first = if ranged { ranges.range } else { head.size };
        let mut hasher = Hasher::new(head.size);
        let mut bytes: u64 = 0;
        while bytes < first {
            let next = tokio::time::timeout(READ_IDLE_TIMEOUT, body.next())
                .await
                .map_err(|_| {
                    BlobError::Transient(format!(
                        "no data for {}s while reading {key} after {bytes} bytes",
                        READ_IDLE_TIMEOUT.as_secs()
                    ))
                })?;
            let Some(chunk) = next else { break };
            let mut chunk = chunk.map_err(|e| {
                BlobError::Transient(format!(
                    "reading {key} failed after {bytes} bytes: {}",
                    error_chain(&e)
                ))
            })?;
            // Only the first range is taken from this body; the ranged GETs bring the rest.
            let room = usize::try_from(first - bytes).unwrap_or(usize::MAX);
            if chunk.len() > room {
                chunk.truncate(room);
            }
            bytes += chunk.len() as u64;
            hasher.update(chunk).await?;
            progress(bytes);
        }
        // Dropping the body ends that response early.
        drop(body);
        if ranged && bytes == first {
            let mut arriving = futures::stream::iter(ranges.rest(head.size))
                .map(|(start, end)| store.range(&key, &head.etag, start, end))
                .buffered(ranges.in_flight.max(1));
            while let Some(chunks) = arriving.next().await {
                let chunks = chunks?;
                bytes += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
                hasher.update_all(chunks).await?;
                progress(bytes);
            }
        }
        if bytes != head.size {
            return Err(BlobError::Transient(format!(
                "body of {key} ended at {bytes} of {} bytes",
                head.size
            )));
        }
        Ok(HashedObject {
            sha256_hex: hasher.finish().await?,
            bytes,
        })
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

/// Objects from this size are hashed on a thread of their own while the next bytes arrive.
const HASH_ON_A_THREAD_FROM: u64 = 8 << 20;
/// Batches received and not hashed yet, at most: with the ranges in flight, what bounds a
/// large object's memory. A batch is a range, or about [`BATCH_BYTES`] of a streamed body.
const BATCHES_AHEAD: usize = 1;
/// Chunks of a streamed body go to the hashing thread in batches of about this many bytes:
/// one hand-over per chunk (tens of KiB) would cost a wake-up of the thread each.
const BATCH_BYTES: usize = 1 << 20;

/// SHA-256 of a body arriving in chunks: inline for small objects; for large ones on a
/// blocking thread fed batches of chunks through a bounded channel, so receiving and
/// hashing overlap.
enum Hasher {
    Inline(Sha256),
    Thread {
        batches: tokio::sync::mpsc::Sender<Vec<bytes::Bytes>>,
        pending: Vec<bytes::Bytes>,
        pending_bytes: usize,
        digest: tokio::task::JoinHandle<String>,
    },
}

impl Hasher {
    fn new(size: u64) -> Hasher {
        if size < HASH_ON_A_THREAD_FROM {
            return Hasher::Inline(Sha256::new());
        }
        let (batches, mut rx) = tokio::sync::mpsc::channel::<Vec<bytes::Bytes>>(BATCHES_AHEAD);
        let digest = tokio::task::spawn_blocking(move || {
            let mut sha = Sha256::new();
            while let Some(batch) = rx.blocking_recv() {
                for chunk in batch {
                    sha.update(&chunk);
                }
            }
            hex::encode(sha.finalize())
        });
        Hasher::Thread {
            batches,
            pending: Vec::new(),
            pending_bytes: 0,
            digest,
        }
    }

    /// One chunk of a streamed body.
    async fn update(&mut self, chunk: bytes::Bytes) -> Result<(), BlobError> {
        match self {
            Hasher::Inline(sha) => {
                sha.update(&chunk);
                Ok(())
            }
            Hasher::Thread {
                pending,
                pending_bytes,
                ..
            } => {
                *pending_bytes += chunk.len();
                pending.push(chunk);
                if *pending_bytes >= BATCH_BYTES {
                    self.flush().await?;
                }
                Ok(())
            }
        }
    }

    /// The chunks of a whole range, handed over at once.
    async fn update_all(&mut self, chunks: Vec<bytes::Bytes>) -> Result<(), BlobError> {
        self.flush().await?;
        match self {
            Hasher::Inline(sha) => {
                for chunk in &chunks {
                    sha.update(chunk);
                }
                Ok(())
            }
            Hasher::Thread { batches, .. } => batches
                .send(chunks)
                .await
                .map_err(|_| BlobError::Transient("the hashing thread stopped".into())),
        }
    }

    async fn flush(&mut self) -> Result<(), BlobError> {
        if let Hasher::Thread {
            batches,
            pending,
            pending_bytes,
            ..
        } = self
        {
            if !pending.is_empty() {
                *pending_bytes = 0;
                batches
                    .send(std::mem::take(pending))
                    .await
                    .map_err(|_| BlobError::Transient("the hashing thread stopped".into()))?;
            }
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<String, BlobError> {
        self.flush().await?;
        match self {
            Hasher::Inline(sha) => Ok(hex::encode(sha.finalize())),
            Hasher::Thread {
                batches, digest, ..
            } => {
                drop(batches);
                digest
                    .await
                    .map_err(|e| BlobError::Transient(format!("the hashing thread failed: {e}")))
            }
        }
    }
}

/// Hex of a base64 full-object SHA-256; composite values ("xxx-N") and malformed ones yield `None`.
fn full_object_sha256_hex(b64: &str) -> Option<String> {
    if b64.contains('-') {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    (raw.len() == 32).then(|| hex::encode(raw))
}

fn http_status<E>(err: &SdkError<E>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// Maps 404/NoSuchKey to `NotFound`; a missing bucket is a misconfiguration and stays transient.
fn not_found_or_transient<E>(err: &SdkError<E>) -> BlobError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match (err.code(), http_status(err)) {
        (Some("NoSuchBucket"), _) => transient(err),
        (Some("NoSuchKey" | "NotFound"), _) | (_, Some(404)) => BlobError::NotFound,
        _ => failure(err),
    }
}

/// 4xx error codes that a later attempt may not get: throttling, timeouts, a conflicting
/// operation in flight, credentials or a clock that fix themselves.
const RETRYABLE_4XX_CODES: [&str; 7] = [
    "RequestTimeout",
    "SlowDown",
    "Throttling",
    "OperationAborted",
    "RequestTimeTooSkewed",
    "ExpiredToken",
    "TokenRefreshRequired",
];

/// Whether an answer of the store is final: a 4xx other than a timeout (408), a conflict
/// (409), throttling (429) or one of [`RETRYABLE_4XX_CODES`]. A missing bucket stays
/// retryable: it is the operator's to fix, not the request's.
fn is_refusal(status: u16, code: Option<&str>) -> bool {
    (400..500).contains(&status)
        && !matches!(status, 408 | 409 | 429)
        && !code.is_some_and(|c| c == "NoSuchBucket" || RETRYABLE_4XX_CODES.contains(&c))
}

/// `Rejected` for a final refusal of the store, else `Transient`.
fn failure<E>(err: &SdkError<E>) -> BlobError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match http_status(err) {
        Some(status) if is_refusal(status, err.code()) => BlobError::Rejected(describe(err)),
        _ => transient(err),
    }
}

fn transient<E>(err: &SdkError<E>) -> BlobError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    BlobError::Transient(describe(err))
}

/// An SDK error as one line: `HTTP 403 AccessDenied: message`, or the error chain.
fn describe<E>(err: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match (http_status(err), err.code()) {
        // The SDK's own rendering of service errors embeds the whole raw response.
        (Some(status), code) => format!(
            "HTTP {status} {}{}",
            code.unwrap_or("(no error code)"),
            err.message().map(|m| format!(": {m}")).unwrap_or_default()
        ),
        (None, _) => error_chain(err),
    }
}

/// `outer: cause: root cause`, without the Debug dumps `DisplayErrorContext` appends.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

#[cfg(all(test, feature = "embedded-s3"))]
mod tests {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};

    use super::embedded::test_support::Harness;
    use super::{BlobError, HashedObject, RangedRead};

    // A well-known MD5 test vector, so the ETag can be checked without an MD5 implementation.
    const FOX: &[u8] = b"The quick brown fox jumps over the lazy dog";
    const FOX_MD5: &str = "9e107d9d372bb6826bd81d3542a419d6";

    fn sha256_hex(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    async fn hash(h: &Harness, key: &str) -> (Result<HashedObject, BlobError>, Vec<u64>) {
        let mut seen = Vec::new();
        let res = h.store.sha256(key, &mut |n| seen.push(n)).await;
        (res, seen)
    }

    #[tokio::test]
    async fn ensure_bucket_is_idempotent() {
        let h = Harness::new().await;
        h.store.ensure_bucket().await.unwrap();
        h.store.ensure_bucket().await.unwrap();
    }

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

    fn patterned(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
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

    #[tokio::test]
    async fn a_large_object_is_hashed_from_ranges_read_side_by_side() {
        // Not a multiple of the range, so the last range is short; the larger is hashed on
        // a thread of its own (ranges handed over whole), the smaller inline.
        for size in [3 * 1024 * 1024 + 12_345, 9 * 1024 * 1024 + 777] {
            hashed_from_ranges(size).await;
        }
    }

    async fn hashed_from_ranges(size: usize) {
        let h = Harness::new().await;
        let body = patterned(size);
        h.upload("big/ranged", "application/octet-stream", body.clone())
            .await;
        let ranges = RangedRead {
            from: 1024 * 1024,
            range: 256 * 1024,
            in_flight: 3,
        };
        for ranges in [
            ranges,
            RangedRead {
                in_flight: 1,
                ..ranges
            },
        ] {
            let opened = h.store.open("big/ranged").await.unwrap();
            let mut seen = Vec::new();
            let hashed = opened
                .with_ranges(ranges)
                .sha256(&mut |n| seen.push(n))
                .await
                .unwrap();
            assert_eq!(hashed.sha256_hex, sha256_hex(&body));
            assert_eq!(hashed.bytes, body.len() as u64);
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
            assert!(
                seen.contains(&(256 * 1024 * 2)),
                "progress per range: {seen:?}"
            );
            assert_eq!(seen.last().copied(), Some(body.len() as u64));
        }
    }

    #[tokio::test]
    async fn an_object_replaced_while_its_ranges_are_read_fails_transiently() {
        let h = Harness::new().await;
        let body = patterned(2 * 1024 * 1024);
        h.upload("big/moving", "application/octet-stream", body.clone())
            .await;
        let opened = h
            .store
            .open("big/moving")
            .await
            .unwrap()
            .with_ranges(RangedRead {
                from: 1024 * 1024,
                range: 512 * 1024,
                in_flight: 2,
            });
        // Another version lands after the GET answered: its ranges no longer match the ETag.
        let mut other = body.clone();
        other[0] ^= 1;
        h.upload("big/moving", "application/octet-stream", other)
            .await;
        match opened.sha256(&mut |_| {}).await {
            Err(BlobError::Transient(_)) => {}
            Err(other) => panic!("expected a transient failure, got {other:?}"),
            Ok(_) => panic!("a mix of two versions must not hash"),
        }
    }

    #[tokio::test]
    async fn multi_mib_object_hashes_correctly() {
        let h = Harness::new().await;
        let body: Vec<u8> = (0..8 * 1024 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        h.upload("big/8mib", "application/octet-stream", body.clone())
            .await;

        let (hashed, seen) = hash(&h, "big/8mib").await;
        let hashed = hashed.unwrap();
        assert_eq!(hashed.sha256_hex, sha256_hex(&body));
        assert_eq!(hashed.bytes, body.len() as u64);
        assert!(seen.len() > 1, "progress should be reported per chunk");
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(seen.last().copied(), Some(body.len() as u64));
    }

    #[tokio::test]
    async fn delete_is_idempotent() {
        let h = Harness::new().await;
        h.upload("del/1", "text/plain", b"bye".to_vec()).await;
        h.store.delete("del/1").await.unwrap();
        assert!(matches!(
            h.store.head("del/1").await,
            Err(BlobError::NotFound)
        ));
        h.store.delete("del/1").await.unwrap();
    }

    #[test]
    fn refusals_are_the_final_4xx_answers() {
        let table = [
            (400, Some("KeyTooLongError"), true),
            (400, None, true),
            (403, Some("AccessDenied"), true),
            (403, None, true),
            (400, Some("RequestTimeout"), false),
            (400, Some("ExpiredToken"), false),
            (403, Some("RequestTimeTooSkewed"), false),
            (404, Some("NoSuchBucket"), false),
            (408, None, false),
            (409, Some("OperationAborted"), false),
            (429, None, false),
            (500, Some("InternalError"), false),
            (503, Some("SlowDown"), false),
        ];
        for (status, code, refusal) in table {
            assert_eq!(
                super::is_refusal(status, code),
                refusal,
                "{status} {code:?}"
            );
        }
    }

    #[test]
    fn copy_sources_are_percent_encoded_but_for_slashes() {
        assert_eq!(
            super::copy_source("b", "ns/a b+c/é.txt"),
            "b/ns/a%20b%2Bc/%C3%A9.txt"
        );
    }

    #[tokio::test]
    async fn copy_if_match_copies_only_the_verified_version() {
        let h = Harness::new().await;
        h.upload("stage/one", "text/plain", FOX.to_vec()).await;
        h.store
            .copy_if_match("stage/one", "final/one", FOX_MD5)
            .await
            .unwrap();
        let (hashed, _) = hash(&h, "final/one").await;
        assert_eq!(hashed.unwrap().sha256_hex, sha256_hex(FOX));

        h.upload("stage/one", "text/plain", b"changed".to_vec())
            .await;
        let changed = h
            .store
            .copy_if_match("stage/one", "final/one", FOX_MD5)
            .await;
        assert!(matches!(changed, Err(BlobError::Changed(_))), "{changed:?}");
        let gone = h
            .store
            .copy_if_match("stage/none", "final/one", FOX_MD5)
            .await;
        assert!(matches!(gone, Err(BlobError::Changed(_))), "{gone:?}");
        let (hashed, _) = hash(&h, "final/one").await;
        assert_eq!(hashed.unwrap().sha256_hex, sha256_hex(FOX));
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
