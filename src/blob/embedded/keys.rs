//! The names s3s-fs is given for keys: a key too long for the file system is kept under a
//! fixed-length name derived from it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use s3s::dto::CopySource;
use sha2::Digest as _;

/// The longest file name the file systems under a store accept, in bytes (`NAME_MAX`).
const NAME_MAX: usize = 255;
/// Where keys too long for the file system are kept, under a name derived from them.
const LONG_KEYS: &str = ".long-keys/";

fn base64_len(bytes: usize) -> usize {
    (bytes * 4).div_ceil(3)
}

/// The key s3s-fs is given for `key` in `bucket`.
pub(super) fn disk_key(bucket: &str, key: &str) -> String {
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

pub(super) fn disk_source(source: &mut CopySource) {
    if let CopySource::Bucket { bucket, key, .. } = source {
        *key = disk_key(bucket, key).into();
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use reqwest::StatusCode;

    use crate::blob::embedded::test_support::{http_put, Harness};
    use crate::blob::BlobError;

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
}
