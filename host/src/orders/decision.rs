//! The per-order decision log: what decided an accepted order, hook by hook.
//!
//! Written with the order (a statement of the order's own write, table `order_decisions`)
//! and to the JSON log stream at placement (`orderhost::decision`, inside the request's
//! span, so it carries the request id). Per hook: the component (name@version, SHA-256,
//! binding revision), why it served (`stable`, `override`, `fallback`), the configuration
//! it read (and its SHA-256), fuel, latency, peak memory, the failure it fell back from,
//! and the lines it wrote with `host.log`; for the order: the violations (none, for an
//! accepted order), the quote with its discount reasons, and the priority. With the
//! order's stored context (whose SHA-256 seeds the component's randomness) this is what
//! an exact replay needs.
//!
//! `GET /order/{id}/decision`: the tenant's admins and operators see everything; the
//! order's customer sees a redacted form (each hook's outcome: the quote with its
//! discounts — no component, configuration, logs, resources or priority), since a
//! merchant's rules and their configuration are the merchant's business.
//!
//! Records older than `ORDERHOST_DECISION_RETENTION_DAYS` are deleted by the workers'
//! housekeeping; after that the endpoint answers 404 `DECISION_EXPIRED` for the order.

use std::{collections::BTreeMap, sync::Arc};

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{AuthUser, Role},
    clock::rfc3339,
    http::{
        error::{ApiError, ErrorEnvelope},
        extract::{Json, Path},
    },
    policy::{
        Evaluation,
        runtime::{FaultReport, ServedBy},
        types::{GuestLogLine, Hook, Quote, Violation},
    },
    state::AppState,
    store::{Store, WritePool as _},
    with_pool,
};

/// One hook's part of a decision.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookDecision {
    /// The hook.
    pub hook: Hook,
    /// `name@version` of the component that answered.
    pub component: String,
    /// Its SHA-256.
    pub sha256: String,
    /// The tenant's binding revision, for a database binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Why this component answered.
    pub served_by: ServedBy,
    /// SHA-256 of the configuration it read.
    pub config_sha256: String,
    /// The configuration it read.
    pub config: BTreeMap<String, String>,
    /// Fuel used.
    pub fuel_used: u64,
    /// Instantiation + call, microseconds.
    pub latency_us: u64,
    /// Largest linear memory, bytes.
    pub peak_memory_bytes: u64,
    /// The bound component's failure, when the built-in answered instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultReport>,
    /// Lines it wrote with `host.log`.
    #[serde(default)]
    pub logs: Vec<GuestLogLine>,
}

/// What decided an order (the full form).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionLog {
    /// The order.
    pub order_id: String,
    /// When it was decided (RFC 3339).
    pub decided_at: String,
    /// Generation of the binding set that decided it.
    pub generation: u64,
    /// Hook by hook, in the order they ran.
    pub hooks: Vec<HookDecision>,
    /// Violations (empty: the order was accepted).
    pub violations: Vec<Violation>,
    /// The quote, with the discounts and their reasons.
    pub quote: Quote,
    /// The priority it was queued with.
    pub priority: u32,
}

impl DecisionLog {
    /// The decision of an order accepted now.
    pub fn of(
        order_id: &str,
        decided_at_ms: i64,
        evaluation: &Evaluation,
        quote: &Quote,
        priority: u32,
    ) -> Self {
        Self {
            order_id: order_id.to_owned(),
            decided_at: rfc3339(decided_at_ms),
            generation: evaluation.generation,
            hooks: evaluation
                .hooks
                .iter()
                .map(|h| HookDecision {
                    hook: h.hook,
                    component: h.component.clone(),
                    sha256: h.sha256.clone(),
                    revision: h.revision,
                    served_by: h.served_by,
                    config_sha256: h.config_sha256.clone(),
                    config: BTreeMap::clone(&h.config),
                    fuel_used: h.fuel_used,
                    latency_us: h.latency_us,
                    peak_memory_bytes: h.peak_memory_bytes,
                    fault: h.fault.clone(),
                    logs: h.logs.clone(),
                })
                .collect(),
            violations: evaluation.violations.clone(),
            quote: quote.clone(),
            priority,
        }
    }
}

/// What the order's customer sees of a hook.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedactedHook {
    /// The hook.
    pub hook: Hook,
    /// Whether the merchant's own rule answered (`false`: the platform's fallback did).
    pub fell_back: bool,
}

/// What the order's customer sees of its decision.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedactedDecision {
    /// The order.
    pub order_id: String,
    /// When it was decided (RFC 3339).
    pub decided_at: String,
    /// The hooks that ran.
    pub hooks: Vec<RedactedHook>,
    /// The quote, with the discounts and their reasons.
    pub quote: Quote,
}

/// `GET /order/{id}/decision`: the full form, or the customer's redacted one.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum DecisionView {
    /// For the tenant's admins and operators.
    Full(Box<DecisionLog>),
    /// For the order's customer.
    Redacted(RedactedDecision),
}

impl From<DecisionLog> for RedactedDecision {
    fn from(log: DecisionLog) -> Self {
        Self {
            order_id: log.order_id,
            decided_at: log.decided_at,
            hooks: log
                .hooks
                .into_iter()
                .map(|h| RedactedHook {
                    hook: h.hook,
                    // An open breaker's answer is the platform's fallback too.
                    fell_back: matches!(h.served_by, ServedBy::Fallback | ServedBy::BreakerOpen),
                })
                .collect(),
            quote: log.quote,
        }
    }
}

/// The routes of this file.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_decision))
}

/// What decided an order, hook by hook. The tenant's admins and operators (any tenant)
/// see everything; the order's customer sees a redacted form (each hook and the quote with
/// its discounts). Another customer's order, or another tenant's for an admin, is 404.
#[utoipa::path(get, path = "/order/{id}/decision", tag = "orders", params(("id" = String, Path)),
    responses((status = 200, body = DecisionView),
              (status = 404, description = "no such order (ORDER_NOT_FOUND), or its decision log is past retention (DECISION_EXPIRED)", body = ErrorEnvelope)))]
async fn get_decision(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<DecisionView>, ApiError> {
    let role = actor.role(&state.store).await?;
    let row: Option<(String, String, Option<String>)> = with_pool!(&state.store, pool => {
        sqlx::query_as(
            "select o.tenant_id, o.user_id, d.decision from orders o \
             left join order_decisions d on d.order_id = o.id where o.id = $1",
        )
        .bind(&id)
        .fetch_optional(pool)
        .await?
    });
    let not_found = || ApiError::not_found("ORDER_NOT_FOUND", "no such order");
    let Some((tenant_id, user_id, decision)) = row else {
        return Err(not_found());
    };
    let full = match role {
        Role::Operator => true,
        Role::Admin if tenant_id == actor.tenant_id => true,
        _ if tenant_id == actor.tenant_id && user_id == actor.user_id => false,
        _ => return Err(not_found()),
    };
    let Some(decision) = decision else {
        return Err(ApiError::not_found(
            "DECISION_EXPIRED",
            "this order's decision log is past its retention period",
        ));
    };
    let log: DecisionLog = serde_json::from_str(&decision).map_err(ApiError::internal)?;
    Ok(Json(if full {
        DecisionView::Full(Box::new(log))
    } else {
        DecisionView::Redacted(log.into())
    }))
}

/// Deletes decision records older than the retention period; returns how many went. At
/// most 10 000 per call (the workers call it every minute), so a first sweep after a
/// retention change does not hold locks for long.
pub async fn sweep_expired(
    store: &Store,
    now_ms: i64,
    retention_ms: i64,
) -> Result<u64, sqlx::Error> {
    let cutoff = now_ms.saturating_sub(retention_ms);
    with_pool!(store, pool => {
        let _turn = pool.write_turn().await;
        Ok(sqlx::query(
            "delete from order_decisions where order_id in \
             (select order_id from order_decisions where created_at < $1 order by created_at limit 10000)",
        )
        .bind(cutoff)
        .execute(pool)
        .await?
        .rows_affected())
    })
}

/// Sends the decision to the JSON log stream (target `orderhost::decision`), inside the
/// current span: with `--log-format json` the line carries the request id.
pub fn export(log: &Arc<str>, order_id: &str, tenant: &str) {
    tracing::info!(target: "orderhost::decision", order = %order_id, %tenant, decision = %log, "order decision");
}
