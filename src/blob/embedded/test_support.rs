//! What the store's unit tests share: an embedded store in a temp folder with a client for
//! it, uploads as a client makes them, and test data.

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
        let root = std::env::temp_dir().join(format!("upconfirm-blob-{}", uuid::Uuid::new_v4()));
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
