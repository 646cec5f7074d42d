//! Hash-verified uploads: the PUT URL signs the declared SHA-256, the store refuses other
//! bytes, and confirm takes the hash from the store without reading a byte.
//!
//! Only the first test confirms an upload that is not hash-verified, after it has checked
//! that the hashed-bytes counter stood still: the counter is this process's.

use std::collections::BTreeMap;

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// PUTs `bytes` with exactly the headers the upload says the PUT must send.
async fn put_with_headers(app: &TestApp, created: &Value, bytes: &[u8]) -> (StatusCode, String) {
    let headers: BTreeMap<String, String> =
        serde_json::from_value(created["upload_headers"].clone()).expect("upload_headers");
    let mut put = app
        .client
        .put(str_field(created, "presigned_url"))
        .body(bytes.to_vec());
    for (name, value) in &headers {
        put = put.header(name, value);
    }
    let resp = put.send().await.expect("PUT");
    let status = resp.status();
    (status, resp.text().await.unwrap_or_default())
}

async fn create(app: &TestApp, bucket: &str, body: Value) -> Value {
    let (status, created) = app.create_upload(bucket, body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    created
}

const HASHED: &str = "upconfirm_hashed_bytes_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_verified_confirm_reads_no_bytes_and_answers_the_declared_hash() {
    let _alone = crate::ALONE.lock().await;
    let app = TestApp::spawn().await;
    let bucket = bucket_name("hv");
    app.create_bucket(&bucket).await;
    let bytes = random_bytes(300_000);
    let hash = sha256_hex(&bytes);
    let created = create(
        &app,
        &bucket,
        json!({"filename": "v.bin", "content_type": "application/octet-stream",
               "file_hash": hash, "enforce_file_hash": true}),
    )
    .await;
    assert_eq!(created["enforce_file_hash"], true, "{created}");
    let headers = &created["upload_headers"];
    assert_eq!(
        headers["content-type"], "application/octet-stream",
        "{created}"
    );
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(hex::decode(&hash).unwrap())
    };
    assert_eq!(headers["x-amz-checksum-sha256"], json!(b64), "{created}");
    let (status, text) = put_with_headers(&app, &created, &bytes).await;
    assert_eq!(status, StatusCode::OK, "{text}");

    let before = app.metric(HASHED).await;
    let id = str_field(&created, "upload_id");
    let (status, body) = app.confirm(&bucket, id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "COMPLETED", "{body}");
    assert_eq!(body["file_hash"], json!(hash), "{body}");
    assert_eq!(body["file_size_bytes"], 300_000, "{body}");
    assert_eq!(
        app.metric(HASHED).await,
        before,
        "a hash-verified confirm reads no bytes"
    );
    let object = send(app.get(&format!(
        "/v1/buckets/{bucket}/objects/{}",
        str_field(&body, "object_id")
    )))
    .await
    .1;
    assert_eq!(
        object["blobs"][0]["details"]["hash"],
        json!(hash),
        "{object}"
    );

    // Nothing was copied: the URL can only write these same bytes again, so the object
    // stays where it was PUT. Other bytes through the URL are still refused after confirm.
    let upload = app.get_upload(&bucket, id).await;
    let key = str_field(&upload, "s3_key").to_owned();
    assert!(!key.starts_with("confirmed/"), "{upload}");
    assert!(
        app.blob().head(&format!("confirmed/{key}")).await.is_err(),
        "no confirmed copy"
    );
    let (status, text) = put_with_headers(&app, &created, &random_bytes(300_000)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let (status, text) = put_with_headers(&app, &created, &bytes).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let kept = app.blob().sha256(&key, &mut |_| {}).await.unwrap();
    assert_eq!(kept.sha256_hex, hash);

    // The control: an upload that declared nothing is read and hashed, and the counter moves.
    let plain = random_bytes(70_000);
    let plain_id = app.upload_bin(&bucket, "p.bin", &plain).await;
    let (status, body) = app.confirm(&bucket, &plain_id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["file_hash"], json!(sha256_hex(&plain)), "{body}");
    assert_eq!(app.metric(HASHED).await, before + 70_000.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_other_than_the_signed_hash_are_refused_and_the_confirm_finds_nothing() {
    let _alone = crate::ALONE.lock().await;
    let app = TestApp::spawn().await;
    let bucket = bucket_name("hvbad");
    app.create_bucket(&bucket).await;
    let declared = random_bytes(1_000);
    let created = create(
        &app,
        &bucket,
        json!({"filename": "x.bin", "content_type": "application/octet-stream",
               "file_hash": sha256_hex(&declared), "enforce_file_hash": true}),
    )
    .await;
    // Other bytes with the signed checksum header: the store checks them and refuses.
    let (status, text) = put_with_headers(&app, &created, &random_bytes(1_000)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("BadDigest"), "{text}");
    // Without the checksum header the signature does not hold.
    let (status, _) = app
        .put_object(
            str_field(&created, "presigned_url"),
            "application/octet-stream",
            &declared,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let id = str_field(&created, "upload_id");
    let (status, body) = app.confirm(&bucket, id, "", None).await;
    assert_error(status, &body, 400, "BadRequestError");
    assert_eq!(
        body["error"]["details"]["reason"], "object_not_found",
        "{body}"
    );
    // The right bytes afterwards go through, and the confirmation runs again.
    let (status, text) = put_with_headers(&app, &created, &declared).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, body) = app.confirm(&bucket, id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["file_hash"], json!(sha256_hex(&declared)), "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforcing_needs_a_hash_and_a_server_may_make_it_the_default() {
    let _alone = crate::ALONE.lock().await;
    let app = TestApp::spawn_with(|c| c.api.enforce_declared_hash = true).await;
    let bucket = bucket_name("hvdef");
    app.create_bucket(&bucket).await;
    let (status, body) = app
        .create_upload(
            &bucket,
            json!({"filename": "a.txt", "content_type": "text/plain", "enforce_file_hash": true}),
        )
        .await;
    assert_error(status, &body, 422, "ValidationError");
    assert_eq!(
        body["error"]["details"]["validation_errors"][0]["location"],
        json!(["body", "file_hash"]),
        "{body}"
    );

    let hash = sha256_hex(b"declared");
    let by_default = create(
        &app,
        &bucket,
        json!({"filename": "a.txt", "content_type": "text/plain", "file_hash": hash}),
    )
    .await;
    assert_eq!(by_default["enforce_file_hash"], true, "{by_default}");
    assert!(
        by_default["upload_headers"]["x-amz-checksum-sha256"].is_string(),
        "{by_default}"
    );
    let opted_out = create(
        &app,
        &bucket,
        json!({"filename": "a.txt", "content_type": "text/plain", "file_hash": hash,
               "enforce_file_hash": false, "skip_duplicates": false}),
    )
    .await;
    assert_eq!(opted_out["enforce_file_hash"], false, "{opted_out}");
    assert_eq!(
        opted_out["upload_headers"],
        json!({"content-type": "text/plain"}),
        "a client that did not opt in PUTs with only Content-Type"
    );
    // Nothing declared: nothing to enforce, whatever the server's default.
    let plain = create(
        &app,
        &bucket,
        json!({"filename": "b.txt", "content_type": "text/plain"}),
    )
    .await;
    assert_eq!(plain["enforce_file_hash"], false, "{plain}");
    // And the GET of an upload never gives the URL or its headers again.
    let again = app
        .get_upload(&bucket, str_field(&by_default, "upload_id"))
        .await;
    assert!(again["upload_headers"].is_null(), "{again}");
    assert_eq!(again["enforce_file_hash"], true, "{again}");
    app.stop().await;
}
