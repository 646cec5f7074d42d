//! The benchmark's figures: the JSON a machine reads (here, with the targets they are held
//! to in `targets`) and the Markdown tables a person reads (`markdown`).

mod markdown;
mod targets;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::ceilings::Rate;
use super::fairness::{Fairness, Pipeline};
use super::large::{CurvePoint, MultipartFile};
pub use markdown::markdown;
use targets::{fairness_targets, large_targets};

/// Milliseconds of CPU per operation, by process group (`upconfirm`, `postgres`, `rabbitmq`,
/// `garage`, `bench`, `other`) and for the whole machine (`all`).
pub type CpuSplit = BTreeMap<String, f64>;

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub concurrency: usize,
    pub count: usize,
    pub size_bytes: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub max_ms: f64,
    /// The whole machine's CPU per confirmation during the phase, by process.
    pub cpu_ms_per_confirmation: CpuSplit,
    /// Confirmations completed per second of the phase.
    pub per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Drain {
    pub workers: usize,
    /// The backlog's uploads declared their SHA-256 and the store checked it at PUT.
    pub hash_verified: bool,
    pub count: usize,
    pub size_bytes: usize,
    /// From the workers' start until every upload of the backlog was terminal.
    pub seconds: f64,
    pub per_second: f64,
    pub worker_cpu_ms_per_confirmation: f64,
    /// The whole machine's CPU per confirmation while draining, by process.
    pub cpu_ms_per_confirmation: CpuSplit,
    pub failed: i64,
    pub ratio_to_smallest_ceiling: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApiCost {
    pub confirm_requests: usize,
    /// Async confirm requests answered per second, 32 clients.
    pub per_second: f64,
    pub cpu_ms_per_request: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ceilings {
    /// Publish with confirm → consume → ack, no-op consumer.
    pub broker: Rate,
    pub head_object: Rate,
    /// The rows a worker commits for one confirmation.
    pub database: Rate,
    /// The whole machine's CPU per operation of each ceiling, by process.
    pub cpu_ms_per_op: BTreeMap<String, CpuSplit>,
}

impl Ceilings {
    /// The smallest, by name.
    pub fn smallest(&self) -> (&'static str, f64) {
        [
            ("broker", self.broker.per_second),
            ("head_object", self.head_object.per_second),
            ("database", self.database.per_second),
        ]
        .into_iter()
        .fold(
            ("none", f64::INFINITY),
            |a, b| if b.1 < a.1 { b } else { a },
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LargeFile {
    pub size_bytes: usize,
    /// From the confirm request until the upload was COMPLETED.
    pub worker_seconds: f64,
    pub worker_mb_per_s: f64,
    pub get_mb_per_s: f64,
    pub sha256sum_mb_per_s: f64,
    pub ratio_to_get: f64,
    pub ratio_to_sha256sum: f64,
    pub ratio_to_min: f64,
    pub worker_peak_rss_mib: f64,
    pub digest_matches_sha256sum: bool,
    /// The whole machine's CPU per MiB of the bare GET, by process.
    pub get_cpu_ms_per_mib: CpuSplit,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub what: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub store: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub generated_at: String,
    pub machine: Machine,
    pub run_seconds: f64,
    pub sync_latency: Vec<Latency>,
    pub async_throughput: Vec<Drain>,
    pub api: ApiCost,
    pub ceilings: Ceilings,
    pub smallest_ceiling: String,
    pub large_file: LargeFile,
    pub size_curve: Vec<CurvePoint>,
    pub multipart_files: Vec<MultipartFile>,
    pub fairness: Option<Fairness>,
    pub pipeline: Option<Pipeline>,
    pub targets: Vec<Target>,
}

impl Results {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: &str,
        sync_latency: [Latency; 2],
        mut drains: Vec<Drain>,
        api: ApiCost,
        ceilings: Ceilings,
        large_file: LargeFile,
        size_curve: Vec<CurvePoint>,
        multipart_files: Vec<MultipartFile>,
        fairness: Option<Fairness>,
        pipeline: Option<Pipeline>,
        took: Duration,
    ) -> Results {
        let (smallest, smallest_rate) = ceilings.smallest();
        for d in &mut drains {
            d.ratio_to_smallest_ceiling = d.per_second / smallest_rate;
        }
        let mut targets = Vec::new();
        if let Some(c32) = sync_latency.iter().find(|l| l.concurrency == 32) {
            targets.push(Target {
                what: "sync confirm p50, 32 clients".into(),
                target: "≤ 5 ms".into(),
                measured: format!("{:.2} ms", c32.p50_ms),
                met: c32.p50_ms <= 5.0,
            });
            targets.push(Target {
                what: "sync confirm p99, 32 clients".into(),
                target: "≤ 25 ms".into(),
                measured: format!("{:.2} ms", c32.p99_ms),
                met: c32.p99_ms <= 25.0,
            });
        }
        for d in &drains {
            targets.push(Target {
                what: format!(
                    "async throughput, {} worker(s), / smallest ceiling",
                    d.workers
                ),
                target: "≥ 0.50".into(),
                measured: format!(
                    "{:.2} ({:.0}/s of {smallest} {:.0}/s)",
                    d.ratio_to_smallest_ceiling, d.per_second, smallest_rate
                ),
                met: d.ratio_to_smallest_ceiling >= 0.5,
            });
        }
        targets.push(Target {
            what: "large-file hashing / min(bare GET, sha256sum)".into(),
            target: "≥ 0.80".into(),
            measured: format!("{:.2}", large_file.ratio_to_min),
            met: large_file.ratio_to_min >= 0.8,
        });
        targets.push(Target {
            what: "worker peak RSS hashing the large file".into(),
            // The bound of ranged reads (up to 4 ranges of 8 MiB in flight, one queued,
            // one hashing), as for the multipart file; 64 MiB held for one stream.
            target: "≤ 128 MiB".into(),
            measured: format!("{:.1} MiB", large_file.worker_peak_rss_mib),
            met: large_file.worker_peak_rss_mib <= 128.0,
        });
        large_targets(&mut targets, &size_curve, &multipart_files, &drains);
        fairness_targets(&mut targets, fairness.as_ref(), pipeline.as_ref());
        let cpus = std::thread::available_parallelism().map_or(0, usize::from);
        Results {
            generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            machine: Machine {
                cpus,
                cpu_model: cpu_model(),
                store: store.to_owned(),
            },
            run_seconds: took.as_secs_f64(),
            sync_latency: sync_latency.to_vec(),
            async_throughput: drains,
            api,
            smallest_ceiling: smallest.to_owned(),
            ceilings,
            large_file,
            size_curve,
            multipart_files,
            fairness,
            pipeline,
            targets,
        }
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_ceiling_is_picked() {
        let rate = |per_second| Rate {
            count: 1,
            seconds: 1.0,
            per_second,
        };
        let c = Ceilings {
            broker: rate(900.0),
            head_object: rate(300.0),
            database: rate(600.0),
            cpu_ms_per_op: BTreeMap::from([
                (
                    "broker".to_owned(),
                    CpuSplit::from([("all".to_owned(), 0.5)]),
                ),
                (
                    "head_object".to_owned(),
                    CpuSplit::from([("all".to_owned(), 0.25)]),
                ),
                (
                    "database".to_owned(),
                    CpuSplit::from([("all".to_owned(), 1.0)]),
                ),
            ]),
        };
        assert_eq!(c.smallest(), ("head_object", 300.0));
    }
}
