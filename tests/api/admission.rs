//! Per-organization request rate limits: a token bucket in PostgreSQL, so that the limit
//! holds across API replicas; 429 `TooManyRequestsError` with `Retry-After` and the
//! `X-RateLimit-*` headers when it is spent.

use std::time::Duration;

use crate::common::*;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use upconfirm::store::rate_limits::{self, Limit};

/// An authenticated request that succeeds whatever the tenant holds.
const CHEAP: &str = "/v1/buckets/list";

/// Sends a request; its status, headers and JSON body.
async fn call(rb: reqwest::RequestBuilder) -> (StatusCode, HeaderMap, Value) {
    let resp = rb.send().await.expect("HTTP request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("read body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

/// A header as a whole number; panics when absent or not one.
fn number(headers: &HeaderMap, name: &str) -> u64 {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `(limit, remaining, reset)` of an answer.
fn standing(headers: &HeaderMap) -> (u64, u64, u64) {
    (
        number(headers, "x-ratelimit-limit"),
        number(headers, "x-ratelimit-remaining"),
        number(headers, "x-ratelimit-reset"),
    )
}

fn as_tenant(app: &TestApp, base_url: &str, tenant: &Tenant) -> reqwest::RequestBuilder {
    app.client
        .post(format!("{base_url}{CHEAP}"))
        .bearer_auth(&tenant.api_key)
        .header("X-Namespace", &tenant.namespace)
        .json(&json!({}))
}

fn ours(app: &TestApp) -> Tenant {
    Tenant {
        org_id: app.org_id.clone(),
        namespace: app.namespace.clone(),
        namespace_id: app.namespace_id.clone(),
        api_key: app.api_key.clone(),
    }
}

async fn limit(app: &TestApp, org_id: &str, per_second: f64, burst: f64) {
    upconfirm::cli::admin::set_rate_limit(&app.pool, org_id, Some(Limit { per_second, burst }))
        .await
        .expect("set the rate limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_three_at_one_a_second_then_429_then_one_more() {
    // A default for organizations without their own limit, to see it apply too.
    let app = TestApp::spawn_with(|c| {
        c.api.rate_limit_per_second = 0.5;
        c.api.rate_limit_burst = 100.0;
    })
    .await;
    let me = ours(&app);
    let other = app.second_tenant().await;
    limit(&app, &me.org_id, 1.0, 3.0).await;
    let refused_before = app.metric("upconfirm_rate_limited_requests_total").await;

    for remaining in [2, 1, 0] {
        let (status, headers, body) = call(as_tenant(&app, &app.base_url, &me)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (limit, left, reset) = standing(&headers);
        assert_eq!((limit, left), (3, remaining), "{headers:?}");
        // Seconds until the bucket is full again: the tokens spent, at one a second.
        assert_eq!(reset, 3 - remaining, "{headers:?}");
        assert!(headers.get("retry-after").is_none());
    }

    let (status, headers, body) = call(as_tenant(&app, &app.base_url, &me)).await;
    assert_error(status, &body, 429, "TooManyRequestsError");
    assert_eq!(number(&headers, "retry-after"), 1, "{headers:?}");
    assert_eq!(standing(&headers), (3, 0, 3), "{headers:?}");
    let details = &body["error"]["details"];
    assert_eq!(details["retryable"], true, "{body}");
    assert_eq!(details["retry_after_seconds"], 1, "{body}");
    assert_eq!(details["limit"], 3, "{body}");
    assert_eq!(details["remaining"], 0, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("3 at once"),
        "{body}"
    );
    // Refused again: a refusal takes nothing, and the bucket is still short of a token.
    let (status, _, _) = call(as_tenant(&app, &app.base_url, &me)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    // Another organization has its own bucket, on the service default.
    for remaining in [99, 98] {
        let (status, headers, body) = call(as_tenant(&app, &app.base_url, &other)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(standing(&headers).0, 100);
        assert_eq!(standing(&headers).1, remaining);
    }

    // Not limited: what names no organization, and a key that resolves to none.
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert!(resp.headers().get("x-ratelimit-limit").is_none(), "{path}");
    }
    let (status, headers, body) = call(
        app.request_as(Method::POST, CHEAP, Some("sk_unknown"), Some(&me.namespace))
            .json(&json!({})),
    )
    .await;
    assert_error(status, &body, 401, "UnauthorizedError");
    assert!(headers.get("x-ratelimit-limit").is_none());

    // A refusal of a route with a namespace comes before the namespace is looked up.
    let (status, _, body) = call(
        app.request_as(Method::POST, CHEAP, Some(&me.api_key), Some("no-such-ns"))
            .json(&json!({})),
    )
    .await;
    assert_error(status, &body, 429, "TooManyRequestsError");
    // Every route that acts for the organization takes from the same bucket.
    for (method, path) in [
        (Method::GET, "/v1/tasks/task_nope".to_owned()),
        (Method::POST, "/v1/tasks/list".to_owned()),
        (
            Method::POST,
            "/v1/buckets/b/uploads/upl_nope/confirm".to_owned(),
        ),
        (Method::DELETE, "/v1/buckets/b/uploads/upl_nope".to_owned()),
    ] {
        let (status, headers, body) = call(app.request(method.clone(), &path)).await;
        assert_error(status, &body, 429, "TooManyRequestsError");
        assert_eq!(standing(&headers).0, 3, "{method} {path}");
    }

    // A second later there is a token again, and one only.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, headers, body) = call(as_tenant(&app, &app.base_url, &me)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(standing(&headers).1, 0, "{headers:?}");
    let (status, _, body) = call(as_tenant(&app, &app.base_url, &me)).await;
    assert_error(status, &body, 429, "TooManyRequestsError");

    // Every refusal counted (other tests of this binary may add theirs).
    let refused = app.metric("upconfirm_rate_limited_requests_total").await - refused_before;
    assert!(refused >= 8.0, "{refused}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_take_from_the_same_bucket() {
    let app = TestApp::spawn_components(API_ONLY, |_| {}).await;
    let replica = app.start_more(API_ONLY).await;
    let urls = [
        app.base_url.clone(),
        format!("http://{}", replica.api_addr.expect("the replica listens")),
    ];
    assert_ne!(urls[0], urls[1]);
    let me = ours(&app);
    // Six requests at once, then one every 100 s: nothing refills during the test.
    limit(&app, &me.org_id, 0.01, 6.0).await;

    // Alternating: each replica admits three, then both refuse.
    let mut statuses = Vec::new();
    for i in 0..10 {
        let (status, headers, _) = call(as_tenant(&app, &urls[i % 2], &me)).await;
        statuses.push(status.as_u16());
        assert_eq!(standing(&headers).0, 6);
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 200, 429, 429, 429, 429],
        "the replicas share one bucket"
    );

    // At once, across both replicas: exactly the burst passes.
    let other = app.second_tenant().await;
    limit(&app, &other.org_id, 0.01, 10.0).await;
    let answers =
        futures::future::join_all((0..40).map(|i| call(as_tenant(&app, &urls[i % 2], &other))))
            .await;
    let passed = answers.iter().filter(|a| a.0 == StatusCode::OK).count();
    let refused = answers
        .iter()
        .filter(|a| a.0 == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(
        (passed, refused),
        (10, 30),
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    for (status, headers, body) in &answers {
        if *status == StatusCode::TOO_MANY_REQUESTS {
            assert_error(*status, body, 429, "TooManyRequestsError");
            // 100 s to the next token, at 0.01 a second.
            assert!(
                (99..=100).contains(&number(headers, "retry-after")),
                "{headers:?}"
            );
        }
    }
    replica.shutdown().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_refills_with_elapsed_time_up_to_its_burst() {
    let app = TestApp::spawn_components(API_ONLY, |_| {}).await;
    let org = app.org_id.clone();
    let default = Limit {
        per_second: 0.0,
        burst: 0.0,
    };
    let take = || rate_limits::take(&app.pool, &org, default);
    let state = |tokens: f64, ago_ms: i64| {
        let pool = app.pool.clone();
        let org = org.clone();
        async move {
            sqlx::query(
                "UPDATE rate_limits SET tokens = $2,
                    refreshed_at = now() - make_interval(secs => $3::float8 / 1000)
                 WHERE organization_id = $1",
            )
            .bind(&org)
            .bind(tokens)
            .bind(ago_ms as f64)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    let close = |a: f64, b: f64| (a - b).abs() < 0.1;

    // No limit, the service's or its own: nothing written, nothing answered.
    assert_eq!(take().await.unwrap(), None);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM rate_limits")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);

    limit(&app, &org, 2.0, 10.0).await;
    // A new limit starts full.
    let b = take().await.unwrap().unwrap();
    assert!(b.admitted && close(b.tokens, 9.0), "{b:?}");
    assert_eq!((b.rate_per_second, b.burst), (2.0, 10.0));

    // Empty two seconds ago at 2/s: 4 tokens, one taken.
    state(0.0, 2000).await;
    let b = take().await.unwrap().unwrap();
    assert!(b.admitted && close(b.tokens, 3.0), "{b:?}");

    // A fifth of a token 0.3 s ago: 0.8 now, refused, and nothing taken.
    state(0.2, 300).await;
    let b = take().await.unwrap().unwrap();
    assert!(!b.admitted && close(b.tokens, 0.8), "{b:?}");
    // Refused again: the refill was kept and its time moved on, so it is not counted twice
    // (which would make 1.4 tokens and admit this one).
    let b = take().await.unwrap().unwrap();
    assert!(!b.admitted && close(b.tokens, 0.8), "{b:?}");

    // An hour idle fills it to the burst, no further.
    state(5.0, 3_600_000).await;
    let b = take().await.unwrap().unwrap();
    assert!(b.admitted && close(b.tokens, 9.0), "{b:?}");

    // A refresh later than this statement's start (one that began earlier committed later)
    // refills nothing, and time does not go back.
    state(2.0, -10_000).await;
    let b = take().await.unwrap().unwrap();
    assert!(b.admitted && close(b.tokens, 1.0), "{b:?}");
    let ahead: bool = sqlx::query_scalar(
        "SELECT refreshed_at > now() + interval '9 s' FROM rate_limits WHERE organization_id = $1",
    )
    .bind(&org)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(ahead);

    // A lower burst caps what the bucket held.
    limit(&app, &org, 2.0, 3.0).await;
    state(10.0, 0).await;
    let b = take().await.unwrap().unwrap();
    assert!(b.admitted && close(b.tokens, 2.0), "{b:?}");

    // Its own 0 lifts the limit whatever the default; back on the default, that applies.
    limit(&app, &org, 0.0, 0.0).await;
    let with_default = Limit {
        per_second: 1.0,
        burst: 5.0,
    };
    assert_eq!(
        rate_limits::take(&app.pool, &org, with_default)
            .await
            .unwrap(),
        None
    );
    upconfirm::cli::admin::set_rate_limit(&app.pool, &org, None)
        .await
        .unwrap();
    state(1.5, 0).await;
    let b = rate_limits::take(&app.pool, &org, with_default)
        .await
        .unwrap()
        .unwrap();
    assert!(b.admitted && close(b.tokens, 0.5), "{b:?}");
    assert_eq!((b.rate_per_second, b.burst), (1.0, 5.0));
    app.stop().await;
}

/// `upconfirm admin set-rate-limit --org ORG ARGS...`: success, stdout, stderr.
async fn set_rate_limit(app: &TestApp, org: &str, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["admin", "set-rate-limit", "--org", org];
    all.extend_from_slice(args);
    app.run_cli(&all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_sets_checks_and_clears_a_limit() {
    let app = TestApp::spawn_components(API_ONLY, |_| {}).await;
    let org = app.org_id.as_str();

    let (ok, out, err) = set_rate_limit(&app, org, &["--per-second", "2.5", "--burst", "4"]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(
        rate_limits::get(&app.pool, org).await.unwrap(),
        Some(Limit {
            per_second: 2.5,
            burst: 4.0
        })
    );
    let (status, headers, body) = call(app.post(CHEAP).json(&json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(standing(&headers).0, 4);

    for bad in [
        &["--per-second", "-1", "--burst", "4"][..],
        &["--per-second", "1", "--burst", "0.5"],
        &["--per-second", "NaN", "--burst", "4"],
        &["--per-second", "inf", "--burst", "4"],
        &["--per-second", "1"],
        &[],
    ] {
        let (ok, out, err) = set_rate_limit(&app, org, bad).await;
        assert!(!ok, "{bad:?} accepted: {out}");
        assert!(!err.is_empty(), "{bad:?}");
    }
    // Nothing changed by the refused ones.
    assert_eq!(
        rate_limits::get(&app.pool, org)
            .await
            .unwrap()
            .unwrap()
            .burst,
        4.0
    );

    let (ok, out, err) = app
        .run_cli(&[
            "admin",
            "set-rate-limit",
            "--org",
            "org_nope",
            "--per-second",
            "1",
            "--burst",
            "1",
        ])
        .await;
    assert!(!ok, "{out}");
    assert!(err.contains("no organization org_nope"), "{err}");

    let (ok, out, err) = set_rate_limit(&app, org, &["--default"]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(rate_limits::get(&app.pool, org).await.unwrap(), None);
    // Back on the default, which these tests turn off: no limit, no headers.
    let (status, headers, body) = call(app.post(CHEAP).json(&json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(headers.get("x-ratelimit-limit").is_none(), "{headers:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_documents_its_429() {
    let app = TestApp::spawn_components(API_ONLY, |_| {}).await;
    let (status, doc) = send(app.get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let refusal = &op["responses"]["429"];
            assert!(refusal.is_object(), "{method} {path} does not list 429");
            assert!(
                refusal["content"]["application/json"]["schema"]["$ref"]
                    .as_str()
                    .is_some_and(|r| r.ends_with("/ErrorEnvelope")),
                "{method} {path}: {refusal}"
            );
            for header in [
                "Retry-After",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
            ] {
                assert!(
                    refusal["headers"][header].is_object(),
                    "{method} {path} 429 lacks {header}: {refusal}"
                );
            }
        }
    }
    assert!(operations >= 20, "{operations}");
    app.stop().await;
}
