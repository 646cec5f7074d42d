//! Extractors: the caller's organization and namespace, and strictly parsed bodies and queries.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::{ApiError, ValidationIssue};
use super::AppState;
use crate::domain::OrganizationId;
use crate::store::{tenancy, NamespaceRow};

/// The organization whose API key signed the request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub organization_id: OrganizationId,
}

/// The SHA-256 under which a key is stored.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Admission resolved the key already (and took from the organization's rate limit).
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization header".into()))?;
        let key = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| k.starts_with("sk_") && k.len() <= 256)
            .ok_or_else(|| {
                ApiError::Unauthorized("Authorization must be 'Bearer sk_...'".into())
            })?;
        let organization_id = tenancy::organization_for_key(&state.pool, &key_hash(key))
            .await?
            .ok_or_else(|| ApiError::Unauthorized("invalid or revoked API key".into()))?;
        Ok(Caller { organization_id })
    }
}

/// The caller and the namespace the request acts in.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub organization_id: OrganizationId,
    pub namespace: NamespaceRow,
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let from_header = parts
            .headers
            .get("x-namespace")
            .map(|v| {
                v.to_str()
                    .map(str::to_owned)
                    .map_err(|_| ApiError::bad_request("X-Namespace must be text"))
            })
            .transpose()?;
        let ident = match from_header {
            Some(ident) => ident,
            None => Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
                .ok()
                .and_then(|q| q.0.get("namespace").cloned())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "a namespace is required: X-Namespace header or ?namespace=",
                    )
                })?,
        };
        // PostgreSQL text cannot hold NUL, so such a name names no namespace.
        if ident.contains('\0') {
            return Err(ApiError::not_found("namespace"));
        }
        let namespace = tenancy::find_namespace(&state.pool, &caller.organization_id, ident.trim())
            .await?
            .ok_or_else(|| ApiError::not_found("namespace"))?;
        Ok(Tenant {
            organization_id: caller.organization_id,
            namespace,
        })
    }
}

/// A request body type: the keys it accepts, so unknown keys are refused by name.
pub trait BodySchema: DeserializeOwned {
    const FIELDS: &'static [&'static str];
}

/// A JSON object body with no unknown keys; `T` also validates types.
pub struct StrictJson<T>(pub T);

/// Like [`StrictJson`], but an absent or empty body means `{}`.
pub struct OptionalJson<T>(pub T);

/// The body, refused unless it is empty or its Content-Type says JSON.
async fn read_body(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    let content_type = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let bytes =
        Bytes::from_request(req, state)
            .await
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
                _ => ApiError::bad_request("could not read the request body"),
            })?;
    if bytes.is_empty() || content_type.as_deref().is_some_and(is_json_media_type) {
        return Ok(bytes);
    }
    Err(ApiError::UnsupportedMediaType(format!(
        "the body must be JSON sent with Content-Type: application/json; this one came {}",
        match &content_type {
            Some(ct) => format!("as '{}'", ct.chars().take(100).collect::<String>()),
            None => "without a Content-Type".to_owned(),
        }
    )))
}

/// `application/json` or `application/*+json`, in any case, with parameters or not.
pub fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", sub)) => {
            sub == "json" || (sub.len() > "+json".len() && sub.ends_with("+json"))
        }
        _ => false,
    }
}

/// Parses a JSON object into `T`, naming every unknown key and every type error.
pub fn parse_body<T: BodySchema>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid("json_invalid", &["body"], format!("invalid JSON: {e}")))?;
    if let Some(mut location) = nul_location(&value) {
        location.insert(0, "body".to_owned());
        let location: Vec<&str> = location.iter().map(String::as_str).collect();
        return Err(ApiError::invalid(
            "string_nul",
            &location,
            "text must not contain the NUL character (\\u0000)",
        ));
    }
    parse_value(value)
}

/// Where the first string or key holding NUL is, which PostgreSQL text and JSONB cannot
/// store.
fn nul_location(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(s) => s.contains('\0').then(Vec::new),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            nul_location(item).map(|mut at| {
                at.insert(0, i.to_string());
                at
            })
        }),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                return Some(vec![k.clone()]);
            }
            nul_location(v).map(|mut at| {
                at.insert(0, k.clone());
                at
            })
        }),
        _ => None,
    }
}

/// Like [`parse_body`], for a value already parsed (an item of a list, say).
pub fn parse_value<T: BodySchema>(value: Value) -> Result<T, ApiError> {
    let Value::Object(map) = &value else {
        return Err(ApiError::invalid(
            "model_attributes_type",
            &["body"],
            "the body must be a JSON object",
        ));
    };
    let unknown: Vec<ValidationIssue> = map
        .keys()
        .filter(|k| !T::FIELDS.contains(&k.as_str()))
        .map(|k| ValidationIssue {
            accepted: Some(T::FIELDS.iter().map(|f| (*f).to_owned()).collect()),
            ..ValidationIssue::new(
                "extra_forbidden",
                &["body", k],
                format!(
                    "Extra inputs are not permitted: '{k}'; accepted keys: {}",
                    T::FIELDS.join(", ")
                ),
            )
        })
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::Validation(unknown));
    }
    serde_json::from_value(value).map_err(|e| {
        let text = e.to_string();
        let kind = if text.starts_with("missing field") {
            "missing"
        } else {
            "type_error"
        };
        ApiError::invalid(kind, &["body"], text)
    })
}

impl<T: BodySchema> FromRequest<AppState> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        parse_body(&bytes).map(StrictJson)
    }
}

impl<T: BodySchema> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        // Absent, empty or JSON `null`: the body is optional, so it means `{}`.
        if bytes.iter().all(u8::is_ascii_whitespace) || bytes.trim_ascii() == b"null" {
            return parse_body(b"{}").map(OptionalJson);
        }
        parse_body(&bytes).map(OptionalJson)
    }
}

/// A query string parsed into `T`; a bad value is a 422 naming the parameter.
pub struct StrictQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for StrictQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|q| StrictQuery(q.0))
            .map_err(|e| ApiError::invalid("query_invalid", &["query"], e.body_text()))
    }
}

/// Path parameters; an undecodable one names no resource, so it is a 404 in the envelope.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // PostgreSQL text cannot hold NUL, so such an id names nothing.
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound("no such resource".into()))?;
        if raw.iter().any(|(_, value)| value.contains('\0')) {
            return Err(ApiError::NotFound("no such resource".into()));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|_| ApiError::NotFound("no such resource".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        size: Option<i64>,
    }

    impl BodySchema for Sample {
        const FIELDS: &'static [&'static str] = &["name", "size"];
    }

    fn issue(err: ApiError) -> ValidationIssue {
        match err {
            ApiError::Validation(mut issues) => issues.remove(0),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn unknown_keys_are_named_with_the_accepted_ones() {
        let err = parse_body::<Sample>(br#"{"name":"a","bogus":1}"#)
            .err()
            .unwrap();
        let issue = issue(err);
        assert_eq!(issue.kind, "extra_forbidden");
        assert_eq!(issue.location, ["body", "bogus"]);
        assert!(issue.message.contains("bogus"));
        assert_eq!(issue.accepted.unwrap(), ["name", "size"]);
    }

    #[test]
    fn type_errors_and_bad_json_are_validation_errors() {
        let table: [(&[u8], &str); 4] = [
            (br#"{"name": 5}"#, "type_error"),
            (br#"{"size": 1}"#, "missing"),
            (b"{not json", "json_invalid"),
            (b"[1,2]", "model_attributes_type"),
        ];
        for (body, kind) in table {
            let err = parse_body::<Sample>(body).err().unwrap();
            assert_eq!(issue(err).kind, kind, "{}", String::from_utf8_lossy(body));
        }
        assert!(parse_body::<Sample>(br#"{"name":"ok","size":null}"#).is_ok());
    }

    #[test]
    fn json_media_types() {
        let table = [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            (" application/json ;charset=UTF-8", true),
            ("application/vnd.api+json", true),
            ("application/problem+json", true),
            ("application/+json", false),
            ("application/jsonx", false),
            ("text/json", false),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
            ("", false),
        ];
        for (content_type, json) in table {
            assert_eq!(is_json_media_type(content_type), json, "{content_type:?}");
        }
    }

    #[test]
    fn key_hash_is_stable_hex() {
        assert_eq!(key_hash("sk_a"), key_hash("sk_a"));
        assert_eq!(key_hash("sk_a").len(), 64);
        assert_ne!(key_hash("sk_a"), key_hash("sk_b"));
    }
}
