//! HTTP: router assembly from each module's `router()`, the middleware stack (request ids,
//! tracing, CORS, CSRF, body limit, timeout, panic guard), the error envelope, extractors,
//! health and API docs.

pub mod docs;
pub mod edge;
pub mod error;
pub mod extract;
pub mod health;
pub mod pagination;

use std::time::Duration;

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};
use tracing::{Span, field::Empty};
use utoipa_axum::router::OpenApiRouter;

use self::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// The whole API: every module's routes, docs and middleware.
pub fn router(state: AppState) -> Router {
    let api = OpenApiRouter::with_openapi(docs::base())
        .merge(crate::auth::router())
        .merge(crate::users::router())
        .merge(crate::tenants::router())
        .merge(crate::policy::router())
        .merge(crate::registry::router())
        .merge(crate::registry::bindings::router())
        .merge(crate::registry::dryrun::router())
        .merge(crate::registry::fanout::router())
        .merge(crate::catalog::router())
        .merge(crate::orders::router())
        .merge(crate::queue::dead_letters::router())
        .merge(crate::console::router())
        .merge(health::router());
    let (routes, openapi) = api.split_for_parts();
    // Production never serves metrics unauthenticated on this port (see `MetricsConfig`).
    let routes = match state.config.metrics.exposure(state.config.environment) {
        crate::observability::MetricsExposure::ApiPort => {
            routes.route("/metrics", axum::routing::get(metrics))
        }
        _ => routes,
    };

    let cors = cors_layer(&state);
    routes
        .merge(docs::router(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::csrf::guard,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        // Outside the handler's timeout: reading the body is the client's time.
        .layer(middleware::from_fn_with_state(state.clone(), edge::guard))
        .layer(middleware::map_response(edge::envelope_bare_errors))
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        .layer(
            ServiceBuilder::new()
                .map_request(edge::sanitize_request_id)
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(make_span)
                        .on_request(())
                        .on_response(on_response)
                        .on_failure(()),
                )
                // Inside the span, outside the panic guard: a panic is counted as its 500.
                .layer(middleware::from_fn(count_request))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(cors),
        )
        .with_state(state)
}

fn make_span(request: &Request) -> Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("<unmatched>");
    tracing::info_span!(
        "request",
        request_id,
        method = %request.method(),
        route,
        status = Empty,
        latency_ms = Empty,
        tenant = Empty,
        user = Empty,
    )
}

/// Counts a request and its latency by method, route template (never the raw path: the
/// label stays bounded) and status.
async fn count_request(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(
        "orderhost_http_request_duration_seconds",
        "method" => method,
        "route" => route.clone()
    )
    .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        "orderhost_http_requests_total",
        "method" => method,
        "route" => route,
        "status" => status
    )
    .increment(1);
    response
}

fn on_response<B>(response: &axum::http::Response<B>, latency: Duration, span: &Span) {
    let status = response.status().as_u16();
    span.record("status", status);
    span.record("latency_ms", latency.as_secs_f64() * 1000.0);
    let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    if response.status().is_server_error() {
        tracing::error!(status, code, "request failed");
    } else {
        tracing::info!(status, code, "request finished");
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    // The payload may hold anything; log that it happened, not what it said.
    tracing::error!("handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL",
        "internal error; the request id identifies it in the logs",
    )
    .into_response()
}

fn cors_layer(state: &AppState) -> CorsLayer {
    let origins: Vec<HeaderValue> = state
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-tenant"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id"), header::LOCATION])
        .max_age(Duration::from_secs(600))
}

/// Answers 503 `REQUEST_TIMEOUT` when a handler takes longer than configured. Streaming
/// bodies (server-sent events) are not cut: the limit covers producing the response head.
async fn timeout(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(state.config.request_timeout(), next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "REQUEST_TIMEOUT",
            "the request took too long; retry later",
        )
        .with_retry_after(1)
        .into_response(),
    }
}

/// `GET /metrics` alone, for the listener of `ORDERHOST_METRICS_ADDR` (`serve` and
/// `worker`).
pub fn metrics_router(config: crate::observability::MetricsConfig) -> Router {
    Router::new()
        .route(
            "/metrics",
            axum::routing::get(
                |State(config): State<std::sync::Arc<crate::observability::MetricsConfig>>,
                 headers: axum::http::HeaderMap| async move {
                    render_metrics(&config, &headers)
                },
            ),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::map_response(edge::envelope_bare_errors))
        .with_state(std::sync::Arc::new(config))
}

/// `GET /metrics` on the API port.
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    render_metrics(&state.config.metrics, &headers)
}

/// Prometheus text format; 401 without the token when one is set.
fn render_metrics(
    config: &crate::observability::MetricsConfig,
    headers: &axum::http::HeaderMap,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !config.authorizes(authorization) {
        let mut response = ApiError::unauthenticated(
            "send `Authorization: Bearer <token>` with the token of ORDERHOST_METRICS_TOKEN",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    match crate::observability::metrics_handle() {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "METRICS_UNAVAILABLE",
            "metrics recorder not installed",
        )
        .into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("ROUTE_NOT_FOUND", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "this route does not accept this method",
    )
}
