//! The transactional outbox: messages accepted with the rows that caused them.

use std::time::Duration;

use serde_json::Value;
use sqlx::{PgConnection, PgPool};

/// A message to publish once the transaction holding it commits.
#[derive(Debug, Clone)]
pub struct OutboxMessage<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub message_id: &'a str,
    pub payload: &'a Value,
    /// Set on bulk confirmation jobs: the dispatcher publishes them in fair shares per
    /// namespace. Without it the message is published at once.
    pub namespace_id: Option<&'a str>,
}

/// The channel a committed bulk job wakes the dispatchers on.
pub const DISPATCH_CHANNEL: &str = "upconfirm_dispatch";

/// A stored message, as the relay reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub exchange: String,
    pub routing_key: String,
    pub message_id: String,
    pub payload: Value,
}

pub async fn insert(conn: &mut PgConnection, m: &OutboxMessage<'_>) -> sqlx::Result<i64> {
    let id = sqlx::query_scalar(
        "INSERT INTO outbox (exchange, routing_key, message_id, payload, namespace_id)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(m.exchange)
    .bind(m.routing_key)
    .bind(m.message_id)
    .bind(m.payload)
    .bind(m.namespace_id)
    .fetch_one(&mut *conn)
    .await?;
    if m.namespace_id.is_some() {
        wake_dispatchers(conn).await?;
    }
    Ok(id)
}

/// Wakes the dispatchers once the transaction commits (one notification per transaction).
pub async fn wake_dispatchers(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(DISPATCH_CHANNEL)
        .execute(conn)
        .await
        .map(drop)
}

pub async fn delete(pool: &PgPool, id: i64) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM outbox WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map(drop)
}

/// Locks up to `limit` rows to publish at once (no namespace) at least `min_age` old that
/// no other relay holds.
pub async fn claim(
    conn: &mut PgConnection,
    min_age: Duration,
    limit: i64,
) -> sqlx::Result<Vec<OutboxRow>> {
    sqlx::query_as(
        "SELECT id, exchange, routing_key, message_id, payload FROM outbox
         WHERE namespace_id IS NULL AND created_at <= now() - make_interval(secs => $1)
         ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(min_age.as_secs_f64())
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn delete_many(conn: &mut PgConnection, ids: &[i64]) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
        .bind(ids)
        .execute(conn)
        .await
        .map(drop)
}

/// Rows waiting to be published.
pub async fn backlog(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(pool)
        .await
}

/// The namespaces with bulk jobs waiting, found through the index one at a time (a skip
/// scan), so the cost follows the namespaces, not the jobs.
pub async fn waiting_namespaces(conn: &mut PgConnection) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "WITH RECURSIVE spaces(namespace_id) AS (
             (SELECT namespace_id FROM outbox WHERE namespace_id IS NOT NULL
              ORDER BY namespace_id LIMIT 1)
             UNION ALL
             SELECT (SELECT o.namespace_id FROM outbox o WHERE o.namespace_id > s.namespace_id
                     ORDER BY o.namespace_id LIMIT 1)
             FROM spaces s WHERE s.namespace_id IS NOT NULL)
         SELECT namespace_id FROM spaces WHERE namespace_id IS NOT NULL",
    )
    .fetch_all(conn)
    .await
}

/// A bulk job as the dispatcher takes it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BulkRow {
    pub namespace_id: String,
    #[sqlx(flatten)]
    pub message: OutboxRow,
}

/// Locks the oldest `per_namespace` bulk jobs of each namespace, oldest first.
pub async fn claim_bulk(
    conn: &mut PgConnection,
    namespaces: &[String],
    per_namespace: i64,
) -> sqlx::Result<Vec<BulkRow>> {
    sqlx::query_as(
        "SELECT o.id, o.namespace_id, o.exchange, o.routing_key, o.message_id, o.payload
         FROM unnest($1::text[]) AS s(namespace_id)
         CROSS JOIN LATERAL (
             SELECT id, namespace_id, exchange, routing_key, message_id, payload FROM outbox
             WHERE namespace_id = s.namespace_id
             ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) o",
    )
    .bind(namespaces)
    .bind(per_namespace)
    .fetch_all(conn)
    .await
}

/// Takes the dispatcher's turn for this transaction, unless another relay has it.
pub async fn take_dispatch_turn(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('upconfirm.dispatch'))")
        .fetch_one(conn)
        .await
}

/// Bulk jobs waiting per namespace, the largest first.
pub async fn bulk_backlog(pool: &PgPool) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT namespace_id, count(*) FROM outbox WHERE namespace_id IS NOT NULL
         GROUP BY namespace_id ORDER BY count(*) DESC, namespace_id",
    )
    .fetch_all(pool)
    .await
}

/// Bulk jobs waiting for the dispatcher, all namespaces: what autoscaling watches (the
/// broker's bulk queue holds only the dispatcher's few).
pub const WAITING_BULK_JOBS: &str = "SELECT count(*) FROM outbox WHERE namespace_id IS NOT NULL";

/// A namespace's bulk jobs waiting, counted up to `cap` (the count stops there).
pub async fn namespace_backlog(pool: &PgPool, namespace_id: &str, cap: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM outbox WHERE namespace_id = $1 LIMIT $2) waiting",
    )
    .bind(namespace_id)
    .bind(cap)
    .fetch_one(pool)
    .await
}
