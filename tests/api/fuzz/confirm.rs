//! The confirm routes: one upload (its options and its `async` query) and batches of them,
//! whose bodies are all refused so that no confirmation ever starts.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::bodies::{field, object_body, object_text, Field};
use super::values::{odd_literal, MALFORMED, ODD_KEYS, ODD_TEXT};
use super::{json_string, Fixtures, Gen};

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
pub(super) fn invalid_confirm_body() -> BoxedStrategy<Gen> {
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
pub(super) fn confirm_batch_body(fx: &Fixtures) -> BoxedStrategy<Gen> {
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

pub(super) fn confirm_body() -> BoxedStrategy<Gen> {
    object_body(confirm_fields(), &[], true)
}

pub(super) const CONFIRM_QUERY_VALID: &[&str] = &["", "?async=true", "?async=false"];
pub(super) const CONFIRM_QUERY_INVALID: &[&str] = &[
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
pub(super) const CONFIRM_QUERY_ODD: &[&str] = &[
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
