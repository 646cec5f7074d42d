//! Batches: `POST /v1/buckets/{b}/batches`, `.../batches/{batch_id}/submit`,
//! `GET .../batches/{batch_id}`, `POST .../batches/list`.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::confirm::{publish_now, Committed};
use super::error::{ApiError, ErrorEnvelope};
use super::extract::{ApiPath, BodySchema, OptionalJson, StrictJson, Tenant};
use super::pages::Page;
use super::tasks::task_json;
use super::{buckets, AppState};
use crate::domain::{new_id, IdKind};
use crate::queue::BATCH_SUBMITTED_ROUTING_KEY;
use crate::store::batches::{self, BatchDestination};
use crate::store::{tasks, BatchRow};

/// Most objects one batch holds.
pub const MAX_BATCH_OBJECTS: usize = 1000;

pub fn batch_json(b: &BatchRow) -> Value {
    json!({
        "batch_id": b.id,
        "bucket_id": b.bucket_id,
        "status": b.status,
        "object_ids": b.object_ids,
        "task_id": b.task_id,
        "metadata": b.metadata,
        "created_at": b.created_at,
        "updated_at": b.updated_at,
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateBatch {
    object_ids: Vec<String>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Map<String, Value>>,
}

impl BodySchema for CreateBatch {
    const FIELDS: &'static [&'static str] = &["object_ids", "metadata"];
}

/// A new batch of the bucket's objects, in `DRAFT`.
#[utoipa::path(post, path = "/v1/buckets/{bucket_identifier}/batches", tag = "batches", params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")), request_body = CreateBatch, responses((status = 200, description = "The batch, DRAFT", body = Object), (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope), (status = 404, description = "Unknown namespace, bucket or resource", body = ErrorEnvelope), (status = 422, description = "Invalid body or query", body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath(bucket_ident): ApiPath<String>,
    StrictJson(body): StrictJson<CreateBatch>,
) -> Result<Json<Value>, ApiError> {
    let bucket = buckets::resolve(&state, &tenant, &bucket_ident).await?;
    if !(1..=MAX_BATCH_OBJECTS).contains(&body.object_ids.len()) {
        return Err(ApiError::invalid(
            "value_error",
            &["body", "object_ids"],
            format!(
                "object_ids must hold 1 to {MAX_BATCH_OBJECTS} ids, not {}",
                body.object_ids.len()
            ),
        ));
    }
    // Each object once, in the order first given.
    let mut seen = std::collections::HashSet::new();
    let object_ids: Vec<String> = body
        .object_ids
        .into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect();
    let missing = batches::missing_objects(&state.pool, &bucket.id, &object_ids).await?;
    if !missing.is_empty() {
        return Err(ApiError::Missing {
            message: format!(
                "{} object(s) not found in this bucket: {}",
                missing.len(),
                missing.join(", ")
            ),
            details: json!({ "object_ids": missing }),
        });
    }
    let mut conn = state.pool.acquire().await?;
    let batch = batches::insert(
        &mut conn,
        &new_id(IdKind::Batch),
        &bucket.id,
        &tenant.namespace.id,
        &object_ids,
        &Value::Object(body.metadata.unwrap_or_default()),
    )
    .await?;
    Ok(Json(batch_json(&batch)))
}

async fn resolve(
    state: &AppState,
    tenant: &Tenant,
    bucket_ident: &str,
    batch_id: &str,
) -> Result<BatchRow, ApiError> {
    let bucket = buckets::resolve(state, tenant, bucket_ident).await?;
    batches::find_in_bucket(&state.pool, &bucket.id, batch_id)
        .await?
        .ok_or_else(|| ApiError::not_found("batch"))
}

/// Submits a `DRAFT` batch: `PENDING`, a submit task, and an announcement on the batches
/// exchange (through the outbox). Submitting it again answers the same task.
#[utoipa::path(post, path = "/v1/buckets/{bucket_identifier}/batches/{batch_id}/submit", tag = "batches", params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("batch_id" = String, Path), ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")), responses((status = 200, description = "TaskResponse of the submit task", body = Object), (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope), (status = 404, description = "Unknown namespace, bucket or resource", body = ErrorEnvelope)))]
pub async fn submit(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath((bucket_ident, batch_id)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let batch = resolve(&state, &tenant, &bucket_ident, &batch_id).await?;
    let task_id = match batch.task_id {
        // Already submitted: the same answer again.
        Some(task_id) => task_id,
        None => submit_draft(&state, &tenant, &batch).await?,
    };
    let task = tasks::find_for_organization(&state.pool, &tenant.organization_id, &task_id)
        .await?
        .ok_or_else(|| ApiError::not_found("task"))?;
    Ok(Json(task_json(&task)))
}

/// Submits a batch read as a draft, publishing its announcement at once; returns its task.
async fn submit_draft(
    state: &AppState,
    tenant: &Tenant,
    batch: &BatchRow,
) -> Result<String, ApiError> {
    let destination = BatchDestination {
        exchange: state.publisher.topology().batches_exchange(),
        routing_key: BATCH_SUBMITTED_ROUTING_KEY.to_owned(),
    };
    let mut tx = state.pool.begin().await?;
    let submitted =
        batches::submit(&mut tx, &batch.id, &tenant.organization_id, &destination).await?;
    tx.commit().await?;
    Ok(match &submitted {
        Some(s) => {
            publish_now(
                state,
                &[Committed {
                    outbox_id: s.outbox_id,
                    exchange: &destination.exchange,
                    routing_key: &destination.routing_key,
                    message_id: &s.batch.id,
                    payload: &s.announcement,
                }],
            )
            .await;
            s.task_id.clone()
        }
        // Submitted by a concurrent request since we read it.
        None => batches::find_in_bucket(&state.pool, &batch.bucket_id, &batch.id)
            .await?
            .and_then(|b| b.task_id)
            .ok_or_else(|| ApiError::not_found("batch"))?,
    })
}

#[utoipa::path(get, path = "/v1/buckets/{bucket_identifier}/batches/{batch_id}", tag = "batches", params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("batch_id" = String, Path), ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")), responses((status = 200, description = "The batch", body = Object), (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope), (status = 404, description = "Unknown namespace, bucket or resource", body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath((bucket_ident, batch_id)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(batch_json(
        &resolve(&state, &tenant, &bucket_ident, &batch_id).await?,
    )))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ListBatches {
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

impl BodySchema for ListBatches {
    const FIELDS: &'static [&'static str] = &["status", "limit", "offset"];
}

#[utoipa::path(post, path = "/v1/buckets/{bucket_identifier}/batches/list", tag = "batches", params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")), request_body(content = Option<ListBatches>), responses((status = 200, description = "{results, pagination}", body = Object), (status = 401, description = "Missing, unknown or revoked API key", body = ErrorEnvelope), (status = 404, description = "Unknown namespace, bucket or resource", body = ErrorEnvelope), (status = 422, description = "Invalid body or query", body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath(bucket_ident): ApiPath<String>,
    OptionalJson(body): OptionalJson<ListBatches>,
) -> Result<Json<Value>, ApiError> {
    let bucket = buckets::resolve(&state, &tenant, &bucket_ident).await?;
    let page = Page::parse(body.limit, body.offset)?;
    if let Some(status) = &body.status {
        if !["DRAFT", "PENDING"].contains(&status.as_str()) {
            return Err(ApiError::invalid(
                "enum",
                &["body", "status"],
                format!("a batch is DRAFT or PENDING, not '{status}'"),
            ));
        }
    }
    let (rows, total) = batches::list(
        &state.pool,
        &bucket.id,
        body.status.as_deref(),
        page.limit,
        page.offset,
    )
    .await?;
    Ok(Json(json!({
        "results": rows.iter().map(batch_json).collect::<Vec<_>>(),
        "pagination": page.json(total),
    })))
}
