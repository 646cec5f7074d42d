//! Per-organization request rate limits: a token bucket each, held in PostgreSQL so that
//! every API replica takes from the same one.

use sqlx::PgPool;

/// A limit: `per_second` tokens flow into a bucket that holds at most `burst`; each request
/// takes one. Zero in either means no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub per_second: f64,
    pub burst: f64,
}

impl Limit {
    pub fn is_unlimited(&self) -> bool {
        self.per_second <= 0.0 || self.burst <= 0.0
    }
}

/// Why a rate or a burst cannot be a limit, if it cannot.
pub fn check_rate(per_second: f64) -> Result<f64, String> {
    if !per_second.is_finite() || per_second < 0.0 {
        return Err(format!(
            "a rate is a finite number of requests a second, 0 or more (0: no limit), not {per_second}"
        ));
    }
    Ok(per_second)
}

/// Why a burst cannot be one: it is 0 (no limit) or at least one request, or none would pass.
pub fn check_burst(burst: f64) -> Result<f64, String> {
    if !burst.is_finite() || !(burst == 0.0 || burst >= 1.0) {
        return Err(format!(
            "a burst is a finite number of requests, 0 (no limit) or at least 1, not {burst}"
        ));
    }
    Ok(burst)
}

/// An organization's bucket as one request left it.
#[derive(Debug, Clone, Copy, PartialEq, sqlx::FromRow)]
pub struct Bucket {
    /// Whether the request took a token and may go on.
    pub admitted: bool,
    /// Tokens left after it, fractional.
    pub tokens: f64,
    pub rate_per_second: f64,
    pub burst: f64,
}

/// Refills the organization's bucket for the time since its last request and takes one token
/// when a whole one is there, in one statement: the row lock orders concurrent requests from
/// any number of replicas, and the database's clock is the only one read. `default` applies
/// unless the organization has its own limit. `None`: no limit applies, and nothing is written.
pub async fn take(
    pool: &PgPool,
    organization_id: &str,
    default: Limit,
) -> sqlx::Result<Option<Bucket>> {
    // The insert covers an organization's first request (the bucket starts full, less this
    // request's token); the conflict arm refills and takes. A request that finds less than a
    // whole token takes none, and its refill is kept. Statements that started earlier may
    // commit later: time never runs backwards for the bucket.
    sqlx::query_as(
        "WITH configured AS (
            SELECT coalesce(r.rate_per_second, $2) AS rate, coalesce(r.burst, $3) AS burst
            FROM (VALUES (1)) AS one (x)
            LEFT JOIN rate_limits r ON r.organization_id = $1
         )
         INSERT INTO rate_limits AS b (organization_id, tokens, refreshed_at, admitted)
         SELECT $1, c.burst - 1, now(), true FROM configured c WHERE c.rate > 0 AND c.burst > 0
         ON CONFLICT (organization_id) DO UPDATE SET (tokens, refreshed_at, admitted) = (
            SELECT CASE WHEN s.open THEN b.tokens
                        WHEN s.refilled >= 1 THEN s.refilled - 1
                        ELSE s.refilled END,
                   greatest(b.refreshed_at, now()),
                   s.open OR s.refilled >= 1
            FROM (SELECT coalesce(b.rate_per_second, $2) AS rate,
                         coalesce(b.burst, $3) AS burst) l,
                 LATERAL (SELECT l.rate <= 0 OR l.burst <= 0 AS open,
                                 least(l.burst, coalesce(b.tokens, l.burst) + l.rate
                                     * greatest(0, extract(epoch FROM now() - b.refreshed_at)::float8))
                                     AS refilled) s
         )
         RETURNING b.admitted, b.tokens,
            coalesce(b.rate_per_second, $2) AS rate_per_second,
            coalesce(b.burst, $3) AS burst",
    )
    .bind(organization_id)
    .bind(default.per_second)
    .bind(default.burst)
    .fetch_optional(pool)
    .await
    // An organization whose own limit was lifted between the statement's read and its lock.
    .map(|bucket: Option<Bucket>| bucket.filter(|b| b.rate_per_second > 0.0 && b.burst > 0.0))
}

/// Sets the organization's own limit (`None`: back to the service default). Its bucket keeps
/// its tokens, at most the new burst. False when there is no such organization.
pub async fn set(pool: &PgPool, organization_id: &str, limit: Option<Limit>) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO rate_limits (organization_id, rate_per_second, burst)
         SELECT id, $2, $3 FROM organizations WHERE id = $1
         ON CONFLICT (organization_id) DO UPDATE
            SET rate_per_second = excluded.rate_per_second, burst = excluded.burst",
    )
    .bind(organization_id)
    .bind(limit.map(|l| l.per_second))
    .bind(limit.map(|l| l.burst))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The organization's own limit, if it has one.
pub async fn get(pool: &PgPool, organization_id: &str) -> sqlx::Result<Option<Limit>> {
    let row: Option<(Option<f64>, Option<f64>)> =
        sqlx::query_as("SELECT rate_per_second, burst FROM rate_limits WHERE organization_id = $1")
            .bind(organization_id)
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(|(rate, burst)| {
        Some(Limit {
            per_second: rate?,
            burst: burst?,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_bursts_are_checked() {
        assert_eq!(check_rate(0.0), Ok(0.0));
        assert_eq!(check_rate(0.5), Ok(0.5));
        assert!(check_rate(-1.0).is_err());
        assert!(check_rate(f64::NAN).is_err());
        assert!(check_rate(f64::INFINITY).is_err());
        assert_eq!(check_burst(0.0), Ok(0.0));
        assert_eq!(check_burst(1.0), Ok(1.0));
        assert_eq!(check_burst(2.5), Ok(2.5));
        assert!(check_burst(0.5).is_err());
        assert!(check_burst(-3.0).is_err());
        assert!(check_burst(f64::NAN).is_err());
    }

    #[test]
    fn zero_in_either_means_no_limit() {
        let limit = |per_second, burst| Limit { per_second, burst };
        assert!(limit(0.0, 10.0).is_unlimited());
        assert!(limit(10.0, 0.0).is_unlimited());
        assert!(!limit(0.1, 1.0).is_unlimited());
    }
}
