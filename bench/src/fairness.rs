//! The fairness phases: one namespace floods async confirms while another does a sync
//! and an async confirm every 100 ms, each side also measured alone in the same run; and
//! the bulk path as an ingest pipeline runs it, against the drain of pre-queued confirms.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rand::{RngCore, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};

use super::procs::CpuSnapshot;
use super::suite::{quiesce, say, Run};
use super::{percentile, Client, OCTETS};

/// p50 and p99 of a set of times, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    fn of(mut times: Vec<Duration>) -> Spread {
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Spread {
            count: times.len(),
            p50_ms: ms(percentile(&times, 50.0)),
            p99_ms: ms(percentile(&times, 99.0)),
            max_ms: times.last().map(|d| ms(*d)).unwrap_or_default(),
        }
    }
}

/// What namespace B saw in one round.
#[derive(Debug, Clone, Serialize)]
pub struct QuietSide {
    /// Sync confirm requests, request to answer.
    pub sync: Spread,
    /// Sync confirms answered in the async form (not COMPLETED within SYNC_WAIT_MS).
    pub sync_async_forms: usize,
    /// Async confirms, acceptance to the task's end (the database's clock).
    pub async_completion: Spread,
    /// The sync confirms' part between acceptance and the task's end (the rest of a sync
    /// request is the API's).
    pub sync_task: Spread,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fairness {
    pub flood: usize,
    pub size_bytes: usize,
    pub workers: usize,
    /// `WORKER_BULK_STORE_YIELD` as the workers got it (unset: the default).
    pub bulk_store_yield: Option<String>,
    pub b_alone: QuietSide,
    pub b_under_flood: QuietSide,
    pub a_alone_per_second: f64,
    pub a_with_b_per_second: f64,
    pub a_ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pipeline {
    pub count: usize,
    pub batch: usize,
    pub pipelines: usize,
    pub size_bytes: usize,
    pub seconds: f64,
    pub per_second: f64,
    /// The same run's drain of pre-queued single confirms (one worker, same size).
    pub drain_per_second: f64,
    pub ratio: f64,
    /// CPU per upload, by process: creating, PUTting and confirming it.
    pub cpu_ms_per_upload: BTreeMap<String, f64>,
    /// CPU per confirmation of that drain, across the machine.
    pub drain_cpu_ms_per_confirmation: f64,
}

/// B's pace: one sync and one async confirm every this long.
const PACE: Duration = Duration::from_millis(100);
/// B alone runs this long.
const ALONE_FOR: Duration = Duration::from_secs(10);

/// Namespace B's load: a sync and an async confirm every [`PACE`] until `done` says so or
/// the staged uploads run out; then B's async confirmations are waited for.
async fn quiet_side(
    run: &Run,
    b: &Client,
    bucket: &str,
    sync_ids: &[String],
    async_ids: &[String],
    done: impl Fn() -> bool,
) -> anyhow::Result<QuietSide> {
    let mut ticker = tokio::time::interval(PACE);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut running = FuturesUnordered::new();
    let mut sync_times = Vec::new();
    let mut sync_tasks = Vec::new();
    let mut async_forms = 0;
    let mut tasks = Vec::new();
    let mut next = 0;
    loop {
        tokio::select! {
            _ = ticker.tick(), if next < sync_ids.len().min(async_ids.len()) && !done() => {
                let (s, a) = (&sync_ids[next], &async_ids[next]);
                next += 1;
                running.push(async move {
                    let started = Instant::now();
                    let answer = b.confirm(bucket, s, false).await?;
                    anyhow::Ok((Some((started.elapsed(), answer)), None))
                }.boxed());
                running.push(async move {
                    let answer = b.confirm(bucket, a, true).await?;
                    let task = answer["task_id"].as_str().context("task_id")?.to_owned();
                    anyhow::Ok((None, Some(task)))
                }.boxed());
            }
            Some(finished) = running.next() => {
                match finished? {
                    (Some((took, answer)), _) => {
                        if let Some(task) = answer["task_id"].as_str() {
                            sync_tasks.push(task.to_owned());
                        }
                        match answer["status"].as_str() {
                            Some("COMPLETED") => {}
                            Some("PROCESSING") => async_forms += 1,
                            _ => bail!("a sync confirm answered {answer}"),
                        }
                        sync_times.push(took);
                    }
                    (_, Some(task)) => tasks.push(task),
                    _ => {}
                }
            }
            else => break,
        }
    }
    let completion = completion_times(run, &tasks).await?;
    let sync_task = completion_times(run, &sync_tasks).await?;
    Ok(QuietSide {
        sync: Spread::of(sync_times),
        sync_async_forms: async_forms,
        async_completion: Spread::of(completion),
        sync_task: Spread::of(sync_task),
    })
}

/// Waits for the tasks to end; each one's time from acceptance to its end.
async fn completion_times(run: &Run, tasks: &[String]) -> anyhow::Result<Vec<Duration>> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let times: Vec<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM updated_at - created_at)::float8 FROM tasks
             WHERE id = ANY($1) AND status IN ('COMPLETED', 'FAILED', 'CANCELED')",
        )
        .bind(tasks)
        .fetch_all(&run.pool)
        .await?;
        if times.len() == tasks.len() {
            return Ok(times.into_iter().map(Duration::from_secs_f64).collect());
        }
        if Instant::now() > deadline {
            bail!("{} of {} async confirms ended", times.len(), tasks.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A's flood as a bulk pipeline sends it: every upload confirmed in batch confirms of 100,
/// 4 requests at a time, then waited for; the rate from the first request to the last
/// confirmation's end.
async fn flood(run: &Run, a: &Client, bucket: &str, ids: &[String]) -> anyhow::Result<f64> {
    let t = Instant::now();
    futures::stream::iter(ids.chunks(100))
        .map(|chunk| batch_confirm(a, bucket, chunk))
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    let (took, failed) = run
        .wait_settled(bucket, ids.len(), t, Duration::from_millis(200))
        .await?;
    if failed > 0 {
        bail!("{failed} of namespace A's confirmations failed");
    }
    Ok(ids.len() as f64 / took.as_secs_f64())
}

/// One batch confirm request of these uploads.
async fn batch_confirm(client: &Client, bucket: &str, ids: &[String]) -> anyhow::Result<()> {
    let confirmations: Vec<Value> = ids.iter().map(|id| json!({ "upload_id": id })).collect();
    client
        .post(&format!("/v1/buckets/{bucket}/uploads/confirm/batch"))
        .json(&json!({ "confirmations": confirmations }))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// Namespace A floods `flood` async confirms of `size` bytes, alone and while namespace B
/// confirms every 100 ms; B also runs alone. `workers` worker processes throughout.
pub(super) async fn fairness(
    run: &mut Run,
    a: &Client,
    b: &Client,
    b_namespace_id: &str,
    flood_size: usize,
    size: usize,
    workers: usize,
) -> anyhow::Result<Fairness> {
    for bucket in ["fair-a1", "fair-a2"] {
        run.bucket(bucket).await?;
    }
    run.bucket_in(b_namespace_id, "fair-b").await?;
    say(format!(
        "fairness: staging 2 × {flood_size} uploads for A and B's uploads, {size} bytes"
    ));
    let a1 = a.stage("fair-a1", flood_size, size, false).await?;
    let a2 = a.stage("fair-a2", flood_size, size, false).await?;
    // Enough of B's uploads for the flood to take as long as 300 confirmations a second.
    let per_kind = (flood_size / 300 * 10).max(100);
    let b_ids = b.stage("fair-b", 2 * (100 + per_kind), size, false).await?;
    let (alone_ids, flood_ids) = b_ids.split_at(200);
    let (alone_sync, alone_async) = alone_ids.split_at(100);
    let (flood_sync, flood_async) = flood_ids.split_at(flood_ids.len() / 2);

    quiesce(&run.pool).await?;
    let mut procs = Vec::new();
    for _ in 0..workers {
        procs.push(run.worker().await?);
    }
    say("fairness: B alone");
    let began = Instant::now();
    let b_alone = quiet_side(run, b, "fair-b", alone_sync, alone_async, || {
        began.elapsed() >= ALONE_FOR
    })
    .await?;
    say(format!("  {b_alone:?}"));
    quiesce(&run.pool).await?;
    say(format!("fairness: A alone, {flood_size} async confirms"));
    let a_alone = flood(run, a, "fair-a1", &a1).await?;
    say(format!("  {a_alone:.0}/s"));
    quiesce(&run.pool).await?;
    say("fairness: A's flood while B confirms every 100 ms");
    let flooded = std::sync::atomic::AtomicBool::new(false);
    let a_side = async {
        let rate = flood(run, a, "fair-a2", &a2).await;
        flooded.store(true, std::sync::atomic::Ordering::Relaxed);
        rate
    };
    let b_side = quiet_side(run, b, "fair-b", flood_sync, flood_async, || {
        flooded.load(std::sync::atomic::Ordering::Relaxed)
    });
    let (a_with_b, b_under_flood) = tokio::join!(a_side, b_side);
    let (a_with_b, b_under_flood) = (a_with_b?, b_under_flood?);
    say(format!("  A {a_with_b:.0}/s; B {b_under_flood:?}"));
    for p in procs {
        p.stop(Duration::from_secs(30)).await?;
    }
    Ok(Fairness {
        flood: flood_size,
        size_bytes: size,
        workers,
        bulk_store_yield: std::env::var("WORKER_BULK_STORE_YIELD").ok(),
        b_alone,
        b_under_flood,
        a_alone_per_second: a_alone,
        a_with_b_per_second: a_with_b,
        a_ratio: a_with_b / a_alone,
    })
}

/// The bulk path as an ingest pipeline runs it, through the public API: `pipelines`
/// loops, each creating 100 uploads in one request, PUTting them, and confirming them in
/// one batch, until `count` are confirmed; then every one is waited for.
pub(super) async fn pipeline(
    run: &mut Run,
    client: &Client,
    count: usize,
    size: usize,
    pipelines: usize,
    drain_per_second: f64,
    drain_cpu_ms_per_confirmation: f64,
) -> anyhow::Result<Pipeline> {
    const BATCH: usize = 100;
    run.bucket("pipeline").await?;
    let mut body = vec![0u8; size];
    rand::rngs::StdRng::from_entropy().fill_bytes(&mut body);
    let body = Bytes::from(body);
    let worker = run.worker().await?;
    say(format!(
        "bulk pipeline: {count} uploads of {size} bytes, batches of {BATCH}, {pipelines} pipelines"
    ));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let cpu_at_start = CpuSnapshot::take()?;
    let t = Instant::now();
    let loops = (0..pipelines).map(|_| async {
        loop {
            let first = next.fetch_add(BATCH, std::sync::atomic::Ordering::Relaxed);
            if first >= count {
                return anyhow::Ok(());
            }
            let n = BATCH.min(count - first);
            let items: Vec<Value> = (first..first + n)
                .map(|i| json!({ "filename": format!("p{i}.bin"), "content_type": OCTETS }))
                .collect();
            let created = client.create_batch_items("pipeline", items).await?;
            futures::stream::iter(created.iter().enumerate())
                .map(|(k, upload)| {
                    let mut stamped = body.to_vec();
                    let stamp = ((first + k) as u64).to_le_bytes();
                    stamped[..stamp.len().min(size)]
                        .copy_from_slice(&stamp[..stamp.len().min(size)]);
                    async move {
                        let url = upload["presigned_url"].as_str().context("presigned_url")?;
                        client.put(url, Bytes::from(stamped)).await
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<anyhow::Result<Vec<()>>>()?;
            let ids: Vec<String> = created
                .iter()
                .map(|u| u["upload_id"].as_str().unwrap_or_default().to_owned())
                .collect();
            batch_confirm(client, "pipeline", &ids).await?;
        }
    });
    futures::future::try_join_all(loops).await?;
    let (took, failed) = run
        .wait_settled("pipeline", count, t, Duration::from_millis(200))
        .await?;
    let cpu_ms_per_upload = CpuSnapshot::take()?.per_op_since(&cpu_at_start, count);
    worker.stop(Duration::from_secs(30)).await?;
    if failed > 0 {
        bail!("{failed} of the pipeline's confirmations failed");
    }
    let per_second = count as f64 / took.as_secs_f64();
    Ok(Pipeline {
        count,
        batch: BATCH,
        pipelines,
        size_bytes: size,
        seconds: took.as_secs_f64(),
        per_second,
        drain_per_second,
        ratio: per_second / drain_per_second,
        cpu_ms_per_upload,
        drain_cpu_ms_per_confirmation,
    })
}
