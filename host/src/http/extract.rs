//! Extractors whose rejections are our error envelope instead of axum's plain text.

use axum::{
    extract::{FromRequest, FromRequestParts},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::error::ApiError;

/// A JSON body. Malformed JSON → 400 `MALFORMED_JSON`, wrong content type → 415,
/// wrong shape (unknown, missing or mistyped fields) → 422 `INVALID_BODY`, too big → 413.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters; a bad one → 400 `INVALID_PATH`.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters; a bad one → 400 `INVALID_QUERY`.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);
