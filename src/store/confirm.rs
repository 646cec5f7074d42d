//! The end of a confirmation: every effect in one transaction, or none.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

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
    let mut started = start_many(pool, &[(task_id.to_owned(), upload_id.to_owned())]).await?;
    Ok(started.pop().unwrap_or(Start::Unknown))
}

/// [`start`] for several jobs, each a `(task_id, upload_id)`, in one statement and one
/// commit: one result per job, in their order. The tasks are locked in id order, so that
/// groups never wait in a cycle. A task named twice is started once, for both.
pub async fn start_many(pool: &PgPool, jobs: &[(String, String)]) -> sqlx::Result<Vec<Start>> {
    let (task_ids, upload_ids): (Vec<&str>, Vec<&str>) = jobs
        .iter()
        .map(|(task, upload)| (task.as_str(), upload.as_str()))
        .unzip();
    let rows: Vec<PgRow> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH job AS (
            SELECT * FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS j(task_id, upload_id, ord)
         ), startable AS (
            SELECT id FROM tasks
            WHERE id = ANY($1) AND status IN ('QUEUED', 'IN_PROGRESS', 'INTERRUPTED')
            ORDER BY id FOR UPDATE
         ), started AS (
            UPDATE tasks SET status = 'IN_PROGRESS', attempts = attempts + 1, updated_at = now()
            FROM startable WHERE tasks.id = startable.id
            RETURNING tasks.id AS task_id, tasks.inputs
         )
         SELECT started.task_id IS NOT NULL AS started,
            EXISTS (SELECT 1 FROM tasks WHERE tasks.id = job.task_id) AS known,
            started.inputs AS task_inputs, {upload_columns}, ns.id AS ns_id,
            ns.organization_id AS ns_organization_id, ns.name AS ns_name,
            ns.max_file_size_bytes AS ns_max_file_size_bytes,
            ns.storage_quota_bytes AS ns_storage_quota_bytes,
            ns.storage_used_bytes AS ns_storage_used_bytes
         FROM job
         LEFT JOIN started ON started.task_id = job.task_id
         LEFT JOIN uploads u ON u.id = job.upload_id AND started.task_id IS NOT NULL
         LEFT JOIN LATERAL (
            SELECT {NAMESPACE_COLUMNS} FROM namespaces WHERE namespaces.id = u.namespace_id
         ) ns ON true
         ORDER BY job.ord",
        upload_columns = &*UPLOAD_COLUMNS_OF_U
    )))
    .bind(&task_ids)
    .bind(&upload_ids)
    .fetch_all(pool)
    .await?;
    rows.iter().map(started_job).collect()
}

/// One row of [`start_many`].
fn started_job(row: &PgRow) -> sqlx::Result<Start> {
    if !row.try_get::<bool, _>("started")? {
        return Ok(if row.try_get::<bool, _>("known")? {
            Start::Terminal
        } else {
            Start::Unknown
        });
    }
    let upload = match row.try_get::<Option<String>, _>("id")? {
        Some(_) => Some(UploadRow::from_row(row)?),
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
    /// Where the verified bytes are kept: the upload's key from now on, and its object's.
    pub s3_key: String,
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

    let message = completion_message(
        duplicate_of.as_ref().map(|(original, _)| original.as_str()),
        object_id.is_some(),
    );
    let (batch_id, batch_task_id) = batch.unzip();
    let completed: UploadRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE uploads SET status = 'COMPLETED', verified_at = now(), completed_at = now(),
            updated_at = now(), etag = $2, file_size_bytes = $3, file_hash = $4, object_id = $5,
            is_duplicate = $6, duplicate_of_upload_id = $7, batch_id = $8, batch_task_id = $9,
            message = $10, error = NULL, s3_key = $11
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
    .bind(&verified.s3_key)
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

/// One verified confirmation to finish in a group: see [`complete_many`].
#[derive(Debug, Clone)]
pub struct Completion {
    pub task_id: String,
    pub upload_id: String,
    pub verified: Verified,
}

/// How finishing a group ended.
#[derive(Debug)]
pub enum Grouped {
    /// One result per completion, in their order.
    Done(Vec<Finish>),
    /// A namespace of the group has a storage quota: nothing was written, and each
    /// completion must be finished alone by [`complete`].
    OneByOne,
}

/// The upload columns qualified by the alias `u`.
static UPLOAD_COLUMNS_OF_U: LazyLock<String> = LazyLock::new(|| {
    UPLOAD_COLUMNS
        .split(", ")
        .map(|column| format!("u.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
});

/// Steps 6–9 of [`complete`] for several confirmations at once, in one transaction whose
/// statements each cover the whole group: the completions a worker has ready together share
/// their round trips and their commit. For confirmations that submit no batch, in namespaces
/// without a storage quota (both take per-namespace decisions that [`complete`] makes).
/// A completion whose upload or task moved on is `Stale` and changes nothing.
pub async fn complete_many(
    pool: &PgPool,
    group: &[Completion],
    outputs: impl Fn(&UploadRow) -> Value,
) -> sqlx::Result<Grouped> {
    let mut tx = pool.begin().await?;
    // Each upload still processing for its task, then that task if still running: locked
    // upload first, as cancels lock them, in upload order so that groups never wait in a cycle.
    let locked: Vec<UploadRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM unnest($1::text[], $2::text[]) AS j(upload_id, task_id)
         JOIN uploads u ON u.id = j.upload_id AND u.task_id = j.task_id AND u.status = 'PROCESSING'
         JOIN tasks t ON t.id = j.task_id AND t.status IN ('QUEUED', 'IN_PROGRESS', 'INTERRUPTED')
         ORDER BY u.id FOR UPDATE OF u, t",
        columns = &*UPLOAD_COLUMNS_OF_U
    )))
    .bind(
        group
            .iter()
            .map(|c| c.upload_id.clone())
            .collect::<Vec<_>>(),
    )
    .bind(group.iter().map(|c| c.task_id.clone()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let mut uploads: HashMap<String, UploadRow> =
        locked.into_iter().map(|u| (u.id.clone(), u)).collect();
    // The live completions, in the group's order, with the object each would create.
    let live: Vec<(&Completion, UploadRow, Option<String>)> = group
        .iter()
        .filter_map(|c| {
            let upload = uploads.remove(&c.upload_id)?;
            let object = upload
                .create_object_on_confirm
                .then(|| new_id(IdKind::Object));
            Some((c, upload, object))
        })
        .collect();
    if live.is_empty() {
        tx.rollback().await?;
        return Ok(Grouped::Done(group.iter().map(|_| Finish::Stale).collect()));
    }

    // The first completed upload of a content in a bucket becomes its original; within the
    // group, the first in order.
    let originals: HashSet<String> = sqlx::query_scalar(
        "INSERT INTO bucket_contents (bucket_id, content_hash, upload_id, object_id)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
         ON CONFLICT DO NOTHING RETURNING upload_id",
    )
    .bind(
        live.iter()
            .map(|(_, u, _)| u.bucket_id.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        live.iter()
            .map(|(c, _, _)| c.verified.content_hash.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        live.iter()
            .map(|(_, u, _)| u.id.clone())
            .collect::<Vec<_>>(),
    )
    .bind(live.iter().map(|(_, _, o)| o.clone()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();

    let seeking: Vec<&(&Completion, UploadRow, Option<String>)> = live
        .iter()
        .filter(|(_, u, _)| u.skip_duplicates && !originals.contains(&u.id))
        .collect();
    let mut duplicate_of: HashMap<String, (String, Option<String>)> = HashMap::new();
    if !seeking.is_empty() {
        let found: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT j.upload_id, bc.upload_id, bc.object_id
             FROM unnest($1::text[], $2::text[], $3::text[]) AS j(upload_id, bucket_id, content_hash)
             JOIN bucket_contents bc
               ON bc.bucket_id = j.bucket_id AND bc.content_hash = j.content_hash",
        )
        .bind(seeking.iter().map(|(_, u, _)| u.id.clone()).collect::<Vec<_>>())
        .bind(seeking.iter().map(|(_, u, _)| u.bucket_id.clone()).collect::<Vec<_>>())
        .bind(seeking.iter().map(|(c, _, _)| c.verified.content_hash.clone()).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        duplicate_of.extend(
            found
                .into_iter()
                .map(|(upload, original, object)| (upload, (original, object))),
        );
    }

    // What each live completion records: (completion, upload, object, duplicate of).
    let decided: Vec<_> = live
        .iter()
        .map(|(c, u, new_object)| {
            let original = duplicate_of.get(&u.id);
            let object = match original {
                Some((_, original_object)) => original_object.clone(),
                None => new_object.clone(),
            };
            (*c, u, object, original.map(|(upload, _)| upload.clone()))
        })
        .collect();
    let created: Vec<_> = decided
        .iter()
        .filter(|(_, _, object, original)| original.is_none() && object.is_some())
        .collect();
    if !created.is_empty() {
        sqlx::query(
            "INSERT INTO objects (id, bucket_id, namespace_id, upload_id, blobs, metadata, status)
             SELECT *, 'ACTIVE' FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[])",
        )
        .bind(created.iter().map(|(_, _, o, _)| o.clone()).collect::<Vec<_>>())
        .bind(created.iter().map(|(_, u, _, _)| u.bucket_id.clone()).collect::<Vec<_>>())
        .bind(created.iter().map(|(_, u, _, _)| u.namespace_id.clone()).collect::<Vec<_>>())
        .bind(created.iter().map(|(_, u, _, _)| u.id.clone()).collect::<Vec<_>>())
        .bind(created.iter().map(|(c, u, _, _)| object_blobs(u, &c.verified)).collect::<Vec<_>>())
        .bind(created.iter().map(|(_, u, _, _)| u.object_metadata.clone()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }

    let completed: Vec<UploadRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE uploads u SET status = 'COMPLETED', verified_at = now(), completed_at = now(),
            updated_at = now(), etag = v.etag, file_size_bytes = v.size, file_hash = v.hash,
            object_id = v.object_id, is_duplicate = v.duplicate_of IS NOT NULL,
            duplicate_of_upload_id = v.duplicate_of, batch_id = NULL, batch_task_id = NULL,
            message = v.message, error = NULL, s3_key = v.s3_key
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
            AS v(id, etag, size, hash, object_id, duplicate_of, message, s3_key)
         WHERE u.id = v.id RETURNING {columns}",
        columns = &*UPLOAD_COLUMNS_OF_U
    )))
    .bind(decided.iter().map(|(_, u, _, _)| u.id.clone()).collect::<Vec<_>>())
    .bind(decided.iter().map(|(c, _, _, _)| c.verified.etag.clone()).collect::<Vec<_>>())
    .bind(decided.iter().map(|(c, _, _, _)| c.verified.size).collect::<Vec<_>>())
    .bind(decided.iter().map(|(c, _, _, _)| c.verified.content_hash.clone()).collect::<Vec<_>>())
    .bind(decided.iter().map(|(_, _, o, _)| o.clone()).collect::<Vec<_>>())
    .bind(decided.iter().map(|(_, _, _, d)| d.clone()).collect::<Vec<_>>())
    .bind(
        decided
            .iter()
            .map(|(_, _, o, d)| completion_message(d.as_deref(), o.is_some()))
            .collect::<Vec<_>>(),
    )
    .bind(decided.iter().map(|(c, _, _, _)| c.verified.s3_key.clone()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let mut completed: HashMap<String, UploadRow> =
        completed.into_iter().map(|u| (u.id.clone(), u)).collect();

    // The tasks end, each telling its waiters; all were locked running above.
    let ending: Vec<(String, Value)> = decided
        .iter()
        .filter_map(|(c, u, _, _)| Some((c.task_id.clone(), outputs(completed.get(&u.id)?))))
        .collect();
    let ended: Vec<(String, bool)> = sqlx::query_as(
        "WITH v AS (SELECT * FROM unnest($1::text[], $2::jsonb[]) AS v(id, outputs)),
         ended AS (
            UPDATE tasks t SET status = 'COMPLETED', error = NULL, outputs = v.outputs,
                lease_until = NULL, updated_at = now()
            FROM v WHERE t.id = v.id AND t.status IN ('QUEUED', 'IN_PROGRESS', 'INTERRUPTED')
            RETURNING t.id
         )
         SELECT ended.id,
            EXISTS (SELECT 1 FROM batch_confirm_items WHERE child_task_id = ended.id AND result IS NULL)
         FROM ended, LATERAL (SELECT pg_notify($3, ended.id)) AS told",
    )
    .bind(ending.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>())
    .bind(ending.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>())
    .bind(super::TASK_EVENTS_CHANNEL)
    .fetch_all(&mut *tx)
    .await?;
    if completed.len() != decided.len() || ended.len() != decided.len() {
        // Rows locked above changed under the lock: nothing here can be trusted.
        tx.rollback().await?;
        return Err(sqlx::Error::Protocol(format!(
            "a group of {} completions ended {} uploads and {} tasks",
            decided.len(),
            completed.len(),
            ended.len()
        )));
    }
    // Usage grows by each new object, on the ledger: a namespace under a quota sends the
    // whole group back to be finished one by one.
    let stored = &created;
    if !stored.is_empty() {
        let appended = sqlx::query(
            "INSERT INTO namespace_usage (namespace_id, bytes)
             SELECT n.id, v.bytes FROM unnest($1::text[], $2::bigint[]) AS v(namespace_id, bytes)
             JOIN namespaces n ON n.id = v.namespace_id AND n.storage_quota_bytes IS NULL",
        )
        .bind(
            stored
                .iter()
                .map(|(_, u, _, _)| u.namespace_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            stored
                .iter()
                .map(|(c, _, _, _)| c.verified.size)
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
        if appended.rows_affected() != stored.len() as u64 {
            tx.rollback().await?;
            return Ok(Grouped::OneByOne);
        }
    }

    // Batch confirmations following these record their items' results in one pass, last:
    // their parents' row locks are held from here to the commit.
    let outputs_of: HashMap<&str, &Value> = ending.iter().map(|(t, o)| (t.as_str(), o)).collect();
    let items: Vec<(String, Value)> = ended
        .iter()
        .filter(|(_, has_parents)| *has_parents)
        .map(|(task_id, _)| {
            let outputs = outputs_of
                .get(task_id.as_str())
                .copied()
                .unwrap_or(&Value::Null);
            let result = batch_confirm::item_result(TaskStatus::Completed, None, outputs);
            (task_id.clone(), result)
        })
        .collect();
    let parents = batch_confirm::settle(&mut tx, &items).await?;
    batch_confirm::finalize_done(&mut tx, &parents).await?;
    tx.commit().await?;
    Ok(Grouped::Done(
        group
            .iter()
            .map(|c| match completed.remove(&c.upload_id) {
                Some(upload) => Finish::Completed(Box::new(upload)),
                None => Finish::Stale,
            })
            .collect(),
    ))
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
    let parents = batch_confirm::settle(conn, &[(task_id.to_owned(), result)]).await?;
    batch_confirm::finalize_done(conn, &parents).await?;
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

/// The upload's message once completed.
fn completion_message(duplicate_of: Option<&str>, created_object: bool) -> String {
    match duplicate_of {
        Some(original) => format!("Duplicate of upload {original}; no new object created"),
        None if created_object => "Upload confirmed and object created".to_owned(),
        None => "Upload confirmed".to_owned(),
    }
}

/// The blobs of the object a confirmation creates: the uploaded file.
fn object_blobs(upload: &UploadRow, verified: &Verified) -> Value {
    json!([{
        "property": upload.blob_property,
        "type": upload.blob_type,
        "s3_key": verified.s3_key,
        "content_type": upload.content_type,
        "size_bytes": verified.size,
        "file_hash": verified.content_hash,
        "upload_id": upload.id,
    }])
}

async fn insert_object(
    conn: &mut PgConnection,
    upload: &UploadRow,
    object_id: &str,
    verified: &Verified,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO objects (id, bucket_id, namespace_id, upload_id, blobs, metadata, status)
         VALUES ($1, $2, $3, $4, $5, $6, 'ACTIVE')",
    )
    .bind(object_id)
    .bind(&upload.bucket_id)
    .bind(&upload.namespace_id)
    .bind(&upload.id)
    .bind(object_blobs(upload, verified))
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
        &batches::NewBatch {
            id: &new_id(IdKind::Batch),
            bucket_id: &upload.bucket_id,
            namespace_id: &upload.namespace_id,
            batch_name: None,
            object_ids: &[object_id.to_owned()],
            metadata: &json!({}),
        },
    )
    .await?;
    let submitted = batches::submit(conn, &draft.id, organization_id, destination)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    Ok((draft.id, submitted.task_id))
}
