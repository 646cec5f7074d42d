//! The run, phase by phase: sync confirm latency, async drains, fairness, the bulk pipeline,
//! each dependency's ceiling, the large files; then the report.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::steps::{
    connect, create_buckets, measure_large_file, start_api, write_results, ApiTally,
};
use super::{env_for, quiesce, say, Run, SuiteArgs, CLIENTS};
use crate::ceilings;
use crate::fairness::{self, Fairness, Pipeline};
use crate::large::{self, CurvePoint, MultipartFile};
use crate::procs::{CpuSnapshot, Proc};
use crate::report::{self, Drain, LargeFile, Latency, Results};
use crate::{percentile, Client};
use upconfirm::blob::BlobStore;
use upconfirm::cli::admin;

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

pub async fn suite(args: SuiteArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    say("starting");
    let rounds = drain_rounds(&args);
    let mut bench = Bench::start(&args, rounds.len()).await?;
    let sync_latency = bench.sync_latency().await?;
    let (drains, api_cost) = bench.drains(&rounds).await?;
    let fairness = bench.fairness().await?;
    let pipeline = bench.pipeline(&drains).await?;
    let ceilings = bench.ceilings().await?;
    let large = bench.large_file().await?;
    let curve = bench.size_curve().await?;
    let multipart = bench.multipart_files().await?;
    bench.stop().await?;

    let results = Results::new(
        &args.store_label,
        sync_latency,
        drains,
        api_cost,
        ceilings,
        large,
        curve,
        multipart,
        fairness,
        pipeline,
        started.elapsed(),
    );
    write_results(&args.out, &results)
}

/// Each entry of --drain-workers drains a backlog of simple uploads; then one worker
/// drains a backlog of hash-verified ones, to compare with the first.
fn drain_rounds(args: &SuiteArgs) -> Vec<(usize, bool)> {
    let mut rounds: Vec<(usize, bool)> = args.drain_workers.iter().map(|&w| (w, false)).collect();
    if args.verified_drain {
        rounds.push((1, true));
    }
    rounds
}

/// What the phases share: the run's tenant, stores and processes, and the client that
/// drives the API.
struct Bench<'a> {
    args: &'a SuiteArgs,
    /// The run's queue prefix, whose topology is deleted at the end.
    prefix: String,
    /// The tenant and HTTP client a second namespace's client is made from, for fairness.
    org: String,
    key: String,
    http: reqwest::Client,
    blob: BlobStore,
    run: Run,
    api: Proc,
    client: Client,
}

impl<'a> Bench<'a> {
    /// The run's database, store, tenant and buckets (`rounds` of them for the drains), and
    /// its API process.
    async fn start(args: &'a SuiteArgs, rounds: usize) -> anyhow::Result<Bench<'a>> {
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let prefix = format!("upconfirm-bench-{run_id}");
        let logs = args.work.join("logs");
        std::fs::create_dir_all(&logs)?;
        std::fs::create_dir_all(&args.out)?;
        let (pool, blob) = connect(args).await?;

        let org = admin::create_organization(&pool, &format!("bench-{run_id}")).await?;
        let namespace_id = admin::create_namespace(&pool, &org, "bench").await?;
        let key = admin::create_api_key(&pool, &org).await?;
        let env = env_for(args, &prefix);
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?;
        let run = Run {
            large_size: args.large_size,
            work: args.work.clone(),
            env,
            http: http.clone(),
            logs,
            pool,
            namespace_id,
            workers_started: 0,
        };
        create_buckets(&run, rounds).await?;
        let (api, client) = start_api(&run, &http, &key).await?;
        Ok(Bench {
            args,
            prefix,
            org,
            key,
            http,
            blob,
            run,
            api,
            client,
        })
    }

    /// Sync confirm latency, one worker process.
    async fn sync_latency(&mut self) -> anyhow::Result<[Latency; 2]> {
        let (args, client) = (self.args, &self.client);
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
        let worker = self.run.worker().await?;
        client
            .confirm_all("warm", &warm, 8, false, "COMPLETED")
            .await?;
        quiesce(&self.run.pool).await?;
        say("sync confirms, 1 client");
        let cpu_at_start = CpuSnapshot::take()?;
        let t = Instant::now();
        let timings = client
            .confirm_all("sync1", &seq, 1, false, "COMPLETED")
            .await?;
        let sync1 = latency_figures(1, sync, timings, t.elapsed(), &cpu_at_start)?;
        say(format!("  {sync1:?}"));
        quiesce(&self.run.pool).await?;
        say(format!("sync confirms, {CLIENTS} clients"));
        let cpu_at_start = CpuSnapshot::take()?;
        let t = Instant::now();
        let timings = client
            .confirm_all("sync32", &conc, CLIENTS, false, "COMPLETED")
            .await?;
        let sync32 = latency_figures(CLIENTS, sync, timings, t.elapsed(), &cpu_at_start)?;
        say(format!("  {sync32:?}"));
        worker.stop(Duration::from_secs(30)).await?;
        Ok([sync1, sync32])
    }

    /// Async backlogs drained by one worker process, then by two; and what the API spent
    /// accepting their confirms.
    async fn drains(
        &mut self,
        rounds: &[(usize, bool)],
    ) -> anyhow::Result<(Vec<Drain>, report::ApiCost)> {
        let mut drains = Vec::new();
        let mut api = ApiTally::default();
        for (round, &(workers, verified)) in rounds.iter().enumerate() {
            let bucket = format!("async{}", round + 1);
            let ids = self.backlog(&bucket, verified, &mut api).await?;
            let drain = self.drain(&bucket, &ids, workers, verified).await?;
            say(format!("  {drain:?}"));
            drains.push(drain);
        }
        Ok((drains, api.cost()))
    }

    /// A backlog staged and confirmed async with no worker running: its upload ids.
    async fn backlog(
        &self,
        bucket: &str,
        verified: bool,
        api: &mut ApiTally,
    ) -> anyhow::Result<Vec<String>> {
        let (args, client) = (self.args, &self.client);
        say(format!(
            "staging a backlog of {} {}objects of {} bytes",
            args.backlog,
            if verified { "hash-verified " } else { "" },
            args.backlog_size
        ));
        let ids = client
            .stage(bucket, args.backlog, args.backlog_size, verified)
            .await?;
        say("async confirms with no worker running");
        let cpu_before = self.api.cpu_ms()?;
        let t = Instant::now();
        client
            .confirm_all(bucket, &ids, CLIENTS, true, "PROCESSING")
            .await?;
        api.wall += t.elapsed();
        api.cpu_ms += self.api.cpu_ms()? - cpu_before;
        api.requests += ids.len();
        Ok(ids)
    }

    /// The backlog of `ids` drained by `workers` fresh worker processes.
    async fn drain(
        &mut self,
        bucket: &str,
        ids: &[String],
        workers: usize,
        verified: bool,
    ) -> anyhow::Result<Drain> {
        quiesce(&self.run.pool).await?;
        say(format!("draining with {workers} worker process(es)"));
        let cpu_at_start = CpuSnapshot::take()?;
        let t = Instant::now();
        let mut pool_of = Vec::new();
        for _ in 0..workers {
            pool_of.push(self.run.worker().await?);
        }
        let (took, failed) = self
            .run
            .wait_settled(bucket, ids.len(), t, Duration::from_millis(200))
            .await?;
        let split = CpuSnapshot::take()?.per_op_since(&cpu_at_start, ids.len());
        let cpu: f64 = pool_of
            .iter()
            .map(Proc::cpu_ms)
            .sum::<anyhow::Result<f64>>()?;
        for w in pool_of {
            w.stop(Duration::from_secs(30)).await?;
        }
        Ok(Drain {
            workers,
            hash_verified: verified,
            count: ids.len(),
            size_bytes: self.args.backlog_size,
            seconds: took.as_secs_f64(),
            per_second: ids.len() as f64 / took.as_secs_f64(),
            worker_cpu_ms_per_confirmation: cpu / ids.len() as f64,
            cpu_ms_per_confirmation: split,
            failed,
            ratio_to_smallest_ceiling: 0.0,
        })
    }

    /// One namespace's flood against another's interactive and async confirms.
    async fn fairness(&mut self) -> anyhow::Result<Option<Fairness>> {
        let args = self.args;
        let fairness = if args.fairness_flood > 0 {
            let pool = &self.run.pool;
            quiesce(pool).await?;
            let b_namespace = admin::create_namespace(pool, &self.org, "bench-b").await?;
            let b = Client::new(
                self.http.clone(),
                &format!("http://{}", self.api.health),
                &self.key,
                "bench-b",
            );
            let figures = fairness::fairness(
                &mut self.run,
                &self.client,
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
        Ok(fairness)
    }

    /// The bulk path as a pipeline runs it, against the drain of pre-queued confirms.
    async fn pipeline(&mut self, drains: &[Drain]) -> anyhow::Result<Option<Pipeline>> {
        let args = self.args;
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
                quiesce(&self.run.pool).await?;
                let figures = fairness::pipeline(
                    &mut self.run,
                    &self.client,
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
        Ok(pipeline)
    }

    /// Each dependency alone.
    async fn ceilings(&self) -> anyhow::Result<report::Ceilings> {
        let (args, pool) = (self.args, &self.run.pool);
        quiesce(pool).await?;
        say("ceilings: broker, HeadObject, database");
        let mut cpu_ms_per_op = BTreeMap::new();
        let before = CpuSnapshot::take()?;
        let broker = ceilings::broker(
            &args.queue.amqp_url,
            &format!("{}.ceiling", self.prefix),
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
        .bind(&self.run.namespace_id)
        .fetch_all(pool)
        .await?;
        let before = CpuSnapshot::take()?;
        let head = ceilings::head_object(&self.blob, &keys, CLIENTS).await?;
        cpu_ms_per_op.insert(
            "head_object".to_owned(),
            CpuSnapshot::take()?.per_op_since(&before, head.count),
        );
        say(format!("  HeadObject {head:?}"));
        let async1: String = sqlx::query_scalar(
            "SELECT id FROM buckets WHERE namespace_id = $1 AND name = 'async1'",
        )
        .bind(&self.run.namespace_id)
        .fetch_one(pool)
        .await?;
        quiesce(pool).await?;
        let before = CpuSnapshot::take()?;
        let database = ceilings::database(pool, &async1, CLIENTS).await?;
        cpu_ms_per_op.insert(
            "database".to_owned(),
            CpuSnapshot::take()?.per_op_since(&before, database.count),
        );
        say(format!("  database {database:?}"));
        Ok(report::Ceilings {
            broker,
            head_object: head,
            database,
            cpu_ms_per_op,
        })
    }

    /// One large object: the store's bare GET, sha256sum on a local copy, and a worker.
    async fn large_file(&mut self) -> anyhow::Result<LargeFile> {
        say(format!("large file: {} bytes", self.args.large_size));
        let large = measure_large_file(&mut self.run, &self.client, &self.blob).await?;
        say(format!("  {large:?}"));
        Ok(large)
    }

    /// Confirm time against size, simple and hash-verified.
    async fn size_curve(&mut self) -> anyhow::Result<Vec<CurvePoint>> {
        say("confirm time against size, simple and hash-verified");
        large::size_curve(
            &mut self.run,
            &self.client,
            &self.blob,
            "curve",
            &self.args.curve_sizes,
        )
        .await
    }

    /// The object uploaded in parts, with the store sharing the CPUs with the worker and,
    /// given its process, pinned apart from it.
    async fn multipart_files(&mut self) -> anyhow::Result<Vec<MultipartFile>> {
        let args = self.args;
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
                    &mut self.run,
                    &self.client,
                    &self.blob,
                    "multipart",
                    args.multipart_size,
                    placement,
                )
                .await?;
                say(format!("  {figures:?}"));
                multipart.push(figures);
            }
        }
        Ok(multipart)
    }

    /// The API stopped and the run's queues deleted.
    async fn stop(self) -> anyhow::Result<()> {
        self.api.stop(Duration::from_secs(30)).await?;
        upconfirm::queue::delete_topology(&self.args.queue.amqp_url, &self.prefix)
            .await
            .ok();
        Ok(())
    }
}
