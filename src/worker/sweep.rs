//! The expiry sweep: uploads still `PENDING` well past their URL's expiry are failed, and
//! (when configured) their orphaned objects deleted. Any number of workers may run it: each
//! round locks the rows it takes and skips those another sweeper holds.

use std::time::Duration;

use futures::StreamExt;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::blob::{BlobError, BlobStore};
use crate::domain::UploadKeys;
use crate::service::config::SweepConfig;
use crate::store::uploads;

/// Uploads one round takes at most.
const ROUND_LIMIT: i64 = 500;

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub expired: u64,
    pub objects_deleted: u64,
    /// Multipart uploads of expired uploads aborted, their parts dropped.
    pub multipart_aborted: u64,
    /// Left `PENDING` because their object or parts could not be removed; the next round retries.
    pub deferred: u64,
}

/// Sweeps every interval until `shutdown`: fails expired uploads, then aborts the multipart
/// uploads in the store that no upload owns.
pub async fn run(pool: PgPool, blob: BlobStore, cfg: SweepConfig, shutdown: CancellationToken) {
    let Some(interval) = cfg.interval() else {
        return;
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        loop {
            match sweep_once(&pool, &blob, &cfg).await {
                Ok(report) => {
                    if report.expired > 0 || report.deferred > 0 {
                        tracing::info!(?report, "expired uploads swept");
                    }
                    // A full round of expired uploads: there may be more waiting.
                    if report.expired < ROUND_LIMIT as u64 || report.deferred > 0 {
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "expiry sweep failed; will retry");
                    break;
                }
            }
        }
        match abort_orphans(&pool, &blob, cfg.grace()).await {
            Ok(0) => {}
            Ok(aborted) => tracing::info!(aborted, "multipart uploads no upload owns were aborted"),
            Err(err) => tracing::warn!(error = %err, "orphaned multipart sweep failed; will retry"),
        }
    }
}

/// One round. Parts of expired multipart uploads are dropped; with deletion on, objects
/// are deleted too. Both happen while the rows are locked, and only uploads whose store
/// side is gone are failed: a confirm racing the sweep waits for it, then finds the
/// object (or parts) missing, so no object is ever recorded for deleted bytes.
pub async fn sweep_once(
    pool: &PgPool,
    blob: &BlobStore,
    cfg: &SweepConfig,
) -> anyhow::Result<SweepReport> {
    let mut tx = pool.begin().await?;
    let claimed = uploads::claim_expired(&mut tx, cfg.grace(), ROUND_LIMIT).await?;
    if claimed.is_empty() {
        return Ok(SweepReport::default());
    }
    let mut report = SweepReport::default();
    let results: Vec<(String, Result<Released, BlobError>)> = futures::stream::iter(claimed)
        .map(|upload| async move {
            let released = release(blob, &upload, cfg.expiry_delete_objects).await;
            (upload.id, released)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut expire = Vec::with_capacity(results.len());
    for (id, released) in results {
        match released {
            Ok(released) => {
                report.multipart_aborted += u64::from(released.multipart_aborted);
                report.objects_deleted += u64::from(released.objects_deleted);
                expire.push(id);
            }
            Err(err) => {
                tracing::warn!(upload_id = %id, error = %err, "could not remove an expired upload's object or parts");
                report.deferred += 1;
            }
        }
    }
    report.expired = uploads::mark_expired(&mut tx, &expire).await?;
    tx.commit().await?;
    Ok(report)
}

/// What was removed from the store for an expired upload.
struct Released {
    multipart_aborted: bool,
    objects_deleted: bool,
}

async fn release(
    blob: &BlobStore,
    upload: &uploads::Expired,
    delete_objects: bool,
) -> Result<Released, BlobError> {
    let keys = UploadKeys::of(&upload.s3_key);
    if let Some(multipart_id) = &upload.multipart_upload_id {
        blob.abort_multipart(&keys.confirmed, multipart_id).await?;
    }
    if delete_objects {
        blob.delete_upload_objects(&upload.s3_key).await?;
    }
    Ok(Released {
        multipart_aborted: upload.multipart_upload_id.is_some(),
        objects_deleted: delete_objects,
    })
}

/// Multipart uploads one round of the orphan sweep looks at, at most.
const ORPHAN_ROUND_LIMIT: usize = 1000;

/// Aborts the multipart uploads under the service's keys that no upload owns: one whose
/// row was never stored (the API stopped between starting it and storing the upload),
/// or whose upload ended without assembling it (canceled, failed and expired). Only
/// those started more than `grace` ago, so that an upload being created is left alone.
/// Answers how many were aborted.
pub async fn abort_orphans(
    pool: &PgPool,
    blob: &BlobStore,
    grace: Duration,
) -> anyhow::Result<u64> {
    let in_progress = blob
        .multipart_uploads(UploadKeys::CONFIRMED_PREFIX, ORPHAN_ROUND_LIMIT)
        .await?;
    let settled_before = std::time::SystemTime::now() - grace;
    let old: Vec<_> = in_progress
        .into_iter()
        .filter(|u| u.initiated.is_some_and(|at| at < settled_before))
        .collect();
    if old.is_empty() {
        return Ok(0);
    }
    let ids: Vec<String> = old.iter().map(|u| u.upload_id.clone()).collect();
    let owned: std::collections::HashSet<String> = uploads::multipart_owned(pool, &ids, grace)
        .await?
        .into_iter()
        .collect();
    let mut aborted = 0;
    for orphan in old.iter().filter(|u| !owned.contains(&u.upload_id)) {
        match blob.abort_multipart(&orphan.key, &orphan.upload_id).await {
            Ok(()) => aborted += 1,
            Err(err) => {
                tracing::warn!(key = %orphan.key, error = %err, "could not abort an orphaned multipart upload")
            }
        }
    }
    Ok(aborted)
}

/// Usage ledger rows folded into their namespaces per round, at most.
const USAGE_FOLD_LIMIT: i64 = 100_000;

/// Folds the usage ledger every `interval` until `shutdown`, so that it stays short: quota
/// checks sum what is left of it. Workers may all run this; rows are taken with SKIP LOCKED.
pub async fn fold_usage(pool: PgPool, interval: Option<Duration>, shutdown: CancellationToken) {
    let Some(interval) = interval else {
        return;
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match crate::store::tenancy::fold_usage(&pool, USAGE_FOLD_LIMIT).await {
            Ok(0) => {}
            Ok(moved) => tracing::debug!(moved, "usage ledger folded"),
            Err(err) => tracing::warn!(error = %err, "usage fold failed; will retry"),
        }
    }
}
