//! Admission: each request acting for an organization takes a token from the organization's
//! rate limit before its handler runs, whichever replica serves it.
//!
//! Every answer to such a request says where the organization stands:
//! - `X-RateLimit-Limit`: the requests it may make at once (its burst, whole);
//! - `X-RateLimit-Remaining`: those it may make right now (whole tokens left);
//! - `X-RateLimit-Reset`: seconds until its whole burst is available again (0: it is).
//!
//! A request that finds no whole token is refused with 429 `TooManyRequestsError` and
//! `Retry-After`: the seconds until one token is there (at least 1).

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::Caller;
use super::AppState;
use crate::store::rate_limits::{self, Bucket};

/// What the headers of one answer say, in whole requests and seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub limit: u64,
    pub remaining: u64,
    pub reset_seconds: u64,
    /// Seconds until one whole token is there: 0 when one is.
    pub next_token_seconds: u64,
}

impl Standing {
    pub fn of(bucket: &Bucket) -> Standing {
        let tokens = bucket.tokens.clamp(0.0, bucket.burst);
        let seconds = |missing: f64| {
            if missing <= 0.0 {
                0
            } else {
                // Less a hair, so that 0.9 / 0.1 is 9 s, not 10; saturating, so that a tiny
                // rate makes a long wait, never a wrapped one.
                (missing / bucket.rate_per_second - 1e-9).ceil() as u64
            }
        };
        Standing {
            limit: bucket.burst.floor() as u64,
            remaining: tokens.floor() as u64,
            reset_seconds: seconds(bucket.burst - tokens),
            next_token_seconds: seconds(1.0 - tokens),
        }
    }

    fn write(&self, headers: &mut HeaderMap) {
        for (name, value) in [
            ("x-ratelimit-limit", self.limit),
            ("x-ratelimit-remaining", self.remaining),
            ("x-ratelimit-reset", self.reset_seconds),
        ] {
            headers.insert(name, HeaderValue::from(value));
        }
    }

    fn refusal(&self, bucket: &Bucket) -> ApiError {
        let retry_after_seconds = self.next_token_seconds.max(1);
        ApiError::TooManyRequests {
            message: format!(
                "too many requests: this organization may make {} at once and {} a second; \
                 retry in {retry_after_seconds} s",
                self.limit, bucket.rate_per_second
            ),
            retry_after_seconds,
            limit: self.limit,
            reset_seconds: self.reset_seconds,
        }
    }
}

/// The middleware of every route that acts for an organization. A request whose key does not
/// resolve goes on unmetered: its handler refuses it as before, among its own checks. The
/// caller is handed to the handler, which looks the key up no more.
pub async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let caller = match Caller::from_request_parts(&mut parts, &state).await {
        Ok(caller) => caller,
        Err(ApiError::Unauthorized(_)) => return next.run(Request::from_parts(parts, body)).await,
        Err(err) => return err.into_response(),
    };
    let taken = rate_limits::take(
        &state.pool,
        &caller.organization_id,
        state.settings.rate_limit,
    )
    .await;
    let bucket = match taken {
        Ok(Some(bucket)) => bucket,
        Ok(None) => {
            parts.extensions.insert(caller);
            return next.run(Request::from_parts(parts, body)).await;
        }
        Err(err) => return ApiError::from(err).into_response(),
    };
    let standing = Standing::of(&bucket);
    let mut response = if bucket.admitted {
        parts.extensions.insert(caller);
        next.run(Request::from_parts(parts, body)).await
    } else {
        metrics::counter!(crate::service::metrics::RATE_LIMITED).increment(1);
        tracing::debug!(organization_id = %caller.organization_id, "rate limited");
        standing.refusal(&bucket).into_response()
    };
    standing.write(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(tokens: f64, rate_per_second: f64, burst: f64) -> Bucket {
        Bucket {
            admitted: true,
            tokens,
            rate_per_second,
            burst,
        }
    }

    #[test]
    fn headers_count_whole_requests_and_round_waits_up() {
        // Burst 3 at 1/s, just after the third request of a burst.
        let s = Standing::of(&bucket(0.02, 1.0, 3.0));
        assert_eq!(
            s,
            Standing {
                limit: 3,
                remaining: 0,
                reset_seconds: 3,
                next_token_seconds: 1,
            }
        );
        // Full.
        let s = Standing::of(&bucket(3.0, 1.0, 3.0));
        assert_eq!(
            (s.remaining, s.reset_seconds, s.next_token_seconds),
            (3, 0, 0)
        );
        // 2.5 of 10 at 0.5/s: 15 s to fill, the next token is there.
        let s = Standing::of(&bucket(2.5, 0.5, 10.0));
        assert_eq!(
            (s.limit, s.remaining, s.reset_seconds, s.next_token_seconds),
            (10, 2, 15, 0)
        );
        // 0.25 of 4 at 0.5/s: 1.5 s to the next token, rounded up.
        let s = Standing::of(&bucket(0.25, 0.5, 4.0));
        assert_eq!((s.reset_seconds, s.next_token_seconds), (8, 2));
        // A fractional burst counts whole requests.
        assert_eq!(Standing::of(&bucket(2.7, 1.0, 2.7)).limit, 2);
    }

    #[test]
    fn a_refusal_waits_at_least_a_second() {
        // A token just short of whole at a high rate: under a second away.
        let b = bucket(0.999, 1000.0, 2000.0);
        let s = Standing::of(&b);
        assert_eq!(s.next_token_seconds, 1);
        let ApiError::TooManyRequests {
            retry_after_seconds,
            limit,
            reset_seconds,
            ..
        } = s.refusal(&b)
        else {
            panic!("a refusal")
        };
        assert_eq!((retry_after_seconds, limit, reset_seconds), (1, 2000, 2));
        // A slow rate: 0.1 token at one every 10 s is 9 s away.
        let b = bucket(0.1, 0.1, 1.0);
        let ApiError::TooManyRequests {
            retry_after_seconds,
            ..
        } = Standing::of(&b).refusal(&b)
        else {
            panic!("a refusal")
        };
        assert_eq!(retry_after_seconds, 9);
    }

    #[test]
    fn tokens_out_of_range_are_read_within_it() {
        // Above the burst (the burst was lowered) or below zero never shows as such.
        let s = Standing::of(&bucket(50.0, 1.0, 3.0));
        assert_eq!((s.remaining, s.reset_seconds), (3, 0));
        let s = Standing::of(&bucket(-1.0, 1.0, 3.0));
        assert_eq!((s.remaining, s.next_token_seconds), (0, 1));
    }
}
