//! Confirmation of uploads: sync and async answers, verification, idempotency, batches.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A bucket plus one uploaded (PUT, not yet confirmed) file.
async fn uploaded(
    app: &TestApp,
    tag: &str,
    len: usize,
    extra: Value,
) -> (String, String, Vec<u8>, Value) {
    let bucket = bucket_name(tag);
    app.create_bucket(&bucket).await;
    let bytes = random_bytes(len);
    let (id, created) = app
        .upload_file(&bucket, "report.txt", "text/plain", &bytes, extra)
        .await;
    (bucket, id, bytes, created)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_confirm_completes_and_records_the_object() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("sync");
    app.create_bucket(&bucket).await;
    let bytes = random_bytes(3_000);
    let (id, created, put_etag) = app
        .upload_file_etag(&bucket, "report.txt", "text/plain", &bytes, json!({}))
        .await;
    assert_eq!(created["status"], json!("PENDING"), "{created}");

    let (status, body) = app.confirm(&bucket, &id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], json!("COMPLETED"), "{body}");
    assert_eq!(body["upload_id"], json!(id));
    let object_id = str_field(&body, "object_id").to_string();
    assert!(object_id.starts_with("obj_"), "{body}");
    assert_eq!(body["file_hash"], json!(sha256_hex(&bytes)), "{body}");
    assert_eq!(
        body["file_size_bytes"].as_i64(),
        Some(bytes.len() as i64),
        "{body}"
    );
    let etag = str_field(&body, "etag");
    assert!(
        !etag.is_empty() && !etag.starts_with('"'),
        "etag is unquoted: {body}"
    );
    if let Some(put_etag) = put_etag {
        assert!(
            etag.eq_ignore_ascii_case(&put_etag),
            "etag {etag} vs S3's {put_etag}"
        );
    }
    assert!(body["verified_at"].is_string(), "{body}");
    assert!(body["completed_at"].is_string(), "{body}");

    let upload = app.get_upload(&bucket, &id).await;
    assert_eq!(upload["status"], json!("COMPLETED"), "{upload}");
    assert_eq!(upload["object_id"], json!(object_id), "{upload}");
    assert_eq!(
        upload["presigned_url"],
        Value::Null,
        "the PUT URL is never shown again: {upload}"
    );
    assert_eq!(upload["file_hash"], json!(sha256_hex(&bytes)), "{upload}");
    assert_eq!(upload["is_duplicate"], json!(false), "{upload}");
    assert_eq!(app.count_objects_for_upload(&id).await, 1);
    assert_eq!(app.storage_used().await, bytes.len() as i64);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_confirm_answers_processing_then_the_task_completes() {
    let app = TestApp::spawn().await;
    let (bucket, id, bytes, _) = uploaded(&app, "async", 2_048, json!({})).await;

    let (status, body) = app.confirm(&bucket, &id, "async=true", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], json!("PROCESSING"), "{body}");
    assert_eq!(body["upload_id"], json!(id), "{body}");
    let task_id = str_field(&body, "task_id").to_string();
    assert!(task_id.starts_with("task_"), "{body}");
    assert!(body["message"].is_string(), "{body}");

    let task = app.wait_task(&task_id).await;
    assert_eq!(task["status"], json!("COMPLETED"), "{task}");
    assert_eq!(
        task["task_type"],
        json!("api_buckets_uploads_confirm"),
        "{task}"
    );
    assert_eq!(task["task_id"], json!(task_id), "{task}");

    let upload = app.get_upload(&bucket, &id).await;
    assert_eq!(upload["status"], json!("COMPLETED"), "{upload}");
    assert!(
        str_field(&upload, "object_id").starts_with("obj_"),
        "{upload}"
    );
    assert_eq!(upload["file_hash"], json!(sha256_hex(&bytes)), "{upload}");
    assert_eq!(upload["task_id"], json!(task_id), "{upload}");
    assert_eq!(app.count_objects_for_upload(&id).await, 1);
    app.wait_outbox_empty().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_size_of_100_mib_makes_confirm_async() {
    let app = TestApp::spawn().await;
    let (bucket, id, _, _) = uploaded(
        &app,
        "big",
        1_000,
        json!({ "file_size_bytes": 104_857_600 }),
    )
    .await;

    // No size in the confirm body: only that size is compared with S3's.
    let (status, body) = app.confirm(&bucket, &id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], json!("PROCESSING"), "{body}");
    let task_id = str_field(&body, "task_id").to_string();
    assert!(task_id.starts_with("task_"), "{body}");

    let task = app.wait_task(&task_id).await;
    assert_eq!(task["status"], json!("COMPLETED"), "{task}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_seen_by_the_worker_above_threshold_makes_confirm_async() {
    let app = TestApp::spawn_with(|cfg| cfg.confirm.async_threshold_bytes = 1_000).await;
    let (bucket, id, _, _) = uploaded(&app, "thresh", 4_000, json!({})).await;

    let (status, body) = app.confirm(&bucket, &id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], json!("PROCESSING"), "{body}");
    let task_id = str_field(&body, "task_id").to_string();

    let task = app.wait_task(&task_id).await;
    assert_eq!(task["status"], json!("COMPLETED"), "{task}");
    let upload = app.get_upload(&bucket, &id).await;
    assert_eq!(upload["status"], json!("COMPLETED"), "{upload}");
    assert_eq!(app.count_objects_for_upload(&id).await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etag_with_or_without_quotes_is_accepted() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("etag");
    app.create_bucket(&bucket).await;

    for (i, quoted) in [(0, true), (1, false), (2, true)] {
        let bytes = random_bytes(1_500 + i);
        let (id, _, put_etag) = app
            .upload_file_etag(
                &bucket,
                "e.bin",
                "application/octet-stream",
                &bytes,
                json!({}),
            )
            .await;
        let etag = put_etag.expect("S3 answers the PUT with an ETag");
        let sent = match (quoted, i) {
            (true, 2) => format!("\"{}\"", etag.to_uppercase()),
            (true, _) => format!("\"{etag}\""),
            (false, _) => etag.clone(),
        };
        let (status, body) = app
            .confirm(&bucket, &id, "", Some(json!({ "etag": sent })))
            .await;
        assert_eq!(status, StatusCode::OK, "etag {sent}: {body}");
        assert_eq!(body["status"], json!("COMPLETED"), "etag {sent}: {body}");
        assert!(
            str_field(&body, "etag").eq_ignore_ascii_case(&etag),
            "{body}"
        );
    }
    app.stop().await;
}

async fn assert_failed_with(
    app: &TestApp,
    bucket: &str,
    id: &str,
    body: Option<Value>,
    reason: &str,
) -> Value {
    let (status, answer) = app.confirm(bucket, id, "", body).await;
    assert_error(status, &answer, 400, "BadRequestError");
    let details = &answer["error"]["details"];
    assert_eq!(details["reason"], json!(reason), "{answer}");
    if reason != "object_not_found" {
        assert!(
            !details["expected"].is_null(),
            "details.expected in {answer}"
        );
        assert!(!details["actual"].is_null(), "details.actual in {answer}");
    }
    let upload = app.get_upload(bucket, id).await;
    assert_eq!(upload["status"], json!("FAILED"), "{upload}");
    assert!(
        upload["error"].is_string() || upload["error"].is_object(),
        "error set on the failed upload: {upload}"
    );
    assert_eq!(app.count_objects_for_upload(id).await, 0);
    answer
}

/// `expected`/`actual` of a mismatch name the client's claim and S3's value, in either
/// order (the contract does not say which side is "expected"). Numbers may be strings.
fn assert_pair(answer: &Value, claimed: &Value, real: Option<&Value>) {
    let norm = |v: &Value| match v {
        Value::String(s) => s.trim_matches('"').to_ascii_lowercase(),
        other => other.to_string(),
    };
    let d = &answer["error"]["details"];
    let got = [norm(&d["expected"]), norm(&d["actual"])];
    assert!(
        got.contains(&norm(claimed)),
        "the claimed value {claimed} in {answer}"
    );
    if let Some(real) = real {
        assert!(
            got.contains(&norm(real)),
            "the actual value {real} in {answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etag_mismatch_fails_the_upload() {
    let app = TestApp::spawn().await;
    let (bucket, id, _, _) = uploaded(&app, "etagmm", 1_000, json!({})).await;
    let wrong = "0123456789abcdef0123456789abcdef";
    let answer = assert_failed_with(
        &app,
        &bucket,
        &id,
        Some(json!({ "etag": wrong })),
        "etag_mismatch",
    )
    .await;
    assert_pair(&answer, &json!(wrong), None);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_mismatch_fails_the_upload() {
    let app = TestApp::spawn().await;
    let (bucket, id, bytes, _) = uploaded(&app, "sizemm", 1_000, json!({})).await;
    let answer = assert_failed_with(
        &app,
        &bucket,
        &id,
        Some(json!({ "file_size_bytes": 999 })),
        "size_mismatch",
    )
    .await;
    assert_pair(&answer, &json!(999), Some(&json!(bytes.len())));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_hash_mismatch_fails_the_upload() {
    let app = TestApp::spawn().await;
    let claimed = sha256_hex(b"not the bytes that are uploaded");
    let (bucket, id, bytes, _) =
        uploaded(&app, "hashmm", 1_000, json!({ "file_hash": claimed })).await;
    let answer = assert_failed_with(&app, &bucket, &id, None, "hash_mismatch").await;
    assert_pair(&answer, &json!(claimed), Some(&json!(sha256_hex(&bytes))));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_without_put_reports_object_not_found() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("nf");
    app.create_bucket(&bucket).await;
    let created = app
        .create_pending(&bucket, "never.txt", "text/plain", json!({}))
        .await;
    let id = str_field(&created, "upload_id");
    assert_failed_with(&app, &bucket, id, None, "object_not_found").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_verification_failure_fails_the_task() {
    let app = TestApp::spawn().await;
    let (bucket, id, _, _) = uploaded(&app, "asyncfail", 1_000, json!({})).await;
    let (status, body) = app
        .confirm(
            &bucket,
            &id,
            "async=true",
            Some(json!({ "file_size_bytes": 5 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], json!("PROCESSING"), "{body}");
    let task = app.wait_task(str_field(&body, "task_id")).await;
    assert_eq!(task["status"], json!("FAILED"), "{task}");
    assert!(!task["error"].is_null(), "task error set: {task}");
    let upload = app.get_upload(&bucket, &id).await;
    assert_eq!(upload["status"], json!("FAILED"), "{upload}");
    assert!(!upload["error"].is_null(), "{upload}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_upload_can_be_confirmed_again() {
    let app = TestApp::spawn().await;
    let (bucket, id, bytes, _) = uploaded(&app, "retry", 1_200, json!({})).await;
    let (status, body) = app
        .confirm(&bucket, &id, "", Some(json!({ "file_size_bytes": 1 })))
        .await;
    assert_error(status, &body, 400, "BadRequestError");

    let (status, body) = app.confirm(&bucket, &id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], json!("COMPLETED"), "{body}");
    assert_eq!(body["file_hash"], json!(sha256_hex(&bytes)), "{body}");
    assert_eq!(app.count_objects_for_upload(&id).await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirming_a_completed_upload_returns_the_stored_result() {
    let app = TestApp::spawn().await;
    let (bucket, id, _, _) = uploaded(&app, "idem", 1_000, json!({})).await;
    let (status, first) = app.confirm(&bucket, &id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["status"], json!("COMPLETED"), "{first}");

    for _ in 0..2 {
        let (status, again) = app.confirm(&bucket, &id, "", Some(json!({}))).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["status"], json!("COMPLETED"), "{again}");
        assert_eq!(again["object_id"], first["object_id"], "{again}");
        assert_eq!(again["file_hash"], first["file_hash"], "{again}");
        assert_eq!(again["etag"], first["etag"], "{again}");
        assert_eq!(
            again["task_id"], first["task_id"],
            "nothing is redone: {again}"
        );
    }
    assert_eq!(app.count_objects_for_upload(&id).await, 1);
    assert_eq!(app.storage_used().await, 1_000, "usage is counted once");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_submit_batch_creates_and_submits_a_batch() {
    let app = TestApp::spawn().await;
    let (bucket, id, _, _) = uploaded(&app, "batch", 1_000, json!({})).await;
    let (status, body) = app
        .confirm(&bucket, &id, "", Some(json!({ "auto_submit_batch": true })))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], json!("COMPLETED"), "{body}");
    let batch_id = str_field(&body, "batch_id").to_string();
    assert!(batch_id.starts_with("btch_"), "{body}");
    let task_id = str_field(&body, "task_id").to_string();
    assert!(task_id.starts_with("task_"), "{body}");

    let (batch_status, batch_task) = sqlx::query_as::<_, (String, Option<String>)>(
        "SELECT status::text, task_id::text FROM batches WHERE id = $1",
    )
    .bind(&batch_id)
    .fetch_one(&app.pool)
    .await
    .expect("the batch row exists");
    assert_eq!(batch_status, "PENDING");
    let batch_task = batch_task.expect("the batch has a submit task");
    assert_eq!(
        batch_task, task_id,
        "the returned task is the batch's submit task"
    );
    let task_type =
        sqlx::query_scalar::<_, String>("SELECT task_type::text FROM tasks WHERE id = $1")
            .bind(&batch_task)
            .fetch_one(&app.pool)
            .await
            .expect("the submit task exists");
    assert_eq!(task_type, "api_buckets_batches_submit");

    let upload = app.get_upload(&bucket, &id).await;
    assert_eq!(upload["status"], json!("COMPLETED"), "{upload}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_confirms_agree_on_one_object() {
    let app = TestApp::spawn().await;
    let (bucket, id, _, _) = uploaded(&app, "race", 5_000, json!({})).await;

    let answers =
        futures::future::join_all((0..50).map(|_| app.confirm(&bucket, &id, "", None))).await;
    let mut object_ids = std::collections::BTreeSet::new();
    let mut task_ids = std::collections::BTreeSet::new();
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        match body["status"].as_str() {
            Some("COMPLETED") => {
                object_ids.insert(str_field(body, "object_id").to_string());
            }
            Some("PROCESSING") => {}
            _ => panic!("unexpected confirm answer {body}"),
        }
        if let Some(t) = body["task_id"].as_str() {
            task_ids.insert(t.to_string());
        }
    }
    assert!(
        object_ids.len() <= 1,
        "answers disagree on the object: {object_ids:?}"
    );
    assert!(
        task_ids.len() <= 1,
        "more than one confirmation job: {task_ids:?}"
    );

    if let Some(task_id) = task_ids.iter().next() {
        let task = app.wait_task(task_id).await;
        assert_eq!(task["status"], json!("COMPLETED"), "{task}");
    }
    let upload = app.wait_upload(&bucket, &id).await;
    assert_eq!(upload["status"], json!("COMPLETED"), "{upload}");
    if let Some(object_id) = object_ids.iter().next() {
        assert_eq!(upload["object_id"], json!(object_id), "{upload}");
    }
    assert_eq!(app.count_objects_for_upload(&id).await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etag_hash_policy_reads_no_bytes_and_still_deduplicates() {
    let app = TestApp::spawn_with(|cfg| {
        cfg.worker.hash_policy = upconfirm::service::config::HashPolicy::Etag;
    })
    .await;
    let bucket = bucket_name("etagpolicy");
    app.create_bucket(&bucket).await;
    let bytes = random_bytes(2_000);
    let (first, _, etag) = app
        .upload_file_etag(
            &bucket,
            "a.bin",
            "application/octet-stream",
            &bytes,
            json!({}),
        )
        .await;
    let (status, c1) = app.confirm(&bucket, &first, "", None).await;
    assert_eq!(status, StatusCode::OK, "{c1}");
    let expected = upconfirm::domain::ContentHash::from_etag(&etag.expect("PUT ETag"));
    assert_eq!(c1["file_hash"], json!(expected.as_str()), "{c1}");
    assert_ne!(
        c1["file_hash"],
        json!(sha256_hex(&bytes)),
        "no bytes were hashed"
    );

    let (second, _) = app
        .upload_file(
            &bucket,
            "b.bin",
            "application/octet-stream",
            &bytes,
            json!({}),
        )
        .await;
    let (_, c2) = app.confirm(&bucket, &second, "", None).await;
    assert_eq!(c2["is_duplicate"], json!(true), "{c2}");
    assert_eq!(c2["object_id"], c1["object_id"], "{c2}");
    app.stop().await;
}
