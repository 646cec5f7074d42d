//! Deduplication by content hash within a bucket.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use upconfirm::api::task_outputs::TASK_OUTPUTS;
use upconfirm::store::completion::{self, Completion, Finish, Grouped, Verified};
use upconfirm::store::start::{self, JobRef, Start};
use upconfirm::store::BatchDestination;

/// Starts (task id, upload id) jobs in one group, as a worker's grouped step does.
async fn start_many(pool: &sqlx::PgPool, jobs: &[(String, String)]) -> sqlx::Result<Vec<Start>> {
    let jobs: Vec<JobRef> = jobs
        .iter()
        .map(|(task_id, upload_id)| JobRef {
            task_id: task_id.clone().into(),
            upload_id: upload_id.clone().into(),
        })
        .collect();
    start::start(pool, &jobs).await
}

/// Starts one job: a group of one.
async fn start_one(pool: &sqlx::PgPool, task_id: &str, upload_id: &str) -> sqlx::Result<Start> {
    let mut started = start_many(pool, &[(task_id.to_owned(), upload_id.to_owned())]).await?;
    Ok(started.pop().expect("one result per job"))
}

/// Finishes completions in one group, with the outputs the service writes.
async fn complete_group(pool: &sqlx::PgPool, group: &[Completion]) -> sqlx::Result<Grouped> {
    let batches = BatchDestination {
        exchange: String::new(),
        routing_key: String::new(),
    };
    completion::complete(pool, group, &TASK_OUTPUTS, &batches).await
}

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

    let first = app.upload_bin(&bucket, "a.bin", &bytes).await;
    let c1 = confirm_ok(&app, &bucket, &first).await;
    let second = app.upload_bin(&bucket, "b.bin", &bytes).await;
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

    let first = app.upload_bin(&bucket, "a.bin", &bytes).await;
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

    let first = app.upload_bin(&b1, "a.bin", &bytes).await;
    let c1 = confirm_ok(&app, &b1, &first).await;
    let second = app.upload_bin(&b2, "a.bin", &bytes).await;
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
    assert_eq!(status, StatusCode::OK, "a known hash answers 200: {body}");
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
    assert_eq!(status, StatusCode::OK, "{body}");
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
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(body["upload_id"], json!(first), "{body}");
    assert!(body["presigned_url"].is_string(), "{body}");
    app.stop().await;
}

/// Queues async confirmations of `files` with no worker running; returns (upload, task) ids.
async fn queue_confirms(app: &TestApp, bucket: &str, files: &[Vec<u8>]) -> Vec<(String, String)> {
    let mut queued = Vec::new();
    for (i, bytes) in files.iter().enumerate() {
        let id = app.upload_bin(bucket, &format!("g{i}.bin"), bytes).await;
        let (status, accepted) = app.confirm(bucket, &id, "async=true", None).await;
        assert_eq!(status, StatusCode::OK, "{accepted}");
        queued.push((id, str_field(&accepted, "task_id").to_owned()));
    }
    queued
}

/// Starts each queued job as a worker would, and what it would have verified.
async fn started(app: &TestApp, queued: &[(String, String)], files: &[Vec<u8>]) -> Vec<Completion> {
    let mut group = Vec::new();
    for ((upload_id, task_id), bytes) in queued.iter().zip(files) {
        let start = start_one(&app.pool, task_id, upload_id).await.unwrap();
        assert!(matches!(start, Start::Started(_)), "{start:?}");
        group.push(Completion {
            task_id: task_id.clone().into(),
            upload_id: upload_id.clone().into(),
            verified: Verified {
                content_hash: sha256_hex(bytes),
                size: bytes.len() as i64,
                etag: "etag".into(),
                s3_key: format!("confirmed/{upload_id}"),
            },
            submit_batch: false,
        });
    }
    group
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_completions_finishes_as_each_alone_would() {
    let app = TestApp::spawn_components(API_ONLY, |_| {}).await;
    let bucket = bucket_name("group");
    let bucket_id = str_field(&app.create_bucket(&bucket).await, "bucket_id").to_string();
    let same = random_bytes(700);
    let files = vec![
        same.clone(),
        same.clone(),
        random_bytes(900),
        random_bytes(300),
    ];
    let queued = queue_confirms(&app, &bucket, &files).await;
    let group = started(&app, &queued, &files).await;
    // The last one is canceled after its worker started it; its completion must change nothing.
    let (status, body) = send(app.delete(&format!("/v1/tasks/{}", queued[3].1))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The first completion twice, as a redelivery running beside the first delivery.
    let mut twice = group.clone();
    twice.insert(1, group[0].clone());

    let Grouped::Done(finished) = complete_group(&app.pool, &twice).await.unwrap() else {
        panic!("no quota here: the group is finished as one");
    };
    let kinds: Vec<&str> = finished
        .iter()
        .map(|f| match f {
            Finish::Completed(u) if u.is_duplicate => "duplicate",
            Finish::Completed(_) => "completed",
            Finish::Stale => "stale",
            Finish::QuotaExceeded { .. } => "quota",
        })
        .collect();
    assert_eq!(
        kinds,
        ["completed", "stale", "duplicate", "completed", "stale"]
    );

    let first = app.get_upload(&bucket, &queued[0].0).await;
    let second = app.get_upload(&bucket, &queued[1].0).await;
    assert_eq!(
        second["duplicate_of_upload_id"],
        json!(queued[0].0),
        "{second}"
    );
    assert_eq!(second["object_id"], first["object_id"], "{second}");
    assert!(first["object_id"].is_string(), "{first}");
    assert_eq!(
        app.get_upload(&bucket, &queued[3].0).await["status"],
        "PENDING"
    );
    for (i, (_, task)) in queued.iter().enumerate().take(3) {
        let task = app.wait_task(task).await;
        assert_eq!(task["status"], "COMPLETED", "{i}: {task}");
        assert_eq!(
            task["outputs"][0]["upload_id"],
            json!(queued[i].0),
            "{task}"
        );
    }
    assert_eq!(app.count_objects_in_bucket(&bucket_id).await, 2);
    assert_eq!(
        app.storage_used().await,
        (same.len() + files[2].len()) as i64
    );

    // A batch confirmation waiting on grouped children completes with them.
    let files = vec![random_bytes(100), random_bytes(200)];
    let mut ids = Vec::new();
    for (i, bytes) in files.iter().enumerate() {
        let id = app.upload_bin(&bucket, &format!("p{i}.bin"), bytes).await;
        ids.push(id);
    }
    let (status, batch) = app.batch_confirm_ids(&bucket, &ids).await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    let mut children = Vec::new();
    for id in &ids {
        let row: (String,) = sqlx::query_as("SELECT task_id FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        children.push((id.clone(), row.0));
    }
    let group = started(&app, &children, &files).await;
    let done = complete_group(&app.pool, &group).await.unwrap();
    assert!(
        matches!(done, Grouped::Done(ref f) if f.iter().all(|f| matches!(f, Finish::Completed(_)))),
        "{done:?}"
    );
    let parent = app.wait_task(str_field(&batch, "task_id")).await;
    assert_eq!(parent["status"], "COMPLETED", "{parent}");

    // Under a quota, a group writes nothing and is sent back to be finished one by one.
    sqlx::query("UPDATE namespaces SET storage_quota_bytes = 1000000 WHERE id = $1")
        .bind(&app.namespace_id)
        .execute(&app.pool)
        .await
        .unwrap();
    let files = vec![random_bytes(50)];
    let queued = queue_confirms(&app, &bucket, &files).await;
    let group = started(&app, &queued, &files).await;
    let sent_back = complete_group(&app.pool, &group).await.unwrap();
    assert!(matches!(sent_back, Grouped::OneByOne), "{sent_back:?}");
    assert_eq!(
        app.get_upload(&bucket, &queued[0].0).await["status"],
        "PROCESSING"
    );
    app.stop().await;
}

/// A task's status and the attempts it counted.
async fn attempts(app: &TestApp, task_id: &str) -> (String, i32) {
    let (status, _, attempts) = app.task_row(task_id).await;
    (status, attempts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_starts_starts_as_each_alone_would() {
    let app = TestApp::spawn_components(API_ONLY, |_| {}).await;
    let bucket = bucket_name("starts");
    app.create_bucket(&bucket).await;
    let files = vec![random_bytes(100), random_bytes(200), random_bytes(300)];
    let queued = queue_confirms(&app, &bucket, &files).await;
    let (status, body) = send(app.delete(&format!("/v1/tasks/{}", queued[2].1))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let unknown = ("tsk_no_such_task".to_owned(), queued[0].0.clone());
    // The first job twice, as a redelivery beside its first delivery.
    let jobs: Vec<(String, String)> = [0, 1, 0, 2]
        .iter()
        .map(|&i| (queued[i].1.clone(), queued[i].0.clone()))
        .chain([unknown.clone()])
        .collect();

    let starts = start_many(&app.pool, &jobs).await.unwrap();
    assert_eq!(starts.len(), jobs.len());
    for (i, start) in starts.iter().take(3).enumerate() {
        let Start::Started(started) = start else {
            panic!("{i}: {start:?}");
        };
        let upload = started.upload.as_ref().expect("the upload is read");
        assert_eq!(upload.id, jobs[i].1);
        assert_eq!(upload.status, "PROCESSING");
        let namespace = started.namespace.as_ref().expect("its namespace is read");
        assert_eq!(namespace.id, upload.namespace_id);
        assert!(started.inputs.is_object(), "{:?}", started.inputs);
    }
    assert!(matches!(starts[3], Start::Terminal), "{starts:?}");
    assert!(matches!(starts[4], Start::Unknown), "{starts:?}");
    // Named twice in one group, started once.
    assert_eq!(
        attempts(&app, &queued[0].1).await,
        ("IN_PROGRESS".into(), 1)
    );
    assert_eq!(
        attempts(&app, &queued[1].1).await,
        ("IN_PROGRESS".into(), 1)
    );
    assert_eq!(attempts(&app, &queued[2].1).await.0, "CANCELED");

    // Alone, each says the same; a running task restarts and counts the attempt.
    let again = start_one(&app.pool, &queued[1].1, &queued[1].0)
        .await
        .unwrap();
    assert!(matches!(again, Start::Started(_)), "{again:?}");
    assert_eq!(
        attempts(&app, &queued[1].1).await,
        ("IN_PROGRESS".into(), 2)
    );
    let canceled = start_one(&app.pool, &queued[2].1, &queued[2].0)
        .await
        .unwrap();
    assert!(matches!(canceled, Start::Terminal), "{canceled:?}");
    let missing = start_one(&app.pool, &unknown.0, &unknown.1).await.unwrap();
    assert!(matches!(missing, Start::Unknown), "{missing:?}");
    assert!(start_many(&app.pool, &[]).await.unwrap().is_empty());
    app.stop().await;
}
