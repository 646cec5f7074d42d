//! Batch confirmations: one parent task whose items each follow an ordinary confirmation.
//!
//! Every item's confirmation is its own job, so workers run the items concurrently. When a
//! confirmation ends, the items that follow it record its result (in the transaction that
//! ended it), and the parent ends with the last of them. Locks are taken in one order
//! everywhere (upload, then its task, then parent tasks by id), so these transactions
//! cannot deadlock with each other.

use std::collections::HashMap;

use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};

use super::confirm::end_task;
use super::models::{TaskRow, UploadRow};
use super::outbox;
use super::tasks::{self, NewTask};
use super::uploads::UPLOAD_COLUMNS;
use crate::domain::{new_id, IdKind, TaskStatus, TaskType, UploadStatus};

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
    job_payload: impl Fn(&str, &str) -> Value,
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
    let mut uploads: HashMap<String, UploadRow> =
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

    let mut children = Vec::new();
    let mut item_rows = Vec::with_capacity(items.len());
    for (position, item) in items.iter().enumerate() {
        let upload = uploads
            .get_mut(&item.upload_id)
            .ok_or(sqlx::Error::RowNotFound)?;
        let (child, result) = match UploadStatus::parse(&upload.status) {
            Some(UploadStatus::Completed) => (None, Some(completed_result(upload))),
            Some(UploadStatus::Processing) => (upload.task_id.clone(), None),
            Some(UploadStatus::Pending | UploadStatus::Failed) => {
                let task_id = new_id(IdKind::Task);
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
                upload.status = UploadStatus::Processing.as_str().to_owned();
                upload.task_id = Some(task_id.clone());
                (Some(task_id), None)
            }
            Some(UploadStatus::Canceled) | None => (
                None,
                Some(json!({
                    "status": TaskStatus::Canceled.as_str(),
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

    let children = Value::Array(children);
    sqlx::query(
        "INSERT INTO tasks (id, organization_id, namespace_id, task_type, status, inputs)
         SELECT c.id, $2, $3, $4, 'QUEUED', c.inputs
         FROM jsonb_to_recordset($1) AS c(id text, inputs jsonb)",
    )
    .bind(&children)
    .bind(parent.organization_id)
    .bind(parent.namespace_id)
    .bind(TaskType::UploadConfirm.as_str())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE uploads u SET status = 'PROCESSING', task_id = c.id, error = NULL, updated_at = now()
         FROM jsonb_to_recordset($1) AS c(id text, upload_id text)
         WHERE u.id = c.upload_id",
    )
    .bind(&children)
    .execute(&mut *tx)
    .await?;
    // Bulk jobs: the dispatcher publishes them in fair shares with other namespaces'.
    let queued = sqlx::query(
        "INSERT INTO outbox (exchange, routing_key, message_id, payload, namespace_id)
         SELECT '', $2, c.id, c.payload, $3
         FROM jsonb_to_recordset($1) AS c(id text, payload jsonb)",
    )
    .bind(&children)
    .bind(queue)
    .bind(parent.namespace_id)
    .execute(&mut *tx)
    .await?;
    if queued.rows_affected() > 0 {
        outbox::wake_dispatchers(&mut tx).await?;
    }
    sqlx::query(
        "INSERT INTO batch_confirm_items (parent_task_id, position, upload_id, child_task_id, result)
         SELECT $1, i.position, i.upload_id, i.child_task_id, i.result
         FROM jsonb_to_recordset($2) AS i(position int, upload_id text, child_task_id text, result jsonb)",
    )
    .bind(parent.id)
    .bind(Value::Array(item_rows))
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

fn with_upload_id(mut result: Value, upload_id: &str) -> Value {
    if let Value::Object(map) = &mut result {
        map.insert("upload_id".into(), json!(upload_id));
    }
    result
}

/// An item's result for an upload that is already confirmed.
fn completed_result(u: &UploadRow) -> Value {
    json!({
        "status": TaskStatus::Completed.as_str(),
        "object_id": u.object_id,
        "is_duplicate": u.is_duplicate,
        "duplicate_of_upload_id": u.duplicate_of_upload_id,
        "file_hash": u.file_hash,
    })
}

/// An item's result from the way its confirmation's task ended.
pub fn item_result(status: TaskStatus, error: Option<&str>, outputs: &Value) -> Value {
    match status {
        TaskStatus::Completed => json!({
            "status": status.as_str(),
            "object_id": outputs.get("object_id"),
            "is_duplicate": outputs.get("is_duplicate"),
            "duplicate_of_upload_id": outputs.get("duplicate_of_upload_id"),
            "file_hash": outputs.get("file_hash"),
        }),
        _ => {
            let reason = outputs
                .pointer("/error/details/reason")
                .cloned()
                .unwrap_or(Value::Null);
            json!({ "status": status.as_str(), "error": error, "reason": reason })
        }
    }
}

/// Records the ends of these confirmations (task id, item result) on every open item
/// following them; returns the parents touched, locked, in id order. Called in the
/// transaction that ended the children, as late as it can be: a parent's row lock is held
/// to commit, and orders its items' settlements so that exactly one sees the last.
pub async fn settle(
    conn: &mut PgConnection,
    ended: &[(String, Value)],
) -> sqlx::Result<Vec<String>> {
    if ended.is_empty() {
        return Ok(Vec::new());
    }
    let children: Vec<&str> = ended.iter().map(|(t, _)| t.as_str()).collect();
    // The parents with an item following these, locked in id order whatever order the
    // group's items came in.
    let parents: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM tasks WHERE id IN (
             SELECT parent_task_id FROM batch_confirm_items
             WHERE child_task_id = ANY($1) AND result IS NULL)
         ORDER BY id FOR UPDATE",
    )
    .bind(&children)
    .fetch_all(&mut *conn)
    .await?;
    if parents.is_empty() {
        return Ok(parents);
    }
    sqlx::query(
        "UPDATE tasks SET status = CASE WHEN status = 'QUEUED' THEN 'IN_PROGRESS' ELSE status END,
            updated_at = now()
         WHERE id = ANY($1)",
    )
    .bind(&parents)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE batch_confirm_items i SET result = jsonb_build_object('upload_id', i.upload_id) || v.result
         FROM unnest($1::text[], $2::jsonb[]) AS v(child_task_id, result)
         WHERE i.child_task_id = v.child_task_id AND i.result IS NULL AND i.parent_task_id = ANY($3)",
    )
    .bind(&children)
    .bind(ended.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>())
    .bind(&parents)
    .execute(&mut *conn)
    .await?;
    Ok(parents)
}

/// Ends those of `parents` (locked by [`settle`]) that have no open item left, reading each
/// one's results only then.
pub async fn finalize_done(conn: &mut PgConnection, parents: &[String]) -> sqlx::Result<()> {
    if parents.is_empty() {
        return Ok(());
    }
    let done: Vec<String> = sqlx::query_scalar(
        "SELECT p FROM unnest($1::text[]) AS p
         WHERE NOT EXISTS (SELECT 1 FROM batch_confirm_items WHERE parent_task_id = p AND result IS NULL)
         ORDER BY p",
    )
    .bind(parents)
    .fetch_all(&mut *conn)
    .await?;
    for parent in &done {
        finalize_if_done(conn, parent).await?;
    }
    Ok(())
}

/// Ends the parent when none of its items is open: `COMPLETED` when all succeeded,
/// `FAILED` when none did, `COMPLETED_WITH_ERRORS` otherwise. True when it ended now.
pub async fn finalize_if_done(conn: &mut PgConnection, parent_task_id: &str) -> sqlx::Result<bool> {
    let results: Vec<Option<Value>> = sqlx::query_scalar(
        "SELECT result FROM batch_confirm_items WHERE parent_task_id = $1 ORDER BY position",
    )
    .bind(parent_task_id)
    .fetch_all(&mut *conn)
    .await?;
    if results.iter().any(Option::is_none) {
        return Ok(false);
    }
    let results: Vec<Value> = results.into_iter().flatten().collect();
    let (outputs, status) = summarize(&results);
    let error = (status == TaskStatus::Failed).then_some("every item failed");
    end_task(conn, parent_task_id, status, error, &outputs).await
}

/// The parent's outputs so far, and the status they add up to.
pub fn summarize(results: &[Value]) -> (Value, TaskStatus) {
    let count = |status: TaskStatus| {
        results
            .iter()
            .filter(|r| r["status"] == status.as_str())
            .count()
    };
    let completed = count(TaskStatus::Completed);
    let failed = count(TaskStatus::Failed);
    let canceled = count(TaskStatus::Canceled);
    let duplicates = results
        .iter()
        .filter(|r| r["is_duplicate"] == Value::Bool(true))
        .count();
    let status = if completed == results.len() {
        TaskStatus::Completed
    } else if completed == 0 {
        TaskStatus::Failed
    } else {
        TaskStatus::CompletedWithErrors
    };
    let outputs = json!({
        "results": results,
        "total": results.len(),
        "completed": completed,
        "failed": failed,
        "canceled": canceled,
        "duplicates": duplicates,
    });
    (outputs, status)
}

/// The items' results, open ones shown as pending, for a parent ended early.
pub async fn partial_outputs(conn: &mut PgConnection, parent_task_id: &str) -> sqlx::Result<Value> {
    let results: Vec<Value> = sqlx::query_scalar(
        "SELECT coalesce(result, jsonb_build_object('upload_id', upload_id, 'status', 'CANCELED',
                'error', 'the batch confirmation was canceled'))
         FROM batch_confirm_items WHERE parent_task_id = $1 ORDER BY position",
    )
    .bind(parent_task_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(summarize(&results).0)
}

/// The confirmations a parent's open items follow.
pub async fn open_children(
    conn: &mut PgConnection,
    parent_task_id: &str,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT DISTINCT child_task_id FROM batch_confirm_items
         WHERE parent_task_id = $1 AND result IS NULL AND child_task_id IS NOT NULL
         ORDER BY child_task_id",
    )
    .bind(parent_task_id)
    .fetch_all(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_adds_up_its_items() {
        let ok = json!({"status": "COMPLETED", "is_duplicate": false});
        let dup = json!({"status": "COMPLETED", "is_duplicate": true});
        let bad = json!({"status": "FAILED", "error": "x"});
        let gone = json!({"status": "CANCELED", "error": "y"});
        let (out, status) = summarize(&[ok.clone(), dup.clone()]);
        assert_eq!(status, TaskStatus::Completed);
        assert_eq!(out["duplicates"], 1);
        let (out, status) = summarize(&[ok, bad.clone(), gone.clone()]);
        assert_eq!(status, TaskStatus::CompletedWithErrors);
        assert_eq!(
            (&out["completed"], &out["failed"], &out["canceled"]),
            (&json!(1), &json!(1), &json!(1))
        );
        assert_eq!(summarize(&[bad, gone]).1, TaskStatus::Failed);
    }

    #[test]
    fn failed_items_carry_the_reason() {
        let outputs = json!({"error": {"details": {"reason": "etag_mismatch"}}});
        let r = item_result(TaskStatus::Failed, Some("etag differs"), &outputs);
        assert_eq!(r["reason"], "etag_mismatch");
        assert_eq!(r["error"], "etag differs");
        let done = json!({"object_id": "obj_1", "is_duplicate": false});
        assert_eq!(
            item_result(TaskStatus::Completed, None, &done)["object_id"],
            "obj_1"
        );
    }
}
