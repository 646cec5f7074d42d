//! States as types: each maps to its wire name (the API's and the database's text), and the
//! legal transitions are methods and constant sets the store binds into its queries.

/// Declares a state enum with its wire names, stored as text.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            serde::Serialize, serde::Deserialize, sqlx::Type,
        )]
        #[sqlx(type_name = "text")]
        pub enum $name {
            $(
                #[serde(rename = $wire)]
                #[sqlx(rename = $wire)]
                $variant,
            )+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire names of [`Self::ALL`], in the same order.
            pub const NAMES: &'static [&'static str] = &[$($wire),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, name: &&str) -> bool {
                self.as_str() == *name
            }
        }
    };
}

wire_enum!(
    /// Where an upload is in its life: `PENDING` → `PROCESSING` → `COMPLETED` | `FAILED` |
    /// `CANCELED`.
    UploadStatus {
        Pending => "PENDING",
        Processing => "PROCESSING",
        Completed => "COMPLETED",
        Failed => "FAILED",
        Canceled => "CANCELED",
    }
);

impl UploadStatus {
    /// Where a new confirmation may start from (a failed one may be retried after a
    /// re-upload), and an upload may be canceled from.
    pub const CONFIRMABLE: [UploadStatus; 2] = [UploadStatus::Pending, UploadStatus::Failed];

    /// A new confirmation may start from here.
    pub fn can_confirm(self) -> bool {
        Self::CONFIRMABLE.contains(&self)
    }
}

wire_enum!(
    /// Where a task is: `QUEUED` → `IN_PROGRESS` → terminal; `INTERRUPTED` awaits redelivery.
    TaskStatus {
        Queued => "QUEUED",
        InProgress => "IN_PROGRESS",
        Interrupted => "INTERRUPTED",
        Completed => "COMPLETED",
        CompletedWithErrors => "COMPLETED_WITH_ERRORS",
        Failed => "FAILED",
        Canceled => "CANCELED",
    }
);

impl TaskStatus {
    /// Not ended yet: a worker may (re)start the task's job, and it may still end.
    pub const OPEN: [TaskStatus; 3] = [
        TaskStatus::Queued,
        TaskStatus::InProgress,
        TaskStatus::Interrupted,
    ];

    pub fn is_terminal(self) -> bool {
        !Self::OPEN.contains(&self)
    }
}

wire_enum!(
    /// A batch of objects: `DRAFT` until submitted, then `PENDING` for its processor.
    BatchStatus {
        Draft => "DRAFT",
        Pending => "PENDING",
    }
);

wire_enum!(
    /// A bucket object's state; a confirmation creates it `ACTIVE`.
    ObjectStatus {
        Active => "ACTIVE",
    }
);

wire_enum!(
    /// The task types of the wire contract.
    TaskType {
        UploadConfirm => "api_buckets_uploads_confirm",
        UploadBatchConfirm => "api_buckets_uploads_batch_confirm",
        BatchSubmit => "api_buckets_batches_submit",
    }
);

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
        assert_eq!(
            serde_json::to_value(UploadStatus::Processing).unwrap(),
            "PROCESSING"
        );
    }

    #[test]
    fn task_types_round_trip() {
        for t in TaskType::ALL {
            assert_eq!(TaskType::parse(t.as_str()), Some(*t));
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
        for (status, terminal, open) in table {
            assert_eq!(TaskStatus::parse(status.as_str()), Some(status));
            assert_eq!(status.is_terminal(), terminal, "{status}");
            assert_eq!(TaskStatus::OPEN.contains(&status), open, "{status}");
        }
        assert_eq!(
            serde_json::to_value(TaskStatus::CompletedWithErrors).unwrap(),
            "COMPLETED_WITH_ERRORS"
        );
    }

    #[test]
    fn batch_and_object_states_round_trip() {
        assert_eq!(BatchStatus::parse("DRAFT"), Some(BatchStatus::Draft));
        assert_eq!(BatchStatus::parse("PENDING"), Some(BatchStatus::Pending));
        assert_eq!(ObjectStatus::Active, "ACTIVE");
    }
}
