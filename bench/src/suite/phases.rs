//! The run, phase by phase: sync confirm latency, async drains, fairness, the bulk pipeline,
//! each dependency's ceiling, the large files; then the report.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use rand::{RngCore, SeedableRng};

use super::{env_for, quiesce, say, Run, SuiteArgs, CLIENTS};
use crate::ceilings;
use crate::fairness;
use crate::large;
use crate::procs::{self, CpuSnapshot, Proc};
use crate::report::{self, Drain, LargeFile, Latency, Results};
use crate::{percentile, Client};
use upconfirm::blob::BlobStore;
use upconfirm::cli::admin;
use upconfirm::service::config::DatabaseConfig;
use upconfirm::service::startup;
use upconfirm::store;

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
