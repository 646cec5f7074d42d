//! Request validation: 422 `ValidationError` in the common envelope, never a 500.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn assert_validation(status: StatusCode, body: &Value, case: &str) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{case}: {body}");
    assert_error(status, body, 422, "ValidationError");
    let errors = body["error"]["details"]["validation_errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{case}: validation_errors array in {body}"));
    assert!(!errors.is_empty(), "{case}: {body}");
    for e in errors {
        assert!(
            e["type"].is_string(),
            "{case}: validation error type in {body}"
        );
        assert!(
            !e["location"].is_null(),
            "{case}: validation error location in {body}"
        );
        assert!(
            e["message"].is_string(),
            "{case}: validation error message in {body}"
        );
    }
}

fn assert_extra_forbidden(status: StatusCode, body: &Value, key: &str, accepted: &str) {
    assert_validation(status, body, key);
    let first = &body["error"]["details"]["validation_errors"][0];
    assert_eq!(first["type"], json!("extra_forbidden"), "{body}");
    let named = first["location"].to_string().contains(key)
        || first["message"].as_str().unwrap_or("").contains(key);
    assert!(named, "the error names `{key}`: {body}");
    assert!(
        body["error"].to_string().contains(accepted),
        "the error lists the accepted keys (e.g. `{accepted}`): {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_are_refused() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("extra");
    app.create_bucket(&bucket).await;

    let (status, body) = app
        .create_upload(
            &bucket,
            json!({ "filename": "a.txt", "content_type": "text/plain", "bogus": 1 }),
        )
        .await;
    assert_extra_forbidden(status, &body, "bogus", "skip_duplicates");

    let created = app
        .create_pending(&bucket, "a.txt", "text/plain", json!({}))
        .await;
    let id = str_field(&created, "upload_id");
    let (status, body) = app
        .confirm(
            &bucket,
            id,
            "",
            Some(json!({ "etag": "abc", "surprise": true })),
        )
        .await;
    assert_extra_forbidden(status, &body, "surprise", "auto_submit_batch");
    // The refused confirm changed nothing.
    let upload = app.get_upload(&bucket, id).await;
    assert_eq!(upload["status"], json!("PENDING"), "{upload}");

    let (status, body) = send(
        app.post("/v1/buckets")
            .json(&json!({ "bucket_name": bucket_name("x"), "colour": "red" })),
    )
    .await;
    assert_validation(status, &body, "bucket extra key");
    assert_eq!(
        body["error"]["details"]["validation_errors"][0]["type"],
        json!("extra_forbidden"),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_create_fields_are_refused() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("invalid");
    app.create_bucket(&bucket).await;
    let base = || json!({ "filename": "a.txt", "content_type": "text/plain" });
    let with = |k: &str, v: Value| {
        let mut b = base();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = base();
        b.as_object_mut().unwrap().remove(k);
        b
    };

    let cases: Vec<(&str, Value)> = vec![
        ("filename ../x", with("filename", json!("../x"))),
        ("filename a/b", with("filename", json!("a/b"))),
        ("filename a\\b", with("filename", json!("a\\b"))),
        ("filename ..", with("filename", json!(".."))),
        ("filename empty", with("filename", json!(""))),
        (
            "filename control char",
            with("filename", json!("a\u{0007}b.txt")),
        ),
        (
            "filename 256 chars",
            with("filename", json!("a".repeat(256))),
        ),
        ("filename not a string", with("filename", json!(5))),
        ("content_type nope", with("content_type", json!("nope"))),
        ("content_type empty", with("content_type", json!(""))),
        ("expiration 10", with("presigned_url_expiration", json!(10))),
        (
            "expiration 86401",
            with("presigned_url_expiration", json!(86_401)),
        ),
        ("file_hash XYZ", with("file_hash", json!("XYZ"))),
        ("file_hash 63 hex", with("file_hash", json!("a".repeat(63)))),
        (
            "file_hash non-hex",
            with("file_hash", json!("g".repeat(64))),
        ),
        ("file_size_bytes 0", with("file_size_bytes", json!(0))),
        ("file_size_bytes -1", with("file_size_bytes", json!(-1))),
        ("blob_property a-b", with("blob_property", json!("a-b"))),
        ("metadata not an object", with("metadata", json!("x"))),
        ("missing filename", without("filename")),
        ("missing content_type", without("content_type")),
    ];
    for (case, body) in cases {
        let (status, answer) = app.create_upload(&bucket, body).await;
        assert_validation(status, &answer, case);
    }

    // Limits are inclusive.
    for (k, v) in [
        ("presigned_url_expiration", json!(60)),
        ("presigned_url_expiration", json!(86_400)),
        ("filename", json!("b".repeat(255))),
    ] {
        let (status, answer) = app.create_upload(&bucket, with(k, v.clone())).await;
        assert_eq!(status, StatusCode::OK, "{k}={v}: {answer}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_confirm_bodies_are_refused() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("cinvalid");
    app.create_bucket(&bucket).await;
    let bytes = random_bytes(300);
    let (id, _) = app
        .upload_file(&bucket, "a.txt", "text/plain", &bytes, json!({}))
        .await;

    for (case, body) in [
        ("file_size_bytes 0", json!({ "file_size_bytes": 0 })),
        (
            "file_size_bytes string",
            json!({ "file_size_bytes": "big" }),
        ),
        (
            "auto_submit_batch string",
            json!({ "auto_submit_batch": "yes" }),
        ),
        ("body not an object", json!([1, 2])),
    ] {
        let (status, answer) = app.confirm(&bucket, &id, "", Some(body)).await;
        assert_validation(status, &answer, case);
    }

    // Nothing was confirmed by the refused requests; a valid one still works.
    let (status, answer) = app.confirm(&bucket, &id, "", Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], json!("COMPLETED"), "{answer}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_a_client_error_in_the_envelope() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("malformed");
    app.create_bucket(&bucket).await;

    let (status, body) = send(
        app.post(&format!("/v1/buckets/{bucket}/uploads"))
            .header("Content-Type", "application/json")
            .body("{\"filename\": \"a.txt\", "),
    )
    .await;
    assert!(
        status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
        "malformed JSON answers 400 or 422, got {status}: {body}"
    );
    assert_envelope(status, &body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_paths_methods_and_bodies_answer_in_the_envelope() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("edge");
    app.create_bucket(&bucket).await;

    let (status, body) = send(app.get("/v1/buckets/%FF%FE")).await;
    assert_error(status, &body, 404, "NotFoundError");
    let (status, body) = send(app.get("/v1/no/such/route")).await;
    assert_error(status, &body, 404, "NotFoundError");
    let (status, body) = send(app.delete(&format!("/v1/buckets/{bucket}"))).await;
    assert_eq!(status.as_u16(), 405, "{body}");
    assert_envelope(status, &body);

    let huge = "x".repeat(2 * 1024 * 1024);
    let (status, body) = send(
        app.post(&format!("/v1/buckets/{bucket}/uploads"))
            .header("Content-Type", "application/json")
            .body(json!({ "filename": "a.txt", "content_type": "text/plain", "metadata": { "pad": huge } }).to_string()),
    )
    .await;
    assert_error(status, &body, 413, "PayloadTooLargeError");
    let (status, body) = send(app.post(&format!(
        "/v1/buckets/{bucket}/uploads/upl_x/confirm?async=maybe"
    )))
    .await;
    assert!(status.is_client_error(), "{status} {body}");
    assert_envelope(status, &body);
    app.stop().await;
}
