//! Batches of objects handed to downstream processors: `DRAFT` until submitted, then `PENDING`.

use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};

use super::models::BatchRow;
use super::outbox::{self, OutboxMessage};
use super::tasks::{self, NewTask};
use crate::domain::{BatchId, BatchStatus, OrganizationId, TaskId, TaskStatus, TaskType};

/// Where submitted batches are announced.
#[derive(Debug, Clone)]
pub struct BatchDestination {
    pub exchange: String,
    pub routing_key: String,
}

const BATCH_COLUMNS: &str = "id, bucket_id, namespace_id, batch_name, status, object_ids, task_id, metadata, created_at, updated_at";

/// A batch to create, in `DRAFT`.
#[derive(Debug, Clone, Copy)]
pub struct NewBatch<'a> {
    pub id: &'a str,
    pub bucket_id: &'a str,
    pub namespace_id: &'a str,
    pub batch_name: Option<&'a str>,
    pub object_ids: &'a [String],
    pub metadata: &'a Value,
}

pub async fn insert(conn: &mut PgConnection, batch: &NewBatch<'_>) -> sqlx::Result<BatchRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO batches (id, bucket_id, namespace_id, batch_name, status, object_ids, metadata)
         VALUES ($1, $2, $3, $4, $7, $5, $6) RETURNING {BATCH_COLUMNS}"
    )))
    .bind(batch.id)
    .bind(batch.bucket_id)
    .bind(batch.namespace_id)
    .bind(batch.batch_name)
    .bind(batch.object_ids)
    .bind(batch.metadata)
    .bind(BatchStatus::Draft)
    .fetch_one(conn)
    .await
}

/// The ids among `object_ids` that are not objects of the bucket.
pub async fn missing_objects(
    pool: &PgPool,
    bucket_id: &str,
    object_ids: &[String],
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT w.id FROM unnest($2::text[]) WITH ORDINALITY AS w(id, n)
         WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.id = w.id AND o.bucket_id = $1)
         ORDER BY w.n",
    )
    .bind(bucket_id)
    .bind(object_ids)
    .fetch_all(pool)
    .await
}

pub async fn find_in_bucket(
    pool: &PgPool,
    bucket_id: &str,
    batch_id: &str,
) -> sqlx::Result<Option<BatchRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1 AND bucket_id = $2"
    )))
    .bind(batch_id)
    .bind(bucket_id)
    .fetch_optional(pool)
    .await
}

/// A page of the bucket's batches, newest first, and how many there are.
pub async fn list(
    pool: &PgPool,
    bucket_id: &str,
    status: Option<&str>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<BatchRow>, i64)> {
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {BATCH_COLUMNS} FROM batches
         WHERE bucket_id = $1 AND ($2::text IS NULL OR status = $2)
         ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
    )))
    .bind(bucket_id)
    .bind(status)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar(
        "SELECT count(*) FROM batches WHERE bucket_id = $1 AND ($2::text IS NULL OR status = $2)",
    )
    .bind(bucket_id)
    .bind(status)
    .fetch_one(pool)
    .await?;
    Ok((rows, total))
}

/// What submitting recorded.
#[derive(Debug)]
pub struct Submitted {
    pub batch: BatchRow,
    pub task_id: TaskId,
    pub outbox_id: i64,
    pub announcement: Value,
}

/// Submits a `DRAFT` batch: it goes `PENDING` with a submit task, and its announcement joins
/// the outbox in the same transaction. `None` when the batch is not a draft.
pub async fn submit(
    conn: &mut PgConnection,
    batch_id: &BatchId,
    organization_id: &OrganizationId,
    destination: &BatchDestination,
) -> sqlx::Result<Option<Submitted>> {
    let task_id = TaskId::generate();
    let Some(draft): Option<BatchRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1 AND status = $2 FOR UPDATE"
    )))
    .bind(batch_id)
    .bind(BatchStatus::Draft)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let inputs = json!({
        "batch_id": draft.id,
        "bucket_id": draft.bucket_id,
        "object_ids": draft.object_ids,
    });
    // Submitting is done once the announcement is committed to the outbox.
    let outputs = json!({ "batch_id": draft.id, "object_count": draft.object_ids.len() });
    tasks::insert(
        conn,
        &NewTask {
            id: &task_id,
            organization_id,
            namespace_id: &draft.namespace_id,
            task_type: TaskType::BatchSubmit,
            status: TaskStatus::Completed,
            inputs: &inputs,
            outputs: Some(&outputs),
        },
    )
    .await?;
    let batch: BatchRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE batches SET status = $3, task_id = $2, updated_at = now()
         WHERE id = $1 RETURNING {BATCH_COLUMNS}"
    )))
    .bind(&draft.id)
    .bind(&task_id)
    .bind(BatchStatus::Pending)
    .fetch_one(&mut *conn)
    .await?;
    let announcement = json!({
        "batch_id": batch.id,
        "bucket_id": batch.bucket_id,
        "namespace_id": batch.namespace_id,
        "object_ids": batch.object_ids,
        "task_id": task_id,
        "metadata": batch.metadata,
    });
    let outbox_id = outbox::insert(
        conn,
        &OutboxMessage {
            exchange: &destination.exchange,
            routing_key: &destination.routing_key,
            message_id: &batch.id,
            payload: &announcement,
            namespace_id: None,
        },
    )
    .await?;
    Ok(Some(Submitted {
        batch,
        task_id,
        outbox_id,
        announcement,
    }))
}
