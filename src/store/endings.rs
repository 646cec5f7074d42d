//! How tasks end: the one statement that ends tasks, and the batch confirmations that follow
//! a confirmation (their items record its result; the parent ends with the last of them).
//!
//! Locks are taken in one order everywhere (upload, then its task, then parent tasks by id),
//! so the transactions that end tasks cannot deadlock with each other.

use std::collections::HashSet;

use serde_json::{json, Value};
use sqlx::PgConnection;

use super::TASK_EVENTS_CHANNEL;
use crate::domain::{TaskId, TaskStatus, UploadId, UploadStatus};

/// How one task ends.
#[derive(Debug, Clone, Copy)]
pub struct TaskEnd<'a> {
    pub task_id: &'a TaskId,
    pub status: TaskStatus,
    pub error: Option<&'a str>,
    pub outputs: &'a Value,
}

/// What ending a confirmation's task does to the batch confirmations following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followers {
    /// Their items record its result, and a batch whose last item it was ends.
    Settle,
    /// Left to the caller: a cancel settles them itself, in its own order.
    Leave,
}

/// Ends those of the tasks that are not terminal yet, tells their waiters (at commit), and
/// with [`Followers::Settle`] records each result on the batch confirmations following it.
/// Returns the ids of the tasks ended now. With more than one task, the caller must hold
/// their row locks already, so that groups never wait on each other in a cycle.
pub async fn end_tasks(
    conn: &mut PgConnection,
    ends: &[TaskEnd<'_>],
    followers: Followers,
) -> sqlx::Result<HashSet<TaskId>> {
    let ended = end_rows(conn, ends).await?;
    let ids: HashSet<TaskId> = ended.iter().map(|(id, _)| id.clone()).collect();
    if followers == Followers::Settle {
        let followed: HashSet<&TaskId> = ended
            .iter()
            .filter(|(_, has_parents)| *has_parents)
            .map(|(id, _)| id)
            .collect();
        let items: Vec<(TaskId, Value)> = ends
            .iter()
            .filter(|end| followed.contains(end.task_id))
            .map(|end| {
                let result = item_result(end.status, end.error, end.outputs);
                (end.task_id.clone(), result)
            })
            .collect();
        let parents = settle(conn, &items).await?;
        finalize_done(conn, &parents).await?;
    }
    Ok(ids)
}

/// Ends one task; true when it ended now.
pub async fn end_task(
    conn: &mut PgConnection,
    end: TaskEnd<'_>,
    followers: Followers,
) -> sqlx::Result<bool> {
    Ok(!end_tasks(conn, &[end], followers).await?.is_empty())
}

/// A permanent failure: the upload (when still processing for this task) and the task end
/// `FAILED` with the error. False when both had already moved on.
pub async fn fail_confirmation(
    conn: &mut PgConnection,
    upload_id: &UploadId,
    end: TaskEnd<'_>,
) -> sqlx::Result<bool> {
    let failed = sqlx::query(
        "UPDATE uploads SET status = $4, error = $3, updated_at = now()
         WHERE id = $1 AND task_id = $2 AND status = $5",
    )
    .bind(upload_id)
    .bind(end.task_id)
    .bind(end.error)
    .bind(UploadStatus::Failed)
    .bind(UploadStatus::Processing)
    .execute(&mut *conn)
    .await?;
    let end = TaskEnd {
        status: TaskStatus::Failed,
        ..end
    };
    let ended = end_task(conn, end, Followers::Settle).await?;
    Ok(failed.rows_affected() == 1 || ended)
}

/// [`fail_confirmation`] in a transaction of its own.
pub async fn fail(
    pool: &sqlx::PgPool,
    upload_id: &UploadId,
    end: TaskEnd<'_>,
) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let ended = fail_confirmation(&mut tx, upload_id, end).await?;
    tx.commit().await?;
    Ok(ended)
}

/// The statement that ends tasks, for every ending: each task not terminal yet takes its
/// status, error and outputs, and its waiters are told. Answers, for each task ended now,
/// whether batch confirmations await its result.
async fn end_rows(
    conn: &mut PgConnection,
    ends: &[TaskEnd<'_>],
) -> sqlx::Result<Vec<(TaskId, bool)>> {
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as(
        "WITH v AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])
                AS v(id, status, error, outputs)
         ), ended AS (
            UPDATE tasks t SET status = v.status, error = v.error, outputs = v.outputs,
                lease_until = NULL, updated_at = now()
            FROM v WHERE t.id = v.id AND t.status = ANY($5)
            RETURNING t.id
         )
         SELECT ended.id,
            EXISTS (SELECT 1 FROM batch_confirm_items WHERE child_task_id = ended.id AND result IS NULL)
         FROM ended, LATERAL (SELECT pg_notify($6, ended.id)) AS told",
    )
    .bind(ends.iter().map(|e| e.task_id).collect::<Vec<_>>())
    .bind(ends.iter().map(|e| e.status).collect::<Vec<_>>())
    .bind(ends.iter().map(|e| e.error).collect::<Vec<_>>())
    .bind(ends.iter().map(|e| e.outputs).collect::<Vec<_>>())
    .bind(&TaskStatus::OPEN[..])
    .bind(TASK_EVENTS_CHANNEL)
    .fetch_all(conn)
    .await
}

/// An item's result from the way its confirmation's task ended.
pub fn item_result(status: TaskStatus, error: Option<&str>, outputs: &Value) -> Value {
    match status {
        TaskStatus::Completed => json!({
            "status": status,
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
            json!({ "status": status, "error": error, "reason": reason })
        }
    }
}

/// Records the ends of these confirmations (task id, item result) on every open item
/// following them; returns the parents touched, locked, in id order. Called in the
/// transaction that ended the children, as late as it can be: a parent's row lock is held
/// to commit, and orders its items' settlements so that exactly one sees the last.
pub async fn settle(
    conn: &mut PgConnection,
    ended: &[(TaskId, Value)],
) -> sqlx::Result<Vec<TaskId>> {
    if ended.is_empty() {
        return Ok(Vec::new());
    }
    let children: Vec<&TaskId> = ended.iter().map(|(t, _)| t).collect();
    // The parents with an item following these, locked in id order whatever order the
    // group's items came in.
    let parents: Vec<TaskId> = sqlx::query_scalar(
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
        "UPDATE tasks SET status = CASE WHEN status = $2 THEN $3 ELSE status END,
            updated_at = now()
         WHERE id = ANY($1)",
    )
    .bind(&parents)
    .bind(TaskStatus::Queued)
    .bind(TaskStatus::InProgress)
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
pub async fn finalize_done(conn: &mut PgConnection, parents: &[TaskId]) -> sqlx::Result<()> {
    if parents.is_empty() {
        return Ok(());
    }
    let done: Vec<TaskId> = sqlx::query_scalar(
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
pub async fn finalize_if_done(
    conn: &mut PgConnection,
    parent_task_id: &TaskId,
) -> sqlx::Result<bool> {
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
    // A batch confirmation is followed by no batch: its ending settles nothing.
    let end = TaskEnd {
        task_id: parent_task_id,
        status,
        error,
        outputs: &outputs,
    };
    Ok(!end_rows(conn, &[end]).await?.is_empty())
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
        assert_eq!(r["status"], "FAILED");
        let done = json!({"object_id": "obj_1", "is_duplicate": false});
        assert_eq!(
            item_result(TaskStatus::Completed, None, &done)["object_id"],
            "obj_1"
        );
    }
}
