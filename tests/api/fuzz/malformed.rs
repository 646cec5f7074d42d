//! The main property: every route, fed generated input, answers no 5xx, refuses with the
//! error envelope, and writes no row when it refuses.

use std::collections::BTreeMap;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::*;

use super::auth::{key_header, namespace_header, Auth};
use super::routes::{case_strategy, Route, ROUTES};
use super::uploads::assert_contained;
use super::{fixtures, generate, runner, settle, snapshot, Case, CaseGuard, Fixtures};
use super::{BODY_LIMIT, CASES_PER_ROUTE};

async fn send_case(app: &TestApp, fx: &Fixtures, case: &Case) -> (StatusCode, Value) {
    let mut rb = app.client.request(case.method.clone(), app.url(&case.path));
    let bearer = |k: &str| HeaderValue::from_str(&format!("Bearer {k}")).expect("header");
    let ns = HeaderValue::from_str(&fx.namespace).expect("header");
    rb = match case.auth {
        Auth::Good => rb
            .header(AUTHORIZATION, bearer(&app.api_key))
            .header("X-Namespace", ns),
        Auth::NoKey => rb.header("X-Namespace", ns),
        Auth::BadKey(fault) => rb
            .header(AUTHORIZATION, key_header(fault, &app.api_key))
            .header("X-Namespace", ns),
        Auth::OtherOrgKey => rb
            .header(AUTHORIZATION, bearer(&fx.other_key))
            .header("X-Namespace", ns),
        Auth::NoNamespace => rb.header(AUTHORIZATION, bearer(&app.api_key)),
        Auth::Namespace(fault) => rb
            .header(AUTHORIZATION, bearer(&app.api_key))
            .header("X-Namespace", namespace_header(fault, fx)),
    };
    if let Some(ct) = case.content_type {
        if let Ok(value) = HeaderValue::from_str(ct) {
            rb = rb.header(CONTENT_TYPE, value);
        }
    }
    if let Some(body) = &case.body {
        rb = rb.body(body.clone());
    }
    let resp = rb
        .send()
        .await
        .unwrap_or_else(|e| panic!("no answer ({e}) to {}", case.describe()));
    let status = resp.status();
    let text = resp.text().await.expect("read the answer");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// The answer a request whose path surely matches must give, whatever the rest.
fn expected_status(case: &Case) -> Option<u16> {
    if !case.plain || case.route == Route::Unrouted {
        return None;
    }
    if !case.route.allowed().contains(&case.method) {
        return Some(405);
    }
    match case.auth {
        Auth::NoKey | Auth::BadKey(_) => Some(401),
        Auth::OtherOrgKey if case.route.namespaced() => Some(404),
        Auth::Namespace(f) if case.route.namespaced() && f.unknown() => Some(404),
        _ => None,
    }
}

/// Sends `case` and checks every property of its answer; returns the status.
async fn check_case(app: &TestApp, fx: &Fixtures, case: &Case) -> StatusCode {
    let _guard = CaseGuard(case.describe());
    let before = snapshot(app).await;
    let (status, body) = send_case(app, fx, case).await;
    assert!(
        !status.is_server_error(),
        "5xx answer {status}: {body}\n to {}",
        case.describe()
    );
    assert!(
        status.is_success() || status.is_client_error(),
        "answer {status} is neither a success nor a refusal: {body}"
    );
    if let Some(expected) = expected_status(case) {
        assert_eq!(status.as_u16(), expected, "answer: {body}");
    }
    if status.is_client_error() {
        assert_envelope(status, &body);
        let after = snapshot(app).await;
        assert_eq!(
            after, before,
            "a refused request ({status}) changed the database"
        );
    } else {
        match (case.route, status.as_u16()) {
            (Route::CreateUpload, 200) if !body["presigned_url"].is_null() => {
                assert_contained(&body, &fx.namespace_id, None)
            }
            (Route::CreateUploadBatch, 200) => {
                for upload in body["uploads"].as_array().expect("uploads") {
                    if !upload["presigned_url"].is_null() {
                        assert_contained(upload, &fx.namespace_id, None);
                    }
                }
            }
            _ => {}
        }
    }
    status
}

/// Requests that once answered 5xx, sent before the generated ones.
fn regression_cases(fx: &Fixtures) -> Vec<Case> {
    let b = &fx.bucket;
    let post = |route: Route, path: String, body: &str| Case {
        route,
        method: Method::POST,
        path,
        plain: true,
        body: Some(body.to_owned()),
        content_type: Some("application/json"),
        auth: Auth::Good,
    };
    vec![
        post(
            Route::CreateBucket,
            "/v1/buckets".into(),
            "{\"bucket_name\":\"nul-desc\",\"description\":\"a\\u0000b\"}",
        ),
        post(
            Route::CreateBucket,
            "/v1/buckets".into(),
            "{\"bucket_name\":\"nul-meta\",\"metadata\":{\"k\":\"\\u0000\"}}",
        ),
        post(
            Route::ListBuckets,
            "/v1/buckets/list".into(),
            "{\"search\":\"\\u0000\"}",
        ),
        post(
            Route::CreateUpload,
            format!("/v1/buckets/{b}/uploads"),
            "{\"filename\":\"a.txt\",\"content_type\":\"text/plain\",\"metadata\":{\"\\u0000\":1}}",
        ),
        post(
            Route::CreateUploadBatch,
            format!("/v1/buckets/{b}/uploads/batch"),
            "{\"uploads\":[{\"filename\":\"a.txt\",\"content_type\":\"text/plain\"}],\"shared_metadata\":{\"k\":\"\\u0000\"}}",
        ),
        post(
            Route::ListUploads,
            format!("/v1/buckets/{b}/uploads/list"),
            "{\"search\":\"\\u0000\"}",
        ),
        post(
            Route::CreateBatch,
            format!("/v1/buckets/{b}/batches"),
            "{\"object_ids\":[\"\\u0000\"]}",
        ),
        post(
            Route::ConfirmBatch,
            format!("/v1/buckets/{b}/uploads/confirm/batch"),
            "{\"confirmations\":[{\"upload_id\":\"\\u0000\"}]}",
        ),
        post(
            Route::CreateUpload,
            format!("/v1/buckets/{b}/uploads"),
            "{\"filename\":\".\",\"content_type\":\"text/plain\"}",
        ),
        post(
            Route::CreateUpload,
            "/v1/buckets/%00/uploads".into(),
            "{\"filename\":\"a.txt\",\"content_type\":\"text/plain\"}",
        ),
        Case {
            route: Route::GetTask,
            method: Method::GET,
            path: "/v1/tasks/task_%00".into(),
            plain: true,
            body: None,
            content_type: None,
            auth: Auth::Good,
        },
        Case {
            route: Route::GetBucket,
            method: Method::GET,
            path: format!("/v1/buckets/{b}?namespace=%00"),
            plain: true,
            body: None,
            content_type: None,
            auth: Auth::NoNamespace,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_answers_5xx_or_writes_a_row_for_malformed_input() {
    let app = TestApp::spawn_with(|cfg| cfg.api.max_body_bytes = BODY_LIMIT).await;
    let fx = fixtures(&app).await;
    settle(&app).await;

    let mut runner = runner(CASES_PER_ROUTE as u32);
    let mut per_route: Vec<Vec<Case>> = ROUTES
        .iter()
        .map(|r| generate(&mut runner, &case_strategy(*r, &fx), CASES_PER_ROUTE))
        .collect();
    per_route.push(generate(
        &mut runner,
        &case_strategy(Route::Unrouted, &fx),
        CASES_PER_ROUTE,
    ));

    let started = std::time::Instant::now();
    for case in regression_cases(&fx) {
        let status = check_case(&app, &fx, &case).await;
        assert!(status.is_client_error(), "{status}: {}", case.describe());
    }
    let mut tally: BTreeMap<Route, BTreeMap<u16, usize>> = BTreeMap::new();
    for i in 0..CASES_PER_ROUTE {
        for cases in &per_route {
            let case = &cases[i];
            let status = check_case(&app, &fx, case).await;
            *tally
                .entry(case.route)
                .or_default()
                .entry(status.as_u16())
                .or_default() += 1;
        }
    }
    let total: usize = tally.values().flat_map(|m| m.values()).sum();
    eprintln!(
        "{total} generated requests in {:.1} s; answers per route: {tally:?}",
        started.elapsed().as_secs_f64()
    );
    for route in ROUTES {
        let refused: usize = tally[&route]
            .iter()
            .filter(|(s, _)| (400..500).contains(*s))
            .map(|(_, n)| n)
            .sum();
        assert!(
            refused * 2 > CASES_PER_ROUTE,
            "most generated requests to {route:?} are refused: {:?}",
            tally[&route]
        );
    }
    app.stop().await;
}
