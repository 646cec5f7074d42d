//! Confirmations the queue gave up on: failed with their last error, listed, replayed;
//! and long jobs whose lease lapsed, put back on the queue.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgConnection, PgPool};

use super::completion::TaskOutputs;
use super::endings::{fail_confirmation, TaskEnd};
use super::outbox::{self, OutboxMessage};
use crate::domain::{Failure, TaskId, TaskStatus, UploadId, UploadStatus};

/// What became of a dead-lettered job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadOutcome {
    /// Its task and upload are now `FAILED`, and the dead letter is on record.
    Failed,
    /// Its task had ended already (a late copy of a finished job): nothing changed.
    AlreadyEnded,
    /// No such task: nothing this service accepted.
    UnknownTask,
}

/// One recorded dead letter, as `admin dlq list` shows it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct DeadLetterRow {
    pub id: i64,
    pub task_id: TaskId,
    pub upload_id: UploadId,
    pub reason: String,
    pub error: String,
    /// Attempts the task had when it was given up.
    pub attempts: i32,
    pub dead_lettered_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
}

/// Why the service gave up on a job, as its task's error says it.
pub fn given_up_error(reason: &str, attempts: i32, last_error: Option<&str>) -> String {
    let last = last_error.unwrap_or("none recorded: the worker holding it was lost");
    format!(
        "the confirmation was given up after {attempts} attempt(s) ({reason}); last error: {last}"
    )
}

/// Fails the task of a dead-lettered job (and its upload) with the last error it recorded.
pub async fn fail_dead(
    pool: &PgPool,
    task_id: &TaskId,
    upload_id: &UploadId,
    reason: &str,
    outputs: &TaskOutputs,
) -> sqlx::Result<DeadOutcome> {
    let mut tx = pool.begin().await?;
    let outcome = fail_dead_in(&mut tx, task_id, upload_id, reason, outputs).await?;
    tx.commit().await?;
    Ok(outcome)
}

async fn fail_dead_in(
    conn: &mut PgConnection,
    task_id: &TaskId,
    upload_id: &UploadId,
    reason: &str,
    outputs: &TaskOutputs,
) -> sqlx::Result<DeadOutcome> {
    let task: Option<(TaskStatus, Option<String>, i32)> =
        sqlx::query_as("SELECT status, error, attempts FROM tasks WHERE id = $1 FOR UPDATE")
            .bind(task_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((status, last_error, attempts)) = task else {
        return Ok(DeadOutcome::UnknownTask);
    };
    if status.is_terminal() {
        return Ok(DeadOutcome::AlreadyEnded);
    }
    let error = given_up_error(reason, attempts, last_error.as_deref());
    let outputs = (outputs.failed)(upload_id, &Failure::GivenUp(error.clone()));
    let end = TaskEnd {
        task_id,
        status: TaskStatus::Failed,
        error: Some(&error),
        outputs: &outputs,
    };
    fail_confirmation(conn, upload_id, end).await?;
    sqlx::query(
        "INSERT INTO dead_letters (task_id, upload_id, reason, error, attempts)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (task_id) WHERE replayed_at IS NULL DO NOTHING",
    )
    .bind(task_id)
    .bind(upload_id)
    .bind(reason)
    .bind(&error)
    .bind(attempts)
    .execute(&mut *conn)
    .await?;
    Ok(DeadOutcome::Failed)
}

/// Dead letters not replayed yet, oldest first.
pub async fn list_open(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<DeadLetterRow>> {
    sqlx::query_as(
        "SELECT id, task_id, upload_id, reason, error, attempts, dead_lettered_at, replayed_at
         FROM dead_letters WHERE replayed_at IS NULL ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// What a replay did with one dead letter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Replayed {
    pub task_id: TaskId,
    pub upload_id: UploadId,
    /// False when the upload or task had moved on since, so nothing was queued.
    pub queued: bool,
}

/// Puts dead-lettered confirmations back on the queue (one task, or all of them): the
/// task and upload go back to where an accepted confirmation starts, and the job goes
/// to the outbox in the same transaction, for the relay to publish.
pub async fn replay(
    pool: &PgPool,
    task_id: Option<&str>,
    confirm_queue: &str,
) -> sqlx::Result<Vec<Replayed>> {
    let mut tx = pool.begin().await?;
    let open: Vec<(i64, TaskId, UploadId)> = sqlx::query_as(
        "SELECT id, task_id, upload_id FROM dead_letters
         WHERE replayed_at IS NULL AND ($1::text IS NULL OR task_id = $1)
         ORDER BY id FOR UPDATE SKIP LOCKED",
    )
    .bind(task_id)
    .fetch_all(&mut *tx)
    .await?;
    let mut replayed = Vec::with_capacity(open.len());
    for (id, task_id, upload_id) in open {
        let task = sqlx::query(
            "UPDATE tasks SET status = $2, error = NULL, outputs = NULL, progress = NULL,
                              attempts = 0, lease_until = NULL, updated_at = now()
             WHERE id = $1 AND status = $3",
        )
        .bind(&task_id)
        .bind(TaskStatus::Queued)
        .bind(TaskStatus::Failed)
        .execute(&mut *tx)
        .await?;
        let upload = sqlx::query(
            "UPDATE uploads SET status = $3, error = NULL, updated_at = now()
             WHERE id = $1 AND task_id = $2 AND status = $4",
        )
        .bind(&upload_id)
        .bind(&task_id)
        .bind(UploadStatus::Processing)
        .bind(UploadStatus::Failed)
        .execute(&mut *tx)
        .await?;
        let queued = task.rows_affected() == 1 && upload.rows_affected() == 1;
        if queued {
            enqueue(&mut tx, confirm_queue, &task_id, &upload_id).await?;
        }
        sqlx::query("UPDATE dead_letters SET replayed_at = now() WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        replayed.push(Replayed {
            task_id,
            upload_id,
            queued,
        });
    }
    tx.commit().await?;
    Ok(replayed)
}

/// Writes a confirmation job to the outbox.
async fn enqueue(
    conn: &mut PgConnection,
    confirm_queue: &str,
    task_id: &TaskId,
    upload_id: &UploadId,
) -> sqlx::Result<()> {
    let payload = json!({ "task_id": task_id, "upload_id": upload_id });
    outbox::insert(
        conn,
        &OutboxMessage {
            exchange: "",
            routing_key: confirm_queue,
            message_id: task_id,
            payload: &payload,
            namespace_id: None,
        },
    )
    .await
    .map(drop)
}

/// What one pass over lapsed leases did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Lapsed {
    pub requeued: usize,
    pub failed: usize,
}

/// Puts back on the queue the long jobs whose worker stopped renewing their lease; a
/// job that already used `max_attempts` is failed and dead-lettered instead. Rows are
/// claimed with SKIP LOCKED, so every worker may run this at once.
pub async fn requeue_lapsed(
    pool: &PgPool,
    confirm_queue: &str,
    max_attempts: i32,
    limit: i64,
    outputs: &TaskOutputs,
) -> sqlx::Result<Lapsed> {
    let mut tx = pool.begin().await?;
    let rows: Vec<(TaskId, i32, Option<UploadId>)> = sqlx::query_as(
        "SELECT t.id, t.attempts, u.id FROM tasks t
         LEFT JOIN uploads u ON u.task_id = t.id AND u.status = $2
         WHERE t.lease_until < now() AND t.status = ANY($3)
         ORDER BY t.lease_until LIMIT $1
         FOR UPDATE OF t SKIP LOCKED",
    )
    .bind(limit)
    .bind(UploadStatus::Processing)
    .bind(&TaskStatus::OPEN[..])
    .fetch_all(&mut *tx)
    .await?;
    let mut done = Lapsed::default();
    for (task_id, attempts, upload_id) in rows {
        sqlx::query("UPDATE tasks SET lease_until = NULL WHERE id = $1")
            .bind(&task_id)
            .execute(&mut *tx)
            .await?;
        let Some(upload_id) = upload_id else {
            continue;
        };
        if attempts >= max_attempts {
            fail_dead_in(&mut tx, &task_id, &upload_id, "lease_lapsed", outputs).await?;
            done.failed += 1;
        } else {
            enqueue(&mut tx, confirm_queue, &task_id, &upload_id).await?;
            done.requeued += 1;
        }
    }
    tx.commit().await?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_given_up_error_names_the_reason_and_the_last_error() {
        let e = given_up_error("delivery_limit", 5, Some("storage: timeout"));
        assert!(
            e.contains("5 attempt(s)") && e.contains("delivery_limit"),
            "{e}"
        );
        assert!(e.ends_with("storage: timeout"), "{e}");
        let lost = given_up_error("delivery_limit", 2, None);
        assert!(lost.contains("lost"), "{lost}");
    }
}
