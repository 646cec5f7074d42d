//! Property-based tests at the HTTP edge. Every route of the contract is fed generated
//! input: malformed JSON, values of the wrong type for each field, numbers past i64/u64
//! and f64, odd Unicode (NUL, lone-surrogate escapes, bidi marks, emoji, combining marks,
//! very long text), path-traversal filenames, path ids of every shape and kind, bad query
//! strings, bad credentials and namespaces, wrong methods and content types, and bodies
//! past the body limit. The properties:
//!
//! - no answer is a 5xx;
//! - every 4xx carries the error envelope with the same status;
//! - a refused request writes no row (table counts, last update times, storage usage);
//! - a body over the limit is a 413 `PayloadTooLargeError`, one at the limit is not;
//! - an accepted filename yields the S3 key `{namespace}/{bucket}/{upload}/{filename}`, and
//!   its presigned URL addresses exactly that key, never a path outside the upload prefix;
//!   a filename the contract forbids is a 422.
//!
//! The route table and the requests generated for each route are in `routes`, with what
//! every route shares in `paths` (ids in the path), `auth` (keys, namespaces, content
//! types), `values` (odd JSON values) and `bodies` (JSON objects built field by field);
//! what one family of routes takes is in its module: `buckets`, `uploads`, `confirm`,
//! `batches`, `tasks`. The properties: `malformed` (every route), `limits` (the body
//! limit) and `uploads` (filenames and keys).

mod auth;
mod batches;
mod bodies;
mod buckets;
mod confirm;
mod limits;
mod malformed;
mod paths;
mod routes;
mod tasks;
mod uploads;
mod values;

use std::time::Duration;

use crate::common::*;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngSeed, TestRunner};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use auth::Auth;
use routes::Route;

/// The body limit the tests configure (the API's `max_body_bytes`).
const BODY_LIMIT: usize = 64 * 1024;

/// Generated cases per route in the main property.
const CASES_PER_ROUTE: usize = 50;

// ---------------------------------------------------------------------------------------
// Database snapshot: what a refused request must leave as it was.

const SNAPSHOT_SQL: &str = "SELECT json_build_object(
    'buckets', (SELECT count(*) FROM buckets),
    'uploads', (SELECT count(*) FROM uploads),
    'tasks', (SELECT count(*) FROM tasks),
    'outbox', (SELECT count(*) FROM outbox),
    'objects', (SELECT count(*) FROM objects),
    'batches', (SELECT count(*) FROM batches),
    'batch_confirm_items', (SELECT count(*) FROM batch_confirm_items),
    'bucket_contents', (SELECT count(*) FROM bucket_contents),
    'uploads_updated_at', (SELECT coalesce(max(updated_at)::text, '') FROM uploads),
    'tasks_updated_at', (SELECT coalesce(max(updated_at)::text, '') FROM tasks),
    'buckets_updated_at', (SELECT coalesce(max(updated_at)::text, '') FROM buckets),
    'batches_updated_at', (SELECT coalesce(max(updated_at)::text, '') FROM batches),
    -- Folded usage plus the ledger: the total, whenever a worker folds the ledger.
    'storage_used_bytes', (SELECT coalesce(json_object_agg(id, storage_used_bytes
                               + (SELECT coalesce(sum(bytes), 0) FROM namespace_usage u
                                  WHERE u.namespace_id = namespaces.id)), '{}'::json)
                           FROM namespaces)
)::text";

async fn snapshot(app: &TestApp) -> Value {
    let text: String = sqlx::query_scalar(SNAPSHOT_SQL)
        .fetch_one(&app.pool)
        .await
        .expect("database snapshot");
    serde_json::from_str(&text).expect("snapshot is JSON")
}

/// Waits until the background components leave the database alone.
async fn settle(app: &TestApp) -> Value {
    app.wait_outbox_empty().await;
    let mut last = snapshot(app).await;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = snapshot(app).await;
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the database kept changing with no request in flight: {last}");
}

// ---------------------------------------------------------------------------------------
// Fixtures: what the generated requests aim at.

#[derive(Debug, Clone)]
struct Fixtures {
    bucket: String,
    bucket_id: String,
    other_bucket: String,
    /// `PENDING`, no object behind it: a valid confirmation of it would start work.
    pending: String,
    /// `PENDING`, no object; the one a valid cancel may cancel.
    spare: String,
    completed: String,
    completed_hash: String,
    object: String,
    batch: String,
    task: String,
    namespace: String,
    namespace_id: String,
    org_id: String,
    other_key: String,
    other_namespace: String,
}

impl Fixtures {
    fn upload_ids(&self) -> Vec<String> {
        vec![
            self.pending.clone(),
            self.spare.clone(),
            self.completed.clone(),
        ]
    }

    /// Real ids of every kind: each is the wrong kind in all slots but its own.
    fn all_ids(&self) -> Vec<String> {
        vec![
            self.bucket_id.clone(),
            self.pending.clone(),
            self.completed.clone(),
            self.object.clone(),
            self.batch.clone(),
            self.task.clone(),
            self.namespace_id.clone(),
            self.org_id.clone(),
        ]
    }
}

async fn fixtures(app: &TestApp) -> Fixtures {
    let bucket = bucket_name("fuzz");
    let created = app.create_bucket(&bucket).await;
    let bucket_id = str_field(&created, "bucket_id").to_owned();
    let other_bucket = bucket_name("fuzz-other");
    app.create_bucket(&other_bucket).await;

    let pending = app
        .create_pending(&bucket, "pending.txt", "text/plain", json!({}))
        .await;
    let spare = app
        .create_pending(&bucket, "spare.txt", "text/plain", json!({}))
        .await;

    let bytes = random_bytes(256);
    let (completed, _) = app
        .upload_file(&bucket, "done.txt", "text/plain", &bytes, json!({}))
        .await;
    let (status, confirmed) = app.confirm(&bucket, &completed, "", None).await;
    assert_eq!(status, StatusCode::OK, "fixture confirm: {confirmed}");
    let task = str_field(&confirmed, "task_id").to_owned();
    let finished = app.wait_task(&task).await;
    assert_eq!(finished["status"], json!("COMPLETED"), "{finished}");
    let upload = app.get_upload(&bucket, &completed).await;
    let object = str_field(&upload, "object_id").to_owned();

    let (status, batch) = send(
        app.post(&format!("/v1/buckets/{bucket}/batches"))
            .json(&json!({ "object_ids": [object] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "fixture batch: {batch}");
    let batch = str_field(&batch, "batch_id").to_owned();

    let other = app.second_tenant().await;
    Fixtures {
        bucket,
        bucket_id,
        other_bucket,
        pending: str_field(&pending, "upload_id").to_owned(),
        spare: str_field(&spare, "upload_id").to_owned(),
        completed,
        completed_hash: sha256_hex(&bytes),
        object,
        batch,
        task,
        namespace: app.namespace.clone(),
        namespace_id: app.namespace_id.clone(),
        org_id: app.org_id.clone(),
        other_key: other.api_key,
        other_namespace: other.namespace,
    }
}

// ---------------------------------------------------------------------------------------
// Generated pieces.

/// One path segment as sent, and whether it surely matches the route's `{param}`.
#[derive(Debug, Clone)]
struct Seg {
    text: String,
    plain: bool,
}

impl Seg {
    fn plain(text: &str) -> Seg {
        Seg {
            text: text.to_owned(),
            plain: true,
        }
    }
}

/// A body (or query) and whether it is refused whatever the rest of the request.
#[derive(Debug, Clone)]
struct Gen {
    text: Option<String>,
    surely_invalid: bool,
}

impl Gen {
    fn new(text: impl Into<String>, surely_invalid: bool) -> Gen {
        Gen {
            text: Some(text.into()),
            surely_invalid,
        }
    }
}

#[derive(Debug, Clone)]
struct Case {
    route: Route,
    method: Method,
    path: String,
    /// Every id of the path surely matches its route parameter.
    plain: bool,
    body: Option<String>,
    content_type: Option<&'static str>,
    auth: Auth,
}

/// `s`, cut to its first 400 bytes when longer.
fn clip(s: &str) -> String {
    if s.len() <= 400 {
        return s.to_owned();
    }
    let mut end = 400;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}

impl Case {
    fn describe(&self) -> String {
        format!(
            "{:?} {} {} auth={:?} content-type={:?} body={:?}",
            self.route,
            self.method,
            clip(&self.path),
            self.auth,
            self.content_type,
            self.body.as_deref().map(clip)
        )
    }
}

/// Prints the case being sent when an assertion about it fails.
struct CaseGuard(String);

impl Drop for CaseGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("failing case: {}", self.0);
        }
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

// ---------------------------------------------------------------------------------------
// Runs: seeded, and replayed with the same seed.

/// A runner seeded from `FUZZ_EDGE_SEED`, or at random (the seed is printed).
fn runner(cases: u32) -> TestRunner {
    let seed = std::env::var("FUZZ_EDGE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand_seed);
    eprintln!("fuzz_edge seed {seed} (FUZZ_EDGE_SEED={seed} replays it)");
    let config = Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    };
    TestRunner::new(config)
}

fn rand_seed() -> u64 {
    let id = uuid::Uuid::new_v4();
    let bytes = id.as_bytes();
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

fn generate<S: Strategy>(runner: &mut TestRunner, strategy: &S, n: usize) -> Vec<S::Value> {
    (0..n)
        .map(|_| {
            strategy
                .new_tree(runner)
                .expect("a value from the strategy")
                .current()
        })
        .collect()
}
