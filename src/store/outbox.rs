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
}

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
    sqlx::query_scalar(
        "INSERT INTO outbox (exchange, routing_key, message_id, payload)
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(m.exchange)
    .bind(m.routing_key)
    .bind(m.message_id)
    .bind(m.payload)
    .fetch_one(conn)
    .await
}

pub async fn delete(pool: &PgPool, id: i64) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM outbox WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map(drop)
}

/// Locks up to `limit` rows at least `min_age` old that no other relay holds.
pub async fn claim(
    conn: &mut PgConnection,
    min_age: Duration,
    limit: i64,
) -> sqlx::Result<Vec<OutboxRow>> {
    sqlx::query_as(
        "SELECT id, exchange, routing_key, message_id, payload FROM outbox
         WHERE created_at <= now() - make_interval(secs => $1)
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
