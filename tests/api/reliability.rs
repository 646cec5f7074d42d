//! What happens when jobs cannot finish: dead letters and their replay, messages nobody
//! can run, readiness while a dependency is away, and leases that carry long jobs past
//! the broker's acknowledgement timeout and past the death of their worker.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{self, random_bytes, str_field, wait_for, TestApp, API_ONLY, WORKER_ONLY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_the_delivery_limit_fails_its_task_and_can_be_replayed() {
    let app = TestApp::spawn_components(API_ONLY, |c| {
        c.queue.delivery_limit = 2;
        c.worker.retry_budget_ms = 200;
        c.worker.dead_letter_interval_ms = 200;
    })
    .await;
    let bucket = common::bucket_name("dead");
    app.create_bucket(&bucket).await;
    let bytes = random_bytes(4096);
    let (upload_id, _) = app
        .upload_file(
            &bucket,
            "d.bin",
            "application/octet-stream",
            &bytes,
            json!({}),
        )
        .await;
    let (status, answer) = app.confirm(&bucket, &upload_id, "async=true", None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let task_id = str_field(&answer, "task_id").to_owned();

    // A worker whose S3 is unreachable: every attempt fails transiently.
    let blind = app
        .start_more_with(WORKER_ONLY, |c| {
            c.s3.s3_endpoint = Some(format!("http://127.0.0.1:{}", common::free_port()));
        })
        .await;
    let task = app.wait_task(&task_id).await;
    blind.shutdown().await;
    assert_eq!(task["status"], "FAILED", "{task}");
    let error = task["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("given up after"), "{error}");
    let (_, _, attempts) = app.task_row(&task_id).await;
    assert!(attempts >= 2, "retried before giving up: {attempts}");
    assert!(error.contains("storage"), "the last error is kept: {error}");
    let upload = app.get_upload(&bucket, &upload_id).await;
    assert_eq!(upload["status"], "FAILED", "{upload}");
    assert_eq!(
        app.dead_letter_depth().await,
        0,
        "the dead letter was consumed"
    );

    let (ok, listed, err) = app.run_cli(&["admin", "dlq", "list"]).await;
    assert!(ok, "{err}");
    assert!(listed.contains(&task_id), "{listed}");
    assert!(listed.contains("FAILED, replayable): 1"), "{listed}");

    // Replay with a worker that can reach S3: the same task completes, once.
    let (ok, out, err) = app
        .run_cli(&["admin", "dlq", "replay", "--task", &task_id])
        .await;
    assert!(ok, "{out} {err}");
    assert!(out.contains(&format!("replayed task={task_id}")), "{out}");
    let healthy = app.start_more(WORKER_ONLY).await;
    let task = app.wait_task(&task_id).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    assert_eq!(app.count_objects_for_upload(&upload_id).await, 1);
    let (ok, listed, _) = app.run_cli(&["admin", "dlq", "list"]).await;
    assert!(ok && listed.contains("FAILED, replayable): 0"), "{listed}");
    let (ok, _, err) = app
        .run_cli(&["admin", "dlq", "replay", "--task", &task_id])
        .await;
    assert!(
        !ok && err.contains("no dead-lettered confirmation"),
        "{err}"
    );
    let (ok, _, err) = app.run_cli(&["admin", "dlq", "replay"]).await;
    assert!(!ok, "replay needs --task or --all: {err}");
    healthy.shutdown().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_jobs_of_unknown_tasks_stay_dead_lettered_and_harm_nothing() {
    let app = TestApp::spawn_with(|c| c.worker.dead_letter_interval_ms = 200).await;
    let bucket = common::bucket_name("garbage");
    app.create_bucket(&bucket).await;
    common::publish_raw(app.queue_prefix(), b"not json at all").await;
    common::publish_raw(app.queue_prefix(), br#"{"task_id": 42}"#).await;
    common::publish_raw(
        app.queue_prefix(),
        br#"{"task_id":"tsk_nope","upload_id":"upl_nope"}"#,
    )
    .await;

    let (upload_id, _) = app
        .upload_file(
            &bucket,
            "ok.txt",
            "text/plain",
            &random_bytes(100),
            json!({}),
        )
        .await;
    let (_, answer) = app.confirm(&bucket, &upload_id, "async=true", None).await;
    let task = app.wait_task(str_field(&answer, "task_id")).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");

    // The consumer of the dead-letter queue looks at them again and again, and leaves them.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    wait_for(
        "three messages in the dead-letter queue",
        Duration::from_secs(10),
        || async { app.dead_letter_depth().await == 3 },
    )
    .await;
    let (ok, listed, err) = app.run_cli(&["admin", "dlq", "list"]).await;
    assert!(ok, "{err}");
    assert!(listed.contains("(no task to fail): 3"), "{listed}");
    assert!(listed.contains("not json at all"), "{listed}");
    assert!(listed.contains("tsk_nope"), "{listed}");
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(recorded, 0);
    // Listing did not take them away.
    assert_eq!(app.dead_letter_depth().await, 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_says_which_dependency_is_missing() {
    let app = TestApp::spawn().await;
    let resp = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    assert_eq!(body["checks"]["migrations"], "ok", "{body}");
    assert_eq!(body["checks"]["broker"], "ok", "{body}");
    let resp = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // An API and a worker whose broker does not answer are alive but not ready.
    let nowhere = format!("amqp://guest:guest@127.0.0.1:{}/%2f", common::free_port());
    let worker = app.spawn_worker_process(&[("AMQP_URL", &nowhere)]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        if let Some(answer) = worker.readyz().await {
            break answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            app.workers_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    assert!(
        body["checks"]["consumer"]
            .as_str()
            .unwrap()
            .starts_with("not consuming"),
        "{body}"
    );
    let alive = reqwest::get(format!("http://{}/healthz", worker.health))
        .await
        .unwrap();
    assert_eq!(alive.status(), StatusCode::OK);

    let api = app
        .start_more_with(API_ONLY, |c| c.queue.amqp_url = nowhere.clone())
        .await;
    let resp = app
        .client
        .get(format!("{}/readyz", api.base_url().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["checks"]["broker"]
            .as_str()
            .unwrap()
            .starts_with("unreachable"),
        "{body}"
    );
    api.shutdown().await;

    // A worker that reaches everything becomes ready.
    let good = app.spawn_worker_process(&[]);
    good.wait_ready(Duration::from_secs(20)).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_job_is_held_by_a_lease_not_by_the_broker_and_outlives_its_worker() {
    let app = TestApp::spawn_components(API_ONLY, |c| {
        c.worker.lease_from_bytes = 1;
        c.worker.lease_seconds = 2;
        c.worker.dead_letter_interval_ms = 300;
    })
    .await;
    let bucket = common::bucket_name("lease");
    app.create_bucket(&bucket).await;
    let bytes = random_bytes(192 * 1024 * 1024);
    let (upload_id, _) = app
        .upload_file(
            &bucket,
            "big.bin",
            "application/octet-stream",
            &bytes,
            json!({}),
        )
        .await;
    drop(bytes);
    let (_, answer) = app.confirm(&bucket, &upload_id, "async=true", None).await;
    let task_id = str_field(&answer, "task_id").to_owned();

    let mut worker = app.spawn_worker_process(&[("LEASE_FROM_BYTES", "1"), ("LEASE_SECONDS", "2")]);
    wait_for("the lease to be taken", Duration::from_secs(30), || async {
        sqlx::query_scalar::<_, bool>("SELECT lease_until IS NOT NULL FROM tasks WHERE id = $1")
            .bind(&task_id)
            .fetch_one(&app.pool)
            .await
            .unwrap()
    })
    .await;
    // The worker settles the message once the lease is recorded: the acknowledgement leaves
    // just after the row shows the lease, and a kill in between would return the message
    // (as it must, the job being unsettled). Give it that moment; hashing 192 MiB takes
    // seconds in this build.
    tokio::time::sleep(Duration::from_millis(200)).await;
    worker.kill().await;
    let (status, _, _) = app.task_row(&task_id).await;
    assert_eq!(status, "IN_PROGRESS", "the worker died while hashing");
    // The message had been settled: nothing came back to the queue with the dead consumer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.confirm_queue_depth().await, 0);

    // Another worker takes the job back once the lease lapses, and finishes it once.
    let next = app.start_more(WORKER_ONLY).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, error, attempts) = app.task_row(&task_id).await;
        if status == "COMPLETED" {
            assert_eq!(attempts, 2, "one attempt per holder of the lease");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{status} {error:?} {}",
            app.workers_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.count_objects_for_upload(&upload_id).await, 1);
    let lease: Option<bool> =
        sqlx::query_scalar("SELECT lease_until IS NOT NULL FROM tasks WHERE id = $1")
            .bind(&task_id)
            .fetch_optional(&app.pool)
            .await
            .unwrap();
    assert_eq!(lease, Some(false), "a finished task holds no lease");
    next.shutdown().await;
    app.stop().await;
}
