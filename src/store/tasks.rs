//! Task rows: what clients poll.

use std::time::Duration;

use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};

use super::filter::Condition;
use super::models::TaskRow;
use super::TASK_EVENTS_CHANNEL;
use crate::domain::{NamespaceId, OrganizationId, TaskId, TaskStatus, TaskType};

const TASK_COLUMNS: &str = "id, organization_id, namespace_id, task_type, status, inputs, outputs, additional_data, error, progress, attempts, created_at, updated_at";

#[derive(Debug, Clone)]
pub struct NewTask<'a> {
    pub id: &'a TaskId,
    pub organization_id: &'a OrganizationId,
    pub namespace_id: &'a NamespaceId,
    pub task_type: TaskType,
    pub status: TaskStatus,
    pub inputs: &'a Value,
    pub outputs: Option<&'a Value>,
}

pub async fn insert(conn: &mut PgConnection, t: &NewTask<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO tasks (id, organization_id, namespace_id, task_type, status, inputs, outputs)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(t.id)
    .bind(t.organization_id)
    .bind(t.namespace_id)
    .bind(t.task_type)
    .bind(t.status)
    .bind(t.inputs)
    .bind(t.outputs)
    .execute(conn)
    .await
    .map(drop)
}

pub async fn find(pool: &PgPool, task_id: &str) -> sqlx::Result<Option<TaskRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"
    )))
    .bind(task_id)
    .fetch_optional(pool)
    .await
}

pub async fn find_in(conn: &mut PgConnection, task_id: &str) -> sqlx::Result<Option<TaskRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"
    )))
    .bind(task_id)
    .fetch_optional(conn)
    .await
}

/// A page of the organization's tasks that `filter` selects, newest first, and how many
/// it selects.
pub async fn list(
    pool: &PgPool,
    organization_id: &str,
    filter: &Condition,
    oldest_first: bool,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<TaskRow>, i64)> {
    let direction = if oldest_first { "ASC" } else { "DESC" };
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE organization_id = "
    ));
    qb.push_bind(organization_id.to_owned()).push(" AND ");
    filter.push_sql(&mut qb);
    qb.push(format!(
        " ORDER BY created_at {direction}, id {direction} LIMIT "
    ))
    .push_bind(limit)
    .push(" OFFSET ")
    .push_bind(offset);
    let rows = qb.build_query_as().fetch_all(pool).await?;
    let mut qb =
        QueryBuilder::<Postgres>::new("SELECT count(*) FROM tasks WHERE organization_id = ");
    qb.push_bind(organization_id.to_owned()).push(" AND ");
    filter.push_sql(&mut qb);
    let total = qb.build_query_scalar().fetch_one(pool).await?;
    Ok((rows, total))
}

/// A task as its organization sees it; another organization's task does not exist.
pub async fn find_for_organization(
    pool: &PgPool,
    organization_id: &str,
    task_id: &str,
) -> sqlx::Result<Option<TaskRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1 AND organization_id = $2"
    )))
    .bind(task_id)
    .bind(organization_id)
    .fetch_optional(pool)
    .await
}

/// Holds a running task for `lease` more: the job's message is settled with the broker,
/// and until the lease lapses no one puts the job back on the queue. False when the task
/// is no longer running.
pub async fn hold_lease(pool: &PgPool, task_id: &TaskId, lease: Duration) -> sqlx::Result<bool> {
    let held = sqlx::query(
        "UPDATE tasks SET lease_until = now() + make_interval(secs => $2)
         WHERE id = $1 AND status = $3",
    )
    .bind(task_id)
    .bind(lease.as_secs_f64())
    .bind(TaskStatus::InProgress)
    .execute(pool)
    .await?;
    Ok(held.rows_affected() == 1)
}

/// A running task's attempt failed for now: `INTERRUPTED`, with the error, until its job
/// is delivered again.
pub async fn interrupt(pool: &PgPool, task_id: &TaskId, error: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE tasks SET status = $2, error = $3, updated_at = now()
         WHERE id = $1 AND status = $4",
    )
    .bind(task_id)
    .bind(TaskStatus::Interrupted)
    .bind(error)
    .bind(TaskStatus::InProgress)
    .execute(pool)
    .await
    .map(drop)
}

/// Records hashing progress and tells waiters, who may switch to the async answer.
pub async fn set_progress(pool: &PgPool, task_id: &TaskId, progress: &Value) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE tasks SET progress = $2, updated_at = now()
         WHERE id = $1 AND status = $3",
    )
    .bind(task_id)
    .bind(progress)
    .bind(TaskStatus::InProgress)
    .execute(&mut *tx)
    .await?;
    notify(&mut tx, task_id).await?;
    tx.commit().await
}

/// Announces a change of the task, delivered when the surrounding transaction commits.
pub async fn notify(conn: &mut PgConnection, task_id: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(TASK_EVENTS_CHANNEL)
        .bind(task_id)
        .execute(conn)
        .await
        .map(drop)
}
