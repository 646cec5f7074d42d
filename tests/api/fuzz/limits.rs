//! The body limit: a body over it is a 413 `PayloadTooLargeError` with the envelope, sent
//! with a length or chunked, on every route that reads one; a body at the limit is not.

use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::select;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

use super::routes::{Route, ROUTES};
use super::{generate, runner, settle, snapshot, CaseGuard, Seg, BODY_LIMIT};

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
