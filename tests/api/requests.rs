//! How the API treats a request as a whole: a refused request leaves its kept-alive
//! connection usable, and a body is read as JSON only when it says it is JSON.

use std::time::Duration;

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one HTTP/1.1 response with a Content-Length from `conn`: (status, headers, body).
async fn read_response(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
    request: usize,
) -> (u16, String, Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("request {request}: no answer within 10 s"))
            .unwrap_or_else(|e| panic!("request {request}: reading the answer: {e}"));
        assert!(
            n > 0,
            "request {request}: the connection closed before the answer"
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head[9..12].parse().expect("status code");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .expect("Content-Length");
    while buf.len() < head_end + length {
        let n = conn
            .read(&mut chunk)
            .await
            .unwrap_or_else(|e| panic!("request {request}: reading the body: {e}"));
        assert!(n > 0, "request {request}: the connection closed mid-answer");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    (status, head, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_posts_leave_the_kept_alive_connection_usable() {
    let app = TestApp::spawn().await;
    let addr = app.base_url.trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(&addr).await.expect("connect");
    conn.set_nodelay(true).unwrap();
    let body = json!({ "filename": "x".repeat(200), "content_type": "text/plain" }).to_string();
    let mut buf = Vec::new();
    let mut answered = 0;
    for i in 0..300 {
        // Half with a key refused before any lookup, half with one looked up and unknown.
        let key = if i % 2 == 0 { "nope" } else { "sk_unknown" };
        let head = format!(
            "POST /v1/buckets/b/uploads HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
             X-Namespace: ns\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // The body follows the head in its own segment, as many clients send it.
        conn.write_all(head.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("request {i}: sending the head: {e}"));
        tokio::time::sleep(Duration::from_millis(1)).await;
        conn.write_all(body.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("request {i}: sending the body: {e}"));
        let (status, headers, answer) = read_response(&mut conn, &mut buf, i).await;
        let answer: Value = serde_json::from_slice(&answer).expect("a JSON answer");
        assert_error(
            StatusCode::from_u16(status).unwrap(),
            &answer,
            401,
            "UnauthorizedError",
        );
        assert!(
            !headers.to_ascii_lowercase().contains("connection: close"),
            "request {i}: {headers}"
        );
        answered += 1;
    }
    assert_eq!(answered, 300);

    // The same connection still serves an authorized request.
    let head = format!(
        "GET /v1/tasks/task_{} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nX-Namespace: {}\r\n\r\n",
        "0".repeat(32),
        app.api_key,
        app.namespace
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let (status, _, _) = read_response(&mut conn, &mut buf, 300).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_answered_413_and_its_connection_serves_on() {
    let limit = 64 * 1024;
    let app = TestApp::spawn_with(|c| c.api.max_body_bytes = limit).await;
    let addr = app.base_url.trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(&addr).await.expect("connect");
    let mut buf = Vec::new();
    for (i, size) in [limit + 1, 4 * limit, 16 * limit].into_iter().enumerate() {
        let body = format!("{{\"search\": \"{}\"}}", "x".repeat(size - 14));
        assert_eq!(body.len(), size);
        let head = format!(
            "POST /v1/tasks/list HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n",
            app.api_key
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        // The whole body goes out, in pieces, while the server may already have answered.
        for piece in body.as_bytes().chunks(16 * 1024) {
            conn.write_all(piece)
                .await
                .unwrap_or_else(|e| panic!("body {i} of {size} bytes: {e}"));
        }
        let (status, _, answer) = read_response(&mut conn, &mut buf, i).await;
        let answer: Value = serde_json::from_slice(&answer).expect("a JSON answer");
        assert_error(
            StatusCode::from_u16(status).unwrap(),
            &answer,
            413,
            "PayloadTooLargeError",
        );
    }
    // Still the same connection.
    let head = format!(
        "POST /v1/tasks/list HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}",
        app.api_key
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let (status, _, _) = read_response(&mut conn, &mut buf, 3).await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_one_connection_sees_every_refusal() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let body = json!({ "filename": "report.txt", "content_type": "text/plain" });
    let mut failures = Vec::new();
    for i in 0..300 {
        let sent = client
            .post(app.url("/v1/buckets/b/uploads"))
            .bearer_auth("sk_unknown")
            .header("X-Namespace", "ns")
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status();
                let answer: Value = resp.json().await.unwrap_or(Value::Null);
                assert_error(status, &answer, 401, "UnauthorizedError");
            }
            Err(err) => failures.push(format!("{i}: {err}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 300 failed: {failures:?}",
        failures.len()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_do_not_say_json_are_refused() {
    let app = TestApp::spawn().await;
    let bucket = bucket_name("media");
    app.create_bucket(&bucket).await;
    let upload = json!({ "filename": "a.txt", "content_type": "text/plain" }).to_string();
    let cases: [(&str, Option<&str>, String); 5] = [
        ("/v1/tasks/list", Some("text/plain"), "\t".to_owned()),
        ("/v1/tasks/list", Some("text/plain"), "{}".to_owned()),
        (
            "/v1/tasks/list",
            Some("application/x-www-form-urlencoded"),
            "limit=5".to_owned(),
        ),
        ("/v1/tasks/list", None, "{}".to_owned()),
        (
            &format!("/v1/buckets/{bucket}/uploads"),
            Some("text/plain"),
            upload.clone(),
        ),
    ];
    for (path, content_type, body) in cases {
        let mut rb = app.post(path).body(body.clone());
        if let Some(ct) = content_type {
            rb = rb.header("Content-Type", ct);
        }
        let (status, answer) = send(rb).await;
        assert_error(status, &answer, 415, "UnsupportedMediaTypeError");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("application/json"),
            "{path} {content_type:?}: {answer}"
        );
    }

    // JSON by any of its names, with parameters, is read.
    for content_type in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.api+json",
    ] {
        let (status, answer) = send(
            app.post("/v1/tasks/list")
                .header("Content-Type", content_type)
                .body("{}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{content_type}: {answer}");
    }
    let (status, answer) = send(
        app.post(&format!("/v1/buckets/{bucket}/uploads"))
            .header("Content-Type", "application/json; charset=utf-8")
            .body(upload),
    )
    .await;
    assert!(status.is_success(), "{status} {answer}");

    // No body where one is optional: fine, whatever the header says.
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut rb = app.post("/v1/tasks/list");
        if let Some(ct) = content_type {
            rb = rb.header("Content-Type", ct);
        }
        let (status, answer) = send(rb).await;
        assert_eq!(status, StatusCode::OK, "{content_type:?}: {answer}");
    }
    app.stop().await;
}
