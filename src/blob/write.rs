//! Writes inside the bucket: deleting objects, and copying the version that was verified.

use aws_sdk_s3::error::ProvideErrorMetadata;

use crate::domain::{unquote_etag, UploadKeys};

use super::client::whole_object_attempt;
use super::error::{failure, http_status};
use super::{BlobError, BlobStore};

impl BlobStore {
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
            .config_override(whole_object_attempt())
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

#[cfg(all(test, feature = "embedded-s3"))]
mod tests {
    use crate::blob::embedded::test_support::{hash, sha256_hex, Harness, FOX, FOX_MD5};
    use crate::blob::BlobError;

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
}
