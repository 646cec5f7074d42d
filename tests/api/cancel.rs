//! Canceling uploads and tasks, and long-polling tasks.

use std::time::{Duration, Instant};

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_uploads() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("cancel");
    app.create_bucket(&bucket).await;
    let path = |id: &str| format!("/v1/buckets/{bucket}/uploads/{id}");

    // PENDING → CANCELED, then confirming it is refused; canceling again is fine.
    let (pending, _) = app
        .upload_file(
            &bucket,
            "a.bin",
            "application/octet-stream",
            &random_bytes(200),
            json!({}),
        )
        .await;
    let (status, _) = send(app.delete(&path(&pending))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_upload(&bucket, &pending).await["status"],
        "CANCELED"
    );
    let (status, body) = app.confirm(&bucket, &pending, "", None).await;
    assert_error(status, &body, 400, "BadRequestError");
    let (status, _) = send(app.delete(&path(&pending))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The object stayed, as it was not asked to go; asking now deletes it.
    let key = app.get_upload(&bucket, &pending).await["s3_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(app.blob().head(&key).await.is_ok());
    let (status, _) = send(app.delete(&format!("{}?delete_s3_object=true", path(&pending)))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(matches!(
        app.blob().head(&key).await,
        Err(upconfirm::blob::BlobError::NotFound)
    ));

    // FAILED → CANCELED.
    let never = app
        .create_pending(&bucket, "b.bin", "application/octet-stream", json!({}))
        .await;
    let never = str_field(&never, "upload_id").to_owned();
    let (status, _) = app.confirm(&bucket, &never, "", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(app.get_upload(&bucket, &never).await["status"], "FAILED");
    let (status, _) = send(app.delete(&path(&never))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // COMPLETED cannot be canceled.
    let (done, _) = app
        .upload_file(
            &bucket,
            "c.bin",
            "application/octet-stream",
            &random_bytes(300),
            json!({}),
        )
        .await;
    let (status, _) = app.confirm(&bucket, &done, "", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(app.delete(&path(&done))).await;
    assert_error(status, &body, 400, "BadRequestError");
    assert_eq!(body["error"]["details"]["status"], "COMPLETED");
    assert_eq!(app.get_upload(&bucket, &done).await["status"], "COMPLETED");

    // Unknown ids, another namespace's uploads, bad query values.
    let (status, body) = send(app.delete(&path("upl_missing"))).await;
    assert_error(status, &body, 404, "NotFoundError");
    let other = app.second_tenant().await;
    let (status, body) = send(app.request_as(
        Method::DELETE,
        &format!("/v1/buckets/{bucket}/uploads/{done}"),
        Some(&other.api_key),
        Some(&other.namespace),
    ))
    .await;
    assert_error(status, &body, 404, "NotFoundError");
    let (status, body) = send(app.delete(&format!("{}?delete_s3_object=maybe", path(&done)))).await;
    assert_error(status, &body, 422, "ValidationError");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_tasks_job_changes_nothing_when_it_runs() {
    let app = TestApp::spawn_components(API_ONLY, |_| {}).await;
    let bucket = bucket_name("tcancel");
    let bucket_id = str_field(&app.create_bucket(&bucket).await, "bucket_id").to_string();

    // A single confirmation and a batch confirmation, queued with no worker running.
    let (single, _) = app
        .upload_file(
            &bucket,
            "s.bin",
            "application/octet-stream",
            &random_bytes(400),
            json!({}),
        )
        .await;
    let (status, accepted) = app.confirm(&bucket, &single, "async=true", None).await;
    assert_eq!(status, StatusCode::OK, "{accepted}");
    let single_task = str_field(&accepted, "task_id").to_owned();
    let mut batch_ids = Vec::new();
    for i in 0..3 {
        let (id, _) = app
            .upload_file(
                &bucket,
                &format!("b{i}.bin"),
                "application/octet-stream",
                &random_bytes(500),
                json!({}),
            )
            .await;
        batch_ids.push(id);
    }
    let (status, batch) = app.batch_confirm_ids(&bucket, &batch_ids).await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    let batch_task = str_field(&batch, "task_id").to_owned();
    app.wait_outbox_empty().await;
    assert_eq!(
        app.confirm_queue_depth().await,
        4,
        "four jobs wait in the queue"
    );

    // Cancel both: 200, idempotent; the uploads can be confirmed again later.
    for task in [&single_task, &batch_task] {
        let (status, body) = send(app.delete(&format!("/v1/tasks/{task}"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["success"], true);
        let (status, again) = send(app.delete(&format!("/v1/tasks/{task}"))).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert!(
            again["message"].as_str().unwrap().contains("already"),
            "{again}"
        );
    }
    let single_view = app.wait_task(&single_task).await;
    assert_eq!(single_view["status"], "CANCELED");
    let batch_view = app.wait_task(&batch_task).await;
    assert_eq!(batch_view["status"], "CANCELED");
    assert_eq!(batch_view["additional_data"]["canceled"], 3, "{batch_view}");
    for id in batch_ids.iter().chain([&single]) {
        assert_eq!(app.get_upload(&bucket, id).await["status"], "PENDING");
    }
    // Another organization cannot cancel (or see) them.
    let other = app.second_tenant().await;
    let (status, body) = send(app.request_as(
        Method::DELETE,
        &format!("/v1/tasks/{single_task}"),
        Some(&other.api_key),
        None,
    ))
    .await;
    assert_error(status, &body, 404, "NotFoundError");

    // Now a worker takes the four jobs, runs them, and drains.
    let worker = app.start_more(WORKER_ONLY).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.confirm_queue_depth().await > 0 {
        assert!(
            Instant::now() < deadline,
            "the worker did not take the jobs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.shutdown().await;
    assert_eq!(
        app.wait_task(&single_task).await,
        single_view,
        "nothing changed"
    );
    assert_eq!(
        app.wait_task(&batch_task).await,
        batch_view,
        "nothing changed"
    );
    for id in batch_ids.iter().chain([&single]) {
        assert_eq!(app.get_upload(&bucket, id).await["status"], "PENDING");
    }
    assert_eq!(app.count_objects_in_bucket(&bucket_id).await, 0);

    // Killing a completed task changes nothing and succeeds, as the SDK documents kill.
    let worker = app.start_more(WORKER_ONLY).await;
    let (status, body) = app.confirm(&bucket, &single, "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "COMPLETED");
    let task_id = str_field(&body, "task_id").to_owned();
    let (status, killed) = send(app.delete(&format!("/v1/tasks/{task_id}"))).await;
    assert_eq!(status, StatusCode::OK, "{killed}");
    assert_eq!(killed["success"], true, "{killed}");
    assert_eq!(killed["status"], "COMPLETED", "{killed}");
    let (_, task) = send(app.get(&format!("/v1/tasks/{task_id}"))).await;
    assert_eq!(
        task["status"], "COMPLETED",
        "the ended task is untouched: {task}"
    );
    assert_eq!(
        app.get_upload(&bucket, &single).await["status"],
        "COMPLETED"
    );
    worker.shutdown().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_returns_when_the_task_ends() {
    let app = TestApp::spawn_components(API_ONLY, |_| {}).await;
    let bucket = bucket_name("lpoll");
    app.create_bucket(&bucket).await;
    let (id, _) = app
        .upload_file(
            &bucket,
            "a.bin",
            "application/octet-stream",
            &random_bytes(700),
            json!({}),
        )
        .await;
    let (_, accepted) = app.confirm(&bucket, &id, "async=true", None).await;
    let task_id = str_field(&accepted, "task_id").to_owned();

    // Bounds on wait_seconds.
    for bad in ["61", "-1", "soon"] {
        let (status, body) =
            send(app.get(&format!("/v1/tasks/{task_id}?wait_seconds={bad}"))).await;
        assert_error(status, &body, 422, "ValidationError");
    }
    // With no worker, a short poll ends at its deadline with the task still queued.
    let started = Instant::now();
    let (status, body) = send(app.get(&format!("/v1/tasks/{task_id}?wait_seconds=1"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "QUEUED");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );

    // A 30 s poll, then a worker: the poll answers as soon as the task completes.
    let poll = {
        let rb = app.get(&format!("/v1/tasks/{task_id}?wait_seconds=30"));
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = send(rb).await;
            (answer, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !poll.is_finished(),
        "the poll waits while the task is queued"
    );
    let worker_started = Instant::now();
    let worker = app.start_more(WORKER_ONLY).await;
    let ((status, body), waited) = poll.await.unwrap();
    let after_worker = worker_started.elapsed();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "COMPLETED", "{body}");
    assert!(
        waited < Duration::from_secs(10),
        "answered after {waited:?}"
    );
    assert!(
        after_worker < Duration::from_secs(5),
        "answered {after_worker:?} after the worker started"
    );
    worker.shutdown().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_reported_while_a_large_object_is_hashed() {
    // Objects from 1 MiB count as large here, so a 16 MiB one reports progress.
    let app = TestApp::spawn_with(|c| c.confirm.async_threshold_bytes = 1 << 20).await;
    let bucket = bucket_name("progress");
    app.create_bucket(&bucket).await;
    let size = 16 << 20;
    let (id, _) = app
        .upload_file(
            &bucket,
            "big.bin",
            "application/octet-stream",
            &random_bytes(size),
            json!({}),
        )
        .await;

    let mut listener = sqlx::postgres::PgListener::connect_with(&app.pool)
        .await
        .unwrap();
    listener
        .listen(upconfirm::store::TASK_EVENTS_CHANNEL)
        .await
        .unwrap();
    let started = Instant::now();
    let (status, accepted) = app.confirm(&bucket, &id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{accepted}");
    assert_eq!(
        accepted["status"], "PROCESSING",
        "a large object answers async: {accepted}"
    );
    let task_id = str_field(&accepted, "task_id").to_owned();

    let mut seen = Vec::new();
    let task = loop {
        let (_, task) = send(app.get(&format!("/v1/tasks/{task_id}"))).await;
        if !task["progress"].is_null() {
            seen.push(task["progress"].clone());
        }
        if TERMINAL.contains(&task["status"].as_str().unwrap()) {
            break task;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{task}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = started.elapsed();
    assert_eq!(task["status"], "COMPLETED", "{task}");
    assert!(!seen.is_empty(), "progress was visible while the job ran");
    for p in &seen {
        assert_eq!(p["bytes_total"], size as u64, "{p}");
        assert!(p["bytes_done"].as_u64().unwrap() <= size as u64, "{p}");
    }
    assert_eq!(
        task["progress"],
        json!({"bytes_done": size, "bytes_total": size, "percentage": 100.0})
    );

    // Bounded rate: at most one progress write a second, plus the first and the last.
    let mut notices = 0;
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), listener.recv()).await {
        if n.payload() == task_id {
            notices += 1;
        }
    }
    // The listener's connection goes back before the pool closes.
    drop(listener);
    let bound = elapsed.as_secs() as usize + 4;
    assert!(notices <= bound, "{notices} notices in {elapsed:?}");
    assert!(
        notices >= 2,
        "the first and the last progress were announced: {notices}"
    );
    app.stop().await;
}
