//! The batch routes' bodies: create (object ids, most of which name nothing) and list.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::json;

use super::bodies::{field, list_body, nested, object_body, Field};
use super::values::{arbitrary_text, ODD_TEXT};
use super::{json_string, Fixtures, Gen};

pub(super) fn create_batch_body(fx: &Fixtures) -> BoxedStrategy<Gen> {
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

pub(super) fn list_batches_body() -> BoxedStrategy<Gen> {
    list_body(vec![field("status", &["\"DRAFT\"", "null"])])
}

/// Object ids for a batch, most of which name nothing.
pub(super) fn object_ids_body(fx: &Fixtures) -> BoxedStrategy<Gen> {
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
