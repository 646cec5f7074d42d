//! `POST /v1/buckets`, `GET /v1/buckets/{bucket_identifier}`, `POST /v1/buckets/list`.

use std::collections::HashMap;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{ApiError, BodyRefusals, ErrorEnvelope, NamespaceRefusals};
use super::extract::{ApiPath, BodySchema, OptionalJson, StrictJson, StrictQuery, Tenant};
use super::filters::{self, Field};
use super::pages::{Page, PageAsk, PageQuery, Pagination};
use super::AppState;
use crate::domain::{new_id, BlobProperty, BlobType, BucketId, IdKind};
use crate::store::filter::{ColumnKind, Condition, TextMatch};
use crate::store::tenancy::{self, BucketStats};
use crate::store::BucketRow;

/// A field of a bucket schema, as the SDK's `BucketSchemaFieldInput` sends it; parsed to
/// check its shape, and stored as given.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub struct SchemaField {
    /// A `BucketSchemaFieldType`: string, number, integer, float, boolean, object, array,
    /// date, datetime, text, image, audio, video, pdf, excel (upper case accepted).
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(value_type = Option<Object>)]
    pub default: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub items: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub properties: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub examples: Option<Value>,
    pub description: Option<String>,
    #[serde(rename = "enum")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub allowed: Option<Value>,
    pub required: Option<bool>,
}

/// `{properties: {NAME: field}}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketSchema {
    pub properties: HashMap<String, SchemaField>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBucket {
    /// Unique in the namespace: letters, digits, `-`, `_`, `.`; not starting with `.`.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$"
    )]
    bucket_name: String,
    description: Option<String>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
    /// The bucket's schema: which blob properties its objects have.
    #[schema(value_type = Option<BucketSchema>)]
    bucket_schema: Option<Value>,
    /// The same as `bucket_schema` (its earlier name); give one of the two.
    #[schema(value_type = Option<BucketSchema>)]
    schema: Option<Value>,
    /// Accepted and ignored: objects are stored where the service stores every upload.
    storage_class: Option<String>,
    /// Not supported: must be absent or null.
    #[schema(value_type = Option<Object>)]
    unique_key: Option<Value>,
    /// Not supported: must be absent or null.
    #[schema(value_type = Option<Object>)]
    destination: Option<Value>,
    /// Not supported: must be absent or null.
    #[schema(value_type = Option<Object>)]
    ingest_filter: Option<Value>,
    /// Not supported: must be absent or null.
    #[schema(value_type = Option<Object>)]
    source_adapter: Option<Value>,
}

impl BodySchema for CreateBucket {
    const FIELDS: &'static [&'static str] = &[
        "bucket_name",
        "description",
        "metadata",
        "bucket_schema",
        "schema",
        "storage_class",
        "unique_key",
        "destination",
        "ingest_filter",
        "source_adapter",
    ];
}

/// A bucket, as the SDK's `BucketResponse` parses it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BucketResponse {
    pub bucket_id: String,
    pub bucket_name: String,
    pub description: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub bucket_schema: Option<Value>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// Objects in the bucket.
    pub object_count: i64,
    /// Always 0: objects do not fail once created.
    pub failed_object_count: i64,
    /// Bytes of the bucket's objects.
    pub total_size_bytes: i64,
    /// Always `ACTIVE`.
    pub status: &'static str,
    pub is_locked: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_upload_at: Option<DateTime<Utc>>,
}

impl BucketResponse {
    pub fn new(b: &BucketRow, stats: Option<&BucketStats>) -> Self {
        BucketResponse {
            bucket_id: b.id.clone().into(),
            bucket_name: b.name.clone(),
            description: b.description.clone(),
            bucket_schema: b.schema.clone(),
            metadata: b.metadata.clone(),
            object_count: stats.map_or(0, |s| s.object_count),
            failed_object_count: 0,
            total_size_bytes: stats.map_or(0, |s| s.total_size_bytes),
            status: "ACTIVE",
            is_locked: false,
            created_at: b.created_at,
            updated_at: b.updated_at,
            last_upload_at: stats.and_then(|s| s.last_upload_at),
        }
    }
}

fn check_bucket_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "value_error",
            &["body", "bucket_name"],
            "bucket_name must be 1 to 255 characters of letters, digits, '-', '_' or '.'",
        ))
    }
}

/// A schema `{properties: {NAME: {type, ...}}}`, with each type in its lower-case spelling.
fn normalized_schema(schema: Value, field: &str) -> Result<Value, ApiError> {
    let bad = |message: String| ApiError::invalid("value_error", &["body", field], message);
    let parsed: BucketSchema = serde_json::from_value(schema.clone()).map_err(|e| {
        bad(format!(
            "{field} must be {{properties: {{NAME: {{type}}}}}}: {e}"
        ))
    })?;
    let mut schema = schema;
    for (name, property) in &parsed.properties {
        BlobProperty::parse(name).map_err(|e| bad(e.0))?;
        let kind =
            BlobType::parse(&property.kind).map_err(|e| bad(format!("property '{name}': {e}")))?;
        schema["properties"][name]["type"] = Value::String(kind.as_str().to_owned());
    }
    Ok(schema)
}

/// Refuses a field for a feature the service does not have, where ignoring it would
/// silently do something else than asked.
fn unsupported(field: &str, value: Option<&Value>) -> Result<(), ApiError> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(ApiError::invalid(
            "unsupported",
            &["body", field],
            format!("{field} is not supported by this service; leave it out"),
        )),
    }
}

#[utoipa::path(post, path = "/v1/buckets", tag = "buckets", operation_id = "create_bucket",
    params(("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")),
    request_body = CreateBucket,
    responses((status = 200, description = "The bucket", body = BucketResponse),
        (status = 409, description = "Name taken", body = ErrorEnvelope),
        NamespaceRefusals, BodyRefusals))]
pub async fn create(
    State(state): State<AppState>,
    tenant: Tenant,
    StrictJson(body): StrictJson<CreateBucket>,
) -> Result<Json<BucketResponse>, ApiError> {
    check_bucket_name(&body.bucket_name)?;
    for (field, value) in [
        ("unique_key", &body.unique_key),
        ("destination", &body.destination),
        ("ingest_filter", &body.ingest_filter),
        ("source_adapter", &body.source_adapter),
    ] {
        unsupported(field, value.as_ref())?;
    }
    if let Some(class) = &body.storage_class {
        if !["standard", "nearline", "coldline", "archive"].contains(&class.as_str()) {
            return Err(ApiError::invalid(
                "enum",
                &["body", "storage_class"],
                "storage_class is one of standard, nearline, coldline, archive",
            ));
        }
    }
    let schema = match (body.bucket_schema, body.schema) {
        (Some(s), None) if !s.is_null() => Some(normalized_schema(s, "bucket_schema")?),
        (None | Some(Value::Null), Some(s)) if !s.is_null() => {
            Some(normalized_schema(s, "schema")?)
        }
        (Some(a), Some(b)) if !a.is_null() && !b.is_null() => {
            return Err(ApiError::invalid(
                "value_error",
                &["body", "schema"],
                "give bucket_schema or schema, not both",
            ))
        }
        _ => None,
    };
    let metadata = Value::Object(body.metadata.unwrap_or_default());
    let bucket = tenancy::insert_bucket(
        &state.pool,
        &new_id(IdKind::Bucket),
        &tenant.namespace.id,
        &body.bucket_name,
        body.description.as_deref(),
        &metadata,
        schema.as_ref(),
    )
    .await?
    .ok_or_else(|| {
        ApiError::AlreadyExists(format!(
            "a bucket named '{}' already exists in this namespace",
            body.bucket_name
        ))
    })?;
    Ok(Json(BucketResponse::new(&bucket, None)))
}

/// The SDK's `ListBucketsRequest`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListBuckets {
    #[schema(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    #[schema(minimum = 1, maximum = 1000)]
    page_size: Option<i64>,
    #[schema(minimum = 0)]
    offset: Option<i64>,
    #[schema(minimum = 1)]
    page: Option<i64>,
    /// Matched anywhere in the bucket's name.
    #[schema(max_length = 255)]
    search: Option<String>,
    /// `{AND|OR|NOT: [{field, operator, value}]}` or `{field: value}` on `bucket_name`,
    /// `bucket_id`, `description`.
    #[schema(value_type = Option<Object>)]
    filters: Option<Value>,
    /// `{field, direction}`: `created_at`, `updated_at` or `bucket_name`, `asc`|`desc`.
    #[schema(value_type = Option<Object>)]
    sort: Option<Value>,
    /// Several sort keys, the first one first.
    #[schema(value_type = Option<Vec<Object>>)]
    sorts: Option<Vec<Value>>,
    /// Whether `search` and text filters match case.
    case_sensitive: Option<bool>,
}

impl BodySchema for ListBuckets {
    const FIELDS: &'static [&'static str] = &[
        "limit",
        "page_size",
        "offset",
        "page",
        "search",
        "filters",
        "sort",
        "sorts",
        "case_sensitive",
    ];
}

/// The SDK's `ListBucketsResponse`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListBucketsResponse {
    pub results: Vec<BucketResponse>,
    pub total_count: i64,
    pub pagination: Pagination,
}

const BUCKET_FIELDS: [Field; 3] = [
    Field::new("bucket_name", "name", ColumnKind::Text),
    Field::new("bucket_id", "id", ColumnKind::Text),
    Field::new("description", "description", ColumnKind::Text),
];

/// One sort key `{field, direction}` as an ORDER BY term of a known column.
pub fn sort_term(
    sort: &Value,
    columns: &[(&str, &'static str)],
    location: &[&str],
) -> Result<String, ApiError> {
    let bad = |message: String| ApiError::invalid("value_error", location, message);
    let names = || {
        columns
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let field = sort
        .get("field")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("sort needs a field: one of {}", names())))?;
    if let Some(extra) = sort.as_object().and_then(|o| {
        o.keys()
            .find(|k| !["field", "direction"].contains(&k.as_str()))
    }) {
        return Err(bad(format!("sort has field and direction, not '{extra}'")));
    }
    let column = columns
        .iter()
        .find(|(n, _)| *n == field)
        .map(|(_, c)| *c)
        .ok_or_else(|| bad(format!("cannot sort by '{field}'; one of {}", names())))?;
    let direction = match sort.get("direction") {
        None | Some(Value::Null) => "DESC",
        Some(Value::String(d)) if d == "desc" => "DESC",
        Some(Value::String(d)) if d == "asc" => "ASC",
        Some(other) => return Err(bad(format!("direction is 'asc' or 'desc', not {other}"))),
    };
    Ok(format!("{column} {direction} NULLS LAST"))
}

/// `POST /v1/buckets/list`: the namespace's buckets, newest first unless sorted.
#[utoipa::path(post, path = "/v1/buckets/list", tag = "buckets", operation_id = "list_buckets",
    params(PageQuery, ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")),
    request_body(content = Option<ListBuckets>),
    responses((status = 200, description = "A page of buckets", body = ListBucketsResponse),
        NamespaceRefusals, BodyRefusals))]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    StrictQuery(query): StrictQuery<PageQuery>,
    OptionalJson(body): OptionalJson<ListBuckets>,
) -> Result<Json<ListBucketsResponse>, ApiError> {
    let page = Page::resolve(
        PageAsk {
            limit: body.limit,
            page_size: body.page_size,
            offset: body.offset,
            page: body.page,
        },
        &query,
        1000,
    )?;
    let case_sensitive = body.case_sensitive.unwrap_or(false);
    let mut filter = vec![filters::parse(body.filters.as_ref(), &BUCKET_FIELDS)?];
    if let Some(search) = filters::search(body.search)? {
        filter.push(Condition::Text {
            column: "name",
            how: TextMatch::Contains,
            pattern: search,
            case_sensitive,
        });
    }
    const SORTABLE: [(&str, &str); 3] = [
        ("created_at", "created_at"),
        ("updated_at", "updated_at"),
        ("bucket_name", "name"),
    ];
    let mut order = Vec::new();
    if let Some(sort) = body.sort.as_ref().filter(|s| !s.is_null()) {
        order.push(sort_term(sort, &SORTABLE, &["body", "sort"])?);
    }
    for (i, sort) in body.sorts.iter().flatten().enumerate() {
        order.push(sort_term(
            sort,
            &SORTABLE,
            &["body", "sorts", &i.to_string()],
        )?);
    }
    order.push("created_at DESC, id DESC".into());
    let (rows, total) = tenancy::list_buckets(
        &state.pool,
        &tenant.namespace.id,
        &Condition::All(filter),
        &order.join(", "),
        page.limit,
        page.offset,
    )
    .await?;
    let ids: Vec<BucketId> = rows.iter().map(|b| b.id.clone()).collect();
    let stats = tenancy::bucket_stats(&state.pool, &ids).await?;
    let results = rows
        .iter()
        .map(|b| BucketResponse::new(b, stats.iter().find(|s| b.id == s.bucket_id.as_str())))
        .collect();
    Ok(Json(ListBucketsResponse {
        results,
        total_count: total,
        pagination: page.pagination(total),
    }))
}

/// The bucket a path names, in the caller's namespace.
pub async fn resolve(
    state: &AppState,
    tenant: &Tenant,
    ident: &str,
) -> Result<BucketRow, ApiError> {
    tenancy::find_bucket(&state.pool, &tenant.namespace.id, ident)
        .await?
        .ok_or_else(|| ApiError::not_found("bucket"))
}

#[utoipa::path(get, path = "/v1/buckets/{bucket_identifier}", tag = "buckets", operation_id = "get_bucket",
    params(("bucket_identifier" = String, Path, description = "Bucket id (bkt_...) or name"), ("X-Namespace" = Option<String>, Header, description = "Namespace name or ns_ id (or ?namespace=)")),
    responses((status = 200, description = "The bucket", body = BucketResponse),
        NamespaceRefusals))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiPath(ident): ApiPath<String>,
) -> Result<Json<BucketResponse>, ApiError> {
    let bucket = resolve(&state, &tenant, &ident).await?;
    let stats = tenancy::bucket_stats(&state.pool, std::slice::from_ref(&bucket.id)).await?;
    Ok(Json(BucketResponse::new(&bucket, stats.first())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bucket_names() {
        for ok in ["photos", "a", "my-bucket_1.x"] {
            assert!(check_bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", ".hidden", "sp ace", &"x".repeat(256)] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schemas() {
        let sdk = json!({"properties": {"image": {"type": "IMAGE", "required": false}}});
        assert_eq!(
            normalized_schema(sdk, "bucket_schema").unwrap()["properties"]["image"]["type"],
            "image"
        );
        let ok = |v: Value| normalized_schema(v, "bucket_schema").is_ok();
        assert!(ok(json!({"properties": {}})));
        assert!(ok(
            json!({"properties": {"x": {"type": "pdf", "description": "d"}}})
        ));
        assert!(!ok(json!({})));
        assert!(!ok(json!({"properties": {"bad-name": {"type": "image"}}})));
        assert!(!ok(json!({"properties": {"x": {"type": "DOCUMENT"}}})));
        assert!(!ok(json!({"properties": {"x": {}}})));
        assert!(!ok(
            json!({"properties": {"x": {"type": "image", "colour": 1}}})
        ));
    }

    #[test]
    fn sort_terms() {
        let cols = [("created_at", "created_at"), ("bucket_name", "name")];
        let at = ["body", "sort"];
        assert_eq!(
            sort_term(
                &json!({"field": "bucket_name", "direction": "asc"}),
                &cols,
                &at
            )
            .unwrap(),
            "name ASC NULLS LAST"
        );
        assert!(sort_term(&json!({"field": "size"}), &cols, &at).is_err());
        assert!(sort_term(
            &json!({"field": "created_at", "direction": "up"}),
            &cols,
            &at
        )
        .is_err());
        assert!(sort_term(&json!({"direction": "asc"}), &cols, &at).is_err());
    }
}
