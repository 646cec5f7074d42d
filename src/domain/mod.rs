//! Pure domain types: ids, statuses and their legal transitions, checked values.
//! Nothing here does I/O.

mod completion;
mod failure;
mod ids;
mod parts;
mod status;
mod values;

pub use completion::{decide, Decision, Original};
pub use failure::{check_quota, Failure, NamespaceLimits, QuotaExceeded};
pub use ids::{
    new_api_key, new_id, BatchId, BucketId, IdKind, NamespaceId, ObjectId, OrganizationId, TaskId,
    UploadId,
};
pub use parts::{
    number_runs, PartPlan, PartsCheck, MAX_OBJECT_BYTES, MAX_PARTS, MAX_SINGLE_PUT_BYTES,
};
pub use status::{BatchStatus, ObjectStatus, TaskStatus, TaskType, UploadStatus};
pub use values::{
    blob_type_for, etags_match, unquote_etag, BlobProperty, BlobType, ContentHash, ContentType,
    Filename, InvalidValue, UploadKeys, MAX_KEY_BYTES,
};

/// What the client asked for in the confirm body, kept in the task's inputs.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ConfirmOptions {
    pub etag: Option<String>,
    pub file_size_bytes: Option<i64>,
    #[serde(default)]
    pub auto_submit_batch: bool,
}

/// Whether a confirmation runs in the background from the start.
pub fn confirm_is_async(asked_async: bool, known_size: Option<i64>, threshold: i64) -> bool {
    asked_async || known_size.is_some_and(|size| size >= threshold)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn async_decision() {
        let t = 104_857_600;
        let cases = [
            (false, None, false),
            (true, None, true),
            (false, Some(t - 1), false),
            (false, Some(t), true),
            (false, Some(t + 1), true),
            (true, Some(1), true),
        ];
        for (asked, size, want) in cases {
            assert_eq!(confirm_is_async(asked, size, t), want, "{asked} {size:?}");
        }
    }
}
