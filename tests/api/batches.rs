//! Batches of objects, objects, and the expiry sweep.

use std::time::Duration;

use crate::common::*;
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use upconfirm::service::config::SweepConfig;

async fn confirmed_object(app: &TestApp, bucket: &str, name: &str) -> String {
    let (id, _) = app
        .upload_file(
            bucket,
            name,
            "image/png",
            &random_bytes(600),
            json!({"object_metadata": {"n": name}}),
        )
        .await;
    let (status, body) = app.confirm(bucket, &id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    str_field(&body, "object_id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_created_submitted_announced_and_listed() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("batch");
    let bucket_id = str_field(&app.create_bucket(&bucket).await, "bucket_id").to_string();
    let a = confirmed_object(&app, &bucket, "a.png").await;
    let b = confirmed_object(&app, &bucket, "b.png").await;

    // The object itself.
    let (status, object) = send(app.get(&format!("/v1/buckets/{bucket}/objects/{a}"))).await;
    assert_eq!(status, StatusCode::OK, "{object}");
    assert_eq!(object["bucket_id"], json!(bucket_id));
    assert_eq!(object["metadata"], json!({"n": "a.png"}));
    assert_eq!(object["blobs"][0]["type"], "image");
    assert_eq!(object["blobs"][0]["size_bytes"], 600);

    // Listen on the batches exchange the way a downstream processor would.
    let conn = upconfirm::queue::connect(AMQP_URL, "test-downstream")
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let probe = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            probe.name().as_str().into(),
            format!("{}.batches", app.queue_prefix()).as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut announcements = channel
        .basic_consume(
            probe.name().as_str().into(),
            "probe".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();

    let (status, draft) = send(
        app.post(&format!("/v1/buckets/{bucket}/batches"))
            .json(&json!({"object_ids": [a, b, a], "metadata": {"run": 7}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{draft}");
    assert_eq!(draft["status"], "DRAFT");
    assert_eq!(draft["object_ids"], json!([a, b]), "each object once");
    assert!(draft["task_id"].is_null());
    let batch_id = str_field(&draft, "batch_id").to_owned();

    let (status, task) =
        send(app.post(&format!("/v1/buckets/{bucket}/batches/{batch_id}/submit"))).await;
    assert_eq!(status, StatusCode::OK, "{task}");
    assert_eq!(task["task_type"], "api_buckets_batches_submit");
    let delivery = tokio::time::timeout(Duration::from_secs(10), announcements.next())
        .await
        .expect("an announcement within 10 s")
        .unwrap()
        .unwrap();
    let message: Value = serde_json::from_slice(&delivery.data).unwrap();
    assert_eq!(message["batch_id"], json!(batch_id), "{message}");
    assert_eq!(message["object_ids"], json!([a, b]));
    assert_eq!(message["task_id"], task["task_id"]);
    assert_eq!(message["metadata"], json!({"run": 7}));

    // Submitting again answers the same task and announces nothing more.
    let (status, again) =
        send(app.post(&format!("/v1/buckets/{bucket}/batches/{batch_id}/submit"))).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["task_id"], task["task_id"]);
    assert!(
        tokio::time::timeout(Duration::from_millis(700), announcements.next())
            .await
            .is_err(),
        "one announcement per batch"
    );

    let (status, got) = send(app.get(&format!("/v1/buckets/{bucket}/batches/{batch_id}"))).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["status"], "PENDING");
    assert_eq!(got["task_id"], task["task_id"]);

    let (status, _) = send(
        app.post(&format!("/v1/buckets/{bucket}/batches"))
            .json(&json!({"object_ids": [b]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, list) = send(app.post(&format!("/v1/buckets/{bucket}/batches/list"))).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["pagination"]["total"], 2);
    let (_, drafts) = send(
        app.post(&format!("/v1/buckets/{bucket}/batches/list"))
            .json(&json!({"status": "DRAFT"})),
    )
    .await;
    assert_eq!(drafts["pagination"]["total"], 1, "{drafts}");

    // Errors: unknown objects named, empty lists, unknown batch and object ids, other tenants.
    let (status, body) = send(
        app.post(&format!("/v1/buckets/{bucket}/batches"))
            .json(&json!({"object_ids": [a, "obj_nope"]})),
    )
    .await;
    assert_error(status, &body, 404, "NotFoundError");
    assert_eq!(body["error"]["details"]["object_ids"], json!(["obj_nope"]));
    for bad in [
        json!({"object_ids": []}),
        json!({"object_ids": "x"}),
        json!({}),
    ] {
        let (status, body) = send(
            app.post(&format!("/v1/buckets/{bucket}/batches"))
                .json(&bad),
        )
        .await;
        assert_error(status, &body, 422, "ValidationError");
    }
    for path in [
        format!("/v1/buckets/{bucket}/batches/btch_nope"),
        format!("/v1/buckets/{bucket}/objects/obj_nope"),
    ] {
        let (status, body) = send(app.get(&path)).await;
        assert_error(status, &body, 404, "NotFoundError");
    }
    let (status, body) =
        send(app.post(&format!("/v1/buckets/{bucket}/batches/btch_nope/submit"))).await;
    assert_error(status, &body, 404, "NotFoundError");
    let other = app.second_tenant().await;
    for path in [
        format!("/v1/buckets/{bucket_id}/batches/{batch_id}"),
        format!("/v1/buckets/{bucket_id}/objects/{a}"),
    ] {
        let (status, body) = send(app.request_as(
            Method::GET,
            &path,
            Some(&other.api_key),
            Some(&other.namespace),
        ))
        .await;
        assert_error(status, &body, 404, "NotFoundError");
    }
    // An object of another bucket of ours is not in this one.
    let elsewhere = bucket_name("batch2");
    app.create_bucket(&elsewhere).await;
    let (status, body) = send(app.get(&format!("/v1/buckets/{elsewhere}/objects/{a}"))).await;
    assert_error(status, &body, 404, "NotFoundError");
    let _ = conn.close(200, "done".into()).await;
    app.stop().await;
}

async fn backdate(app: &TestApp, upload_id: &str) {
    sqlx::query("UPDATE uploads SET expires_at = now() - interval '1 hour' WHERE id = $1")
        .bind(upload_id)
        .execute(&app.pool)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_fails_expired_uploads_and_deletes_their_objects() {
    let app = TestApp::spawn_with(|c| {
        c.sweep.expiry_sweep_interval_seconds = 1;
        c.sweep.expiry_grace_seconds = 60;
        c.sweep.expiry_delete_objects = true;
    })
    .await;
    let bucket = bucket_name("sweep");
    app.create_bucket(&bucket).await;
    let (expired, created) = app
        .upload_file(
            &bucket,
            "old.bin",
            "application/octet-stream",
            &random_bytes(100),
            json!({}),
        )
        .await;
    let key = str_field(&created, "s3_key").to_owned();
    let (fresh, _) = app
        .upload_file(
            &bucket,
            "new.bin",
            "application/octet-stream",
            &random_bytes(100),
            json!({}),
        )
        .await;
    backdate(&app, &expired).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let swept = loop {
        let u = app.get_upload(&bucket, &expired).await;
        if u["status"] != "PENDING" {
            break u;
        }
        assert!(tokio::time::Instant::now() < deadline, "not swept: {u}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(swept["status"], "FAILED", "{swept}");
    assert_eq!(swept["error"], "expired: never confirmed");
    assert!(matches!(
        app.blob().head(&key).await,
        Err(upconfirm::blob::BlobError::NotFound)
    ));
    assert_eq!(app.get_upload(&bucket, &fresh).await["status"], "PENDING");

    // Confirming it now finds no object.
    let (status, body) = app.confirm(&bucket, &expired, "", None).await;
    assert_error(status, &body, 400, "BadRequestError");
    assert_eq!(body["error"]["details"]["reason"], "object_not_found");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweepers_side_by_side_fail_each_upload_once() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("sweep2");
    app.create_bucket(&bucket).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let created = app
            .create_pending(&bucket, &format!("f{i}"), "text/plain", json!({}))
            .await;
        let id = str_field(&created, "upload_id").to_owned();
        backdate(&app, &id).await;
        ids.push(id);
    }
    let cfg = SweepConfig {
        expiry_grace_seconds: 0,
        expiry_sweep_interval_seconds: 1,
        expiry_delete_objects: false,
    };
    let rounds = (0..4).map(|_| upconfirm::worker::sweep::sweep_once(&app.pool, app.blob(), &cfg));
    let reports = futures::future::join_all(rounds).await;
    let total: u64 = reports.iter().map(|r| r.as_ref().unwrap().expired).sum();
    assert_eq!(total, 40, "{reports:?}");
    let again = upconfirm::worker::sweep::sweep_once(&app.pool, app.blob(), &cfg)
        .await
        .unwrap();
    assert_eq!(again.expired, 0);
    for id in &ids {
        assert_eq!(app.get_upload(&bucket, id).await["status"], "FAILED");
    }
    app.stop().await;
}
