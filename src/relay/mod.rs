//! The outbox relay: publishes what the API could not, from any number of replicas.

pub mod dispatch;

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::queue::{Publisher, QueueError};
use crate::service::config::RelayConfig;
use crate::store::outbox::{self, OutboxRow};

/// Rows one sweep takes at most.
const SWEEP_LIMIT: i64 = 200;

/// Sweeps the outbox every interval until `shutdown`.
pub async fn run(
    pool: PgPool,
    publisher: Publisher,
    cfg: RelayConfig,
    shutdown: CancellationToken,
) {
    let interval = Duration::from_millis(cfg.relay_interval_ms);
    let min_age = Duration::from_millis(cfg.relay_min_age_ms);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        loop {
            match sweep(&pool, &publisher, min_age).await {
                Ok(n) if n as i64 == SWEEP_LIMIT => continue,
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(published = n, "relay published outbox rows");
                    }
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "relay sweep failed; will retry");
                    break;
                }
            }
        }
    }
}

/// Publishes up to [`SWEEP_LIMIT`] rows and deletes those the broker confirmed, in one
/// transaction whose row locks keep other relays off them.
pub async fn sweep(
    pool: &PgPool,
    publisher: &Publisher,
    min_age: Duration,
) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    let rows = outbox::claim(&mut tx, min_age, SWEEP_LIMIT).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let (confirmed, first_error) = publish_rows(publisher, rows.iter()).await;
    outbox::delete_many(&mut tx, &confirmed).await?;
    tx.commit().await?;
    match first_error {
        Some(e) if confirmed.is_empty() => Err(e.into()),
        _ => Ok(confirmed.len()),
    }
}

/// Publishes the rows side by side, each confirmed by the broker: the ids it confirmed,
/// and the first failure.
pub async fn publish_rows(
    publisher: &Publisher,
    rows: impl Iterator<Item = &OutboxRow>,
) -> (Vec<i64>, Option<QueueError>) {
    let publishes = rows.map(|row| async move {
        let payload = row.payload.to_string();
        publisher
            .publish(
                &row.exchange,
                &row.routing_key,
                &row.message_id,
                payload.as_bytes(),
            )
            .await
            .map(|()| row.id)
    });
    let results = futures::future::join_all(publishes).await;
    let mut confirmed = Vec::with_capacity(results.len());
    let mut first_error = None;
    for result in results {
        match result {
            Ok(id) => confirmed.push(id),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    (confirmed, first_error)
}
