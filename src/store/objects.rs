//! Bucket objects, as confirmations create them.

use sqlx::PgPool;

use super::models::ObjectRow;

pub async fn find_in_bucket(
    pool: &PgPool,
    bucket_id: &str,
    object_id: &str,
) -> sqlx::Result<Option<ObjectRow>> {
    sqlx::query_as(
        "SELECT id, bucket_id, namespace_id, upload_id, blobs, metadata, status, created_at, updated_at
         FROM objects WHERE id = $1 AND bucket_id = $2",
    )
    .bind(object_id)
    .bind(bucket_id)
    .fetch_optional(pool)
    .await
}
