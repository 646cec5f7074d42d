//! The cap on a namespace's bulk confirmations waiting for the dispatcher: past it, new
//! ones are refused with 429 rather than queued without bound.
//!
//! Counting a namespace's waiting jobs reads its part of the outbox's index, so each API
//! process keeps the count it read for a second and adds what it accepted since. With
//! several API replicas the cap may be passed by what the others accept in that second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::error::ApiError;
use super::extract::Tenant;
use super::AppState;
use crate::store::outbox;

/// How long a count read from the database is trusted.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// What a refused client is told to wait before trying again.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// The counts this process read, by namespace.
#[derive(Debug, Clone, Default)]
pub struct BacklogCounts(Arc<Mutex<HashMap<String, (Instant, i64)>>>);

impl BacklogCounts {
    fn fresh(&self, namespace_id: &str) -> Option<i64> {
        let counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        counts
            .get(namespace_id)
            .filter(|(read, _)| read.elapsed() < FRESH_FOR)
            .map(|(_, n)| *n)
    }

    fn store(&self, namespace_id: &str, read: Instant, n: i64) {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        counts.retain(|_, (at, _)| at.elapsed() < FRESH_FOR);
        counts.insert(namespace_id.to_owned(), (read, n));
    }

    fn add(&self, namespace_id: &str, n: i64) {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, waiting)) = counts.get_mut(namespace_id) {
            *waiting += n;
        }
    }
}

/// Whether `jobs` more bulk jobs of the tenant's namespace fit under the cap; counts them
/// in when they do.
pub async fn admit_bulk(state: &AppState, tenant: &Tenant, jobs: usize) -> Result<(), ApiError> {
    let cap = state.settings.namespace_backlog_cap;
    if cap <= 0 {
        return Ok(());
    }
    let namespace_id = &tenant.namespace.id;
    let counts = &state.backlog_counts;
    let waiting = match counts.fresh(namespace_id) {
        Some(n) => n,
        None => {
            let read = Instant::now();
            let n = outbox::namespace_backlog(&state.pool, namespace_id, cap).await?;
            counts.store(namespace_id, read, n);
            n
        }
    };
    let jobs = i64::try_from(jobs).unwrap_or(i64::MAX);
    if waiting.saturating_add(jobs) > cap {
        return Err(ApiError::BacklogFull {
            message: format!(
                "namespace {} has {waiting} confirmations waiting (at most {cap}); retry later",
                tenant.namespace.name
            ),
            waiting,
            cap,
            retry_after_seconds: RETRY_AFTER_SECONDS,
        });
    }
    counts.add(namespace_id, jobs);
    Ok(())
}
