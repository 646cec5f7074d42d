//! The worker: consumes confirmation jobs, runs the pipeline, acks only after it committed.

use std::time::{Duration, Instant};

use anyhow::Context;
use backoff::backoff::Backoff;
use backoff::ExponentialBackoff;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::FieldTable;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::queue::{self, ConfirmJob, Lane, Topology};
use crate::service::health::Connected;
use crate::service::metrics;
use crate::worker::pipeline::{Pipeline, Ran};

/// How one worker process consumes.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub amqp_url: String,
    pub topology: Topology,
    /// Bulk jobs run at once, and that lane's prefetch.
    pub concurrency: u16,
    /// Interactive jobs run at once besides, and that lane's prefetch.
    pub interactive_concurrency: u16,
    /// On shutdown, how long jobs may finish before they are handed back.
    pub drain: Duration,
}

/// Consumes until `shutdown`, reconnecting with backoff when the broker goes away.
/// `connected` says, for readiness, whether the consumer is attached right now.
pub async fn run(
    settings: WorkerSettings,
    pipeline: Pipeline,
    connected: Connected,
    shutdown: CancellationToken,
) {
    let mut waits = reconnect_policy();
    while !shutdown.is_cancelled() {
        let outcome = consume(&settings, &pipeline, &connected, &shutdown).await;
        connected.set(false);
        match outcome {
            Ok(()) => return,
            Err(err) => {
                let wait = waits.next_backoff().unwrap_or(Duration::from_secs(10));
                tracing::warn!(error = ?err, ?wait, "worker lost the broker; reconnecting");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

async fn consume(
    settings: &WorkerSettings,
    pipeline: &Pipeline,
    connected: &Connected,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let topology = &settings.topology;
    let conn = queue::connect(
        &settings.amqp_url,
        &queue::connection_name("worker", topology),
    )
    .await
    .context("connecting to RabbitMQ")?;
    // One channel per lane, each with its own prefetch: interactive jobs run on slots of
    // their own, so they start however many bulk jobs this worker holds.
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut lanes = Vec::with_capacity(2);
    for (lane, prefetch) in [
        (Lane::Interactive, settings.interactive_concurrency),
        (Lane::Bulk, settings.concurrency),
    ] {
        let channel = conn.create_channel().await?;
        queue::declare(&channel, topology).await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let tag = format!("upconfirm-worker-{}-{tag}", lane.as_str());
        let consumer = channel
            .basic_consume(
                topology.queue(lane).as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        lanes.push((channel, tag, consumer));
    }
    connected.set(true);
    tracing::info!(
        bulk = settings.concurrency,
        interactive = settings.interactive_concurrency,
        "worker consuming"
    );

    // Each connection has its own set of jobs: a delivery is only ever settled on the
    // channel it came from, so a tag never outlives its channel into a new one.
    let in_flight = TaskTracker::new();
    let result: anyhow::Result<()> = {
        let [(_, _, interactive), (_, _, bulk)] = &mut lanes[..] else {
            unreachable!("two lanes were opened");
        };
        loop {
            // Interactive first when both have a job waiting.
            let (lane, next) = tokio::select! {
                biased;
                () = shutdown.cancelled() => break Ok(()),
                next = interactive.next() => (Lane::Interactive, next),
                next = bulk.next() => (Lane::Bulk, next),
            };
            match next {
                Some(Ok(delivery)) => {
                    let pipeline = pipeline.clone();
                    in_flight.spawn(handle(pipeline, delivery, lane));
                }
                Some(Err(err)) => break Err(anyhow::Error::from(err).context("consuming")),
                None => break Err(anyhow::anyhow!("the broker closed the consumer")),
            }
        }
    };
    connected.set(false);
    in_flight.close();
    // On a lost connection the broker requeues what the channel held: jobs still running
    // finish (their effects are idempotent) but cannot settle; reconnect at once.
    result?;
    // Take no more; let what we hold finish, then close (unacked messages return to the queue).
    for (channel, tag, _) in &lanes {
        let _ = channel
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
    }
    if tokio::time::timeout(settings.drain, in_flight.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            still_running = in_flight.len(),
            "jobs still running at the drain deadline are handed back to the broker"
        );
    } else {
        tracing::info!("drained: every job held was settled");
    }
    let _ = conn.close(200, "worker stopping".into()).await;
    Ok(())
}

/// Reconnect waits: exponential from 100 ms, jittered by half either way, capped at 2 s
/// (3 s with jitter), retried for as long as the process runs. The cap is short so a
/// worker consumes again within seconds of its network healing; each attempt gives up
/// after the connection timeout, so a cut-off worker tries every few seconds.
fn reconnect_policy() -> ExponentialBackoff {
    ExponentialBackoff {
        current_interval: Duration::from_millis(100),
        initial_interval: Duration::from_millis(100),
        max_interval: Duration::from_secs(2),
        max_elapsed_time: None,
        ..ExponentialBackoff::default()
    }
}

async fn handle(pipeline: Pipeline, delivery: Delivery, lane: Lane) {
    let began = Instant::now();
    if delivery.redelivered {
        ::metrics::counter!(metrics::REDELIVERIES).increment(1);
    }
    let job: ConfirmJob = match serde_json::from_slice(&delivery.data) {
        Ok(job) => job,
        Err(err) => {
            tracing::error!(error = %err, "undecodable message sent to the dead-letter queue");
            let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
            return;
        }
    };
    let _in_flight = metrics::InFlight::enter_lane(lane.as_str(), job.namespace_id.as_deref());
    if let (Some(accepted), false) = (job.accepted_at, delivery.redelivered) {
        let waited = (chrono::Utc::now() - accepted).to_std().unwrap_or_default();
        ::metrics::histogram!(metrics::QUEUE_SECONDS, "lane" => lane.as_str())
            .record(waited.as_secs_f64());
    }
    let span =
        tracing::info_span!("confirm_job", task_id = %job.task_id, upload_id = %job.upload_id);
    async {
        // A long job tells us once its lease is recorded: from then on the database holds
        // it, and the delivery is settled at once so no acknowledgement timeout applies.
        let (leased_tx, leased_rx) = oneshot::channel();
        let run = pipeline.run(&job, lane, Some(leased_tx));
        tokio::pin!(run);
        let mut settled = false;
        let result = tokio::select! {
            result = &mut run => result,
            Ok(()) = leased_rx => {
                settled = true;
                if let Err(err) = delivery.ack(BasicAckOptions::default()).await {
                    tracing::warn!(error = %err, "could not settle a leased job's delivery");
                }
                run.await
            }
        };
        let ran = match &result {
            Ok(Ran::Done) => "done",
            Ok(Ran::UnknownTask) => "unknown_task",
            Err(_) => "handed_back",
        };
        ::metrics::histogram!(metrics::JOB_SECONDS, "outcome" => ran)
            .record(began.elapsed().as_secs_f64());
        if settled {
            if let Err(err) = result {
                tracing::warn!(error = %err, "leased job interrupted; its lease will put it back");
            }
            return;
        }
        let outcome = match result {
            Ok(Ran::Done) => delivery.ack(BasicAckOptions::default()).await,
            Ok(Ran::UnknownTask) => {
                tracing::error!("job for a task that does not exist sent to the dead-letter queue");
                delivery.reject(BasicRejectOptions { requeue: false }).await
            }
            Err(err) => {
                tracing::warn!(error = %err, "job handed back to the broker for a later attempt");
                delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await
            }
        };
        if let Err(err) = outcome {
            // The channel is gone; the broker redelivers, and the job's effects are idempotent.
            tracing::warn!(error = %err, "could not settle the delivery");
        }
    }
    .instrument(span)
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_waits_grow_and_stay_capped() {
        let mut policy = reconnect_policy();
        let waits: Vec<Duration> = (0..30).map(|_| policy.next_backoff().unwrap()).collect();
        assert!(waits[0] <= Duration::from_millis(150));
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(3)));
        assert!(waits.iter().all(|w| *w >= Duration::from_millis(50)));
        // Past the cap, jitter keeps waits between half the cap and one and a half times it.
        assert!(waits[29] >= Duration::from_secs(1), "{waits:?}");
    }
}
