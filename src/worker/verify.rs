//! Steps 1–4 of a confirmation: the object is what the client declared, kept where no
//! presigned URL can overwrite it (or assembled from its parts), and hashed.

use std::time::{Duration, Instant};

use serde_json::json;

use super::pipeline::{Pipeline, StepError};
use crate::blob::{BlobError, ObjectHead, OpenObject, StoredPart};
use crate::domain::{
    etags_match, number_runs, unquote_etag, ConfirmOptions, ContentHash, Failure, PartsCheck,
    TaskId, UploadKeys,
};
use crate::store::{tasks, UploadRow};

impl Pipeline {
    /// Checks the staging object against what the client gave, and copies exactly that
    /// version to the confirmed key; answers the verified object's head and key. A run that
    /// finds the staging object gone carries on from a confirmed copy that an earlier run
    /// made (only a verified version is ever copied there).
    ///
    /// A hash-verified upload whose object has the declared SHA-256, checked by the store,
    /// is not copied: its URL signs that digest, so whatever is PUT through it again is the
    /// same bytes, and the object can stay where it is. Confirm then costs a HEAD, whatever
    /// the size; a store that does not answer the checksum gets the copy.
    pub(super) async fn verify_and_keep(
        &self,
        keys: &UploadKeys,
        upload: &UploadRow,
        options: &ConfirmOptions,
    ) -> Result<(ObjectHead, String), StepError> {
        let head = match self.blob.head(&keys.staging).await {
            Ok(head) => head,
            Err(BlobError::NotFound) => {
                let head = self.blob.head(&keys.confirmed).await?;
                check_head(&head, options)?;
                tracing::info!(key = %keys.confirmed, "staging object gone; confirming the copy made before");
                return Ok((head, keys.confirmed.clone()));
            }
            Err(err) => return Err(err.into()),
        };
        check_head(&head, options)?;
        let sealed = upload.enforce_file_hash
            && upload.file_hash.is_some()
            && head.sha256_hex.as_deref() == upload.file_hash.as_deref();
        if sealed {
            return Ok((head, keys.staging.clone()));
        }
        self.blob
            .copy_if_match(&keys.staging, &keys.confirmed, &head.etag)
            .await?;
        Ok((head, keys.confirmed.clone()))
    }

    /// Completes an upload in parts: every part of the plan must be in the store, of the
    /// size the plan gives it; then the store assembles them at the confirmed key, and that
    /// object is checked against what the client gave. A run that finds the multipart
    /// upload gone carries on from the object an earlier run assembled.
    pub(super) async fn assemble(
        &self,
        upload: &UploadRow,
        multipart_id: &str,
        keys: &UploadKeys,
        options: &ConfirmOptions,
    ) -> Result<ObjectHead, StepError> {
        let Some(plan) = upload.part_plan() else {
            return Err(StepError::Permanent(Failure::Refused(
                "the upload's part plan is incomplete".into(),
            )));
        };
        match self.blob.list_parts(&keys.confirmed, multipart_id).await {
            Ok(stored) => {
                let sizes: Vec<(i32, i64)> = stored.iter().map(|p| (p.number, p.size)).collect();
                match plan.check(&sizes) {
                    PartsCheck::Complete => {}
                    PartsCheck::Missing(missing) => {
                        return Err(StepError::Permanent(Failure::mismatch(
                            "parts_missing",
                            format!(
                                "{} of {} parts are not uploaded: {}; upload them, then confirm again",
                                missing.len(),
                                plan.part_count,
                                number_runs(&missing)
                            ),
                            json!({ "part_count": plan.part_count }),
                            json!({ "missing_parts": missing }),
                        )))
                    }
                    PartsCheck::WrongSize(wrong) => {
                        let numbers: Vec<i32> = wrong.iter().map(|w| w.0).collect();
                        return Err(StepError::Permanent(Failure::mismatch(
                            "part_size_mismatch",
                            format!(
                                "parts {} do not have the size the plan gives them; upload them again, then confirm again",
                                number_runs(&numbers)
                            ),
                            json!(wrong.iter().map(|w| json!({ "part_number": w.0, "size_bytes": w.1 })).collect::<Vec<_>>()),
                            json!(wrong.iter().map(|w| json!({ "part_number": w.0, "size_bytes": w.2 })).collect::<Vec<_>>()),
                        )));
                    }
                }
                let parts: Vec<StoredPart> =
                    stored.into_iter().filter(|p| plan.has(p.number)).collect();
                match self
                    .blob
                    .complete_multipart(&keys.confirmed, multipart_id, &parts)
                    .await
                {
                    // Completed meanwhile by another run of this confirmation.
                    Ok(()) | Err(BlobError::NotFound) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            Err(BlobError::NotFound) => {
                tracing::info!(key = %keys.confirmed, "multipart upload gone; confirming the object assembled before");
            }
            Err(err) => return Err(err.into()),
        }
        let head = self.blob.head(&keys.confirmed).await?;
        check_head(&head, options)?;
        Ok(head)
    }

    pub(super) async fn content_hash(
        &self,
        task_id: &TaskId,
        head: &ObjectHead,
        body: Option<OpenObject>,
    ) -> Result<ContentHash, StepError> {
        let Some(body) = body else {
            return Ok(ContentHash::from_etag(&head.etag));
        };
        if let Some(hash) = head
            .sha256_hex
            .as_deref()
            .and_then(|h| ContentHash::parse(h).ok())
        {
            return Ok(hash);
        }
        let (tx, rx) = tokio::sync::watch::channel(0u64);
        let reporter = self.spawn_progress_reporter(task_id, head.size, rx);
        let mut progress = move |done: u64| {
            tx.send_replace(done);
        };
        let hashed = body.sha256(&mut progress).await;
        reporter.abort();
        if hashed.is_ok() {
            metrics::counter!(crate::service::metrics::HASHED_BYTES).increment(head.size);
        }
        // The body was checked against the size its headers gave.
        let hashed = hashed?;
        ContentHash::parse(&hashed.sha256_hex)
            .map_err(|e| StepError::Transient(format!("storage returned a bad hash: {e}")))
    }

    /// Writes hashing progress at most once a second, however fast bytes arrive.
    fn spawn_progress_reporter(
        &self,
        task_id: &TaskId,
        total: u64,
        mut rx: tokio::sync::watch::Receiver<u64>,
    ) -> tokio::task::JoinHandle<()> {
        let pipeline = self.clone();
        let task_id = task_id.clone();
        tokio::spawn(async move {
            let mut last = Instant::now();
            while rx.changed().await.is_ok() {
                let wait = Duration::from_secs(1).saturating_sub(last.elapsed());
                tokio::time::sleep(wait).await;
                let done = *rx.borrow_and_update();
                if let Err(e) = pipeline.report_progress(&task_id, done, total).await {
                    tracing::debug!(error = ?e, "progress not recorded");
                }
                last = Instant::now();
            }
        })
    }

    pub(super) async fn report_progress(
        &self,
        task_id: &TaskId,
        done: u64,
        total: u64,
    ) -> Result<(), StepError> {
        let percentage = if total == 0 {
            100.0
        } else {
            (done as f64 * 100.0 / total as f64).min(100.0)
        };
        let progress =
            json!({ "bytes_done": done, "bytes_total": total, "percentage": percentage });
        tasks::set_progress(&self.pool, task_id, &progress).await?;
        Ok(())
    }
}

/// Steps 2–3: the ETag and size the client gave must be S3's.
fn check_head(head: &ObjectHead, options: &ConfirmOptions) -> Result<(), StepError> {
    if let Some(given) = &options.etag {
        if !etags_match(given, &head.etag) {
            return Err(StepError::Permanent(Failure::mismatch(
                "etag_mismatch",
                "the given etag differs from the stored object's ETag",
                json!(unquote_etag(given)),
                json!(unquote_etag(&head.etag)),
            )));
        }
    }
    if let Some(given) = options.file_size_bytes {
        if u64::try_from(given).ok() != Some(head.size) {
            return Err(StepError::Permanent(Failure::mismatch(
                "size_mismatch",
                "the given file_size_bytes differs from the stored object's size",
                json!(given),
                json!(head.size),
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> ObjectHead {
        ObjectHead {
            size: 10,
            etag: "abc".into(),
            sha256_hex: None,
            content_type: None,
        }
    }

    fn reason(result: Result<(), StepError>) -> Option<String> {
        match result {
            Ok(()) => None,
            Err(StepError::Permanent(failure)) => Some(failure.reason().to_owned()),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn head_checks() {
        let opts = |etag: Option<&str>, size: Option<i64>| ConfirmOptions {
            etag: etag.map(str::to_owned),
            file_size_bytes: size,
            auto_submit_batch: false,
        };
        let table = [
            (opts(None, None), None),
            (opts(Some("\"ABC\""), Some(10)), None),
            (opts(Some("abd"), None), Some("etag_mismatch")),
            (opts(None, Some(11)), Some("size_mismatch")),
            (opts(Some("abd"), Some(11)), Some("etag_mismatch")),
        ];
        for (options, want) in table {
            assert_eq!(
                reason(check_head(&head(), &options)).as_deref(),
                want,
                "{options:?}"
            );
        }
    }
}
