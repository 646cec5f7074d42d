//! `upconfirm-bench`: load generators that talk to a running service over HTTP, as clients do,
//! and the whole benchmark (`suite`). A crate of its own, so that the service's library and
//! binary carry no load-generation code; it reaches the service's parts through the library.

mod ceilings;
mod fairness;
mod large;
mod procs;
mod report;
mod suite;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(
    name = "upconfirm-bench",
    version,
    about = "Load generators against a running upconfirm service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sequential sync confirm latency of distinct files.
    Latency(LatencyArgs),
    /// Time one batch confirmation of many uploads, from request to terminal task.
    BatchConfirm(BatchArgs),
    /// The whole benchmark: starts `api` and `worker` processes, measures latency, throughput,
    /// cost, the dependencies' ceilings and large-file hashing, and writes the results.
    Suite(Box<suite::SuiteArgs>),
}

#[tokio::main]
async fn main() -> ExitCode {
    upconfirm::service::telemetry::init();
    let result = match Cli::parse().command {
        Command::Latency(args) => latency(args).await,
        Command::BatchConfirm(args) => batch_confirm(args).await,
        Command::Suite(args) => suite::suite(*args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct LatencyArgs {
    /// Base URL of the API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// API key (`sk_...`); defaults to the one `upconfirm dev` saved.
    #[arg(long, env = "UPCONFIRM_API_KEY")]
    pub key: Option<String>,
    #[arg(long, default_value = "dev")]
    pub namespace: String,
    #[arg(long, default_value = "dev")]
    pub bucket: String,
    /// Confirmations to time, one after another.
    #[arg(long, default_value_t = 200)]
    pub count: usize,
    /// Size of each uploaded file in bytes.
    #[arg(long, default_value_t = 1_048_576)]
    pub size: usize,
}

#[derive(Debug, Clone, Args)]
pub struct BatchArgs {
    #[command(flatten)]
    pub target: LatencyArgs,
    /// Rounds: each creates `--count` uploads (at most 100), PUTs them, and batch-confirms them.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

fn saved_key(key: Option<String>) -> anyhow::Result<String> {
    match key {
        Some(k) => Ok(k),
        None => Ok(std::fs::read_to_string(".upconfirm-dev/api-key")
            .context("no --key given and no .upconfirm-dev/api-key")?
            .trim()
            .to_owned()),
    }
}

pub(crate) const OCTETS: &str = "application/octet-stream";

/// The API as a client sees it.
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    auth: String,
    namespace: String,
}

impl Client {
    pub(crate) fn new(http: reqwest::Client, base: &str, key: &str, namespace: &str) -> Client {
        Client {
            http,
            base: base.to_owned(),
            auth: format!("Bearer {key}"),
            namespace: namespace.to_owned(),
        }
    }

    pub(crate) fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .header("X-Namespace", &self.namespace)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
    }

    /// PUTs the bytes to a presigned URL.
    pub(crate) async fn put(&self, url: &str, body: bytes::Bytes) -> anyhow::Result<()> {
        self.http
            .put(url)
            .header("Content-Type", OCTETS)
            .body(body)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// One upload: its id and presigned URL.
    pub(crate) async fn create(
        &self,
        bucket: &str,
        filename: &str,
    ) -> anyhow::Result<(String, String)> {
        let created: Value = self
            .post(&format!("/v1/buckets/{bucket}/uploads"))
            .json(&json!({ "filename": filename, "content_type": OCTETS }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        id_and_url(&created)
    }

    /// Uploads created in one batch request from the items given: the answers, in order.
    pub(crate) async fn create_batch_items(
        &self,
        bucket: &str,
        items: Vec<Value>,
    ) -> anyhow::Result<Vec<Value>> {
        let created: Value = self
            .post(&format!("/v1/buckets/{bucket}/uploads/batch"))
            .json(&json!({ "uploads": items }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(created["uploads"].as_array().context("no uploads")?.clone())
    }

    /// Uploads created in one batch request, in order: their ids and presigned URLs.
    pub(crate) async fn create_batch(
        &self,
        bucket: &str,
        filenames: impl IntoIterator<Item = String>,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let items: Vec<Value> = filenames
            .into_iter()
            .map(|filename| json!({ "filename": filename, "content_type": OCTETS }))
            .collect();
        self.create_batch_items(bucket, items)
            .await?
            .iter()
            .map(id_and_url)
            .collect()
    }

    pub(crate) async fn confirm(
        &self,
        bucket: &str,
        upload_id: &str,
        run_async: bool,
    ) -> anyhow::Result<Value> {
        let query = if run_async { "?async=true" } else { "" };
        Ok(self
            .post(&format!(
                "/v1/buckets/{bucket}/uploads/{upload_id}/confirm{query}"
            ))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

/// An upload's id and presigned URL, from the API's answer creating it.
fn id_and_url(upload: &Value) -> anyhow::Result<(String, String)> {
    Ok((
        upload["upload_id"]
            .as_str()
            .context("no upload_id")?
            .to_owned(),
        upload["presigned_url"]
            .as_str()
            .context("no presigned_url")?
            .to_owned(),
    ))
}

/// Per round: batch-creates `count` uploads, PUTs distinct files, then times one batch
/// confirm from the request until its task is terminal (long-polled, so no polling delay).
pub async fn batch_confirm(args: BatchArgs) -> anyhow::Result<()> {
    let t = &args.target;
    let client = Client::new(
        reqwest::Client::new(),
        &t.api,
        &saved_key(t.key.clone())?,
        &t.namespace,
    );
    let run = uuid::Uuid::new_v4();
    let mut timings = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        let uploads = client
            .create_batch(
                &t.bucket,
                (0..t.count).map(|i| format!("batch-{round}-{i}.bin")),
            )
            .await?;
        let puts = uploads.iter().enumerate().map(|(i, (_, url))| {
            let mut body = vec![0u8; t.size];
            let stamp = format!("{run}-{round}-{i}");
            body[..stamp.len()].copy_from_slice(stamp.as_bytes());
            client.put(url, body.into())
        });
        futures::future::try_join_all(puts).await?;
        let confirmations: Vec<Value> = uploads
            .iter()
            .map(|(id, _)| json!({ "upload_id": id }))
            .collect();
        let started = Instant::now();
        let accepted: Value = client
            .post(&format!("/v1/buckets/{}/uploads/confirm/batch", t.bucket))
            .json(&json!({ "confirmations": confirmations }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let task_id = accepted["task_id"].as_str().context("no task_id")?;
        let task = loop {
            let task: Value = client
                .get(&format!("/v1/tasks/{task_id}?wait_seconds=60"))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            if ["COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELED"]
                .contains(&task["status"].as_str().unwrap_or_default())
            {
                break task;
            }
        };
        timings.push(started.elapsed());
        if task["status"] != "COMPLETED" {
            bail!(
                "batch confirm {round} ended {}: {}",
                task["status"],
                task["outputs"]
            );
        }
    }
    print_distribution(
        &format!("batch confirm of {} uploads", t.count),
        t.size,
        &mut timings,
    );
    Ok(())
}

/// Creates, uploads and sync-confirms `count` distinct files one after another, timing only
/// the confirm requests, and prints the distribution.
pub async fn latency(args: LatencyArgs) -> anyhow::Result<()> {
    let key = saved_key(args.key.clone())?;
    let client = Client::new(reqwest::Client::new(), &args.api, &key, &args.namespace);
    let mut timings = Vec::with_capacity(args.count);
    let mut body = vec![0u8; args.size];
    let run = uuid::Uuid::new_v4();
    for i in 0..args.count {
        // Distinct content each time, so no confirm is a duplicate.
        let stamp = format!("{run}-{i}");
        body[..stamp.len()].copy_from_slice(stamp.as_bytes());
        let (upload_id, url) = client
            .create(&args.bucket, &format!("bench-{i}.bin"))
            .await?;
        client.put(&url, body.clone().into()).await?;
        let started = Instant::now();
        let confirmed = client.confirm(&args.bucket, &upload_id, false).await?;
        timings.push(started.elapsed());
        if confirmed["status"] != "COMPLETED" {
            bail!("confirm {i} answered {confirmed}");
        }
    }
    print_distribution("sync confirm", args.size, &mut timings);
    Ok(())
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn print_distribution(what: &str, size: usize, timings: &mut [Duration]) {
    if timings.is_empty() {
        return;
    }
    timings.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = timings.iter().map(|d| ms(*d)).sum::<f64>() / timings.len() as f64;
    println!(
        "{what}: n={} size={size}B p50={:.2}ms p95={:.2}ms p99={:.2}ms mean={mean:.2}ms max={:.2}ms",
        timings.len(),
        ms(percentile(timings, 50.0)),
        ms(percentile(timings, 95.0)),
        ms(percentile(timings, 99.0)),
        ms(timings[timings.len() - 1]),
    );
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn percentiles_pick_by_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 50.0), Duration::from_millis(51));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&sorted, 0.0), Duration::from_millis(1));
        assert_eq!(percentile(&sorted[..1], 99.0), Duration::from_millis(1));
    }
}
