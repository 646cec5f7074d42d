//! The one error envelope every route answers with.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};

use crate::domain::{Failure, QuotaExceeded};

/// One problem with a request body or query, as the envelope lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ValidationIssue {
    #[serde(rename = "type")]
    pub kind: String,
    pub location: Vec<String>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted: Option<Vec<String>>,
}

impl ValidationIssue {
    pub fn new(kind: &str, location: &[&str], message: impl Into<String>) -> Self {
        ValidationIssue {
            kind: kind.to_owned(),
            location: location.iter().map(|s| (*s).to_owned()).collect(),
            message: message.into(),
            accepted: None,
        }
    }
}

/// The envelope every error answers with (for the OpenAPI document).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    /// Always false.
    pub success: bool,
    /// The HTTP status, repeated.
    pub status: u16,
    pub error: ErrorBody,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// `BadRequestError`, `UnauthorizedError`, `NotFoundError`, `ValidationError`, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    /// `reason`/`expected`/`actual` for verification failures, `validation_errors` for 422,
    /// `resource`/`current`/`limit` for quotas, `retry_after_seconds`/`limit`/`reset_seconds`
    /// for 429.
    #[schema(value_type = Object)]
    pub details: Value,
}

/// The refusals every route acting in a namespace may answer (for the OpenAPI document).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum NamespaceRefusals {
    /// No namespace named, or the resource's state refuses the request.
    #[response(status = 400)]
    BadRequest(ErrorEnvelope),
    /// Missing, unknown or revoked API key.
    #[response(status = 401)]
    Unauthorized(ErrorEnvelope),
    /// Unknown namespace, bucket or resource.
    #[response(status = 404)]
    NotFound(ErrorEnvelope),
    // Every route that acts for an organization may answer it: `api::routes` adds it to the
    // routes that do not list these refusals.
    /// The organization's request rate limit is spent for now; or, for an async or batch
    /// confirm, the namespace has NAMESPACE_BACKLOG_CAP confirmations waiting
    /// (`details.reason: namespace_backlog_full`, with `Retry-After` only).
    #[response(status = 429, headers(
        ("Retry-After" = u64, description = "Seconds until a request can pass (at least 1)"),
        ("X-RateLimit-Limit" = u64, description = "Requests the organization may make at once (its burst)"),
        ("X-RateLimit-Remaining" = u64, description = "Requests it may make now: 0"),
        ("X-RateLimit-Reset" = u64, description = "Seconds until its whole burst is available again")
    ))]
    TooManyRequests(ErrorEnvelope),
}

/// The refusals of a route that reads a JSON body (for the OpenAPI document).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum BodyRefusals {
    /// The body is larger than MAX_BODY_BYTES.
    #[response(status = 413)]
    TooLarge(ErrorEnvelope),
    /// The body is not sent as JSON.
    #[response(status = 415)]
    NotJson(ErrorEnvelope),
    /// The body or the query is invalid; `details.validation_errors` says where.
    #[response(status = 422)]
    Invalid(ErrorEnvelope),
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { message: String, details: Value },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    /// Several things named in the request do not exist; `details` lists them.
    #[error("{message}")]
    Missing { message: String, details: Value },
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{message}")]
    QuotaExceeded {
        message: String,
        resource: String,
        current: i64,
        limit: i64,
    },
    #[error("request validation failed")]
    Validation(Vec<ValidationIssue>),
    /// The organization's request rate limit is spent for now.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        /// Whole seconds until a request can pass, at least 1.
        retry_after_seconds: u64,
        /// The burst: requests the organization may make at once.
        limit: u64,
        /// Whole seconds until the whole burst is available again.
        reset_seconds: u64,
    },
    /// A namespace has as many bulk confirmations waiting as it may.
    #[error("{message}")]
    BacklogFull {
        message: String,
        waiting: i64,
        cap: i64,
        retry_after_seconds: u64,
    },
    #[error("request body too large")]
    PayloadTooLarge,
    /// A body that does not say it is JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("service unavailable")]
    Unavailable(String),
    /// The service gave up on a confirmation's job.
    #[error("{0}")]
    GivenUp(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
    /// An error recorded earlier (a failed task), replayed as it was stored.
    #[error("{message}")]
    Stored {
        status: StatusCode,
        kind: String,
        message: String,
        details: Value,
    },
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            details: json!({}),
        }
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    pub fn invalid(kind: &str, location: &[&str], message: impl Into<String>) -> Self {
        ApiError::Validation(vec![ValidationIssue::new(kind, location, message)])
    }

    /// Validation issues of a nested object, placed under `path` (after `body`/`query`).
    pub fn nested(self, path: &[&str]) -> Self {
        match self {
            ApiError::Validation(issues) => ApiError::Validation(
                issues
                    .into_iter()
                    .map(|mut issue| {
                        let at = 1.min(issue.location.len());
                        issue
                            .location
                            .splice(at..at, path.iter().map(|p| (*p).to_owned()));
                        issue
                    })
                    .collect(),
            ),
            other => other,
        }
    }

    /// The same error about item `index` of the body's list `list`: validation issues are
    /// relocated under it, and every message names it.
    pub fn at_item(self, list: &str, index: usize) -> Self {
        let prefix = format!("{list}[{index}]");
        match self.nested(&[list, &index.to_string()]) {
            ApiError::Validation(issues) => ApiError::Validation(
                issues
                    .into_iter()
                    .map(|mut issue| {
                        issue.message = format!("{prefix}: {}", issue.message);
                        issue
                    })
                    .collect(),
            ),
            ApiError::QuotaExceeded {
                message,
                resource,
                current,
                limit,
            } => ApiError::QuotaExceeded {
                message: format!("{prefix}: {message}"),
                resource,
                current,
                limit,
            },
            ApiError::BadRequest { message, details } => ApiError::BadRequest {
                message: format!("{prefix}: {message}"),
                details,
            },
            other => other,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) | ApiError::Missing { .. } => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists(_) => StatusCode::CONFLICT,
            ApiError::QuotaExceeded { .. } => StatusCode::FORBIDDEN,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } | ApiError::BacklogFull { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) | ApiError::GivenUp(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Stored { status, .. } => *status,
        }
    }

    fn kind(&self) -> &str {
        match self {
            ApiError::BadRequest { .. } => "BadRequestError",
            ApiError::Unauthorized(_) => "UnauthorizedError",
            ApiError::NotFound(_) | ApiError::Missing { .. } => "NotFoundError",
            ApiError::AlreadyExists(_) => "AlreadyExistsError",
            ApiError::QuotaExceeded { .. } => "QuotaExceededError",
            ApiError::Validation(_) => "ValidationError",
            ApiError::TooManyRequests { .. } | ApiError::BacklogFull { .. } => {
                "TooManyRequestsError"
            }
            ApiError::PayloadTooLarge => "PayloadTooLargeError",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaTypeError",
            ApiError::MethodNotAllowed => "MethodNotAllowedError",
            ApiError::Unavailable(_) | ApiError::GivenUp(_) => "ServiceUnavailableError",
            ApiError::Internal(_) => "InternalServerError",
            ApiError::Stored { kind, .. } => kind,
        }
    }

    fn details(&self) -> Value {
        match self {
            ApiError::BadRequest { details, .. }
            | ApiError::Stored { details, .. }
            | ApiError::Missing { details, .. } => details.clone(),
            ApiError::QuotaExceeded {
                resource,
                current,
                limit,
                ..
            } => json!({ "resource": resource, "current": current, "limit": limit }),
            ApiError::GivenUp(_) => json!({ "reason": "dead_lettered" }),
            ApiError::Validation(issues) => json!({ "validation_errors": issues }),
            // `retryable` and `retry_after_seconds` are what the SDK's client reads.
            ApiError::TooManyRequests {
                retry_after_seconds,
                limit,
                reset_seconds,
                ..
            } => json!({
                "retryable": true,
                "retry_after_seconds": retry_after_seconds,
                "limit": limit,
                "remaining": 0,
                "reset_seconds": reset_seconds,
            }),
            ApiError::BacklogFull {
                waiting,
                cap,
                retry_after_seconds,
                ..
            } => json!({
                "reason": "namespace_backlog_full",
                "retryable": true,
                "retry_after_seconds": retry_after_seconds,
                "waiting": waiting,
                "cap": cap,
            }),
            _ => json!({}),
        }
    }

    /// The `error` object of the envelope, also what a failed task stores in its outputs.
    pub fn body(&self) -> Value {
        serde_json::to_value(self.error_body()).unwrap_or_default()
    }

    fn error_body(&self) -> ErrorBody {
        ErrorBody {
            kind: self.kind().to_owned(),
            message: self.to_string(),
            details: self.details(),
        }
    }

    /// Rebuilds an error stored by [`ApiError::body`] with its status.
    pub fn from_stored(status: u16, body: &Value) -> Self {
        let text = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or_default();
        ApiError::Stored {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            kind: text("type").to_owned(),
            message: text("message").to_owned(),
            details: body.get("details").cloned().unwrap_or_else(|| json!({})),
        }
    }
}

impl From<QuotaExceeded> for ApiError {
    fn from(quota: QuotaExceeded) -> Self {
        ApiError::QuotaExceeded {
            message: quota.message,
            resource: quota.resource.to_owned(),
            current: quota.current,
            limit: quota.limit,
        }
    }
}

/// The one place a confirmation's domain failure becomes an HTTP answer.
impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        let message = failure.to_string();
        match failure {
            Failure::Mismatch {
                reason,
                expected,
                actual,
                ..
            } => ApiError::BadRequest {
                message,
                details: json!({ "reason": reason, "expected": expected, "actual": actual }),
            },
            Failure::StorageRejected(_) => ApiError::BadRequest {
                message,
                details: json!({ "reason": failure.reason() }),
            },
            Failure::Quota(quota) => quota.into(),
            Failure::Gone(_) => ApiError::NotFound(message),
            Failure::Refused(_) => ApiError::bad_request(message),
            Failure::GivenUp(_) => ApiError::GivenUp(message),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::warn!(error = %err, "database unavailable");
                ApiError::Unavailable("database unavailable, retry later".to_owned())
            }
            // Connection exceptions (08xxx) and an operator or a restart ending the
            // session (57P01..57P03): the request did not fail, the database went away.
            sqlx::Error::Database(ref e)
                if e.code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P0")) =>
            {
                tracing::warn!(error = %err, "database session lost");
                ApiError::Unavailable("database unavailable, retry later".to_owned())
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(err) = &self {
            tracing::error!(error = ?err, "request failed");
        }
        let body = ErrorEnvelope {
            success: false,
            status: status.as_u16(),
            error: self.error_body(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::TooManyRequests {
            retry_after_seconds,
            ..
        }
        | ApiError::BacklogFull {
            retry_after_seconds,
            ..
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_never_leaks_internal_details() {
        let err = ApiError::Internal(anyhow::anyhow!("password=hunter2 in SELECT"));
        let body = err.body();
        assert_eq!(body["type"], "InternalServerError");
        assert!(!body.to_string().contains("hunter2"));
    }

    #[test]
    fn stored_errors_round_trip() {
        let original = ApiError::BadRequest {
            message: "ETag mismatch".into(),
            details: json!({"reason": "etag_mismatch", "expected": "a", "actual": "b"}),
        };
        let replayed = ApiError::from_stored(400, &original.body());
        assert_eq!(replayed.status(), StatusCode::BAD_REQUEST);
        assert_eq!(replayed.body(), original.body());
    }

    #[test]
    fn item_errors_name_their_index() {
        let err =
            ApiError::invalid("value_error", &["body", "filename"], "bad").at_item("uploads", 7);
        let ApiError::Validation(issues) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(issues[0].location, ["body", "uploads", "7", "filename"]);
        assert!(issues[0].message.starts_with("uploads[7]: "));
    }

    #[test]
    fn too_many_requests_says_when_to_retry() {
        let err = ApiError::TooManyRequests {
            message: "slow down".into(),
            retry_after_seconds: 7,
            limit: 3,
            reset_seconds: 9,
        };
        let body = err.body();
        assert_eq!(body["details"]["retryable"], true);
        assert_eq!(body["details"]["retry_after_seconds"], 7);
        assert_eq!(body["details"]["limit"], 3);
        assert_eq!(body["details"]["remaining"], 0);
        assert_eq!(body["details"]["reset_seconds"], 9);
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }

    #[test]
    fn statuses_and_types() {
        let table = [
            (ApiError::Unauthorized("x".into()), 401, "UnauthorizedError"),
            (ApiError::not_found("bucket"), 404, "NotFoundError"),
            (
                ApiError::AlreadyExists("x".into()),
                409,
                "AlreadyExistsError",
            ),
            (ApiError::PayloadTooLarge, 413, "PayloadTooLargeError"),
            (
                ApiError::UnsupportedMediaType("x".into()),
                415,
                "UnsupportedMediaTypeError",
            ),
            (
                ApiError::invalid("missing", &["body"], "x"),
                422,
                "ValidationError",
            ),
            (
                ApiError::TooManyRequests {
                    message: "x".into(),
                    retry_after_seconds: 2,
                    limit: 3,
                    reset_seconds: 3,
                },
                429,
                "TooManyRequestsError",
            ),
        ];
        for (err, status, kind) in table {
            assert_eq!(err.status().as_u16(), status);
            assert_eq!(err.body()["type"], kind);
        }
    }
}
