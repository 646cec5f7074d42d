//! One typed configuration, read from flags and the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::store::rate_limits;

/// Where state lives: PostgreSQL.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// PostgreSQL connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/upconfirm"
    )]
    pub database_url: String,

    /// Connections in this process's PostgreSQL pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,
}

/// The broker and the names of what the service declares on it.
#[derive(Debug, Clone, Args)]
pub struct QueueConfig {
    /// AMQP URL of RabbitMQ.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// Prefix of every queue and exchange the service declares.
    #[arg(long, env = "QUEUE_PREFIX", default_value = "upconfirm")]
    pub queue_prefix: String,

    /// Deliveries of one message before it is dead-lettered.
    #[arg(long, env = "QUEUE_DELIVERY_LIMIT", default_value_t = 5)]
    pub delivery_limit: u32,
}

/// The S3 store that clients upload to.
#[derive(Debug, Clone, Args)]
pub struct S3Config {
    /// S3 endpoint URL; when unset, `dev` serves an embedded store and other commands use AWS.
    #[arg(long, env = "S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// Bucket that holds every upload.
    #[arg(long, env = "S3_BUCKET", default_value = "upconfirm")]
    pub s3_bucket: String,

    /// Region used to sign requests.
    #[arg(long, env = "S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// Access key id (falls back to the AWS default credential chain when unset).
    #[arg(long, env = "S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,

    /// Secret access key.
    #[arg(long, env = "S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,

    /// Address buckets as `endpoint/bucket` rather than `bucket.endpoint`.
    #[arg(long, env = "S3_FORCE_PATH_STYLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub s3_force_path_style: bool,
}

/// How the content hash of an object is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HashPolicy {
    /// SHA-256 of the bytes: from S3's full-object checksum, else streamed.
    Sha256,
    /// Derived from the ETag; reads no bytes.
    Etag,
}

/// What the HTTP API needs beyond the shared connections.
#[derive(Debug, Clone, Args)]
pub struct ApiConfig {
    /// Address the HTTP API listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,

    /// Longest a sync confirm waits for its result before answering in the async form (ms).
    #[arg(long, env = "SYNC_WAIT_MS", default_value_t = 10_000)]
    pub sync_wait_ms: u64,

    /// Largest accepted request body (bytes).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1_048_576)]
    pub max_body_bytes: usize,

    /// Sign every declared `file_hash` into the PUT URL unless the client sends
    /// `enforce_file_hash: false`: the store then checks the bytes and confirm reads none.
    #[arg(long, env = "ENFORCE_DECLARED_HASH", default_value_t = false, action = clap::ArgAction::Set)]
    pub enforce_declared_hash: bool,

    /// Requests a second an organization may make, averaged, unless `admin set-rate-limit`
    /// gave it its own limit; shared by every API replica (0: no limit).
    #[arg(long, env = "RATE_LIMIT_PER_SECOND", default_value_t = 100.0, value_parser = rate_arg)]
    pub rate_limit_per_second: f64,

    /// Requests an organization may make at once, above its rate, before it must wait
    /// (0: no limit; else at least 1).
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 200.0, value_parser = burst_arg)]
    pub rate_limit_burst: f64,
}

impl ApiConfig {
    pub fn sync_wait(&self) -> Duration {
        Duration::from_millis(self.sync_wait_ms)
    }

    /// The rate limit of an organization without its own.
    pub fn default_rate_limit(&self) -> rate_limits::Limit {
        rate_limits::Limit {
            per_second: self.rate_limit_per_second,
            burst: self.rate_limit_burst,
        }
    }
}

fn rate_arg(text: &str) -> Result<f64, String> {
    let value = text.trim().parse::<f64>().map_err(|e| e.to_string())?;
    rate_limits::check_rate(value)
}

fn burst_arg(text: &str) -> Result<f64, String> {
    let value = text.trim().parse::<f64>().map_err(|e| e.to_string())?;
    rate_limits::check_burst(value)
}

/// Settings the API and the worker must agree on.
#[derive(Debug, Clone, Args)]
pub struct ConfirmConfig {
    /// Size from which a confirm goes async without being asked (bytes).
    #[arg(long, env = "ASYNC_THRESHOLD_BYTES", default_value_t = 104_857_600)]
    pub async_threshold_bytes: i64,

    /// Bulk (async and batch) confirmations one namespace may have waiting for the
    /// dispatcher; past it, new ones get 429. 0 for no cap.
    #[arg(long, env = "NAMESPACE_BACKLOG_CAP", default_value_t = 1_000_000)]
    pub namespace_backlog_cap: i64,
}

/// What a worker needs beyond the shared connections.
#[derive(Debug, Clone, Args)]
pub struct WorkerConfig {
    /// Bulk jobs one worker process runs at once (and that lane's prefetch).
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 128)]
    pub worker_concurrency: u16,

    /// Interactive jobs (sync confirms) one worker process runs at once besides, and that
    /// lane's prefetch: slots of their own, so a waiting client never waits behind bulk.
    #[arg(long, env = "WORKER_INTERACTIVE_CONCURRENCY", default_value_t = 64)]
    pub worker_interactive_concurrency: u16,

    /// Bulk jobs one worker process lets read, copy or hash objects at once; the others
    /// it holds wait their turn. Interactive jobs take no turn: their store requests queue
    /// behind at most this many bulk jobs' (raise it for a store far away).
    #[arg(long, env = "WORKER_BULK_STORE_CONCURRENCY", default_value_t = 32)]
    pub worker_bulk_store_concurrency: u16,

    /// Of those, how many bulk jobs keep reading, copying or hashing while an interactive
    /// job of the same worker runs; the rest wait until none does. Lower it where the
    /// store shares CPUs with the service (one machine): a waiting client's requests then
    /// reach a store, and CPUs, that bulk work is not saturating. Against a store far
    /// away it only slows bulk work while clients wait, so by default bulk keeps them all.
    #[arg(long, env = "WORKER_BULK_STORE_YIELD", default_value_t = 32)]
    pub worker_bulk_store_yield: u16,

    /// How content hashes are obtained.
    #[arg(long, env = "HASH_POLICY", value_enum, default_value_t = HashPolicy::Sha256)]
    pub hash_policy: HashPolicy,

    /// Longest a job retries transient failures before handing the message back (ms).
    #[arg(long, env = "RETRY_BUDGET_MS", default_value_t = 30_000)]
    pub retry_budget_ms: u64,

    /// On SIGTERM, how long a worker lets its jobs finish before handing them back (seconds).
    #[arg(long, env = "WORKER_DRAIN_SECONDS", default_value_t = 30)]
    pub worker_drain_seconds: u64,

    /// Objects from this size are held by a database lease instead of an unacked
    /// message while they are hashed, so no broker acknowledgement timeout applies (bytes).
    #[arg(long, env = "LEASE_FROM_BYTES", default_value_t = 1_073_741_824)]
    pub lease_from_bytes: i64,

    /// How long a lease lasts unless its worker renews it (renewed every third of it; seconds).
    #[arg(long, env = "LEASE_SECONDS", default_value_t = 60)]
    pub lease_seconds: u64,

    /// How often each worker looks at the dead-letter queue and at lapsed leases (ms).
    #[arg(long, env = "DEAD_LETTER_INTERVAL_MS", default_value_t = 2_000)]
    pub dead_letter_interval_ms: u64,

    /// How often each worker folds the usage ledger into namespace rows (ms; 0: never).
    #[arg(long, env = "USAGE_FOLD_INTERVAL_MS", default_value_t = 1_000)]
    pub usage_fold_interval_ms: u64,

    /// Where a worker process serves `/healthz` and `/readyz` (unset: nowhere).
    #[arg(long, env = "HEALTH_LISTEN_ADDR")]
    pub health_listen_addr: Option<std::net::SocketAddr>,
}

impl WorkerConfig {
    pub fn retry_budget(&self) -> Duration {
        Duration::from_millis(self.retry_budget_ms)
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.worker_drain_seconds)
    }

    pub fn usage_fold_interval(&self) -> Option<Duration> {
        (self.usage_fold_interval_ms > 0)
            .then(|| Duration::from_millis(self.usage_fold_interval_ms))
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_seconds.max(1))
    }

    pub fn dead_letter_interval(&self) -> Duration {
        Duration::from_millis(self.dead_letter_interval_ms.max(100))
    }
}

/// What the outbox relay needs.
#[derive(Debug, Clone, Args)]
pub struct RelayConfig {
    /// How often the relay sweeps the outbox (ms).
    #[arg(long, env = "RELAY_INTERVAL_MS", default_value_t = 500)]
    pub relay_interval_ms: u64,

    /// Age an outbox row must reach before the relay takes it over from the API (ms).
    #[arg(long, env = "RELAY_MIN_AGE_MS", default_value_t = 2_000)]
    pub relay_min_age_ms: u64,

    /// Most bulk jobs the dispatcher keeps ready in the broker's bulk queue. Below it, the
    /// dispatcher keeps about 100 ms of work ready at the rate the workers take jobs (at
    /// least 8): enough to keep them busy between rounds, few enough that another
    /// namespace's next job waits behind no more than that.
    #[arg(long, env = "DISPATCH_QUEUE_DEPTH", default_value_t = 32)]
    pub dispatch_queue_depth: u32,
}

/// The sweep that fails uploads never confirmed (run by workers).
#[derive(Debug, Clone, Args)]
pub struct SweepConfig {
    /// Time past an upload's `expires_at` before the sweep fails it (seconds).
    #[arg(long, env = "EXPIRY_GRACE_SECONDS", default_value_t = 900)]
    pub expiry_grace_seconds: u64,

    /// How often each worker sweeps for expired uploads (seconds; 0 turns the sweep off).
    #[arg(long, env = "EXPIRY_SWEEP_INTERVAL_SECONDS", default_value_t = 60)]
    pub expiry_sweep_interval_seconds: u64,

    /// Also delete the S3 objects of expired uploads.
    #[arg(long, env = "EXPIRY_DELETE_OBJECTS", default_value_t = false, action = clap::ArgAction::Set)]
    pub expiry_delete_objects: bool,
}

impl SweepConfig {
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.expiry_grace_seconds)
    }

    pub fn interval(&self) -> Option<Duration> {
        (self.expiry_sweep_interval_seconds > 0)
            .then(|| Duration::from_secs(self.expiry_sweep_interval_seconds))
    }
}

/// Settings of `upconfirm dev` only.
#[derive(Debug, Clone, Args)]
pub struct DevConfig {
    /// Folder of the embedded S3 store and the dev API key.
    #[arg(long, env = "DEV_DATA_DIR", default_value = ".upconfirm-dev")]
    pub data_dir: PathBuf,

    /// Port of the embedded S3 store (0 picks a free one).
    #[arg(long, env = "DEV_S3_PORT", default_value_t = 9000)]
    pub s3_port: u16,
}

/// Every setting of a long-running process, with its flag and environment variable.
#[derive(Debug, Clone, clap::Parser)]
pub struct Config {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub queue: QueueConfig,
    #[command(flatten)]
    pub s3: S3Config,
    #[command(flatten)]
    pub api: ApiConfig,
    #[command(flatten)]
    pub confirm: ConfirmConfig,
    #[command(flatten)]
    pub worker: WorkerConfig,
    #[command(flatten)]
    pub relay: RelayConfig,
    #[command(flatten)]
    pub sweep: SweepConfig,
}

impl Config {
    /// The defaults, overridden by the environment only; what tests start from.
    pub fn from_env() -> Config {
        use clap::Parser;
        Config::parse_from(["upconfirm"])
    }
}
