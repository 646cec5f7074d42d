//! The start of a job's run: its task `IN_PROGRESS`, and what the run reads.

use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgPool, Row};

use super::models::{NamespaceRow, UploadRow};
use super::tenancy::NAMESPACE_COLUMNS;
use super::uploads::UPLOAD_COLUMNS_OF_U;
use crate::domain::{NamespaceId, TaskId, TaskStatus, UploadId};

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

/// One job to start: its task and the upload it confirms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    pub task_id: TaskId,
    pub upload_id: UploadId,
}

/// Marks each job's task `IN_PROGRESS` when a worker may (re)start it, counting the attempt,
/// and reads the upload and its namespace, for several jobs in one statement and one commit:
/// one result per job, in their order. The tasks are locked in id order, so that groups
/// never wait in a cycle. A task named twice is started once, for both.
pub async fn start(pool: &PgPool, jobs: &[JobRef]) -> sqlx::Result<Vec<Start>> {
    let rows: Vec<PgRow> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH job AS (
            SELECT * FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS j(task_id, upload_id, ord)
         ), startable AS (
            SELECT id FROM tasks WHERE id = ANY($1) AND status = ANY($3)
            ORDER BY id FOR UPDATE
         ), started AS (
            UPDATE tasks SET status = $4, attempts = attempts + 1, updated_at = now()
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
    .bind(jobs.iter().map(|j| j.task_id.as_str()).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.upload_id.as_str()).collect::<Vec<_>>())
    .bind(&TaskStatus::OPEN[..])
    .bind(TaskStatus::InProgress)
    .fetch_all(pool)
    .await?;
    rows.iter().map(started_job).collect()
}

/// One row of [`start`].
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
    let namespace = match row.try_get::<Option<NamespaceId>, _>("ns_id")? {
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
