//! The dispatcher: hands bulk confirmation jobs from the outbox to the broker in fair
//! shares between namespaces.
//!
//! Bulk jobs (async and batch confirms) are committed to the outbox with their namespace
//! and are not published by the API. The dispatcher keeps the broker's bulk queue short
//! (about 100 ms of work ready, at most `DISPATCH_QUEUE_DEPTH` jobs) and refills it
//! round-robin over the namespaces that have jobs waiting, so a namespace with a backlog
//! of 100,000 puts at most a queue's depth in front of another namespace's next job. The
//! backlog itself waits in PostgreSQL, where it is counted, canceled and capped.
//!
//! Any number of relays run it; an advisory lock gives one of them the turn at a time,
//! so the queue's depth is read and filled by one process. The lock is a transaction's:
//! a dispatcher that dies gives the turn up with its connection.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::queue::{Lane, Publisher};
use crate::service::config::RelayConfig;
use crate::service::metrics;
use crate::store::outbox::{self, BulkRow, DISPATCH_CHANNEL};

/// What one dispatching round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Another relay has the turn.
    NotOurTurn,
    /// No bulk job waits.
    Idle,
    /// The bulk queue holds its depth already.
    QueueFull,
    /// Jobs published (some may still wait).
    Published(usize),
}

/// How long to wait after a round before the next, unless woken.
fn pause_after(round: &Result<Round, anyhow::Error>, idle: Duration) -> Duration {
    match round {
        Ok(Round::Published(_)) => Duration::ZERO,
        Ok(Round::QueueFull) => Duration::from_millis(20),
        Ok(Round::NotOurTurn) => Duration::from_millis(250),
        Ok(Round::Idle) => idle,
        Err(_) => Duration::from_secs(1),
    }
}

/// Dispatches until `shutdown`, woken by each committed bulk job.
pub async fn run(
    pool: PgPool,
    publisher: Publisher,
    cfg: RelayConfig,
    shutdown: CancellationToken,
) {
    let wake = Arc::new(Notify::new());
    tokio::spawn(listen(pool.clone(), wake.clone(), shutdown.clone()));
    let idle = Duration::from_millis(cfg.relay_interval_ms);
    let mut last_gauges = Instant::now() - GAUGE_INTERVAL;
    let mut shown = Vec::new();
    let mut pace = Pace::default();
    loop {
        let depth = pace.depth(Instant::now(), cfg.dispatch_queue_depth);
        let round = dispatch(&pool, &publisher, depth).await;
        match &round {
            Ok(Round::Published(n)) => {
                pace.record(Instant::now(), *n);
                tracing::debug!(published = n, depth, "dispatched bulk jobs")
            }
            Err(err) => tracing::warn!(error = ?err, "dispatch round failed; will retry"),
            Ok(_) => {}
        }
        if last_gauges.elapsed() >= GAUGE_INTERVAL {
            last_gauges = Instant::now();
            if let Err(err) = record_backlog(&pool, &publisher, &mut shown).await {
                tracing::debug!(error = %err, "backlog gauges not read");
            }
        }
        let pause = pause_after(&round, idle);
        if pause.is_zero() {
            if shutdown.is_cancelled() {
                return;
            }
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// How many jobs the bulk queue should hold: about [`Pace::AHEAD`] of work at the rate the
/// dispatcher has been publishing (in steady state, the rate the workers take them), at
/// least [`Pace::MIN_DEPTH`] and at most the configured depth. Another namespace's next job
/// then waits behind about that long of others' jobs in the queue whatever the drain rate,
/// and the workers, who hold their own prefetch besides, never run dry between rounds.
#[derive(Debug, Default)]
struct Pace {
    published: VecDeque<(Instant, usize)>,
}

impl Pace {
    const AHEAD: Duration = Duration::from_millis(100);
    const WINDOW: Duration = Duration::from_secs(2);
    const MIN_DEPTH: u32 = 8;

    fn record(&mut self, now: Instant, published: usize) {
        self.published.push_back((now, published));
        while self
            .published
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > Pace::WINDOW)
        {
            self.published.pop_front();
        }
    }

    fn depth(&self, now: Instant, max: u32) -> u32 {
        let recent: usize = self
            .published
            .iter()
            .filter(|(at, _)| now.duration_since(*at) <= Pace::WINDOW)
            .map(|(_, n)| n)
            .sum();
        let per_second = recent as f64 / Pace::WINDOW.as_secs_f64();
        let ahead = (per_second * Pace::AHEAD.as_secs_f64()).ceil() as u32;
        ahead.clamp(Pace::MIN_DEPTH.min(max), max)
    }
}

/// Turns each notification of a committed bulk job into a wake-up; reconnects when the
/// listening connection drops (rounds still run on their timer meanwhile).
async fn listen(pool: PgPool, wake: Arc<Notify>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(DISPATCH_CHANNEL).await?;
            wake.notify_one();
            while let Some(_n) = listener.try_recv().await? {
                wake.notify_one();
            }
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            result = listening => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "dispatch listener lost its connection");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// One round: if it is this relay's turn and the bulk queue has room, publish up to that
/// room, shared equally between the namespaces with jobs waiting, and delete what the
/// broker confirmed, in one transaction.
pub async fn dispatch(pool: &PgPool, publisher: &Publisher, depth: u32) -> anyhow::Result<Round> {
    let mut tx = pool.begin().await?;
    if !outbox::take_dispatch_turn(&mut tx).await? {
        return Ok(Round::NotOurTurn);
    }
    let queue = publisher.topology().queue(Lane::Bulk);
    let ready = publisher.ready_count(&queue).await?;
    let room = depth.saturating_sub(ready) as usize;
    if room == 0 {
        return Ok(Round::QueueFull);
    }
    let namespaces = outbox::waiting_namespaces(&mut tx).await?;
    if namespaces.is_empty() {
        return Ok(Round::Idle);
    }
    let per_namespace = room.div_ceil(namespaces.len());
    let claimed = outbox::claim_bulk(&mut tx, &namespaces, i64::try_from(per_namespace)?).await?;
    let turn = fair_order(claimed, room);
    let (confirmed, first_error) =
        crate::relay::publish_rows(publisher, turn.iter().map(|r| &r.message)).await;
    outbox::delete_many(&mut tx, &confirmed).await?;
    tx.commit().await?;
    match first_error {
        Some(e) if confirmed.is_empty() => Err(e.into()),
        _ => Ok(Round::Published(confirmed.len())),
    }
}

/// Up to `room` jobs taken round-robin over their namespaces, each namespace's oldest first.
pub fn fair_order(rows: Vec<BulkRow>, room: usize) -> Vec<BulkRow> {
    let mut by_namespace: BTreeMap<String, VecDeque<BulkRow>> = BTreeMap::new();
    for row in rows {
        by_namespace
            .entry(row.namespace_id.clone())
            .or_default()
            .push_back(row);
    }
    for jobs in by_namespace.values_mut() {
        jobs.make_contiguous().sort_by_key(|r| r.message.id);
    }
    let mut turn = Vec::with_capacity(room);
    while turn.len() < room {
        let before = turn.len();
        for jobs in by_namespace.values_mut() {
            if turn.len() == room {
                break;
            }
            if let Some(row) = jobs.pop_front() {
                turn.push(row);
            }
        }
        if turn.len() == before {
            break;
        }
    }
    turn
}

/// How often the backlog gauges are read.
const GAUGE_INTERVAL: Duration = Duration::from_secs(2);

/// Namespaces with their own backlog series: the largest backlogs; the rest are summed
/// under `namespace="other"`, so the series stay bounded however many namespaces exist.
pub const TOP_NAMESPACES: usize = 10;

/// Reads the backlog per lane (waiting in the outbox, ready in the broker) and per
/// namespace (the top ones), into the gauges. `shown` holds the namespaces shown last
/// time, so one that left the top is set to zero rather than left stale.
async fn record_backlog(
    pool: &PgPool,
    publisher: &Publisher,
    shown: &mut Vec<String>,
) -> anyhow::Result<()> {
    let waiting = outbox::bulk_backlog(pool).await?;
    let total: i64 = waiting.iter().map(|(_, n)| n).sum();
    ::metrics::gauge!(metrics::LANE_BACKLOG, "lane" => Lane::Bulk.as_str(), "stage" => "waiting")
        .set(total as f64);
    let all = outbox::backlog(pool).await?;
    ::metrics::gauge!(metrics::OUTBOX_BACKLOG).set(all as f64);
    let direct = all - total;
    ::metrics::gauge!(metrics::LANE_BACKLOG, "lane" => Lane::Interactive.as_str(), "stage" => "waiting")
        .set(direct as f64);
    for lane in Lane::ALL {
        let ready = publisher
            .ready_count(&publisher.topology().queue(lane))
            .await?;
        ::metrics::gauge!(metrics::LANE_BACKLOG, "lane" => lane.as_str(), "stage" => "queued")
            .set(f64::from(ready));
    }
    let (top, rest) = waiting.split_at(waiting.len().min(TOP_NAMESPACES));
    let now: Vec<String> = top.iter().map(|(ns, _)| ns.clone()).collect();
    for gone in shown.iter().filter(|ns| !now.contains(ns)) {
        ::metrics::gauge!(metrics::NAMESPACE_BACKLOG, "namespace" => gone.clone()).set(0.0);
    }
    for (ns, n) in top {
        ::metrics::gauge!(metrics::NAMESPACE_BACKLOG, "namespace" => ns.clone()).set(*n as f64);
    }
    let other: i64 = rest.iter().map(|(_, n)| n).sum();
    ::metrics::gauge!(metrics::NAMESPACE_BACKLOG, "namespace" => "other").set(other as f64);
    *shown = now;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::outbox::OutboxRow;

    fn row(id: i64, ns: &str) -> BulkRow {
        BulkRow {
            namespace_id: ns.to_owned(),
            message: OutboxRow {
                id,
                exchange: String::new(),
                routing_key: "q".into(),
                message_id: format!("m{id}"),
                payload: json!({}),
            },
        }
    }

    fn ids(rows: &[BulkRow]) -> Vec<i64> {
        rows.iter().map(|r| r.message.id).collect()
    }

    #[test]
    fn namespaces_take_turns_oldest_first() {
        let rows = vec![
            row(1, "a"),
            row(2, "a"),
            row(3, "a"),
            row(9, "b"),
            row(4, "a"),
            row(7, "c"),
            row(8, "c"),
        ];
        assert_eq!(ids(&fair_order(rows.clone(), 100)), [1, 9, 7, 2, 8, 3, 4]);
        assert_eq!(ids(&fair_order(rows.clone(), 3)), [1, 9, 7]);
        assert_eq!(ids(&fair_order(rows, 4)), [1, 9, 7, 2]);
        assert!(fair_order(Vec::new(), 10).is_empty());
    }

    #[test]
    fn a_flooded_namespace_puts_one_round_in_front_of_another() {
        let mut rows: Vec<BulkRow> = (1..=256).map(|i| row(i, "flood")).collect();
        rows.push(row(1_000, "quiet"));
        let turn = fair_order(rows, 256);
        assert_eq!(turn.len(), 256);
        let position = turn.iter().position(|r| r.namespace_id == "quiet");
        assert_eq!(position, Some(1), "the quiet namespace's job goes second");
    }

    #[test]
    fn rounds_pause_only_when_nothing_moved() {
        let idle = Duration::from_millis(500);
        assert_eq!(pause_after(&Ok(Round::Published(3)), idle), Duration::ZERO);
        assert_eq!(pause_after(&Ok(Round::Idle), idle), idle);
        assert!(pause_after(&Ok(Round::QueueFull), idle) < Duration::from_millis(100));
        assert!(pause_after(&Err(anyhow::anyhow!("x")), idle) >= Duration::from_millis(500));
    }

    #[test]
    fn the_queue_holds_about_a_tenth_of_a_second_of_work() {
        let start = Instant::now();
        let mut pace = Pace::default();
        assert_eq!(pace.depth(start, 32), 8, "idle: the least depth");
        assert_eq!(pace.depth(start, 4), 4, "never above the configured depth");
        // 150 jobs a second for two seconds: 15 ahead.
        for i in 0..20 {
            pace.record(start + Duration::from_millis(100 * i), 15);
        }
        let now = start + Duration::from_millis(1_950);
        assert_eq!(pace.depth(now, 32), 15);
        // 1,000 a second: capped at the configured depth.
        for i in 0..20 {
            pace.record(now + Duration::from_millis(100 * i), 100);
        }
        assert_eq!(pace.depth(now + Duration::from_millis(1_950), 32), 32);
        // Once publishing stops, the depth falls back as the window empties.
        assert_eq!(pace.depth(now + Duration::from_secs(10), 32), 8);
    }
}
