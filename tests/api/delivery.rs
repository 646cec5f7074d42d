//! How jobs travel: the outbox relay, redeliveries, and messages no worker can read.

use std::time::Duration;

use serde_json::json;

use crate::common::{self, random_bytes, str_field, TestApp, AMQP_URL};
use upconfirm::queue::{ConfirmJob, Publisher, Topology};
use upconfirm::store::outbox::OutboxMessage;
use upconfirm::store::tasks::NewTask;
use upconfirm::store::uploads::{begin_confirmation, ConfirmStart};

fn publisher(app: &TestApp) -> (Publisher, Topology) {
    let topology = Topology {
        prefix: app.queue_prefix().to_owned(),
        delivery_limit: 5,
    };
    (Publisher::new(AMQP_URL, topology.clone()), topology)
}

/// Confirms a fresh upload through the API and waits for it: every message published
/// before it on the same queue has been delivered by then.
async fn confirm_a_marker(app: &TestApp, bucket: &str) {
    let (id, _) = app
        .upload_file(
            bucket,
            "marker.txt",
            "text/plain",
            &random_bytes(64),
            json!({}),
        )
        .await;
    let (_, answer) = app.confirm(bucket, &id, "async=true", None).await;
    let task = app.wait_task(str_field(&answer, "task_id")).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_jobs_the_api_never_sent() {
    let app = TestApp::spawn().await;
    let bucket = common::bucket_name("relay");
    app.create_bucket(&bucket).await;
    let (upload_id, _) = app
        .upload_file(
            &bucket,
            "r.txt",
            "text/plain",
            &random_bytes(500),
            json!({}),
        )
        .await;

    // Accept a confirmation the way the API does, but leave publishing to the relay alone.
    let (_, topology) = publisher(&app);
    let task_id = upconfirm::domain::new_id(upconfirm::domain::IdKind::Task);
    let job = serde_json::to_value(ConfirmJob {
        task_id: task_id.clone().into(),
        upload_id: upload_id.clone().into(),
        accepted_at: None,
        namespace_id: None,
    })
    .unwrap();
    let queue = topology.confirm_queue();
    let started = begin_confirmation(
        &app.pool,
        &upload_id.as_str().into(),
        &NewTask {
            id: &task_id.as_str().into(),
            organization_id: &app.org_id.as_str().into(),
            namespace_id: &app.namespace_id.as_str().into(),
            task_type: upconfirm::domain::TaskType::UploadConfirm,
            status: upconfirm::domain::TaskStatus::Queued,
            inputs: &json!({ "upload_id": upload_id, "options": {} }),
            outputs: None,
        },
        &OutboxMessage {
            exchange: "",
            routing_key: &queue,
            message_id: &task_id,
            payload: &job,
            namespace_id: None,
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(started, ConfirmStart::Started { .. }),
        "{started:?}"
    );

    let task = app.wait_task(&task_id).await;
    assert_eq!(task["status"], "COMPLETED", "{task}");
    let upload = app.get_upload(&bucket, &upload_id).await;
    assert_eq!(upload["status"], "COMPLETED", "{upload}");
    assert_eq!(app.count_objects_for_upload(&upload_id).await, 1);
    app.wait_outbox_empty().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_job_of_a_finished_task_changes_nothing() {
    let app = TestApp::spawn().await;
    let bucket = common::bucket_name("redeliver");
    app.create_bucket(&bucket).await;
    let (upload_id, _) = app
        .upload_file(
            &bucket,
            "d.txt",
            "text/plain",
            &random_bytes(700),
            json!({}),
        )
        .await;
    let (_, first) = app.confirm(&bucket, &upload_id, "", None).await;
    assert_eq!(first["status"], "COMPLETED", "{first}");
    let task_id = str_field(&first, "task_id").to_owned();
    let before: (String, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT status, updated_at FROM tasks WHERE id = $1")
            .bind(&task_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let upload_before = app.get_upload(&bucket, &upload_id).await;

    let (publisher, topology) = publisher(&app);
    let job = serde_json::to_vec(&ConfirmJob {
        task_id: task_id.clone().into(),
        upload_id: upload_id.clone().into(),
        accepted_at: None,
        namespace_id: None,
    })
    .unwrap();
    for _ in 0..3 {
        publisher
            .publish("", &topology.confirm_queue(), &task_id, &job)
            .await
            .unwrap();
    }
    confirm_a_marker(&app, &bucket).await;

    let after: (String, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT status, updated_at FROM tasks WHERE id = $1")
            .bind(&task_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(after, before, "the finished task was touched");
    assert_eq!(app.get_upload(&bucket, &upload_id).await, upload_before);
    assert_eq!(app.count_objects_for_upload(&upload_id).await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_message_is_dead_lettered_and_work_goes_on() {
    let app = TestApp::spawn().await;
    let bucket = common::bucket_name("garbage");
    app.create_bucket(&bucket).await;
    let (publisher, topology) = publisher(&app);
    publisher
        .publish("", &topology.confirm_queue(), "garbage-1", b"\x00not json{")
        .await
        .unwrap();

    confirm_a_marker(&app, &bucket).await;

    let dead = topology.dead_letter_queue();
    let mut waited = Duration::ZERO;
    while common::queue_depth(&dead).await == 0 && waited < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    assert_eq!(
        common::queue_depth(&dead).await,
        1,
        "the garbage waits in the dead-letter queue"
    );
    app.stop().await;
}
