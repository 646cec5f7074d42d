//! The black-box tests, one module per part of the service, in one test binary: the crate
//! is linked once for all of them, and they run side by side in one process, each over its
//! own service, database, queues and store (see `common`).
//!
//! Tests that need the process to themselves (the chaos suite, and those that read the
//! process's metrics recorder exactly) are the other binary, `tests/alone/`, which shares
//! this harness and runs them one at a time.

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
