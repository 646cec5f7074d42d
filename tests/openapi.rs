//! The OpenAPI document: it parses, lists every route of the contract, and every route it
//! lists is one the router serves.

mod common;

use std::collections::BTreeSet;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Every route of the wire contract (spec/api.md).
const CONTRACT: &[(&str, &str)] = &[
    ("post", "/v1/buckets"),
    ("post", "/v1/buckets/list"),
    ("get", "/v1/buckets/{bucket_identifier}"),
    ("post", "/v1/buckets/{bucket_identifier}/uploads"),
    ("post", "/v1/buckets/{bucket_identifier}/uploads/batch"),
    ("post", "/v1/buckets/{bucket_identifier}/uploads/list"),
    (
        "post",
        "/v1/buckets/{bucket_identifier}/uploads/confirm/batch",
    ),
    ("get", "/v1/buckets/{bucket_identifier}/uploads/{upload_id}"),
    (
        "delete",
        "/v1/buckets/{bucket_identifier}/uploads/{upload_id}",
    ),
    (
        "post",
        "/v1/buckets/{bucket_identifier}/uploads/{upload_id}/confirm",
    ),
    ("post", "/v1/buckets/{bucket_identifier}/batches"),
    ("post", "/v1/buckets/{bucket_identifier}/batches/list"),
    ("get", "/v1/buckets/{bucket_identifier}/batches/{batch_id}"),
    (
        "post",
        "/v1/buckets/{bucket_identifier}/batches/{batch_id}/submit",
    ),
    ("get", "/v1/buckets/{bucket_identifier}/objects/{object_id}"),
    ("post", "/v1/tasks/list"),
    ("get", "/v1/tasks/{task_id}"),
    ("delete", "/v1/tasks/{task_id}"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_every_route_the_router_serves() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let raw: Value = resp.json().await.unwrap();
    assert!(
        raw["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        raw["openapi"]
    );
    let doc: utoipa::openapi::OpenApi =
        serde_json::from_value(raw.clone()).expect("an OpenAPI 3 document");
    assert!(raw["components"]["schemas"]["ErrorEnvelope"].is_object());
    assert!(raw["components"]["securitySchemes"]["bearer"].is_object());

    let mut listed = BTreeSet::new();
    for (path, item) in &raw["paths"].as_object().unwrap().clone() {
        for (method, op) in item.as_object().unwrap() {
            assert!(op["responses"].is_object(), "{method} {path}");
            listed.insert((method.clone(), path.clone()));
        }
    }
    let contract: BTreeSet<(String, String)> = CONTRACT
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        listed, contract,
        "the document lists exactly the contract's routes"
    );
    assert_eq!(
        doc.paths.paths.len(),
        raw["paths"].as_object().unwrap().len()
    );

    // Each listed route is served: never the router's own 404 or 405.
    let bucket = bucket_name("oa");
    app.create_bucket(&bucket).await;
    for (method, path) in &listed {
        let concrete = path
            .replace("{bucket_identifier}", &bucket)
            .replace("{upload_id}", "upl_x")
            .replace("{batch_id}", "btch_x")
            .replace("{object_id}", "obj_x")
            .replace("{task_id}", "task_x");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (status, body) = send(
            app.request(method.clone(), &concrete)
                .json(&serde_json::json!({})),
        )
        .await;
        if !status.is_success() {
            assert_envelope(status, &body);
        }
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {concrete}"
        );
        assert_ne!(
            body["error"]["message"], "no such route",
            "{method} {concrete} is listed but not routed"
        );
    }
    // And the router's fallback does answer for what is not listed.
    let (status, body) = send(app.get("/v1/nothing/here")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["message"], "no such route");
    app.stop().await;
}
