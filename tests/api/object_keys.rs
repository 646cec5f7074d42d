//! Where uploaded bytes live: the presigned URL writes a staging key; a confirmation
//! copies the verified version to a key no URL can write, and records that one. Keys are
//! measured in bytes, as S3 measures them, and the store's refusals end a confirmation.

use std::time::{Duration, Instant};

use crate::common::*;
use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{json, Value};
use upconfirm::blob::BlobError;

/// A bucket and one created upload (nothing PUT yet); returns (bucket, upload id, created).
async fn new_upload(app: &TestApp, tag: &str, filename: &str) -> (String, String, Value) {
    let bucket = bucket_name(tag);
    app.create_bucket(&bucket).await;
    let created = app
        .create_pending(&bucket, filename, "application/octet-stream", json!({}))
        .await;
    let id = str_field(&created, "upload_id").to_owned();
    (bucket, id, created)
}

/// The SHA-256 of what the store holds under `key`.
async fn stored_hash(app: &TestApp, key: &str) -> String {
    app.blob()
        .sha256(key, &mut |_| {})
        .await
        .unwrap_or_else(|e| panic!("reading {key}: {e}"))
        .sha256_hex
}

/// The `s3_key` of the object's one blob.
async fn object_blob_key(app: &TestApp, upload_id: &str) -> String {
    let blobs: Value = sqlx::query_scalar("SELECT blobs FROM objects WHERE upload_id = $1")
        .bind(upload_id)
        .fetch_one(&app.pool)
        .await
        .expect("the upload's object");
    blobs[0]["s3_key"].as_str().expect("blob s3_key").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_after_confirm_does_not_change_the_confirmed_bytes() {
    let app = TestApp::spawn().await;
    let (bucket, id, created) = new_upload(&app, "immutable", "doc.bin").await;
    let url = str_field(&created, "presigned_url").to_owned();
    let staging = str_field(&created, "s3_key").to_owned();
    let v1 = random_bytes(4_000);
    let v2 = random_bytes(4_000);
    let status = app.put_bytes(&url, "application/octet-stream", &v1).await;
    assert!(status.is_success(), "{status}");

    let (status, confirmed) = app.confirm(&bucket, &id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");
    assert_eq!(confirmed["status"], "COMPLETED", "{confirmed}");
    assert_eq!(
        confirmed["file_hash"],
        json!(sha256_hex(&v1)),
        "{confirmed}"
    );
    let upload = app.get_upload(&bucket, &id).await;
    let key = str_field(&upload, "s3_key").to_owned();
    assert_eq!(key, format!("confirmed/{staging}"), "{upload}");
    assert_eq!(object_blob_key(&app, &id).await, key);
    // The URL's object went once its copy was recorded.
    assert!(matches!(
        app.blob().head(&staging).await,
        Err(BlobError::NotFound)
    ));

    // The URL still works: the new bytes land in staging, not in what was confirmed.
    let status = app.put_bytes(&url, "application/octet-stream", &v2).await;
    assert!(status.is_success(), "{status}");
    assert_eq!(stored_hash(&app, &key).await, sha256_hex(&v1));
    assert_eq!(stored_hash(&app, &staging).await, sha256_hex(&v2));
    let upload = app.get_upload(&bucket, &id).await;
    assert_eq!(upload["file_hash"], json!(sha256_hex(&v1)), "{upload}");

    // Confirming again changes nothing.
    let (status, again) = app.confirm(&bucket, &id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["file_hash"], json!(sha256_hex(&v1)), "{again}");
    assert_eq!(stored_hash(&app, &key).await, sha256_hex(&v1));
    assert_eq!(app.count_objects_for_upload(&id).await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmations_finished_one_by_one_record_the_confirmed_key_too() {
    let app = TestApp::spawn().await;
    // A namespace with a quota is finished outside the groups.
    sqlx::query("UPDATE namespaces SET storage_quota_bytes = 1000000 WHERE id = $1")
        .bind(&app.namespace_id)
        .execute(&app.pool)
        .await
        .unwrap();
    let bucket = bucket_name("alone");
    app.create_bucket(&bucket).await;
    let bytes = random_bytes(500);
    let (id, created) = app
        .upload_file(
            &bucket,
            "a.bin",
            "application/octet-stream",
            &bytes,
            json!({}),
        )
        .await;
    let (status, body) = app.confirm(&bucket, &id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "COMPLETED", "{body}");
    let key = format!("confirmed/{}", str_field(&created, "s3_key"));
    assert_eq!(app.get_upload(&bucket, &id).await["s3_key"], json!(key));
    assert_eq!(object_blob_key(&app, &id).await, key);
    assert_eq!(stored_hash(&app, &key).await, sha256_hex(&bytes));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_whose_staging_object_went_carries_on_from_the_copy() {
    let app = TestApp::spawn().await;
    let (bucket, id, created) = new_upload(&app, "redeliver", "r.bin").await;
    let staging = str_field(&created, "s3_key").to_owned();
    let bytes = random_bytes(700);
    let (status, etag) = app
        .put_object(
            str_field(&created, "presigned_url"),
            "application/octet-stream",
            &bytes,
        )
        .await;
    assert!(status.is_success(), "{status}");
    // What an interrupted earlier run leaves: the verified copy, and no staging object.
    let etag = etag.expect("ETag");
    let confirmed = format!("confirmed/{staging}");
    app.blob()
        .copy_if_match(&staging, &confirmed, &etag)
        .await
        .unwrap();
    app.blob().delete(&staging).await.unwrap();

    let (status, body) = app
        .confirm(&bucket, &id, "", Some(json!({ "etag": etag })))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "COMPLETED", "{body}");
    assert_eq!(body["file_hash"], json!(sha256_hex(&bytes)), "{body}");
    assert_eq!(
        app.get_upload(&bucket, &id).await["s3_key"],
        json!(confirmed)
    );
    assert_eq!(app.count_objects_for_upload(&id).await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_failures_keep_their_reasons() {
    let app = TestApp::spawn().await;
    let (bucket, id, created) = new_upload(&app, "reasons", "m.bin").await;
    let (status, body) = app.confirm(&bucket, &id, "", None).await;
    assert_error(status, &body, 400, "BadRequestError");
    assert_eq!(
        body["error"]["details"]["reason"], "object_not_found",
        "{body}"
    );

    let bytes = random_bytes(300);
    let status = app
        .put_bytes(
            str_field(&created, "presigned_url"),
            "application/octet-stream",
            &bytes,
        )
        .await;
    assert!(status.is_success());
    for (options, reason) in [
        (json!({ "etag": "0".repeat(32) }), "etag_mismatch"),
        (json!({ "file_size_bytes": 301 }), "size_mismatch"),
    ] {
        let (status, body) = app.confirm(&bucket, &id, "", Some(options)).await;
        assert_error(status, &body, 400, "BadRequestError");
        assert_eq!(body["error"]["details"]["reason"], reason, "{body}");
    }

    // A declared hash that differs: the copy was made, then refused; a cancel deletes both.
    let (bucket, id, created) = new_upload(&app, "hash", "h.bin").await;
    let staging = str_field(&created, "s3_key").to_owned();
    sqlx::query("UPDATE uploads SET file_hash = $2 WHERE id = $1")
        .bind(&id)
        .bind("a".repeat(64))
        .execute(&app.pool)
        .await
        .unwrap();
    let status = app
        .put_bytes(
            str_field(&created, "presigned_url"),
            "application/octet-stream",
            &bytes,
        )
        .await;
    assert!(status.is_success());
    let (status, body) = app.confirm(&bucket, &id, "", None).await;
    assert_error(status, &body, 400, "BadRequestError");
    assert_eq!(
        body["error"]["details"]["reason"], "hash_mismatch",
        "{body}"
    );
    let confirmed = format!("confirmed/{staging}");
    assert!(app.blob().head(&confirmed).await.is_ok());
    let (status, _) = send(app.delete(&format!(
        "/v1/buckets/{bucket}/uploads/{id}?delete_s3_object=true"
    )))
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for key in [&staging, &confirmed] {
        assert!(
            matches!(app.blob().head(key).await, Err(BlobError::NotFound)),
            "{key} left"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_measured_in_bytes_and_long_keys_confirm() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("bytes");
    app.create_bucket(&bucket).await;

    // 255 characters, 1,020 bytes: within the spec's characters, past S3's key bytes.
    let (status, body) = app
        .create_upload(
            &bucket,
            json!({ "filename": "😀".repeat(255), "content_type": "text/plain" }),
        )
        .await;
    assert_error(status, &body, 422, "ValidationError");
    let issue = &body["error"]["details"]["validation_errors"][0];
    assert_eq!(issue["location"], json!(["body", "filename"]), "{body}");
    assert!(
        issue["message"]
            .as_str()
            .unwrap_or_default()
            .contains("1024"),
        "{body}"
    );
    let (status, body) = send(
        app.post(&format!("/v1/buckets/{bucket}/uploads/batch"))
            .json(&json!({ "uploads": [
                { "filename": "ok.txt", "content_type": "text/plain" },
                { "filename": "😀".repeat(255), "content_type": "text/plain" },
            ] })),
    )
    .await;
    assert_error(status, &body, 422, "ValidationError");

    // 200 emoji fit the key (about 900 bytes) but not a URL: percent-encoded, the presigned
    // URL passes the 2083 characters the SDK's UploadResponse holds.
    let (status, body) = app
        .create_upload(
            &bucket,
            json!({ "filename": "😀".repeat(200), "content_type": "text/plain" }),
        )
        .await;
    assert_error(status, &body, 422, "ValidationError");
    assert!(
        body["error"]["message"].is_string() && body.to_string().contains("2083"),
        "{body}"
    );

    // 255 characters: a key past what the embedded store can name a file after, confirmed.
    let bytes = random_bytes(2_000);
    let name = format!("{}.txt", "n".repeat(251));
    let (id, created) = app
        .upload_file(&bucket, &name, "text/plain", &bytes, json!({}))
        .await;
    assert!(
        str_field(&created, "presigned_url").len() <= 2083,
        "{created}"
    );
    let staging = str_field(&created, "s3_key");
    assert!((350..=400).contains(&staging.len()), "{}", staging.len());
    let (status, body) = app.confirm(&bucket, &id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "COMPLETED", "{body}");
    assert_eq!(body["file_hash"], json!(sha256_hex(&bytes)), "{body}");
    let key = format!("confirmed/{staging}");
    assert_eq!(stored_hash(&app, &key).await, sha256_hex(&bytes));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_of_the_store_fails_the_confirmation_at_once() {
    let app = TestApp::spawn().await;
    let (bucket, id, _) = new_upload(&app, "refused", "k.bin").await;
    // A key S3 refuses (over 1,024 bytes), as an upload created before names were
    // measured in bytes may hold: the store answers 400 KeyTooLongError.
    sqlx::query("UPDATE uploads SET s3_key = $2 WHERE id = $1")
        .bind(&id)
        .bind(format!("{}/{}", app.namespace_id, "k".repeat(1_100)))
        .execute(&app.pool)
        .await
        .unwrap();
    let started = Instant::now();
    let (status, body) = app.confirm(&bucket, &id, "async=true", None).await;
    assert!(status.is_success(), "{status} {body}");
    let task = app.wait_task(str_field(&body, "task_id")).await;
    let took = started.elapsed();
    assert_eq!(task["status"], "FAILED", "{task}");
    // The retry budget is 30 s: a refusal must not spend it.
    assert!(took < Duration::from_secs(10), "FAILED after {took:?}");
    let upload = app.get_upload(&bucket, &id).await;
    assert_eq!(upload["status"], "FAILED", "{upload}");
    let (status, body) = app.confirm(&bucket, &id, "", None).await;
    assert_error(status, &body, 400, "BadRequestError");
    assert_eq!(
        body["error"]["details"]["reason"], "storage_rejected",
        "{body}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_the_store_refuses_fails_its_confirmations_at_once() {
    let app = TestApp::spawn_components(API_ONLY, |_| {}).await;
    // A worker whose secret the store does not know: every request answers 403.
    let worker = app
        .start_more_with(WORKER_ONLY, |c| {
            c.s3.s3_secret_access_key = Some("not-the-secret".into());
        })
        .await;
    let bucket = bucket_name("denied");
    app.create_bucket(&bucket).await;
    let id = app.upload_bin(&bucket, "d.bin", &random_bytes(100)).await;
    let started = Instant::now();
    let (status, body) = app.confirm(&bucket, &id, "async=true", None).await;
    assert!(status.is_success(), "{status} {body}");
    let task = app.wait_task(str_field(&body, "task_id")).await;
    let took = started.elapsed();
    assert_eq!(task["status"], "FAILED", "{task}");
    assert!(took < Duration::from_secs(10), "FAILED after {took:?}");
    assert_eq!(
        task["outputs"][0]["error"]["details"]["reason"], "storage_rejected",
        "{task}"
    );
    assert!(
        task["error"].as_str().unwrap_or_default().contains("403"),
        "{task}"
    );
    worker.shutdown().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checksum_checked_at_put_is_the_hash_of_the_copy() {
    let app = TestApp::spawn().await;
    let (bucket, id, created) = new_upload(&app, "checksum", "c.bin").await;
    let bytes = random_bytes(5_000);
    let digest = hex::decode(sha256_hex(&bytes)).unwrap();
    let checksum = base64::engine::general_purpose::STANDARD.encode(digest);
    let resp = app
        .client
        .put(str_field(&created, "presigned_url"))
        .header("Content-Type", "application/octet-stream")
        .header("x-amz-checksum-sha256", &checksum)
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let staging = str_field(&created, "s3_key");
    assert_eq!(
        app.blob().head(staging).await.unwrap().sha256_hex,
        Some(sha256_hex(&bytes))
    );

    let (status, body) = app.confirm(&bucket, &id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["file_hash"], json!(sha256_hex(&bytes)), "{body}");
    let key = format!("confirmed/{staging}");
    assert_eq!(stored_hash(&app, &key).await, sha256_hex(&bytes));
    app.stop().await;
}
