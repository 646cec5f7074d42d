//! Deduplication by content hash within a bucket.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn confirm_ok(app: &TestApp, bucket: &str, id: &str) -> Value {
    let (status, body) = app.confirm(bucket, id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], json!("COMPLETED"), "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_bytes_in_one_bucket_share_one_object() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("dup");
    let bucket_id = str_field(&app.create_bucket(&bucket).await, "bucket_id").to_string();
    let bytes = random_bytes(2_500);

    let (first, _) = app
        .upload_file(
            &bucket,
            "a.bin",
            "application/octet-stream",
            &bytes,
            json!({}),
        )
        .await;
    let c1 = confirm_ok(&app, &bucket, &first).await;
    let (second, _) = app
        .upload_file(
            &bucket,
            "b.bin",
            "application/octet-stream",
            &bytes,
            json!({}),
        )
        .await;
    let c2 = confirm_ok(&app, &bucket, &second).await;

    assert_eq!(
        c2["object_id"], c1["object_id"],
        "the duplicate points at the original's object"
    );
    assert_eq!(c2["file_hash"], json!(sha256_hex(&bytes)), "{c2}");

    let u2 = app.get_upload(&bucket, &second).await;
    assert_eq!(u2["status"], json!("COMPLETED"), "{u2}");
    assert_eq!(u2["is_duplicate"], json!(true), "{u2}");
    assert_eq!(u2["duplicate_of_upload_id"], json!(first), "{u2}");
    assert_eq!(u2["object_id"], c1["object_id"], "{u2}");
    let u1 = app.get_upload(&bucket, &first).await;
    assert_eq!(u1["is_duplicate"], json!(false), "{u1}");

    assert_eq!(app.count_objects_in_bucket(&bucket_id).await, 1);
    assert_eq!(app.count_objects_for_upload(&second).await, 0);
    assert_eq!(
        app.storage_used().await,
        bytes.len() as i64,
        "usage is not counted twice"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_duplicates_false_creates_its_own_object() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("nodup");
    let bucket_id = str_field(&app.create_bucket(&bucket).await, "bucket_id").to_string();
    let bytes = random_bytes(1_800);

    let (first, _) = app
        .upload_file(
            &bucket,
            "a.bin",
            "application/octet-stream",
            &bytes,
            json!({}),
        )
        .await;
    let c1 = confirm_ok(&app, &bucket, &first).await;
    let (second, _) = app
        .upload_file(
            &bucket,
            "b.bin",
            "application/octet-stream",
            &bytes,
            json!({ "skip_duplicates": false }),
        )
        .await;
    let c2 = confirm_ok(&app, &bucket, &second).await;

    assert!(str_field(&c2, "object_id").starts_with("obj_"), "{c2}");
    assert_ne!(c2["object_id"], c1["object_id"], "its own object");
    let u2 = app.get_upload(&bucket, &second).await;
    assert_eq!(u2["is_duplicate"], json!(false), "{u2}");
    assert_eq!(app.count_objects_in_bucket(&bucket_id).await, 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_bytes_in_another_bucket_are_not_duplicates() {
    let app = TestApp::spawn().await;
    let b1 = bucket_name("da");
    let b2 = bucket_name("db");
    app.create_bucket(&b1).await;
    app.create_bucket(&b2).await;
    let bytes = random_bytes(1_100);

    let (first, _) = app
        .upload_file(&b1, "a.bin", "application/octet-stream", &bytes, json!({}))
        .await;
    let c1 = confirm_ok(&app, &b1, &first).await;
    let (second, _) = app
        .upload_file(&b2, "a.bin", "application/octet-stream", &bytes, json!({}))
        .await;
    let c2 = confirm_ok(&app, &b2, &second).await;

    assert_ne!(c2["object_id"], c1["object_id"]);
    let u2 = app.get_upload(&b2, &second).await;
    assert_eq!(u2["is_duplicate"], json!(false), "{u2}");
    assert_eq!(app.count_objects_for_upload(&second).await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_known_hash_returns_the_existing_upload() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("known");
    let bucket_id = str_field(&app.create_bucket(&bucket).await, "bucket_id").to_string();
    let bytes = random_bytes(900);
    let (first, _) = app
        .upload_file(&bucket, "a.txt", "text/plain", &bytes, json!({}))
        .await;
    confirm_ok(&app, &bucket, &first).await;
    let uploads_before = app.count_uploads_in_bucket(&bucket_id).await;

    let (status, body) = app
        .create_upload(
            &bucket,
            json!({ "filename": "again.txt", "content_type": "text/plain", "file_hash": sha256_hex(&bytes) }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a known hash answers 200, not 201: {body}"
    );
    assert_eq!(body["is_duplicate"], json!(true), "{body}");
    assert_eq!(body["duplicate_of_upload_id"], json!(first), "{body}");
    assert_eq!(body["presigned_url"], Value::Null, "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert_eq!(
        app.count_uploads_in_bucket(&bucket_id).await,
        uploads_before,
        "nothing is created"
    );
    assert_eq!(app.count_objects_in_bucket(&bucket_id).await, 1);

    // With skip_duplicates false the same hash makes a new upload.
    let (status, body) = app
        .create_upload(
            &bucket,
            json!({
                "filename": "again.txt", "content_type": "text/plain",
                "file_hash": sha256_hex(&bytes), "skip_duplicates": false
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["presigned_url"].is_string(), "{body}");
    assert_ne!(body["upload_id"], json!(first), "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_hash_of_a_pending_upload_is_not_a_duplicate() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("pend");
    app.create_bucket(&bucket).await;
    let bytes = random_bytes(700);
    let hash = sha256_hex(&bytes);
    // Uploaded but never confirmed: only COMPLETED uploads count as originals.
    let (first, _) = app
        .upload_file(
            &bucket,
            "a.txt",
            "text/plain",
            &bytes,
            json!({ "file_hash": hash }),
        )
        .await;

    let (status, body) = app
        .create_upload(
            &bucket,
            json!({ "filename": "b.txt", "content_type": "text/plain", "file_hash": hash }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_ne!(body["upload_id"], json!(first), "{body}");
    assert!(body["presigned_url"].is_string(), "{body}");
    app.stop().await;
}
