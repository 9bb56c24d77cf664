//! The `limit` and `cursor` query parameters every paged list shares (`GET /v1/deliveries`,
//! `GET /v1/events`): the same defaults, bounds and error answers.

use std::str::FromStr;

use crate::error::ApiError;

/// Page size when `limit` is absent.
pub(crate) const DEFAULT_PAGE: usize = 100;
/// Largest accepted `limit`.
pub(crate) const MAX_PAGE: usize = 1000;

/// A query value, with an empty one (`?limit=`) read as absent.
pub(crate) fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// `limit`: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when absent.
pub(crate) fn limit(raw: &Option<String>) -> Result<usize, ApiError> {
    match non_empty(raw) {
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit must be a number from 1 to {MAX_PAGE}"))
            }),
        None => Ok(DEFAULT_PAGE),
    }
}

/// `cursor`: the id to continue after, as the list's `next_cursor` gave it.
pub(crate) fn cursor<T: FromStr>(raw: &Option<String>) -> Result<Option<T>, ApiError> {
    non_empty(raw)
        .map(|c| {
            c.parse::<T>()
                .map_err(|_| ApiError::bad_request(format!("invalid cursor {c:?}")))
        })
        .transpose()
}
