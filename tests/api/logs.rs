//! Structured logs: with `LOG_FORMAT=json` every line is one JSON object, and the lines of a
//! request or a job carry its upload and task ids in their spans.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{self, free_port, random_bytes, str_field, TestApp, API_ONLY};

/// Starts `upconfirm <role>` with the app's settings and JSON logs written to `log`.
fn spawn(
    app: &TestApp,
    role: &str,
    extra: &[(&str, String)],
    log: &std::path::Path,
) -> tokio::process::Child {
    let file = std::fs::File::create(log).expect("log file");
    app.command(role)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info,tower_http=debug")
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(file)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start upconfirm")
}

/// The log's lines, each parsed as JSON (a line that is not JSON fails the test).
fn lines(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Whether a line was logged inside a span named `span` holding these fields.
fn in_span(line: &Value, span: &str, fields: &[(&str, &str)]) -> bool {
    line["spans"].as_array().is_some_and(|spans| {
        spans
            .iter()
            .any(|s| s["name"] == span && fields.iter().all(|(k, v)| s[*k].as_str() == Some(*v)))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_job_log_lines_carry_their_ids() {
    let app = TestApp::spawn_components(API_ONLY, |_| {}).await;
    let dir =
        std::env::temp_dir().join(format!("upconfirm-logs-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let _api = spawn(
        &app,
        "api",
        &[("LISTEN_ADDR", format!("127.0.0.1:{port}"))],
        &dir.join("api.log"),
    );
    let _worker = spawn(&app, "worker", &[], &dir.join("worker.log"));

    let bucket = common::bucket_name("logs");
    app.create_bucket(&bucket).await;
    let (upload_id, _) = app
        .upload_file(
            &bucket,
            "a.bin",
            "application/octet-stream",
            &random_bytes(1_000),
            json!({}),
        )
        .await;
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/buckets/{bucket}/uploads/{upload_id}/confirm");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let answer: Value = loop {
        let sent = http
            .post(&url)
            .bearer_auth(&app.api_key)
            .header("X-Namespace", &app.namespace)
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == StatusCode::OK => break r.json().await.unwrap(),
            // The process may still be starting.
            _ if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => panic!("confirm through the API process: {other:?}"),
        }
    };
    assert_eq!(answer["status"], "COMPLETED", "{answer}");
    let task_id = str_field(&answer, "task_id").to_owned();
    let ids = [
        ("upload_id", upload_id.as_str()),
        ("task_id", task_id.as_str()),
    ];

    // The worker logs the completion inside its job's span.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let worker = lines(&dir.join("worker.log"));
        if worker.iter().any(|l| {
            l["fields"]["message"] == "confirmation completed" && in_span(l, "confirm_job", &ids)
        }) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker log: {worker:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The API's request span names the upload, and the task the confirm started.
    let api = lines(&dir.join("api.log"));
    assert!(
        api.iter().any(|l| in_span(l, "request", &ids)),
        "api log: {api:#?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
