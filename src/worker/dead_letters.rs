//! The dead-letter consumer, run by every worker: fails the task of each job the queue
//! gave up on (with the last error it recorded), and leaves in the dead-letter queue only
//! what no task can be found for (undecodable messages, jobs naming unknown tasks) for an
//! operator to look at. It also puts back on the queue long jobs whose lease lapsed.

use std::time::Duration;

use anyhow::Context;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::AMQPValue;
use lapin::{Channel, Connection};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::queue::{self, ConfirmJob, Topology};
use crate::store::completion::TaskOutputs;
use crate::store::dead_letters::{self, DeadOutcome};

/// Lapsed leases one pass takes at most.
const LAPSED_LIMIT: i64 = 100;

/// How often the queue is read through even when it holds no more than what was left
/// last time (which would all be messages no task can be found for).
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// What one look at the dead-letter queue did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterSweep {
    /// Tasks failed now.
    pub failed: usize,
    /// Messages of tasks that had ended already, removed.
    pub dropped: usize,
    /// Messages left for an operator (undecodable, or naming no task).
    pub left: usize,
    /// False when the queue held no more than `skip_up_to` and was not read.
    pub looked: bool,
}

/// Every `interval` until `shutdown`: the dead-letter queue, then lapsed leases.
pub async fn run(
    amqp_url: String,
    topology: Topology,
    pool: PgPool,
    interval: Duration,
    outputs: TaskOutputs,
    shutdown: CancellationToken,
) {
    let mut conn: Option<Connection> = None;
    let mut left_last: Option<u32> = None;
    let mut last_full = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
        if conn.as_ref().is_none_or(|c| !c.status().connected()) {
            conn = match queue::connect(
                &amqp_url,
                &queue::connection_name("dead-letters", &topology),
            )
            .await
            {
                Ok(c) => Some(c),
                Err(err) => {
                    tracing::warn!(error = %err, "dead-letter consumer cannot reach the broker");
                    None
                }
            };
        }
        if let Some(c) = &conn {
            let skip_up_to = if last_full.elapsed() >= FULL_SWEEP_EVERY {
                last_full = tokio::time::Instant::now();
                None
            } else {
                left_last
            };
            match sweep_with(c, &topology, &pool, skip_up_to, &outputs).await {
                Ok(s) => {
                    if s.failed > 0 || s.dropped > 0 {
                        tracing::warn!(
                            failed = s.failed,
                            dropped = s.dropped,
                            left = s.left,
                            "dead-lettered jobs settled"
                        );
                    }
                    if s.looked {
                        left_last = u32::try_from(s.left).ok();
                    }
                }
                Err(err) => {
                    left_last = None;
                    tracing::warn!(error = ?err, "dead-letter sweep failed; will retry");
                }
            }
        }
        match dead_letters::requeue_lapsed(
            &pool,
            &topology.confirm_queue(),
            i32::try_from(topology.delivery_limit).unwrap_or(i32::MAX),
            LAPSED_LIMIT,
            &outputs,
        )
        .await
        {
            Ok(l) if l.requeued > 0 || l.failed > 0 => {
                if l.failed > 0 {
                    metrics::counter!(crate::service::metrics::DEAD_LETTERED, "reason" => "lease_lapsed")
                        .increment(l.failed as u64);
                    crate::service::metrics::confirmations(
                        "failed",
                        "lease_lapsed",
                        l.failed as u64,
                    );
                }
                tracing::warn!(
                    requeued = l.requeued,
                    failed = l.failed,
                    "lapsed leases taken back"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "lapsed-lease sweep failed; will retry"),
        }
    }
    if let Some(c) = conn {
        let _ = c.close(200, "stopping".into()).await;
    }
}

/// Looks once at every message in the dead-letter queue (on its own channel of `conn`),
/// unless it holds no more than `skip_up_to` messages: those left by the last look.
pub async fn sweep_with(
    conn: &Connection,
    topology: &Topology,
    pool: &PgPool,
    skip_up_to: Option<u32>,
    outputs: &TaskOutputs,
) -> anyhow::Result<DeadLetterSweep> {
    let channel = conn.create_channel().await?;
    let result = sweep_channel(&channel, topology, pool, skip_up_to, outputs).await;
    // Closing the channel hands back, unchanged, every message left unsettled.
    let _ = channel.close(200, "sweep done".into()).await;
    result
}

async fn sweep_channel(
    channel: &Channel,
    topology: &Topology,
    pool: &PgPool,
    skip_up_to: Option<u32>,
    outputs: &TaskOutputs,
) -> anyhow::Result<DeadLetterSweep> {
    let queue = topology.dead_letter_queue();
    let waiting = queue::ready_count(channel, &queue).await?;
    let mut sweep = DeadLetterSweep::default();
    if skip_up_to.is_some_and(|n| waiting <= n) {
        return Ok(sweep);
    }
    sweep.looked = true;
    // Each message once: those left are held unsettled until the channel closes.
    for _ in 0..waiting {
        let Some(got) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        let delivery = got.delivery;
        let Ok(job) = serde_json::from_slice::<ConfirmJob>(&delivery.data) else {
            sweep.left += 1;
            continue;
        };
        let reason = death_reason(&delivery);
        let outcome = dead_letters::fail_dead(pool, &job.task_id, &job.upload_id, &reason, outputs)
            .await
            .context("failing a dead-lettered task")?;
        match outcome {
            DeadOutcome::UnknownTask => {
                sweep.left += 1;
                continue;
            }
            DeadOutcome::Failed => {
                sweep.failed += 1;
                metrics::counter!(crate::service::metrics::DEAD_LETTERED, "reason" => reason.clone())
                    .increment(1);
                crate::service::metrics::confirmations("failed", "dead_lettered", 1);
            }
            DeadOutcome::AlreadyEnded => sweep.dropped += 1,
        }
        delivery.ack(BasicAckOptions::default()).await?;
    }
    Ok(sweep)
}

/// Why the broker dead-lettered a message, from its `x-death` header.
fn death_reason(delivery: &Delivery) -> String {
    let first_death = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-death"))
        .and_then(|v| match v {
            AMQPValue::FieldArray(a) => a.as_slice().first().cloned(),
            _ => None,
        });
    match &first_death {
        Some(AMQPValue::FieldTable(t)) => match t.inner().get("reason") {
            Some(AMQPValue::LongString(s)) => s.to_string(),
            _ => "dead_lettered".to_owned(),
        },
        _ => "dead_lettered".to_owned(),
    }
}

/// A message left in the dead-letter queue, as `admin dlq list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Peeked {
    pub reason: String,
    /// The body, as text when it is UTF-8 (cut to 200 characters).
    pub body: String,
}

/// Reads up to `limit` messages of the dead-letter queue without taking them away.
pub async fn peek(
    amqp_url: &str,
    topology: &Topology,
    limit: usize,
) -> anyhow::Result<(u32, Vec<Peeked>)> {
    let conn = queue::connect(amqp_url, &queue::connection_name("admin", topology))
        .await
        .context("connecting to RabbitMQ")?;
    let channel = conn.create_channel().await?;
    let queue = topology.dead_letter_queue();
    let total = queue::ready_count(&channel, &queue).await?;
    let mut seen = Vec::new();
    while seen.len() < limit.min(total as usize) {
        let Some(got) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        let reason = death_reason(&got.delivery);
        let text = String::from_utf8_lossy(&got.delivery.data);
        seen.push(Peeked {
            reason,
            body: text.chars().take(200).collect(),
        });
    }
    // Unsettled: closing hands them all back.
    let _ = channel.close(200, "peek done".into()).await;
    let _ = conn.close(200, "done".into()).await;
    Ok((total, seen))
}
