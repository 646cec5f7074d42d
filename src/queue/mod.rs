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

use crate::domain::{NamespaceId, TaskId, UploadId};
use crate::service::config::QueueConfig;

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

    /// The quorum queue of bulk confirmation jobs (async and batch confirms), which the
    /// dispatcher fills in fair shares per namespace.
    pub fn confirm_queue(&self) -> String {
        format!("{}.confirm", self.prefix)
    }

    /// The quorum queue of confirmations a client is waiting on (sync confirms).
    pub fn interactive_queue(&self) -> String {
        format!("{}.confirm.interactive", self.prefix)
    }

    /// The queue of a lane.
    pub fn queue(&self, lane: Lane) -> String {
        match lane {
            Lane::Interactive => self.interactive_queue(),
            Lane::Bulk => self.confirm_queue(),
        }
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

/// Which queue a confirmation job travels by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// A client waits on the answer: published at once, consumed on slots of its own.
    Interactive,
    /// Nobody waits: dispatched in fair shares per namespace, consumed with the rest.
    Bulk,
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Interactive, Lane::Bulk];

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Interactive => "interactive",
            Lane::Bulk => "bulk",
        }
    }
}

/// The routing key of a submitted batch's announcement on the batches exchange.
pub const BATCH_SUBMITTED_ROUTING_KEY: &str = "batch.submitted";

/// The job a worker runs: confirm the upload the task names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmJob {
    pub task_id: TaskId,
    pub upload_id: UploadId,
    /// When the confirmation was accepted, for the time-in-queue series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The upload's namespace, for the per-namespace series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_id: Option<NamespaceId>,
}

impl ConfirmJob {
    /// The job of a confirmation accepted now.
    pub fn accepted_now(
        task_id: &TaskId,
        upload_id: &UploadId,
        namespace_id: &NamespaceId,
    ) -> Self {
        ConfirmJob {
            task_id: task_id.clone(),
            upload_id: upload_id.clone(),
            accepted_at: Some(chrono::Utc::now()),
            namespace_id: Some(namespace_id.clone()),
        }
    }
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

/// The heartbeat asked of the broker unless the URL names one (`?heartbeat=N`, 0 for
/// none): a connection cut off without a reset is noticed after two to three of them,
/// by the worker and by the broker, which then hands the jobs it had pushed to that
/// worker to the others. With the broker's own 60 s, a cut-off worker held its jobs for
/// nearly three minutes; with 4 s, for 8 to 12 s.
pub const DEFAULT_HEARTBEAT_SECONDS: u16 = 4;
/// The longest a connection may take to open unless the URL names it
/// (`?connection_timeout=ms`): an attempt into a network that drops packets otherwise
/// waits out the kernel's SYN retries, over two minutes.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The broker URL with [`DEFAULT_HEARTBEAT_SECONDS`] and [`DEFAULT_CONNECT_TIMEOUT`] where
/// it names neither.
pub fn uri_with_defaults(url: &str) -> Result<lapin::uri::AMQPUri, String> {
    let mut uri: lapin::uri::AMQPUri = url.parse()?;
    uri.query.heartbeat.get_or_insert(DEFAULT_HEARTBEAT_SECONDS);
    uri.query
        .connection_timeout
        .get_or_insert(u64::try_from(DEFAULT_CONNECT_TIMEOUT.as_millis()).unwrap_or(u64::MAX));
    Ok(uri)
}

/// Opens a connection with a name operators can recognise in the management UI, giving
/// up after the connection timeout.
pub async fn connect(url: &str, name: &str) -> lapin::Result<Connection> {
    let uri = uri_with_defaults(url).map_err(|e| {
        lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("invalid AMQP URL: {e}"),
        ))
    })?;
    let limit = Duration::from_millis(uri.query.connection_timeout.unwrap_or(5_000));
    let props = ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(limit, Connection::connect_uri(uri, props)).await {
        Ok(connected) => connected,
        Err(_) => Err(lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no connection to the broker within {} ms",
                limit.as_millis()
            ),
        ))),
    }
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

    // Both lanes: the same delivery limit, and the same dead letters.
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
    for lane in Lane::ALL {
        channel
            .queue_declare(topology.queue(lane).as_str().into(), durable, args.clone())
            .await?;
    }

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
    ready_in(channel, queue)
        .await
        .with_context(|| format!("looking at {queue}"))
}

async fn ready_in(channel: &Channel, queue: &str) -> lapin::Result<u32> {
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
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
    for queue in [
        topology.confirm_queue(),
        topology.interactive_queue(),
        topology.dead_letter_queue(),
    ] {
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

    /// Messages ready (not yet delivered) in one of the topology's queues.
    pub async fn ready_count(&self, queue: &str) -> Result<u32, QueueError> {
        let result = tokio::time::timeout(BROKER_TIMEOUT, async {
            let channel = self.channel().await?;
            Ok(ready_in(&channel, queue).await?)
        })
        .await
        .unwrap_or(Err(QueueError::Timeout));
        if result.is_err() {
            self.forget_channel().await;
        }
        result
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_url_gets_the_defaults_it_does_not_name() {
        let uri = uri_with_defaults("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(uri.query.heartbeat, Some(DEFAULT_HEARTBEAT_SECONDS));
        assert_eq!(uri.query.connection_timeout, Some(5_000));
        let uri =
            uri_with_defaults("amqp://127.0.0.1:5672/%2f?heartbeat=30&connection_timeout=1500")
                .unwrap();
        assert_eq!(uri.query.heartbeat, Some(30));
        assert_eq!(uri.query.connection_timeout, Some(1_500));
        let uri = uri_with_defaults("amqp://127.0.0.1/%2f?heartbeat=0").unwrap();
        assert_eq!(uri.query.heartbeat, Some(0), "0 turns heartbeats off");
        assert!(uri_with_defaults("http://127.0.0.1/").is_err());
    }

    #[tokio::test]
    async fn a_connection_into_silence_gives_up_after_its_timeout() {
        // A peer that takes the TCP connection and never says a word, as a broker behind a
        // link that drops packets looks once the handshake got through.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                held.push(socket);
            }
        });
        let started = Instant::now();
        let result = connect(
            &format!("amqp://guest:guest@{addr}/%2f?connection_timeout=1000"),
            "upconfirm-test",
        )
        .await;
        let took = started.elapsed();
        holder.abort();
        assert!(result.is_err());
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "gave up after {took:?}"
        );
    }
}
