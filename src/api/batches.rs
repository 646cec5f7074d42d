//! Batches: `POST /v1/buckets/{b}/batches`, `.../batches/{batch_id}/submit`,
//! `GET .../batches/{batch_id}`, `POST .../batches/list`.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::confirm::{publish_now, Committed};
use super::error::{ApiError, BodyRefusals, NamespaceRefusals};
use super::extract::{ApiPath, BodySchema, OptionalJson, StrictJson, StrictQuery, Tenant};
use super::pages::{Page, PageAsk, PageQuery, Pagination};
use super::tasks::TaskResponse;
use super::{buckets, AppState};
use crate::domain::{new_id, BatchStatus, IdKind, TaskId};
use crate::queue::BATCH_SUBMITTED_ROUTING_KEY;
use crate::store::batches::{self, BatchDestination, NewBatch};
use crate::store::{tasks, BatchRow};

/// Most objects one batch holds.
pub const MAX_BATCH_OBJECTS: usize = 1000;

/// A batch, as the SDK's `BatchModel` parses it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchModel {
    pub batch_id: String,
    pub bucket_id: String,
    pub namespace_id: String,
    pub batch_name: Option<String>,
    /// `DRAFT` until submitted, then `PENDING`.
    pub status: String,
    pub object_ids: Vec<String>,
    /// The submit task, once submitted.
    pub task_id: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// Always `BUCKET`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Processing happens downstream: no resubmits here.
    pub max_node_death_resubmits: i64,
    pub max_deploy_resubmits: i64,
    /// Not tracked here: null.
    #[schema(required = true)]
    pub lifecycle: Option<String>,
    #[schema(required = true)]
    pub lifecycle_reason: Option<String>,
}

impl BatchModel {
    pub fn new(b: &BatchRow) -> Self {
        BatchModel {
            batch_id: b.id.clone().into(),
            bucket_id: b.bucket_id.clone().into(),
            namespace_id: b.namespace_id.clone().into(),
            batch_name: b.batch_name.clone(),
            status: b.status.to_string(),
            object_ids: b.object_ids.clone(),
            task_id: b.task_id.clone().map(String::from),
            metadata: b.metadata.clone(),
            kind: "BUCKET",
            created_at: b.created_at,
            updated_at: b.updated_at,
            max_node_death_resubmits: 0,
            max_deploy_resubmits: 0,
            lifecycle: None,
            lifecycle_reason: None,
        }
    }
}

/// The SDK's `CreateBatchRequest`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    /// 1 to 1000 objects of the bucket.
    #[schema(min_items = 1, max_items = 1000)]
    object_ids: Option<Vec<String>>,
    #[schema(max_length = 256)]
    batch_name: Option<String>,
    /// The SDK's `BatchMetadata` (`campaign_id`, `source`, `tags`, `notes`, ...), kept as given.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
    /// Submit the batch at once (as `POST .../submit` would).
    auto_submit: Option<bool>,
    /// The same as `auto_submit`.
    trigger_processing: Option<bool>,
    /// Accepted and ignored: processing happens downstream.
    dedup_strategy: Option<String>,
    /// Not supported: name the objects in `object_ids`.
    #[schema(value_type = Option<Object>)]
    filters: Option<Value>,
    /// Not supported.
    collection_ids: Option<Vec<String>>,
    /// Not supported.
    limit: Option<i64>,
}

impl BodySchema for CreateBatch {
    const FIELDS: &'static [&'static str] = &[
        "object_ids",
        "batch_name",
        "metadata",
        "auto_submit",
        "trigger_processing",
        "dedup_strategy",
        "filters",
        "collection_ids",
        "limit",
    ];
}

/// Query of `POST .../batches`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CreateBatchQuery {
    /// Accepted and ignored: objects are always checked.
    #[allow(dead_code)]
    skip_validation: Option<bool>,
    /// Submit the batch at once.
    auto_submit: Option<bool>,
    /// The same as `auto_submit`.
    trigger_processing: Option<bool>,
}

fn not_supported(field: &str, given: bool, instead: &str) -> Result<(), ApiError> {
    if given {
        return Err(ApiError::invalid(
            "unsupported",
            &["body", field],
            format!("{field} is not supported by this service; {instead}"),
        ));
    }
    Ok(())
}

/// A new batch of the bucket's objects, in `DRAFT` (or submitted at once with `auto_submit`).
#[utoipa::path(post, path = "/v1/buckets/{bucket_identifier}/batches", tag = "batches", operation_id = "create_batch",
    params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), CreateBatchQuery, ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")),
    request_body = CreateBatch,
    responses((status = 200, description = "The batch", body = BatchModel),
        NamespaceRefusals, BodyRefusals))]
pub async fn create(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath(bucket_ident): ApiPath<String>,
    StrictQuery(query): StrictQuery<CreateBatchQuery>,
    StrictJson(body): StrictJson<CreateBatch>,
) -> Result<Json<BatchModel>, ApiError> {
    let bucket = buckets::resolve(&state, &tenant, &bucket_ident).await?;
    let use_ids = "name the objects in object_ids";
    not_supported(
        "filters",
        body.filters.is_some_and(|f| !f.is_null()),
        use_ids,
    )?;
    not_supported(
        "collection_ids",
        body.collection_ids.is_some(),
        "leave it out",
    )?;
    not_supported("limit", body.limit.is_some(), use_ids)?;
    if let Some(strategy) = &body.dedup_strategy {
        if !["skip", "replace", "force"].contains(&strategy.as_str()) {
            return Err(ApiError::invalid(
                "enum",
                &["body", "dedup_strategy"],
                "dedup_strategy is skip, replace or force",
            ));
        }
    }
    if body
        .batch_name
        .as_ref()
        .is_some_and(|n| n.chars().count() > 256)
    {
        return Err(ApiError::invalid(
            "string_too_long",
            &["body", "batch_name"],
            "batch_name is at most 256 characters",
        ));
    }
    let object_ids = body.object_ids.unwrap_or_default();
    if !(1..=MAX_BATCH_OBJECTS).contains(&object_ids.len()) {
        return Err(ApiError::invalid(
            "value_error",
            &["body", "object_ids"],
            format!(
                "object_ids must hold 1 to {MAX_BATCH_OBJECTS} ids, not {}",
                object_ids.len()
            ),
        ));
    }
    // Each object once, in the order first given.
    let mut seen = std::collections::HashSet::new();
    let object_ids: Vec<String> = object_ids
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
        &NewBatch {
            id: &new_id(IdKind::Batch),
            bucket_id: &bucket.id,
            namespace_id: &tenant.namespace.id,
            batch_name: body.batch_name.as_deref(),
            object_ids: &object_ids,
            metadata: &Value::Object(body.metadata.unwrap_or_default()),
        },
    )
    .await?;
    drop(conn);
    let submit_now = [
        body.auto_submit,
        body.trigger_processing,
        query.auto_submit,
        query.trigger_processing,
    ]
    .contains(&Some(true));
    if !submit_now {
        return Ok(Json(BatchModel::new(&batch)));
    }
    submit_draft(&state, &tenant, &batch).await?;
    let submitted = batches::find_in_bucket(&state.pool, &bucket.id, &batch.id)
        .await?
        .ok_or_else(|| ApiError::not_found("batch"))?;
    Ok(Json(BatchModel::new(&submitted)))
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

/// The SDK's `SubmitBatchRequest`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatch {
    /// Accepted and ignored.
    include_processing_history: Option<bool>,
    /// Not supported.
    collection_ids: Option<Vec<String>>,
    /// Not supported: no webhooks yet.
    webhook_url: Option<String>,
}

impl BodySchema for SubmitBatch {
    const FIELDS: &'static [&'static str] = &[
        "include_processing_history",
        "collection_ids",
        "webhook_url",
    ];
}

/// Query of `POST .../submit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubmitQuery {
    /// Accepted and ignored: submitting again answers the same task.
    #[allow(dead_code)]
    force: Option<bool>,
}

/// Submits a `DRAFT` batch: `PENDING`, a submit task, and an announcement on the batches
/// exchange (through the outbox). Submitting it again answers the same task.
#[utoipa::path(post, path = "/v1/buckets/{bucket_identifier}/batches/{batch_id}/submit", tag = "batches", operation_id = "submit_batch",
    params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("batch_id" = String, Path), SubmitQuery, ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")),
    request_body(content = Option<SubmitBatch>),
    responses((status = 200, description = "The submit task", body = TaskResponse),
        NamespaceRefusals, BodyRefusals))]
pub async fn submit(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath((bucket_ident, batch_id)): ApiPath<(String, String)>,
    StrictQuery(_query): StrictQuery<SubmitQuery>,
    OptionalJson(body): OptionalJson<SubmitBatch>,
) -> Result<Json<TaskResponse>, ApiError> {
    let _ = body.include_processing_history;
    not_supported(
        "collection_ids",
        body.collection_ids.is_some(),
        "leave it out",
    )?;
    not_supported(
        "webhook_url",
        body.webhook_url.is_some(),
        "poll the task instead",
    )?;
    let batch = resolve(&state, &tenant, &bucket_ident, &batch_id).await?;
    let task_id = match batch.task_id {
        // Already submitted: the same answer again.
        Some(task_id) => task_id,
        None => submit_draft(&state, &tenant, &batch).await?,
    };
    let task = tasks::find_for_organization(&state.pool, &tenant.organization_id, &task_id)
        .await?
        .ok_or_else(|| ApiError::not_found("task"))?;
    Ok(Json(TaskResponse::new(&task)))
}

/// Submits a batch read as a draft, publishing its announcement at once; returns its task.
async fn submit_draft(
    state: &AppState,
    tenant: &Tenant,
    batch: &BatchRow,
) -> Result<TaskId, ApiError> {
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

#[utoipa::path(get, path = "/v1/buckets/{bucket_identifier}/batches/{batch_id}", tag = "batches", operation_id = "get_batch",
    params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("batch_id" = String, Path), ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")),
    responses((status = 200, description = "The batch", body = BatchModel),
        NamespaceRefusals))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath((bucket_ident, batch_id)): ApiPath<(String, String)>,
) -> Result<Json<BatchModel>, ApiError> {
    Ok(Json(BatchModel::new(
        &resolve(&state, &tenant, &bucket_ident, &batch_id).await?,
    )))
}

/// The SDK's `ListBatchesRequest`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListBatches {
    /// `DRAFT` or `PENDING`.
    status: Option<String>,
    /// Must be the path's bucket when given.
    bucket_id: Option<String>,
    /// Must be the request's namespace when given.
    namespace_id: Option<String>,
    /// Not supported.
    collection_id: Option<String>,
    #[schema(minimum = 0)]
    offset: Option<i64>,
    /// Default 100.
    #[schema(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Accepted and ignored: lists page by offset.
    cursor: Option<String>,
}

impl BodySchema for ListBatches {
    const FIELDS: &'static [&'static str] = &[
        "status",
        "bucket_id",
        "namespace_id",
        "collection_id",
        "offset",
        "limit",
        "cursor",
    ];
}

/// The SDK's `ListBatchesResponse`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListBatchesResponse {
    pub results: Vec<BatchModel>,
    pub total_count: i64,
    pub pagination: Pagination,
}

#[utoipa::path(post, path = "/v1/buckets/{bucket_identifier}/batches/list", tag = "batches", operation_id = "list_batches",
    params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), PageQuery, ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")),
    request_body(content = Option<ListBatches>),
    responses((status = 200, description = "A page of batches", body = ListBatchesResponse),
        NamespaceRefusals, BodyRefusals))]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath(bucket_ident): ApiPath<String>,
    StrictQuery(query): StrictQuery<PageQuery>,
    OptionalJson(body): OptionalJson<ListBatches>,
) -> Result<Json<ListBatchesResponse>, ApiError> {
    let bucket = buckets::resolve(&state, &tenant, &bucket_ident).await?;
    let _ = body.cursor;
    // The SDK's ListBatchesRequest pages by 100 unless told otherwise.
    let page = Page::resolve_or(
        PageAsk::limit_offset(body.limit, body.offset),
        &query,
        1000,
        100,
    )?;
    not_supported(
        "collection_id",
        body.collection_id.is_some(),
        "leave it out",
    )?;
    let elsewhere = body
        .bucket_id
        .as_ref()
        .is_some_and(|b| b.as_str() != bucket.id.as_str())
        || body
            .namespace_id
            .as_ref()
            .is_some_and(|n| n.as_str() != tenant.namespace.id.as_str());
    if let Some(status) = &body.status {
        if BatchStatus::parse(status).is_none() {
            return Err(ApiError::invalid(
                "enum",
                &["body", "status"],
                format!("a batch is DRAFT or PENDING, not '{status}'"),
            ));
        }
    }
    let (rows, total) = if elsewhere {
        (Vec::new(), 0)
    } else {
        batches::list(
            &state.pool,
            &bucket.id,
            body.status.as_deref(),
            page.limit,
            page.offset,
        )
        .await?
    };
    Ok(Json(ListBatchesResponse {
        results: rows.iter().map(BatchModel::new).collect(),
        total_count: total,
        pagination: page.pagination(total),
    }))
}
