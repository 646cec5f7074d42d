//! What a confirmation's task records as its outputs: the answers the API gives for it,
//! written by the worker when the confirmation ends and replayed from here afterwards.

use serde_json::{json, Value};

use super::error::ApiError;
use crate::domain::{Failure, UploadId};
use crate::store::completion::TaskOutputs;
use crate::store::UploadRow;

/// The outputs the worker writes, as this API answers them.
pub const TASK_OUTPUTS: TaskOutputs = TaskOutputs {
    completed: confirm_result,
    failed: failure_outputs,
};

/// The answer to a completed confirmation (`ConfirmUploadResponse`), also the task's outputs.
pub fn confirm_result(u: &UploadRow) -> Value {
    json!({
        "upload_id": u.id,
        "status": u.status,
        "etag": u.etag,
        "file_size_bytes": u.file_size_bytes,
        "file_hash": u.file_hash,
        "verified_at": u.verified_at,
        "completed_at": u.completed_at,
        "object_id": u.object_id,
        // With a submitted batch, the task to follow is the batch's.
        "task_id": u.batch_task_id.as_ref().or(u.task_id.as_ref()),
        "batch_id": u.batch_id,
        "is_duplicate": u.is_duplicate,
        "duplicate_of_upload_id": u.duplicate_of_upload_id,
        "message": u.message,
    })
}

/// A failed task's outputs: the error as the sync path answers it.
pub fn failure_outputs(upload_id: &UploadId, failure: &Failure) -> Value {
    let err = ApiError::from(failure.clone());
    json!({ "upload_id": upload_id, "status_code": err.status().as_u16(), "error": err.body() })
}

/// The error a failed confirmation answers with, from its task's outputs.
pub fn stored_failure(outputs: Option<&Value>) -> ApiError {
    let status = outputs
        .and_then(|o| o.get("status_code"))
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(400);
    match outputs.and_then(|o| o.get("error")) {
        Some(body) => ApiError::from_stored(status, body),
        None => ApiError::bad_request("the confirmation failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::QuotaExceeded;

    #[test]
    fn failures_replay_as_stored() {
        let failure = Failure::mismatch("size_mismatch", "m", json!(1), json!(2));
        let replayed = stored_failure(Some(&failure_outputs(&"upl_x".into(), &failure)));
        assert_eq!(replayed.status().as_u16(), 400);
        assert_eq!(replayed.body()["details"]["reason"], "size_mismatch");
        assert_eq!(replayed.body()["details"]["expected"], 1);
        let quota = Failure::Quota(QuotaExceeded::storage(5, 5, 10));
        let replayed = stored_failure(Some(&failure_outputs(&"upl_x".into(), &quota)));
        assert_eq!(replayed.status().as_u16(), 403);
        assert_eq!(replayed.body()["type"], "QuotaExceededError");
        assert_eq!(replayed.body()["details"]["resource"], "storage_bytes");
    }

    #[test]
    fn every_failure_maps_to_its_answer() {
        let table = [
            (
                Failure::StorageRejected("no".into()),
                400,
                "storage_rejected",
            ),
            (Failure::Gone("upload"), 404, ""),
            (Failure::Refused("moved on".into()), 400, ""),
            (Failure::GivenUp("gave up".into()), 503, "dead_lettered"),
        ];
        for (failure, status, reason) in table {
            let err = ApiError::from(failure.clone());
            assert_eq!(err.status().as_u16(), status, "{failure:?}");
            assert_eq!(
                err.body()["details"]["reason"].as_str().unwrap_or(""),
                reason,
                "{failure:?}"
            );
            assert_eq!(err.to_string(), failure.to_string());
        }
    }
}
