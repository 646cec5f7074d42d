//! The OpenAPI document: it parses, lists every route of the contract, and every route it
//! lists is one the router serves.

use std::collections::BTreeSet;

use crate::common::*;
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
    // Multipart uploads' parts: the SDK has no route for them.
    (
        "post",
        "/v1/buckets/{bucket_identifier}/uploads/{upload_id}/parts",
    ),
    (
        "get",
        "/v1/buckets/{bucket_identifier}/uploads/{upload_id}/parts",
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

/// Resolves a `$ref` into the document's components.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_real_shapes_and_constraints() {
    let app = TestApp::spawn().await;
    let (status, doc) = send(app.get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            assert!(!id.is_empty(), "{method} {path} has no operationId");
            assert!(ids.insert(id.clone()), "operationId {id} twice");
            // Every success but 204 names a schema with properties: never a bare object.
            let responses = op["responses"].as_object().unwrap();
            for (code, response) in responses {
                if code == "204" {
                    continue;
                }
                let schema = &response["content"]["application/json"]["schema"];
                let schema = resolve(&doc, schema);
                assert!(
                    schema["properties"].is_object(),
                    "{method} {path} {code}: {schema}"
                );
            }
            for code in ["401", "404"] {
                if path.starts_with("/v1/tasks/list") && code == "404" {
                    continue;
                }
                assert!(responses.contains_key(code), "{method} {path} lacks {code}");
            }
            // Request bodies are closed objects: unknown keys are refused.
            if let Some(body) = op["requestBody"]["content"]["application/json"]["schema"]
                .as_object()
                .map(|_| &op["requestBody"]["content"]["application/json"]["schema"])
            {
                let body = resolve(&doc, body);
                let body = body["oneOf"]
                    .as_array()
                    .and_then(|v| {
                        v.iter()
                            .find(|s| !s["$ref"].is_null() || s["type"] == "object")
                    })
                    .map(|s| resolve(&doc, s))
                    .unwrap_or(body);
                assert_eq!(
                    body["additionalProperties"],
                    Value::Bool(false),
                    "{method} {path}: {body}"
                );
                for code in ["413", "415", "422"] {
                    assert!(
                        responses.contains_key(code),
                        "{method} {path} takes a body: {code} is an answer"
                    );
                }
            }
        }
    }
    let schemas = &doc["components"]["schemas"];
    let create = &schemas["CreateUpload"]["properties"];
    assert_eq!(create["presigned_url_expiration"]["minimum"], 60);
    assert_eq!(create["presigned_url_expiration"]["maximum"], 86400);
    assert_eq!(create["file_hash"]["pattern"], "^[0-9a-f]{64}$");
    let required = schemas["CreateUpload"]["required"].as_array().unwrap();
    assert!(
        required.contains(&Value::from("filename"))
            && required.contains(&Value::from("content_type"))
    );
    // The shapes the SDK requires are there.
    for (model, fields) in [
        (
            "BucketResponse",
            &["object_count", "total_size_bytes", "bucket_name"][..],
        ),
        (
            "ListBucketsResponse",
            &["results", "total_count", "pagination"],
        ),
        ("ListUploadsResponse", &["results", "pagination", "stats"]),
        (
            "UploadListStats",
            &[
                "total_uploads",
                "total_size_bytes",
                "uploads_by_status",
                "avg_file_size_bytes",
                "unique_buckets",
            ],
        ),
        (
            "BatchModel",
            &[
                "bucket_id",
                "max_node_death_resubmits",
                "max_deploy_resubmits",
                "lifecycle",
                "lifecycle_reason",
            ],
        ),
        (
            "TaskResponse",
            &["task_id", "task_type", "status", "inputs", "outputs"],
        ),
    ] {
        let required = schemas[model]["required"]
            .as_array()
            .unwrap_or_else(|| panic!("{model}"));
        for field in fields {
            assert!(required.contains(&Value::from(*field)), "{model}.{field}");
        }
    }
    assert_eq!(
        schemas["TaskResponse"]["properties"]["outputs"]["type"],
        "array"
    );
    app.stop().await;
}
