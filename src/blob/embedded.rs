//! An S3-compatible store served in-process over a local folder, for development and tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3Request, S3Response, S3Result, S3};
use sha2::Digest as _;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// How long `stop` lets open connections finish their current request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// A running in-process S3 endpoint (path-style, SigV4 checked).
pub struct EmbeddedS3 {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl EmbeddedS3 {
    /// Serves `root` (created if missing) on `addr` (port 0 = any free port). Returns once listening.
    pub async fn start(
        root: &Path,
        addr: SocketAddr,
        access_key: &str,
        secret_key: &str,
    ) -> anyhow::Result<EmbeddedS3> {
        tokio::fs::create_dir_all(root)
            .await
            .with_context(|| format!("creating {}", root.display()))?;
        let fs = s3s_fs::FileSystem::new(root)
            .map_err(|e| anyhow::anyhow!("opening {} as a store: {e:?}", root.display()))?;
        let served = std::env::current_dir()
            .context("reading the working directory")?
            .join(root)
            .canonicalize()
            .with_context(|| format!("resolving {}", root.display()))?;
        let mut builder = S3ServiceBuilder::new(DiskKeys { fs, root: served });
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
        let service = builder.build();

        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .context("creating socket")?;
        // Lets a restart bind the same port while old connections sit in TIME_WAIT.
        socket.set_reuseaddr(true).context("setting SO_REUSEADDR")?;
        socket
            .bind(addr)
            .with_context(|| format!("binding {addr}"))?;
        let listener = socket.listen(1024).context("listening")?;
        let addr = listener.local_addr().context("reading local address")?;

        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, service, shutdown_rx));
        tracing::debug!(%addr, root = %root.display(), "embedded S3 listening");
        Ok(EmbeddedS3 {
            addr,
            shutdown,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, closes open connections within about a second, and releases the port.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        tracing::debug!(addr = %self.addr, "embedded S3 stopped");
    }
}

impl Drop for EmbeddedS3 {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // Aborting drops the listener and the JoinSet, which aborts every connection task.
            task.abort();
        }
    }
}

/// The longest file name the file systems under a store accept, in bytes (`NAME_MAX`).
const NAME_MAX: usize = 255;
/// Where keys too long for the file system are kept, under a name derived from them.
const LONG_KEYS: &str = ".long-keys/";

/// s3s-fs keeps an object at `{bucket}/{key}` and its metadata in files named
/// `.bucket-{base64 bucket}.object-{base64 key}[.upload-{uuid}].metadata.json`, so a key of
/// a component over 255 bytes, or of about 150 bytes in all, cannot be stored: the PUT
/// writes the object, then fails on its metadata and answers 500. This store gives
/// s3s-fs such keys under a fixed-length name instead: `.long-keys/{base64 SHA-256 of
/// the key}`. Shorter keys are kept as they are, so existing folders stay readable.
/// Listings show the derived names of long keys.
///
/// It also fills in what s3s-fs leaves out of multipart uploads: a part's declared SHA-256
/// is checked, ListParts answers each part's ETag in part order, and ListMultipartUploads
/// lists the uploads in progress. A part's ETag is kept beside it in
/// `.upload_id-{id}.etag-{n}`, a name that s3s-fs's own abort removes with the parts.
struct DiskKeys {
    fs: s3s_fs::FileSystem,
    /// The folder s3s-fs serves, as it resolved it.
    root: PathBuf,
}

fn base64_len(bytes: usize) -> usize {
    (bytes * 4).div_ceil(3)
}

/// The key s3s-fs is given for `key` in `bucket`.
fn disk_key(bucket: &str, key: &str) -> String {
    // The longest file name s3s-fs derives: a multipart upload's metadata.
    let metadata_name = ".bucket-".len()
        + base64_len(bucket.len())
        + ".object-".len()
        + base64_len(key.len())
        + ".upload-00000000-0000-0000-0000-000000000000".len()
        + ".metadata.json".len();
    let fits = metadata_name <= NAME_MAX && key.split('/').all(|part| part.len() <= NAME_MAX);
    if fits && !key.starts_with(LONG_KEYS) {
        return key.to_owned();
    }
    let digest = sha2::Sha256::digest(key.as_bytes());
    format!("{LONG_KEYS}{}", URL_SAFE_NO_PAD.encode(digest))
}

fn disk_source(source: &mut CopySource) {
    if let CopySource::Bucket { bucket, key, .. } = source {
        *key = disk_key(bucket, key).into();
    }
}

/// The S3 operations s3s-fs implements, each given the key s3s-fs can store.
#[async_trait::async_trait]
impl S3 for DiskKeys {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.fs.create_bucket(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.fs.delete_bucket(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.fs.get_bucket_location(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.fs.list_buckets(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.fs.list_objects(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.fs.list_objects_v2(req).await
    }

    async fn put_object(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        req.input.key = disk_key(&req.input.bucket, &req.input.key);
        let mismatch = check_body(&mut req.input.body, req.input.checksum_sha256.as_deref());
        let answer = self.fs.put_object(req).await;
        if mismatch.load(Ordering::SeqCst) {
            return Err(s3s::s3_error!(BadDigest, "checksum_sha256 mismatch"));
        }
        answer
    }

    async fn get_object(
        &self,
        mut req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        req.input.key = disk_key(&req.input.bucket, &req.input.key);
        // s3s-fs ignores If-Match on GET; S3 answers 412 when the version served is not the
        // one named, which is what lets ranged reads refuse a mix of two versions.
        let wanted = match req.input.if_match.take() {
            Some(ETagCondition::ETag(tag)) => Some(tag.value().to_owned()),
            _ => None,
        };
        let answer = self.fs.get_object(req).await?;
        if let Some(wanted) = wanted {
            let served = answer.output.e_tag.as_ref().map(|t| t.value().to_owned());
            if served.as_deref() != Some(wanted.as_str()) {
                return Err(s3s::s3_error!(PreconditionFailed));
            }
        }
        Ok(answer)
    }

    async fn head_object(
        &self,
        mut req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        req.input.key = disk_key(&req.input.bucket, &req.input.key);
        self.fs.head_object(req).await
    }

    async fn delete_object(
        &self,
        mut req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        req.input.key = disk_key(&req.input.bucket, &req.input.key);
        self.fs.delete_object(req).await
    }

    async fn delete_objects(
        &self,
        mut req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        let mut asked = std::collections::HashMap::new();
        for object in &mut req.input.delete.objects {
            let on_disk = disk_key(&bucket, &object.key);
            asked.insert(on_disk.clone(), std::mem::replace(&mut object.key, on_disk));
        }
        let mut resp = self.fs.delete_objects(req).await?;
        // The answer names the keys as they were asked for.
        let named = |key: &mut Option<String>| {
            if let Some(k) = key.as_mut() {
                if let Some(original) = asked.get(k.as_str()) {
                    k.clone_from(original);
                }
            }
        };
        for deleted in resp.output.deleted.iter_mut().flatten() {
            named(&mut deleted.key);
        }
        for error in resp.output.errors.iter_mut().flatten() {
            named(&mut error.key);
        }
        Ok(resp)
    }

    async fn copy_object(
        &self,
        mut req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        req.input.key = disk_key(&req.input.bucket, &req.input.key);
        disk_source(&mut req.input.copy_source);
        self.fs.copy_object(req).await
    }

    async fn create_multipart_upload(
        &self,
        mut req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let asked = req.input.key.clone();
        let bucket = req.input.bucket.clone();
        req.input.key = disk_key(&req.input.bucket, &req.input.key);
        let mut resp = self.fs.create_multipart_upload(req).await?;
        if let Some(id) = resp.output.upload_id.as_deref() {
            let named = serde_json::to_vec(&UploadNamed {
                bucket,
                key: asked.clone(),
            })
            .map_err(|e| s3s::s3_error!(e, InternalError))?;
            tokio::fs::write(self.sidecar(id, "key")?, named)
                .await
                .map_err(|e| s3s::s3_error!(e, InternalError))?;
        }
        resp.output.key = Some(asked);
        Ok(resp)
    }

    async fn upload_part(
        &self,
        mut req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        req.input.key = disk_key(&req.input.bucket, &req.input.key);
        let upload_id = req.input.upload_id.clone();
        let part_number = req.input.part_number;
        self.upload_in_progress(&upload_id).await?;
        let declared = req.input.checksum_sha256.clone();
        let mismatch = check_body(&mut req.input.body, declared.as_deref());
        let answer = self.fs.upload_part(req).await;
        if mismatch.load(Ordering::SeqCst) {
            return Err(s3s::s3_error!(BadDigest, "checksum_sha256 mismatch"));
        }
        let mut answer = answer?;
        let part = PartSeen {
            etag: answer
                .output
                .e_tag
                .as_ref()
                .map(|t| t.value().to_owned())
                .unwrap_or_default(),
            sha256: declared.clone(),
        };
        let seen = serde_json::to_vec(&part).map_err(|e| s3s::s3_error!(e, InternalError))?;
        tokio::fs::write(
            self.sidecar(&upload_id, &format!("seen-{part_number}"))?,
            seen,
        )
        .await
        .map_err(|e| s3s::s3_error!(e, InternalError))?;
        answer.output.checksum_sha256 = declared;
        Ok(answer)
    }

    async fn upload_part_copy(
        &self,
        mut req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        req.input.key = disk_key(&req.input.bucket, &req.input.key);
        disk_source(&mut req.input.copy_source);
        self.fs.upload_part_copy(req).await
    }

    async fn list_parts(
        &self,
        mut req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let asked = req.input.key.clone();
        let upload_id = req.input.upload_id.clone();
        self.upload_in_progress(&upload_id).await?;
        req.input.key = disk_key(&req.input.bucket, &req.input.key);
        let mut resp = self.fs.list_parts(req).await?;
        resp.output.key = Some(asked);
        let parts = resp.output.parts.get_or_insert_with(Vec::new);
        parts.sort_by_key(|p| p.part_number);
        for part in parts.iter_mut() {
            let Some(number) = part.part_number else {
                continue;
            };
            let Ok(path) = self.sidecar(&upload_id, &format!("seen-{number}")) else {
                continue;
            };
            if let Some(seen) = tokio::fs::read(path)
                .await
                .ok()
                .and_then(|raw| serde_json::from_slice::<PartSeen>(&raw).ok())
            {
                part.e_tag = Some(ETag::Strong(seen.etag));
                part.checksum_sha256 = seen.sha256;
            }
        }
        Ok(resp)
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let mut found: Vec<(String, String, std::time::SystemTime)> = Vec::new();
        let mut dir = tokio::fs::read_dir(&self.root)
            .await
            .map_err(|e| s3s::s3_error!(e, InternalError))?;
        while let Some(entry) = dir
            .next_entry()
            .await
            .map_err(|e| s3s::s3_error!(e, InternalError))?
        {
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix(".upload-"))
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            let Ok(path) = self.sidecar(id, "key") else {
                continue;
            };
            let Some(named) = tokio::fs::read(path)
                .await
                .ok()
                .and_then(|raw| serde_json::from_slice::<UploadNamed>(&raw).ok())
            else {
                continue;
            };
            if named.bucket != input.bucket || !named.key.starts_with(&prefix) {
                continue;
            }
            let initiated = entry
                .metadata()
                .await
                .and_then(|m| m.modified())
                .map_err(|e| s3s::s3_error!(e, InternalError))?;
            found.push((named.key, id.to_owned(), initiated));
        }
        found.sort();
        let after = (
            input.key_marker.clone().unwrap_or_default(),
            input.upload_id_marker.clone().unwrap_or_default(),
        );
        found.retain(|(key, id, _)| {
            (key.as_str(), id.as_str()) > (after.0.as_str(), after.1.as_str())
        });
        let max = usize::try_from(input.max_uploads.unwrap_or(1000).clamp(1, 1000)).unwrap_or(1000);
        let truncated = found.len() > max;
        found.truncate(max);
        let last = found.last().map(|(k, id, _)| (k.clone(), id.clone()));
        let uploads = found
            .into_iter()
            .map(|(key, upload_id, initiated)| MultipartUpload {
                key: Some(key),
                upload_id: Some(upload_id),
                initiated: Some(Timestamp::from(initiated)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            is_truncated: Some(truncated),
            next_key_marker: last.as_ref().filter(|_| truncated).map(|l| l.0.clone()),
            next_upload_id_marker: last.filter(|_| truncated).map(|l| l.1),
            max_uploads: Some(i32::try_from(max).unwrap_or(1000)),
            uploads: Some(uploads),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        mut req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let asked = req.input.key.clone();
        let upload_id = req.input.upload_id.clone();
        self.upload_in_progress(&upload_id).await?;
        req.input.key = disk_key(&req.input.bucket, &req.input.key);
        let mut resp = self.fs.complete_multipart_upload(req).await?;
        self.forget_upload(&upload_id).await;
        resp.output.key = Some(asked);
        Ok(resp)
    }

    async fn abort_multipart_upload(
        &self,
        mut req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.upload_in_progress(&req.input.upload_id).await?;
        req.input.key = disk_key(&req.input.bucket, &req.input.key);
        // s3s-fs removes every `.upload_id-{id}*` file, the notes of this store included.
        self.fs.abort_multipart_upload(req).await
    }
}

/// Which object a multipart upload in progress makes, noted when it is created.
#[derive(serde::Serialize, serde::Deserialize)]
struct UploadNamed {
    bucket: String,
    key: String,
}

/// What the store answered for a part when it was uploaded.
#[derive(serde::Serialize, serde::Deserialize)]
struct PartSeen {
    etag: String,
    sha256: Option<String>,
}

impl DiskKeys {
    /// A note kept beside an upload's parts: `.upload_id-{id}.{what}`.
    fn sidecar(&self, upload_id: &str, what: &str) -> S3Result<PathBuf> {
        let id = uuid::Uuid::parse_str(upload_id).map_err(|_| s3s::s3_error!(NoSuchUpload))?;
        Ok(self.root.join(format!(".upload_id-{id}.{what}")))
    }

    /// NoSuchUpload, as S3 answers, for an id that names no upload in progress; s3s-fs
    /// would answer AccessDenied, or list no parts.
    async fn upload_in_progress(&self, upload_id: &str) -> S3Result<()> {
        let id = uuid::Uuid::parse_str(upload_id).map_err(|_| s3s::s3_error!(NoSuchUpload))?;
        match tokio::fs::try_exists(self.root.join(format!(".upload-{id}.json"))).await {
            Ok(true) => Ok(()),
            _ => Err(s3s::s3_error!(NoSuchUpload)),
        }
    }

    /// Removes the notes of a completed upload (s3s-fs removed its parts).
    async fn forget_upload(&self, upload_id: &str) {
        let Ok(id) = uuid::Uuid::parse_str(upload_id) else {
            return;
        };
        let prefix = format!(".upload_id-{id}.");
        let Ok(mut dir) = tokio::fs::read_dir(&self.root).await else {
            return;
        };
        while let Ok(Some(entry)) = dir.next_entry().await {
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
            {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }
}

/// s3s-fs stores the bytes before it compares a declared SHA-256, so a refused PUT would
/// still replace the object: with a declared SHA-256 (base64), the body is checked as it
/// streams instead, and fails before the store keeps anything. The flag tells whether it did.
fn check_body(body: &mut Option<StreamingBlob>, declared: Option<&str>) -> Arc<AtomicBool> {
    let mismatch = Arc::new(AtomicBool::new(false));
    let expected =
        declared.and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok());
    if let Some(expected) = expected {
        *body = body.take().map(|inner| {
            StreamingBlob::new(CheckedBody {
                inner,
                hasher: sha2::Sha256::new(),
                expected,
                mismatch: Arc::clone(&mismatch),
                ended: false,
            })
        });
    }
    mismatch
}

async fn serve(listener: TcpListener, service: S3Service, mut shutdown: watch::Receiver<bool>) {
    let http = ConnBuilder::new(TokioExecutor::new());
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Streamed bodies go out in several writes; Nagle would hold each for a delayed ACK.
                    if let Err(err) = stream.set_nodelay(true) {
                        tracing::debug!(%err, "could not disable Nagle on an embedded S3 connection");
                    }
                    let http = http.clone();
                    let service = service.clone();
                    let shutdown = shutdown.clone();
                    conns.spawn(serve_conn(http, stream, service, shutdown));
                }
                // Usually EMFILE or a reset before accept; keep serving the rest.
                Err(err) => tracing::warn!(%err, "embedded S3 accept failed"),
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(left = conns.len(), "embedded S3 aborting slow connections");
    }
    conns.shutdown().await;
}

async fn serve_conn(
    http: ConnBuilder<TokioExecutor>,
    stream: tokio::net::TcpStream,
    service: S3Service,
    mut shutdown: watch::Receiver<bool>,
) {
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        res = conn.as_mut() => res,
        _ = shutdown.changed() => {
            // Idle keep-alive connections close at once; busy ones finish the current request.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%err, "embedded S3 connection ended with an error");
    }
}

/// A PUT body that hashes what passes and, at its end, fails if the SHA-256 is not the one
/// declared, so that the store drops its temporary file instead of keeping the bytes.
struct CheckedBody {
    inner: StreamingBlob,
    hasher: sha2::Sha256,
    expected: Vec<u8>,
    mismatch: Arc<AtomicBool>,
    ended: bool,
}

impl futures::Stream for CheckedBody {
    type Item = Result<bytes::Bytes, s3s::StdError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let next = std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_next(cx));
        std::task::Poll::Ready(match next {
            Some(Ok(chunk)) => {
                self.hasher.update(&chunk);
                Some(Ok(chunk))
            }
            Some(Err(e)) => Some(Err(e)),
            None if self.ended => None,
            None => {
                self.ended = true;
                let digest = self.hasher.finalize_reset();
                if digest.as_slice() == self.expected.as_slice() {
                    None
                } else {
                    self.mismatch.store(true, Ordering::SeqCst);
                    Some(Err("the body's SHA-256 is not the declared one".into()))
                }
            }
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        futures::Stream::size_hint(&self.inner)
    }
}

impl s3s::stream::ByteStream for CheckedBody {
    fn remaining_length(&self) -> s3s::stream::RemainingLength {
        self.inner.remaining_length()
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::PathBuf;
    use std::time::{Duration, SystemTime};

    use sha2::{Digest, Sha256};

    use super::EmbeddedS3;
    use crate::blob::{BlobError, BlobStore, HashedObject, S3Settings};

    pub const ACCESS_KEY: &str = "test-access-key";
    pub const SECRET_KEY: &str = "test-secret-key";
    pub const HOUR: Duration = Duration::from_secs(3600);

    /// An embedded store in a fresh temp folder plus a client for it; removes the folder on drop.
    pub struct Harness {
        pub server: Option<EmbeddedS3>,
        pub store: BlobStore,
        pub root: PathBuf,
    }

    impl Harness {
        pub async fn new() -> Harness {
            let root =
                std::env::temp_dir().join(format!("upconfirm-blob-{}", uuid::Uuid::new_v4()));
            let addr = "127.0.0.1:0".parse().unwrap();
            let server = EmbeddedS3::start(&root, addr, ACCESS_KEY, SECRET_KEY)
                .await
                .unwrap();
            let settings = S3Settings {
                endpoint: Some(server.endpoint()),
                region: "us-east-1".into(),
                bucket: "uploads".into(),
                access_key_id: Some(ACCESS_KEY.into()),
                secret_access_key: Some(SECRET_KEY.into()),
                force_path_style: true,
            };
            let store = BlobStore::connect(&settings).await.unwrap();
            store.ensure_bucket().await.unwrap();
            Harness {
                server: Some(server),
                store,
                root,
            }
        }

        /// A URL valid for an hour from now.
        pub async fn presign(&self, key: &str, content_type: &str) -> String {
            let now = SystemTime::now();
            self.store
                .presign_put(key, content_type, now, HOUR)
                .await
                .unwrap()
        }

        /// Uploads through a presigned URL the way a client would.
        pub async fn upload(&self, key: &str, content_type: &str, body: Vec<u8>) {
            let url = self.presign(key, content_type).await;
            let status = http_put(&url, content_type, body).await;
            assert!(status.is_success(), "{status}");
        }
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            self.server.take();
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    pub async fn http_put(url: &str, content_type: &str, body: Vec<u8>) -> reqwest::StatusCode {
        let request = reqwest::Client::new()
            .put(url)
            .header("content-type", content_type)
            .body(body);
        request.send().await.unwrap().status()
    }

    // A well-known MD5 test vector, so the ETag can be checked without an MD5 implementation.
    pub const FOX: &[u8] = b"The quick brown fox jumps over the lazy dog";
    pub const FOX_MD5: &str = "9e107d9d372bb6826bd81d3542a419d6";

    pub fn sha256_hex(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    pub async fn hash(h: &Harness, key: &str) -> (Result<HashedObject, BlobError>, Vec<u64>) {
        let mut seen = Vec::new();
        let res = h.store.sha256(key, &mut |n| seen.push(n)).await;
        (res, seen)
    }

    pub fn patterned(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, SystemTime};

    use reqwest::StatusCode;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    use super::test_support::{http_put, Harness, ACCESS_KEY, HOUR, SECRET_KEY};
    use super::EmbeddedS3;
    use crate::blob::BlobError;

    #[tokio::test]
    async fn restart_on_same_addr_keeps_objects() {
        let mut h = Harness::new().await;
        h.upload("kept/one", "text/plain", b"still here".to_vec())
            .await;
        let server = h.server.take().unwrap();
        let addr = server.addr();
        server.stop().await;

        let server = EmbeddedS3::start(&h.root, addr, ACCESS_KEY, SECRET_KEY)
            .await
            .unwrap();
        assert_eq!(server.addr(), addr);
        assert_eq!(server.endpoint(), format!("http://{addr}"));
        h.server = Some(server);
        assert_eq!(h.store.head("kept/one").await.unwrap().size, 10);
    }

    #[tokio::test]
    async fn stop_does_not_wait_for_stuck_connections() {
        let mut h = Harness::new().await;
        let addr = h.server.as_ref().unwrap().addr();
        // A request that never completes keeps its connection busy until it is cut.
        let mut stuck = tokio::net::TcpStream::connect(addr).await.unwrap();
        stuck
            .write_all(b"PUT /uploads/k HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;

        let started = Instant::now();
        h.server.take().unwrap().stop().await;
        assert!(started.elapsed() < Duration::from_secs(2));
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(1), stuck.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    }

    #[tokio::test]
    async fn head_against_stopped_store_is_transient_and_quick() {
        let mut h = Harness::new().await;
        h.upload("k", "text/plain", b"x".to_vec()).await;
        h.server.take().unwrap().stop().await;

        let started = Instant::now();
        let err = h.store.head("k").await.unwrap_err();
        assert!(matches!(err, BlobError::Transient(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn dropping_the_server_releases_the_port() {
        let mut h = Harness::new().await;
        let addr = h.server.as_ref().unwrap().addr();
        drop(h.server.take());
        // Abort is asynchronous; give the runtime a moment to drop the listener.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let server = EmbeddedS3::start(&h.root, addr, ACCESS_KEY, SECRET_KEY)
            .await
            .unwrap();
        h.server = Some(server);
        h.store.ensure_bucket().await.unwrap();
    }

    #[tokio::test]
    async fn long_keys_are_stored_and_answered() {
        let h = Harness::new().await;
        // A component over the file system's 255 bytes, and a key of 900 bytes in all.
        let key = format!("ns/{}/{}", "b".repeat(120), "😀".repeat(194));
        assert_eq!(key.len(), 900);
        let url = h.presign(&key, "text/plain").await;
        let status = http_put(&url, "text/plain", b"long".to_vec()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(h.store.head(&key).await.unwrap().size, 4);

        let copy = format!("confirmed/{key}");
        let etag = h.store.head(&key).await.unwrap().etag;
        h.store.copy_if_match(&key, &copy, &etag).await.unwrap();
        let hashed = h.store.sha256(&copy, &mut |_| {}).await.unwrap();
        assert_eq!(hashed.bytes, 4);
        h.store.delete(&key).await.unwrap();
        assert!(matches!(h.store.head(&key).await, Err(BlobError::NotFound)));
        assert_eq!(h.store.head(&copy).await.unwrap().size, 4);
    }

    #[test]
    fn disk_keys_fit_the_file_system() {
        let bucket = "b".repeat(63);
        for key in [
            "a.txt".to_owned(),
            "x".repeat(1024),
            format!("a/{}/b", "y".repeat(300)),
            "😀".repeat(256),
        ] {
            let on_disk = super::disk_key(&bucket, &key);
            let metadata = format!(
                ".bucket-{}.object-{}.upload-{}.metadata.json",
                URL_SAFE_NO_PAD.encode(&bucket),
                URL_SAFE_NO_PAD.encode(&on_disk),
                uuid::Uuid::nil()
            );
            assert!(metadata.len() <= super::NAME_MAX, "{key}");
            assert!(on_disk.split('/').all(|p| p.len() <= super::NAME_MAX));
            assert_eq!(on_disk, super::disk_key(&bucket, &key), "stable");
        }
        assert_eq!(super::disk_key("b", "ns/a.txt"), "ns/a.txt");
        assert_ne!(
            super::disk_key("b", "x".repeat(300).as_str()),
            super::disk_key("b", "x".repeat(301).as_str())
        );
    }

    #[tokio::test]
    async fn keys_over_1024_bytes_are_refused_as_s3_does() {
        let h = Harness::new().await;
        let key = "k".repeat(1025);
        let url = h.presign(&key, "text/plain").await;
        let status = http_put(&url, "text/plain", b"x".to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let head = h.store.head(&key).await;
        assert!(matches!(head, Err(BlobError::Rejected(_))), "{head:?}");
    }

    #[tokio::test]
    async fn put_with_other_content_type_than_signed_is_refused() {
        let h = Harness::new().await;
        let url = h.presign("up/a", "image/png").await;
        let status = http_put(&url, "text/html", b"<p>".to_vec()).await;
        assert!(status.is_client_error(), "{status}");
        assert!(matches!(
            h.store.head("up/a").await,
            Err(BlobError::NotFound)
        ));
    }

    #[tokio::test]
    async fn put_with_tampered_signature_is_refused() {
        let h = Harness::new().await;
        let url = h.presign("up/b", "text/plain").await;
        let at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
        let flipped = if url.as_bytes()[at] == b'0' { "1" } else { "0" };
        let tampered = format!("{}{}{}", &url[..at], flipped, &url[at + 1..]);
        let status = http_put(&tampered, "text/plain", b"x".to_vec()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn put_with_expired_url_is_refused() {
        let h = Harness::new().await;
        let start = SystemTime::now() - 2 * HOUR;
        let url = h
            .store
            .presign_put("up/c", "text/plain", start, Duration::from_secs(60))
            .await
            .unwrap();
        let status = http_put(&url, "text/plain", b"x".to_vec()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}
