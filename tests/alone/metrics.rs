//! `/metrics` on the API and on a worker, scraped while confirmations complete, fail, are
//! retried, redelivered and dead-lettered, and wait in the outbox: every series moves.
//! One test in its own binary, since a process has one recorder.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{random_bytes, str_field, wait_for, TestApp, API_ONLY, WORKER_ONLY};

/// Series (name with labels, as rendered) and their values.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(client: &reqwest::Client, base: &str) -> BTreeMap<String, f64> {
    let response = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape /metrics");
    assert_eq!(response.status(), StatusCode::OK);
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    parse(&response.text().await.expect("metrics text"))
}

fn get(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

/// Scrapes until `check` holds on a series' value, within `within`.
async fn wait_series(
    client: &reqwest::Client,
    base: &str,
    series: &str,
    within: Duration,
    check: impl Fn(f64) -> bool,
) {
    wait_for(series, within, || async {
        check(get(&scrape(client, base).await, series))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_moves_while_confirmations_run() {
    let _alone = crate::ALONE.lock().await;
    let app = TestApp::spawn_components(API_ONLY, |c| {
        c.queue.delivery_limit = 2;
        c.worker.dead_letter_interval_ms = 200;
        // The API's own publish is what empties the outbox; the relay only takes over late.
        c.relay.relay_min_age_ms = 3_000;
        c.relay.relay_interval_ms = 100;
    })
    .await;
    let api = app.base_url.clone();
    let http = reqwest::Client::new();
    let worker = app
        .start_more_with(WORKER_ONLY, |c| {
            c.worker.health_listen_addr = Some("127.0.0.1:0".parse().unwrap());
        })
        .await;
    let worker_base = format!("http://{}", worker.health_addr.expect("worker listener"));
    let bucket = crate::common::bucket_name("metrics");
    app.create_bucket(&bucket).await;
    // Nothing scraped yet: what happens from now on must be recorded all the same, and this
    // process (one test) has recorded nothing before.
    let before: BTreeMap<String, f64> = BTreeMap::new();

    // Completed, sync; then failed (the size differs), async.
    let bytes = random_bytes(50_000);
    let ok_id = app.upload_bin(&bucket, "a.bin", &bytes).await;
    let (status, body) = app.confirm(&bucket, &ok_id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bad_id = app.upload_bin(&bucket, "b.bin", &random_bytes(10)).await;
    let (status, body) = app
        .confirm(
            &bucket,
            &bad_id,
            "async=true",
            Some(json!({ "file_size_bytes": 11 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let task = app.wait_task(str_field(&body, "task_id")).await;
    assert_eq!(task["status"], "FAILED", "{task}");
    worker.shutdown().await;

    // A worker that cannot reach S3: the job is retried, handed back, redelivered, then
    // dead-lettered and failed. It is in flight while it retries.
    let blind = app
        .start_more_with(WORKER_ONLY, |c| {
            c.s3.s3_endpoint = Some(format!("http://127.0.0.1:{}", crate::common::free_port()));
            c.worker.retry_budget_ms = 1_500;
        })
        .await;
    let dead_id = app.upload_bin(&bucket, "c.bin", &random_bytes(10)).await;
    // The most jobs seen in flight, scraped every 20 ms while the job runs.
    let watcher = {
        let (http, api) = (http.clone(), api.clone());
        tokio::spawn(async move {
            let mut most = 0.0f64;
            loop {
                most = most.max(get(&scrape(&http, &api).await, "upconfirm_jobs_in_flight"));
                if most >= 1.0 {
                    return most;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let (status, body) = app.confirm(&bucket, &dead_id, "async=true", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let task = app.wait_task(str_field(&body, "task_id")).await;
    assert_eq!(task["status"], "FAILED", "{task}");
    let most = tokio::time::timeout(Duration::from_secs(1), watcher)
        .await
        .expect("a job was seen in flight while it retried")
        .expect("the watcher ran");
    assert!(most >= 1.0);
    blind.shutdown().await;
    wait_series(
        &http,
        &api,
        "upconfirm_jobs_in_flight",
        Duration::from_secs(10),
        |v| v == 0.0,
    )
    .await;

    // An API that cannot reach the broker: a sync confirm's job (interactive: the API
    // publishes it itself) waits in the outbox until a relay that can publishes it, and a
    // worker completes it.
    let cut_off = app
        .start_more_with(API_ONLY, |c| {
            c.queue.amqp_url = format!(
                "amqp://guest:guest@127.0.0.1:{}/%2f",
                crate::common::free_port()
            );
            c.api.sync_wait_ms = 200;
        })
        .await;
    let cut_off_base = format!("http://{}", cut_off.api_addr.expect("second API"));
    let late_id = app.upload_bin(&bucket, "d.bin", &random_bytes(20)).await;
    let answer = http
        .post(format!(
            "{cut_off_base}/v1/buckets/{bucket}/uploads/{late_id}/confirm"
        ))
        .bearer_auth(&app.api_key)
        .header("X-Namespace", &app.namespace)
        .send()
        .await
        .expect("confirm through the second API");
    assert_eq!(answer.status(), StatusCode::OK);
    wait_series(
        &http,
        &api,
        "upconfirm_outbox_backlog",
        Duration::from_secs(10),
        |v| v >= 1.0,
    )
    .await;
    wait_series(
        &http,
        &api,
        r#"upconfirm_lane_backlog{lane="interactive",stage="waiting"}"#,
        Duration::from_secs(10),
        |v| v >= 1.0,
    )
    .await;
    cut_off.shutdown().await;
    let worker = app
        .start_more_with(WORKER_ONLY, |c| {
            c.worker.health_listen_addr = Some("127.0.0.1:0".parse().unwrap());
        })
        .await;
    let upload = app.wait_upload(&bucket, &late_id).await;
    assert_eq!(upload["status"], "COMPLETED", "{upload}");
    wait_series(
        &http,
        &api,
        "upconfirm_outbox_backlog",
        Duration::from_secs(10),
        |v| v == 0.0,
    )
    .await;

    // The worker's listener answers the same series as the API.
    let worker_base_2 = format!("http://{}", worker.health_addr.expect("worker listener"));
    assert_ne!(worker_base, worker_base_2);
    let after = scrape(&http, &worker_base_2).await;
    worker.shutdown().await;

    let moved = |series: &str| get(&after, series) - get(&before, series);
    for (series, at_least) in [
        (
            r#"upconfirm_confirmations_total{outcome="completed",reason="object_created"}"#,
            2.0,
        ),
        (
            r#"upconfirm_confirmations_total{outcome="failed",reason="size_mismatch"}"#,
            1.0,
        ),
        (
            r#"upconfirm_confirmations_total{outcome="failed",reason="dead_lettered"}"#,
            1.0,
        ),
        (
            r#"upconfirm_confirm_request_duration_seconds_count{mode="sync",status="200"}"#,
            1.0,
        ),
        (
            r#"upconfirm_confirm_request_duration_seconds_count{mode="async",status="200"}"#,
            2.0,
        ),
        (
            r#"upconfirm_job_queue_seconds_count{lane="interactive"}"#,
            2.0,
        ),
        (r#"upconfirm_job_queue_seconds_count{lane="bulk"}"#, 1.0),
        (
            r#"upconfirm_job_duration_seconds_count{outcome="done"}"#,
            3.0,
        ),
        (
            r#"upconfirm_job_duration_seconds_count{outcome="handed_back"}"#,
            1.0,
        ),
        ("upconfirm_job_retries_total", 1.0),
        ("upconfirm_job_redeliveries_total", 1.0),
        (
            r#"upconfirm_dead_lettered_total{reason="delivery_limit"}"#,
            1.0,
        ),
        ("upconfirm_hashed_bytes_total", 50_020.0),
        (r#"upconfirm_db_group_size_count{step="start"}"#, 3.0),
        (r#"upconfirm_db_group_size_count{step="complete"}"#, 1.0),
    ] {
        assert!(
            moved(series) >= at_least,
            "{series} moved by {} (want ≥ {at_least}): {after:#?}",
            moved(series)
        );
    }
    // The sync confirm was answered within the histogram's range.
    assert!(
        get(
            &after,
            r#"upconfirm_confirm_request_duration_seconds_bucket{mode="sync",status="200",le="10"}"#
        ) >= 1.0
    );
}
