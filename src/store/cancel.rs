//! Canceling tasks: a canceled confirmation's job changes nothing when it runs.

use serde_json::json;
use sqlx::{PgConnection, PgPool};

use super::batch_confirm;
use super::endings::{self, end_task, Followers, TaskEnd};
use super::models::TaskRow;
use super::tasks;
use crate::domain::{TaskId, TaskStatus, TaskType, UploadStatus};

const CANCELED_ERROR: &str = "canceled by request";

/// How a cancel request ended.
#[derive(Debug)]
pub enum CancelOutcome {
    /// The task was running or waiting and is `CANCELED` now.
    Canceled(TaskRow),
    /// It had been canceled before; nothing changed.
    AlreadyCanceled(TaskRow),
    /// It had already ended otherwise; nothing changed.
    Terminal(TaskRow),
    NotFound,
}

/// Cancels a task of the organization. A confirmation's upload returns to `PENDING`, so it
/// can be confirmed again; a batch confirmation cancels its open items' confirmations.
pub async fn cancel_task(
    pool: &PgPool,
    organization_id: &str,
    task_id: &TaskId,
) -> sqlx::Result<CancelOutcome> {
    let Some(task) = tasks::find_for_organization(pool, organization_id, task_id).await? else {
        return Ok(CancelOutcome::NotFound);
    };
    let mut tx = pool.begin().await?;
    let mut touched = Vec::new();
    let ended = if task.task_type == TaskType::UploadBatchConfirm {
        let children = batch_confirm::open_children(&mut tx, task_id).await?;
        // Uploads first, as a finishing confirmation locks them.
        sqlx::query(
            "SELECT id FROM uploads WHERE task_id = ANY($1) AND status = $2
             ORDER BY id FOR UPDATE",
        )
        .bind(&children)
        .bind(UploadStatus::Processing)
        .execute(&mut *tx)
        .await?;
        for child in &children {
            touched.extend(
                cancel_confirmation(&mut tx, child)
                    .await?
                    .unwrap_or_default(),
            );
        }
        let outputs = batch_confirm::partial_outputs(&mut tx, task_id).await?;
        let end = TaskEnd {
            task_id,
            status: TaskStatus::Canceled,
            error: Some(CANCELED_ERROR),
            outputs: &outputs,
        };
        end_task(&mut tx, end, Followers::Leave).await?
    } else {
        let parents = cancel_confirmation(&mut tx, task_id).await?;
        let ended = parents.is_some();
        touched.extend(parents.unwrap_or_default());
        ended
    };
    touched.sort();
    touched.dedup();
    for parent in touched.iter().filter(|p| *p != task_id) {
        endings::finalize_if_done(&mut tx, parent).await?;
    }
    let current = tasks::find_in(&mut tx, task_id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    tx.commit().await?;
    let was_canceled = task.status == TaskStatus::Canceled;
    Ok(match current.status {
        TaskStatus::Canceled if ended && !was_canceled => CancelOutcome::Canceled(current),
        TaskStatus::Canceled => CancelOutcome::AlreadyCanceled(current),
        _ => CancelOutcome::Terminal(current),
    })
}

/// Cancels one confirmation task: its upload back to `PENDING`, the task `CANCELED`, and the
/// batch items following it settled. Returns the batch confirmations touched, or `None` (and
/// no change) when the task had already ended.
async fn cancel_confirmation(
    conn: &mut PgConnection,
    task_id: &TaskId,
) -> sqlx::Result<Option<Vec<TaskId>>> {
    sqlx::query(
        "UPDATE uploads SET status = $2, updated_at = now(),
            message = 'The confirmation was canceled; the upload can be confirmed again'
         WHERE task_id = $1 AND status = $3",
    )
    .bind(task_id)
    .bind(UploadStatus::Pending)
    .bind(UploadStatus::Processing)
    .execute(&mut *conn)
    .await?;
    let outputs = json!({ "status": TaskStatus::Canceled, "error": CANCELED_ERROR });
    let end = TaskEnd {
        task_id,
        status: TaskStatus::Canceled,
        error: Some(CANCELED_ERROR),
        outputs: &outputs,
    };
    // Its followers are settled below, once the job is out of the outbox; their parents
    // end after every child of this cancel is settled.
    if !end_task(conn, end, Followers::Leave).await? {
        return Ok(None);
    }
    // A bulk job still waiting for the dispatcher goes with its task (one already handed
    // to the broker finds the task canceled and does nothing).
    sqlx::query("DELETE FROM outbox WHERE message_id = $1 AND namespace_id IS NOT NULL")
        .bind(task_id)
        .execute(&mut *conn)
        .await?;
    let result = endings::item_result(TaskStatus::Canceled, Some(CANCELED_ERROR), &outputs);
    endings::settle(conn, &[(task_id.clone(), result)])
        .await
        .map(Some)
}
