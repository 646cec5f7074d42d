//! The upload routes: create (alone and in batches) with filenames as the main target,
//! list, and cancel's queries; and the property that an accepted filename never leaves
//! its upload's prefix.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

use super::bodies::{field, list_body, nested, object_body, Field};
use super::paths::percent_decode;
use super::values::{arbitrary_text, ODD_TEXT, TRAVERSALS};
use super::{
    generate, json_string, runner, settle, snapshot, CaseGuard, Fixtures, Gen, BODY_LIMIT,
};

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
pub(super) fn filename_text() -> BoxedStrategy<String> {
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
pub(super) fn create_upload_body(fx: &Fixtures) -> BoxedStrategy<Gen> {
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

pub(super) fn create_upload_batch_body(fx: &Fixtures) -> BoxedStrategy<Gen> {
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

pub(super) fn list_uploads_body() -> BoxedStrategy<Gen> {
    list_body(vec![
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
    ])
}

pub(super) const CANCEL_QUERY_VALID: &[&str] =
    &["", "?delete_s3_object=true", "?delete_s3_object=false"];
pub(super) const CANCEL_QUERY_INVALID: &[&str] = &[
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
pub(super) const CANCEL_QUERY_ODD: &[&str] = &[
    "?delete_s3_object=TRUE",
    "?delete_s3_object=true&delete_s3_object=false",
    "?DELETE_S3_OBJECT=true",
    "?delete_s3_object=true&x=1",
    "?%zz",
];

/// A created upload's key is `{namespace}/{bucket}/{upload}/{filename}`, and its presigned
/// URL addresses that key and nothing outside the upload's prefix.
pub(super) fn assert_contained(upload: &Value, namespace_id: &str, filename: Option<&str>) {
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
