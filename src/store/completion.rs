//! The end of a confirmation: every effect in one transaction, or none. Confirmations a
//! worker has ready together finish in one group, sharing its statements and its commit; a
//! confirmation finished alone is a group of one.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};

use super::batches::{self, BatchDestination};
use super::endings::{end_tasks, Followers, TaskEnd};
use super::models::UploadRow;
use super::tenancy::USED;
use super::uploads::UPLOAD_COLUMNS_OF_U;
use crate::domain::{
    decide, BatchId, Decision, Failure, ObjectId, ObjectStatus, OrganizationId, Original, TaskId,
    TaskStatus, UploadId, UploadStatus,
};

/// How a confirmation's end is written into its task's outputs: the answers clients read
/// back, so the API supplies them.
#[derive(Debug, Clone, Copy)]
pub struct TaskOutputs {
    pub completed: fn(&UploadRow) -> Value,
    pub failed: fn(&UploadId, &Failure) -> Value,
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

/// One verified confirmation to finish.
#[derive(Debug, Clone)]
pub struct Completion {
    pub task_id: TaskId,
    pub upload_id: UploadId,
    pub verified: Verified,
    /// Submit a one-object batch of the object it creates.
    pub submit_batch: bool,
}

/// How finishing one confirmation ended.
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

/// How finishing a group ended.
#[derive(Debug)]
pub enum Grouped {
    /// One result per completion, in their order.
    Done(Vec<Finish>),
    /// A namespace of the group has a storage quota: nothing was written, and each
    /// completion must be finished alone (a group of one).
    OneByOne,
}

/// A live completion: its upload, locked, and what it records.
struct Decided<'a> {
    completion: &'a Completion,
    upload: UploadRow,
    decision: Decision,
    batch: Option<(BatchId, TaskId)>,
}

/// Steps 6–9 of a confirmation for each completion of the group: dedup, object, batch,
/// upload and task terminal, usage. A completion whose upload or task moved on is `Stale`
/// and changes nothing. A group with a namespace under a storage quota is sent back, to be
/// finished one by one by [`complete_one`].
pub async fn complete(
    pool: &PgPool,
    group: &[Completion],
    outputs: &TaskOutputs,
    batches: &BatchDestination,
) -> sqlx::Result<Grouped> {
    finish(pool, group, outputs, batches, Quota::SendBack).await
}

/// [`complete`] for one confirmation, a group of one that a quota does not send back: its
/// namespace's usage grows under the row's lock unless that passes the quota.
pub async fn complete_one(
    pool: &PgPool,
    completion: &Completion,
    outputs: &TaskOutputs,
    batches: &BatchDestination,
) -> sqlx::Result<Finish> {
    let alone = std::slice::from_ref(completion);
    Ok(
        match finish(pool, alone, outputs, batches, Quota::Enforce).await? {
            Grouped::Done(mut finished) => finished.pop().unwrap_or(Finish::Stale),
            Grouped::OneByOne => Finish::Stale,
        },
    )
}

/// What a group does about a namespace under a storage quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quota {
    /// Sends the group back: each namespace's quota is checked under its row's lock, one
    /// confirmation at a time.
    SendBack,
    /// Checks it (a group of one).
    Enforce,
}

async fn finish(
    pool: &PgPool,
    group: &[Completion],
    outputs: &TaskOutputs,
    batches: &BatchDestination,
    quota: Quota,
) -> sqlx::Result<Grouped> {
    let mut tx = pool.begin().await?;
    let mut uploads = lock_processing(&mut tx, group).await?;
    // The live completions, in the group's order, with the object each would create.
    let live: Vec<(&Completion, UploadRow, Option<ObjectId>)> = group
        .iter()
        .filter_map(|c| {
            let upload = uploads.remove(&c.upload_id)?;
            let object = upload.create_object_on_confirm.then(ObjectId::generate);
            Some((c, upload, object))
        })
        .collect();
    if live.is_empty() {
        tx.rollback().await?;
        return Ok(Grouped::Done(group.iter().map(|_| Finish::Stale).collect()));
    }
    let mut originals = find_originals(&mut tx, &live).await?;
    let mut decided: Vec<Decided> = live
        .into_iter()
        .map(|(completion, upload, new_object)| {
            let original = originals.remove(&upload.id);
            let decision = decide(new_object, original, completion.verified.size);
            Decided {
                completion,
                upload,
                decision,
                batch: None,
            }
        })
        .collect();
    insert_objects(&mut tx, &decided).await?;
    for d in decided.iter_mut() {
        if let (true, Some(object_id)) = (d.completion.submit_batch, &d.decision.object_id) {
            if d.decision.creates_object {
                d.batch = Some(submit_batch(&mut tx, d, object_id, batches).await?);
            }
        }
    }
    let mut completed = mark_completed(&mut tx, &decided).await?;

    // The tasks end, each telling its waiters, and the batch confirmations following them
    // record their results; all were locked running above.
    let task_outputs: Vec<Value> = decided
        .iter()
        .map(|d| {
            completed
                .get(&d.upload.id)
                .map_or(Value::Null, |u| (outputs.completed)(u))
        })
        .collect();
    let ends: Vec<TaskEnd> = decided
        .iter()
        .zip(&task_outputs)
        .map(|(d, outputs)| TaskEnd {
            task_id: &d.completion.task_id,
            status: TaskStatus::Completed,
            error: None,
            outputs,
        })
        .collect();
    let ended = end_tasks(&mut tx, &ends, Followers::Settle).await?;
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
    // Usage grows last: with a quota, every confirmation of the namespace waits on its
    // row's lock, so it is held for one statement and the commit, not the transaction.
    if let Some(exceeded) = add_usage(&mut tx, &decided, quota).await? {
        tx.rollback().await?;
        return Ok(exceeded);
    }
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

/// Each upload still processing for its task, with that task still running, locked: upload
/// first, as cancels lock them, in upload order so that groups never wait in a cycle.
async fn lock_processing(
    conn: &mut PgConnection,
    group: &[Completion],
) -> sqlx::Result<HashMap<UploadId, UploadRow>> {
    let locked: Vec<UploadRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM unnest($1::text[], $2::text[]) AS j(upload_id, task_id)
         JOIN uploads u ON u.id = j.upload_id AND u.task_id = j.task_id AND u.status = $3
         JOIN tasks t ON t.id = j.task_id AND t.status = ANY($4)
         ORDER BY u.id FOR UPDATE OF u, t",
        columns = &*UPLOAD_COLUMNS_OF_U
    )))
    .bind(
        group
            .iter()
            .map(|c| c.upload_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(group.iter().map(|c| c.task_id.as_str()).collect::<Vec<_>>())
    .bind(UploadStatus::Processing)
    .bind(&TaskStatus::OPEN[..])
    .fetch_all(conn)
    .await?;
    Ok(locked.into_iter().map(|u| (u.id.clone(), u)).collect())
}

/// Records the first completed upload of each content in its bucket as the original
/// (within the group, the first in order), and answers, for each upload that skips
/// duplicates and was not first, the original it repeats.
async fn find_originals(
    conn: &mut PgConnection,
    live: &[(&Completion, UploadRow, Option<ObjectId>)],
) -> sqlx::Result<HashMap<UploadId, Original>> {
    let firsts: HashSet<UploadId> = sqlx::query_scalar(
        "INSERT INTO bucket_contents (bucket_id, content_hash, upload_id, object_id)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
         ON CONFLICT DO NOTHING RETURNING upload_id",
    )
    .bind(
        live.iter()
            .map(|(_, u, _)| u.bucket_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        live.iter()
            .map(|(c, _, _)| c.verified.content_hash.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        live.iter()
            .map(|(_, u, _)| u.id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        live.iter()
            .map(|(_, _, o)| o.as_deref())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    let seeking: Vec<_> = live
        .iter()
        .filter(|(_, u, _)| u.skip_duplicates && !firsts.contains(&u.id))
        .collect();
    if seeking.is_empty() {
        return Ok(HashMap::new());
    }
    let found: Vec<(UploadId, UploadId, Option<ObjectId>)> = sqlx::query_as(
        "SELECT j.upload_id, bc.upload_id, bc.object_id
         FROM unnest($1::text[], $2::text[], $3::text[]) AS j(upload_id, bucket_id, content_hash)
         JOIN bucket_contents bc
           ON bc.bucket_id = j.bucket_id AND bc.content_hash = j.content_hash",
    )
    .bind(
        seeking
            .iter()
            .map(|(_, u, _)| u.id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        seeking
            .iter()
            .map(|(_, u, _)| u.bucket_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        seeking
            .iter()
            .map(|(c, _, _)| c.verified.content_hash.as_str())
            .collect::<Vec<_>>(),
    )
    .fetch_all(conn)
    .await?;
    Ok(found
        .into_iter()
        .map(|(upload, upload_id, object_id)| {
            (
                upload,
                Original {
                    upload_id,
                    object_id,
                },
            )
        })
        .collect())
}

async fn insert_objects(conn: &mut PgConnection, decided: &[Decided<'_>]) -> sqlx::Result<()> {
    let created: Vec<&Decided> = decided
        .iter()
        .filter(|d| d.decision.creates_object)
        .collect();
    if created.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO objects (id, bucket_id, namespace_id, upload_id, blobs, metadata, status)
         SELECT *, $7 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[])",
    )
    .bind(created.iter().map(|d| d.decision.object_id.as_deref()).collect::<Vec<_>>())
    .bind(created.iter().map(|d| d.upload.bucket_id.as_str()).collect::<Vec<_>>())
    .bind(created.iter().map(|d| d.upload.namespace_id.as_str()).collect::<Vec<_>>())
    .bind(created.iter().map(|d| d.upload.id.as_str()).collect::<Vec<_>>())
    .bind(created.iter().map(|d| object_blobs(&d.upload, &d.completion.verified)).collect::<Vec<_>>())
    .bind(created.iter().map(|d| d.upload.object_metadata.clone()).collect::<Vec<_>>())
    .bind(ObjectStatus::Active)
    .execute(conn)
    .await
    .map(drop)
}

/// The uploads `COMPLETED` with what was decided; the rows as they are now, by id.
async fn mark_completed(
    conn: &mut PgConnection,
    decided: &[Decided<'_>],
) -> sqlx::Result<HashMap<UploadId, UploadRow>> {
    let (batch_ids, batch_task_ids): (Vec<Option<&str>>, Vec<Option<&str>>) = decided
        .iter()
        .map(|d| match &d.batch {
            Some((batch, task)) => (Some(batch.as_str()), Some(task.as_str())),
            None => (None, None),
        })
        .unzip();
    let completed: Vec<UploadRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE uploads u SET status = $11, verified_at = now(), completed_at = now(),
            updated_at = now(), etag = v.etag, file_size_bytes = v.size, file_hash = v.hash,
            object_id = v.object_id, is_duplicate = v.duplicate_of IS NOT NULL,
            duplicate_of_upload_id = v.duplicate_of, batch_id = v.batch_id,
            batch_task_id = v.batch_task_id, message = v.message, error = NULL, s3_key = v.s3_key
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::text[])
            AS v(id, etag, size, hash, object_id, duplicate_of, message, s3_key, batch_id, batch_task_id)
         WHERE u.id = v.id RETURNING {columns}",
        columns = &*UPLOAD_COLUMNS_OF_U
    )))
    .bind(decided.iter().map(|d| d.upload.id.as_str()).collect::<Vec<_>>())
    .bind(decided.iter().map(|d| d.completion.verified.etag.as_str()).collect::<Vec<_>>())
    .bind(decided.iter().map(|d| d.completion.verified.size).collect::<Vec<_>>())
    .bind(decided.iter().map(|d| d.completion.verified.content_hash.as_str()).collect::<Vec<_>>())
    .bind(decided.iter().map(|d| d.decision.object_id.as_deref()).collect::<Vec<_>>())
    .bind(decided.iter().map(|d| d.decision.duplicate_of.as_deref()).collect::<Vec<_>>())
    .bind(decided.iter().map(|d| d.decision.message.as_str()).collect::<Vec<_>>())
    .bind(decided.iter().map(|d| d.completion.verified.s3_key.as_str()).collect::<Vec<_>>())
    .bind(batch_ids)
    .bind(batch_task_ids)
    .bind(UploadStatus::Completed)
    .fetch_all(conn)
    .await?;
    Ok(completed.into_iter().map(|u| (u.id.clone(), u)).collect())
}

/// Grows each namespace's usage by the new objects' bytes. Without a quota the bytes go on
/// the usage ledger, taking no lock on the namespace row. A namespace under a quota sends
/// the group back, or (a group of one) grows the row under its lock, counting the ledger
/// too, unless that passes the quota.
async fn add_usage(
    conn: &mut PgConnection,
    decided: &[Decided<'_>],
    quota: Quota,
) -> sqlx::Result<Option<Grouped>> {
    let stored: Vec<(&str, i64)> = decided
        .iter()
        .filter_map(|d| Some((d.upload.namespace_id.as_str(), d.decision.stored_bytes?)))
        .collect();
    if stored.is_empty() {
        return Ok(None);
    }
    let appended = sqlx::query(
        "INSERT INTO namespace_usage (namespace_id, bytes)
         SELECT n.id, v.bytes FROM unnest($1::text[], $2::bigint[]) AS v(namespace_id, bytes)
         JOIN namespaces n ON n.id = v.namespace_id AND n.storage_quota_bytes IS NULL",
    )
    .bind(stored.iter().map(|(ns, _)| *ns).collect::<Vec<_>>())
    .bind(stored.iter().map(|(_, bytes)| *bytes).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    if appended.rows_affected() == stored.len() as u64 {
        return Ok(None);
    }
    let (Quota::Enforce, &[(namespace_id, size)]) = (quota, &stored[..]) else {
        return Ok(Some(Grouped::OneByOne));
    };
    let grown = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE namespaces SET storage_used_bytes = storage_used_bytes + $2
         WHERE id = $1 AND (storage_quota_bytes IS NULL OR {USED} + $2 <= storage_quota_bytes)"
    )))
    .bind(namespace_id)
    .bind(size)
    .execute(&mut *conn)
    .await?;
    if grown.rows_affected() == 1 {
        return Ok(None);
    }
    let (current, limit): (i64, Option<i64>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {USED}, storage_quota_bytes FROM namespaces WHERE id = $1"
    )))
    .bind(namespace_id)
    .fetch_one(conn)
    .await?;
    Ok(Some(Grouped::Done(vec![Finish::QuotaExceeded {
        current,
        limit: limit.unwrap_or(0),
    }])))
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

/// Creates a one-object batch and submits it: `PENDING`, a submit task, and its
/// announcement. Answers the batch and its task.
async fn submit_batch(
    conn: &mut PgConnection,
    d: &Decided<'_>,
    object_id: &str,
    destination: &BatchDestination,
) -> sqlx::Result<(BatchId, TaskId)> {
    // The task is locked running (see `lock_processing`).
    let organization_id: OrganizationId =
        sqlx::query_scalar("SELECT organization_id FROM tasks WHERE id = $1")
            .bind(&d.completion.task_id)
            .fetch_one(&mut *conn)
            .await?;
    let draft = batches::insert(
        &mut *conn,
        &batches::NewBatch {
            id: &BatchId::generate(),
            bucket_id: &d.upload.bucket_id,
            namespace_id: &d.upload.namespace_id,
            batch_name: None,
            object_ids: &[object_id.to_owned()],
            metadata: &json!({}),
        },
    )
    .await?;
    let submitted = batches::submit(conn, &draft.id, &organization_id, destination)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    Ok((draft.id, submitted.task_id))
}
