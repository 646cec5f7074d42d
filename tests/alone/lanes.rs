//! Bulk never blocks interactive: a namespace flooded with bulk confirmations does not
//! hold up another namespace's sync confirms (the interactive lane) nor its async ones
//! (fair shares); a namespace's waiting bulk work is capped with a clear 429.

use std::time::Duration;

use futures::{stream, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::common::{assert_error, random_bytes, send, str_field, TestApp, API_ONLY};
use upconfirm::service::startup::Components;

/// A relay alone (it dispatches too).
const RELAY_ONLY: Components = Components {
    api: false,
    worker: false,
    relay: true,
};

/// Uploads created in namespace A and never PUT: each bulk confirmation of them runs the
/// whole queue path and fails `object_not_found`, which is all a flood needs.
const FLOOD: usize = 6_000;

/// A second namespace of the app's organization, and a bucket in it.
struct Other {
    namespace: String,
    bucket: String,
}

impl Other {
    async fn create(app: &TestApp, tag: &str) -> Other {
        let namespace = format!(
            "ns-{tag}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        upconfirm::cli::admin::create_namespace(&app.pool, &app.org_id, &namespace)
            .await
            .expect("create namespace");
        let bucket = crate::common::bucket_name(tag);
        let other = Other { namespace, bucket };
        let (status, body) = send(
            other
                .request(app, Method::POST, "/v1/buckets")
                .json(&json!({ "bucket_name": other.bucket })),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        other
    }

    fn request(&self, app: &TestApp, method: Method, path: &str) -> reqwest::RequestBuilder {
        app.request_as(method, path, Some(&app.api_key), Some(&self.namespace))
    }

    /// An upload of `bytes`, PUT to its presigned URL.
    async fn upload(&self, app: &TestApp, bytes: &[u8]) -> String {
        let (status, created) = send(
            self.request(
                app,
                Method::POST,
                &format!("/v1/buckets/{}/uploads", self.bucket),
            )
            .json(&json!({ "filename": "b.bin", "content_type": "application/octet-stream" })),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let url = str_field(&created, "presigned_url");
        let put = app
            .client
            .put(url)
            .header("Content-Type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PUT");
        assert!(put.status().is_success(), "PUT: {}", put.status());
        str_field(&created, "upload_id").to_owned()
    }

    async fn confirm(&self, app: &TestApp, upload_id: &str, query: &str) -> (StatusCode, Value) {
        send(
            self.request(
                app,
                Method::POST,
                &format!(
                    "/v1/buckets/{}/uploads/{upload_id}/confirm{query}",
                    self.bucket
                ),
            )
            .json(&json!({})),
        )
        .await
    }
}

/// `n` uploads in the app's own namespace, created 100 at a time, nothing PUT.
async fn pending_uploads(app: &TestApp, bucket: &str, n: usize) -> Vec<String> {
    let batches: Vec<Vec<String>> = stream::iter(0..n.div_ceil(100))
        .map(|chunk| async move {
            let items: Vec<Value> = (0..100)
                .map(|i| json!({ "filename": format!("a{chunk}-{i}.bin"), "content_type": "application/octet-stream" }))
                .collect();
            let (status, body) = send(
                app.post(&format!("/v1/buckets/{bucket}/uploads/batch"))
                    .json(&json!({ "uploads": items })),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["uploads"]
                .as_array()
                .expect("uploads")
                .iter()
                .map(|u| str_field(u, "upload_id").to_owned())
                .collect()
        })
        .buffer_unordered(4)
        .collect()
        .await;
    batches.into_iter().flatten().take(n).collect()
}

/// Namespace A's confirmations not yet ended.
async fn open_in(app: &TestApp, namespace_id: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM tasks WHERE namespace_id = $1 AND task_type = 'api_buckets_uploads_confirm'
         AND status IN ('QUEUED', 'IN_PROGRESS')",
    )
    .bind(namespace_id)
    .fetch_one(&app.pool)
    .await
    .expect("count open tasks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooded_namespace_holds_up_neither_sync_nor_async_confirms_of_another() {
    let _alone = crate::ALONE.lock().await;
    // One worker with few slots, so namespace A's flood takes a while to drain; a sync
    // confirm waits at most 2 s before it answers with the async form.
    let app = TestApp::spawn_with(|c| {
        c.worker.worker_concurrency = 4;
        c.worker.worker_interactive_concurrency = 2;
        c.api.sync_wait_ms = 2_000;
        c.database.database_max_connections = 20;
    })
    .await;
    // Two more relays besides the app's own: the dispatcher's turn passes between them.
    let relays = [
        app.start_more(RELAY_ONLY).await,
        app.start_more(RELAY_ONLY).await,
    ];
    let flooded = crate::common::bucket_name("lanes-a");
    app.create_bucket(&flooded).await;
    let b = Other::create(&app, "lanes-b").await;
    let b_sync = b.upload(&app, &random_bytes(64 * 1024)).await;
    let b_async = b.upload(&app, &random_bytes(64 * 1024)).await;

    let ids = pending_uploads(&app, &flooded, FLOOD).await;
    let chunks: Vec<&[String]> = ids.chunks(100).collect();
    let parents: Vec<String> = stream::iter(chunks)
        .map(|chunk| {
            let app = &app;
            let flooded = &flooded;
            async move {
                let (status, body) = app.batch_confirm_ids(flooded, chunk).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                str_field(&body, "task_id").to_owned()
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let backlog_before = open_in(&app, &app.namespace_id).await;
    assert!(
        backlog_before > (FLOOD / 2) as i64,
        "namespace A's flood is still mostly open: {backlog_before}"
    );

    // The backlog shows where it waits: in the outbox, under A's namespace.
    let series = format!(
        r#"upconfirm_namespace_backlog{{namespace="{}"}}"#,
        app.namespace_id
    );
    crate::common::wait_for("the backlog gauges", Duration::from_secs(10), || async {
        app.metric(&series).await > 1_000.0
            && app
                .metric(r#"upconfirm_lane_backlog{lane="bulk",stage="waiting"}"#)
                .await
                > 1_000.0
    })
    .await;

    // B waits on a sync confirm: it runs on the interactive lane, whatever A has queued.
    let started = Instant::now();
    let (status, body) = b.confirm(&app, &b_sync, "").await;
    let sync_took = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["status"], "COMPLETED",
        "a sync confirm completes, not the async form, during another namespace's flood: {body}"
    );
    let backlog_at_sync = open_in(&app, &app.namespace_id).await;
    assert!(
        backlog_at_sync > 1_000,
        "A's backlog was still large when B's sync confirm completed: {backlog_at_sync}"
    );

    // B's async confirm goes on the bulk lane, behind no more than a queue's depth of A's.
    let (status, accepted) = b.confirm(&app, &b_async, "?async=true").await;
    assert_eq!(status, StatusCode::OK, "{accepted}");
    let task_id = str_field(&accepted, "task_id").to_owned();
    let async_started = Instant::now();
    let task = loop {
        let (status, task) =
            send(b.request(&app, Method::GET, &format!("/v1/tasks/{task_id}"))).await;
        assert_eq!(status, StatusCode::OK, "{task}");
        if crate::common::TERMINAL.contains(&task["status"].as_str().unwrap_or_default()) {
            break task;
        }
        assert!(
            async_started.elapsed() < Duration::from_secs(60),
            "B's async confirm did not end: {task}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let async_took = async_started.elapsed();
    assert_eq!(task["status"], "COMPLETED", "{task}");
    let backlog_at_async = open_in(&app, &app.namespace_id).await;
    assert!(
        backlog_at_async > 0,
        "B's async confirm completed before A's backlog drained"
    );
    let line = format!(
        "lanes: A open {backlog_before} → {backlog_at_sync} at B's sync ({:.0} ms) → {backlog_at_async} at B's async ({:.0} ms)\n",
        sync_took.as_secs_f64() * 1e3,
        async_took.as_secs_f64() * 1e3
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());

    // Every one of A's confirmations still ends, exactly once.
    let deadline = Instant::now() + Duration::from_secs(120);
    while open_in(&app, &app.namespace_id).await > 0 {
        assert!(Instant::now() < deadline, "A's flood did not drain");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM uploads WHERE id = ANY($1) AND status = 'FAILED'")
            .bind(&ids)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(failed, FLOOD as i64, "each of A's confirmations ended once");
    // Each batch ended once its last item did, with every item's result, although its
    // items ended in many groups, some at the same time.
    let ended: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT status, (outputs->>'total')::bigint, (outputs->>'failed')::bigint
         FROM tasks WHERE id = ANY($1)",
    )
    .bind(&parents)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(ended.len(), parents.len());
    for (status, total, failed) in &ended {
        assert_eq!(
            (status.as_str(), *total, *failed),
            ("FAILED", 100, 100),
            "a batch of 100 whose items all failed"
        );
    }
    // Jobs delivered for the first time, as this process's worker counted them: A's and
    // B's one async confirm, each handed to the broker once, whichever relay had the turn.
    let delivered = app
        .metric(r#"upconfirm_job_queue_seconds_count{lane="bulk"}"#)
        .await;
    assert_eq!(
        delivered,
        (FLOOD + 1) as f64,
        "no bulk job was dispatched twice"
    );
    for relay in relays {
        relay.shutdown().await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_namespace_past_its_backlog_cap_is_told_to_retry() {
    let _alone = crate::ALONE.lock().await;
    // No worker: bulk jobs stay queued. The dispatcher hands 8 to the broker; the rest
    // wait in the outbox, where the cap counts them.
    let app = TestApp::spawn_components(API_ONLY, |c| {
        c.confirm.namespace_backlog_cap = 150;
        c.relay.dispatch_queue_depth = 8;
        c.api.sync_wait_ms = 300;
    })
    .await;
    let bucket = crate::common::bucket_name("cap");
    app.create_bucket(&bucket).await;
    let ids = pending_uploads(&app, &bucket, 300).await;

    let (status, body) = app.batch_confirm_ids(&bucket, &ids[..100]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    crate::common::wait_for(
        "the dispatcher to fill the queue",
        Duration::from_secs(10),
        || async { app.confirm_queue_depth().await == 8 },
    )
    .await;
    // Counts are read afresh after a second.
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let response = app
        .post(&format!("/v1/buckets/{bucket}/uploads/confirm/batch"))
        .json(&json!({ "confirmations": ids[100..200].iter().map(|id| json!({"upload_id": id})).collect::<Vec<_>>() }))
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_error(status, &body, 429, "TooManyRequestsError");
    assert_eq!(
        body["error"]["details"]["reason"], "namespace_backlog_full",
        "{body}"
    );
    assert_eq!(body["error"]["details"]["waiting"], 92, "{body}");
    assert!(
        retry_after.is_some_and(|s| s >= 1),
        "Retry-After: {retry_after:?}"
    );
    let untouched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM uploads WHERE id = ANY($1) AND status = 'PENDING'",
    )
    .bind(&ids[100..200])
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(untouched, 100, "a refused batch recorded nothing");

    // What fits under the cap is accepted; one more async confirm is not.
    let (status, third) = app.batch_confirm_ids(&bucket, &ids[200..258]).await;
    assert_eq!(status, StatusCode::OK, "{third}");
    let (status, body) = app.confirm(&bucket, &ids[258], "async=true", None).await;
    assert_error(status, &body, 429, "TooManyRequestsError");
    let waiting: i64 = sqlx::query_scalar(upconfirm::store::outbox::WAITING_BULK_JOBS)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        waiting, 150,
        "what autoscaling sees: the jobs waiting for the dispatcher"
    );

    // Canceling a batch confirmation drops its jobs still waiting, which makes room.
    let task = str_field(&third, "task_id").to_owned();
    let (status, body) = send(app.delete(&format!("/v1/tasks/{task}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let waiting: i64 = sqlx::query_scalar(upconfirm::store::outbox::WAITING_BULK_JOBS)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(waiting, 92, "the canceled batch's 58 jobs left the outbox");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, body) = app.confirm(&bucket, &ids[260], "async=true", None).await;
    assert_eq!(status, StatusCode::OK, "room again under the cap: {body}");
    // A sync confirm is interactive work, outside the cap (accepted; no worker runs it).
    let (status, body) = app.confirm(&bucket, &ids[259], "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "PROCESSING", "{body}");

    // Another namespace is not capped by this one's backlog.
    let other = Other::create(&app, "cap-b").await;
    let id = other.upload(&app, b"hello").await;
    let (status, body) = other.confirm(&app, &id, "?async=true").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.stop().await;
}
