use std::fmt;

/// Where an upload is in its life: `PENDING` → `PROCESSING` → `COMPLETED` | `FAILED` | `CANCELED`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, sqlx::Type,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UploadStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    Canceled,
}

impl UploadStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadStatus::Pending => "PENDING",
            UploadStatus::Processing => "PROCESSING",
            UploadStatus::Completed => "COMPLETED",
            UploadStatus::Failed => "FAILED",
            UploadStatus::Canceled => "CANCELED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PENDING" => UploadStatus::Pending,
            "PROCESSING" => UploadStatus::Processing,
            "COMPLETED" => UploadStatus::Completed,
            "FAILED" => UploadStatus::Failed,
            "CANCELED" => UploadStatus::Canceled,
            _ => return None,
        })
    }

    pub const ALL: [UploadStatus; 5] = [
        UploadStatus::Pending,
        UploadStatus::Processing,
        UploadStatus::Completed,
        UploadStatus::Failed,
        UploadStatus::Canceled,
    ];

    /// The names of [`UploadStatus::ALL`], in the same order.
    pub const NAMES: [&'static str; 5] =
        ["PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELED"];

    /// Where a new confirmation may start from (a failed one may be retried after a
    /// re-upload), and an upload may be canceled from.
    pub const CONFIRMABLE: [UploadStatus; 2] = [UploadStatus::Pending, UploadStatus::Failed];

    /// A new confirmation may start from here.
    pub fn can_confirm(self) -> bool {
        Self::CONFIRMABLE.contains(&self)
    }
}

impl PartialEq<&str> for UploadStatus {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}

impl fmt::Display for UploadStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a task is: `QUEUED` → `IN_PROGRESS` → terminal; `INTERRUPTED` awaits redelivery.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, sqlx::Type,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Queued,
    InProgress,
    Interrupted,
    Completed,
    CompletedWithErrors,
    Failed,
    Canceled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "QUEUED",
            TaskStatus::InProgress => "IN_PROGRESS",
            TaskStatus::Interrupted => "INTERRUPTED",
            TaskStatus::Completed => "COMPLETED",
            TaskStatus::CompletedWithErrors => "COMPLETED_WITH_ERRORS",
            TaskStatus::Failed => "FAILED",
            TaskStatus::Canceled => "CANCELED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "QUEUED" => TaskStatus::Queued,
            "IN_PROGRESS" => TaskStatus::InProgress,
            "INTERRUPTED" => TaskStatus::Interrupted,
            "COMPLETED" => TaskStatus::Completed,
            "COMPLETED_WITH_ERRORS" => TaskStatus::CompletedWithErrors,
            "FAILED" => TaskStatus::Failed,
            "CANCELED" => TaskStatus::Canceled,
            _ => return None,
        })
    }

    /// Not ended yet: a worker may (re)start the task's job, and it may still end.
    pub const OPEN: [TaskStatus; 3] = [
        TaskStatus::Queued,
        TaskStatus::InProgress,
        TaskStatus::Interrupted,
    ];

    pub fn is_terminal(self) -> bool {
        !Self::OPEN.contains(&self)
    }

    /// A worker may (re)start the task's job from here, and the task may end.
    pub fn can_start(self) -> bool {
        Self::OPEN.contains(&self)
    }
}

impl PartialEq<&str> for TaskStatus {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The task types of the wire contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskType {
    UploadConfirm,
    UploadBatchConfirm,
    BatchSubmit,
}

impl TaskType {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::UploadConfirm => "api_buckets_uploads_confirm",
            TaskType::UploadBatchConfirm => "api_buckets_uploads_batch_confirm",
            TaskType::BatchSubmit => "api_buckets_batches_submit",
        }
    }

    pub const ALL: [TaskType; 3] = [
        TaskType::UploadConfirm,
        TaskType::UploadBatchConfirm,
        TaskType::BatchSubmit,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        TaskType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_statuses_round_trip_and_confirmability() {
        let table = [
            (UploadStatus::Pending, true),
            (UploadStatus::Processing, false),
            (UploadStatus::Completed, false),
            (UploadStatus::Failed, true),
            (UploadStatus::Canceled, false),
        ];
        for (status, confirmable) in table {
            assert_eq!(UploadStatus::parse(status.as_str()), Some(status));
            assert_eq!(status.can_confirm(), confirmable, "{status}");
        }
        assert_eq!(UploadStatus::parse("pending"), None);
        let names: Vec<&str> = UploadStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, UploadStatus::NAMES);
    }

    #[test]
    fn task_types_round_trip() {
        for t in TaskType::ALL {
            assert_eq!(TaskType::parse(t.as_str()), Some(t));
        }
        assert_eq!(TaskType::parse("API_BUCKETS_UPLOADS_CONFIRM"), None);
    }

    #[test]
    fn task_statuses_round_trip_and_terminality() {
        let table = [
            (TaskStatus::Queued, false, true),
            (TaskStatus::InProgress, false, true),
            (TaskStatus::Interrupted, false, true),
            (TaskStatus::Completed, true, false),
            (TaskStatus::CompletedWithErrors, true, false),
            (TaskStatus::Failed, true, false),
            (TaskStatus::Canceled, true, false),
        ];
        for (status, terminal, startable) in table {
            assert_eq!(TaskStatus::parse(status.as_str()), Some(status));
            assert_eq!(status.is_terminal(), terminal, "{status}");
            assert_eq!(status.can_start(), startable, "{status}");
        }
    }
}
