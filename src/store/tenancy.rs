//! Organizations, API keys, namespaces and buckets.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};

use super::filter::Condition;
use super::models::{BucketRow, NamespaceRow};
use crate::domain::{BucketId, OrganizationId};

/// The organization owning a live key with this hash.
pub async fn organization_for_key(
    pool: &PgPool,
    key_hash: &str,
) -> sqlx::Result<Option<OrganizationId>> {
    sqlx::query_scalar(
        "SELECT organization_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(key_hash)
    .fetch_optional(pool)
    .await
}

/// A namespace's usage in SQL: its folded bytes plus what the ledger holds for it.
macro_rules! used_sql {
    () => {
        "(storage_used_bytes + coalesce((SELECT sum(u.bytes) FROM namespace_usage u WHERE u.namespace_id = namespaces.id), 0))::bigint"
    };
}
pub(super) const USED: &str = used_sql!();

/// A namespace row as quota checks read it. The ledger is summed only under a quota: without
/// one nothing limits usage, and `storage_used_bytes` holds only what was folded so far.
pub(super) const NAMESPACE_COLUMNS: &str = concat!(
    "id, organization_id, name, max_file_size_bytes, storage_quota_bytes, ",
    "CASE WHEN storage_quota_bytes IS NULL THEN storage_used_bytes ELSE ",
    used_sql!(),
    " END AS storage_used_bytes"
);

/// Moves ledger rows into their namespaces' `storage_used_bytes`, at most `limit` of them, in
/// one statement (so a reader sees each byte counted once, before or after); how many moved.
pub async fn fold_usage(pool: &PgPool, limit: i64) -> sqlx::Result<u64> {
    let moved: i64 = sqlx::query_scalar(
        "WITH moved AS (
            DELETE FROM namespace_usage WHERE id IN (
                SELECT id FROM namespace_usage ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
            RETURNING namespace_id, bytes
         ), totals AS (
            SELECT namespace_id, sum(bytes)::bigint AS total, count(*) AS n FROM moved GROUP BY namespace_id
         ), folded AS (
            UPDATE namespaces n SET storage_used_bytes = n.storage_used_bytes + t.total
            FROM totals t WHERE n.id = t.namespace_id RETURNING 1
         )
         SELECT coalesce(sum(n), 0)::bigint FROM totals",
    )
    .bind(limit)
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(moved).unwrap_or(0))
}

/// A namespace of the organization, named by id or by name.
pub async fn find_namespace(
    pool: &PgPool,
    organization_id: &str,
    ident: &str,
) -> sqlx::Result<Option<NamespaceRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {NAMESPACE_COLUMNS}
         FROM namespaces WHERE organization_id = $1 AND (id = $2 OR name = $2)
         ORDER BY (id = $2) DESC LIMIT 1"
    )))
    .bind(organization_id)
    .bind(ident)
    .fetch_optional(pool)
    .await
}

pub async fn insert_organization(pool: &PgPool, id: &str, name: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO organizations (id, name) VALUES ($1, $2)")
        .bind(id)
        .bind(name)
        .execute(pool)
        .await
        .map(drop)
}

pub async fn insert_namespace(
    pool: &PgPool,
    id: &str,
    organization_id: &str,
    name: &str,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO namespaces (id, organization_id, name) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(organization_id)
        .bind(name)
        .execute(pool)
        .await
        .map(drop)
}

pub async fn insert_api_key(
    pool: &PgPool,
    id: &str,
    organization_id: &str,
    key_hash: &str,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO api_keys (id, organization_id, key_hash) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(organization_id)
        .bind(key_hash)
        .execute(pool)
        .await
        .map(drop)
}

/// Revokes the key with this hash; false when no live key has it.
pub async fn revoke_api_key(pool: &PgPool, key_hash: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(key_hash)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets a namespace's limits; `None` removes a limit. False when there is no such namespace.
pub async fn set_namespace_limits(
    pool: &PgPool,
    namespace_id: &str,
    max_file_size_bytes: Option<i64>,
    storage_quota_bytes: Option<i64>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE namespaces SET max_file_size_bytes = $2, storage_quota_bytes = $3 WHERE id = $1",
    )
    .bind(namespace_id)
    .bind(max_file_size_bytes)
    .bind(storage_quota_bytes)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Inserts a bucket; `None` when the name is taken in the namespace.
pub async fn insert_bucket(
    pool: &PgPool,
    id: &str,
    namespace_id: &str,
    name: &str,
    description: Option<&str>,
    metadata: &Value,
    schema: Option<&Value>,
) -> sqlx::Result<Option<BucketRow>> {
    sqlx::query_as(
        "INSERT INTO buckets (id, namespace_id, name, description, metadata, schema)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (namespace_id, name) DO NOTHING
         RETURNING id, namespace_id, name, description, metadata, schema, created_at, updated_at",
    )
    .bind(id)
    .bind(namespace_id)
    .bind(name)
    .bind(description)
    .bind(metadata)
    .bind(schema)
    .fetch_optional(pool)
    .await
}

/// A bucket of the namespace, named by id or by name.
pub async fn find_bucket(
    pool: &PgPool,
    namespace_id: &str,
    ident: &str,
) -> sqlx::Result<Option<BucketRow>> {
    sqlx::query_as(
        "SELECT id, namespace_id, name, description, metadata, schema, created_at, updated_at
         FROM buckets WHERE namespace_id = $1 AND (id = $2 OR name = $2)
         ORDER BY (id = $2) DESC LIMIT 1",
    )
    .bind(namespace_id)
    .bind(ident)
    .fetch_optional(pool)
    .await
}

/// Bytes the namespace stores, exactly: folded usage plus the ledger, quota or not.
pub async fn storage_used(pool: &PgPool, id: &str) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT {USED} FROM namespaces WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// What a bucket holds: its objects, their bytes, and its latest upload.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct BucketStats {
    pub bucket_id: String,
    pub object_count: i64,
    pub total_size_bytes: i64,
    pub last_upload_at: Option<DateTime<Utc>>,
}

/// The stats of each bucket named, in no particular order (a bucket with nothing is absent).
pub async fn bucket_stats(
    pool: &PgPool,
    bucket_ids: &[BucketId],
) -> sqlx::Result<Vec<BucketStats>> {
    sqlx::query_as(
        "SELECT b.id AS bucket_id,
                (SELECT count(*) FROM objects o WHERE o.bucket_id = b.id) AS object_count,
                (SELECT coalesce(sum((blob->>'size_bytes')::bigint), 0)::bigint
                   FROM objects o, jsonb_array_elements(o.blobs) AS blob
                  WHERE o.bucket_id = b.id) AS total_size_bytes,
                (SELECT max(created_at) FROM uploads u WHERE u.bucket_id = b.id) AS last_upload_at
         FROM buckets b WHERE b.id = ANY($1)",
    )
    .bind(bucket_ids)
    .fetch_all(pool)
    .await
}

/// A page of the namespace's buckets that `filter` selects, in `order` (an ORDER BY list of
/// known columns), and how many it selects.
pub async fn list_buckets(
    pool: &PgPool,
    namespace_id: &str,
    filter: &Condition,
    order: &str,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<BucketRow>, i64)> {
    let mut qb = QueryBuilder::<Postgres>::new(
        "SELECT id, namespace_id, name, description, metadata, schema, created_at, updated_at
         FROM buckets WHERE namespace_id = ",
    );
    qb.push_bind(namespace_id.to_owned()).push(" AND ");
    filter.push_sql(&mut qb);
    qb.push(format!(" ORDER BY {order} LIMIT "))
        .push_bind(limit)
        .push(" OFFSET ")
        .push_bind(offset);
    let rows = qb.build_query_as().fetch_all(pool).await?;
    let mut qb =
        QueryBuilder::<Postgres>::new("SELECT count(*) FROM buckets WHERE namespace_id = ");
    qb.push_bind(namespace_id.to_owned()).push(" AND ");
    filter.push_sql(&mut qb);
    let total = qb.build_query_scalar().fetch_one(pool).await?;
    Ok((rows, total))
}
