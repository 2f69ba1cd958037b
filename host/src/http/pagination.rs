//! Page-number pagination shared by the list endpoints: `?page=1&perPage=20`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Largest page size a client may ask for.
pub const MAX_PER_PAGE: u32 = 100;

/// Query parameters of a paginated list.
#[derive(Debug, Clone, Copy, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-based page number (default 1).
    pub page: Option<u32>,
    /// Items per page (default 20, at most 100).
    pub per_page: Option<u32>,
}

impl PageQuery {
    /// The page number, at least 1.
    pub fn page(&self) -> u32 {
        self.page.unwrap_or(1).max(1)
    }

    /// The page size, between 1 and [`MAX_PER_PAGE`].
    pub fn per_page(&self) -> u32 {
        self.per_page.unwrap_or(20).clamp(1, MAX_PER_PAGE)
    }

    /// SQL `limit`.
    pub fn limit(&self) -> i64 {
        i64::from(self.per_page())
    }

    /// SQL `offset`.
    pub fn offset(&self) -> i64 {
        i64::from(self.page() - 1) * i64::from(self.per_page())
    }
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// This page's number.
    pub page: u32,
    /// Page size.
    pub per_page: u32,
    /// Items in the whole list.
    pub total: i64,
}

impl<T> Page<T> {
    /// A page built from a query and its results.
    pub fn new(query: PageQuery, items: Vec<T>, total: i64) -> Self {
        Self {
            items,
            page: query.page(),
            per_page: query.per_page(),
            total,
        }
    }
}
