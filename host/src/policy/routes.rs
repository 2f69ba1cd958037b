//! `POST /admin/policy/evaluate`: run a tenant's current bindings on a supplied order
//! context and see the violations, the quote, the priority, and per hook the component,
//! fuel and latency — the tool a tenant uses to try its rules.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    EvalMode, Evaluation, PolicyFault,
    types::{Customer, OrderContext, OrderLine},
};
use crate::{
    auth::AuthUser,
    http::{
        error::{ApiError, ErrorEnvelope},
        extract::Json,
    },
    registry::bindings::read_overrides,
    state::AppState,
    tenants,
};

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(evaluate))
        .merge(super::breaker::router())
}

/// Body of `POST /admin/policy/evaluate`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EvaluateRequest {
    /// Tenant slug whose bindings run: operators may name any tenant, admins only their own
    /// (default: the caller's tenant).
    pub tenant: Option<String>,
    /// The customer.
    pub customer: Customer,
    /// The lines as the catalog would resolve them.
    pub lines: Vec<OrderLine>,
    /// The total the client expects, if any.
    pub expected_total: Option<i64>,
    /// Order time, unix epoch ms (default: now).
    pub order_time_ms: Option<i64>,
    /// Discount codes, as the order path normalises them (WIT 1.1).
    #[serde(default)]
    pub discount_codes: Vec<String>,
    /// Attributes, sorted by key (WIT 1.1).
    #[serde(default)]
    pub attributes: Vec<crate::policy::types::Attribute>,
}

/// 503 `POLICY_UNAVAILABLE` for a hook that failed under `on-error = "reject"`.
pub fn unavailable(fault: &PolicyFault) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "POLICY_UNAVAILABLE",
        format!("the {} policy of this shop failed; retry later", fault.hook),
    )
    .with_details(serde_json::json!({
        "hook": fault.hook,
        "kind": fault.kind,
        "component": fault.component,
    }))
}

/// Run a tenant's bindings on an order context (operator, or admin for its own tenant).
#[utoipa::path(post, path = "/admin/policy/evaluate", tag = "policy", request_body = EvaluateRequest,
    params(("X-Policy-Override" = Option<String>, Header, description = "operators only: hook=name@version[?key=value&…], comma-separated")),
    responses((status = 200, body = Evaluation),
              (status = 400, description = "OVERRIDE_INVALID", body = ErrorEnvelope),
              (status = 403, description = "FORBIDDEN, OVERRIDE_FORBIDDEN", body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope),
              (status = 422, description = "COMPONENT_NOT_FOUND, HOOK_NOT_EXPORTED, CONFIG_INVALID", body = ErrorEnvelope),
              (status = 503, description = "a hook failed and its binding rejects", body = ErrorEnvelope)))]
async fn evaluate(
    State(state): State<AppState>,
    actor: AuthUser,
    headers: HeaderMap,
    Json(body): Json<EvaluateRequest>,
) -> Result<Json<Evaluation>, ApiError> {
    let scope = tenants::admin_scope(&state.store, &actor, body.tenant.as_deref()).await?;
    let overrides = read_overrides(&state, &actor, &scope.tenant_id, &headers).await?;
    let tenant = tenants::find_by_id(&state.store, &scope.tenant_id)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("the caller's tenant no longer exists"))?
        .slug;
    if body.lines.len() > 1000 {
        return Err(ApiError::validation("lines", "at most 1000 lines"));
    }
    let ctx = OrderContext {
        tenant,
        customer: body.customer,
        lines: body.lines,
        expected_total: body.expected_total,
        order_time_ms: body.order_time_ms.unwrap_or_else(|| state.clock.now_ms()),
        discount_codes: body.discount_codes,
        attributes: body.attributes,
    };
    let evaluation = state
        .policy
        .evaluate_with_overrides(ctx, EvalMode::All, &overrides)
        .await
        .map_err(|fault| unavailable(&fault))?;
    Ok(Json(evaluation))
}
