//! The presigned PUT URL: S3 accepts exactly what was signed, and nothing else.

use std::time::{Duration, SystemTime};

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The URL with one character of its `X-Amz-Signature` value changed.
fn tamper_signature(url: &str) -> String {
    let marker = "X-Amz-Signature=";
    let start = url
        .find(marker)
        .unwrap_or_else(|| panic!("no signature in {url}"))
        + marker.len();
    let mut chars: Vec<char> = url.chars().collect();
    let c = chars[start];
    chars[start] = if c == '0' { '1' } else { '0' };
    chars.into_iter().collect()
}

async fn pending(app: &TestApp, tag: &str, content_type: &str) -> (String, Value) {
    let bucket = bucket_name(tag);
    app.create_bucket(&bucket).await;
    let created = app
        .create_pending(&bucket, "photo.png", content_type, json!({}))
        .await;
    (bucket, created)
}

/// Nothing reached S3: confirming reports the object missing.
async fn assert_nothing_stored(app: &TestApp, bucket: &str, created: &Value) {
    let (status, body) = app
        .confirm(bucket, str_field(created, "upload_id"), "", None)
        .await;
    assert_error(status, &body, 400, "BadRequestError");
    assert_eq!(
        body["error"]["details"]["reason"],
        json!("object_not_found"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_signature_is_refused() {
    let app = TestApp::spawn().await;
    let (bucket, created) = pending(&app, "tamper", "image/png").await;
    let url = str_field(&created, "presigned_url");
    let bytes = random_bytes(800);

    let status = app
        .put_bytes(&tamper_signature(url), "image/png", &bytes)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_nothing_stored(&app, &bucket, &created).await;

    // The genuine URL still works, and the upload can then be confirmed.
    let status = app.put_bytes(url, "image/png", &bytes).await;
    assert!(status.is_success(), "genuine URL answered {status}");
    let (status, body) = app
        .confirm(&bucket, str_field(&created, "upload_id"), "", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], json!("COMPLETED"), "{body}");
    assert_eq!(body["file_hash"], json!(sha256_hex(&bytes)), "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_content_type_is_refused() {
    let app = TestApp::spawn().await;
    let (bucket, created) = pending(&app, "ctype", "image/png").await;
    let url = str_field(&created, "presigned_url");

    let status = app
        .put_bytes(url, "text/html", b"<script>alert(1)</script>")
        .await;
    assert!(
        status.is_client_error(),
        "PUT with another Content-Type answered {status}"
    );
    assert_nothing_stored(&app, &bucket, &created).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_cannot_write_another_key() {
    let app = TestApp::spawn().await;
    let (_, created) = pending(&app, "otherkey", "image/png").await;
    let url = str_field(&created, "presigned_url");
    let redirected = url.replacen("photo.png", "evil.png", 1);
    assert_ne!(redirected, url, "the key is in the URL path: {url}");

    let status = app
        .put_bytes(&redirected, "image/png", &random_bytes(100))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_url_is_refused() {
    let app = TestApp::spawn().await;
    let (bucket, created) = pending(&app, "expired", "image/png").await;
    let key = str_field(&created, "s3_key");

    let expired = app
        .blob()
        .presign_put(
            key,
            "image/png",
            SystemTime::now() - Duration::from_secs(2 * 3600),
            Duration::from_secs(60),
        )
        .await
        .expect("presign");
    let status = app
        .put_bytes(&expired, "image/png", &random_bytes(100))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_nothing_stored(&app, &bucket, &created).await;

    // The same key signed now is accepted: the refusal was the expiry.
    let fresh = app
        .blob()
        .presign_put(key, "image/png", SystemTime::now(), Duration::from_secs(60))
        .await
        .expect("presign");
    let status = app.put_bytes(&fresh, "image/png", &random_bytes(100)).await;
    assert!(status.is_success(), "fresh URL answered {status}");
    app.stop().await;
}
