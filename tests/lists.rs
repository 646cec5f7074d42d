//! List routes: uploads (filters, search, sort, pagination, stats), buckets, tasks.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn list_uploads(app: &TestApp, bucket: &str, body: Value) -> (StatusCode, Value) {
    send(
        app.post(&format!("/v1/buckets/{bucket}/uploads/list"))
            .json(&body),
    )
    .await
}

fn filenames(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["filename"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_lists_filter_search_sort_and_page() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("list");
    app.create_bucket(&bucket).await;
    // 5 pending, 2 completed, 1 canceled.
    for i in 0..5 {
        app.create_pending(&bucket, &format!("photo_{i}.jpg"), "image/jpeg", json!({}))
            .await;
    }
    for name in ["report_a.pdf", "report_b.pdf"] {
        let (id, _) = app
            .upload_file(
                &bucket,
                name,
                "application/pdf",
                &random_bytes(500),
                json!({}),
            )
            .await;
        let (status, body) = app.confirm(&bucket, &id, "", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let canceled = app
        .create_pending(&bucket, "gone_100%.txt", "text/plain", json!({}))
        .await;
    let (status, _) = send(app.delete(&format!(
        "/v1/buckets/{bucket}/uploads/{}",
        str_field(&canceled, "upload_id")
    )))
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // No body at all: the first page of everything, newest first.
    let (status, all) = send(app.post(&format!("/v1/buckets/{bucket}/uploads/list"))).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["pagination"]["total"], 8, "{all}");
    assert_eq!(filenames(&all)[0], "gone_100%.txt");
    assert_eq!(all["stats"]["total"], 8);
    assert_eq!(
        all["stats"]["by_status"],
        json!({"PENDING": 5, "PROCESSING": 0, "COMPLETED": 2, "FAILED": 0, "CANCELED": 1})
    );
    assert_eq!(all["stats"]["completed_bytes"], 1000);
    assert!(
        all["results"][0]["presigned_url"].is_null(),
        "never the PUT URL again"
    );

    // Status filter: one or several.
    let (_, done) = list_uploads(&app, &bucket, json!({"filters": {"status": "COMPLETED"}})).await;
    assert_eq!(done["pagination"]["total"], 2, "{done}");
    let mut names = filenames(&done);
    names.sort();
    assert_eq!(names, ["report_a.pdf", "report_b.pdf"]);
    let (_, two) = list_uploads(
        &app,
        &bucket,
        json!({"filters": {"status": ["COMPLETED", "CANCELED"]}}),
    )
    .await;
    assert_eq!(two["pagination"]["total"], 3, "{two}");

    // Search matches filenames case-insensitively; % is a character, not a wildcard.
    let (_, found) = list_uploads(&app, &bucket, json!({"search": "PHOTO"})).await;
    assert_eq!(found["pagination"]["total"], 5, "{found}");
    let (_, pct) = list_uploads(&app, &bucket, json!({"search": "0%"})).await;
    assert_eq!(filenames(&pct), ["gone_100%.txt"]);

    // Sort and pages.
    let (_, page1) = list_uploads(
        &app,
        &bucket,
        json!({"sort": {"field": "filename", "direction": "asc"}, "limit": 3}),
    )
    .await;
    assert_eq!(
        filenames(&page1),
        ["gone_100%.txt", "photo_0.jpg", "photo_1.jpg"]
    );
    assert_eq!(
        page1["pagination"],
        json!({"total": 8, "limit": 3, "offset": 0, "next_offset": 3})
    );
    let (_, last) = list_uploads(
        &app,
        &bucket,
        json!({"sort": {"field": "filename", "direction": "asc"}, "limit": 3, "offset": 6}),
    )
    .await;
    assert_eq!(filenames(&last), ["report_a.pdf", "report_b.pdf"]);
    assert!(last["pagination"]["next_offset"].is_null(), "{last}");

    // Bad requests.
    for body in [
        json!({"limit": 0}),
        json!({"limit": 101}),
        json!({"offset": -1}),
        json!({"filters": {"status": "DONE"}}),
        json!({"filters": {"owner": "me"}}),
        json!({"sort": {"field": "s3_key"}}),
        json!({"sort": {"field": "filename", "direction": "up"}}),
        json!({"unknown": 1}),
        json!({"limit": "ten"}),
    ] {
        let (status, err) = list_uploads(&app, &bucket, body.clone()).await;
        assert_error(status, &err, 422, "ValidationError");
    }
    let (status, err) = list_uploads(&app, "no-such-bucket", json!({})).await;
    assert_error(status, &err, 404, "NotFoundError");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_and_task_lists() {
    let app = TestApp::spawn().await;
    let names: Vec<String> = (0..3).map(|i| bucket_name(&format!("bl{i}"))).collect();
    for n in &names {
        app.create_bucket(n).await;
    }
    let (status, body) = send(app.post("/v1/buckets/list").json(&json!({"limit": 2}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["pagination"]["total"], 3);
    assert_eq!(body["results"].as_array().unwrap().len(), 2);
    assert_eq!(
        body["results"][0]["bucket_name"],
        json!(names[2]),
        "newest first"
    );
    let (_, found) = send(
        app.post("/v1/buckets/list")
            .json(&json!({"search": names[1]})),
    )
    .await;
    assert_eq!(found["pagination"]["total"], 1, "{found}");

    // Another organization sees none of them.
    let other = app.second_tenant().await;
    let (status, theirs) = send(app.request_as(
        Method::POST,
        "/v1/buckets/list",
        Some(&other.api_key),
        Some(&other.namespace),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{theirs}");
    assert_eq!(theirs["pagination"]["total"], 0);

    // Tasks: two confirmations, one of them failed.
    let bucket = &names[0];
    let (ok, _) = app
        .upload_file(
            bucket,
            "a.bin",
            "application/octet-stream",
            &random_bytes(300),
            json!({}),
        )
        .await;
    app.confirm(bucket, &ok, "", None).await;
    let missing = app
        .create_pending(bucket, "b.bin", "application/octet-stream", json!({}))
        .await;
    let (status, _) = app
        .confirm(bucket, str_field(&missing, "upload_id"), "", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, tasks) = send(app.post("/v1/tasks/list")).await;
    assert_eq!(status, StatusCode::OK, "{tasks}");
    assert_eq!(tasks["pagination"]["total"], 2, "{tasks}");
    let (_, failed) = send(
        app.post("/v1/tasks/list")
            .json(&json!({"status": "FAILED"})),
    )
    .await;
    assert_eq!(failed["pagination"]["total"], 1, "{failed}");
    assert_eq!(failed["results"][0]["status"], "FAILED");
    let (_, typed) = send(
        app.post("/v1/tasks/list")
            .json(&json!({"task_type": "api_buckets_uploads_confirm", "limit": 1})),
    )
    .await;
    assert_eq!(typed["pagination"]["next_offset"], 1, "{typed}");
    let (status, theirs) =
        send(app.request_as(Method::POST, "/v1/tasks/list", Some(&other.api_key), None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        theirs["pagination"]["total"], 0,
        "another organization's tasks stay hidden"
    );

    for body in [
        json!({"status": "done"}),
        json!({"task_type": "resize"}),
        json!({"limit": 1000}),
        json!({"namespace": "x"}),
    ] {
        let (status, err) = send(app.post("/v1/tasks/list").json(&body)).await;
        assert_error(status, &err, 422, "ValidationError");
    }
    let (status, err) = send(app.post("/v1/buckets/list").json(&json!({"limit": -5}))).await;
    assert_error(status, &err, 422, "ValidationError");
    app.stop().await;
}
