//! `bench/RESULTS.md`: the figures as tables and sentences a person reads.

use std::fmt::Write as _;

use super::{CpuSplit, Results};
use crate::fairness::QuietSide;

/// `bench/RESULTS.md`.
pub fn markdown(r: &Results) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmark results\n");
    let _ = writeln!(
        md,
        "Written by `bash bench/run.sh` on {}: {} CPUs ({}), PostgreSQL, RabbitMQ and {} on the same machine, release build. The run took {:.0} s. Machine-readable: `bench/results.json`.\n",
        r.generated_at, r.machine.cpus, r.machine.cpu_model, r.machine.store, r.run_seconds
    );
    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(md, "| What | Target | Measured | Met |");
    let _ = writeln!(md, "|---|---|---|---|");
    for t in &r.targets {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            t.what,
            t.target,
            t.measured,
            if t.met { "yes" } else { "no" }
        );
    }
    let _ = writeln!(
        md,
        "\n## Sync confirm latency (request to COMPLETED answer)\n"
    );
    let _ = writeln!(
        md,
        "| Clients | Confirms | Object | p50 | p95 | p99 | mean | max | confirms/s |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    for l in &r.sync_latency {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} |",
            l.concurrency,
            l.count,
            bytes(l.size_bytes),
            l.p50_ms,
            l.p95_ms,
            l.p99_ms,
            l.mean_ms,
            l.max_ms,
            l.per_second
        );
    }
    let (smallest, smallest_rate) = r.ceilings.smallest();
    let _ = writeln!(md, "\n## Async throughput (draining a backlog)\n");
    let _ = writeln!(md, "| Worker processes | Uploads | Backlog | Object | Drained in | Confirms/s | / smallest ceiling ({smallest}) | Worker CPU per confirm | Failed |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    for d in &r.async_throughput {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.2} s | {:.0} | {:.2} | {:.3} ms | {} |",
            d.workers,
            if d.hash_verified {
                "hash-verified"
            } else {
                "simple"
            },
            d.count,
            bytes(d.size_bytes),
            d.seconds,
            d.per_second,
            d.ratio_to_smallest_ceiling,
            d.worker_cpu_ms_per_confirmation,
            d.failed
        );
    }
    let _ = writeln!(
        md,
        "\nAPI: {} async confirm requests from 32 clients at {:.0}/s, {:.3} ms of API CPU per request.\n",
        r.api.confirm_requests, r.api.per_second, r.api.cpu_ms_per_request
    );
    let _ = writeln!(
        md,
        "## Ceilings (each dependency alone, same run, 32 at once)\n"
    );
    let _ = writeln!(md, "| Ceiling | Operations | Per second |");
    let _ = writeln!(md, "|---|---|---|");
    for (name, rate) in [
        (
            "RabbitMQ publish with confirm → consume → ack (no-op consumer, quorum queue)",
            &r.ceilings.broker,
        ),
        ("HeadObject against the store", &r.ceilings.head_object),
        (
            "PostgreSQL commits of the rows one confirmation writes (as the worker: 2 commits)",
            &r.ceilings.database,
        ),
    ] {
        let _ = writeln!(md, "| {name} | {} | {:.0} |", rate.count, rate.per_second);
    }
    let _ = writeln!(md, "\nSmallest: {smallest}, {smallest_rate:.0}/s.\n");
    cpu_section(&mut md, r);
    let l = &r.large_file;
    let _ = writeln!(md, "## Large file ({})\n", bytes(l.size_bytes));
    let _ = writeln!(md, "| Measure | MB/s | Worker hashing as a ratio |");
    let _ = writeln!(md, "|---|---|---|");
    let _ = writeln!(
        md,
        "| Worker: confirm to COMPLETED (GetObject with streamed SHA-256, commit) | {:.0} | |",
        l.worker_mb_per_s
    );
    let _ = writeln!(
        md,
        "| Store's bare GET (read and discarded) | {:.0} | {:.2} |",
        l.get_mb_per_s, l.ratio_to_get
    );
    let _ = writeln!(
        md,
        "| `sha256sum` of the same bytes on local disk | {:.0} | {:.2} |",
        l.sha256sum_mb_per_s, l.ratio_to_sha256sum
    );
    let _ = writeln!(
        md,
        "\nWorker peak RSS (VmHWM of a fresh worker process): {:.1} MiB. Digest equal to sha256sum's: {}.",
        l.worker_peak_rss_mib,
        if l.digest_matches_sha256sum { "yes" } else { "no" }
    );
    large_sections(&mut md, r);
    fairness_sections(&mut md, r);
    md
}

fn fairness_sections(md: &mut String, r: &Results) {
    if let Some(f) = &r.fairness {
        let _ = writeln!(
            md,
            "\n## Fairness: one namespace's flood against another's confirms\n"
        );
        let _ = writeln!(
            md,
            "Namespace A confirms {} uploads of {} in batch confirms of 100, 4 requests at a time, as a bulk pipeline does; namespace B does a sync confirm and an async confirm every 100 ms; {} worker process(es), with `WORKER_BULK_STORE_YIELD` {}. Each side also ran alone.\n",
            f.flood,
            bytes(f.size_bytes),
            f.workers,
            f.bulk_store_yield
                .as_deref()
                .map_or("at its default".to_owned(), |y| format!("= {y}"))
        );
        let _ = writeln!(
            md,
            "| B | sync confirms | sync p50 | sync p99 | sync max | answered async | async confirms | async p50 | async p99 | async max |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
        let row = |md: &mut String, label: &str, q: &QuietSide| {
            let _ = writeln!(
                md,
                "| {label} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} | {:.0} ms | {:.0} ms | {:.0} ms |",
                q.sync.count,
                q.sync.p50_ms,
                q.sync.p99_ms,
                q.sync.max_ms,
                q.sync_async_forms,
                q.async_completion.count,
                q.async_completion.p50_ms,
                q.async_completion.p99_ms,
                q.async_completion.max_ms
            );
        };
        row(md, "alone", &f.b_alone);
        row(md, "under A's flood", &f.b_under_flood);
        let _ = writeln!(
            md,
            "\nA drained {:.0}/s alone and {:.0}/s while B ran: {:.2}.",
            f.a_alone_per_second, f.a_with_b_per_second, f.a_ratio
        );
    }
    if let Some(p) = &r.pipeline {
        let _ = writeln!(md, "\n## The bulk path as a pipeline runs it\n");
        let _ = writeln!(
            md,
            "{} pipelines, each creating {} uploads in one request, PUTting them ({} each) and confirming them in one batch, until {} are confirmed, one worker: {:.1} s, {:.0}/s, {:.2} of the same run's drain of pre-queued single confirms ({:.0}/s).",
            p.pipelines,
            p.batch,
            bytes(p.size_bytes),
            p.count,
            p.seconds,
            p.per_second,
            p.ratio,
            p.drain_per_second
        );
        let all = p.cpu_ms_per_upload.get("all").copied().unwrap_or_default();
        let by: Vec<String> = p
            .cpu_ms_per_upload
            .iter()
            .filter(|(k, v)| k.as_str() != "all" && **v >= 0.01)
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect();
        let _ = writeln!(
            md,
            "\nEach upload cost {all:.2} ms of CPU across the machine ({}), against {:.2} ms for a confirmation of the drain: the CPU allows the pipeline {:.2} of the drain's rate.",
            by.join(", "),
            p.drain_cpu_ms_per_confirmation,
            if all > 0.0 { p.drain_cpu_ms_per_confirmation / all } else { 0.0 }
        );
    }
}

fn large_sections(md: &mut String, r: &Results) {
    if !r.size_curve.is_empty() {
        let _ = writeln!(
            md,
            "\n## Confirm time against object size (async confirm request to COMPLETED, one worker)\n"
        );
        let _ = writeln!(
            md,
            "| Object | Confirms each | Simple | Hash-verified | Simple / hash-verified |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|");
        for p in &r.size_curve {
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} ms | {:.1} ms | {:.1} |",
                bytes_u64(p.size_bytes),
                p.confirms_each,
                p.simple_seconds * 1e3,
                p.verified_seconds * 1e3,
                p.simple_seconds / p.verified_seconds
            );
        }
        let _ = writeln!(
            md,
            "\nA simple confirmation copies the verified version to the confirmed key (server side), then reads and hashes it; a hash-verified one takes the SHA-256 the store checked at PUT, reads no byte and copies nothing: one HeadObject whatever the size."
        );
    }
    for m in &r.multipart_files {
        let _ = writeln!(
            md,
            "\n## Multipart file ({}, {} parts of {}); {}\n",
            bytes_u64(m.size_bytes),
            m.part_count,
            bytes_u64(m.part_size_bytes),
            m.placement
        );
        let _ = writeln!(md, "| Measure | MB/s | Worker as a ratio |");
        let _ = writeln!(md, "|---|---|---|");
        let _ = writeln!(
            md,
            "| Worker: confirm to COMPLETED (list parts, complete, ranged GETs into one SHA-256, commit) | {:.0} | |",
            m.worker_mb_per_s
        );
        let _ = writeln!(
            md,
            "| Store's ranged GETs, {} MiB, {} at once (as the worker reads), read and discarded | {:.0} | {:.2} |",
            upconfirm::blob::RangedRead::default().range >> 20,
            upconfirm::blob::RangedRead::default().in_flight,
            m.ranged_get_mb_per_s,
            m.worker_mb_per_s / m.ranged_get_mb_per_s
        );
        let _ = writeln!(
            md,
            "| The worker's SHA-256 code on bytes in memory, one thread | {:.0} | {:.2} |",
            m.sha256_in_memory_mb_per_s,
            m.worker_mb_per_s / m.sha256_in_memory_mb_per_s
        );
        let _ = writeln!(
            md,
            "\nParts PUT from this process, 4 at a time: {:.1} s. Worker peak RSS (VmHWM of a fresh worker process): {:.1} MiB. Digest equal to the bytes': {}.",
            m.upload_seconds,
            m.worker_peak_rss_mib,
            if m.digest_matches { "yes" } else { "no" }
        );
        let split = |c: &CpuSplit| {
            c.iter()
                .filter(|(k, v)| k.as_str() != "all" && **v >= 0.005)
                .map(|(k, v)| format!("{k} {v:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let all = |c: &CpuSplit| c.get("all").copied().unwrap_or(0.0);
        let _ = writeln!(
            md,
            "\nCPU: during the worker's confirmation the machine kept {:.2} of its {} CPUs busy, {:.2} ms per MiB ({}); during the bare ranged GETs, {:.2} CPUs and {:.2} ms per MiB ({}).",
            m.worker_busy_cpus,
            r.machine.cpus,
            all(&m.worker_cpu_ms_per_mib),
            split(&m.worker_cpu_ms_per_mib),
            m.get_busy_cpus,
            all(&m.get_cpu_ms_per_mib),
            split(&m.get_cpu_ms_per_mib)
        );
    }
}

/// Where the CPU went, per operation, and what that allows on this machine.
fn cpu_section(md: &mut String, r: &Results) {
    const GROUPS: [&str; 7] = [
        "upconfirm",
        "postgres",
        "rabbitmq",
        "garage",
        "bench",
        "other",
        "all",
    ];
    let _ = writeln!(
        md,
        "## Where the CPU goes (ms of CPU per operation, whole machine)\n"
    );
    let _ = writeln!(
        md,
        "| Phase | {} | {} CPUs sustain |",
        GROUPS.join(" | "),
        r.machine.cpus
    );
    let _ = writeln!(md, "|---|{}---|", "---|".repeat(GROUPS.len()));
    let mut rows: Vec<(String, &CpuSplit)> = r
        .sync_latency
        .iter()
        .map(|l| {
            (
                format!(
                    "sync, {} client(s), per {} confirmation",
                    l.concurrency,
                    bytes(l.size_bytes)
                ),
                &l.cpu_ms_per_confirmation,
            )
        })
        .collect();
    rows.extend(r.async_throughput.iter().map(|d| {
        (
            format!(
                "drain, {} worker(s), per {} confirmation",
                d.workers,
                bytes(d.size_bytes)
            ),
            &d.cpu_ms_per_confirmation,
        )
    }));
    rows.push((
        "bare GET of the large file, per MiB".to_owned(),
        &r.large_file.get_cpu_ms_per_mib,
    ));
    for (name, split) in &r.ceilings.cpu_ms_per_op {
        rows.push((format!("ceiling {name}, per operation"), split));
    }
    for (name, split) in rows {
        let cells: Vec<String> = GROUPS
            .iter()
            .map(|g| format!("{:.3}", split.get(*g).copied().unwrap_or(0.0)))
            .collect();
        let all = split.get("all").copied().unwrap_or(0.0);
        let sustain = if all > 0.0 {
            format!("{:.0}/s", r.machine.cpus as f64 * 1000.0 / all)
        } else {
            "-".into()
        };
        let _ = writeln!(md, "| {name} | {} | {sustain} |", cells.join(" | "));
    }
    let database_ms = r
        .ceilings
        .cpu_ms_per_op
        .get("database")
        .and_then(|split| split.get("postgres"))
        .copied()
        .unwrap_or(0.0);
    md.push('\n');
    for d in &r.async_throughput {
        let all = d.cpu_ms_per_confirmation.get("all").copied().unwrap_or(0.0);
        let postgres = d
            .cpu_ms_per_confirmation
            .get("postgres")
            .copied()
            .unwrap_or(0.0);
        if all <= 0.0 {
            continue;
        }
        let bound = r.machine.cpus as f64 * 1000.0 / all;
        let _ = writeln!(
            md,
            "Draining with {} worker(s), a confirmation cost {all:.3} ms of CPU across the machine, so {} CPUs sustain at most {bound:.0}/s of it: the drain ran at {:.0} % of that. PostgreSQL spent {postgres:.3} ms on each, against {database_ms:.3} ms per operation of the database ceiling.\n",
            d.workers,
            r.machine.cpus,
            100.0 * d.per_second / bound
        );
    }
    let _ = writeln!(
        md,
        "The database ceiling commits each confirmation's rows alone. A worker starts and finishes the jobs it holds in groups, one statement per step and one commit per group (`upconfirm_db_group_size`), so it can pass that ceiling; what bounds a drain is the machine's CPU, above.\n"
    );
}

fn bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

pub(super) fn bytes_u64(n: u64) -> String {
    bytes(usize::try_from(n).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(1 << 30), "1 GiB");
        assert_eq!(bytes(1 << 20), "1 MiB");
        assert_eq!(bytes(64 << 10), "64 KiB");
        assert_eq!(bytes(1000), "1000 B");
    }
}
