//! Authentication, namespaces and tenant isolation.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_unknown_and_malformed_keys_are_unauthorized() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("auth");
    app.create_bucket(&bucket).await;
    let path = format!("/v1/buckets/{bucket}");
    let ns = Some(app.namespace.as_str());

    let (status, body) = send(app.request_as(Method::GET, &path, None, ns)).await;
    assert_error(status, &body, 401, "UnauthorizedError");

    let (status, body) = send(app.request_as(Method::GET, &path, Some("sk_bogus"), ns)).await;
    assert_error(status, &body, 401, "UnauthorizedError");

    // A well-formed key with one character changed.
    let mut altered = app.api_key.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'a' { 'b' } else { 'a' });
    let (status, body) = send(app.request_as(Method::GET, &path, Some(&altered), ns)).await;
    assert_error(status, &body, 401, "UnauthorizedError");

    for header in [
        "Basic dXNlcjpwYXNz",
        app.api_key.as_str(),
        "Bearer",
        "Bearer ",
    ] {
        let (status, body) = send(
            app.client
                .get(app.url(&path))
                .header("Authorization", header)
                .header("X-Namespace", &app.namespace),
        )
        .await;
        assert_error(status, &body, 401, "UnauthorizedError");
    }

    // Task routes are authenticated too.
    let (status, body) = send(app.request_as(Method::GET, "/v1/tasks/task_x", None, None)).await;
    assert_error(status, &body, 401, "UnauthorizedError");
    let (status, body) = send(
        app.request_as(Method::POST, "/v1/buckets", None, ns)
            .json(&json!({ "bucket_name": "x" })),
    )
    .await;
    assert_error(status, &body, 401, "UnauthorizedError");

    let (status, _) = send(app.get(&path)).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_key_is_unauthorized() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("revoke");
    app.create_bucket(&bucket).await;
    let path = format!("/v1/buckets/{bucket}");
    let key = upconfirm::cli::admin::create_api_key(&app.pool, &app.org_id)
        .await
        .expect("key");
    assert!(key.starts_with("sk_"), "{key}");

    let (status, body) =
        send(app.request_as(Method::GET, &path, Some(&key), Some(&app.namespace))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    assert!(upconfirm::cli::admin::revoke_api_key(&app.pool, &key)
        .await
        .expect("revoke"));
    let (status, body) =
        send(app.request_as(Method::GET, &path, Some(&key), Some(&app.namespace))).await;
    assert_error(status, &body, 401, "UnauthorizedError");

    // The other key of the organization still works.
    let (status, _) = send(app.get(&path)).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_stored_hashed() {
    let app = TestApp::spawn().await;
    let stored = sqlx::query_scalar::<_, String>("SELECT key_hash::text FROM api_keys")
        .fetch_all(&app.pool)
        .await
        .expect("read api_keys");
    assert!(!stored.is_empty());
    assert!(
        stored.iter().all(|h| !h.contains(&app.api_key)),
        "the plain key is not stored"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_of_another_organization_is_not_found() {
    let app = TestApp::spawn().await;
    let other = app.second_tenant().await;
    let bucket = bucket_name("theirs");
    let (status, body) = send(
        app.request_as(
            Method::POST,
            "/v1/buckets",
            Some(&other.api_key),
            Some(&other.namespace),
        )
        .json(&json!({ "bucket_name": bucket })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let path = format!("/v1/buckets/{bucket}");

    for ns in [
        other.namespace.as_str(),
        other.namespace_id.as_str(),
        "ns-does-not-exist",
        "ns_doesnotexist000",
    ] {
        let (status, body) =
            send(app.request_as(Method::GET, &path, Some(&app.api_key), Some(ns))).await;
        assert_error(status, &body, 404, "NotFoundError");
        let (status, body) = send(app.request_as(
            Method::GET,
            &format!("{path}?namespace={ns}"),
            Some(&app.api_key),
            None,
        ))
        .await;
        assert_error(status, &body, 404, "NotFoundError");
    }

    // The owner sees it by name and by ns_ id.
    for ns in [other.namespace.as_str(), other.namespace_id.as_str()] {
        let (status, body) =
            send(app.request_as(Method::GET, &path, Some(&other.api_key), Some(ns))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_comes_from_the_query_when_the_header_is_absent() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("query");
    app.create_bucket(&bucket).await;
    let key = Some(app.api_key.as_str());

    let (status, body) = send(app.request_as(
        Method::GET,
        &format!("/v1/buckets/{bucket}?namespace={}", app.namespace),
        key,
        None,
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["bucket_name"], json!(bucket), "{body}");

    let (status, body) = send(app.request_as(
        Method::GET,
        &format!("/v1/buckets/{bucket}?namespace={}", app.namespace_id),
        key,
        None,
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The header wins over the query.
    let (status, body) = send(app.request_as(
        Method::GET,
        &format!("/v1/buckets/{bucket}?namespace=ns-does-not-exist"),
        key,
        Some(&app.namespace),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(app.request_as(
        Method::GET,
        &format!("/v1/buckets/{bucket}?namespace={}", app.namespace),
        key,
        Some("ns-does-not-exist"),
    ))
    .await;
    assert_error(status, &body, 404, "NotFoundError");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_of_another_bucket_is_not_found() {
    let app = TestApp::spawn().await;
    let b1 = bucket_name("one");
    let b2 = bucket_name("two");
    app.create_bucket(&b1).await;
    app.create_bucket(&b2).await;
    let bytes = random_bytes(500);
    let (id, _) = app
        .upload_file(&b1, "a.txt", "text/plain", &bytes, json!({}))
        .await;

    let (status, body) = send(app.get(&format!("/v1/buckets/{b2}/uploads/{id}"))).await;
    assert_error(status, &body, 404, "NotFoundError");
    let (status, body) = app.confirm(&b2, &id, "", None).await;
    assert_error(status, &body, 404, "NotFoundError");
    let upload = app.get_upload(&b1, &id).await;
    assert_eq!(
        upload["status"],
        json!("PENDING"),
        "the refused confirm did nothing: {upload}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tenants_cannot_see_uploads_or_tasks() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("mine");
    app.create_bucket(&bucket).await;
    let bytes = random_bytes(600);
    let (id, _) = app
        .upload_file(&bucket, "a.txt", "text/plain", &bytes, json!({}))
        .await;
    let (status, body) = app.confirm(&bucket, &id, "async=true", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let task_id = str_field(&body, "task_id").to_string();
    app.wait_task(&task_id).await;

    let other = app.second_tenant().await;
    let (status, body) = send(app.request_as(
        Method::GET,
        &format!("/v1/tasks/{task_id}"),
        Some(&other.api_key),
        Some(&other.namespace),
    ))
    .await;
    assert_error(status, &body, 404, "NotFoundError");

    // Same bucket name in their namespace: still not our upload.
    let (status, _) = send(
        app.request_as(
            Method::POST,
            "/v1/buckets",
            Some(&other.api_key),
            Some(&other.namespace),
        )
        .json(&json!({ "bucket_name": bucket })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(app.request_as(
        Method::GET,
        &format!("/v1/buckets/{bucket}/uploads/{id}"),
        Some(&other.api_key),
        Some(&other.namespace),
    ))
    .await;
    assert_error(status, &body, 404, "NotFoundError");

    let (status, body) = send(app.get(&format!("/v1/tasks/{task_id}"))).await;
    assert_eq!(status, StatusCode::OK, "the owner still sees it: {body}");
    let (status, body) = send(app.get("/v1/tasks/task_doesnotexist")).await;
    assert_error(status, &body, 404, "NotFoundError");
    app.stop().await;
}
