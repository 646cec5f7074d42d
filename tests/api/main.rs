//! The black-box tests, one module per part of the service, in one test binary: the crate
//! is linked once for all of them, and they run side by side in one process, each over its
//! own service, database, queues and store (see `common`).
//!
//! Tests that need a process to themselves are binaries of their own, sharing this
//! harness: `tests/chaos/`, and those that read the process's metrics recorder
//! (`tests/hash_verified.rs`, `tests/lanes.rs`, `tests/metrics.rs`).

mod common;

mod admission;
mod auth;
mod batches;
mod bulk;
mod cancel;
mod confirm;
mod dedup;
mod delivery;
mod deploy;
mod fuzz;
mod lists;
mod logs;
mod multipart;
mod object_keys;
mod openapi;
mod presign;
mod reliability;
mod requests;
mod uploads;
mod validation;
