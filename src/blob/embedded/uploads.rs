//! The notes this store keeps beside a multipart upload's parts: which object it makes, and
//! what was answered for each part.

use std::path::PathBuf;

use s3s::S3Result;

use super::handler::DiskKeys;

/// Which object a multipart upload in progress makes, noted when it is created.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct UploadNamed {
    pub(super) bucket: String,
    pub(super) key: String,
}

/// What the store answered for a part when it was uploaded.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct PartSeen {
    pub(super) etag: String,
    pub(super) sha256: Option<String>,
}

impl DiskKeys {
    /// A note kept beside an upload's parts: `.upload_id-{id}.{what}`.
    pub(super) fn sidecar(&self, upload_id: &str, what: &str) -> S3Result<PathBuf> {
        let id = uuid::Uuid::parse_str(upload_id).map_err(|_| s3s::s3_error!(NoSuchUpload))?;
        Ok(self.root.join(format!(".upload_id-{id}.{what}")))
    }

    /// NoSuchUpload, as S3 answers, for an id that names no upload in progress; s3s-fs
    /// would answer AccessDenied, or list no parts.
    pub(super) async fn upload_in_progress(&self, upload_id: &str) -> S3Result<()> {
        let id = uuid::Uuid::parse_str(upload_id).map_err(|_| s3s::s3_error!(NoSuchUpload))?;
        match tokio::fs::try_exists(self.root.join(format!(".upload-{id}.json"))).await {
            Ok(true) => Ok(()),
            _ => Err(s3s::s3_error!(NoSuchUpload)),
        }
    }

    /// Removes the notes of a completed upload (s3s-fs removed its parts).
    pub(super) async fn forget_upload(&self, upload_id: &str) {
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
