//! Batch create and batch confirm.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn batch_create(app: &TestApp, bucket: &str, body: Value) -> (StatusCode, Value) {
    send(
        app.post(&format!("/v1/buckets/{bucket}/uploads/batch"))
            .json(&body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_create_merges_shared_metadata_and_keeps_order() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("bc");
    app.create_bucket(&bucket).await;
    let (status, body) = batch_create(
        &app,
        &bucket,
        json!({
            "uploads": [
                {"filename": "a.txt", "content_type": "text/plain", "metadata": {"k": "own", "x": 1}},
                {"filename": "b.png", "content_type": "image/png", "object_metadata": {"o": "own"}},
                {"filename": "c.pdf", "content_type": "application/pdf"},
            ],
            "shared_metadata": {"k": "shared", "batch": "b1"},
            "shared_object_metadata": {"o": "shared", "p": 2},
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 3);
    let uploads = body["uploads"].as_array().unwrap();
    let names: Vec<&str> = uploads
        .iter()
        .map(|u| u["filename"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.txt", "b.png", "c.pdf"]);
    assert_eq!(
        uploads[0]["metadata"],
        json!({"k": "own", "x": 1, "batch": "b1"})
    );
    assert_eq!(
        uploads[1]["metadata"],
        json!({"k": "shared", "batch": "b1"})
    );
    assert_eq!(uploads[1]["object_metadata"], json!({"o": "own", "p": 2}));
    assert_eq!(
        uploads[2]["object_metadata"],
        json!({"o": "shared", "p": 2})
    );
    assert_eq!(uploads[1]["blob_type"], "image");
    for u in uploads {
        assert_eq!(u["status"], "PENDING", "{u}");
        assert!(u["presigned_url"].as_str().unwrap().starts_with("http"));
    }

    // Every created upload works end to end.
    let url = uploads[0]["presigned_url"].as_str().unwrap();
    assert!(app
        .put_bytes(url, "text/plain", b"hello")
        .await
        .is_success());
    let id = uploads[0]["upload_id"].as_str().unwrap();
    let (status, confirmed) = app.confirm(&bucket, id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");
    assert_eq!(confirmed["status"], "COMPLETED");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_create_is_all_or_nothing() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("bcbad");
    let bucket_id = str_field(&app.create_bucket(&bucket).await, "bucket_id").to_string();
    let good = json!({"filename": "a.txt", "content_type": "text/plain"});

    // One bad item among good ones: 422 naming its index, nothing created.
    let (status, body) = batch_create(
        &app,
        &bucket,
        json!({"uploads": [good, good, {"filename": "../x", "content_type": "text/plain"}]}),
    )
    .await;
    assert_error(status, &body, 422, "ValidationError");
    let issue = &body["error"]["details"]["validation_errors"][0];
    assert_eq!(
        issue["location"],
        json!(["body", "uploads", "2", "filename"]),
        "{body}"
    );
    assert!(
        issue["message"].as_str().unwrap().contains("uploads[2]"),
        "{body}"
    );

    // An unknown key in an item is named with its index.
    let (status, body) = batch_create(
        &app,
        &bucket,
        json!({"uploads": [good, {"filename": "b", "content_type": "text/plain", "colour": 1}]}),
    )
    .await;
    assert_error(status, &body, 422, "ValidationError");
    let issue = &body["error"]["details"]["validation_errors"][0];
    assert_eq!(issue["type"], "extra_forbidden");
    assert_eq!(issue["location"], json!(["body", "uploads", "1", "colour"]));

    // A bad size in one item.
    let (status, body) = batch_create(
        &app,
        &bucket,
        json!({"uploads": [{"filename": "a", "content_type": "text/plain", "file_size_bytes": 0}]}),
    )
    .await;
    assert_error(status, &body, 422, "ValidationError");

    // 0 and 101 items.
    for n in [0usize, 101] {
        let items: Vec<Value> = (0..n).map(|_| good.clone()).collect();
        let (status, body) = batch_create(&app, &bucket, json!({ "uploads": items })).await;
        assert_error(status, &body, 422, "ValidationError");
        assert!(body.to_string().contains("1 to 100"), "{body}");
    }
    // 100 is fine.
    let items: Vec<Value> = (0..100).map(|_| good.clone()).collect();
    let (status, body) = batch_create(&app, &bucket, json!({ "uploads": items })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.count_uploads_in_bucket(&bucket_id).await, 100);

    // Another tenant's bucket name does not resolve.
    let other = app.second_tenant().await;
    let (status, body) = send(
        app.request_as(
            reqwest::Method::POST,
            &format!("/v1/buckets/{bucket}/uploads/batch"),
            Some(&other.api_key),
            Some(&other.namespace),
        )
        .json(&json!({"uploads": [good]})),
    )
    .await;
    assert_error(status, &body, 404, "NotFoundError");
    assert_eq!(app.count_uploads_in_bucket(&bucket_id).await, 100);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_confirm_of_100_with_failures_and_identical_files() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("bconf");
    let bucket_id = str_field(&app.create_bucket(&bucket).await, "bucket_id").to_string();

    // 100 uploads: 96 distinct files, 2 identical ones, 1 never uploaded, 1 with a wrong etag.
    let twin = random_bytes(3_000);
    let mut items = Vec::new();
    let mut expected = Vec::new();
    for i in 0..100 {
        let name = format!("f{i}.bin");
        match i {
            10 => {
                let created = app
                    .create_pending(&bucket, &name, "application/octet-stream", json!({}))
                    .await;
                let id = str_field(&created, "upload_id").to_string();
                items.push(json!({ "upload_id": id }));
                expected.push((id, "FAILED", Some("object_not_found")));
            }
            20 => {
                let (id, _) = app
                    .upload_file(
                        &bucket,
                        &name,
                        "application/octet-stream",
                        &random_bytes(900),
                        json!({}),
                    )
                    .await;
                items.push(json!({ "upload_id": id, "etag": "0123456789abcdef0123456789abcdef" }));
                expected.push((id, "FAILED", Some("etag_mismatch")));
            }
            30 | 31 => {
                let (id, _) = app
                    .upload_file(&bucket, &name, "application/octet-stream", &twin, json!({}))
                    .await;
                items.push(json!({ "upload_id": id }));
                expected.push((id, "COMPLETED", None));
            }
            _ => {
                let bytes = random_bytes(1_000 + i);
                let (id, _) = app
                    .upload_file(
                        &bucket,
                        &name,
                        "application/octet-stream",
                        &bytes,
                        json!({"file_size_bytes": bytes.len()}),
                    )
                    .await;
                items.push(json!({ "upload_id": id, "file_size_bytes": bytes.len() }));
                expected.push((id, "COMPLETED", None));
            }
        }
    }

    let (status, body) = app.batch_confirm(&bucket, json!(items)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["confirmations_count"], 100);
    assert_eq!(
        body["task"]["task_type"],
        "api_buckets_uploads_batch_confirm"
    );
    let task_id = str_field(&body, "task_id").to_string();
    let task = app.wait_task(&task_id).await;
    assert_eq!(task["status"], "COMPLETED_WITH_ERRORS", "{task}");
    let counts = &task["additional_data"];
    assert_eq!(counts["total"], 100, "{task}");
    assert_eq!(counts["completed"], 98, "{task}");
    assert_eq!(counts["failed"], 2, "{task}");
    assert_eq!(counts["duplicates"], 1, "{task}");
    assert_eq!(counts["bucket_id"], json!(bucket_id), "{task}");
    let inputs = task["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 100, "one input per item: {task}");
    assert_eq!(inputs[0]["upload_id"], json!(expected[0].0), "{task}");
    let results = task["outputs"].as_array().unwrap();
    assert_eq!(
        results.len(),
        100,
        "one output per item, a list as the SDK parses it"
    );
    for (result, (id, status, reason)) in results.iter().zip(&expected) {
        assert_eq!(
            result["upload_id"],
            json!(id),
            "results keep the request's order"
        );
        assert_eq!(result["status"], json!(status), "{result}");
        if let Some(reason) = reason {
            assert_eq!(result["reason"], json!(reason), "{result}");
            assert!(result["error"].is_string(), "{result}");
        } else {
            assert!(result["object_id"].is_string(), "{result}");
        }
    }
    // The twins: one original, one duplicate of it, one object between them.
    let (a, b) = (&results[30], &results[31]);
    assert_eq!(a["object_id"], b["object_id"], "{a} {b}");
    assert_ne!(a["is_duplicate"], b["is_duplicate"], "{a} {b}");
    assert_eq!(app.count_objects_in_bucket(&bucket_id).await, 97);

    // Each upload's own state agrees.
    let failed = app.get_upload(&bucket, &expected[10].0).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    let done = app.get_upload(&bucket, &expected[0].0).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["object_id"], results[0]["object_id"]);

    // Confirming the batch again redoes nothing: completed items answer their results at once.
    let ok_items: Vec<Value> = expected
        .iter()
        .filter(|(_, s, _)| *s == "COMPLETED")
        .map(|(id, _, _)| json!({ "upload_id": id }))
        .collect();
    let (status, again) = app.batch_confirm(&bucket, json!(ok_items)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["status"], "COMPLETED", "{again}");
    assert_eq!(again["task"]["additional_data"]["completed"], 98);
    assert_eq!(app.count_objects_in_bucket(&bucket_id).await, 97);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_confirm_refuses_unknown_ids_and_bad_sizes() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("bconfbad");
    app.create_bucket(&bucket).await;
    let other_bucket = bucket_name("bconfother");
    app.create_bucket(&other_bucket).await;
    let (known, _) = app
        .upload_file(
            &bucket,
            "a.bin",
            "application/octet-stream",
            &random_bytes(100),
            json!({}),
        )
        .await;
    let (elsewhere, _) = app
        .upload_file(
            &other_bucket,
            "b.bin",
            "application/octet-stream",
            &random_bytes(100),
            json!({}),
        )
        .await;

    // Unknown ids (and one of another bucket): 404 naming them, nothing enqueued.
    let (status, body) = app
        .batch_confirm(
            &bucket,
            json!([
                {"upload_id": "upl_nope"},
                {"upload_id": known},
                {"upload_id": elsewhere},
                {"upload_id": "upl_nope"}
            ]),
        )
        .await;
    assert_error(status, &body, 404, "NotFoundError");
    assert_eq!(
        body["error"]["details"]["upload_ids"],
        json!(["upl_nope", elsewhere]),
        "{body}"
    );
    assert_eq!(app.get_upload(&bucket, &known).await["status"], "PENDING");
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(tasks, 0, "nothing recorded");

    // 0 and 101 items, a bad size, an unknown key.
    for items in [
        json!([]),
        json!((0..101)
            .map(|_| json!({"upload_id": known}))
            .collect::<Vec<_>>()),
        json!([{"upload_id": known, "file_size_bytes": -1}]),
        json!([{"upload_id": known, "auto_submit_batch": true}]),
        json!([{"etag": "x"}]),
    ] {
        let (status, body) = app.batch_confirm(&bucket, items.clone()).await;
        assert_error(status, &body, 422, "ValidationError");
    }
    assert_eq!(app.get_upload(&bucket, &known).await["status"], "PENDING");

    // A namespace of another organization: 404.
    let other = app.second_tenant().await;
    let (status, body) = send(
        app.request_as(
            reqwest::Method::POST,
            &format!("/v1/buckets/{bucket}/uploads/confirm/batch"),
            Some(&other.api_key),
            Some(&other.namespace),
        )
        .json(&json!({"confirmations": [{"upload_id": known}]})),
    )
    .await;
    assert_error(status, &body, 404, "NotFoundError");

    // The same upload twice in one batch: one confirmation, two identical results.
    let (status, body) = app
        .batch_confirm(&bucket, json!([{"upload_id": known}, {"upload_id": known}]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let task = app.wait_task(str_field(&body, "task_id")).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    let results = &task["outputs"];
    assert_eq!(results[0], results[1], "{task}");
    assert_eq!(app.count_objects_for_upload(&known).await, 1);
    app.stop().await;
}
