//! The expiry sweep: uploads still `PENDING` well past their URL's expiry are failed, and
//! (when configured) their orphaned objects deleted. Any number of workers may run it: each
//! round locks the rows it takes and skips those another sweeper holds.

use std::time::Duration;

use futures::StreamExt;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::blob::BlobStore;
use crate::config::SweepConfig;
use crate::store::uploads;

/// Uploads one round takes at most.
const ROUND_LIMIT: i64 = 500;

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub expired: u64,
    pub objects_deleted: u64,
    /// Left `PENDING` because their object could not be deleted; the next round retries.
    pub deferred: u64,
}

/// Sweeps every interval until `shutdown`, failing expired uploads.
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
    }
}

/// One round. With deletion on, objects are deleted while their rows are locked, and only
/// uploads whose object is gone are failed: a confirm racing the sweep waits for it, then
/// finds the object missing, so no object is ever recorded for deleted bytes.
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
    let expire: Vec<String> = if cfg.expiry_delete_objects {
        let results: Vec<(String, bool)> = futures::stream::iter(claimed)
            .map(|(id, key)| async move {
                match blob.delete_upload_objects(&key).await {
                    Ok(()) => (id, true),
                    Err(err) => {
                        tracing::warn!(upload_id = %id, error = %err, "could not delete an expired upload's object");
                        (id, false)
                    }
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let mut gone = Vec::with_capacity(results.len());
        for (id, deleted) in results {
            if deleted {
                report.objects_deleted += 1;
                gone.push(id);
            } else {
                report.deferred += 1;
            }
        }
        gone
    } else {
        claimed.into_iter().map(|(id, _)| id).collect()
    };
    report.expired = uploads::mark_expired(&mut tx, &expire).await?;
    tx.commit().await?;
    Ok(report)
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
