//! Tests that need the process to themselves, run one at a time: the chaos suite (minutes
//! of faults on the broker, the database and worker processes) and the tests that read the
//! process's one metrics recorder exactly (bulk-job counts, gauges, the hashed-bytes counter),
//! which any other test's confirmations would move.

#[allow(dead_code)] // it uses part of the harness the API tests share
#[path = "../api/common/mod.rs"]
mod common;

mod chaos;
mod hash_verified;
mod lanes;
mod metrics;

/// Held by every test of this binary for its whole run.
pub static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
