//! The series a process exports on `/metrics`, in Prometheus text format, and the one
//! recorder each process installs. The API and the workers record into it as they go.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Confirmations that reached an end, by `outcome` (`completed`, `failed`) and `reason`.
pub const CONFIRMATIONS: &str = "upconfirm_confirmations_total";
/// Confirm requests, from arrival to answer, by `mode` (`sync`, `async`) and `status`.
pub const CONFIRM_SECONDS: &str = "upconfirm_confirm_request_duration_seconds";
/// One run of a confirmation job by a worker, by `outcome`.
pub const JOB_SECONDS: &str = "upconfirm_job_duration_seconds";
/// Steps of a job retried after a transient failure (storage, database).
pub const RETRIES: &str = "upconfirm_job_retries_total";
/// Jobs the broker delivered again (after a worker handed them back or lost its channel).
pub const REDELIVERIES: &str = "upconfirm_job_redeliveries_total";
/// Jobs given up and failed from the dead-letter queue or a lapsed lease, by `reason`.
pub const DEAD_LETTERED: &str = "upconfirm_dead_lettered_total";
/// Jobs accepted but not yet handed to the broker (rows in the outbox).
pub const OUTBOX_BACKLOG: &str = "upconfirm_outbox_backlog";
/// Jobs this worker is running now.
pub const IN_FLIGHT: &str = "upconfirm_jobs_in_flight";
/// Object bytes read and hashed.
pub const HASHED_BYTES: &str = "upconfirm_hashed_bytes_total";
/// Jobs one grouped database step took together, by `step` (`start`, `complete`).
pub const GROUP_SIZE: &str = "upconfirm_db_group_size";
/// Confirmation jobs waiting, by `lane` and `stage` (`waiting`: in the outbox, for the
/// dispatcher; `queued`: ready in the broker).
pub const LANE_BACKLOG: &str = "upconfirm_lane_backlog";
/// Bulk jobs waiting in the outbox for the namespaces with the largest backlogs (at most
/// ten series), the rest summed as `namespace="other"`.
pub const NAMESPACE_BACKLOG: &str = "upconfirm_namespace_backlog";
/// From a confirmation's acceptance to a worker taking its job, by `lane`.
pub const QUEUE_SECONDS: &str = "upconfirm_job_queue_seconds";
/// Jobs this worker is running now, by `lane` and `namespace_bucket` (the namespace id
/// hashed into one of 16 buckets, so the series stay bounded).
pub const LANE_IN_FLIGHT: &str = "upconfirm_lane_jobs_in_flight";
/// Requests refused with 429 because their organization's rate limit was spent.
pub const RATE_LIMITED: &str = "upconfirm_rate_limited_requests_total";

/// Bucket bounds of the latency histograms, in seconds: sync confirms of small files take
/// milliseconds; jobs of large files take minutes.
const SECONDS_BUCKETS: &[f64] = &[
    0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

/// Bucket bounds of the group sizes: powers of two up to the largest group.
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// The process's recorder, installed on first use; its rendering is what `/metrics` answers.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("bucket bounds are not empty")
            .set_buckets_for_metric(Matcher::Full(GROUP_SIZE.into()), GROUP_BUCKETS)
            .expect("bucket bounds are not empty")
            .install_recorder()
            .expect("no other metrics recorder is installed");
        describe();
        // Histograms keep samples until upkeep folds them; do it whatever the scrape rate.
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            })
            .expect("spawning the metrics upkeep thread");
        handle
    })
}

/// `/metrics`: every series this process recorded, in Prometheus text format.
pub fn render() -> String {
    handle().render()
}

fn describe() {
    describe_gauge!(
        LANE_BACKLOG,
        "Confirmation jobs waiting, by lane and stage (waiting in the outbox, queued in the broker)"
    );
    describe_gauge!(
        NAMESPACE_BACKLOG,
        "Bulk jobs waiting in the outbox, for the ten namespaces with the most, the rest as other"
    );
    describe_histogram!(
        QUEUE_SECONDS,
        Unit::Seconds,
        "From a confirmation's acceptance to a worker taking its job, by lane"
    );
    describe_gauge!(
        LANE_IN_FLIGHT,
        "Jobs this worker is running, by lane and namespace bucket (namespace id hashed into 16)"
    );
    describe_counter!(
        CONFIRMATIONS,
        "Confirmations that reached an end, by outcome and reason"
    );
    describe_histogram!(
        CONFIRM_SECONDS,
        Unit::Seconds,
        "Confirm requests from arrival to answer, by mode (sync, async) and HTTP status"
    );
    describe_histogram!(
        JOB_SECONDS,
        Unit::Seconds,
        "One run of a confirmation job by a worker, by outcome"
    );
    describe_counter!(
        RETRIES,
        "Job steps retried after a transient failure of storage or database"
    );
    describe_counter!(REDELIVERIES, "Jobs the broker delivered again");
    describe_counter!(
        DEAD_LETTERED,
        "Jobs given up and failed (dead-letter queue or lapsed lease), by reason"
    );
    describe_gauge!(
        OUTBOX_BACKLOG,
        "Accepted jobs not yet handed to the broker (outbox rows)"
    );
    describe_gauge!(IN_FLIGHT, "Jobs this worker is running now");
    describe_counter!(HASHED_BYTES, Unit::Bytes, "Object bytes read and hashed");
    describe_histogram!(
        GROUP_SIZE,
        "Jobs one grouped database step (start, complete) took in one statement and commit"
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests refused (429) because their organization's rate limit was spent"
    );
}

/// Counts a job in flight until dropped, however its run ends.
pub struct InFlight {
    lane: &'static str,
    bucket: String,
}

impl InFlight {
    /// A job of `lane`, for `namespace` when the job names it.
    pub fn enter_lane(lane: &'static str, namespace: Option<&str>) -> InFlight {
        let bucket = namespace.map_or_else(|| "unknown".to_owned(), namespace_bucket);
        metrics::gauge!(IN_FLIGHT).increment(1.0);
        metrics::gauge!(LANE_IN_FLIGHT, "lane" => lane, "namespace_bucket" => bucket.clone())
            .increment(1.0);
        InFlight { lane, bucket }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(IN_FLIGHT).decrement(1.0);
        let bucket = std::mem::take(&mut self.bucket);
        metrics::gauge!(LANE_IN_FLIGHT, "lane" => self.lane, "namespace_bucket" => bucket)
            .decrement(1.0);
    }
}

/// Buckets a namespace id falls into for per-namespace series.
pub const NAMESPACE_BUCKETS: u32 = 16;

/// A namespace's bucket, "00" to "15": FNV-1a of its id, stable across processes and builds.
pub fn namespace_bucket(namespace_id: &str) -> String {
    let hash = namespace_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{:02}", hash % NAMESPACE_BUCKETS)
}

/// `n` confirmations ended: `completed` or `failed`, with why.
pub fn confirmations(outcome: &'static str, reason: impl Into<String>, n: u64) {
    metrics::counter!(CONFIRMATIONS, "outcome" => outcome, "reason" => reason.into()).increment(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_series_render_with_their_labels() {
        handle();
        confirmations("failed", "unit_test_reason", 1);
        {
            let _job = InFlight::enter_lane("bulk", Some("ns_unit"));
            assert!(render().contains(&format!("{IN_FLIGHT} 1")));
        }
        metrics::histogram!(CONFIRM_SECONDS, "mode" => "sync", "status" => "200").record(0.003);
        let text = render();
        assert!(
            text.contains(&format!(
                "{CONFIRMATIONS}{{outcome=\"failed\",reason=\"unit_test_reason\"}} 1"
            )),
            "{text}"
        );
        assert!(text.contains(&format!("{IN_FLIGHT} 0")), "{text}");
        assert!(
            text.contains(&format!(
                "{CONFIRM_SECONDS}_bucket{{mode=\"sync\",status=\"200\",le=\"0.005\"}} 1"
            )),
            "{text}"
        );
        assert!(text.contains(&format!("# HELP {CONFIRMATIONS}")), "{text}");
    }

    #[test]
    fn namespace_buckets_are_stable_and_bounded() {
        assert_eq!(namespace_bucket("ns_a"), namespace_bucket("ns_a"));
        // FNV-1a of the empty string is its offset basis, 2166136261, which is 5 mod 16.
        assert_eq!(namespace_bucket(""), "05");
        let buckets: std::collections::HashSet<String> = (0..1000)
            .map(|i| namespace_bucket(&format!("ns_{i}")))
            .collect();
        assert_eq!(buckets.len(), NAMESPACE_BUCKETS as usize, "{buckets:?}");
    }
}
