//! What the figures are held to: the targets of the large-file phases, of the fairness
//! phases and of the bulk pipeline.

use super::markdown::bytes_u64;
use super::{Drain, Target};
use crate::fairness::{Fairness, Pipeline};
use crate::large::{CurvePoint, MultipartFile};

/// The targets of the fairness phases and of the bulk pipeline.
pub(super) fn fairness_targets(
    targets: &mut Vec<Target>,
    f: Option<&Fairness>,
    p: Option<&Pipeline>,
) {
    if let Some(f) = f {
        let bound = 2.0 * f.b_alone.sync.p99_ms + 10.0;
        targets.push(Target {
            what: format!(
                "B's sync confirm p99 under A's flood of {} (B alone {:.1} ms)",
                f.flood, f.b_alone.sync.p99_ms
            ),
            target: format!("≤ 2 × alone + 10 ms = {bound:.1} ms"),
            measured: format!(
                "{:.1} ms ({} of {} answered async)",
                f.b_under_flood.sync.p99_ms,
                f.b_under_flood.sync_async_forms,
                f.b_under_flood.sync.count
            ),
            met: f.b_under_flood.sync.p99_ms <= bound,
        });
        targets.push(Target {
            what: "B's async confirm, acceptance to end, p99 under A's flood".into(),
            target: "≤ 1 s".into(),
            measured: format!("{:.0} ms", f.b_under_flood.async_completion.p99_ms),
            met: f.b_under_flood.async_completion.p99_ms <= 1_000.0,
        });
        targets.push(Target {
            what: "A's drain with B / A's drain alone".into(),
            target: "≥ 0.90".into(),
            measured: format!(
                "{:.2} ({:.0}/s of {:.0}/s)",
                f.a_ratio, f.a_with_b_per_second, f.a_alone_per_second
            ),
            met: f.a_ratio >= 0.9,
        });
    }
    if let Some(p) = p {
        targets.push(Target {
            what: "bulk pipeline (batch create, PUT, batch confirm) / drain of pre-queued confirms"
                .into(),
            target: "≥ 0.90".into(),
            measured: format!(
                "{:.2} ({:.0}/s of {:.0}/s)",
                p.ratio, p.per_second, p.drain_per_second
            ),
            met: p.ratio >= 0.9,
        });
    }
}

/// The targets of the large-file phases, and of the hash-verified drain.
pub(super) fn large_targets(
    targets: &mut Vec<Target>,
    curve: &[CurvePoint],
    multipart: &[MultipartFile],
    drains: &[Drain],
) {
    if let (Some(first), Some(last)) = (curve.first(), curve.last()) {
        let ratio = last.verified_seconds / first.verified_seconds;
        targets.push(Target {
            what: format!(
                "hash-verified confirm time, {} / {}",
                bytes_u64(last.size_bytes),
                bytes_u64(first.size_bytes)
            ),
            target: "≤ 2.0".into(),
            measured: format!(
                "{ratio:.2} ({:.1} ms / {:.1} ms)",
                last.verified_seconds * 1e3,
                first.verified_seconds * 1e3
            ),
            met: ratio <= 2.0,
        });
    }
    for m in multipart {
        targets.push(Target {
            what: format!(
                "multipart {} hashing / min(ranged GET, SHA-256 in memory); {}",
                bytes_u64(m.size_bytes),
                m.placement
            ),
            target: "≥ 0.90".into(),
            measured: format!("{:.2}", m.ratio_to_min),
            met: m.ratio_to_min >= 0.9,
        });
        targets.push(Target {
            what: format!(
                "worker peak RSS confirming the multipart file; {}",
                m.placement
            ),
            target: "≤ 128 MiB".into(),
            measured: format!("{:.1} MiB", m.worker_peak_rss_mib),
            met: m.worker_peak_rss_mib <= 128.0,
        });
    }
    let one = |verified: bool| {
        drains
            .iter()
            .find(|d| d.workers == 1 && d.hash_verified == verified)
    };
    if let (Some(simple), Some(verified)) = (one(false), one(true)) {
        let cpu = |d: &Drain, who: &str| d.cpu_ms_per_confirmation.get(who).copied().unwrap_or(0.0);
        targets.push(Target {
            what: "hash-verified drain: CPU per confirmation, machine / simple's".into(),
            target: "< 1.00".into(),
            measured: format!(
                "{:.2} ({:.3} / {:.3} ms)",
                cpu(verified, "all") / cpu(simple, "all"),
                cpu(verified, "all"),
                cpu(simple, "all")
            ),
            met: cpu(verified, "all") < cpu(simple, "all"),
        });
    }
}
