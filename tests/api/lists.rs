//! List routes: uploads (filters, search, sort, pagination, stats), buckets, tasks.

use crate::common::*;
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
    assert_eq!(all["stats"]["total_uploads"], 8);
    assert_eq!(
        all["stats"]["uploads_by_status"],
        json!({"PENDING": 5, "PROCESSING": 0, "COMPLETED": 2, "FAILED": 0, "CANCELED": 1})
    );
    assert_eq!(all["stats"]["total_size_bytes"], 1000);
    assert_eq!(all["stats"]["avg_file_size_bytes"], 125.0);
    assert_eq!(all["stats"]["unique_buckets"], 1);
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
    assert_eq!(
        two["stats"]["total_uploads"], 3,
        "stats follow the filter: {two}"
    );

    // The SDK's own syntax: conditions under AND/OR/NOT, with the case_sensitive key its
    // models add to each.
    let (status, sdk) = list_uploads(
        &app,
        &bucket,
        json!({"filters": {"AND": [
            {"field": "status", "operator": "in", "value": ["COMPLETED", "CANCELED"], "case_sensitive": false},
            {"NOT": [{"field": "filename", "operator": "ends_with", "value": ".TXT"}]},
        ], "case_sensitive": false}, "return_presigned_urls": false, "limit": 20, "offset": 0}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{sdk}");
    let mut names = filenames(&sdk);
    names.sort();
    assert_eq!(names, ["report_a.pdf", "report_b.pdf"], "{sdk}");
    let (_, big) = list_uploads(
        &app,
        &bucket,
        json!({"filters": {"OR": [{"field": "file_size_bytes", "operator": "gte", "value": 500}]}}),
    )
    .await;
    assert_eq!(big["pagination"]["total"], 2, "{big}");

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
    let pagination = &page1["pagination"];
    for (key, want) in [
        ("total", 8),
        ("limit", 3),
        ("offset", 0),
        ("next_offset", 3),
        ("page", 1),
        ("page_size", 3),
        ("total_pages", 3),
    ] {
        assert_eq!(pagination[key], want, "{key}: {pagination}");
    }
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
        json!({"filters": {"AND": [{"field": "status", "operator": "regex", "value": ".*"}]}}),
        json!({"filters": {"AND": [{"field": "file_size_bytes", "value": "big"}]}}),
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
    assert_eq!(found["total_count"], 1, "{found}");
    assert_eq!(found["results"][0]["object_count"], 0, "{found}");
    assert_eq!(found["results"][0]["total_size_bytes"], 0, "{found}");

    // The SDK's default body, and its paging in the query string.
    let (status, sdk) = send(
        app.post("/v1/buckets/list?page_size=2&page=2&include_total=true&cursor=x")
            .json(&json!({"case_sensitive": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{sdk}");
    assert_eq!(sdk["results"].as_array().unwrap().len(), 1, "{sdk}");
    assert_eq!(sdk["results"][0]["bucket_name"], json!(names[0]), "{sdk}");
    assert_eq!(sdk["pagination"]["page"], 2, "{sdk}");
    assert_eq!(sdk["pagination"]["total_pages"], 2, "{sdk}");
    let (_, sorted) = send(app.post("/v1/buckets/list").json(&json!({
        "sorts": [{"field": "bucket_name", "direction": "asc"}],
        "filters": {"OR": [{"field": "bucket_name", "operator": "in", "value": [names[0], names[2]]}]},
    })))
    .await;
    let got: Vec<&str> = sorted["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bucket_name"].as_str().unwrap())
        .collect();
    let mut want = vec![names[0].as_str(), names[2].as_str()];
    want.sort();
    assert_eq!(got, want, "{sorted}");
    let (_, exact) = send(
        app.post("/v1/buckets/list")
            .json(&json!({"search": names[1].to_uppercase(), "case_sensitive": true})),
    )
    .await;
    assert_eq!(exact["total_count"], 0, "case_sensitive search: {exact}");

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
        json!({"limit": 1001}),
        json!({"namespace": "x"}),
        json!({"filters": {"AND": [{"field": "owner", "value": "x"}]}}),
        json!({"sort": {"field": "status"}}),
    ] {
        let (status, err) = send(app.post("/v1/tasks/list").json(&body)).await;
        assert_error(status, &err, 422, "ValidationError");
    }
    let (status, err) = send(app.post("/v1/buckets/list").json(&json!({"limit": -5}))).await;
    assert_error(status, &err, 422, "ValidationError");
    app.stop().await;
}

/// What a schema check found at the edges of the list routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_hold_at_their_edges() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("edges");
    app.create_bucket(&bucket).await;
    // A size past S3's 5 TiB is refused at create...
    let (status, body) = app
        .create_upload(
            &bucket,
            json!({"filename": "huge.bin", "content_type": "application/octet-stream",
                   "file_size_bytes": i64::MAX}),
        )
        .await;
    assert_error(status, &body, 422, "ValidationError");
    // ...but rows may hold sizes as large as a bigint (stored before that check): their sum
    // is capped, not a 500.
    for name in ["a.bin", "b.bin"] {
        let (status, body) = app
            .create_upload(
                &bucket,
                json!({"filename": name, "content_type": "application/octet-stream",
                       "file_size_bytes": 1}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        sqlx::query("UPDATE uploads SET file_size_bytes = $1 WHERE id = $2")
            .bind(i64::MAX)
            .bind(str_field(&body, "upload_id"))
            .execute(&app.pool)
            .await
            .unwrap();
    }
    let (status, list) = list_uploads(&app, &bucket, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["stats"]["total_size_bytes"], i64::MAX, "{list}");
    // The farthest offset is an empty page, not a 500.
    let far = format!("/v1/buckets/{bucket}/batches/list");
    let (status, page) = send(
        app.post(&far)
            .json(&json!({"offset": i64::MAX, "limit": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["results"], json!([]), "{page}");
    assert_eq!(page["pagination"]["page"], i64::MAX, "{page}");
    // A body of JSON null is an absent optional body.
    let (status, page) = send(
        app.post("/v1/tasks/list")
            .header("Content-Type", "application/json")
            .body("null"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    for (path, body) in [
        ("/v1/buckets/list", json!({"sorts": [null]})),
        ("/v1/buckets/list", json!({"search": "x".repeat(256)})),
        ("/v1/tasks/list", json!({"search": "x".repeat(256)})),
    ] {
        let (status, err) = send(app.post(path).json(&body)).await;
        assert_error(status, &err, 422, "ValidationError");
    }
    app.stop().await;
}
