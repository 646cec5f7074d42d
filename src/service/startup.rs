//! Builds and runs the service's components; `main`, `dev` and the tests all start here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::task_events::TaskEvents;
use crate::api::{self, ApiSettings, AppState};
use crate::blob::{BlobStore, S3Settings};
use crate::queue::{self, Publisher, Topology};
use crate::relay::{self, dispatch};
use crate::service::config::{Config, S3Config};
use crate::service::health::{self, Connected, Health};
use crate::store;
use crate::store::BatchDestination;
use crate::worker::pipeline::{grouped_steps, Pipeline};
use crate::worker::turns::FairTurns;
use crate::worker::WorkerSettings;
use crate::worker::{self, dead_letters, sweep};

/// Which components one process runs.
#[derive(Debug, Clone, Copy)]
pub struct Components {
    pub api: bool,
    pub worker: bool,
    pub relay: bool,
}

impl Components {
    pub fn all() -> Self {
        Components {
            api: true,
            worker: true,
            relay: true,
        }
    }
}

/// The running components of one process.
pub struct Service {
    pub api_addr: Option<SocketAddr>,
    /// Where a worker process serves `/healthz` and `/readyz`, when asked to.
    pub health_addr: Option<SocketAddr>,
    stop_within: Duration,
    pub pool: PgPool,
    pub blob: BlobStore,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

pub fn s3_settings(cfg: &S3Config) -> S3Settings {
    S3Settings {
        endpoint: cfg.s3_endpoint.clone(),
        region: cfg.s3_region.clone(),
        bucket: cfg.s3_bucket.clone(),
        access_key_id: cfg.s3_access_key_id.clone(),
        secret_access_key: cfg.s3_secret_access_key.clone(),
        force_path_style: cfg.s3_force_path_style,
    }
}

/// What every component of a process shares.
struct Shared {
    pool: PgPool,
    blob: BlobStore,
    topology: Topology,
    publisher: Publisher,
    shutdown: CancellationToken,
}

/// Connects to PostgreSQL, S3 and RabbitMQ, declares the topology, and spawns the components.
/// The database must be migrated already (`upconfirm migrate`).
pub async fn start(config: Config, components: Components) -> anyhow::Result<Service> {
    // Record from the first event on, not from the first scrape.
    crate::service::metrics::handle();
    let pool = store::connect(&config.database).await?;
    let blob = BlobStore::connect(&s3_settings(&config.s3)).await?;
    if let Err(err) = blob.ensure_bucket().await {
        tracing::warn!(error = %err, bucket = %config.s3.s3_bucket, "could not make sure the S3 bucket exists");
    }
    let topology = Topology::from_config(&config.queue);
    if let Err(err) = queue::declare_topology(&config.queue.amqp_url, &topology).await {
        // Every component declares again when it (re)connects; until then it is not ready.
        tracing::warn!(error = ?err, "broker unreachable at start; components will keep trying");
    }
    let shared = Shared {
        publisher: Publisher::new(&config.queue.amqp_url, topology.clone()),
        pool,
        blob,
        topology,
        shutdown: CancellationToken::new(),
    };
    let mut tasks = Vec::new();
    let api_addr = if components.api {
        Some(start_api(&config, &shared, &mut tasks).await?)
    } else {
        None
    };
    let health_addr = if components.worker {
        start_worker(&config, &shared, &mut tasks).await?
    } else {
        None
    };
    if components.relay {
        start_relay(&config, &shared, &mut tasks);
    }
    Ok(Service {
        api_addr,
        health_addr,
        stop_within: config.worker.drain_timeout() + Duration::from_secs(15),
        pool: shared.pool,
        blob: shared.blob,
        shutdown: shared.shutdown,
        tasks,
    })
}

/// The HTTP API, and the task events its waiting requests listen to.
async fn start_api(
    config: &Config,
    shared: &Shared,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<SocketAddr> {
    let listener = api::bind(config.api.listen_addr).await?;
    let addr = listener.local_addr()?;
    let events = TaskEvents::default();
    events.spawn_listener(shared.pool.clone(), shared.shutdown.clone());
    let state = AppState {
        pool: shared.pool.clone(),
        blob: shared.blob.clone(),
        publisher: shared.publisher.clone(),
        events,
        health: Health::new(shared.pool.clone(), Some(shared.publisher.clone()), None),
        backlog_counts: Default::default(),
        settings: Arc::new(ApiSettings {
            sync_wait: config.api.sync_wait(),
            async_threshold_bytes: config.confirm.async_threshold_bytes,
            namespace_backlog_cap: config.confirm.namespace_backlog_cap,
            max_body_bytes: config.api.max_body_bytes,
            enforce_declared_hash: config.api.enforce_declared_hash,
            rate_limit: config.api.default_rate_limit(),
        }),
    };
    let token = shared.shutdown.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(err) = api::serve(listener, state, token).await {
            tracing::error!(error = %err, "the API server stopped");
        }
    }));
    tracing::info!(%addr, "API listening");
    Ok(addr)
}

/// The worker's pipeline and what it needs.
fn pipeline(config: &Config, shared: &Shared) -> Pipeline {
    let batches = BatchDestination {
        exchange: shared.topology.batches_exchange(),
        routing_key: queue::BATCH_SUBMITTED_ROUTING_KEY.to_owned(),
    };
    // The worker writes its tasks' outputs as the API answers them.
    let outputs = api::task_outputs::TASK_OUTPUTS;
    let (starter, committer) = grouped_steps(&shared.pool, outputs, &batches);
    Pipeline {
        pool: shared.pool.clone(),
        blob: shared.blob.clone(),
        hash_policy: config.worker.hash_policy,
        async_threshold_bytes: config.confirm.async_threshold_bytes,
        retry_budget: config.worker.retry_budget(),
        interactive_steps: grouped_steps(&shared.pool, outputs, &batches),
        batches,
        outputs,
        lease_from_bytes: config.worker.lease_from_bytes,
        lease: config.worker.lease(),
        starter,
        committer,
        bulk_store_turns: Arc::new(FairTurns::new(
            usize::from(config.worker.worker_bulk_store_concurrency.max(1)),
            usize::from(config.worker.worker_bulk_store_yield.max(1)),
        )),
    }
}

/// The consumer and the duties every worker shares (dead letters, the sweep, usage);
/// answers where its health listener is, when it has one.
async fn start_worker(
    config: &Config,
    shared: &Shared,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<Option<SocketAddr>> {
    let pipeline = pipeline(config, shared);
    let (pool, shutdown) = (&shared.pool, &shared.shutdown);
    let connected = Connected::default();
    let mut health_addr = None;
    if let Some(addr) = config.worker.health_listen_addr {
        let health = Health::new(pool.clone(), None, Some(connected.clone()));
        let local = health::serve(addr, health, shutdown.clone()).await?;
        health_addr = Some(local);
        tracing::info!(addr = %local, "worker health listening");
    }
    tasks.push(tokio::spawn(dead_letters::run(
        config.queue.amqp_url.clone(),
        shared.topology.clone(),
        pool.clone(),
        config.worker.dead_letter_interval(),
        pipeline.outputs,
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(sweep::run(
        pool.clone(),
        shared.blob.clone(),
        config.sweep.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(sweep::fold_usage(
        pool.clone(),
        config.worker.usage_fold_interval(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(worker::run(
        WorkerSettings {
            amqp_url: config.queue.amqp_url.clone(),
            topology: shared.topology.clone(),
            concurrency: config.worker.worker_concurrency.max(1),
            interactive_concurrency: config.worker.worker_interactive_concurrency.max(1),
            drain: config.worker.drain_timeout(),
        },
        pipeline,
        connected,
        shutdown.clone(),
    )));
    Ok(health_addr)
}

/// The outbox relay and the fair dispatcher.
fn start_relay(config: &Config, shared: &Shared, tasks: &mut Vec<JoinHandle<()>>) {
    tasks.push(tokio::spawn(dispatch::run(
        shared.pool.clone(),
        shared.publisher.clone(),
        config.relay.clone(),
        shared.shutdown.clone(),
    )));
    tasks.push(tokio::spawn(relay::run(
        shared.pool.clone(),
        shared.publisher.clone(),
        config.relay.clone(),
        shared.shutdown.clone(),
    )));
}

impl Service {
    /// The base URL of the API, when this process serves it.
    pub fn base_url(&self) -> Option<String> {
        self.api_addr.map(|a| format!("http://{a}"))
    }

    /// A token that stops every component when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops every component: the API finishes its requests, workers drain their jobs.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let all = futures::future::join_all(self.tasks);
        if tokio::time::timeout(self.stop_within, all).await.is_err() {
            tracing::warn!("components did not stop in time");
        }
        self.pool.close().await;
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
