//! Multipart uploads: created with the upload, parts signed a window at a time and PUT in
//! any order, listed for a client that resumes, completed by confirm; canceled, expired
//! and orphaned ones aborted. All on the embedded store, which lists multipart uploads
//! and checks a part's signed SHA-256 as S3 does.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use upconfirm::service::config::SweepConfig;

const MIB: usize = 1 << 20;

async fn create_multipart(app: &TestApp, bucket: &str, name: &str, size: usize) -> Value {
    let (status, created) = app
        .create_upload(
            bucket,
            json!({"filename": name, "content_type": "video/mp4",
                   "file_size_bytes": size, "part_size_bytes": 5 * MIB}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    created
}

fn parts_path(bucket: &str, upload_id: &str) -> String {
    format!("/v1/buckets/{bucket}/uploads/{upload_id}/parts")
}

/// Signs `numbers`, with the SHA-256 of the parts in `hashed`; answers URL and headers by number.
async fn sign(
    app: &TestApp,
    bucket: &str,
    upload_id: &str,
    numbers: &[i32],
    hashed: &[(i32, &[u8])],
) -> BTreeMap<i32, (String, BTreeMap<String, String>)> {
    let sha: BTreeMap<String, String> = hashed
        .iter()
        .map(|(n, bytes)| (n.to_string(), sha256_hex(bytes)))
        .collect();
    let (status, body) = send(
        app.post(&parts_path(bucket, upload_id))
            .json(&json!({"part_numbers": numbers, "sha256": sha})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let parts = body["parts"].as_array().expect("parts").clone();
    assert_eq!(parts.len(), numbers.len(), "{body}");
    parts
        .into_iter()
        .map(|p| {
            let number = p["part_number"].as_i64().unwrap() as i32;
            let headers = serde_json::from_value(p["headers"].clone()).unwrap();
            (number, (str_field(&p, "url").to_owned(), headers))
        })
        .collect()
}

/// PUTs a part with the headers its URL was signed with; answers status, ETag and body.
async fn put_part(
    app: &TestApp,
    signed: &(String, BTreeMap<String, String>),
    bytes: &[u8],
) -> (StatusCode, String, String) {
    let mut put = app.client.put(&signed.0).body(bytes.to_vec());
    for (name, value) in &signed.1 {
        put = put.header(name, value);
    }
    let resp = put.send().await.expect("PUT part");
    let status = resp.status();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned();
    (status, etag, resp.text().await.unwrap_or_default())
}

/// The multipart uploads the store has in progress.
async fn in_progress(app: &TestApp) -> Vec<String> {
    app.blob()
        .multipart_uploads("", 1000)
        .await
        .expect("list multipart uploads")
        .into_iter()
        .map(|u| u.key)
        .collect()
}

async fn stored_multipart_id(app: &TestApp, upload_id: &str) -> String {
    sqlx::query_scalar("SELECT multipart_upload_id FROM uploads WHERE id = $1")
        .bind(upload_id)
        .fetch_one(&app.pool)
        .await
        .expect("multipart_upload_id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_signed_in_two_windows_and_put_out_of_order_confirm_to_one_object() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("mp");
    app.create_bucket(&bucket).await;
    let bytes = random_bytes(15 * MIB);
    let created = create_multipart(&app, &bucket, "film.mp4", bytes.len()).await;
    assert_eq!(created["presigned_url"], Value::Null, "{created}");
    assert_eq!(created["upload_headers"], Value::Null, "{created}");
    assert_eq!(
        created["multipart"],
        json!({"part_size_bytes": 5 * MIB, "part_count": 3}),
        "{created}"
    );
    let id = str_field(&created, "upload_id").to_owned();
    let part = |n: usize| &bytes[(n - 1) * 5 * MIB..n * 5 * MIB];

    // Two windows; the second signs part 3's SHA-256 into its URL.
    let mut urls = sign(&app, &bucket, &id, &[2, 1], &[]).await;
    assert!(urls[&1].1.is_empty(), "no header to send: {:?}", urls[&1]);
    urls.extend(sign(&app, &bucket, &id, &[3], &[(3, part(3))]).await);
    assert!(
        urls[&3].1.contains_key("x-amz-checksum-sha256"),
        "{:?}",
        urls[&3]
    );
    // Bytes other than the signed part's are refused by the store.
    let (status, _, text) = put_part(&app, &urls[&3], part(1)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("BadDigest"), "{text}");

    let mut etags = BTreeMap::new();
    for n in [3, 1, 2] {
        let (status, etag, text) = put_part(&app, &urls[&(n as i32)], part(n)).await;
        assert_eq!(status, StatusCode::OK, "part {n}: {text}");
        etags.insert(n as i32, etag);
    }

    let (status, listed) = send(app.get(&parts_path(&bucket, &id))).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["missing"], json!([]), "{listed}");
    assert_eq!(listed["bytes_uploaded"], json!(15 * MIB), "{listed}");
    let numbers: Vec<i64> = listed["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["part_number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, vec![1, 2, 3], "{listed}");
    for p in listed["parts"].as_array().unwrap() {
        let n = p["part_number"].as_i64().unwrap() as i32;
        assert_eq!(p["etag"], json!(etags[&n]), "{listed}");
        assert_eq!(p["size_bytes"], json!(5 * MIB), "{listed}");
    }
    assert_eq!(
        listed["parts"][2]["sha256"],
        json!(sha256_hex(part(3))),
        "{listed}"
    );

    let (status, done) = app.confirm(&bucket, &id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["file_hash"], json!(sha256_hex(&bytes)), "{done}");
    assert_eq!(done["file_size_bytes"], json!(15 * MIB), "{done}");
    // A multipart object's ETag: the MD5 of the parts' MD5s, and their count.
    assert!(str_field(&done, "etag").ends_with("-3"), "{}", done["etag"]);
    assert_eq!(app.count_objects_for_upload(&id).await, 1);
    let upload = app.get_upload(&bucket, &id).await;
    let hashed = app
        .blob()
        .sha256(str_field(&upload, "s3_key"), &mut |_| {})
        .await
        .expect("the assembled object");
    assert_eq!(hashed.sha256_hex, sha256_hex(&bytes));
    assert!(
        in_progress(&app).await.is_empty(),
        "completed, not left open"
    );
    // The assembled object has no part URL left to write through. (A small body: the store
    // answers before reading it, and a large one could still be on its way.)
    let (status, _, _) = put_part(&app, &urls[&1], b"late").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = send(app.get(&parts_path(&bucket, &id))).await;
    assert_error(status, &body, 400, "BadRequestError");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_part_fails_naming_the_gaps_and_a_later_confirm_completes() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("mpgap");
    app.create_bucket(&bucket).await;
    let bytes = random_bytes(15 * MIB + 100);
    let created = create_multipart(&app, &bucket, "gap.bin", bytes.len()).await;
    assert_eq!(created["multipart"]["part_count"], 4, "{created}");
    let id = str_field(&created, "upload_id").to_owned();
    let urls = sign(&app, &bucket, &id, &[1, 2, 3, 4], &[]).await;
    let range = |n: usize| &bytes[(n - 1) * 5 * MIB..(n * 5 * MIB).min(bytes.len())];
    for n in [1, 4] {
        let (status, _, text) = put_part(&app, &urls[&(n as i32)], range(n)).await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    let (_, listed) = send(app.get(&parts_path(&bucket, &id))).await;
    assert_eq!(listed["missing"], json!([2, 3]), "{listed}");

    let (status, body) = app.confirm(&bucket, &id, "", None).await;
    assert_error(status, &body, 400, "BadRequestError");
    assert_eq!(
        body["error"]["details"]["reason"], "parts_missing",
        "{body}"
    );
    assert_eq!(
        body["error"]["details"]["actual"]["missing_parts"],
        json!([2, 3]),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("2-3"),
        "{body}"
    );
    assert_eq!(app.get_upload(&bucket, &id).await["status"], "FAILED");

    // A part of the wrong size is named too.
    let (status, _, _) = put_part(&app, &urls[&2], &range(2)[..MIB]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = put_part(&app, &urls[&3], range(3)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app.confirm(&bucket, &id, "", None).await;
    assert_error(status, &body, 400, "BadRequestError");
    assert_eq!(
        body["error"]["details"]["reason"], "part_size_mismatch",
        "{body}"
    );

    // The failed upload takes the part again and confirms.
    let (status, _, _) = put_part(&app, &urls[&2], range(2)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, done) = app.confirm(&bucket, &id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["file_hash"], json!(sha256_hex(&bytes)), "{done}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_aborts_the_multipart_upload() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("mpcancel");
    app.create_bucket(&bucket).await;
    let created = create_multipart(&app, &bucket, "c.bin", 12 * MIB).await;
    let id = str_field(&created, "upload_id").to_owned();
    let urls = sign(&app, &bucket, &id, &[1], &[]).await;
    let (status, _, _) = put_part(&app, &urls[&1], &random_bytes(5 * MIB)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(in_progress(&app).await.len(), 1);

    let (status, _) = send(app.delete(&format!("/v1/buckets/{bucket}/uploads/{id}"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(in_progress(&app).await.is_empty());
    // Again: nothing left to abort, and nothing fails.
    let (status, _) = send(app.delete(&format!("/v1/buckets/{bucket}/uploads/{id}"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = send(
        app.post(&parts_path(&bucket, &id))
            .json(&json!({"part_numbers": [2]})),
    )
    .await;
    assert_error(status, &body, 400, "BadRequestError");
    let (status, _, _) = put_part(&app, &urls[&1], b"late").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an aborted upload takes no part"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_aborts_expired_and_orphaned_multipart_uploads_and_spares_live_ones() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("mpsweep");
    app.create_bucket(&bucket).await;
    let expired = create_multipart(&app, &bucket, "old.bin", 6 * MIB).await;
    let expired_id = str_field(&expired, "upload_id").to_owned();
    let live = create_multipart(&app, &bucket, "live.bin", 6 * MIB).await;
    let live_id = str_field(&live, "upload_id").to_owned();
    let urls = sign(&app, &bucket, &expired_id, &[1], &[]).await;
    put_part(&app, &urls[&1], &random_bytes(5 * MIB)).await;
    sqlx::query("UPDATE uploads SET expires_at = now() - interval '1 hour' WHERE id = $1")
        .bind(&expired_id)
        .execute(&app.pool)
        .await
        .unwrap();
    // A multipart upload no row owns: the API stopped between starting it and storing the upload.
    let orphan_key = "confirmed/ns_gone/bkt_gone/upl_gone/lost.bin";
    app.blob()
        .create_multipart(orphan_key, "application/octet-stream")
        .await
        .unwrap();
    assert_eq!(in_progress(&app).await.len(), 3);

    let cfg = SweepConfig {
        expiry_grace_seconds: 0,
        expiry_sweep_interval_seconds: 1,
        expiry_delete_objects: false,
    };
    let report = upconfirm::worker::sweep::sweep_once(&app.pool, app.blob(), &cfg)
        .await
        .unwrap();
    assert_eq!(report.expired, 1, "{report:?}");
    assert_eq!(report.multipart_aborted, 1, "{report:?}");
    assert_eq!(
        app.get_upload(&bucket, &expired_id).await["status"],
        "FAILED"
    );
    // Its parts are gone: no URL is signed for it any more.
    let (status, body) = send(
        app.post(&parts_path(&bucket, &expired_id))
            .json(&json!({"part_numbers": [1]})),
    )
    .await;
    assert_error(status, &body, 400, "BadRequestError");
    assert_eq!(body["error"]["details"]["reason"], "expired", "{body}");

    // Younger than the grace: left alone, whoever owns it.
    let spared =
        upconfirm::worker::sweep::abort_orphans(&app.pool, app.blob(), Duration::from_secs(3600))
            .await
            .unwrap();
    assert_eq!(spared, 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let aborted = upconfirm::worker::sweep::abort_orphans(&app.pool, app.blob(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(aborted, 1);
    let left = in_progress(&app).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].contains(&live_id),
        "the live upload keeps its parts: {left:?}"
    );
    assert!(!stored_multipart_id(&app, &live_id).await.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_and_a_simple_upload_of_the_same_bytes_are_duplicates() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("mpdup");
    app.create_bucket(&bucket).await;
    let bytes = random_bytes(10 * MIB + 3);
    let created = create_multipart(&app, &bucket, "a.bin", bytes.len()).await;
    let id = str_field(&created, "upload_id").to_owned();
    let urls = sign(&app, &bucket, &id, &[1, 2, 3], &[]).await;
    for (n, chunk) in bytes.chunks(5 * MIB).enumerate() {
        let (status, _, text) = put_part(&app, &urls[&(n as i32 + 1)], chunk).await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    let (status, first) = app.confirm(&bucket, &id, "", None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["is_duplicate"], false, "{first}");

    let simple = app.upload_bin(&bucket, "b.bin", &bytes).await;
    let (status, second) = app.confirm(&bucket, &simple, "", None).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["is_duplicate"], true, "{second}");
    assert_eq!(second["duplicate_of_upload_id"], json!(id), "{second}");
    assert_eq!(second["file_hash"], first["file_hash"], "{second}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_requests_are_checked() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("mpval");
    app.create_bucket(&bucket).await;
    let refused = [
        (json!({"multipart": true}), "file_size_bytes"),
        (
            json!({"file_size_bytes": 6_i64 << 30, "multipart": false}),
            "multipart",
        ),
        (
            json!({"file_size_bytes": (5_i64 << 40) + 1}),
            "file_size_bytes",
        ),
        (
            json!({"file_size_bytes": 100 * MIB, "part_size_bytes": MIB}),
            "part_size_bytes",
        ),
        (
            json!({"file_size_bytes": 100_000 * MIB, "part_size_bytes": 5 * MIB}),
            "part_size_bytes",
        ),
        (
            json!({"file_size_bytes": 10 * MIB, "multipart": true,
                   "file_hash": "ab".repeat(32), "enforce_file_hash": true}),
            "enforce_file_hash",
        ),
    ];
    for (extra, field) in refused {
        let mut body = json!({"filename": "v.mp4", "content_type": "video/mp4"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, answer) = app.create_upload(&bucket, body.clone()).await;
        assert_error(status, &answer, 422, "ValidationError");
        assert_eq!(
            answer["error"]["details"]["validation_errors"][0]["location"],
            json!(["body", field]),
            "{body} -> {answer}"
        );
    }
    // Past one PUT's 5 GiB, an upload is in parts without asking.
    let (status, big) = app
        .create_upload(
            &bucket,
            json!({"filename": "big.mp4", "content_type": "video/mp4",
                   "file_size_bytes": 20_i64 << 30}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{big}");
    assert_eq!(
        big["multipart"],
        json!({"part_size_bytes": 8 * MIB, "part_count": 2560}),
        "{big}"
    );
    let big_id = str_field(&big, "upload_id");
    for (body, field) in [
        (json!({"part_numbers": [0]}), "part_numbers"),
        (json!({"part_numbers": [2561]}), "part_numbers"),
        (json!({"part_numbers": [1, 1]}), "part_numbers"),
        (
            json!({"part_numbers": [1], "sha256": {"2": "ab".repeat(32)}}),
            "sha256",
        ),
        (json!({"part_numbers": [1], "expiration": 10}), "expiration"),
    ] {
        let (status, answer) = send(app.post(&parts_path(&bucket, big_id)).json(&body)).await;
        assert_error(status, &answer, 422, "ValidationError");
        assert_eq!(
            answer["error"]["details"]["validation_errors"][0]["location"][1],
            json!(field),
            "{body} -> {answer}"
        );
    }
    // A single-PUT upload has no parts.
    let (status, simple) = app
        .create_upload(
            &bucket,
            json!({"filename": "s.txt", "content_type": "text/plain"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let simple_id = str_field(&simple, "upload_id");
    let (status, body) = send(
        app.post(&parts_path(&bucket, simple_id))
            .json(&json!({"part_numbers": [1]})),
    )
    .await;
    assert_error(status, &body, 400, "BadRequestError");
    let (status, body) = send(app.get(&parts_path(&bucket, simple_id))).await;
    assert_error(status, &body, 400, "BadRequestError");
    let (status, body) = send(app.get(&parts_path(&bucket, "upl_nope"))).await;
    assert_error(status, &body, 404, "NotFoundError");
    app.stop().await;
}
