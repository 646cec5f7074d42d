//! The task routes: the list's body and the long poll's `wait_seconds`.

use proptest::prelude::*;

use super::bodies::{field, list_body};
use super::Gen;

pub(super) fn list_tasks_body() -> BoxedStrategy<Gen> {
    list_body(vec![
        field("status", &["\"COMPLETED\"", "null"]),
        field("task_type", &["\"api_buckets_uploads_confirm\"", "null"]),
    ])
}

pub(super) const TASK_QUERIES: &[&str] = &[
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
