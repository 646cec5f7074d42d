//! `upconfirm-bench suite`: the whole benchmark in one run. It starts the service's own
//! processes (`upconfirm api`, `upconfirm worker`) from the binary beside this one, against
//! the configured PostgreSQL, RabbitMQ and S3 store, drives them over HTTP as clients do,
//! measures what each dependency does alone in the same run, and writes the figures as JSON
//! and Markdown.
//!
//! Here: its arguments and what its phases share (the run's processes and database, the
//! settling between phases, progress); `load`, the uploads staged and confirmed by many
//! clients; `phases`, the run itself, phase by phase.

mod load;
mod phases;
mod steps;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;
use sqlx::PgPool;

use super::procs::Proc;
pub use phases::suite;
use upconfirm::domain::{new_id, IdKind};
use upconfirm::service::config::{DatabaseConfig, QueueConfig, S3Config};
use upconfirm::store::tenancy;

#[derive(Debug, Clone, Args)]
pub struct SuiteArgs {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub queue: QueueConfig,
    #[command(flatten)]
    pub s3: S3Config,
    /// Folder the results (`results.json`, `RESULTS.md`) are written to.
    #[arg(long, default_value = "bench")]
    pub out: PathBuf,
    /// Folder for the processes' logs and the large file's local copy.
    #[arg(long, default_value = "target/bench")]
    pub work: PathBuf,
    /// What the S3 store is, for the report.
    #[arg(long, default_value = "S3")]
    pub store_label: String,
    /// Sync confirms timed one at a time.
    #[arg(long, default_value_t = 300)]
    pub sync_sequential: usize,
    /// Sync confirms timed with 32 clients.
    #[arg(long, default_value_t = 2048)]
    pub sync_concurrent: usize,
    /// Size of each sync-confirmed object.
    #[arg(long, default_value_t = 1 << 20)]
    pub sync_size: usize,
    /// Uploads in each async backlog.
    #[arg(long, default_value_t = 20_000)]
    pub backlog: usize,
    /// Size of each backlog upload.
    #[arg(long, default_value_t = 64 << 10)]
    pub backlog_size: usize,
    /// Size of the large object hashed by a worker.
    #[arg(long, default_value_t = 1 << 30)]
    pub large_size: usize,
    /// Worker processes draining each backlog, one backlog per entry.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
    pub drain_workers: Vec<usize>,
    /// Also drain a backlog of hash-verified uploads with one worker process.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub verified_drain: bool,
    /// Object sizes confirmed simple and hash-verified, for confirm time against size.
    #[arg(long, value_delimiter = ',', default_values_t = [1u64 << 20, 16 << 20, 256 << 20, 1 << 30, 4 << 30])]
    pub curve_sizes: Vec<u64>,
    /// Size of the object uploaded in parts and hashed by a worker (0 skips it).
    #[arg(long, default_value_t = 8 << 30)]
    pub multipart_size: u64,
    /// The store's process: given, the multipart phase runs a second time with the store
    /// pinned to CPU 0 and the worker to CPU 1.
    #[arg(long)]
    pub store_pid: Option<u32>,
    /// Async confirms namespace A floods in the fairness phases (0 skips them).
    #[arg(long, default_value_t = 20_000)]
    pub fairness_flood: usize,
    /// Worker processes during the fairness phases.
    #[arg(long, default_value_t = 1)]
    pub fairness_workers: usize,
    /// Uploads the bulk pipeline creates, PUTs and batch-confirms (0 skips it).
    #[arg(long, default_value_t = 20_000)]
    pub pipeline: usize,
    /// Pipelines running side by side, each with one batch of 100 at a time.
    #[arg(long, default_value_t = 4)]
    pub pipelines: usize,
    /// WORKER_CONCURRENCY of every worker started (the service's default unless set).
    #[arg(long)]
    pub worker_concurrency: Option<u16>,
}

/// Clients that drive the service at once in the concurrent phases.
const CLIENTS: usize = 32;

/// What every process of the run shares.
pub(super) struct Run {
    /// The large object's size, and where its local copy goes.
    large_size: usize,
    work: PathBuf,
    env: Vec<(String, String)>,
    http: reqwest::Client,
    pub(super) logs: PathBuf,
    pub(super) pool: PgPool,
    namespace_id: String,
    workers_started: usize,
}

impl Run {
    pub(super) async fn worker(&mut self) -> anyhow::Result<Proc> {
        self.workers_started += 1;
        let name = format!("worker-{}", self.workers_started);
        let mut proc =
            Proc::spawn(&name, "worker", &self.env, "HEALTH_LISTEN_ADDR", &self.logs).await?;
        proc.ready(&self.http).await?;
        Ok(proc)
    }

    pub(super) async fn bucket(&self, name: &str) -> anyhow::Result<()> {
        self.bucket_in(&self.namespace_id, name).await
    }

    pub(super) async fn bucket_in(&self, namespace_id: &str, name: &str) -> anyhow::Result<()> {
        let id = new_id(IdKind::Bucket);
        tenancy::insert_bucket(&self.pool, &id, namespace_id, name, None, &json!({}), None)
            .await?
            .with_context(|| format!("bucket {name} exists"))?;
        Ok(())
    }

    /// Uploads of the bucket that reached COMPLETED and FAILED.
    async fn settled(&self, bucket: &str) -> anyhow::Result<(i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT count(*) FILTER (WHERE u.status = 'COMPLETED'), count(*) FILTER (WHERE u.status = 'FAILED')
             FROM uploads u JOIN buckets b ON b.id = u.bucket_id
             WHERE b.namespace_id = $1 AND b.name = $2",
        )
        .bind(&self.namespace_id)
        .bind(bucket)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Polls every `every` until `count` uploads of the bucket are terminal; how long that
    /// took from `since`. The poll is a query on the service's database, so it stays rare.
    pub(super) async fn wait_settled(
        &self,
        bucket: &str,
        count: usize,
        since: Instant,
        every: Duration,
    ) -> anyhow::Result<(Duration, i64)> {
        let deadline = since + Duration::from_secs(900);
        loop {
            let (completed, failed) = self.settled(bucket).await?;
            if (completed + failed) as usize >= count {
                return Ok((since.elapsed(), failed));
            }
            if Instant::now() > deadline {
                bail!("{bucket}: {completed} completed and {failed} failed of {count} after 15 minutes");
            }
            tokio::time::sleep(every).await;
        }
    }
}

fn env_for(args: &SuiteArgs, prefix: &str) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "DATABASE_URL".to_owned(),
            args.database.database_url.clone(),
        ),
        ("AMQP_URL".to_owned(), args.queue.amqp_url.clone()),
        ("QUEUE_PREFIX".to_owned(), prefix.to_owned()),
        ("S3_BUCKET".to_owned(), args.s3.s3_bucket.clone()),
        ("S3_REGION".to_owned(), args.s3.s3_region.clone()),
        (
            "S3_FORCE_PATH_STYLE".to_owned(),
            args.s3.s3_force_path_style.to_string(),
        ),
    ];
    let optional = [
        ("S3_ENDPOINT", &args.s3.s3_endpoint),
        ("S3_ACCESS_KEY_ID", &args.s3.s3_access_key_id),
        ("S3_SECRET_ACCESS_KEY", &args.s3.s3_secret_access_key),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            env.push((name.to_owned(), v.clone()));
        }
    }
    if let Some(c) = args.worker_concurrency {
        env.push(("WORKER_CONCURRENCY".to_owned(), c.to_string()));
    }
    env
}

/// Lets the machine settle before a measured phase: the dead rows of the previous phase are
/// vacuumed and the database's dirty pages written now, not by autovacuum or a checkpoint
/// during the phase, whose CPU would be counted against it; then every file's dirty pages
/// (the objects just staged in the store) reach the disk, so that the phase's own fsyncs do
/// not queue behind their writeback.
pub(super) async fn quiesce(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::raw_sql("VACUUM (ANALYZE)").execute(pool).await?;
    if let Err(err) = sqlx::raw_sql("CHECKPOINT").execute(pool).await {
        say(format!("  no CHECKPOINT before the phase ({err})"));
    }
    match tokio::process::Command::new("sync").status().await {
        Ok(status) if status.success() => {}
        other => say(format!("  no sync before the phase ({other:?})")),
    }
    Ok(())
}

/// Progress on stderr, with the time since the run began.
pub(super) fn say(what: impl AsRef<str>) {
    static BEGAN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let began = BEGAN.get_or_init(Instant::now);
    eprintln!(
        "[bench {:6.1}s] {}",
        began.elapsed().as_secs_f64(),
        what.as_ref()
    );
}
