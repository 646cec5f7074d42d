//! The bucket routes' bodies: create and list.

use proptest::prelude::*;

use super::bodies::{field, list_body, nested, object_body};
use super::Gen;

pub(super) fn create_bucket_body() -> BoxedStrategy<Gen> {
    object_body(
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
    )
}

pub(super) fn list_buckets_body() -> BoxedStrategy<Gen> {
    list_body(vec![field("search", &["\"fuzz\"", "null"])])
}
