//! Batch confirmations: one parent task whose items each follow an ordinary confirmation.
//!
//! Every item's confirmation is its own job, so workers run the items concurrently. When a
//! confirmation ends, the items that follow it record its result (in the transaction that
//! ended it, see [`super::endings`]), and the parent ends with the last of them.

use std::collections::HashMap;

use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};

use super::endings::{finalize_if_done, summarize};
use super::models::{TaskRow, UploadRow};
use super::outbox;
use super::tasks::{self, NewTask};
use super::uploads::UPLOAD_COLUMNS;
use crate::domain::{TaskId, TaskStatus, TaskType, UploadId, UploadStatus};

/// One requested item: the upload and the options its confirmation runs with.
#[derive(Debug, Clone)]
pub struct ItemRequest {
    pub upload_id: String,
    pub options: Value,
}

/// How accepting a batch confirmation ended.
#[derive(Debug)]
pub enum BatchStart {
    /// The parent task; the items' jobs wait in the outbox for the dispatcher.
    Accepted(Box<TaskRow>),
    /// These upload ids are not in the bucket; nothing was recorded.
    Unknown(Vec<String>),
}

/// Accepts a batch confirmation in one transaction: the parent task, a confirmation (task,
/// upload → `PROCESSING`, outbox row) for each item that can start one, and the items.
pub async fn begin(
    pool: &PgPool,
    parent: &NewTask<'_>,
    bucket_id: &str,
    items: &[ItemRequest],
    queue: &str,
    job_payload: impl Fn(&TaskId, &UploadId) -> Value,
) -> sqlx::Result<BatchStart> {
    let mut tx = pool.begin().await?;
    let ids: Vec<&str> = items.iter().map(|i| i.upload_id.as_str()).collect();
    // Locked in id order; a confirmation in flight cannot end while we look at it.
    let rows: Vec<UploadRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE bucket_id = $1 AND id = ANY($2)
         ORDER BY id FOR UPDATE"
    )))
    .bind(bucket_id)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let uploads: HashMap<UploadId, UploadRow> =
        rows.into_iter().map(|u| (u.id.clone(), u)).collect();
    // Each unknown id once, in the order given.
    let mut named = std::collections::HashSet::new();
    let unknown: Vec<String> = ids
        .iter()
        .filter(|id| !uploads.contains_key(**id) && named.insert(**id))
        .map(|id| (*id).to_owned())
        .collect();
    if !unknown.is_empty() {
        tx.rollback().await?;
        return Ok(BatchStart::Unknown(unknown));
    }
    tasks::insert(&mut tx, parent).await?;
    let (children, item_rows) = plan_items(parent, bucket_id, items, uploads, job_payload)?;
    start_children(&mut tx, parent, &children, queue).await?;
    sqlx::query(
        "INSERT INTO batch_confirm_items (parent_task_id, position, upload_id, child_task_id, result)
         SELECT $1, i.position, i.upload_id, i.child_task_id, i.result
         FROM jsonb_to_recordset($2) AS i(position int, upload_id text, child_task_id text, result jsonb)",
    )
    .bind(parent.id)
    .bind(item_rows)
    .execute(&mut *tx)
    .await?;

    if !finalize_if_done(&mut tx, parent.id).await? {
        tasks::notify(&mut tx, parent.id).await?;
    }
    let parent_row = tasks::find_in(&mut tx, parent.id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    tx.commit().await?;
    Ok(BatchStart::Accepted(Box::new(parent_row)))
}

/// What each item comes to, from its upload's state: a new confirmation (a child to start),
/// one already running to follow, or a result known at once. Answers the children to start
/// and the item rows, as JSON records.
fn plan_items(
    parent: &NewTask<'_>,
    bucket_id: &str,
    items: &[ItemRequest],
    mut uploads: HashMap<UploadId, UploadRow>,
    job_payload: impl Fn(&TaskId, &UploadId) -> Value,
) -> sqlx::Result<(Value, Value)> {
    let mut children = Vec::new();
    let mut item_rows = Vec::with_capacity(items.len());
    for (position, item) in items.iter().enumerate() {
        let upload = uploads
            .get_mut(item.upload_id.as_str())
            .ok_or(sqlx::Error::RowNotFound)?;
        let (child, result) = match upload.status {
            UploadStatus::Completed => (None, Some(completed_result(upload))),
            UploadStatus::Processing => (upload.task_id.clone(), None),
            UploadStatus::Pending | UploadStatus::Failed => {
                let task_id = TaskId::generate();
                children.push(json!({
                    "id": task_id,
                    "upload_id": upload.id,
                    "inputs": {
                        "upload_id": upload.id,
                        "bucket_id": bucket_id,
                        "options": item.options,
                        "batch_task_id": parent.id,
                    },
                    "payload": job_payload(&task_id, &upload.id),
                }));
                upload.status = UploadStatus::Processing;
                upload.task_id = Some(task_id.clone());
                (Some(task_id), None)
            }
            UploadStatus::Canceled => (
                None,
                Some(json!({
                    "status": TaskStatus::Canceled,
                    "error": "the upload was canceled and cannot be confirmed",
                })),
            ),
        };
        item_rows.push(json!({
            "position": position,
            "upload_id": item.upload_id,
            "child_task_id": child,
            "result": result.map(|r| with_upload_id(r, &item.upload_id)),
        }));
    }

    Ok((Value::Array(children), Value::Array(item_rows)))
}

/// Starts the children's confirmations: their tasks, their uploads `PROCESSING`, and their
/// jobs in the outbox for the dispatcher.
async fn start_children(
    conn: &mut PgConnection,
    parent: &NewTask<'_>,
    children: &Value,
    queue: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO tasks (id, organization_id, namespace_id, task_type, status, inputs)
         SELECT c.id, $2, $3, $4, $5, c.inputs
         FROM jsonb_to_recordset($1) AS c(id text, inputs jsonb)",
    )
    .bind(children)
    .bind(parent.organization_id)
    .bind(parent.namespace_id)
    .bind(TaskType::UploadConfirm)
    .bind(TaskStatus::Queued)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE uploads u SET status = $2, task_id = c.id, error = NULL, updated_at = now()
         FROM jsonb_to_recordset($1) AS c(id text, upload_id text)
         WHERE u.id = c.upload_id",
    )
    .bind(children)
    .bind(UploadStatus::Processing)
    .execute(&mut *conn)
    .await?;
    // Bulk jobs: the dispatcher publishes them in fair shares with other namespaces'.
    let queued = sqlx::query(
        "INSERT INTO outbox (exchange, routing_key, message_id, payload, namespace_id)
         SELECT '', $2, c.id, c.payload, $3
         FROM jsonb_to_recordset($1) AS c(id text, payload jsonb)",
    )
    .bind(children)
    .bind(queue)
    .bind(parent.namespace_id)
    .execute(&mut *conn)
    .await?;
    if queued.rows_affected() > 0 {
        outbox::wake_dispatchers(conn).await?;
    }
    Ok(())
}

fn with_upload_id(mut result: Value, upload_id: &str) -> Value {
    if let Value::Object(map) = &mut result {
        map.insert("upload_id".into(), json!(upload_id));
    }
    result
}

/// An item's result for an upload that is already confirmed.
fn completed_result(u: &UploadRow) -> Value {
    json!({
        "status": TaskStatus::Completed,
        "object_id": u.object_id,
        "is_duplicate": u.is_duplicate,
        "duplicate_of_upload_id": u.duplicate_of_upload_id,
        "file_hash": u.file_hash,
    })
}

/// The items' results, open ones shown as pending, for a parent ended early.
pub async fn partial_outputs(
    conn: &mut PgConnection,
    parent_task_id: &TaskId,
) -> sqlx::Result<Value> {
    let results: Vec<Value> = sqlx::query_scalar(
        "SELECT coalesce(result, jsonb_build_object('upload_id', upload_id, 'status', $2::text,
                'error', 'the batch confirmation was canceled'))
         FROM batch_confirm_items WHERE parent_task_id = $1 ORDER BY position",
    )
    .bind(parent_task_id)
    .bind(TaskStatus::Canceled)
    .fetch_all(&mut *conn)
    .await?;
    Ok(summarize(&results).0)
}

/// The confirmations a parent's open items follow.
pub async fn open_children(
    conn: &mut PgConnection,
    parent_task_id: &TaskId,
) -> sqlx::Result<Vec<TaskId>> {
    sqlx::query_scalar(
        "SELECT DISTINCT child_task_id FROM batch_confirm_items
         WHERE parent_task_id = $1 AND result IS NULL AND child_task_id IS NOT NULL
         ORDER BY child_task_id",
    )
    .bind(parent_task_id)
    .fetch_all(conn)
    .await
}
