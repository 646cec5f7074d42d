//! Path ids of every shape: real ones of the right and the wrong kind, made-up ones, dot
//! segments, encoded separators, bad escapes, words the router knows; and paths no route
//! serves.

use std::fmt::Write as _;

use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;

use super::auth::auth_strategy;
use super::routes::{Route, Slot, ANY_METHOD};
use super::values::{arbitrary_text, MALFORMED};
use super::{Case, Fixtures, Seg};

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

pub(super) fn percent_decode(s: &str) -> String {
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

pub(super) fn slot_strategy(slot: Slot, fx: &Fixtures) -> BoxedStrategy<Seg> {
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

pub(super) fn unrouted_strategy() -> BoxedStrategy<Case> {
    (
        select(UNROUTED),
        select(ANY_METHOD.to_vec()),
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
