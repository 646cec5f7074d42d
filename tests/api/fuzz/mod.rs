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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::common::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::{Union, ValueTree};
use proptest::test_runner::{Config, RngSeed, TestRunner};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
// The routes.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Route {
    CreateBucket,
    ListBuckets,
    GetBucket,
    CreateUpload,
    CreateUploadBatch,
    ListUploads,
    ConfirmBatch,
    GetUpload,
    CancelUpload,
    ConfirmUpload,
    CreateBatch,
    ListBatches,
    GetBatch,
    SubmitBatch,
    GetObject,
    ListTasks,
    GetTask,
    CancelTask,
    /// A path no route serves.
    Unrouted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Bucket,
    Upload,
    Batch,
    Object,
    Task,
}

const ROUTES: [Route; 18] = [
    Route::CreateBucket,
    Route::ListBuckets,
    Route::GetBucket,
    Route::CreateUpload,
    Route::CreateUploadBatch,
    Route::ListUploads,
    Route::ConfirmBatch,
    Route::GetUpload,
    Route::CancelUpload,
    Route::ConfirmUpload,
    Route::CreateBatch,
    Route::ListBatches,
    Route::GetBatch,
    Route::SubmitBatch,
    Route::GetObject,
    Route::ListTasks,
    Route::GetTask,
    Route::CancelTask,
];

impl Route {
    /// The path with `{}` for each id, in order.
    fn template(self) -> &'static str {
        match self {
            Route::CreateBucket => "/v1/buckets",
            Route::ListBuckets => "/v1/buckets/list",
            Route::GetBucket => "/v1/buckets/{}",
            Route::CreateUpload => "/v1/buckets/{}/uploads",
            Route::CreateUploadBatch => "/v1/buckets/{}/uploads/batch",
            Route::ListUploads => "/v1/buckets/{}/uploads/list",
            Route::ConfirmBatch => "/v1/buckets/{}/uploads/confirm/batch",
            Route::GetUpload | Route::CancelUpload => "/v1/buckets/{}/uploads/{}",
            Route::ConfirmUpload => "/v1/buckets/{}/uploads/{}/confirm",
            Route::CreateBatch => "/v1/buckets/{}/batches",
            Route::ListBatches => "/v1/buckets/{}/batches/list",
            Route::GetBatch => "/v1/buckets/{}/batches/{}",
            Route::SubmitBatch => "/v1/buckets/{}/batches/{}/submit",
            Route::GetObject => "/v1/buckets/{}/objects/{}",
            Route::ListTasks => "/v1/tasks/list",
            Route::GetTask | Route::CancelTask => "/v1/tasks/{}",
            Route::Unrouted => "",
        }
    }

    fn method(self) -> Method {
        match self {
            Route::GetBucket
            | Route::GetUpload
            | Route::GetBatch
            | Route::GetObject
            | Route::GetTask => Method::GET,
            Route::CancelUpload | Route::CancelTask => Method::DELETE,
            _ => Method::POST,
        }
    }

    /// Every method the route's path serves.
    fn allowed(self) -> Vec<Method> {
        match self {
            Route::GetUpload | Route::CancelUpload | Route::GetTask | Route::CancelTask => {
                vec![Method::GET, Method::DELETE]
            }
            other => vec![other.method()],
        }
    }

    fn slots(self) -> Vec<Slot> {
        match self {
            Route::CreateBucket | Route::ListBuckets | Route::ListTasks | Route::Unrouted => {
                vec![]
            }
            Route::GetBucket
            | Route::CreateUpload
            | Route::CreateUploadBatch
            | Route::ListUploads
            | Route::ConfirmBatch
            | Route::CreateBatch
            | Route::ListBatches => vec![Slot::Bucket],
            Route::GetUpload | Route::CancelUpload | Route::ConfirmUpload => {
                vec![Slot::Bucket, Slot::Upload]
            }
            Route::GetBatch | Route::SubmitBatch => vec![Slot::Bucket, Slot::Batch],
            Route::GetObject => vec![Slot::Bucket, Slot::Object],
            Route::GetTask | Route::CancelTask => vec![Slot::Task],
        }
    }

    /// The route acts in a namespace (tasks routes take none).
    fn namespaced(self) -> bool {
        !matches!(
            self,
            Route::ListTasks | Route::GetTask | Route::CancelTask | Route::Unrouted
        )
    }

    /// The route reads a JSON body.
    fn takes_body(self) -> bool {
        matches!(
            self,
            Route::CreateBucket
                | Route::ListBuckets
                | Route::CreateUpload
                | Route::CreateUploadBatch
                | Route::ListUploads
                | Route::ConfirmBatch
                | Route::ConfirmUpload
                | Route::CreateBatch
                | Route::ListBatches
                | Route::ListTasks
        )
    }

    fn path(self, segs: &[Seg]) -> String {
        let mut out = String::new();
        let mut segs = segs.iter();
        let mut parts = self.template().split("{}").peekable();
        while let Some(part) = parts.next() {
            out.push_str(part);
            if parts.peek().is_some() {
                out.push_str(&segs.next().expect("a segment per slot").text);
            }
        }
        out
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

#[derive(Debug, Clone, Copy)]
enum KeyFault {
    Basic,
    SchemeOnly,
    SchemeAndSpace,
    PrefixOnly,
    Unknown,
    LowerCaseScheme,
    TooLong,
    Suffixed,
    NonText,
    OtherScheme,
}

#[derive(Debug, Clone, Copy)]
enum NsFault {
    Empty,
    Unknown,
    OtherTenant,
    NonText,
    Traversal,
    Long,
    PercentNul,
    /// Valid: our namespace by id.
    ById,
    /// Valid: our namespace name with spaces around it.
    Padded,
}

impl NsFault {
    /// Names no namespace of the caller's organization.
    fn unknown(self) -> bool {
        matches!(
            self,
            NsFault::Empty
                | NsFault::Unknown
                | NsFault::OtherTenant
                | NsFault::Traversal
                | NsFault::Long
                | NsFault::PercentNul
        )
    }
}

#[derive(Debug, Clone, Copy)]
enum Auth {
    Good,
    NoKey,
    BadKey(KeyFault),
    OtherOrgKey,
    NoNamespace,
    Namespace(NsFault),
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

/// Percent-encodes every byte but the unreserved ones.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Odd Unicode and injection-looking text.
const ODD_TEXT: &[&str] = &[
    "\0",
    "a\0b",
    "\u{202e}gnp.exe",
    "\u{200f}rtl\u{200e}",
    "\u{61c}\u{2066}\u{2069}",
    "😀🚀👩\u{200d}👩\u{200d}👧",
    "e\u{301}\u{302}\u{303}\u{304}\u{305}",
    "Z\u{36f}\u{36e}\u{36d}a\u{35d}l\u{35e}g\u{35f}o",
    "\u{feff}bom",
    "\u{200b}",
    "\u{fffd}",
    "\u{fffe}\u{ffff}",
    "\u{10ffff}",
    "ｆｕｌｌｗｉｄｔｈ",
    "\u{2028}\u{2029}",
    "\r\n",
    "\t",
    "\u{7f}",
    "\u{85}",
    " ",
    "",
    "%00",
    "%2e%2e%2f",
    "' OR '1'='1",
    "<script>alert(1)</script>",
    "${jndi:ldap://x}",
    "{{7*7}}",
    "%s%s%n",
    "\\",
    "null",
];

/// Filenames that try to leave their directory, literally or encoded.
const TRAVERSALS: &[&str] = &[
    "../../etc/passwd",
    "..\\..\\x",
    "/abs",
    "a/../../b",
    "%2e%2e%2f",
    "%2e%2e%2fetc%2fpasswd",
    "%2E%2E%2F%2E%2E%2F",
    "..",
    ".",
    "...",
    "....//",
    "..%2f",
    "%252e%252e%252f",
    "\u{2025}",
    "\u{ff0e}\u{ff0e}\u{ff0f}",
    "file.txt\0.png",
    "C:\\Windows\\win.ini",
    "~/.ssh/id_rsa",
    " ..",
    ".. ",
    "a..b",
    ".hidden",
    "CON",
    "name%00.png",
    "a/b",
    "\\\\server\\share",
    "..%c0%af",
    "%c0%ae%c0%ae/",
    "..;/",
    "/",
    "\\",
    "./a",
    "a/.",
    "a%2Fb",
    "%2F",
    "..%5c..%5c",
    "%2e",
    ".%2e",
    "%2e%2e",
];

/// Numbers at and past every limit, as JSON text (some of it is not JSON).
const ODD_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "-0",
    "-0.0",
    "0.0",
    "1.5",
    "1e2",
    "1E400",
    "1e308",
    "-1e308",
    "1e309",
    "-1e309",
    "2147483648",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999999999",
    "0.1e-400",
    "4.9e-324",
    "101",
    "86401",
    "59",
    "NaN",
    "-NaN",
    "Infinity",
    "-Infinity",
    "+1",
    "01",
    "-01",
    ".5",
    "5.",
    "0x10",
    "1_000",
    "--1",
];

/// JSON values of every type, and texts that look like JSON but are not.
const ODD_JSON: &[&str] = &[
    "true",
    "false",
    "null",
    "[]",
    "{}",
    "[null]",
    "[\"a\",1]",
    "{\"a\":{\"b\":[1,{}]}}",
    "\"\"",
    "\" \"",
    "\"\\u0000\"",
    "\"a\\u0000b\"",
    "\"\\uD83D\\uDE00\"",
    "\"\\u202e\"",
    "\"\\ufeff\"",
    "\"\\uffff\"",
    "\"\\/\"",
    "\"\\\\\"",
    "\"NaN\"",
    "\"Infinity\"",
    "\"-0\"",
    "\"1e308\"",
    "\"9223372036854775808\"",
    "\"true\"",
    "\"null\"",
    "\"\\ud800\"",
    "\"\\udfff\"",
    "\"\\ud800\\ud800\"",
    "\"\\udc00\\ud800\"",
    "\"a\\ud800b\"",
    "\"\\uDBFF\"",
    "\"\\u12\"",
    "\"bad \\x41 escape\"",
    "\"raw\ttab\"",
    "\"raw\u{1}control\"",
    "\"unterminated",
    "undefined",
    "True",
    "None",
    "'single'",
    "[1,]",
    "{\"a\":1,}",
];

/// Bodies that are not JSON objects at all.
const MALFORMED: &[&str] = &[
    "{",
    "}",
    "{\"a\":}",
    "{\"a\" 1}",
    "[",
    "nul",
    "{'a':1}",
    "{a:1}",
    "\u{feff}{}",
    "{}garbage",
    "{}{}",
    "{\"a\":1}{\"b\":2}",
    "\0",
    "\0{}",
    "{\"\\ud800\":1}",
    "{\"k\":\"\\ud800\"}",
    "{\"k\":\"\\udc00\"}",
    "{\"k\":\"\u{1}\"}",
    "{\"k\":NaN}",
    "{\"k\":1e999}",
    "[]",
    "null",
    "\"just a string\"",
    "1",
    "-0",
    "true",
    "[{}]",
    "<xml/>",
    "a=1&b=2",
    "--boundary\r\nContent-Disposition: form-data\r\n\r\nx\r\n--boundary--",
];

/// Object keys no route accepts.
const ODD_KEYS: &[&str] = &[
    "bogus",
    "",
    " ",
    "\\u0000",
    "filename ",
    "FILENAME",
    "__proto__",
    "constructor",
    "\\ud83d\\ude00",
    "\\u202ekey",
    "limit\\u0000",
    "a.b",
    "$where",
];

fn deep_nesting() -> BoxedStrategy<String> {
    select(vec![16usize, 127, 128, 129, 300, 5000])
        .prop_flat_map(|depth| {
            prop_oneof![
                Just(format!("{}{}", "[".repeat(depth), "]".repeat(depth))),
                Just(format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))),
            ]
        })
        .boxed()
}

fn long_string() -> BoxedStrategy<String> {
    (
        select(vec![256usize, 1024, 1025, 4096, 20_000]),
        select(vec![
            "x", "é", "😀", "\u{301}", "a\u{301}", "\u{202e}", "\0", "\\",
        ]),
    )
        .prop_map(|(n, unit)| json_string(&unit.repeat(n)))
        .boxed()
}

fn arbitrary_text() -> BoxedStrategy<String> {
    vec(any::<char>(), 0..40)
        .prop_map(|chars| chars.into_iter().collect::<String>())
        .boxed()
}

/// Values holding NUL, as text, as a key, and nested.
const NUL_JSON: &[&str] = &[
    "\"\\u0000\"",
    "\"a\\u0000b\"",
    "\"x\\u0000\"",
    "[\"\\u0000\"]",
    "{\"k\":\"\\u0000\"}",
    "{\"\\u0000\":1}",
    "{\"k\":[{\"j\":\"\\u0000\"}]}",
];

/// A JSON text (or not quite) where a value belongs.
fn odd_literal() -> BoxedStrategy<String> {
    Union::new_weighted(vec![
        (3, select(NUL_JSON).prop_map(str::to_owned).boxed()),
        (4, select(ODD_NUMBERS).prop_map(str::to_owned).boxed()),
        (4, select(ODD_JSON).prop_map(str::to_owned).boxed()),
        (3, select(ODD_TEXT).prop_map(json_string).boxed()),
        (2, select(TRAVERSALS).prop_map(json_string).boxed()),
        (2, long_string()),
        (1, deep_nesting()),
        (2, arbitrary_text().prop_map(|s| json_string(&s)).boxed()),
        (1, any::<i64>().prop_map(|n| n.to_string()).boxed()),
        (1, any::<u64>().prop_map(|n| n.to_string()).boxed()),
        (1, any::<f64>().prop_map(|f| f.to_string()).boxed()),
        (1, any::<f64>().prop_map(|f| format!("{f:?}")).boxed()),
    ])
    .boxed()
}

/// A field of a body: its name, values that are valid for it, and its odd values.
#[derive(Debug, Clone)]
struct Field {
    name: &'static str,
    valid: Vec<String>,
    /// Keys of a nested object, whose values are also fuzzed.
    nested: &'static [&'static str],
}

fn field(name: &'static str, valid: &[&str]) -> Field {
    Field {
        name,
        valid: valid.iter().map(|v| (*v).to_owned()).collect(),
        nested: &[],
    }
}

fn nested(name: &'static str, valid: &[&str], keys: &'static [&'static str]) -> Field {
    Field {
        nested: keys,
        ..field(name, valid)
    }
}

fn odd_value_for(f: &Field) -> BoxedStrategy<String> {
    let mut options: Vec<(u32, BoxedStrategy<String>)> = vec![(6, odd_literal())];
    if !f.nested.is_empty() {
        let keys = f.nested.to_vec();
        options.push((
            4,
            (select(keys), odd_literal())
                .prop_map(|(k, v)| format!("{{\"{k}\":{v}}}"))
                .boxed(),
        ));
        options.push((
            1,
            (select(ODD_KEYS), odd_literal())
                .prop_map(|(k, v)| format!("{{\"{k}\":{v}}}"))
                .boxed(),
        ));
    }
    Union::new_weighted(options).boxed()
}

fn object_text(pairs: &[(&str, String)]) -> String {
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", inner.join(","))
}

fn valid_pairs(fields: &[Field], only: &[&str]) -> Vec<(&'static str, String)> {
    fields
        .iter()
        .filter(|f| only.contains(&f.name))
        .map(|f| (f.name, f.valid[0].clone()))
        .collect()
}

/// Bodies for a route taking a JSON object with `fields`; most of them invalid.
fn object_body(
    fields: Vec<Field>,
    required: &'static [&'static str],
    optional: bool,
) -> BoxedStrategy<Gen> {
    let n = fields.len();
    let mut options: Vec<(u32, BoxedStrategy<Gen>)> = Vec::new();

    // One field odd, the required ones valid.
    let one_odd: Vec<BoxedStrategy<Gen>> = fields
        .iter()
        .map(|f| {
            let fields = fields.clone();
            let name = f.name;
            odd_value_for(f)
                .prop_map(move |v| {
                    let mut pairs = valid_pairs(&fields, required);
                    pairs.retain(|(k, _)| *k != name);
                    pairs.push((name, v));
                    Gen::new(object_text(&pairs), false)
                })
                .boxed()
        })
        .collect();
    options.push((8, Union::new(one_odd).boxed()));

    // One field holding NUL, which no database text can store.
    {
        let fields = fields.clone();
        options.push((
            2,
            (0..n, select(NUL_JSON))
                .prop_map(move |(i, v)| {
                    let mut pairs = valid_pairs(&fields, required);
                    pairs.retain(|(k, _)| *k != fields[i].name);
                    pairs.push((fields[i].name, v.to_owned()));
                    Gen::new(object_text(&pairs), false)
                })
                .boxed(),
        ));
    }

    // Every field omitted, valid or odd.
    let each: Vec<BoxedStrategy<Option<(&'static str, String)>>> = fields
        .iter()
        .map(|f| {
            let name = f.name;
            prop_oneof![
                2 => Just(None),
                2 => select(f.valid.clone()).prop_map(move |v| Some((name, v))),
                1 => odd_value_for(f).prop_map(move |v| Some((name, v))),
            ]
            .boxed()
        })
        .collect();
    options.push((
        3,
        each.prop_map(|pairs| {
            let pairs: Vec<(&str, String)> = pairs.into_iter().flatten().collect();
            Gen::new(object_text(&pairs), false)
        })
        .boxed(),
    ));

    // An unknown key.
    {
        let fields = fields.clone();
        options.push((
            3,
            (select(ODD_KEYS), odd_literal())
                .prop_map(move |(k, v)| {
                    let mut pairs = valid_pairs(&fields, required);
                    pairs.push((k, v));
                    Gen::new(object_text(&pairs), true)
                })
                .boxed(),
        ));
    }

    // A required field missing.
    if !required.is_empty() {
        let fields = fields.clone();
        options.push((
            2,
            select(required.to_vec())
                .prop_map(move |missing| {
                    let mut pairs = valid_pairs(&fields, required);
                    pairs.retain(|(k, _)| *k != missing);
                    Gen::new(object_text(&pairs), true)
                })
                .boxed(),
        ));
    }

    // A key given twice: a valid value, then an odd one.
    {
        let fields = fields.clone();
        options.push((
            1,
            (0..n, odd_literal())
                .prop_map(move |(i, v)| {
                    let mut pairs = valid_pairs(&fields, required);
                    pairs.push((fields[i].name, fields[i].valid[0].clone()));
                    pairs.push((fields[i].name, v));
                    Gen::new(object_text(&pairs), false)
                })
                .boxed(),
        ));
    }

    // Not a JSON object.
    options.push((3, select(MALFORMED).prop_map(|t| Gen::new(t, true)).boxed()));
    options.push((1, deep_nesting().prop_map(|t| Gen::new(t, true)).boxed()));
    options.push((
        1,
        arbitrary_text()
            .prop_map(move |t| {
                let blank = t.trim().is_empty() || t.bytes().all(|b| b.is_ascii_whitespace());
                let object = serde_json::from_str::<Value>(&t).is_ok_and(|v| v.is_object());
                let invalid = !(object || (optional && blank));
                Gen::new(t, invalid)
            })
            .boxed(),
    ));
    // Empty or absent.
    options.push((
        1,
        select(vec!["", " ", "\r\n\t "])
            .prop_map(move |t| Gen::new(t, !optional))
            .boxed(),
    ));
    options.push((
        1,
        Just(Gen {
            text: None,
            surely_invalid: !optional,
        })
        .boxed(),
    ));
    // All valid.
    {
        let fields = fields.clone();
        options.push((
            1,
            Just(())
                .prop_map(move |()| {
                    let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                    Gen::new(object_text(&valid_pairs(&fields, &names)), false)
                })
                .boxed(),
        ));
    }
    Union::new_weighted(options).boxed()
}

fn upload_fields(fx: &Fixtures) -> Vec<Field> {
    let hash = json_string(&fx.completed_hash);
    vec![
        field("filename", &["\"a.txt\"", "\"photo.png\""]),
        field("content_type", &["\"text/plain\"", "\"image/png\""]),
        field("file_size_bytes", &["10", "null"]),
        field("presigned_url_expiration", &["3600", "86400"]),
        nested("metadata", &["{}", "{\"k\":\"v\"}"], &["k", ""]),
        field("create_object_on_confirm", &["true", "false"]),
        nested("object_metadata", &["{}", "null"], &["k"]),
        field("blob_property", &["\"file\"", "null"]),
        field("blob_type", &["\"string\"", "\"IMAGE\"", "null"]),
        Field {
            name: "file_hash",
            valid: vec![hash, "null".into()],
            nested: &[],
        },
        field("skip_duplicates", &["true", "false"]),
    ]
}

/// Filenames: traversal attempts, odd Unicode, arbitrary text and plain names.
fn filename_text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(TRAVERSALS).prop_map(str::to_owned),
        3 => select(ODD_TEXT).prop_map(str::to_owned),
        2 => arbitrary_text(),
        1 => (1usize..300).prop_map(|n| "f".repeat(n)),
        1 => (250usize..260).prop_map(|n| "é".repeat(n)),
        1 => "[a-zA-Z0-9 ._-]{1,40}",
    ]
    .boxed()
}

/// Bodies for `POST .../uploads`, with filenames as the main target.
fn create_upload_body(fx: &Fixtures) -> BoxedStrategy<Gen> {
    let fields = upload_fields(fx);
    let generic = object_body(fields, &["filename", "content_type"], false);
    let by_name = (filename_text(), select(vec!["text/plain", "image/png"]))
        .prop_map(|(name, ct)| {
            Gen::new(
                json!({ "filename": name, "content_type": ct }).to_string(),
                false,
            )
        })
        .boxed();
    prop_oneof![3 => generic, 2 => by_name].boxed()
}

fn create_upload_batch_body(fx: &Fixtures) -> BoxedStrategy<Gen> {
    let item = create_upload_body(fx);
    let items = vec(item.prop_map(|g| g.text.unwrap_or_default()), 1..4).prop_map(|items| {
        let items: Vec<String> = items
            .into_iter()
            .map(|t| if t.is_empty() { "null".to_owned() } else { t })
            .collect();
        format!("[{}]", items.join(","))
    });
    let valid_item = "{\"filename\":\"a.txt\",\"content_type\":\"text/plain\"}";
    let fields = vec![
        Field {
            name: "uploads",
            valid: vec![format!("[{valid_item}]")],
            nested: &[],
        },
        nested("shared_metadata", &["{}", "null"], &["k"]),
        nested("shared_object_metadata", &["{}", "null"], &["k"]),
    ];
    let generic = object_body(fields, &["uploads"], false);
    let list_cases = prop_oneof![
        4 => items.prop_map(|list| Gen::new(format!("{{\"uploads\":{list}}}"), false)),
        1 => Just(Gen::new("{\"uploads\":[]}", true)),
        1 => Just(Gen::new(
            format!("{{\"uploads\":[{}]}}", vec![valid_item; 101].join(",")),
            true,
        )),
    ];
    prop_oneof![2 => generic, 2 => list_cases].boxed()
}

/// Values that surely fail a confirmation's options, per field.
fn invalid_confirm_field() -> BoxedStrategy<(&'static str, String)> {
    let etag = select(vec![
        "1",
        "true",
        "[]",
        "{}",
        "\"\"",
        "\"   \"",
        "\"\\ud800\"",
        "9223372036854775808",
        "-0",
        "1e308",
    ])
    .prop_map(|v| ("etag", v.to_owned()));
    let long_etag = Just(("etag", json_string(&"e".repeat(1025))));
    let size = select(vec![
        "0",
        "-1",
        "-9223372036854775808",
        "-9223372036854775809",
        "9223372036854775808",
        "18446744073709551616",
        "1e308",
        "-1e308",
        "1.5",
        "-0",
        "\"1\"",
        "\"NaN\"",
        "NaN",
        "true",
        "[]",
        "{}",
    ])
    .prop_map(|v| ("file_size_bytes", v.to_owned()));
    let auto = select(vec!["1", "0", "\"true\"", "\"yes\"", "[]", "{}", "-0"])
        .prop_map(|v| ("auto_submit_batch", v.to_owned()));
    prop_oneof![3 => etag, 1 => long_etag, 4 => size, 2 => auto].boxed()
}

/// Confirmation bodies that are surely refused.
fn invalid_confirm_body() -> BoxedStrategy<Gen> {
    prop_oneof![
        4 => invalid_confirm_field().prop_map(|(k, v)| Gen::new(object_text(&[(k, v)]), true)),
        2 => (select(ODD_KEYS), odd_literal())
            .prop_map(|(k, v)| Gen::new(object_text(&[(k, v)]), true)),
        2 => select(MALFORMED).prop_map(|t| Gen::new(t, true)),
    ]
    .boxed()
}

fn confirm_fields() -> Vec<Field> {
    vec![
        field("etag", &["\"abc\"", "null"]),
        field("file_size_bytes", &["256", "null"]),
        field("auto_submit_batch", &["false", "null"]),
    ]
}

/// Batch confirmations: every body is refused (an invalid item, or one naming no upload),
/// so that no confirmation ever starts.
fn confirm_batch_body(fx: &Fixtures) -> BoxedStrategy<Gen> {
    let real = fx.upload_ids();
    let ids: BoxedStrategy<(String, bool)> = prop_oneof![
        3 => select(real).prop_map(|id| (json_string(&id), true)),
        1 => "upl_[a-z0-9]{1,20}".prop_map(|id| (json_string(&id), false)),
        1 => select(ODD_TEXT).prop_map(|t| (json_string(t), false)),
    ]
    .boxed();
    let valid_item = (
        ids.clone(),
        select(vec!["", ",\"etag\":\"abc\"", ",\"file_size_bytes\":256"]),
    )
        .prop_map(|((id, real), extra)| (format!("{{\"upload_id\":{id}{extra}}}"), false, real));
    let invalid_item = prop_oneof![
        3 => (ids.clone(), invalid_confirm_field()).prop_map(|((id, _), (k, v))| {
            format!("{{\"upload_id\":{id},\"{k}\":{v}}}")
        }),
        1 => Just("{\"upload_id\":\"\"}".to_owned()),
        1 => Just(format!("{{\"upload_id\":{}}}", json_string(&"u".repeat(129)))),
        1 => select(vec!["1", "null", "true", "[]", "{}", "\"upl_x\""])
            .prop_map(|id| format!("{{\"upload_id\":{id}}}")),
        1 => Just("{\"etag\":\"abc\"}".to_owned()),
        1 => (ids, select(ODD_KEYS), odd_literal())
            .prop_map(|((id, _), k, v)| format!("{{\"upload_id\":{id},\"{k}\":{v}}}")),
        1 => odd_literal(),
    ]
    .prop_map(|t| (t, true, false));
    let item = prop_oneof![2 => valid_item, 1 => invalid_item];
    let lists = vec(item, 1..5)
        .prop_map(|items| {
            let invalid = items.iter().any(|(_, invalid, _)| *invalid);
            let all_real = items.iter().all(|(_, _, real)| *real);
            let mut texts: Vec<String> = items.into_iter().map(|(t, _, _)| t).collect();
            if !invalid && all_real {
                texts.push("{\"upload_id\":\"upl_never_created\"}".to_owned());
            }
            Gen::new(format!("{{\"confirmations\":[{}]}}", texts.join(",")), true)
        })
        .boxed();
    let unknown_items = Just(Gen::new(
        format!(
            "{{\"confirmations\":[{}]}}",
            vec!["{\"upload_id\":\"upl_unknown\"}"; 101].join(",")
        ),
        true,
    ));
    prop_oneof![
        6 => lists,
        1 => Just(Gen::new("{\"confirmations\":[]}", true)),
        1 => unknown_items,
        1 => odd_literal().prop_map(|v| Gen::new(format!("{{\"confirmations\":{v}}}"), true)),
        1 => (select(ODD_KEYS), odd_literal()).prop_map(|(k, v)| {
            Gen::new(format!("{{\"confirmations\":[{{\"upload_id\":\"upl_x\"}}],\"{k}\":{v}}}"), true)
        }),
        2 => select(MALFORMED).prop_map(|t| Gen::new(t, true)),
        1 => Just(Gen { text: None, surely_invalid: true }),
    ]
    .boxed()
}

fn body_for(route: Route, fx: &Fixtures) -> BoxedStrategy<Gen> {
    let page = || {
        vec![
            field("limit", &["10", "1", "100"]),
            field("offset", &["0", "5"]),
        ]
    };
    match route {
        Route::CreateBucket => object_body(
            vec![
                field("bucket_name", &["\"fuzz-made\"", "\"fuzz.made_2\""]),
                field("description", &["\"d\"", "null"]),
                nested("metadata", &["{}", "{\"k\":1}"], &["k"]),
                nested(
                    "bucket_schema",
                    &["null", "{\"properties\":{\"image\":{\"type\":\"image\"}}}"],
                    &["properties"],
                ),
            ],
            &["bucket_name"],
            false,
        ),
        Route::ListBuckets => {
            let mut fields = vec![field("search", &["\"fuzz\"", "null"])];
            fields.extend(page());
            object_body(fields, &[], true)
        }
        Route::CreateUpload => create_upload_body(fx),
        Route::CreateUploadBatch => create_upload_batch_body(fx),
        Route::ListUploads => {
            let mut fields = vec![
                nested(
                    "filters",
                    &[
                        "{\"status\":\"PENDING\"}",
                        "{\"status\":[\"PENDING\",\"COMPLETED\"],\"is_duplicate\":false}",
                        "null",
                    ],
                    &["status", "is_duplicate"],
                ),
                field("search", &["\"a\"", "null"]),
                nested(
                    "sort",
                    &["{\"field\":\"created_at\",\"direction\":\"asc\"}", "null"],
                    &["field", "direction"],
                ),
            ];
            fields.extend(page());
            object_body(fields, &[], true)
        }
        Route::ConfirmBatch => confirm_batch_body(fx),
        Route::ConfirmUpload => object_body(confirm_fields(), &[], true),
        Route::CreateBatch => {
            let object = json_string(&fx.object);
            object_body(
                vec![
                    Field {
                        name: "object_ids",
                        valid: vec![format!("[{object}]")],
                        nested: &[],
                    },
                    nested("metadata", &["{}", "null"], &["k"]),
                ],
                &["object_ids"],
                false,
            )
        }
        Route::ListBatches => {
            let mut fields = vec![field("status", &["\"DRAFT\"", "null"])];
            fields.extend(page());
            object_body(fields, &[], true)
        }
        Route::ListTasks => {
            let mut fields = vec![
                field("status", &["\"COMPLETED\"", "null"]),
                field("task_type", &["\"api_buckets_uploads_confirm\"", "null"]),
            ];
            fields.extend(page());
            object_body(fields, &[], true)
        }
        // Routes that read no body: mostly none, sometimes junk.
        _ => prop_oneof![
            6 => Just(Gen { text: None, surely_invalid: false }),
            1 => select(MALFORMED).prop_map(|t| Gen::new(t, false)),
            1 => odd_literal().prop_map(|t| Gen::new(t, false)),
        ]
        .boxed(),
    }
}

/// Object ids for a batch, most of which name nothing.
fn object_ids_body(fx: &Fixtures) -> BoxedStrategy<Gen> {
    let object = fx.object.clone();
    let wrong: Vec<String> = fx.all_ids();
    prop_oneof![
        2 => vec(
            prop_oneof![
                1 => Just(object),
                2 => select(wrong),
                2 => select(ODD_TEXT).prop_map(str::to_owned),
                1 => arbitrary_text(),
            ],
            1..4,
        )
        .prop_map(|ids| Gen::new(json!({ "object_ids": ids }).to_string(), false)),
        1 => Just(Gen::new(
            json!({ "object_ids": vec!["obj_x"; 1001] }).to_string(),
            true,
        )),
        1 => Just(Gen::new("{\"object_ids\":[]}", true)),
    ]
    .boxed()
}

const CONFIRM_QUERY_VALID: &[&str] = &["", "?async=true", "?async=false"];
const CONFIRM_QUERY_INVALID: &[&str] = &[
    "?async=maybe",
    "?async=",
    "?async",
    "?async=1",
    "?async=0",
    "?async=yes",
    "?async=null",
    "?async=%00",
    "?async=%ff",
    "?async=tru%C3%A9",
];
const CONFIRM_QUERY_ODD: &[&str] = &[
    "?async=TRUE",
    "?async=True",
    "?async=true&async=false",
    "?Async=true",
    "?async[]=true",
    "?async=true&bogus=1",
    "?%zz=1",
    "?async=%20true",
    "?&&&",
];
const CANCEL_QUERY_VALID: &[&str] = &["", "?delete_s3_object=true", "?delete_s3_object=false"];
const CANCEL_QUERY_INVALID: &[&str] = &[
    "?delete_s3_object=2",
    "?delete_s3_object=maybe",
    "?delete_s3_object=",
    "?delete_s3_object",
    "?delete_s3_object=1",
    "?delete_s3_object=0",
    "?delete_s3_object=-0",
    "?delete_s3_object=yes",
    "?delete_s3_object=%00",
    "?delete_s3_object=99999999999999999999",
];
const CANCEL_QUERY_ODD: &[&str] = &[
    "?delete_s3_object=TRUE",
    "?delete_s3_object=true&delete_s3_object=false",
    "?DELETE_S3_OBJECT=true",
    "?delete_s3_object=true&x=1",
    "?%zz",
];
const TASK_QUERIES: &[&str] = &[
    "",
    "?wait_seconds=0",
    "?wait_seconds=1",
    "?wait_seconds=60",
    "?wait_seconds=61",
    "?wait_seconds=-1",
    "?wait_seconds=-0",
    "?wait_seconds=99999999999999999999",
    "?wait_seconds=18446744073709551615",
    "?wait_seconds=18446744073709551616",
    "?wait_seconds=9223372036854775808",
    "?wait_seconds=1e3",
    "?wait_seconds=1.5",
    "?wait_seconds=",
    "?wait_seconds",
    "?wait_seconds=abc",
    "?wait_seconds=NaN",
    "?wait_seconds=%00",
    "?wait_seconds=%ff",
    "?wait_seconds=+5",
    "?wait_seconds=0x10",
    "?wait_seconds=1&wait_seconds=2",
];
const JUNK_QUERIES: &[&str] = &[
    "",
    "?",
    "?a=b",
    "?limit=1000&offset=-1",
    "?namespace=ns-main",
    "?namespace=%00",
    "?namespace=nope",
    "?namespace=",
    "?%zz",
    "?&&&=",
    "?x=%ff",
    "?async=maybe",
    "?wait_seconds=-1",
    "?delete_s3_object=2",
];

fn query_for(route: Route) -> BoxedStrategy<Gen> {
    let pick = |list: &'static [&'static str], invalid: bool| {
        select(list).prop_map(move |q| Gen::new(q, invalid)).boxed()
    };
    let long = Just(Gen::new(format!("?q={}", "z".repeat(4000)), false)).boxed();
    match route {
        Route::ConfirmUpload => prop_oneof![
            3 => pick(CONFIRM_QUERY_VALID, false),
            4 => pick(CONFIRM_QUERY_INVALID, true),
            2 => pick(CONFIRM_QUERY_ODD, false),
        ]
        .boxed(),
        Route::CancelUpload => prop_oneof![
            3 => pick(CANCEL_QUERY_VALID, false),
            4 => pick(CANCEL_QUERY_INVALID, true),
            2 => pick(CANCEL_QUERY_ODD, false),
        ]
        .boxed(),
        Route::GetTask => prop_oneof![6 => pick(TASK_QUERIES, false), 1 => long].boxed(),
        _ => prop_oneof![6 => pick(JUNK_QUERIES, false), 1 => long].boxed(),
    }
}

fn auth_strategy() -> BoxedStrategy<Auth> {
    let key_faults = vec![
        KeyFault::Basic,
        KeyFault::SchemeOnly,
        KeyFault::SchemeAndSpace,
        KeyFault::PrefixOnly,
        KeyFault::Unknown,
        KeyFault::LowerCaseScheme,
        KeyFault::TooLong,
        KeyFault::Suffixed,
        KeyFault::NonText,
        KeyFault::OtherScheme,
    ];
    let ns_faults = vec![
        NsFault::Empty,
        NsFault::Unknown,
        NsFault::OtherTenant,
        NsFault::NonText,
        NsFault::Traversal,
        NsFault::Long,
        NsFault::PercentNul,
        NsFault::ById,
        NsFault::Padded,
    ];
    prop_oneof![
        14 => Just(Auth::Good),
        1 => Just(Auth::NoKey),
        2 => select(key_faults).prop_map(Auth::BadKey),
        1 => Just(Auth::OtherOrgKey),
        1 => Just(Auth::NoNamespace),
        2 => select(ns_faults).prop_map(Auth::Namespace),
    ]
    .boxed()
}

fn content_type_strategy() -> BoxedStrategy<Option<&'static str>> {
    prop_oneof![
        10 => Just(Some("application/json")),
        2 => Just(None),
        1 => select(vec![
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json; charset=utf-16",
            "application/xml",
            "",
            "*/*",
            "application/json\u{1}",
        ])
        .prop_map(Some),
    ]
    .boxed()
}

/// Segments that are not plain ids: empty, dot segments, encoded separators, bad escapes,
/// words the router knows, odd Unicode.
const ODD_SEGMENTS: &[&str] = &[
    "",
    ".",
    "..",
    "%2e",
    "%2e%2e",
    "%2E%2E",
    ".%2e",
    "%2e%2e%2f",
    "..%2f..%2fetc%2fpasswd",
    "%2e%2e%5c",
    "..\\..\\x",
    "a/../../b",
    "/abs",
    "%2F",
    "a%2Fb",
    "%252e%252e%252f",
    "%00",
    "a%00b",
    "%ff",
    "%FF%FE",
    "%c0%af",
    "%ed%a0%80",
    "%",
    "%zz",
    "%2",
    "list",
    "batch",
    "confirm",
    "submit",
    "%3F",
    "%23",
    "%20",
    "+",
    "~",
    "'%20OR%20'1'%3D'1",
    "%24%7Bjndi%7D",
    "😀",
    "\u{202e}evil",
    "e\u{301}\u{302}",
    "\u{feff}",
    "\u{200b}",
    "null",
    "-1",
    "0",
    "99999999999999999999",
    "1e308",
    "NaN",
];

/// Whether `text`, as a path segment, surely reaches the route's `{param}`.
fn surely_matches(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let dot = matches!(
        lower.as_str(),
        "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e."
    );
    !text.is_empty()
        && !dot
        && !text.contains(['/', '\\', '?', '#'])
        && !["list", "batch", "confirm", "submit"].contains(&text)
}

fn seg_from(text: String) -> Seg {
    let plain = surely_matches(&text);
    Seg { text, plain }
}

fn slot_strategy(slot: Slot, fx: &Fixtures) -> BoxedStrategy<Seg> {
    let (real, prefix): (Vec<String>, &str) = match slot {
        Slot::Bucket => (vec![fx.bucket.clone(), fx.bucket_id.clone()], "bkt_"),
        Slot::Upload => (fx.upload_ids(), "upl_"),
        Slot::Batch => (vec![fx.batch.clone()], "btch_"),
        Slot::Object => (vec![fx.object.clone()], "obj_"),
        Slot::Task => (vec![fx.task.clone()], "task_"),
    };
    let wrong: Vec<String> = fx
        .all_ids()
        .into_iter()
        .filter(|id| !real.contains(id))
        .collect();
    let mut options: Vec<(u32, BoxedStrategy<Seg>)> = vec![
        (
            if slot == Slot::Bucket { 10 } else { 5 },
            select(real.clone()).prop_map(|t| Seg::plain(&t)).boxed(),
        ),
        (3, select(wrong).prop_map(|t| Seg::plain(&t)).boxed()),
        (
            2,
            proptest::string::string_regex(&format!("{prefix}[A-Za-z0-9]{{1,30}}"))
                .expect("a regex")
                .prop_map(|t| Seg::plain(&t))
                .boxed(),
        ),
        (
            4,
            select(ODD_SEGMENTS)
                .prop_map(|t| seg_from(t.to_owned()))
                .boxed(),
        ),
        (
            1,
            select(vec![129usize, 256, 2000, 8000])
                .prop_map(|n| Seg::plain(&"x".repeat(n)))
                .boxed(),
        ),
        (
            1,
            (1usize..600).prop_map(|n| seg_from("é".repeat(n))).boxed(),
        ),
        (
            2,
            arbitrary_text()
                .prop_map(|t| seg_from(encode_segment(&t)))
                .boxed(),
        ),
        (
            1,
            select(real)
                .prop_map(|t| seg_from(format!("{t}%00")))
                .boxed(),
        ),
    ];
    if slot == Slot::Bucket {
        options.push((1, Just(Seg::plain(&fx.other_bucket)).boxed()));
    }
    Union::new_weighted(options).boxed()
}

/// Paths no route serves.
const UNROUTED: &[&str] = &[
    "/",
    "/v1",
    "/v1/",
    "/v2/buckets",
    "/v1/bucket",
    "/V1/BUCKETS",
    "/v1/buckets/",
    "/v1/buckets//uploads",
    "/v1/buckets/x/uploads/y/confirm/extra",
    "/v1/buckets/x/y/z/w",
    "/v1/tasks",
    "/v1/tasks/",
    "/v1/tasks/x/y",
    "/v1/uploads",
    "/v1/buckets/x/objects",
    "/v1/buckets/x/batches/y/submit/z",
    "/openapi.json/x",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/v1/%00",
    "/v1/buckets%2Flist",
];

fn unrouted_strategy() -> BoxedStrategy<Case> {
    (
        select(UNROUTED),
        select(vec![
            Method::GET,
            Method::POST,
            Method::DELETE,
            Method::PUT,
            Method::PATCH,
            Method::OPTIONS,
        ]),
        auth_strategy(),
        prop_oneof![
            2 => Just(None),
            1 => select(MALFORMED).prop_map(|t| Some(t.to_owned())),
        ],
    )
        .prop_map(|(path, method, auth, body)| Case {
            route: Route::Unrouted,
            method,
            path: path.to_owned(),
            plain: false,
            body,
            content_type: Some("application/json"),
            auth,
        })
        .boxed()
}

/// Requests for `route`, refused in most cases.
fn case_strategy(route: Route, fx: &Fixtures) -> BoxedStrategy<Case> {
    if route == Route::Unrouted {
        return unrouted_strategy();
    }
    let segs: Vec<BoxedStrategy<Seg>> = route
        .slots()
        .into_iter()
        .map(|s| slot_strategy(s, fx))
        .collect();
    let body = if route == Route::CreateBatch {
        prop_oneof![3 => body_for(route, fx), 2 => object_ids_body(fx)].boxed()
    } else {
        body_for(route, fx)
    };
    let wrong_method = prop_oneof![
        14 => Just(None),
        1 => select(vec![
            Method::GET,
            Method::POST,
            Method::DELETE,
            Method::PUT,
            Method::PATCH,
            Method::OPTIONS,
        ])
        .prop_map(Some),
    ];
    let armed = [fx.pending.clone(), fx.spare.clone()];
    let fx = fx.clone();
    (
        segs,
        query_for(route),
        body,
        invalid_confirm_body(),
        auth_strategy(),
        content_type_strategy(),
        wrong_method,
    )
        .prop_map(
            move |(mut segs, query, mut body, refused_body, mut auth, content_type, other)| {
                match route {
                    // A valid confirmation of a pending upload would start work: keep the
                    // query or the body surely invalid.
                    Route::ConfirmUpload
                        if armed.contains(&segs[1].text)
                            && !query.surely_invalid
                            && !body.surely_invalid =>
                    {
                        body = refused_body;
                    }
                    // Only the spare upload may be canceled.
                    Route::CancelUpload if segs[1].text == fx.pending && !query.surely_invalid => {
                        segs[1] = Seg::plain(&fx.spare);
                    }
                    // Submitting the fixture batch would start work: never authorized.
                    Route::SubmitBatch
                        if segs[1].text == fx.batch
                            && !matches!(auth, Auth::NoKey | Auth::BadKey(_)) =>
                    {
                        auth = Auth::BadKey(KeyFault::Unknown);
                    }
                    _ => {}
                }
                let method = match other {
                    Some(m) if !route.allowed().contains(&m) => m,
                    _ => route.method(),
                };
                let mut path = route.path(&segs);
                path.push_str(query.text.as_deref().unwrap_or(""));
                Case {
                    route,
                    method,
                    plain: segs.iter().all(|s| s.plain),
                    path,
                    body: body.text,
                    content_type,
                    auth,
                }
            },
        )
        .boxed()
}

// ---------------------------------------------------------------------------------------
// Sending and checking.

fn key_header(fault: KeyFault, key: &str) -> HeaderValue {
    let bytes: Vec<u8> = match fault {
        KeyFault::Basic => b"Basic dXNlcjpwYXNz".to_vec(),
        KeyFault::SchemeOnly => b"Bearer".to_vec(),
        KeyFault::SchemeAndSpace => b"Bearer ".to_vec(),
        KeyFault::PrefixOnly => b"Bearer sk_".to_vec(),
        KeyFault::Unknown => b"Bearer sk_never_issued_0123456789".to_vec(),
        KeyFault::LowerCaseScheme => format!("bearer {key}").into_bytes(),
        KeyFault::TooLong => format!("Bearer sk_{}", "a".repeat(300)).into_bytes(),
        KeyFault::Suffixed => format!("Bearer {key}x").into_bytes(),
        KeyFault::NonText => {
            let mut v = format!("Bearer {key}").into_bytes();
            v.extend_from_slice(&[0xff, 0xfe, 0xe2, 0x80, 0xae]);
            v
        }
        KeyFault::OtherScheme => format!("Token {key}").into_bytes(),
    };
    HeaderValue::from_bytes(&bytes).expect("a valid header value")
}

fn namespace_header(fault: NsFault, fx: &Fixtures) -> HeaderValue {
    let bytes: Vec<u8> = match fault {
        NsFault::Empty => Vec::new(),
        NsFault::Unknown => b"ns-never-created".to_vec(),
        NsFault::OtherTenant => fx.other_namespace.clone().into_bytes(),
        NsFault::NonText => vec![b'n', b's', 0xff, 0xfe, 0x80],
        NsFault::Traversal => format!("../{}", fx.namespace).into_bytes(),
        NsFault::Long => "n".repeat(5000).into_bytes(),
        NsFault::PercentNul => format!("{}%00", fx.namespace).into_bytes(),
        NsFault::ById => fx.namespace_id.clone().into_bytes(),
        NsFault::Padded => format!("  {}  ", fx.namespace).into_bytes(),
    };
    HeaderValue::from_bytes(&bytes).expect("a valid header value")
}

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

/// A created upload's key is `{namespace}/{bucket}/{upload}/{filename}`, and its presigned
/// URL addresses that key and nothing outside the upload's prefix.
fn assert_contained(upload: &Value, namespace_id: &str, filename: Option<&str>) {
    let id = str_field(upload, "upload_id");
    let bucket_id = str_field(upload, "bucket_id");
    let stored = str_field(upload, "filename");
    if let Some(sent) = filename {
        assert_eq!(stored, sent, "the filename is kept as sent: {upload}");
    }
    for bad in ['/', '\\'] {
        assert!(
            !stored.contains(bad),
            "filename with {bad:?} accepted: {upload}"
        );
    }
    assert!(
        !stored.contains(".."),
        "filename with '..' accepted: {upload}"
    );
    assert!(
        !stored.chars().any(char::is_control),
        "filename with a control character accepted: {upload}"
    );
    let prefix = format!("{namespace_id}/{bucket_id}/{id}/");
    let key = str_field(upload, "s3_key");
    assert_eq!(key, format!("{prefix}{stored}"), "the S3 key: {upload}");

    let url = reqwest::Url::parse(str_field(upload, "presigned_url"))
        .unwrap_or_else(|e| panic!("presigned_url does not parse ({e}): {upload}"));
    let raw = url.path();
    let lower = raw.to_ascii_lowercase();
    for bad in [
        "/../", "/./", "%2f..", "..%2f", "%2f.%2f", "%5c..", "..%5c", "/%2e", "%2e/",
    ] {
        assert!(
            !lower.contains(bad),
            "presigned URL path holds {bad:?}: {raw} ({upload})"
        );
    }
    assert!(
        !lower.ends_with("/..") && !lower.ends_with("/."),
        "presigned URL path ends in a dot segment: {raw}"
    );
    let decoded = percent_decode(raw);
    let segments: Vec<&str> = decoded.split('/').collect();
    assert!(
        segments.iter().all(|s| *s != ".." && *s != "."),
        "presigned URL path has a dot segment: {decoded}"
    );
    assert!(segments.len() > 2, "presigned URL path: {decoded}");
    assert_eq!(
        decoded,
        format!("/{}/{key}", segments[1]),
        "the presigned URL addresses exactly the upload's key"
    );
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

// ---------------------------------------------------------------------------------------
// The properties.

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

/// How the body of an oversized request is laid out.
#[derive(Debug, Clone, Copy)]
enum Padding {
    /// A valid object whose first field holds a long string.
    LongString,
    /// `{` spaces `}`.
    Whitespace,
    /// A long array of numbers.
    Numbers,
    /// A string of multi-byte characters.
    MultiByte,
    /// Bytes that are not UTF-8.
    Binary,
}

fn padded_body(padding: Padding, field: &str, size: usize) -> Vec<u8> {
    let mut out = match padding {
        Padding::LongString => {
            let head = format!("{{\"{field}\":\"");
            let mut s = head.into_bytes();
            let fill = size.saturating_sub(s.len() + 2);
            s.extend(std::iter::repeat_n(b'a', fill));
            s.extend_from_slice(b"\"}");
            s
        }
        Padding::Whitespace => {
            let mut s = b"{".to_vec();
            s.extend(std::iter::repeat_n(b' ', size.saturating_sub(2)));
            s.push(b'}');
            s
        }
        Padding::Numbers => {
            let mut s = format!("{{\"{field}\":[").into_bytes();
            while s.len() + 6 < size {
                s.extend_from_slice(b"12345,");
            }
            s.extend_from_slice(b"1]}");
            s
        }
        Padding::MultiByte => {
            let mut s = format!("{{\"{field}\":\"").into_bytes();
            while s.len() + 4 + 2 <= size {
                s.extend_from_slice("😀".as_bytes());
            }
            s
        }
        Padding::Binary => (0..size).map(|i| (i % 251) as u8 | 0x80).collect(),
    };
    // Exactly `size` bytes: trim or pad with spaces (outside any string when possible).
    if out.len() > size {
        out.truncate(size);
    }
    while out.len() < size {
        out.push(b' ');
    }
    out
}

/// Sends `body` with `Transfer-Encoding: chunked` (no length known up front).
async fn send_chunked(
    app: &TestApp,
    method: &Method,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let addr = app.base_url.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect to the API");
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nX-Namespace: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.api_key, app.namespace
    );
    // The write half stays open until the answer is read: the server takes a half-closed
    // connection for an abandoned one.
    let writer = tokio::spawn(async move {
        let written: std::io::Result<()> = async {
            wr.write_all(head.as_bytes()).await?;
            for chunk in body.chunks(8192) {
                wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                wr.write_all(chunk).await?;
                wr.write_all(b"\r\n").await?;
            }
            wr.write_all(b"0\r\n\r\n").await?;
            wr.flush().await
        }
        .await;
        (written, wr)
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), rd.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Ok(Err(e)) if raw.is_empty() => panic!("no answer to a chunked {method} {path}: {e}"),
            Ok(Err(_)) => break,
            Err(_) => panic!("no answer within 30 s to a chunked {method} {path}"),
        }
    }
    // The server may answer before reading the whole body; a broken pipe is fine then.
    let _ = writer.await;
    parse_http_answer(&raw)
}

fn parse_http_answer(raw: &[u8]) -> (StatusCode, Value) {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut decoded = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let len = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16)
                .unwrap_or(0);
            if len == 0 {
                break;
            }
            let start = eol + 2;
            decoded.extend_from_slice(&rest[start..(start + len).min(rest.len())]);
            rest = &rest[(start + len + 2).min(rest.len())..];
        }
        body = decoded;
    }
    let text = String::from_utf8_lossy(&body).to_string();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (StatusCode::from_u16(status).expect("a status"), value)
}

#[derive(Debug, Clone)]
struct BigCase {
    route: Route,
    size: usize,
    padding: Padding,
    chunked: bool,
    content_type: Option<&'static str>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_answer_413_with_the_envelope() {
    let app = TestApp::spawn_with(|cfg| cfg.api.max_body_bytes = BODY_LIMIT).await;
    let bucket = bucket_name("big");
    let bucket_id = str_field(&app.create_bucket(&bucket).await, "bucket_id").to_owned();
    settle(&app).await;

    let body_routes: Vec<Route> = ROUTES.iter().copied().filter(|r| r.takes_body()).collect();
    let limit = BODY_LIMIT;
    let sizes = vec![
        limit - 1,
        limit,
        limit + 1,
        limit + 2,
        limit + 100,
        2 * limit,
        4 * limit,
        1024 * 1024 + 1,
    ];
    let strategy = (
        select(body_routes.clone()),
        select(sizes),
        select(vec![
            Padding::LongString,
            Padding::Whitespace,
            Padding::Numbers,
            Padding::MultiByte,
            Padding::Binary,
        ]),
        prop_oneof![3 => Just(false), 1 => Just(true)],
        prop_oneof![
            4 => Just(Some("application/json")),
            1 => Just(None),
            1 => Just(Some("text/plain")),
            1 => Just(Some("application/octet-stream")),
        ],
    )
        .prop_map(|(route, size, padding, chunked, content_type)| BigCase {
            route,
            size,
            padding,
            chunked,
            content_type,
        });
    let mut runner = runner(60);
    let mut cases = generate(&mut runner, &strategy, 50);
    // Every route at least once just over the limit, once at it, once far over it.
    for route in &body_routes {
        for (size, chunked) in [(limit + 1, false), (limit, false), (2 * limit, true)] {
            cases.push(BigCase {
                route: *route,
                size,
                padding: Padding::LongString,
                chunked,
                content_type: Some("application/json"),
            });
        }
    }

    let segs = [Seg::plain(&bucket_id), Seg::plain("upl_never_created")];
    let started = std::time::Instant::now();
    let mut over = 0;
    for case in &cases {
        let _guard = CaseGuard(format!("{case:?}"));
        let field = match case.route {
            Route::CreateBucket => "description",
            Route::CreateUpload => "filename",
            Route::CreateUploadBatch => "uploads",
            Route::ConfirmBatch => "confirmations",
            Route::ConfirmUpload => "etag",
            Route::CreateBatch => "object_ids",
            Route::ListUploads => "search",
            Route::ListBuckets => "search",
            _ => "status",
        };
        let body = padded_body(case.padding, field, case.size);
        assert_eq!(body.len(), case.size);
        let path = case.route.path(&segs[..case.route.slots().len()]);
        let before = snapshot(&app).await;
        let (status, answer) = if case.chunked {
            send_chunked(&app, &case.route.method(), &path, body).await
        } else {
            let mut rb = app.request(case.route.method(), &path).body(body);
            if let Some(ct) = case.content_type {
                rb = rb.header(CONTENT_TYPE, ct);
            }
            send(rb).await
        };
        assert!(!status.is_server_error(), "5xx: {status} {answer}");
        if case.size > limit {
            over += 1;
            assert_error(status, &answer, 413, "PayloadTooLargeError");
        } else {
            assert_ne!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
        }
        if status.is_client_error() {
            assert_envelope(status, &answer);
            assert_eq!(snapshot(&app).await, before, "a refused request wrote rows");
        }
    }
    eprintln!(
        "{} oversized-or-boundary bodies ({over} over the limit) in {:.1} s",
        cases.len(),
        started.elapsed().as_secs_f64()
    );

    // Routes that read no body must still answer well when sent one over the limit.
    let bodyless = [
        (Method::GET, format!("/v1/buckets/{bucket}")),
        (Method::GET, format!("/v1/buckets/{bucket}/uploads/upl_x")),
        (
            Method::DELETE,
            format!("/v1/buckets/{bucket}/uploads/upl_x"),
        ),
        (Method::GET, format!("/v1/buckets/{bucket}/batches/btch_x")),
        (
            Method::POST,
            format!("/v1/buckets/{bucket}/batches/btch_x/submit"),
        ),
        (Method::GET, format!("/v1/buckets/{bucket}/objects/obj_x")),
        (Method::GET, "/v1/tasks/task_x".to_owned()),
        (Method::DELETE, "/v1/tasks/task_x".to_owned()),
    ];
    for (method, path) in bodyless {
        let _guard = CaseGuard(format!("{method} {path} with a body over the limit"));
        let before = snapshot(&app).await;
        let body = padded_body(Padding::LongString, "x", limit + 1);
        let (status, answer) = send(
            app.request(method, &path)
                .header(CONTENT_TYPE, "application/json")
                .body(body),
        )
        .await;
        assert!(!status.is_server_error(), "5xx: {status} {answer}");
        if status.is_client_error() {
            assert_envelope(status, &answer);
            assert_eq!(snapshot(&app).await, before, "a refused request wrote rows");
        }
        eprintln!("{path} with an oversized body it does not read: {status}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_filenames_never_escape_the_upload_prefix() {
    let app = TestApp::spawn_with(|cfg| cfg.api.max_body_bytes = BODY_LIMIT).await;
    let bucket = bucket_name("names");
    app.create_bucket(&bucket).await;
    settle(&app).await;

    let mut runner = runner(80);
    let mut names = generate(&mut runner, &(filename_text(), any::<bool>()), 80);
    names.extend(TRAVERSALS.iter().map(|t| ((*t).to_owned(), false)));
    let mut accepted = 0;
    for (name, in_batch) in &names {
        let _guard = CaseGuard(format!("filename {name:?} (batch: {in_batch})"));
        // The contract's rule, plus `.`: a dot segment, which URL parsers rewrite, so a
        // presigned URL ending in it would address another key.
        let chars = name.chars().count();
        let allowed = (1..=255).contains(&chars)
            && name != "."
            && !name.contains(['/', '\\'])
            && !name.contains("..")
            && !name.chars().any(char::is_control);
        let item = json!({ "filename": name, "content_type": "text/plain" });
        let before = snapshot(&app).await;
        let (status, body) = if *in_batch {
            send(
                app.post(&format!("/v1/buckets/{bucket}/uploads/batch"))
                    .json(&json!({ "uploads": [item] })),
            )
            .await
        } else {
            app.create_upload(&bucket, item).await
        };
        assert!(!status.is_server_error(), "5xx: {status} {body}");
        if allowed {
            let upload = if *in_batch {
                assert_eq!(status, StatusCode::OK, "{body}");
                body["uploads"][0].clone()
            } else {
                assert_eq!(status, StatusCode::OK, "{body}");
                body
            };
            assert_contained(&upload, &app.namespace_id, Some(name));
            accepted += 1;
        } else {
            assert_error(status, &body, 422, "ValidationError");
            assert_eq!(snapshot(&app).await, before, "a refused upload wrote rows");
        }
    }

    // Lone surrogates and raw control characters are not JSON; an escaped NUL is refused.
    for raw in [
        "{\"filename\":\"\\ud800.txt\",\"content_type\":\"text/plain\"}",
        "{\"filename\":\"a\\udc00\",\"content_type\":\"text/plain\"}",
        "{\"filename\":\"a\u{1}b\",\"content_type\":\"text/plain\"}",
        "{\"filename\":\"a\\u0000b\",\"content_type\":\"text/plain\"}",
    ] {
        let before = snapshot(&app).await;
        let (status, body) = send(
            app.post(&format!("/v1/buckets/{bucket}/uploads"))
                .header(CONTENT_TYPE, "application/json")
                .body(raw),
        )
        .await;
        assert_error(status, &body, 422, "ValidationError");
        assert_eq!(snapshot(&app).await, before, "a refused upload wrote rows");
    }
    eprintln!("{accepted} of {} filenames accepted", names.len());
    app.stop().await;
}
