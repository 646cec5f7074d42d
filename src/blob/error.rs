//! [`BlobError`], and how the SDK's errors map onto it: missing, refused for good, or worth
//! retrying.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// HeadObject/GetObject 404 / NoSuchKey.
    #[error("object not found")]
    NotFound,
    /// The store refused the request (a 4xx other than throttling or a timeout): asking
    /// again gets the same answer.
    #[error("object store refused the request: {0}")]
    Rejected(String),
    /// A conditional copy found its source changed or gone since it was verified.
    #[error("object changed: {0}")]
    Changed(String),
    /// Anything worth retrying: 5xx, throttling, timeouts, connection trouble.
    #[error("object store unavailable: {0}")]
    Transient(String),
}

pub(super) fn http_status<E>(err: &SdkError<E>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// Maps 404/NoSuchKey to `NotFound`; a missing bucket is a misconfiguration and stays transient.
pub(super) fn not_found_or_transient<E>(err: &SdkError<E>) -> BlobError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    not_found_or_failure(err, &["NoSuchKey", "NotFound"])
}

/// `NotFound` for a 404 or one of the `missing` error codes; a missing bucket stays
/// transient, and the rest is mapped as any other answer of the store.
pub(super) fn not_found_or_failure<E>(err: &SdkError<E>, missing: &[&str]) -> BlobError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match (err.code(), http_status(err)) {
        (Some("NoSuchBucket"), _) => transient(err),
        (Some(code), _) if missing.contains(&code) => BlobError::NotFound,
        (_, Some(404)) => BlobError::NotFound,
        _ => failure(err),
    }
}

/// 4xx error codes that a later attempt may not get: throttling, timeouts, a conflicting
/// operation in flight, credentials or a clock that fix themselves.
const RETRYABLE_4XX_CODES: [&str; 7] = [
    "RequestTimeout",
    "SlowDown",
    "Throttling",
    "OperationAborted",
    "RequestTimeTooSkewed",
    "ExpiredToken",
    "TokenRefreshRequired",
];

/// Whether an answer of the store is final: a 4xx other than a timeout (408), a conflict
/// (409), throttling (429) or one of [`RETRYABLE_4XX_CODES`]. A missing bucket stays
/// retryable: it is the operator's to fix, not the request's.
fn is_refusal(status: u16, code: Option<&str>) -> bool {
    (400..500).contains(&status)
        && !matches!(status, 408 | 409 | 429)
        && !code.is_some_and(|c| c == "NoSuchBucket" || RETRYABLE_4XX_CODES.contains(&c))
}

/// `Rejected` for a final refusal of the store, else `Transient`.
pub(super) fn failure<E>(err: &SdkError<E>) -> BlobError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match http_status(err) {
        Some(status) if is_refusal(status, err.code()) => BlobError::Rejected(describe(err)),
        _ => transient(err),
    }
}

pub(super) fn transient<E>(err: &SdkError<E>) -> BlobError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    BlobError::Transient(describe(err))
}

/// An SDK error as one line: `HTTP 403 AccessDenied: message`, or the error chain.
fn describe<E>(err: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match (http_status(err), err.code()) {
        // The SDK's own rendering of service errors embeds the whole raw response.
        (Some(status), code) => format!(
            "HTTP {status} {}{}",
            code.unwrap_or("(no error code)"),
            err.message().map(|m| format!(": {m}")).unwrap_or_default()
        ),
        (None, _) => error_chain(err),
    }
}

/// `outer: cause: root cause`, without the Debug dumps `DisplayErrorContext` appends.
pub(super) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn refusals_are_the_final_4xx_answers() {
        let table = [
            (400, Some("KeyTooLongError"), true),
            (400, None, true),
            (403, Some("AccessDenied"), true),
            (403, None, true),
            (400, Some("RequestTimeout"), false),
            (400, Some("ExpiredToken"), false),
            (403, Some("RequestTimeTooSkewed"), false),
            (404, Some("NoSuchBucket"), false),
            (408, None, false),
            (409, Some("OperationAborted"), false),
            (429, None, false),
            (500, Some("InternalError"), false),
            (503, Some("SlowDown"), false),
        ];
        for (status, code, refusal) in table {
            assert_eq!(
                super::is_refusal(status, code),
                refusal,
                "{status} {code:?}"
            );
        }
    }
}
