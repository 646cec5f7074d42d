//! What each dependency does alone, measured in the same run as the service: the ceilings
//! the service's own figures are compared with.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use futures::{StreamExt, TryStreamExt};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde::Serialize;
use sqlx::PgPool;

use upconfirm::blob::BlobStore;
use upconfirm::queue::{self, ConfirmJob};

/// Operations done and the wall time they took.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rate {
    pub count: usize,
    pub seconds: f64,
    pub per_second: f64,
}

impl Rate {
    pub fn new(count: usize, started: Instant) -> Rate {
        let seconds = started.elapsed().as_secs_f64();
        Rate {
            count,
            seconds,
            per_second: count as f64 / seconds,
        }
    }
}

/// Publish with confirms → consume → ack, with a consumer that does nothing else: `count`
/// messages the size of a confirmation job through a quorum queue like the confirm queue,
/// `in_flight` publishes awaiting their confirm at once, and `prefetch` unacked deliveries.
pub async fn broker(
    amqp_url: &str,
    queue_name: &str,
    count: usize,
    in_flight: usize,
    prefetch: u16,
) -> anyhow::Result<Rate> {
    let publisher = queue::connect(amqp_url, "upconfirm-bench publisher").await?;
    let consumer_conn = queue::connect(amqp_url, "upconfirm-bench consumer").await?;
    let pch = publisher.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    pch.queue_declare(queue_name.into(), durable, args).await?;
    pch.confirm_select(ConfirmSelectOptions::default()).await?;
    let cch = consumer_conn.create_channel().await?;
    cch.basic_qos(prefetch, BasicQosOptions::default()).await?;
    let mut deliveries = cch
        .basic_consume(
            queue_name.into(),
            "upconfirm-bench-ceiling".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let body = serde_json::to_vec(&ConfirmJob {
        task_id: "tsk_0196b4a3c2d47e5f8a9b0c1d2e3f4a5b".into(),
        upload_id: "upl_0196b4a3c2d47e5f8a9b0c1d2e3f4a5b".into(),
        accepted_at: None,
        namespace_id: None,
    })?;

    let started = Instant::now();
    let consumed = tokio::spawn(async move {
        let mut seen = 0;
        while seen < count {
            let delivery = deliveries.next().await.context("the consumer ended")??;
            delivery.ack(BasicAckOptions::default()).await?;
            seen += 1;
        }
        anyhow::Ok(deliveries)
    });
    futures::stream::iter(0..count)
        .map(|_| {
            let pch = pch.clone();
            let body = &body;
            async move {
                let confirm = pch
                    .basic_publish(
                        "".into(),
                        queue_name.into(),
                        BasicPublishOptions::default(),
                        body,
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await?
                    .await?;
                if !confirm.is_ack() {
                    bail!("the broker nacked a message");
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(in_flight)
        .try_collect::<()>()
        .await?;
    let deliveries = consumed.await??;
    let rate = Rate::new(count, started);

    drop(deliveries);
    cch.basic_cancel(
        "upconfirm-bench-ceiling".into(),
        BasicCancelOptions::default(),
    )
    .await?;
    pch.queue_delete(queue_name.into(), QueueDeleteOptions::default())
        .await?;
    publisher.close(200, "done".into()).await.ok();
    consumer_conn.close(200, "done".into()).await.ok();
    Ok(rate)
}

/// HeadObject on each key, `concurrency` at once, through the client the worker uses.
pub async fn head_object(
    blob: &BlobStore,
    keys: &[String],
    concurrency: usize,
) -> anyhow::Result<Rate> {
    let started = Instant::now();
    futures::stream::iter(keys)
        .map(|key| async move { blob.head(key).await.map(drop) })
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await?;
    Ok(Rate::new(keys.len(), started))
}

/// The writes a worker commits for one confirmation, and nothing else: the task marked
/// running (one commit), then the content claim, object, upload and task rows with the task's
/// notification, and the usage ledger's row, in the worker's order (a second commit). They
/// go to copies of the service's tables (same columns, defaults, indexes) in a scratch
/// schema, filled beforehand with the uploads and tasks of `bucket_id`, so that no read,
/// check or lookup of the service runs.
pub async fn database(pool: &PgPool, bucket_id: &str, concurrency: usize) -> anyhow::Result<Rate> {
    create_scratch(pool, bucket_id).await?;
    let rows: Vec<ScratchUpload> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, task_id, namespace_id, coalesce(file_size_bytes, 0), coalesce(file_hash, id), s3_key
         FROM {SCHEMA}.uploads"
    )))
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        bail!("no uploads in bucket {bucket_id} to copy");
    }

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let runners = (0..concurrency).map(|_| {
        let next = next.clone();
        let rows = &rows;
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(row) = rows.get(i) else {
                    return anyhow::Ok(());
                };
                confirm_in_scratch(pool, bucket_id, row).await?;
            }
        }
    });
    futures::future::try_join_all(runners).await?;
    let rate = Rate::new(rows.len(), started);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {SCHEMA} CASCADE")))
        .execute(pool)
        .await?;
    Ok(rate)
}

/// The scratch schema of the database ceiling.
const SCHEMA: &str = "bench_ceiling";

/// An upload of the scratch schema: its id, task, namespace, size, content hash and S3 key.
type ScratchUpload = (String, String, String, i64, String, String);

/// The scratch schema made afresh, its tables copies of the service's, holding the uploads
/// of `bucket_id` as not yet confirmed, their tasks as queued, and their namespace.
async fn create_scratch(pool: &PgPool, bucket_id: &str) -> anyhow::Result<()> {
    let mut setup = pool.begin().await?;
    for stmt in [
        format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"),
        format!("CREATE SCHEMA {SCHEMA}"),
        format!("CREATE TABLE {SCHEMA}.tasks (LIKE public.tasks INCLUDING ALL)"),
        format!("CREATE TABLE {SCHEMA}.uploads (LIKE public.uploads INCLUDING ALL)"),
        format!("CREATE TABLE {SCHEMA}.objects (LIKE public.objects INCLUDING ALL)"),
        format!(
            "CREATE TABLE {SCHEMA}.bucket_contents (LIKE public.bucket_contents INCLUDING ALL)"
        ),
        format!("CREATE TABLE {SCHEMA}.namespaces (LIKE public.namespaces INCLUDING ALL)"),
        format!(
            "CREATE TABLE {SCHEMA}.namespace_usage (LIKE public.namespace_usage INCLUDING ALL)"
        ),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(stmt))
            .execute(&mut *setup)
            .await?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {SCHEMA}.uploads SELECT * FROM public.uploads WHERE bucket_id = $1"
    )))
    .bind(bucket_id)
    .execute(&mut *setup)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {SCHEMA}.uploads SET status = 'PROCESSING', object_id = NULL, completed_at = NULL"
    )))
    .execute(&mut *setup)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {SCHEMA}.tasks SELECT t.* FROM public.tasks t JOIN public.uploads u ON u.task_id = t.id
         WHERE u.bucket_id = $1"
    )))
    .bind(bucket_id)
    .execute(&mut *setup)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {SCHEMA}.tasks SET status = 'QUEUED', outputs = NULL"
    )))
    .execute(&mut *setup)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {SCHEMA}.namespaces SELECT n.* FROM public.namespaces n
         JOIN public.buckets b ON b.namespace_id = n.id WHERE b.id = $1"
    )))
    .bind(bucket_id)
    .execute(&mut *setup)
    .await?;
    setup.commit().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ANALYZE {SCHEMA}.uploads, {SCHEMA}.tasks"
    )))
    .execute(pool)
    .await?;
    Ok(())
}

/// One confirmation's writes, as the worker commits them, to the scratch schema.
async fn confirm_in_scratch(
    pool: &PgPool,
    bucket_id: &str,
    (upload, task, namespace, size, hash, key): &ScratchUpload,
) -> anyhow::Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {SCHEMA}.tasks SET status = 'IN_PROGRESS', attempts = attempts + 1, updated_at = now() WHERE id = $1"
    )))
    .bind(task)
    .execute(pool)
    .await?;
    let object = format!("obj_{}", uuid::Uuid::now_v7().simple());
    let mut tx = pool.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {SCHEMA}.bucket_contents (bucket_id, content_hash, upload_id, object_id) VALUES ($1, $2, $3, $4)"
    )))
    .bind(bucket_id)
    .bind(hash)
    .bind(upload)
    .bind(&object)
    .execute(&mut *tx)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {SCHEMA}.objects (id, bucket_id, namespace_id, upload_id, blobs, status)
         VALUES ($1, $2, $3, $4, $5, 'ACTIVE')"
    )))
    .bind(&object)
    .bind(bucket_id)
    .bind(namespace)
    .bind(upload)
    .bind(serde_json::json!([{ "s3_key": key, "size_bytes": size, "file_hash": hash }]))
    .execute(&mut *tx)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {SCHEMA}.uploads SET status = 'COMPLETED', verified_at = now(), completed_at = now(),
            updated_at = now(), file_hash = $2, object_id = $3 WHERE id = $1"
    )))
    .bind(upload)
    .bind(hash)
    .bind(&object)
    .execute(&mut *tx)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH ended AS (
            UPDATE {SCHEMA}.tasks SET status = 'COMPLETED', outputs = $2, updated_at = now()
            WHERE id = $1 RETURNING id
         ) SELECT pg_notify('upconfirm_bench_ceiling', id) FROM ended"
    )))
    .bind(task)
    .bind(serde_json::json!({ "upload_id": upload, "object_id": object, "file_hash": hash }))
    .execute(&mut *tx)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {SCHEMA}.namespace_usage (namespace_id, bytes)
         SELECT id, $2 FROM {SCHEMA}.namespaces WHERE id = $1 AND storage_quota_bytes IS NULL"
    )))
    .bind(namespace)
    .bind(size)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// GetObject of one key, read to the end and thrown away: the store's bare read throughput.
pub async fn get_object(blob: &BlobStore, key: &str) -> anyhow::Result<Rate> {
    let started = Instant::now();
    let bytes = blob.read_discarding(key).await?;
    Ok(Rate::new(bytes as usize, started))
}

/// `sha256sum` of a local file: its digest and its throughput (best of `runs`).
pub async fn sha256sum(path: &std::path::Path, runs: usize) -> anyhow::Result<(String, Rate)> {
    let size = std::fs::metadata(path)?.len() as usize;
    let mut best: Option<(String, Rate)> = None;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let out = tokio::process::Command::new("sha256sum")
            .arg(path)
            .output()
            .await
            .context("running sha256sum")?;
        let rate = Rate::new(size, started);
        if !out.status.success() {
            bail!("sha256sum failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let digest = String::from_utf8(out.stdout)?
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        if best
            .as_ref()
            .is_none_or(|(_, b)| rate.per_second > b.per_second)
        {
            best = Some((digest, rate));
        }
    }
    best.context("no sha256sum run")
}
