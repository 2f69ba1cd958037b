//! The edge: what every request must satisfy before a handler sees it.
//!
//! - A client's `X-Request-Id` is kept only when it is 1–128 characters of
//!   `A-Z a-z 0-9 - _ . :` (UUIDs, ULIDs, trace ids); anything else is replaced by a fresh
//!   id, so the id support reads in a log line is one it can trust and search for.
//! - Decoded paths and query values holding a control character (see [`crate::text`])
//!   are refused: 400 `INVALID_PATH` / `INVALID_QUERY`.
//! - The body is read here, before the handler's timeout starts: an announced
//!   `Content-Length` above the limit is 413 at once (nothing is read), a body that grows
//!   past the limit is 413, and a body that does not arrive within the request timeout is
//!   408 `BODY_TIMEOUT` — the client's fault, so no `Retry-After` and no ERROR log line.
//! - One route reads bigger bodies: `POST /admin/components` (component uploads) is read
//!   under `ORDERHOST_COMPONENT_MAX_BYTES` (default 1 MiB) instead of the global
//!   `ORDERHOST_BODY_LIMIT_BYTES` (64 KiB), and a bigger upload is the registry's 422
//!   `TOO_LARGE`, not 413. Requests that change a binding (`PUT`/`PATCH
//!   /admin/tenants/{tenant}/bindings/{hook}`) are read under
//!   `registry::bindings::MAX_BINDING_BODY_BYTES` (576 KiB): a config may hold a JSON
//!   price list of up to 256 KiB. Every other route keeps the small limit.

use axum::{
    body::{Body, HttpBody as _},
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use super::error::{ApiError, payload_too_large};
use crate::{state::AppState, text};

/// Longest client-chosen request id kept.
const MAX_REQUEST_ID: usize = 128;

/// Whether a client's request id may be kept as is.
pub fn acceptable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=MAX_REQUEST_ID).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Drops a request id the service will not echo; the request-id layer then makes one.
pub fn sanitize_request_id(mut request: Request) -> Request {
    if request
        .headers()
        .get("x-request-id")
        .is_some_and(|v| !acceptable_request_id(v))
    {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// Refuses control characters in the path and query, then reads the body under the
/// limit and the deadline (see the module header).
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Err(error) = check_uri(request.uri()) {
        return error.into_response();
    }
    let upload =
        request.method() == Method::POST && request.uri().path() == crate::registry::UPLOAD_PATH;
    let limit = if upload {
        state.config.component_max_bytes
    } else if crate::registry::bindings::changes_a_binding(request.method(), request.uri().path()) {
        crate::registry::bindings::MAX_BINDING_BODY_BYTES.max(state.config.body_limit_bytes)
    } else {
        state.config.body_limit_bytes
    };
    let too_large = |size: u64| {
        if upload {
            ApiError::from(crate::registry::RegistryError::TooLarge {
                size,
                max: limit as u64,
            })
        } else {
            payload_too_large()
        }
    };
    let (parts, body) = request.into_parts();
    if body.size_hint().exact() == Some(0) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(size) = announced.filter(|&n| n > limit as u64) {
        return too_large(size).into_response();
    }
    let read = tokio::time::timeout(
        state.config.request_timeout(),
        Limited::new(body, limit).collect(),
    )
    .await;
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return too_large(limit as u64 + 1).into_response();
        }
        Ok(Err(e)) => {
            tracing::info!(error = %e, "request body could not be read");
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "the request body could not be read",
            )
            .into_response();
        }
        Err(_) => {
            tracing::info!("request body did not arrive in time");
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "BODY_TIMEOUT",
                "the request body did not arrive in time",
            )
            .into_response();
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Gives the envelope to an error answered without a body by code we do not own (the
/// docs UI's file server answers unknown files with a bare 404).
pub async fn envelope_bare_errors(response: Response) -> Response {
    let status = response.status();
    if (status.is_client_error() || status.is_server_error())
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        let code = match status {
            StatusCode::NOT_FOUND => "ROUTE_NOT_FOUND",
            StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
            s if s.is_server_error() => "INTERNAL",
            _ => "BAD_REQUEST",
        };
        let message = status.canonical_reason().unwrap_or("error").to_lowercase();
        let mut enveloped = ApiError::new(status, code, message).into_response();
        for (name, value) in response.headers() {
            enveloped.headers_mut().entry(name).or_insert(value.clone());
        }
        enveloped.headers_mut().remove(header::CONTENT_LENGTH);
        return enveloped;
    }
    response
}

fn check_uri(uri: &axum::http::Uri) -> Result<(), ApiError> {
    let path = percent_encoding::percent_decode_str(uri.path()).decode_utf8_lossy();
    if let Some(c) = path.chars().find(|c| c.is_control()) {
        return Err(control_in("INVALID_PATH", "path", c));
    }
    if let Some(query) = uri.query() {
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if let Some((_, c)) = text::first_forbidden(&key).or(text::first_forbidden(&value)) {
                return Err(control_in("INVALID_QUERY", "query", c));
            }
        }
    }
    Ok(())
}

fn control_in(code: &'static str, place: &str, c: char) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        code,
        format!("the {place} holds the control character U+{:04X}", c as u32),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_bounded_and_plain() {
        let ok = |s: &str| acceptable_request_id(&HeaderValue::from_str(s).unwrap());
        assert!(ok("0191e8a4-7c1f-7d43-9d6e-3f1b2a9c8e70"));
        assert!(ok("req_42.retry:1"));
        assert!(!ok(""));
        assert!(!ok(&"a".repeat(129)));
        assert!(!ok("has space"));
        assert!(!ok("{\"json\":1}"));
    }

    #[test]
    fn control_characters_in_paths_and_queries_are_refused() {
        let check = |s: &str| check_uri(&s.parse().unwrap()).map_err(|e| e.code);
        assert_eq!(check("/order/abc?tenant=acme"), Ok(()));
        assert_eq!(check("/order/%00"), Err("INVALID_PATH"));
        assert_eq!(check("/order/a%1Bb"), Err("INVALID_PATH"));
        assert_eq!(check("/users?tenant=%00"), Err("INVALID_QUERY"));
        assert_eq!(check("/users?x%7F=1"), Err("INVALID_QUERY"));
        assert_eq!(check("/users?q=caf%C3%A9"), Ok(()));
    }
}
