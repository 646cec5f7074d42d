//! The large-file phases: confirm time against object size for simple and hash-verified
//! uploads, and an object uploaded in parts and hashed by a worker, against the store's
//! bare ranged reads and the same SHA-256 code on bytes in memory.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use rand::{RngCore, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::procs::CpuSnapshot;
use super::report::CpuSplit;
use super::suite::{say, Run};
use super::{Client, OCTETS};
use upconfirm::blob::{BlobStore, RangedRead};

const MIB: u64 = 1 << 20;
/// Distinct mebibytes the synthetic bytes are cut from.
const BASE_MIB: u64 = 64;

/// 64 MiB of random bytes, made once per run.
fn base() -> &'static [u8] {
    static BASE: OnceLock<Vec<u8>> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut bytes = vec![0u8; (BASE_MIB * MIB) as usize];
        rand::rngs::StdRng::from_entropy().fill_bytes(&mut bytes);
        bytes
    })
}

/// An object's bytes, made as they are sent: each mebibyte is one of the base's, stamped
/// with the object's seed and its index, so no two mebibytes of a run are alike (a store
/// that keeps blocks by content would otherwise keep one and serve it from memory).
#[derive(Debug, Clone, Copy)]
pub(super) struct Synthetic {
    seed: u64,
    size: u64,
}

impl Synthetic {
    pub(super) fn new(size: u64) -> Synthetic {
        Synthetic {
            seed: rand::random(),
            size,
        }
    }

    fn chunk(&self, index: u64) -> Bytes {
        let start = ((index % BASE_MIB) * MIB) as usize;
        let len = (self.size - index * MIB).min(MIB) as usize;
        let mut chunk = BytesMut::from(&base()[start..start + len]);
        let mut stamp = [0u8; 16];
        stamp[..8].copy_from_slice(&self.seed.to_le_bytes());
        stamp[8..].copy_from_slice(&index.to_le_bytes());
        let n = stamp.len().min(len);
        chunk[..n].copy_from_slice(&stamp[..n]);
        chunk.freeze()
    }

    /// Bytes `start..end` as a request body; `start` falls on a mebibyte.
    fn body(&self, start: u64, end: u64) -> reqwest::Body {
        let me = *self;
        let chunks = futures::stream::iter(start / MIB..end.div_ceil(MIB))
            .map(move |i| Ok::<_, std::io::Error>(me.chunk(i)));
        reqwest::Body::wrap_stream(chunks)
    }

    /// The SHA-256 of the whole object, hex.
    pub(super) async fn sha256_hex(&self) -> anyhow::Result<String> {
        let me = *self;
        Ok(tokio::task::spawn_blocking(move || {
            let mut sha = Sha256::new();
            for i in 0..me.size.div_ceil(MIB) {
                sha.update(me.chunk(i));
            }
            hex::encode(sha.finalize())
        })
        .await?)
    }
}

impl Client {
    async fn create_upload(&self, bucket: &str, body: Value) -> anyhow::Result<Value> {
        let resp = self
            .post(&format!("/v1/buckets/{bucket}/uploads"))
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let answer: Value = resp.json().await?;
        if !status.is_success() {
            bail!("create answered {status}: {answer}");
        }
        Ok(answer)
    }

    /// PUTs bytes `start..end` of `data` to a presigned URL with the headers it was signed with.
    async fn put_synthetic(
        &self,
        url: &str,
        headers: &Value,
        data: &Synthetic,
        start: u64,
        end: u64,
    ) -> anyhow::Result<()> {
        let mut put = self
            .http
            .put(url)
            // A streamed body would go chunked; S3 wants the length.
            .header(reqwest::header::CONTENT_LENGTH, end - start)
            .body(data.body(start, end));
        for (name, value) in headers.as_object().into_iter().flatten() {
            put = put.header(name, value.as_str().unwrap_or_default());
        }
        let resp = put.send().await?;
        if !resp.status().is_success() {
            bail!(
                "PUT answered {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }
}

/// Waits until the upload is terminal; answers its status and the time since `since`.
async fn settle(run: &Run, upload_id: &str, since: Instant) -> anyhow::Result<(String, Duration)> {
    loop {
        let status: String = sqlx::query_scalar("SELECT status FROM uploads WHERE id = $1")
            .bind(upload_id)
            .fetch_one(&run.pool)
            .await?;
        if matches!(status.as_str(), "COMPLETED" | "FAILED" | "CANCELED") {
            return Ok((status, since.elapsed()));
        }
        if since.elapsed() > Duration::from_secs(1800) {
            bail!("upload {upload_id} still {status} after 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn s3_key(run: &Run, upload_id: &str) -> anyhow::Result<String> {
    Ok(
        sqlx::query_scalar("SELECT s3_key FROM uploads WHERE id = $1")
            .bind(upload_id)
            .fetch_one(&run.pool)
            .await?,
    )
}

/// One size of the curve: median seconds from the confirm request to COMPLETED.
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    pub size_bytes: u64,
    pub confirms_each: usize,
    pub simple_seconds: f64,
    pub verified_seconds: f64,
}

/// Confirms an object of each size, simple and hash-verified, with one worker process.
pub(super) async fn size_curve(
    run: &mut Run,
    client: &Client,
    blob: &BlobStore,
    bucket: &str,
    sizes: &[u64],
) -> anyhow::Result<Vec<CurvePoint>> {
    let worker = run.worker().await?;
    let mut points = Vec::new();
    for &size in sizes {
        // Small objects confirm in milliseconds: the median of several says more than one.
        let repeats = if size <= 16 * MIB { 5 } else { 1 };
        let mut seconds = [Vec::new(), Vec::new()];
        for round in 0..repeats {
            for (mode, verified) in [false, true].into_iter().enumerate() {
                let data = Synthetic::new(size);
                let mut body = json!({"filename": format!("curve-{size}-{round}.bin"),
                    "content_type": OCTETS, "file_size_bytes": size});
                if verified {
                    body["file_hash"] = json!(data.sha256_hex().await?);
                    body["enforce_file_hash"] = json!(true);
                }
                let created = client.create_upload(bucket, body).await?;
                let id = created["upload_id"]
                    .as_str()
                    .context("upload_id")?
                    .to_owned();
                let url = created["presigned_url"].as_str().context("presigned_url")?;
                client
                    .put_synthetic(url, &created["upload_headers"], &data, 0, size)
                    .await?;
                let t = Instant::now();
                client.confirm(bucket, &id, true).await?;
                let (status, took) = settle(run, &id, t).await?;
                if status != "COMPLETED" {
                    bail!(
                        "a {size}-byte confirmation ended {status}; see {}",
                        run.logs.display()
                    );
                }
                seconds[mode].push(took.as_secs_f64());
                blob.delete_upload_objects(&s3_key(run, &id).await?).await?;
            }
        }
        let point = CurvePoint {
            size_bytes: size,
            confirms_each: repeats,
            simple_seconds: median(&mut seconds[0]),
            verified_seconds: median(&mut seconds[1]),
        };
        say(format!("  {point:?}"));
        points.push(point);
    }
    worker.stop(Duration::from_secs(30)).await?;
    Ok(points)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

#[derive(Debug, Clone, Serialize)]
pub struct MultipartFile {
    pub placement: String,
    pub size_bytes: u64,
    pub part_size_bytes: u64,
    pub part_count: u64,
    /// PUTting the parts, 4 at a time, from this process.
    pub upload_seconds: f64,
    /// From the confirm request until COMPLETED: listing and assembling the parts, then
    /// hashing the object.
    pub worker_seconds: f64,
    pub worker_mb_per_s: f64,
    /// The same ranges, as many at once, read and thrown away.
    pub ranged_get_mb_per_s: f64,
    /// The worker's SHA-256 code on bytes in memory, one thread.
    pub sha256_in_memory_mb_per_s: f64,
    pub ratio_to_min: f64,
    pub worker_peak_rss_mib: f64,
    pub digest_matches: bool,
    /// CPUs the machine kept busy, on average, during the worker's confirmation and during
    /// the bare ranged GETs: when both are near the machine's count, the two measures share
    /// the same CPUs, and the worker's hashing is what the GETs do not pay.
    pub worker_busy_cpus: f64,
    pub get_busy_cpus: f64,
    /// The machine's CPU per MiB during each, by process.
    pub worker_cpu_ms_per_mib: CpuSplit,
    pub get_cpu_ms_per_mib: CpuSplit,
}

/// Sets the CPUs every thread of a process may run on (`taskset -a -p -c`).
async fn pin(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .output()
        .await
        .context("running taskset")?;
    if !out.status.success() {
        bail!(
            "taskset {cpus} {pid}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Where the processes of a multipart run are.
#[derive(Debug, Clone, Copy)]
pub(super) enum Placement {
    /// Every process on every CPU of the machine.
    Shared,
    /// The store (this pid) on CPU 0; the worker and this process on CPU 1: the store as on
    /// a machine of its own, so that what it spends serving does not come out of the CPU
    /// the worker hashes with.
    Split { store_pid: u32 },
}

/// An object of `size` bytes uploaded in parts and confirmed by a fresh worker process.
pub(super) async fn multipart_file(
    run: &mut Run,
    client: &Client,
    blob: &BlobStore,
    bucket: &str,
    size: u64,
    placement: Placement,
) -> anyhow::Result<MultipartFile> {
    let all_cpus = format!(
        "0-{}",
        std::thread::available_parallelism().map_or(1, usize::from) - 1
    );
    let figures = multipart_run(run, client, blob, bucket, size, placement).await;
    if let Placement::Split { store_pid } = placement {
        pin(store_pid, &all_cpus).await?;
        pin(std::process::id(), &all_cpus).await?;
    }
    figures
}

async fn multipart_run(
    run: &mut Run,
    client: &Client,
    blob: &BlobStore,
    bucket: &str,
    size: u64,
    placement: Placement,
) -> anyhow::Result<MultipartFile> {
    let data = Synthetic::new(size);
    let created = client
        .create_upload(
            bucket,
            json!({"filename": "multipart.bin", "content_type": OCTETS,
                   "file_size_bytes": size, "multipart": true}),
        )
        .await?;
    let id = created["upload_id"]
        .as_str()
        .context("upload_id")?
        .to_owned();
    let part_size = created["multipart"]["part_size_bytes"]
        .as_u64()
        .context("part_size_bytes")?;
    let part_count = created["multipart"]["part_count"]
        .as_u64()
        .context("part_count")?;
    say(format!("  {part_count} parts of {part_size} bytes"));
    let expected = data.sha256_hex().await?;
    let t = Instant::now();
    let numbers: Vec<u64> = (1..=part_count).collect();
    for window in numbers.chunks(100) {
        let signed: Value = client
            .post(&format!("/v1/buckets/{bucket}/uploads/{id}/parts"))
            .json(&json!({ "part_numbers": window }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let parts = signed["parts"].as_array().context("parts")?.clone();
        futures::stream::iter(parts)
            .map(|part| async move {
                let n = part["part_number"].as_u64().context("part_number")?;
                let start = (n - 1) * part_size;
                let end = (start + part_size).min(size);
                let url = part["url"].as_str().context("url")?;
                client
                    .put_synthetic(url, &part["headers"], &data, start, end)
                    .await
            })
            .buffer_unordered(4)
            .try_collect::<()>()
            .await?;
    }
    let upload_seconds = t.elapsed().as_secs_f64();
    say(format!("  parts uploaded in {upload_seconds:.1} s"));

    let worker = run.worker().await?;
    if let Placement::Split { store_pid } = placement {
        pin(store_pid, "0").await?;
        pin(worker.pid(), "1").await?;
        pin(std::process::id(), "1").await?;
    }
    let mib = usize::try_from(size >> 20).unwrap_or(usize::MAX).max(1);
    let cpu_at_start = CpuSnapshot::take()?;
    let t = Instant::now();
    client.confirm(bucket, &id, true).await?;
    let (status, took) = settle(run, &id, t).await?;
    let worker_cpu_ms_per_mib = CpuSnapshot::take()?.per_op_since(&cpu_at_start, mib);
    let peak = worker.peak_rss_kib()?;
    worker.stop(Duration::from_secs(30)).await?;
    if status != "COMPLETED" {
        bail!(
            "the multipart confirmation ended {status}; see {}",
            run.logs.display()
        );
    }
    let file_hash: Option<String> =
        sqlx::query_scalar("SELECT file_hash FROM uploads WHERE id = $1")
            .bind(&id)
            .fetch_one(&run.pool)
            .await?;

    let key = s3_key(run, &id).await?;
    let cpu_at_start = CpuSnapshot::take()?;
    let t = Instant::now();
    let read = blob
        .read_ranges_discarding(&key, RangedRead::default())
        .await?;
    let get_seconds = t.elapsed().as_secs_f64();
    let get_cpu_ms_per_mib = CpuSnapshot::take()?.per_op_since(&cpu_at_start, mib);
    let get_mb_s = read as f64 / get_seconds / 1e6;
    let busy = |split: &CpuSplit, seconds: f64| {
        split.get("all").copied().unwrap_or(0.0) * mib as f64 / (seconds * 1e3)
    };
    let sha_mb_s = sha256_in_memory(size.min(4 << 30)).await?;
    blob.delete_upload_objects(&key).await?;
    let worker_mb_s = size as f64 / took.as_secs_f64() / 1e6;
    Ok(MultipartFile {
        placement: match placement {
            Placement::Shared => "store, worker and client share every CPU".into(),
            Placement::Split { .. } => "store on CPU 0; worker and client on CPU 1".into(),
        },
        size_bytes: size,
        part_size_bytes: part_size,
        part_count,
        upload_seconds,
        worker_seconds: took.as_secs_f64(),
        worker_mb_per_s: worker_mb_s,
        ranged_get_mb_per_s: get_mb_s,
        sha256_in_memory_mb_per_s: sha_mb_s,
        ratio_to_min: worker_mb_s / get_mb_s.min(sha_mb_s),
        worker_peak_rss_mib: peak as f64 / 1024.0,
        digest_matches: file_hash.as_deref() == Some(expected.as_str()),
        worker_busy_cpus: busy(&worker_cpu_ms_per_mib, took.as_secs_f64()),
        get_busy_cpus: busy(&get_cpu_ms_per_mib, get_seconds),
        worker_cpu_ms_per_mib,
        get_cpu_ms_per_mib,
    })
}

/// MB/s of the sha2 crate (the worker's hasher) over `total` bytes already in memory.
async fn sha256_in_memory(total: u64) -> anyhow::Result<f64> {
    Ok(tokio::task::spawn_blocking(move || {
        let buffer = base();
        let started = Instant::now();
        let mut sha = Sha256::new();
        let mut done = 0u64;
        while done < total {
            sha.update(buffer);
            done += buffer.len() as u64;
        }
        std::hint::black_box(sha.finalize());
        done as f64 / started.elapsed().as_secs_f64() / 1e6
    })
    .await?)
}
