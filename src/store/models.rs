//! Rows as they are stored.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::{
    BatchId, BatchStatus, BucketId, NamespaceId, NamespaceLimits, ObjectId, ObjectStatus,
    OrganizationId, TaskId, TaskStatus, TaskType, UploadId, UploadStatus,
};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NamespaceRow {
    pub id: NamespaceId,
    pub organization_id: OrganizationId,
    pub name: String,
    pub max_file_size_bytes: Option<i64>,
    pub storage_quota_bytes: Option<i64>,
    /// Exact under a quota; without one, only the usage folded from the ledger so far
    /// (`tenancy::storage_used` gives the exact figure).
    pub storage_used_bytes: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BucketRow {
    pub id: BucketId,
    pub namespace_id: NamespaceId,
    pub name: String,
    pub description: Option<String>,
    pub metadata: Value,
    pub schema: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UploadRow {
    pub id: UploadId,
    pub bucket_id: BucketId,
    pub namespace_id: NamespaceId,
    pub filename: String,
    pub content_type: String,
    pub file_size_bytes: Option<i64>,
    pub presigned_url_expiration: i32,
    pub s3_key: String,
    pub status: UploadStatus,
    pub metadata: Value,
    pub create_object_on_confirm: bool,
    pub object_metadata: Option<Value>,
    pub blob_property: String,
    pub blob_type: String,
    pub file_hash: Option<String>,
    pub skip_duplicates: bool,
    pub enforce_file_hash: bool,
    /// The store's multipart upload, for an upload in parts.
    pub multipart_upload_id: Option<String>,
    pub part_size_bytes: Option<i64>,
    pub part_count: Option<i32>,
    pub is_duplicate: bool,
    pub duplicate_of_upload_id: Option<UploadId>,
    pub message: Option<String>,
    pub etag: Option<String>,
    pub object_id: Option<ObjectId>,
    pub task_id: Option<TaskId>,
    pub batch_id: Option<BatchId>,
    pub batch_task_id: Option<TaskId>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub verified_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRow {
    pub id: TaskId,
    pub organization_id: OrganizationId,
    pub namespace_id: Option<NamespaceId>,
    pub task_type: TaskType,
    pub status: TaskStatus,
    pub inputs: Value,
    pub outputs: Option<Value>,
    pub additional_data: Option<Value>,
    pub error: Option<String>,
    pub progress: Option<Value>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BatchRow {
    pub id: BatchId,
    pub bucket_id: BucketId,
    pub namespace_id: NamespaceId,
    pub batch_name: Option<String>,
    pub status: BatchStatus,
    pub object_ids: Vec<String>,
    pub task_id: Option<TaskId>,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ObjectRow {
    pub id: ObjectId,
    pub bucket_id: BucketId,
    pub namespace_id: NamespaceId,
    pub upload_id: UploadId,
    pub blobs: Value,
    pub metadata: Option<Value>,
    pub status: ObjectStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl NamespaceRow {
    pub fn limits(&self) -> NamespaceLimits {
        NamespaceLimits {
            max_file_size_bytes: self.max_file_size_bytes,
            storage_quota_bytes: self.storage_quota_bytes,
            storage_used_bytes: self.storage_used_bytes,
        }
    }
}

impl UploadRow {
    /// How a multipart upload is cut; `None` for a single-request upload.
    pub fn part_plan(&self) -> Option<crate::domain::PartPlan> {
        match (self.file_size_bytes, self.part_size_bytes, self.part_count) {
            (Some(size), Some(part_size), Some(count)) => {
                Some(crate::domain::PartPlan::stored(size, part_size, count))
            }
            _ => None,
        }
    }
}
