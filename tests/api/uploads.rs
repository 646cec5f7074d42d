//! Creating uploads, buckets, and the namespace's limits.

use crate::common::*;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn ts(body: &Value, key: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(str_field(body, key))
        .unwrap_or_else(|e| panic!("`{key}` is RFC 3339 ({e}): {body}"))
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_answers_a_pending_upload_with_a_presigned_url() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("create");
    let bucket_id = str_field(&app.create_bucket(&bucket).await, "bucket_id").to_string();

    let (status, body) = app
        .create_upload(
            &bucket,
            json!({ "filename": "report.txt", "content_type": "text/plain" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let upload_id = str_field(&body, "upload_id").to_string();
    assert!(upload_id.starts_with("upl_"), "{body}");
    assert_eq!(body["bucket_id"], json!(bucket_id), "{body}");
    assert_eq!(body["status"], json!("PENDING"), "{body}");
    assert_eq!(body["filename"], json!("report.txt"), "{body}");
    assert_eq!(body["content_type"], json!("text/plain"), "{body}");
    assert_eq!(
        body["s3_key"],
        json!(format!(
            "{}/{}/{}/report.txt",
            app.namespace_id, bucket_id, upload_id
        )),
        "{body}"
    );
    assert_eq!(
        body["presigned_url_expiration"].as_i64(),
        Some(3600),
        "{body}"
    );
    assert_eq!(
        (ts(&body, "expires_at") - ts(&body, "created_at")).num_seconds(),
        3600,
        "{body}"
    );
    assert_eq!(body["blob_property"], json!("report"), "{body}");
    assert_eq!(body["blob_type"], json!("text"), "{body}");
    assert_eq!(body["skip_duplicates"], json!(true), "{body}");
    assert_eq!(body["create_object_on_confirm"], json!(true), "{body}");
    assert_eq!(body["is_duplicate"], json!(false), "{body}");
    assert_eq!(body["file_hash"], Value::Null, "{body}");
    assert_eq!(body["object_id"], Value::Null, "{body}");

    let url =
        reqwest::Url::parse(str_field(&body, "presigned_url")).expect("presigned_url is a URL");
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert!(q.contains_key("X-Amz-Signature"), "{url}");
    let signed = q.get("X-Amz-SignedHeaders").cloned().unwrap_or_default();
    assert!(
        signed.split(';').any(|h| h == "content-type"),
        "the Content-Type is signed: {url}"
    );

    // The same upload by id and by bucket id.
    let again = app.get_upload(&bucket_id, &upload_id).await;
    assert_eq!(again["status"], json!("PENDING"), "{again}");
    assert_eq!(again["s3_key"], body["s3_key"], "{again}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_honours_expiration_and_derives_blob_type() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("types");
    app.create_bucket(&bucket).await;

    let (status, body) = app
        .create_upload(
            &bucket,
            json!({
                "filename": "clip.mp4", "content_type": "video/mp4",
                "presigned_url_expiration": 120, "metadata": { "k": "v" }
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (ts(&body, "expires_at") - ts(&body, "created_at")).num_seconds(),
        120,
        "{body}"
    );
    assert_eq!(body["metadata"], json!({ "k": "v" }), "{body}");

    for (ct, expected) in [
        ("video/mp4", "video"),
        ("image/png", "image"),
        ("audio/mpeg", "audio"),
        ("text/csv", "text"),
        ("application/pdf", "pdf"),
        ("application/zip", "string"),
    ] {
        let (status, body) = app
            .create_upload(
                &bucket,
                json!({ "filename": "file_1.bin", "content_type": ct }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{ct}: {body}");
        assert_eq!(body["blob_type"], json!(expected), "{ct}: {body}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_size_over_storage_quota_is_refused_at_create() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("quota");
    app.create_bucket(&bucket).await;
    upconfirm::cli::admin::set_namespace_limits(&app.pool, &app.namespace_id, None, Some(10))
        .await
        .expect("set limits");

    let (status, body) = app
        .create_upload(
            &bucket,
            json!({ "filename": "a.txt", "content_type": "text/plain", "file_size_bytes": 100 }),
        )
        .await;
    assert_error(status, &body, 403, "QuotaExceededError");
    let d = &body["error"]["details"];
    assert!(d["resource"].is_string(), "{body}");
    assert!(d["current"].is_number(), "{body}");
    assert_eq!(d["limit"].as_i64(), Some(10), "{body}");

    // Within the quota: accepted.
    let (status, body) = app
        .create_upload(
            &bucket,
            json!({ "filename": "a.txt", "content_type": "text/plain", "file_size_bytes": 5 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_over_storage_quota_fails_the_upload() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("quotac");
    app.create_bucket(&bucket).await;
    upconfirm::cli::admin::set_namespace_limits(&app.pool, &app.namespace_id, None, Some(10))
        .await
        .expect("set limits");
    let bytes = random_bytes(100);
    let (id, _) = app
        .upload_file(&bucket, "a.txt", "text/plain", &bytes, json!({}))
        .await;

    let (status, body) = app.confirm(&bucket, &id, "", None).await;
    assert_error(status, &body, 403, "QuotaExceededError");
    let d = &body["error"]["details"];
    assert!(d["resource"].is_string(), "{body}");
    assert_eq!(d["limit"].as_i64(), Some(10), "{body}");

    let upload = app.get_upload(&bucket, &id).await;
    assert_eq!(upload["status"], json!("FAILED"), "{upload}");
    assert!(!upload["error"].is_null(), "{upload}");
    assert_eq!(app.count_objects_for_upload(&id).await, 0);
    assert_eq!(app.storage_used().await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_file_limit_is_enforced_at_create_and_confirm() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("perfile");
    app.create_bucket(&bucket).await;
    upconfirm::cli::admin::set_namespace_limits(&app.pool, &app.namespace_id, Some(50), None)
        .await
        .expect("set limits");

    let (status, body) = app
        .create_upload(
            &bucket,
            json!({ "filename": "a.txt", "content_type": "text/plain", "file_size_bytes": 100 }),
        )
        .await;
    assert_error(status, &body, 403, "QuotaExceededError");
    assert_eq!(
        body["error"]["details"]["limit"].as_i64(),
        Some(50),
        "{body}"
    );

    // Size unknown at create: the limit applies once S3's size is known.
    let bytes = random_bytes(100);
    let (id, _) = app
        .upload_file(&bucket, "b.txt", "text/plain", &bytes, json!({}))
        .await;
    let (status, body) = app.confirm(&bucket, &id, "", None).await;
    assert_error(status, &body, 403, "QuotaExceededError");
    let upload = app.get_upload(&bucket, &id).await;
    assert_eq!(upload["status"], json!("FAILED"), "{upload}");

    // A file under the limit goes through.
    let small = random_bytes(40);
    let (id, _) = app
        .upload_file(&bucket, "c.txt", "text/plain", &small, json!({}))
        .await;
    let (status, body) = app.confirm(&bucket, &id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], json!("COMPLETED"), "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_are_created_found_and_unique_per_namespace() {
    let app = TestApp::spawn().await;
    let name = bucket_name("bkt");
    let (status, created) = send(
        app.post("/v1/buckets")
            .json(&json!({ "bucket_name": name, "description": "d", "metadata": { "team": "a" } })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let bucket_id = str_field(&created, "bucket_id").to_string();
    assert!(bucket_id.starts_with("bkt_"), "{created}");
    assert_eq!(created["bucket_name"], json!(name), "{created}");
    assert!(created["created_at"].is_string(), "{created}");

    let (status, body) = send(
        app.post("/v1/buckets")
            .json(&json!({ "bucket_name": name })),
    )
    .await;
    assert_error(status, &body, 409, "AlreadyExistsError");

    let (status, by_id) = send(app.get(&format!("/v1/buckets/{bucket_id}"))).await;
    assert_eq!(status, StatusCode::OK, "{by_id}");
    let (status, by_name) = send(app.get(&format!("/v1/buckets/{name}"))).await;
    assert_eq!(status, StatusCode::OK, "{by_name}");
    assert_eq!(by_id["bucket_id"], json!(bucket_id), "{by_id}");
    assert_eq!(by_name["bucket_id"], json!(bucket_id), "{by_name}");
    assert_eq!(by_name["bucket_name"], json!(name), "{by_name}");

    for unknown in ["no-such-bucket", "bkt_doesnotexist0000"] {
        let (status, body) = send(app.get(&format!("/v1/buckets/{unknown}"))).await;
        assert_error(status, &body, 404, "NotFoundError");
    }

    // Unique within a namespace only: another organization may use the name.
    let other = app.second_tenant().await;
    let (status, body) = send(
        app.request_as(
            reqwest::Method::POST,
            "/v1/buckets",
            Some(&other.api_key),
            Some(&other.namespace),
        )
        .json(&json!({ "bucket_name": name })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(body["bucket_id"], json!(bucket_id), "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_to_an_unknown_bucket_are_not_found() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .create_upload(
            "no-such-bucket",
            json!({ "filename": "a.txt", "content_type": "text/plain" }),
        )
        .await;
    assert_error(status, &body, 404, "NotFoundError");

    let bucket = bucket_name("known");
    app.create_bucket(&bucket).await;
    let (status, body) =
        send(app.get(&format!("/v1/buckets/{bucket}/uploads/upl_doesnotexist"))).await;
    assert_error(status, &body, 404, "NotFoundError");
    let (status, body) = app.confirm(&bucket, "upl_doesnotexist", "", None).await;
    assert_error(status, &body, 404, "NotFoundError");
    app.stop().await;
}

/// Without a quota, usage goes to the ledger (no lock on the namespace row); the fold moves
/// it into the namespace in one statement, counted once throughout; a quota set later
/// counts both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_ledger_is_folded_and_counted_by_a_later_quota() {
    // Folded by hand below, one step at a time.
    let app = TestApp::spawn_with(|c| c.worker.usage_fold_interval_ms = 0).await;
    let bucket = bucket_name("ledger");
    app.create_bucket(&bucket).await;
    for (name, size) in [("a.bin", 1_000), ("b.bin", 2_000)] {
        let id = app.upload_bin(&bucket, name, &random_bytes(size)).await;
        let (status, body) = app.confirm(&bucket, &id, "", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let folded = || async {
        sqlx::query_scalar::<_, i64>("SELECT storage_used_bytes FROM namespaces WHERE id = $1")
            .bind(&app.namespace_id)
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    let ledger_rows = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM namespace_usage WHERE namespace_id = $1")
            .bind(&app.namespace_id)
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    assert_eq!(ledger_rows().await, 2);
    assert_eq!(folded().await, 0);
    assert_eq!(app.storage_used().await, 3_000);

    // One row at a time: the total never changes, whatever was folded.
    assert_eq!(
        upconfirm::store::tenancy::fold_usage(&app.pool, 1)
            .await
            .unwrap(),
        1
    );
    assert_eq!(ledger_rows().await, 1);
    assert!([1_000, 2_000].contains(&folded().await));
    assert_eq!(app.storage_used().await, 3_000);
    assert!(
        upconfirm::store::tenancy::fold_usage(&app.pool, 10)
            .await
            .unwrap()
            >= 1
    );
    assert_eq!(ledger_rows().await, 0);
    assert_eq!(folded().await, 3_000);

    // A quota set now sees all 3,000 bytes: 400 more fit under 3,500, 200 more then do not.
    upconfirm::cli::admin::set_namespace_limits(&app.pool, &app.namespace_id, None, Some(3_500))
        .await
        .expect("set limits");
    let id = app.upload_bin(&bucket, "c.bin", &random_bytes(400)).await;
    let (status, body) = app.confirm(&bucket, &id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ledger_rows().await, 0, "with a quota the row itself grows");
    assert_eq!(folded().await, 3_400);
    let id = app.upload_bin(&bucket, "d.bin", &random_bytes(200)).await;
    let (status, body) = app.confirm(&bucket, &id, "", None).await;
    assert_error(status, &body, 403, "QuotaExceededError");
    assert_eq!(
        body["error"]["details"]["current"].as_i64(),
        Some(3_400),
        "{body}"
    );
    assert_eq!(app.storage_used().await, 3_400);
    app.stop().await;
}
#[tokio::test]
async fn workers_fold_the_usage_ledger_on_their_own() {
    let app = TestApp::spawn_with(|c| c.worker.usage_fold_interval_ms = 100).await;
    let bucket = bucket_name("fold");
    app.create_bucket(&bucket).await;
    let id = app.upload_bin(&bucket, "a.bin", &random_bytes(1_234)).await;
    let (status, body) = app.confirm(&bucket, &id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (folded, ledger): (i64, i64) = sqlx::query_as(
            "SELECT storage_used_bytes, (SELECT count(*) FROM namespace_usage WHERE namespace_id = $1)
             FROM namespaces WHERE id = $1",
        )
        .bind(&app.namespace_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if ledger == 0 {
            assert_eq!(folded, 1_234);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ledger still holds {ledger} row(s)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(app.storage_used().await, 1_234);
}
