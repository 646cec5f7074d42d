//! Request handling: every S3 operation s3s-fs implements, given the key s3s-fs can store,
//! with what s3s-fs leaves out of conditional reads, checksums and multipart uploads.

use std::path::PathBuf;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, S3};

use super::checked::check_body;
use super::keys::{disk_key, disk_source};
use super::uploads::{PartSeen, UploadNamed};

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
/// `.upload_id-{id}.seen-{n}`, a name that s3s-fs's own abort removes with the parts.
pub(super) struct DiskKeys {
    pub(super) fs: s3s_fs::FileSystem,
    /// The folder s3s-fs serves, as it resolved it.
    pub(super) root: PathBuf,
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
        let check = check_body(&mut req.input.body, req.input.checksum_sha256.as_deref());
        check.answer(self.fs.put_object(req).await)
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
        let check = check_body(&mut req.input.body, declared.as_deref());
        let mut answer = check.answer(self.fs.upload_part(req).await)?;
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
