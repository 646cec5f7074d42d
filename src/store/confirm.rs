//! The end of a confirmation: every effect in one transaction, or none.

use serde_json::{json, Value};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, PgPool, Row};

use super::batch_confirm;
use super::batches;
pub use super::batches::BatchDestination;
use super::models::{NamespaceRow, UploadRow};
use super::tenancy::{NAMESPACE_COLUMNS, USED};
use super::uploads::UPLOAD_COLUMNS;
use crate::domain::{new_id, IdKind, TaskStatus};

/// What a worker finds when it starts a job.
#[derive(Debug)]
pub enum Start {
    /// The task is now `IN_PROGRESS`, this attempt counted.
    Started(Box<Started>),
    /// The task ended already (a redelivery, a cancel): nothing to do.
    Terminal,
    /// No such task: the message names nothing this service accepted.
    Unknown,
}

/// A started job and what its run reads: the task's inputs, the upload and its namespace.
#[derive(Debug)]
pub struct Started {
    pub inputs: Value,
    pub upload: Option<UploadRow>,
    pub namespace: Option<NamespaceRow>,
}

/// Marks the task `IN_PROGRESS` when a worker may (re)start it, counting the attempt, and
/// reads the upload and its namespace in the same round trip.
pub async fn start(pool: &PgPool, task_id: &str, upload_id: &str) -> sqlx::Result<Start> {
    let row: Option<PgRow> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH started AS (
            UPDATE tasks SET status = 'IN_PROGRESS', attempts = attempts + 1, updated_at = now()
            WHERE id = $1 AND status IN ('QUEUED', 'IN_PROGRESS', 'INTERRUPTED')
            RETURNING inputs
         ), upload AS (
            SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $2
         )
         SELECT started.inputs AS task_inputs, upload.*, ns.id AS ns_id,
            ns.organization_id AS ns_organization_id, ns.name AS ns_name,
            ns.max_file_size_bytes AS ns_max_file_size_bytes,
            ns.storage_quota_bytes AS ns_storage_quota_bytes,
            ns.storage_used_bytes AS ns_storage_used_bytes
         FROM started
         LEFT JOIN upload ON true
         LEFT JOIN LATERAL (
            SELECT {NAMESPACE_COLUMNS} FROM namespaces WHERE namespaces.id = upload.namespace_id
         ) ns ON true"
    )))
    .bind(task_id)
    .bind(upload_id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tasks WHERE id = $1)")
            .bind(task_id)
            .fetch_one(pool)
            .await?;
        return Ok(if exists {
            Start::Terminal
        } else {
            Start::Unknown
        });
    };
    let upload = match row.try_get::<Option<String>, _>("id")? {
        Some(_) => Some(UploadRow::from_row(&row)?),
        None => None,
    };
    let namespace = match row.try_get::<Option<String>, _>("ns_id")? {
        Some(id) => Some(NamespaceRow {
            id,
            organization_id: row.try_get("ns_organization_id")?,
            name: row.try_get("ns_name")?,
            max_file_size_bytes: row.try_get("ns_max_file_size_bytes")?,
            storage_quota_bytes: row.try_get("ns_storage_quota_bytes")?,
            storage_used_bytes: row.try_get("ns_storage_used_bytes")?,
        }),
        None => None,
    };
    Ok(Start::Started(Box::new(Started {
        inputs: row
            .try_get::<Option<Value>, _>("task_inputs")?
            .unwrap_or(Value::Null),
        upload,
        namespace,
    })))
}

/// What the worker established about the object.
#[derive(Debug, Clone)]
pub struct Verified {
    pub content_hash: String,
    pub size: i64,
    pub etag: String,
}

/// How finishing ended.
#[derive(Debug)]
pub enum Finish {
    Completed(Box<UploadRow>),
    /// Adding the object would pass the namespace's storage quota.
    QuotaExceeded {
        current: i64,
        limit: i64,
    },
    /// The upload or task had moved on (a redelivery, a cancel): nothing was changed.
    Stale,
}

/// Steps 6–9 of a confirmation: dedup, object, usage, batch, upload and task terminal.
pub async fn complete(
    pool: &PgPool,
    task_id: &str,
    upload_id: &str,
    verified: &Verified,
    auto_submit_batch: bool,
    batches: &BatchDestination,
    outputs: impl FnOnce(&UploadRow) -> Value,
) -> sqlx::Result<Finish> {
    let mut tx = pool.begin().await?;
    let Some(upload) = lock_processing(&mut tx, task_id, upload_id).await? else {
        return Ok(Finish::Stale);
    };
    let new_object_id = upload
        .create_object_on_confirm
        .then(|| new_id(IdKind::Object));
    // The first completed upload of a content in a bucket becomes its original.
    let became_original: bool = sqlx::query_scalar(
        "INSERT INTO bucket_contents (bucket_id, content_hash, upload_id, object_id)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
    )
    .bind(&upload.bucket_id)
    .bind(&verified.content_hash)
    .bind(&upload.id)
    .bind(&new_object_id)
    .fetch_optional(&mut *tx)
    .await?
    .unwrap_or(false);

    let duplicate_of: Option<(String, Option<String>)> = if upload.skip_duplicates
        && !became_original
    {
        sqlx::query_as(
            "SELECT upload_id, object_id FROM bucket_contents WHERE bucket_id = $1 AND content_hash = $2",
        )
        .bind(&upload.bucket_id)
        .bind(&verified.content_hash)
        .fetch_optional(&mut *tx)
        .await?
    } else {
        None
    };

    // Bytes the namespace stores from now on: only a new object adds to its usage.
    let stored = (duplicate_of.is_none() && new_object_id.is_some()).then_some(verified.size);
    let (object_id, batch) = match (&duplicate_of, new_object_id) {
        (Some((_, original_object)), _) => (original_object.clone(), None),
        (None, None) => (None, None),
        (None, Some(object_id)) => {
            insert_object(&mut tx, &upload, &object_id, verified).await?;
            let batch = if auto_submit_batch {
                let Some(organization_id) = lock_running_task(&mut tx, task_id).await? else {
                    return Ok(Finish::Stale);
                };
                Some(submit_batch(&mut tx, &upload, &organization_id, &object_id, batches).await?)
            } else {
                None
            };
            (Some(object_id), batch)
        }
    };

    let message = match &duplicate_of {
        Some((original, _)) => format!("Duplicate of upload {original}; no new object created"),
        None if object_id.is_some() => "Upload confirmed and object created".to_owned(),
        None => "Upload confirmed".to_owned(),
    };
    let (batch_id, batch_task_id) = batch.unzip();
    let completed: UploadRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE uploads SET status = 'COMPLETED', verified_at = now(), completed_at = now(),
            updated_at = now(), etag = $2, file_size_bytes = $3, file_hash = $4, object_id = $5,
            is_duplicate = $6, duplicate_of_upload_id = $7, batch_id = $8, batch_task_id = $9,
            message = $10, error = NULL
         WHERE id = $1 RETURNING {UPLOAD_COLUMNS}"
    )))
    .bind(&upload.id)
    .bind(&verified.etag)
    .bind(verified.size)
    .bind(&verified.content_hash)
    .bind(&object_id)
    .bind(duplicate_of.is_some())
    .bind(duplicate_of.as_ref().map(|(u, _)| u))
    .bind(&batch_id)
    .bind(&batch_task_id)
    .bind(&message)
    .fetch_one(&mut *tx)
    .await?;

    // The task's row lock is taken here, after the upload's, as cancels take them; a task
    // ended meanwhile (a cancel, a dead letter) leaves everything as it was.
    if !finish_task(
        &mut tx,
        task_id,
        TaskStatus::Completed,
        None,
        &outputs(&completed),
    )
    .await?
    {
        tx.rollback().await?;
        return Ok(Finish::Stale);
    }
    // Usage grows last: with a quota, every confirmation of the namespace waits on its row's
    // lock, so it is held for one statement and the commit, not the whole transaction.
    if let Some(size) = stored {
        if let Some((current, limit)) = add_usage(&mut tx, &upload, size).await? {
            tx.rollback().await?;
            return Ok(Finish::QuotaExceeded { current, limit });
        }
    }
    tx.commit().await?;
    Ok(Finish::Completed(Box::new(completed)))
}

/// A permanent failure: the upload and the task end `FAILED` with the reason.
/// False when they had already moved on.
pub async fn fail(
    pool: &PgPool,
    task_id: &str,
    upload_id: &str,
    error: &str,
    outputs: &Value,
) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let failed = sqlx::query(
        "UPDATE uploads SET status = 'FAILED', error = $3, updated_at = now()
         WHERE id = $1 AND task_id = $2 AND status = 'PROCESSING'",
    )
    .bind(upload_id)
    .bind(task_id)
    .bind(error)
    .execute(&mut *tx)
    .await?;
    let ended = finish_task(&mut tx, task_id, TaskStatus::Failed, Some(error), outputs).await?;
    tx.commit().await?;
    Ok(failed.rows_affected() == 1 || ended)
}

/// Ends a confirmation's task that is not terminal yet, tells its waiters, and records the
/// result on the batch confirmations following it (ending those whose last item it was).
pub async fn finish_task(
    conn: &mut PgConnection,
    task_id: &str,
    status: TaskStatus,
    error: Option<&str>,
    outputs: &Value,
) -> sqlx::Result<bool> {
    let ended = end_task_for_parents(conn, task_id, status, error, outputs).await?;
    let Some(has_parents) = ended else {
        return Ok(false);
    };
    if !has_parents {
        return Ok(true);
    }
    let result = batch_confirm::item_result(status, error, outputs);
    for parent in batch_confirm::settle(conn, task_id, &result).await? {
        batch_confirm::finalize_if_done(conn, &parent).await?;
    }
    Ok(true)
}

/// Ends a task that is not terminal yet, and tells its waiters. True when it ended now.
pub async fn end_task(
    conn: &mut PgConnection,
    task_id: &str,
    status: TaskStatus,
    error: Option<&str>,
    outputs: &Value,
) -> sqlx::Result<bool> {
    Ok(end_task_for_parents(conn, task_id, status, error, outputs)
        .await?
        .is_some())
}

/// Ends a task as [`end_task`] does; when it ended now, whether batch confirmations await
/// its result.
async fn end_task_for_parents(
    conn: &mut PgConnection,
    task_id: &str,
    status: TaskStatus,
    error: Option<&str>,
    outputs: &Value,
) -> sqlx::Result<Option<bool>> {
    // One round trip: the update, the notice its waiters get at commit, and its parents.
    let (ended, has_parents): (i64, bool) = sqlx::query_as(
        "WITH ended AS (
            UPDATE tasks SET status = $2, error = $3, outputs = $4, lease_until = NULL, updated_at = now()
            WHERE id = $1 AND status IN ('QUEUED', 'IN_PROGRESS', 'INTERRUPTED') RETURNING 1
         ), told AS (SELECT pg_notify($5, $1))
         SELECT (SELECT count(*) FROM ended),
            EXISTS (SELECT 1 FROM batch_confirm_items WHERE child_task_id = $1 AND result IS NULL)
         FROM told",
    )
    .bind(task_id)
    .bind(status.as_str())
    .bind(error)
    .bind(outputs)
    .bind(super::TASK_EVENTS_CHANNEL)
    .fetch_one(&mut *conn)
    .await?;
    Ok((ended == 1).then_some(has_parents))
}

/// Locks a task still running and reads its organization; `None` once it has ended.
async fn lock_running_task(conn: &mut PgConnection, task_id: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT organization_id FROM tasks
         WHERE id = $1 AND status IN ('QUEUED', 'IN_PROGRESS', 'INTERRUPTED') FOR UPDATE",
    )
    .bind(task_id)
    .fetch_optional(conn)
    .await
}

async fn lock_processing(
    conn: &mut PgConnection,
    task_id: &str,
    upload_id: &str,
) -> sqlx::Result<Option<UploadRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads
         WHERE id = $1 AND task_id = $2 AND status = 'PROCESSING' FOR UPDATE"
    )))
    .bind(upload_id)
    .bind(task_id)
    .fetch_optional(conn)
    .await
}

/// Grows the namespace's usage unless that passes its quota; then returns (current, limit).
/// Without a quota the bytes are appended to the usage ledger, taking no lock on the
/// namespace row; with one, the row is updated under its lock, counting the ledger too.
async fn add_usage(
    conn: &mut PgConnection,
    upload: &UploadRow,
    size: i64,
) -> sqlx::Result<Option<(i64, i64)>> {
    let appended = sqlx::query(
        "INSERT INTO namespace_usage (namespace_id, bytes)
         SELECT id, $2 FROM namespaces WHERE id = $1 AND storage_quota_bytes IS NULL",
    )
    .bind(&upload.namespace_id)
    .bind(size)
    .execute(&mut *conn)
    .await?;
    if appended.rows_affected() == 1 {
        return Ok(None);
    }
    let grown = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE namespaces SET storage_used_bytes = storage_used_bytes + $2
         WHERE id = $1 AND (storage_quota_bytes IS NULL OR {USED} + $2 <= storage_quota_bytes)"
    )))
    .bind(&upload.namespace_id)
    .bind(size)
    .execute(&mut *conn)
    .await?;
    if grown.rows_affected() == 1 {
        return Ok(None);
    }
    let (current, limit): (i64, Option<i64>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {USED}, storage_quota_bytes FROM namespaces WHERE id = $1"
    )))
    .bind(&upload.namespace_id)
    .fetch_one(conn)
    .await?;
    Ok(Some((current, limit.unwrap_or(0))))
}

async fn insert_object(
    conn: &mut PgConnection,
    upload: &UploadRow,
    object_id: &str,
    verified: &Verified,
) -> sqlx::Result<()> {
    let blobs = json!([{
        "property": upload.blob_property,
        "type": upload.blob_type,
        "s3_key": upload.s3_key,
        "content_type": upload.content_type,
        "size_bytes": verified.size,
        "file_hash": verified.content_hash,
        "upload_id": upload.id,
    }]);
    sqlx::query(
        "INSERT INTO objects (id, bucket_id, namespace_id, upload_id, blobs, metadata, status)
         VALUES ($1, $2, $3, $4, $5, $6, 'ACTIVE')",
    )
    .bind(object_id)
    .bind(&upload.bucket_id)
    .bind(&upload.namespace_id)
    .bind(&upload.id)
    .bind(&blobs)
    .bind(&upload.object_metadata)
    .execute(conn)
    .await
    .map(drop)
}

/// Creates a one-object batch and submits it: `PENDING`, a submit task, and its announcement.
async fn submit_batch(
    conn: &mut PgConnection,
    upload: &UploadRow,
    organization_id: &str,
    object_id: &str,
    destination: &BatchDestination,
) -> sqlx::Result<(String, String)> {
    let draft = batches::insert(
        &mut *conn,
        &new_id(IdKind::Batch),
        &upload.bucket_id,
        &upload.namespace_id,
        &[object_id.to_owned()],
        &json!({}),
    )
    .await?;
    let submitted = batches::submit(conn, &draft.id, organization_id, destination)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    Ok((draft.id, submitted.task_id))
}
