//! Why a confirmation cannot succeed, whatever is retried: the worker's verdict in the
//! domain's own terms. Only the API turns one into an HTTP answer.

use serde_json::Value;

/// A namespace's limits, and what it stores now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespaceLimits {
    pub max_file_size_bytes: Option<i64>,
    pub storage_quota_bytes: Option<i64>,
    pub storage_used_bytes: i64,
}

/// A limit that storing a file would pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub message: String,
    /// `file_size_bytes` (one file) or `storage_bytes` (the namespace's total).
    pub resource: &'static str,
    pub current: i64,
    pub limit: i64,
}

impl QuotaExceeded {
    /// Storing `size` more bytes would pass the namespace's storage quota.
    pub fn storage(size: i64, current: i64, limit: i64) -> Self {
        QuotaExceeded {
            message: format!(
                "storing {size} more bytes would exceed the storage quota ({current} of {limit} bytes used)"
            ),
            resource: "storage_bytes",
            current,
            limit,
        }
    }
}

/// Whether a file of `size` bytes fits the namespace: its per-file limit, then its quota.
/// Checked when an upload is created and when it is confirmed; the quota is enforced again
/// atomically when usage grows.
pub fn check_quota(limits: &NamespaceLimits, size: i64) -> Result<(), QuotaExceeded> {
    if let Some(limit) = limits.max_file_size_bytes {
        if size > limit {
            return Err(QuotaExceeded {
                message: format!(
                    "file of {size} bytes exceeds the per-file limit of {limit} bytes"
                ),
                resource: "file_size_bytes",
                current: size,
                limit,
            });
        }
    }
    if let Some(limit) = limits.storage_quota_bytes {
        let current = limits.storage_used_bytes;
        if current.saturating_add(size) > limit {
            return Err(QuotaExceeded::storage(size, current, limit));
        }
    }
    Ok(())
}

/// A confirmation that ends `FAILED`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    /// The object is not what the client declared, or is not there; `reason` names the check.
    #[error("{message}")]
    Mismatch {
        reason: &'static str,
        message: String,
        expected: Value,
        actual: Value,
    },
    /// The object store refused the request, for good.
    #[error("the object store refused the request: {0}")]
    StorageRejected(String),
    #[error("{}", .0.message)]
    Quota(QuotaExceeded),
    /// What the job names no longer exists (`upload`, `namespace`).
    #[error("{0} not found")]
    Gone(&'static str),
    /// The confirmation no longer applies to its upload.
    #[error("{0}")]
    Refused(String),
    /// The service gave up on the job (its delivery limit, or a lapsed lease at the last
    /// attempt); the error says why.
    #[error("{0}")]
    GivenUp(String),
}

impl Failure {
    pub fn mismatch(
        reason: &'static str,
        message: impl Into<String>,
        expected: Value,
        actual: Value,
    ) -> Self {
        Failure::Mismatch {
            reason,
            message: message.into(),
            expected,
            actual,
        }
    }

    /// The reason the confirmations series counts it under.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Mismatch { reason, .. } => reason,
            Failure::StorageRejected(_) => "storage_rejected",
            Failure::Quota(_) => "quota_exceeded",
            Failure::Gone(_) => "not_found",
            Failure::Refused(_) => "rejected",
            Failure::GivenUp(_) => "dead_lettered",
        }
    }
}

impl From<QuotaExceeded> for Failure {
    fn from(quota: QuotaExceeded) -> Self {
        Failure::Quota(quota)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: Option<i64>, quota: Option<i64>, used: i64) -> NamespaceLimits {
        NamespaceLimits {
            max_file_size_bytes: max,
            storage_quota_bytes: quota,
            storage_used_bytes: used,
        }
    }

    #[test]
    fn quota_decisions() {
        let table = [
            (limits(None, None, 0), 1_000_000, None),
            (limits(Some(50), None, 0), 50, None),
            (limits(Some(50), None, 0), 51, Some("file_size_bytes")),
            (limits(None, Some(100), 60), 40, None),
            (limits(None, Some(100), 60), 41, Some("storage_bytes")),
            (limits(None, Some(10), 0), 100, Some("storage_bytes")),
        ];
        for (ns, size, want) in table {
            let got = check_quota(&ns, size).err().map(|q| q.resource);
            assert_eq!(got, want, "{size}");
        }
    }

    #[test]
    fn failures_name_their_reason() {
        let table = [
            (
                Failure::mismatch("etag_mismatch", "m", Value::Null, Value::Null),
                "etag_mismatch",
            ),
            (Failure::StorageRejected("no".into()), "storage_rejected"),
            (
                Failure::Quota(QuotaExceeded::storage(1, 2, 2)),
                "quota_exceeded",
            ),
            (Failure::Gone("upload"), "not_found"),
            (Failure::Refused("moved on".into()), "rejected"),
            (Failure::GivenUp("gave up".into()), "dead_lettered"),
        ];
        for (failure, reason) in table {
            assert_eq!(failure.reason(), reason, "{failure:?}");
        }
        assert_eq!(Failure::Gone("upload").to_string(), "upload not found");
    }
}
