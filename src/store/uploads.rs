//! Upload rows: creation, lookup, and the start of a confirmation.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};

use super::filter::Condition;

use super::models::UploadRow;
use super::outbox::{self, OutboxMessage};
use super::tasks::{self, NewTask};
use crate::domain::{TaskId, UploadId, UploadStatus};

pub(crate) const UPLOAD_COLUMNS: &str = "id, bucket_id, namespace_id, filename, content_type, file_size_bytes, presigned_url_expiration, s3_key, status, metadata, create_object_on_confirm, object_metadata, blob_property, blob_type, file_hash, skip_duplicates, enforce_file_hash, multipart_upload_id, part_size_bytes, part_count, is_duplicate, duplicate_of_upload_id, message, etag, object_id, task_id, batch_id, batch_task_id, error, created_at, updated_at, expires_at, verified_at, completed_at";

/// The upload columns qualified by the alias `u`.
pub(super) static UPLOAD_COLUMNS_OF_U: LazyLock<String> = LazyLock::new(|| {
    UPLOAD_COLUMNS
        .split(", ")
        .map(|column| format!("u.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
});

/// An upload about to be stored, already validated.
#[derive(Debug, Clone, serde::Serialize)]
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
    /// The PUT URL signs `file_hash`: the store checks the bytes.
    pub enforce_file_hash: bool,
    /// Set for an upload in parts once the store's multipart upload exists.
    pub multipart_upload_id: Option<String>,
    pub part_size_bytes: Option<i64>,
    pub part_count: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert(pool: &PgPool, u: &NewUpload) -> sqlx::Result<UploadRow> {
    insert_many(pool, std::slice::from_ref(u))
        .await?
        .pop()
        .ok_or(sqlx::Error::RowNotFound)
}

/// Stores several uploads in one statement; all or none. Returned in the given order.
pub async fn insert_many(pool: &PgPool, new: &[NewUpload]) -> sqlx::Result<Vec<UploadRow>> {
    let rows: Vec<UploadRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO uploads (id, bucket_id, namespace_id, filename, content_type, file_size_bytes,
            presigned_url_expiration, s3_key, status, metadata, create_object_on_confirm,
            object_metadata, blob_property, blob_type, file_hash, skip_duplicates,
            enforce_file_hash, multipart_upload_id, part_size_bytes, part_count, created_at,
            updated_at, expires_at)
         SELECT id, bucket_id, namespace_id, filename, content_type, file_size_bytes,
            presigned_url_expiration, s3_key, $2, metadata, create_object_on_confirm,
            object_metadata, blob_property, blob_type, file_hash, skip_duplicates,
            enforce_file_hash, multipart_upload_id, part_size_bytes, part_count, created_at,
            created_at, expires_at
         FROM jsonb_to_recordset($1) AS x(id text, bucket_id text, namespace_id text,
            filename text, content_type text, file_size_bytes bigint,
            presigned_url_expiration integer, s3_key text, metadata jsonb,
            create_object_on_confirm boolean, object_metadata jsonb, blob_property text,
            blob_type text, file_hash text, skip_duplicates boolean, enforce_file_hash boolean,
            multipart_upload_id text, part_size_bytes bigint, part_count integer,
            created_at timestamptz, expires_at timestamptz)
         RETURNING {UPLOAD_COLUMNS}"
    )))
    .bind(sqlx::types::Json(new))
    .bind(UploadStatus::Pending)
    .fetch_all(pool)
    .await?;
    let mut by_id: std::collections::HashMap<UploadId, UploadRow> =
        rows.into_iter().map(|u| (u.id.clone(), u)).collect();
    new.iter()
        .map(|n| by_id.remove(n.id.as_str()).ok_or(sqlx::Error::RowNotFound))
        .collect()
}

/// The columns a list may be ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadSort {
    CreatedAt,
    UpdatedAt,
    Filename,
    FileSize,
    Status,
}

impl UploadSort {
    pub const NAMES: [&'static str; 5] = [
        "created_at",
        "updated_at",
        "filename",
        "file_size_bytes",
        "status",
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created_at" => UploadSort::CreatedAt,
            "updated_at" => UploadSort::UpdatedAt,
            "filename" => UploadSort::Filename,
            "file_size_bytes" => UploadSort::FileSize,
            "status" => UploadSort::Status,
            _ => return None,
        })
    }

    fn column(self) -> &'static str {
        match self {
            UploadSort::CreatedAt => "created_at",
            UploadSort::UpdatedAt => "updated_at",
            UploadSort::Filename => "filename",
            UploadSort::FileSize => "file_size_bytes",
            UploadSort::Status => "status",
        }
    }
}

/// `%`, `_` and `\` match themselves in a search.
pub fn like_pattern(search: &str) -> String {
    let mut escaped = String::with_capacity(search.len() + 2);
    escaped.push('%');
    for c in search.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    escaped
}

/// A page of the bucket's uploads that `filter` selects.
pub async fn list(
    pool: &PgPool,
    bucket_id: &str,
    filter: &Condition,
    sort: UploadSort,
    descending: bool,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<UploadRow>> {
    let direction = if descending { "DESC" } else { "ASC" };
    let column = sort.column();
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE bucket_id = "
    ));
    qb.push_bind(bucket_id.to_owned()).push(" AND ");
    filter.push_sql(&mut qb);
    qb.push(format!(
        " ORDER BY {column} {direction} NULLS LAST, id {direction} LIMIT "
    ))
    .push_bind(limit)
    .push(" OFFSET ")
    .push_bind(offset);
    qb.build_query_as().fetch_all(pool).await
}

/// Uploads per status, and their declared or verified bytes, among those `filter` selects.
pub async fn count_by_status(
    pool: &PgPool,
    bucket_id: &str,
    filter: &Condition,
) -> sqlx::Result<Vec<(String, i64, i64)>> {
    let mut qb = QueryBuilder::<Postgres>::new(
        // Declared sizes may be as large as a bigint: their sum is capped, not overflowed.
        "SELECT status, count(*), LEAST(coalesce(sum(file_size_bytes), 0), 9223372036854775807)::bigint
         FROM uploads WHERE bucket_id = ",
    );
    qb.push_bind(bucket_id.to_owned()).push(" AND ");
    filter.push_sql(&mut qb);
    qb.push(" GROUP BY status ORDER BY status");
    qb.build_query_as().fetch_all(pool).await
}

/// How a cancel request for an upload ended.
#[derive(Debug)]
pub enum UploadCancel {
    /// It was `PENDING` or `FAILED` and is `CANCELED` now (or was already).
    Canceled(Box<UploadRow>),
    /// It is in a state that cannot be canceled; here it is.
    Refused(Box<UploadRow>),
    NotFound,
}

pub async fn cancel(pool: &PgPool, bucket_id: &str, upload_id: &str) -> sqlx::Result<UploadCancel> {
    let canceled: Option<UploadRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE uploads SET status = $3, updated_at = now(), message = 'Upload canceled'
         WHERE id = $1 AND bucket_id = $2 AND status = ANY($4)
         RETURNING {UPLOAD_COLUMNS}"
    )))
    .bind(upload_id)
    .bind(bucket_id)
    .bind(UploadStatus::Canceled)
    .bind(&UploadStatus::CONFIRMABLE[..])
    .fetch_optional(pool)
    .await?;
    if let Some(u) = canceled {
        return Ok(UploadCancel::Canceled(Box::new(u)));
    }
    Ok(match find_in_bucket(pool, bucket_id, upload_id).await? {
        None => UploadCancel::NotFound,
        Some(u) if u.status == UploadStatus::Canceled => UploadCancel::Canceled(Box::new(u)),
        Some(u) => UploadCancel::Refused(Box::new(u)),
    })
}

/// The error an upload never confirmed ends with.
pub const EXPIRED_ERROR: &str = "expired: never confirmed";

/// Locks up to `limit` uploads still `PENDING` past `expires_at + grace`, skipping those
/// another sweeper holds. Returns (id, s3_key).
pub async fn claim_expired(
    conn: &mut PgConnection,
    grace: std::time::Duration,
    limit: i64,
) -> sqlx::Result<Vec<Expired>> {
    sqlx::query_as(
        "SELECT id, s3_key, multipart_upload_id FROM uploads
         WHERE status = $3 AND expires_at + make_interval(secs => $1) < now()
         ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(grace.as_secs_f64())
    .bind(limit)
    .bind(UploadStatus::Pending)
    .fetch_all(conn)
    .await
}

/// An upload the expiry sweep took.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Expired {
    pub id: String,
    pub s3_key: String,
    pub multipart_upload_id: Option<String>,
}

/// Of the store's multipart upload ids given, those an upload still needs: one that may
/// yet be confirmed (`PENDING` or `FAILED` before its expiry and grace) or is being
/// confirmed (`PROCESSING`).
pub async fn multipart_owned(
    pool: &PgPool,
    multipart_ids: &[String],
    grace: std::time::Duration,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT multipart_upload_id FROM uploads
         WHERE multipart_upload_id = ANY($1)
           AND (status = $3
                OR (status = ANY($4) AND expires_at + make_interval(secs => $2) >= now()))",
    )
    .bind(multipart_ids)
    .bind(grace.as_secs_f64())
    .bind(UploadStatus::Processing)
    .bind(&UploadStatus::CONFIRMABLE[..])
    .fetch_all(pool)
    .await
}

/// Moves a multipart upload's expiry to `until` when that is later, so that parts signed
/// to be uploaded until then are not swept before. Answers the expiry it has now, or
/// `None` when the upload no longer awaits parts: not `PENDING` or `FAILED`, or failed
/// because it expired (the sweep dropped its parts).
pub async fn extend_expiry(
    pool: &PgPool,
    upload_id: &str,
    until: DateTime<Utc>,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar(
        "UPDATE uploads SET expires_at = greatest(expires_at, $2), updated_at = now()
         WHERE id = $1
           AND (status = $4 OR (status = $5 AND error IS DISTINCT FROM $3))
         RETURNING expires_at",
    )
    .bind(upload_id)
    .bind(until)
    .bind(EXPIRED_ERROR)
    .bind(UploadStatus::Pending)
    .bind(UploadStatus::Failed)
    .fetch_optional(pool)
    .await
}

/// Marks claimed uploads `FAILED` as expired.
pub async fn mark_expired(conn: &mut PgConnection, ids: &[String]) -> sqlx::Result<u64> {
    sqlx::query(
        "UPDATE uploads SET status = $3, error = $2, updated_at = now()
         WHERE id = ANY($1) AND status = $4",
    )
    .bind(ids)
    .bind(EXPIRED_ERROR)
    .bind(UploadStatus::Failed)
    .bind(UploadStatus::Pending)
    .execute(conn)
    .await
    .map(|r| r.rows_affected())
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
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {cols} FROM bucket_contents c JOIN uploads u ON u.id = c.upload_id
         WHERE c.bucket_id = $1 AND c.content_hash = $2 AND u.status = $3",
        cols = &*UPLOAD_COLUMNS_OF_U
    )))
    .bind(bucket_id)
    .bind(content_hash)
    .bind(UploadStatus::Completed)
    .fetch_optional(pool)
    .await
}

/// How an attempt to start a confirmation ended.
#[derive(Debug)]
pub enum ConfirmStart {
    /// This call moved the upload to `PROCESSING`; its job waits in the outbox row.
    Started { task_id: TaskId, outbox_id: i64 },
    /// The upload was not confirmable (any more); here is what it is now.
    NotStarted(Box<UploadRow>),
}

/// In one transaction: the upload goes `PROCESSING` (only from a confirmable state), its task
/// is recorded, and the job is put in the outbox.
pub async fn begin_confirmation(
    pool: &PgPool,
    upload_id: &UploadId,
    task: &NewTask<'_>,
    job: &OutboxMessage<'_>,
) -> sqlx::Result<ConfirmStart> {
    let mut tx = pool.begin().await?;
    tasks::insert(&mut tx, task).await?;
    let moved = sqlx::query(
        "UPDATE uploads SET status = $3, task_id = $2, error = NULL, updated_at = now()
         WHERE id = $1 AND status = ANY($4)",
    )
    .bind(upload_id)
    .bind(task.id)
    .bind(UploadStatus::Processing)
    .bind(&UploadStatus::CONFIRMABLE[..])
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
        task_id: task.id.clone(),
        outbox_id,
    })
}
