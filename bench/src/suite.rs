//! `upconfirm-bench suite`: the whole benchmark in one run. It starts the service's own
//! processes (`upconfirm api`, `upconfirm worker`) from the binary beside this one, against
//! the configured PostgreSQL, RabbitMQ and S3 store, drives them over HTTP as clients do,
//! measures what each dependency does alone in the same run, and writes the figures as JSON
//! and Markdown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use rand::{RngCore, SeedableRng};
use serde_json::json;
use sqlx::PgPool;

use super::ceilings;
use super::fairness;
use super::large;
use super::procs::{self, CpuSnapshot, Proc};
use super::report::{self, Drain, LargeFile, Latency, Results};
use super::{percentile, Client};
use upconfirm::blob::BlobStore;
use upconfirm::cli::admin;
use upconfirm::domain::{new_id, IdKind};
use upconfirm::service::config::{DatabaseConfig, QueueConfig, S3Config};
use upconfirm::service::startup;
use upconfirm::store::{self, tenancy};

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

impl Client {
    /// Creates `count` uploads (100 per request) and PUTs distinct random content of `size`
    /// bytes to each; returns their ids in order. `verified` uploads declare their SHA-256
    /// with `enforce_file_hash`, and are PUT with the headers that signs.
    pub(super) async fn stage(
        &self,
        bucket: &str,
        count: usize,
        size: usize,
        verified: bool,
    ) -> anyhow::Result<Vec<String>> {
        let mut base = vec![0u8; size];
        rand::rngs::StdRng::from_entropy().fill_bytes(&mut base);
        // Distinct content, so that no upload is a duplicate of another.
        let body_of = |i: usize| {
            let mut body = base.clone();
            let stamp = (i as u64).to_le_bytes();
            body[..stamp.len().min(size)].copy_from_slice(&stamp[..stamp.len().min(size)]);
            body
        };
        let body_of = &body_of;
        let created: Vec<Vec<serde_json::Value>> = futures::stream::iter((0..count).step_by(100))
            .map(|first| {
                let n = (count - first).min(100);
                let items = (first..first + n)
                    .map(|i| {
                        let mut item = json!({"filename": format!("f{i}.bin"),
                                "content_type": super::OCTETS});
                        if verified {
                            item["file_hash"] = json!(hex::encode(
                                <sha2::Sha256 as sha2::Digest>::digest(body_of(i))
                            ));
                            item["enforce_file_hash"] = json!(true);
                        }
                        item
                    })
                    .collect();
                self.create_batch_items(bucket, items)
            })
            .buffered(4)
            .try_collect()
            .await?;
        let created: Vec<serde_json::Value> = created.into_iter().flatten().collect();
        futures::stream::iter(created.iter().enumerate())
            .map(|(i, upload)| async move {
                let url = upload["presigned_url"].as_str().context("presigned_url")?;
                let mut put = self.http.put(url).body(Bytes::from(body_of(i)));
                for (name, value) in upload["upload_headers"].as_object().into_iter().flatten() {
                    put = put.header(name, value.as_str().unwrap_or_default());
                }
                put.send().await?.error_for_status()?;
                anyhow::Ok(())
            })
            .buffer_unordered(16)
            .try_collect::<()>()
            .await?;
        created
            .iter()
            .map(|u| Ok(u["upload_id"].as_str().context("upload_id")?.to_owned()))
            .collect()
    }

    /// Confirms each upload, `clients` at once; each answer must have `status`. Returns the
    /// time each confirm request took.
    pub(super) async fn confirm_all(
        &self,
        bucket: &str,
        ids: &[String],
        clients: usize,
        run_async: bool,
        status: &str,
    ) -> anyhow::Result<Vec<Duration>> {
        let next = AtomicUsize::new(0);
        let runners = (0..clients).map(|_| async {
            let mut timings = Vec::new();
            while let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) {
                let started = Instant::now();
                let answer = self.confirm(bucket, id, run_async).await?;
                timings.push(started.elapsed());
                if answer["status"] != status {
                    bail!("confirm of {id} answered {answer}, not {status}");
                }
            }
            anyhow::Ok(timings)
        });
        let per_client = futures::future::try_join_all(runners).await?;
        Ok(per_client.into_iter().flatten().collect())
    }
}

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

fn latency_figures(
    concurrency: usize,
    size: usize,
    mut timings: Vec<Duration>,
    wall: Duration,
    cpu_at_start: &CpuSnapshot,
) -> anyhow::Result<Latency> {
    let cpu_ms_per_confirmation = CpuSnapshot::take()?.per_op_since(cpu_at_start, timings.len());
    timings.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(Latency {
        concurrency,
        count: timings.len(),
        size_bytes: size,
        p50_ms: ms(percentile(&timings, 50.0)),
        p95_ms: ms(percentile(&timings, 95.0)),
        p99_ms: ms(percentile(&timings, 99.0)),
        mean_ms: timings.iter().map(|d| ms(*d)).sum::<f64>() / timings.len() as f64,
        max_ms: timings.last().map(|d| ms(*d)).unwrap_or_default(),
        per_second: timings.len() as f64 / wall.as_secs_f64(),
        cpu_ms_per_confirmation,
    })
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

/// Progress on stderr, with the time since the run began.
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

pub(super) fn say(what: impl AsRef<str>) {
    static BEGAN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let began = BEGAN.get_or_init(Instant::now);
    eprintln!(
        "[bench {:6.1}s] {}",
        began.elapsed().as_secs_f64(),
        what.as_ref()
    );
}

pub async fn suite(args: SuiteArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    say("starting");
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let prefix = format!("upconfirm-bench-{run_id}");
    let logs = args.work.join("logs");
    std::fs::create_dir_all(&logs)?;
    std::fs::create_dir_all(&args.out)?;

    store::create_database_if_missing(&args.database.database_url).await?;
    let pool = store::connect(&DatabaseConfig {
        database_max_connections: CLIENTS as u32 + 4,
        ..args.database.clone()
    })
    .await?;
    store::migrate(&pool).await?;
    let blob = BlobStore::connect(&startup::s3_settings(&args.s3)).await?;
    blob.ensure_bucket()
        .await
        .context("reaching the S3 store")?;

    let org = admin::create_organization(&pool, &format!("bench-{run_id}")).await?;
    let namespace_id = admin::create_namespace(&pool, &org, "bench").await?;
    let key = admin::create_api_key(&pool, &org).await?;
    let env = env_for(&args, &prefix);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let mut run = Run {
        large_size: args.large_size,
        work: args.work.clone(),
        env,
        http: http.clone(),
        logs,
        pool: pool.clone(),
        namespace_id,
        workers_started: 0,
    };
    for bucket in ["warm", "sync1", "sync32", "large"] {
        run.bucket(bucket).await?;
    }
    // Each entry of --drain-workers drains a backlog of simple uploads; then one worker
    // drains a backlog of hash-verified ones, to compare with the first.
    let mut rounds: Vec<(usize, bool)> = args.drain_workers.iter().map(|&w| (w, false)).collect();
    if args.verified_drain {
        rounds.push((1, true));
    }
    for round in 1..=rounds.len() {
        run.bucket(&format!("async{round}")).await?;
    }
    for bucket in ["curve", "multipart"] {
        run.bucket(bucket).await?;
    }

    let api_addr = procs::free_addr()?;
    let mut api_env = run.env.clone();
    api_env.push(("LISTEN_ADDR".to_owned(), api_addr.to_string()));
    // The benchmark measures the service, not one organization's rate limit.
    api_env.push(("RATE_LIMIT_PER_SECOND".to_owned(), "0".to_owned()));
    let mut api = Proc::spawn("api", "api", &api_env, "LISTEN_ADDR", &run.logs).await?;
    api.ready(&http).await?;
    let client = Client::new(
        http.clone(),
        &format!("http://{}", api.health),
        &key,
        "bench",
    );

    // Sync confirm latency, one worker process.
    let sync = args.sync_size;
    say(format!(
        "staging {} + {} objects of {sync} bytes for sync confirms",
        args.sync_sequential, args.sync_concurrent
    ));
    let warm = client.stage("warm", 64, sync, false).await?;
    let seq = client
        .stage("sync1", args.sync_sequential, sync, false)
        .await?;
    let conc = client
        .stage("sync32", args.sync_concurrent, sync, false)
        .await?;
    let worker = run.worker().await?;
    client
        .confirm_all("warm", &warm, 8, false, "COMPLETED")
        .await?;
    quiesce(&pool).await?;
    say("sync confirms, 1 client");
    let cpu_at_start = CpuSnapshot::take()?;
    let t = Instant::now();
    let timings = client
        .confirm_all("sync1", &seq, 1, false, "COMPLETED")
        .await?;
    let sync1 = latency_figures(1, sync, timings, t.elapsed(), &cpu_at_start)?;
    say(format!("  {sync1:?}"));
    quiesce(&pool).await?;
    say(format!("sync confirms, {CLIENTS} clients"));
    let cpu_at_start = CpuSnapshot::take()?;
    let t = Instant::now();
    let timings = client
        .confirm_all("sync32", &conc, CLIENTS, false, "COMPLETED")
        .await?;
    let sync32 = latency_figures(CLIENTS, sync, timings, t.elapsed(), &cpu_at_start)?;
    say(format!("  {sync32:?}"));
    worker.stop(Duration::from_secs(30)).await?;

    // Async backlogs drained by one worker process, then by two.
    let mut drains = Vec::new();
    let mut api_cpu = 0.0;
    let mut api_requests = 0usize;
    let mut api_wall = Duration::ZERO;
    for (round, &(workers, verified)) in rounds.iter().enumerate() {
        let bucket = format!("async{}", round + 1);
        say(format!(
            "staging a backlog of {} {}objects of {} bytes",
            args.backlog,
            if verified { "hash-verified " } else { "" },
            args.backlog_size
        ));
        let ids = client
            .stage(&bucket, args.backlog, args.backlog_size, verified)
            .await?;
        say("async confirms with no worker running");
        let cpu_before = api.cpu_ms()?;
        let t = Instant::now();
        client
            .confirm_all(&bucket, &ids, CLIENTS, true, "PROCESSING")
            .await?;
        api_wall += t.elapsed();
        api_cpu += api.cpu_ms()? - cpu_before;
        api_requests += ids.len();

        quiesce(&pool).await?;
        say(format!("draining with {workers} worker process(es)"));
        let cpu_at_start = CpuSnapshot::take()?;
        let t = Instant::now();
        let mut pool_of = Vec::new();
        for _ in 0..workers {
            pool_of.push(run.worker().await?);
        }
        let (took, failed) = run
            .wait_settled(&bucket, ids.len(), t, Duration::from_millis(200))
            .await?;
        let split = CpuSnapshot::take()?.per_op_since(&cpu_at_start, ids.len());
        let cpu: f64 = pool_of
            .iter()
            .map(Proc::cpu_ms)
            .sum::<anyhow::Result<f64>>()?;
        for w in pool_of {
            w.stop(Duration::from_secs(30)).await?;
        }
        let drain = Drain {
            workers,
            hash_verified: verified,
            count: ids.len(),
            size_bytes: args.backlog_size,
            seconds: took.as_secs_f64(),
            per_second: ids.len() as f64 / took.as_secs_f64(),
            worker_cpu_ms_per_confirmation: cpu / ids.len() as f64,
            cpu_ms_per_confirmation: split,
            failed,
            ratio_to_smallest_ceiling: 0.0,
        };
        say(format!("  {drain:?}"));
        drains.push(drain);
    }

    // One namespace's flood against another's interactive and async confirms.
    let fairness = if args.fairness_flood > 0 {
        quiesce(&pool).await?;
        let b_namespace = admin::create_namespace(&pool, &org, "bench-b").await?;
        let b = Client::new(
            http.clone(),
            &format!("http://{}", api.health),
            &key,
            "bench-b",
        );
        let figures = fairness::fairness(
            &mut run,
            &client,
            &b,
            &b_namespace,
            args.fairness_flood,
            args.backlog_size,
            args.fairness_workers,
        )
        .await?;
        Some(figures)
    } else {
        None
    };
    // The bulk path as a pipeline runs it, against the drain of pre-queued confirms.
    let reference = drains
        .iter()
        .find(|d| d.workers == 1 && !d.hash_verified)
        .map(|d| {
            (
                d.per_second,
                d.cpu_ms_per_confirmation
                    .get("all")
                    .copied()
                    .unwrap_or_default(),
            )
        });
    let pipeline = match reference {
        Some((drain, drain_cpu)) if args.pipeline > 0 => {
            quiesce(&pool).await?;
            let figures = fairness::pipeline(
                &mut run,
                &client,
                args.pipeline,
                args.backlog_size,
                args.pipelines,
                drain,
                drain_cpu,
            )
            .await?;
            say(format!("  {figures:?}"));
            Some(figures)
        }
        _ => None,
    };

    // Each dependency alone.
    quiesce(&pool).await?;
    say("ceilings: broker, HeadObject, database");
    let mut cpu_ms_per_op = BTreeMap::new();
    let before = CpuSnapshot::take()?;
    let broker = ceilings::broker(
        &args.queue.amqp_url,
        &format!("{prefix}.ceiling"),
        args.backlog,
        CLIENTS,
        CLIENTS as u16,
    )
    .await?;
    cpu_ms_per_op.insert(
        "broker".to_owned(),
        CpuSnapshot::take()?.per_op_since(&before, broker.count),
    );
    say(format!("  broker {broker:?}"));
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT u.s3_key FROM uploads u JOIN buckets b ON b.id = u.bucket_id
         WHERE b.namespace_id = $1 AND b.name = 'async1'",
    )
    .bind(&run.namespace_id)
    .fetch_all(&pool)
    .await?;
    let before = CpuSnapshot::take()?;
    let head = ceilings::head_object(&blob, &keys, CLIENTS).await?;
    cpu_ms_per_op.insert(
        "head_object".to_owned(),
        CpuSnapshot::take()?.per_op_since(&before, head.count),
    );
    say(format!("  HeadObject {head:?}"));
    let async1: String =
        sqlx::query_scalar("SELECT id FROM buckets WHERE namespace_id = $1 AND name = 'async1'")
            .bind(&run.namespace_id)
            .fetch_one(&pool)
            .await?;
    quiesce(&pool).await?;
    let before = CpuSnapshot::take()?;
    let database = ceilings::database(&pool, &async1, CLIENTS).await?;
    cpu_ms_per_op.insert(
        "database".to_owned(),
        CpuSnapshot::take()?.per_op_since(&before, database.count),
    );
    say(format!("  database {database:?}"));

    // One large object: the store's bare GET, sha256sum on a local copy, and a worker.
    say(format!("large file: {} bytes", args.large_size));
    let large = large_file(&mut run, &client, &blob).await?;
    say(format!("  {large:?}"));

    say("confirm time against size, simple and hash-verified");
    let curve = large::size_curve(&mut run, &client, &blob, "curve", &args.curve_sizes).await?;
    let mut multipart = Vec::new();
    if args.multipart_size > 0 {
        let mut placements = vec![large::Placement::Shared];
        if let Some(store_pid) = args.store_pid {
            placements.push(large::Placement::Split { store_pid });
        }
        for placement in placements {
            say(format!(
                "multipart upload of {} bytes, {placement:?}",
                args.multipart_size
            ));
            let figures = large::multipart_file(
                &mut run,
                &client,
                &blob,
                "multipart",
                args.multipart_size,
                placement,
            )
            .await?;
            say(format!("  {figures:?}"));
            multipart.push(figures);
        }
    }

    api.stop(Duration::from_secs(30)).await?;
    upconfirm::queue::delete_topology(&args.queue.amqp_url, &prefix)
        .await
        .ok();

    let results = Results::new(
        &args.store_label,
        [sync1, sync32],
        drains,
        report::ApiCost {
            confirm_requests: api_requests,
            per_second: api_requests as f64 / api_wall.as_secs_f64(),
            cpu_ms_per_request: api_cpu / api_requests as f64,
        },
        report::Ceilings {
            broker,
            head_object: head,
            database,
            cpu_ms_per_op,
        },
        large,
        curve,
        multipart,
        fairness,
        pipeline,
        started.elapsed(),
    );
    let json_path = args.out.join("results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&results)? + "\n")?;
    let md_path = args.out.join("RESULTS.md");
    std::fs::write(&md_path, report::markdown(&results))?;
    println!("{}", report::markdown(&results));
    say(format!(
        "wrote {} and {}",
        md_path.display(),
        json_path.display()
    ));
    Ok(())
}

async fn large_file(run: &mut Run, client: &Client, blob: &BlobStore) -> anyhow::Result<LargeFile> {
    let size = run.large_size;
    let mut data = vec![0u8; size];
    rand::rngs::StdRng::from_entropy().fill_bytes(&mut data);
    let local = run.work.join("large.bin");
    std::fs::write(&local, &data)?;
    let (upload_id, url) = client.create("large", "large.bin").await?;
    client.put(&url, Bytes::from(data)).await?;
    let s3_key: String = sqlx::query_scalar("SELECT s3_key FROM uploads WHERE id = $1")
        .bind(&upload_id)
        .fetch_one(&run.pool)
        .await?;

    let cpu_at_start = CpuSnapshot::take()?;
    let get = ceilings::get_object(blob, &s3_key).await?;
    let get_cpu_ms_per_mib = CpuSnapshot::take()?.per_op_since(&cpu_at_start, size >> 20);
    let (digest, sha256sum) = ceilings::sha256sum(&local, 2).await?;
    std::fs::remove_file(&local).ok();

    let worker = run.worker().await?;
    let t = Instant::now();
    let answer = client.confirm("large", &upload_id, true).await?;
    if answer["status"] != "PROCESSING" {
        bail!("a large confirm answered {answer}");
    }
    let (took, failed) = run
        .wait_settled("large", 1, t, Duration::from_millis(10))
        .await?;
    let peak = worker.peak_rss_kib()?;
    worker.stop(Duration::from_secs(30)).await?;
    if failed != 0 {
        bail!("the large confirmation failed; see {}", run.logs.display());
    }
    let file_hash: Option<String> =
        sqlx::query_scalar("SELECT file_hash FROM uploads WHERE id = $1")
            .bind(&upload_id)
            .fetch_one(&run.pool)
            .await?;
    let mb = |bytes: usize, secs: f64| bytes as f64 / secs / 1e6;
    let worker_mb_s = mb(size, took.as_secs_f64());
    let get_mb_s = mb(get.count, get.seconds);
    let sum_mb_s = mb(sha256sum.count, sha256sum.seconds);
    Ok(LargeFile {
        size_bytes: size,
        worker_seconds: took.as_secs_f64(),
        worker_mb_per_s: worker_mb_s,
        get_mb_per_s: get_mb_s,
        sha256sum_mb_per_s: sum_mb_s,
        ratio_to_get: worker_mb_s / get_mb_s,
        ratio_to_sha256sum: worker_mb_s / sum_mb_s,
        ratio_to_min: worker_mb_s / get_mb_s.min(sum_mb_s),
        worker_peak_rss_mib: peak as f64 / 1024.0,
        digest_matches_sha256sum: file_hash.as_deref() == Some(digest.as_str()),
        get_cpu_ms_per_mib,
    })
}
