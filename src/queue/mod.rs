//! RabbitMQ: the topology, a publisher that waits for the broker's confirms, and the job format.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::config::QueueConfig;

/// The names the service declares, all under one prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    pub prefix: String,
    pub delivery_limit: u32,
}

impl Topology {
    pub fn from_config(cfg: &QueueConfig) -> Self {
        Topology {
            prefix: cfg.queue_prefix.clone(),
            delivery_limit: cfg.delivery_limit,
        }
    }

    /// The quorum queue workers consume confirmation jobs from.
    pub fn confirm_queue(&self) -> String {
        format!("{}.confirm", self.prefix)
    }

    /// Where jobs go once they pass the delivery limit or cannot be decoded.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.confirm.dead", self.prefix)
    }

    /// Where submitted batches are announced to downstream processors.
    pub fn batches_exchange(&self) -> String {
        format!("{}.batches", self.prefix)
    }
}

/// The routing key of a submitted batch's announcement on the batches exchange.
pub const BATCH_SUBMITTED_ROUTING_KEY: &str = "batch.submitted";

/// The job a worker runs: confirm the upload the task names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmJob {
    pub task_id: String,
    pub upload_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("broker unavailable: {0}")]
    Unavailable(#[from] lapin::Error),
    #[error("the broker refused the message")]
    Nacked,
    #[error("the broker did not answer in time")]
    Timeout,
}

/// Longest wait for a connection or a confirm before the broker is taken as unavailable.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// The name a component's connection carries: its role and the queue prefix, so operators
/// (and tests) can tell which deployment a connection belongs to.
pub fn connection_name(role: &str, topology: &Topology) -> String {
    format!("upconfirm-{role} {}", topology.prefix)
}

/// Opens a connection with a name operators can recognise in the management UI.
pub async fn connect(url: &str, name: &str) -> lapin::Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url, props).await
}

/// Declares the queues and exchanges (idempotent; every component does it at start).
pub async fn declare(channel: &Channel, topology: &Topology) -> lapin::Result<()> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut dead_args = FieldTable::default();
    dead_args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            topology.dead_letter_queue().as_str().into(),
            durable,
            dead_args,
        )
        .await?;

    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongInt(i32::try_from(topology.delivery_limit).unwrap_or(i32::MAX)),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(topology.dead_letter_queue().into()),
    );
    channel
        .queue_declare(topology.confirm_queue().as_str().into(), durable, args)
        .await?;

    channel
        .exchange_declare(
            topology.batches_exchange().as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Messages ready in a queue that must exist already (a passive declare).
pub async fn ready_count(channel: &Channel, queue: &str) -> anyhow::Result<u32> {
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("looking at {queue}"))?;
    Ok(declared.message_count())
}

/// Connects and declares, for start-up.
pub async fn declare_topology(url: &str, topology: &Topology) -> anyhow::Result<()> {
    let conn = connect(url, &connection_name("setup", topology))
        .await
        .context("connecting to RabbitMQ")?;
    let channel = conn.create_channel().await?;
    declare(&channel, topology)
        .await
        .context("declaring queues and exchanges")?;
    conn.close(200, "done".into()).await.ok();
    Ok(())
}

/// Deletes everything a prefix declared (tests and teardown).
pub async fn delete_topology(url: &str, prefix: &str) -> anyhow::Result<()> {
    let topology = Topology {
        prefix: prefix.to_owned(),
        delivery_limit: 0,
    };
    let conn = connect(url, "upconfirm-teardown").await?;
    let channel = conn.create_channel().await?;
    for queue in [topology.confirm_queue(), topology.dead_letter_queue()] {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    channel
        .exchange_delete(
            topology.batches_exchange().as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await?;
    conn.close(200, "done".into()).await.ok();
    Ok(())
}

/// Publishes with publisher confirms over one shared channel, reconnecting after a failure.
#[derive(Clone)]
pub struct Publisher {
    url: String,
    topology: Topology,
    channel: Arc<Mutex<Option<(Connection, Channel)>>>,
}

impl Publisher {
    pub fn new(url: &str, topology: Topology) -> Self {
        Publisher {
            url: url.to_owned(),
            topology,
            channel: Arc::new(Mutex::new(None)),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    async fn channel(&self) -> Result<Channel, QueueError> {
        let mut slot = self.channel.lock().await;
        if let Some((conn, channel)) = slot.as_ref() {
            if conn.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        *slot = None;
        let name = connection_name("publisher", &self.topology);
        let conn = tokio::time::timeout(BROKER_TIMEOUT, connect(&self.url, &name))
            .await
            .map_err(|_| QueueError::Timeout)??;
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        declare(&channel, &self.topology).await?;
        *slot = Some((conn, channel.clone()));
        Ok(channel)
    }

    /// Opens the publishing channel unless it is open already: whether the broker is reachable.
    pub async fn ensure_connected(&self) -> Result<(), QueueError> {
        self.channel().await.map(drop)
    }

    async fn forget_channel(&self) {
        self.channel.lock().await.take();
    }

    /// Publishes a persistent message and returns once the broker has confirmed it.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        message_id: &str,
        payload: &[u8],
    ) -> Result<(), QueueError> {
        let result = tokio::time::timeout(
            BROKER_TIMEOUT,
            self.try_publish(exchange, routing_key, message_id, payload),
        )
        .await
        .unwrap_or(Err(QueueError::Timeout));
        if matches!(
            result,
            Err(QueueError::Unavailable(_) | QueueError::Timeout)
        ) {
            self.forget_channel().await;
        }
        result
    }

    async fn try_publish(
        &self,
        exchange: &str,
        routing_key: &str,
        message_id: &str,
        payload: &[u8],
    ) -> Result<(), QueueError> {
        let channel = self.channel().await?;
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(message_id.into());
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                payload,
                properties,
            )
            .await?
            .await?;
        if confirm.is_ack() {
            Ok(())
        } else {
            Err(QueueError::Nacked)
        }
    }
}
