//! What the phases call on: connecting, the buckets, the API process, one large file
//! measured, and the results written.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use rand::{RngCore, SeedableRng};
use sqlx::PgPool;

use super::{say, Run, SuiteArgs, CLIENTS};
use crate::ceilings;
use crate::procs::{self, CpuSnapshot, Proc};
use crate::report::{self, LargeFile, Results};
use crate::Client;
use upconfirm::blob::BlobStore;
use upconfirm::service::config::DatabaseConfig;
use upconfirm::service::startup;
use upconfirm::store;

/// The service's database, created and migrated if need be, and the S3 store, reached.
pub(super) async fn connect(args: &SuiteArgs) -> anyhow::Result<(PgPool, BlobStore)> {
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
    Ok((pool, blob))
}

/// Every bucket the phases stage in, `async1` to `async{rounds}` for the drains.
pub(super) async fn create_buckets(run: &Run, rounds: usize) -> anyhow::Result<()> {
    for bucket in ["warm", "sync1", "sync32", "large"] {
        run.bucket(bucket).await?;
    }
    for round in 1..=rounds {
        run.bucket(&format!("async{round}")).await?;
    }
    for bucket in ["curve", "multipart"] {
        run.bucket(bucket).await?;
    }
    Ok(())
}

/// The `upconfirm api` process, ready, and a client of it in the namespace `bench`.
pub(super) async fn start_api(
    run: &Run,
    http: &reqwest::Client,
    key: &str,
) -> anyhow::Result<(Proc, Client)> {
    let api_addr = procs::free_addr()?;
    let mut api_env = run.env.clone();
    api_env.push(("LISTEN_ADDR".to_owned(), api_addr.to_string()));
    // The benchmark measures the service, not one organization's rate limit.
    api_env.push(("RATE_LIMIT_PER_SECOND".to_owned(), "0".to_owned()));
    let mut api = Proc::spawn("api", "api", &api_env, "LISTEN_ADDR", &run.logs).await?;
    api.ready(http).await?;
    let client = Client::new(
        http.clone(),
        &format!("http://{}", api.health),
        key,
        "bench",
    );
    Ok((api, client))
}

/// What the API spent accepting the async confirms of every backlog.
#[derive(Default)]
pub(super) struct ApiTally {
    pub(super) cpu_ms: f64,
    pub(super) requests: usize,
    pub(super) wall: Duration,
}

impl ApiTally {
    pub(super) fn cost(&self) -> report::ApiCost {
        report::ApiCost {
            confirm_requests: self.requests,
            per_second: self.requests as f64 / self.wall.as_secs_f64(),
            cpu_ms_per_request: self.cpu_ms / self.requests as f64,
        }
    }
}

/// `results.json` and `RESULTS.md` in `out`, and the Markdown on stdout.
pub(super) fn write_results(out: &Path, results: &Results) -> anyhow::Result<()> {
    let json_path = out.join("results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(results)? + "\n")?;
    let md_path = out.join("RESULTS.md");
    std::fs::write(&md_path, report::markdown(results))?;
    println!("{}", report::markdown(results));
    say(format!(
        "wrote {} and {}",
        md_path.display(),
        json_path.display()
    ));
    Ok(())
}

pub(super) async fn measure_large_file(
    run: &mut Run,
    client: &Client,
    blob: &BlobStore,
) -> anyhow::Result<LargeFile> {
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
