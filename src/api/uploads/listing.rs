//! `POST /v1/buckets/{b}/uploads/list`: a page of a bucket's uploads, with counts per status.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::super::buckets;
use super::super::error::{ApiError, BodyRefusals, NamespaceRefusals};
use super::super::extract::{ApiPath, BodySchema, OptionalJson, StrictQuery, Tenant};
use super::super::filters::{self, Field};
use super::super::pages::{Page, PageAsk, PageQuery, Pagination};
use super::super::AppState;
use super::UploadResponse;
use crate::domain::UploadStatus;
use crate::store::filter::{ColumnKind, Condition, TextMatch};
use crate::store::uploads::{self, UploadSort};

/// The SDK's `ListUploadsRequest`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListUploads {
    /// `{AND|OR|NOT: [{field, operator, value}], case_sensitive}` or `{field: value}`, on
    /// status, is_duplicate, filename, content_type, file_hash, upload_id, file_size_bytes,
    /// blob_property, blob_type, object_id, task_id.
    #[schema(value_type = Option<Object>)]
    filters: Option<Value>,
    /// Matched anywhere in the filename, case-insensitively.
    #[schema(max_length = 255)]
    search: Option<String>,
    /// `{field, direction}`: created_at, updated_at, filename, file_size_bytes or status.
    #[schema(value_type = Option<Object>)]
    sort: Option<Value>,
    /// Accepted and ignored: a PUT URL is given once, at creation.
    #[allow(dead_code)]
    return_presigned_urls: Option<bool>,
    #[schema(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    #[schema(minimum = 0)]
    offset: Option<i64>,
}

impl BodySchema for ListUploads {
    const FIELDS: &'static [&'static str] = &[
        "filters",
        "search",
        "sort",
        "return_presigned_urls",
        "limit",
        "offset",
    ];
}

/// The SDK's `UploadListStats`, over every upload the list's filters select.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadListStats {
    pub total_uploads: i64,
    /// Declared or verified bytes of those uploads.
    pub total_size_bytes: i64,
    /// Every upload status, with how many uploads have it.
    pub uploads_by_status: BTreeMap<String, i64>,
    pub avg_file_size_bytes: f64,
    pub unique_buckets: i64,
}

/// The SDK's `ListUploadsResponse`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListUploadsResponse {
    pub results: Vec<UploadResponse>,
    pub pagination: Pagination,
    pub stats: UploadListStats,
}

const UPLOAD_FIELDS: [Field; 11] = [
    Field::new("status", "status", ColumnKind::Text).one_of(UploadStatus::NAMES),
    Field::new("is_duplicate", "is_duplicate", ColumnKind::Bool),
    Field::new("filename", "filename", ColumnKind::Text),
    Field::new("content_type", "content_type", ColumnKind::Text),
    Field::new("file_hash", "file_hash", ColumnKind::Text),
    Field::new("upload_id", "id", ColumnKind::Text),
    Field::new("file_size_bytes", "file_size_bytes", ColumnKind::Int),
    Field::new("blob_property", "blob_property", ColumnKind::Text),
    Field::new("blob_type", "blob_type", ColumnKind::Text),
    Field::new("object_id", "object_id", ColumnKind::Text),
    Field::new("task_id", "task_id", ColumnKind::Text),
];

fn parse_sort(sort: Option<&Value>) -> Result<(UploadSort, bool), ApiError> {
    let Some(sort) = sort.filter(|s| !s.is_null()) else {
        return Ok((UploadSort::CreatedAt, true));
    };
    let field = sort
        .get("field")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let field = UploadSort::parse(field).ok_or_else(|| {
        ApiError::invalid(
            "enum",
            &["body", "sort", "field"],
            format!(
                "uploads can be sorted by {}, not '{field}'",
                UploadSort::NAMES.join(", ")
            ),
        )
    })?;
    if let Some(extra) = sort.as_object().and_then(|o| {
        o.keys()
            .find(|k| !["field", "direction"].contains(&k.as_str()))
    }) {
        return Err(ApiError::invalid(
            "extra_forbidden",
            &["body", "sort", extra],
            format!("sort has field and direction, not '{extra}'"),
        ));
    }
    let descending = match sort.get("direction") {
        None | Some(Value::Null) => true,
        Some(Value::String(d)) if d == "desc" => true,
        Some(Value::String(d)) if d == "asc" => false,
        Some(other) => {
            return Err(ApiError::invalid(
                "enum",
                &["body", "sort", "direction"],
                format!("direction is 'asc' or 'desc', not {other}"),
            ))
        }
    };
    Ok((field, descending))
}

/// `POST /v1/buckets/{b}/uploads/list`: a page of uploads, with counts per status (the
/// list's other filters applied) in `stats`.
#[utoipa::path(post, path = "/v1/buckets/{bucket_identifier}/uploads/list", tag = "uploads", operation_id = "list_uploads",
    params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), PageQuery, ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")),
    request_body(content = Option<ListUploads>),
    responses((status = 200, description = "A page of uploads, and stats over all that match", body = ListUploadsResponse),
        NamespaceRefusals, BodyRefusals))]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath(bucket_ident): ApiPath<String>,
    StrictQuery(query): StrictQuery<PageQuery>,
    OptionalJson(body): OptionalJson<ListUploads>,
) -> Result<Json<ListUploadsResponse>, ApiError> {
    let bucket = buckets::resolve(&state, &tenant, &bucket_ident).await?;
    let page = Page::resolve(PageAsk::limit_offset(body.limit, body.offset), &query, 100)?;
    let mut filter = vec![filters::parse(body.filters.as_ref(), &UPLOAD_FIELDS)?];
    if let Some(search) = filters::search(body.search)? {
        filter.push(Condition::Text {
            column: "filename",
            how: TextMatch::Contains,
            pattern: search,
            case_sensitive: false,
        });
    }
    let filter = Condition::All(filter);
    let (sort, descending) = parse_sort(body.sort.as_ref())?;
    let rows = uploads::list(
        &state.pool,
        &bucket.id,
        &filter,
        sort,
        descending,
        page.limit,
        page.offset,
    )
    .await?;
    let facets = uploads::count_by_status(&state.pool, &bucket.id, &filter).await?;
    let total: i64 = facets.iter().map(|(_, n, _)| n).sum();
    let total_size_bytes = facets
        .iter()
        .fold(0i64, |sum, (_, _, bytes)| sum.saturating_add(*bytes));
    let mut uploads_by_status: BTreeMap<String, i64> = UploadStatus::NAMES
        .iter()
        .map(|s| ((*s).to_owned(), 0))
        .collect();
    for (status, n, _) in &facets {
        uploads_by_status.insert(status.clone(), *n);
    }
    Ok(Json(ListUploadsResponse {
        results: rows.iter().map(|u| UploadResponse::new(u, None)).collect(),
        pagination: page.pagination(total),
        stats: UploadListStats {
            total_uploads: total,
            total_size_bytes,
            uploads_by_status,
            avg_file_size_bytes: if total > 0 {
                total_size_bytes as f64 / total as f64
            } else {
                0.0
            },
            unique_buckets: i64::from(total > 0),
        },
    }))
}
