//! The worker: consumes confirmation jobs, runs the pipeline, acks only after it committed.

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::confirm::Pipeline;
use crate::queue::{self, ConfirmJob, Topology};

/// How long a stopping worker lets its jobs finish before handing them back.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Consumes until `shutdown`, reconnecting with backoff when the broker goes away.
pub async fn run(
    amqp_url: String,
    topology: Topology,
    concurrency: u16,
    pipeline: Pipeline,
    shutdown: CancellationToken,
) {
    let mut wait = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match consume(&amqp_url, &topology, concurrency, &pipeline, &shutdown).await {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(error = ?err, ?wait, "worker lost the broker; reconnecting");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn consume(
    amqp_url: &str,
    topology: &Topology,
    concurrency: u16,
    pipeline: &Pipeline,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let conn = queue::connect(amqp_url, "upconfirm-worker")
        .await
        .context("connecting to RabbitMQ")?;
    let channel = conn.create_channel().await?;
    queue::declare(&channel, topology).await?;
    channel
        .basic_qos(concurrency, BasicQosOptions::default())
        .await?;
    let tag = format!("upconfirm-worker-{}", uuid::Uuid::new_v4().simple());
    let mut consumer = channel
        .basic_consume(
            topology.confirm_queue().as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue = %topology.confirm_queue(), concurrency, "worker consuming");

    let in_flight = TaskTracker::new();
    let result = loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            next = consumer.next() => next,
        };
        match next {
            Some(Ok(delivery)) => {
                let pipeline = pipeline.clone();
                in_flight.spawn(handle(pipeline, delivery));
            }
            Some(Err(err)) => break Err(anyhow::Error::from(err).context("consuming")),
            None => break Err(anyhow::anyhow!("the broker closed the consumer")),
        }
    };
    // Take no more; let what we hold finish, then close (unacked messages return to the queue).
    let _ = channel
        .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await;
    in_flight.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, in_flight.wait())
        .await
        .is_err()
    {
        tracing::warn!("jobs still running at the drain deadline are handed back to the broker");
    }
    let _ = conn.close(200, "worker stopping".into()).await;
    result
}

async fn handle(pipeline: Pipeline, delivery: Delivery) {
    let job: ConfirmJob = match serde_json::from_slice(&delivery.data) {
        Ok(job) => job,
        Err(err) => {
            tracing::error!(error = %err, "undecodable message sent to the dead-letter queue");
            let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
            return;
        }
    };
    let span =
        tracing::info_span!("confirm_job", task_id = %job.task_id, upload_id = %job.upload_id);
    async {
        let outcome = match pipeline.run(&job).await {
            Ok(()) => delivery.ack(BasicAckOptions::default()).await,
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
