//! Pagination, as every list route takes and answers it: `limit`/`offset` or
//! `page_size`/`page`, in the body or the query (the SDK sends them in the query).

use serde::{Deserialize, Serialize};

use super::error::ApiError;

/// The paging parameters the SDK's list methods send in the query string. `cursor`,
/// `next_cursor`, `after` and `include_total` are accepted and ignored: lists page by
/// offset, and the total is always counted.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page (also `page_size`).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    #[param(minimum = 1, maximum = 1000)]
    pub page_size: Option<i64>,
    /// Items to skip (or `page`).
    #[param(minimum = 0)]
    pub offset: Option<i64>,
    /// 1-based page number, used when `offset` is absent.
    #[param(minimum = 1)]
    pub page: Option<i64>,
    /// Accepted and ignored: lists page by offset.
    pub cursor: Option<String>,
    /// Accepted and ignored.
    pub next_cursor: Option<String>,
    /// Accepted and ignored.
    pub after: Option<String>,
    /// Accepted and ignored: the total is always given.
    pub include_total: Option<bool>,
}

/// What a body may say about paging; the body wins over the query.
#[derive(Debug, Default, Clone, Copy)]
pub struct PageAsk {
    pub limit: Option<i64>,
    pub page_size: Option<i64>,
    pub offset: Option<i64>,
    pub page: Option<i64>,
}

impl PageAsk {
    /// A body that pages by `limit` and `offset` only.
    pub fn limit_offset(limit: Option<i64>, offset: Option<i64>) -> Self {
        PageAsk {
            limit,
            offset,
            ..PageAsk::default()
        }
    }
}

/// A checked page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

/// The `pagination` object of every list answer: the SDK's `PaginationResponse` fields,
/// and `limit`/`offset`/`next_offset` for offset paging.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Pagination {
    pub total: i64,
    /// 1-based number of this page.
    pub page: i64,
    pub page_size: i64,
    pub total_pages: i64,
    pub next_page: Option<String>,
    pub previous_page: Option<String>,
    pub next_cursor: Option<String>,
    pub limit: i64,
    pub offset: i64,
    /// The offset of the next page; null on the last page.
    pub next_offset: Option<i64>,
}

fn out_of_range(field: &str, message: String) -> ApiError {
    ApiError::invalid("value_error", &["body", field], message)
}

impl Page {
    pub const DEFAULT_LIMIT: i64 = 20;

    /// `body` first, then `query`; `max` is the largest page the route serves. Every value
    /// given is checked, also one that another overrides.
    pub fn resolve(body: PageAsk, query: &PageQuery, max: i64) -> Result<Page, ApiError> {
        Self::resolve_or(body, query, max, Self::DEFAULT_LIMIT)
    }

    /// Like [`Page::resolve`], with `default` items when neither body nor query sets a limit.
    pub fn resolve_or(
        body: PageAsk,
        query: &PageQuery,
        max: i64,
        default: i64,
    ) -> Result<Page, ApiError> {
        for (field, value) in [
            ("limit", body.limit),
            ("page_size", body.page_size),
            ("limit", query.limit),
            ("page_size", query.page_size),
        ] {
            if value.is_some_and(|v| !(1..=max).contains(&v)) {
                return Err(out_of_range(
                    field,
                    format!("{field} must be between 1 and {max}"),
                ));
            }
        }
        for (field, value, least) in [
            ("offset", body.offset, 0),
            ("page", body.page, 1),
            ("offset", query.offset, 0),
            ("page", query.page, 1),
        ] {
            if value.is_some_and(|v| v < least) {
                return Err(out_of_range(
                    field,
                    format!("{field} must be {least} or more"),
                ));
            }
        }
        let limit = body
            .limit
            .or(body.page_size)
            .or(query.limit)
            .or(query.page_size)
            .unwrap_or(default);
        let offset = match (body.offset.or(query.offset), body.page.or(query.page)) {
            (Some(offset), _) => offset,
            (None, Some(page)) => (page - 1).saturating_mul(limit),
            (None, None) => 0,
        };
        Ok(Page { limit, offset })
    }

    pub fn pagination(&self, total: i64) -> Pagination {
        let next = self.offset.saturating_add(self.limit);
        Pagination {
            total,
            page: (self.offset / self.limit).saturating_add(1),
            page_size: self.limit,
            total_pages: total.saturating_add(self.limit - 1) / self.limit,
            next_page: None,
            previous_page: None,
            next_cursor: None,
            limit: self.limit,
            offset: self.offset,
            next_offset: (next < total).then_some(next),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(limit: Option<i64>, offset: Option<i64>, max: i64) -> Result<Page, ApiError> {
        let body = PageAsk {
            limit,
            offset,
            ..PageAsk::default()
        };
        Page::resolve(body, &PageQuery::default(), max)
    }

    #[test]
    fn pages() {
        assert_eq!(
            parse(None, None, 100).unwrap(),
            Page {
                limit: 20,
                offset: 0
            }
        );
        for (limit, offset) in [(Some(0), None), (Some(101), None), (None, Some(-1))] {
            assert!(parse(limit, offset, 100).is_err(), "{limit:?} {offset:?}");
        }
        let p = parse(Some(10), Some(20), 100).unwrap();
        assert_eq!(p.pagination(31).next_offset, Some(30));
        assert_eq!(p.pagination(31).page, 3);
        assert_eq!(p.pagination(31).total_pages, 4);
        assert_eq!(p.pagination(30).next_offset, None);
        assert_eq!(p.pagination(0).total_pages, 0);
        let far = parse(Some(1), Some(i64::MAX), 100).unwrap();
        assert_eq!(far.pagination(3).page, i64::MAX);
        assert_eq!(far.pagination(3).next_offset, None);
    }

    #[test]
    fn query_and_page_numbers() {
        let query = PageQuery {
            page_size: Some(5),
            page: Some(3),
            ..PageQuery::default()
        };
        assert_eq!(
            Page::resolve(PageAsk::default(), &query, 100).unwrap(),
            Page {
                limit: 5,
                offset: 10
            }
        );
        let body = PageAsk {
            limit: Some(7),
            offset: Some(1),
            ..PageAsk::default()
        };
        assert_eq!(
            Page::resolve(body, &query, 100).unwrap(),
            Page {
                limit: 7,
                offset: 1
            }
        );
        let hidden = PageAsk {
            limit: Some(1),
            page_size: Some(0),
            ..PageAsk::default()
        };
        assert!(
            Page::resolve(hidden, &PageQuery::default(), 100).is_err(),
            "a value another overrides is still checked"
        );
        // A route's own default applies only when nothing sets a limit.
        let none = PageQuery::default();
        assert_eq!(
            Page::resolve_or(PageAsk::default(), &none, 1000, 100)
                .unwrap()
                .limit,
            100
        );
        assert_eq!(
            Page::resolve_or(PageAsk::default(), &query, 1000, 100)
                .unwrap()
                .limit,
            5
        );
        assert_eq!(
            Page::resolve_or(PageAsk::limit_offset(Some(7), None), &none, 1000, 100)
                .unwrap()
                .limit,
            7
        );
        let zero_page = PageQuery {
            page: Some(0),
            ..PageQuery::default()
        };
        assert!(Page::resolve(PageAsk::default(), &zero_page, 100).is_err());
        let big = PageQuery {
            limit: Some(1000),
            ..PageQuery::default()
        };
        assert!(Page::resolve(PageAsk::default(), &big, 1000).is_ok());
        assert!(Page::resolve(PageAsk::default(), &big, 100).is_err());
    }
}
