//! Limit/offset pagination, as every list route answers it.

use serde_json::{json, Value};

use super::error::ApiError;

/// A checked page request: `limit` 1..=100 (default 20), `offset` ≥ 0 (default 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    pub const MAX_LIMIT: i64 = 100;

    pub fn parse(limit: Option<i64>, offset: Option<i64>) -> Result<Page, ApiError> {
        let limit = limit.unwrap_or(20);
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid(
                "value_error",
                &["body", "limit"],
                format!("limit must be between 1 and {}", Self::MAX_LIMIT),
            ));
        }
        let offset = offset.unwrap_or(0);
        if offset < 0 {
            return Err(ApiError::invalid(
                "greater_than_equal",
                &["body", "offset"],
                "offset must be 0 or more",
            ));
        }
        Ok(Page { limit, offset })
    }

    /// `{total, limit, offset, next_offset}`; `next_offset` is null on the last page.
    pub fn json(&self, total: i64) -> Value {
        let next = self.offset.saturating_add(self.limit);
        json!({
            "total": total,
            "limit": self.limit,
            "offset": self.offset,
            "next_offset": (next < total).then_some(next),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages() {
        assert_eq!(
            Page::parse(None, None).unwrap(),
            Page {
                limit: 20,
                offset: 0
            }
        );
        for (limit, offset) in [(Some(0), None), (Some(101), None), (None, Some(-1))] {
            assert!(Page::parse(limit, offset).is_err(), "{limit:?} {offset:?}");
        }
        let p = Page::parse(Some(10), Some(20)).unwrap();
        assert_eq!(p.json(31)["next_offset"], 30);
        assert_eq!(p.json(30)["next_offset"], Value::Null);
    }
}
