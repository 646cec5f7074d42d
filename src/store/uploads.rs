//! Upload rows: creation, lookup, and the start of a confirmation.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use super::models::UploadRow;
use super::outbox::{self, OutboxMessage};
use super::tasks::{self, NewTask};

pub(crate) const UPLOAD_COLUMNS: &str = "id, bucket_id, namespace_id, filename, content_type, file_size_bytes, presigned_url_expiration, s3_key, status, metadata, create_object_on_confirm, object_metadata, blob_property, blob_type, file_hash, skip_duplicates, is_duplicate, duplicate_of_upload_id, message, etag, object_id, task_id, batch_id, batch_task_id, error, created_at, updated_at, expires_at, verified_at, completed_at";

/// An upload about to be stored, already validated.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub id: String,
    pub bucket_id: String,
    pub namespace_id: String,
    pub filename: String,
    pub content_type: String,
    pub file_size_bytes: Option<i64>,
    pub presigned_url_expiration: i32,
    pub s3_key: String,
    pub metadata: Value,
    pub create_object_on_confirm: bool,
    pub object_metadata: Option<Value>,
    pub blob_property: String,
    pub blob_type: String,
    pub file_hash: Option<String>,
    pub skip_duplicates: bool,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert(pool: &PgPool, u: &NewUpload) -> sqlx::Result<UploadRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO uploads (id, bucket_id, namespace_id, filename, content_type, file_size_bytes,
            presigned_url_expiration, s3_key, status, metadata, create_object_on_confirm,
            object_metadata, blob_property, blob_type, file_hash, skip_duplicates, created_at,
            updated_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'PENDING', $9, $10, $11, $12, $13, $14, $15, $16, $16, $17)
         RETURNING {UPLOAD_COLUMNS}"
    )))
    .bind(&u.id)
    .bind(&u.bucket_id)
    .bind(&u.namespace_id)
    .bind(&u.filename)
    .bind(&u.content_type)
    .bind(u.file_size_bytes)
    .bind(u.presigned_url_expiration)
    .bind(&u.s3_key)
    .bind(&u.metadata)
    .bind(u.create_object_on_confirm)
    .bind(&u.object_metadata)
    .bind(&u.blob_property)
    .bind(&u.blob_type)
    .bind(&u.file_hash)
    .bind(u.skip_duplicates)
    .bind(u.created_at)
    .bind(u.expires_at)
    .fetch_one(pool)
    .await
}

/// An upload of the bucket.
pub async fn find_in_bucket(
    pool: &PgPool,
    bucket_id: &str,
    upload_id: &str,
) -> sqlx::Result<Option<UploadRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1 AND bucket_id = $2"
    )))
    .bind(upload_id)
    .bind(bucket_id)
    .fetch_optional(pool)
    .await
}

pub async fn find(pool: &PgPool, upload_id: &str) -> sqlx::Result<Option<UploadRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1"
    )))
    .bind(upload_id)
    .fetch_optional(pool)
    .await
}

/// The completed original upload holding this content in the bucket, if any.
pub async fn find_original(
    pool: &PgPool,
    bucket_id: &str,
    content_hash: &str,
) -> sqlx::Result<Option<UploadRow>> {
    let cols = UPLOAD_COLUMNS
        .split(", ")
        .map(|c| format!("u.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {cols} FROM bucket_contents c JOIN uploads u ON u.id = c.upload_id
         WHERE c.bucket_id = $1 AND c.content_hash = $2 AND u.status = 'COMPLETED'"
    )))
    .bind(bucket_id)
    .bind(content_hash)
    .fetch_optional(pool)
    .await
}

/// How an attempt to start a confirmation ended.
#[derive(Debug)]
pub enum ConfirmStart {
    /// This call moved the upload to `PROCESSING`; its job waits in the outbox row.
    Started { task_id: String, outbox_id: i64 },
    /// The upload was not confirmable (any more); here is what it is now.
    NotStarted(Box<UploadRow>),
}

/// In one transaction: the upload goes `PROCESSING` (only from a confirmable state), its task
/// is recorded, and the job is put in the outbox.
pub async fn begin_confirmation(
    pool: &PgPool,
    upload_id: &str,
    task: &NewTask<'_>,
    job: &OutboxMessage<'_>,
) -> sqlx::Result<ConfirmStart> {
    let mut tx = pool.begin().await?;
    tasks::insert(&mut tx, task).await?;
    let moved = sqlx::query(
        "UPDATE uploads SET status = 'PROCESSING', task_id = $2, error = NULL, updated_at = now()
         WHERE id = $1 AND status IN ('PENDING', 'FAILED')",
    )
    .bind(upload_id)
    .bind(task.id)
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() == 0 {
        tx.rollback().await?;
        let current = find(pool, upload_id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        return Ok(ConfirmStart::NotStarted(Box::new(current)));
    }
    let outbox_id = outbox::insert(&mut tx, job).await?;
    tx.commit().await?;
    Ok(ConfirmStart::Started {
        task_id: task.id.to_owned(),
        outbox_id,
    })
}
