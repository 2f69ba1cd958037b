//! Per-tenant limit ceilings: the most fuel, memory and time an operator lets a tenant's
//! bindings ask for (`GET/PUT /admin/tenants/{tenant}/limit-ceilings`). A binding over its
//! tenant's ceiling is refused with 422 `LIMITS_OUT_OF_RANGE`; without ceilings the
//! engine's own maxima apply. Owns the `limit_ceilings` table.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::AuthUser,
    http::{
        error::{ApiError, ErrorEnvelope},
        extract::{Json, Path},
    },
    policy::engine::{Limits, MAX_FUEL, MAX_MEMORY_BYTES, MAX_TIMEOUT_MS},
    state::AppState,
    store::Store,
    tenants, with_pool,
};

/// A tenant's ceilings; `None` is the engine's maximum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ceilings {
    /// Most fuel a binding may set.
    pub fuel: Option<u64>,
    /// Most linear memory a binding may set, bytes.
    pub memory_bytes: Option<u64>,
    /// Longest timeout a binding may set, ms.
    pub timeout_ms: Option<u64>,
}

impl Ceilings {
    /// Why `limits` exceed these ceilings, if they do.
    pub fn refuse(&self, limits: &Limits) -> Option<String> {
        let over = |what: &str, asked: u64, ceiling: Option<u64>| {
            ceiling
                .filter(|c| asked > *c)
                .map(|c| format!("{what} {asked} is above this tenant's ceiling {c}"))
        };
        over("fuel", limits.fuel, self.fuel)
            .or_else(|| over("memory-bytes", limits.memory_bytes, self.memory_bytes))
            .or_else(|| over("timeout-ms", limits.timeout_ms, self.timeout_ms))
    }
}

/// The ceilings of a tenant (none set → all `None`).
pub async fn of(store: &Store, tenant_id: &str) -> Result<Ceilings, sqlx::Error> {
    let row: Option<(Option<i64>, Option<i64>, Option<i64>)> = with_pool!(store, pool => sqlx::query_as(
        "select max_fuel, max_memory_bytes, max_timeout_ms from limit_ceilings where tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_optional(pool)
    .await)?;
    let unsigned = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
    Ok(row
        .map(|(fuel, memory, timeout)| Ceilings {
            fuel: unsigned(fuel),
            memory_bytes: unsigned(memory),
            timeout_ms: unsigned(timeout),
        })
        .unwrap_or_default())
}

async fn set(store: &Store, tenant_id: &str, c: &Ceilings, now: i64) -> Result<(), sqlx::Error> {
    let signed = |v: Option<u64>| v.and_then(|v| i64::try_from(v).ok());
    with_pool!(store, pool => sqlx::query(
        "insert into limit_ceilings (tenant_id, max_fuel, max_memory_bytes, max_timeout_ms, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $5) on conflict (tenant_id) do update set \
         max_fuel = excluded.max_fuel, max_memory_bytes = excluded.max_memory_bytes, \
         max_timeout_ms = excluded.max_timeout_ms, updated_at = excluded.updated_at",
    )
    .bind(tenant_id)
    .bind(signed(c.fuel))
    .bind(signed(c.memory_bytes))
    .bind(signed(c.timeout_ms))
    .bind(now)
    .execute(pool)
    .await
    .map(|_| ()))
}

/// The routes of this file.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_ceilings, put_ceilings))
}

/// A tenant's limit ceilings (operators; the tenant's own admin may read them).
#[utoipa::path(get, path = "/admin/tenants/{tenant}/limit-ceilings", tag = "bindings",
    params(("tenant" = String, Path)),
    responses((status = 200, body = Ceilings), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn get_ceilings(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(tenant): Path<String>,
) -> Result<Json<Ceilings>, ApiError> {
    let scope = tenants::admin_scope(&state.store, &actor, Some(&tenant)).await?;
    Ok(Json(of(&state.store, &scope.tenant_id).await?))
}

/// Set a tenant's limit ceilings (operators). `null` or absent = the engine's maximum.
#[utoipa::path(put, path = "/admin/tenants/{tenant}/limit-ceilings", tag = "bindings",
    params(("tenant" = String, Path)), request_body = Ceilings,
    responses((status = 200, body = Ceilings), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
async fn put_ceilings(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(tenant): Path<String>,
    Json(body): Json<Ceilings>,
) -> Result<Json<Ceilings>, ApiError> {
    actor.require_operator(&state.store).await?;
    for (field, value, max) in [
        ("fuel", body.fuel, MAX_FUEL),
        ("memoryBytes", body.memory_bytes, MAX_MEMORY_BYTES),
        ("timeoutMs", body.timeout_ms, MAX_TIMEOUT_MS),
    ] {
        if value.is_some_and(|v| v == 0 || v > max) {
            return Err(ApiError::validation(field, format!("between 1 and {max}")));
        }
    }
    let tenant_id = tenants::resolve(&state.store, Some(&tenant)).await?;
    set(&state.store, &tenant_id, &body, state.clock.now_ms()).await?;
    tracing::info!(tenant = %tenant, ?body, "limit ceilings set");
    Ok(Json(of(&state.store, &tenant_id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_above_a_ceiling_are_named() {
        let ceilings = Ceilings {
            fuel: Some(1_000),
            memory_bytes: None,
            timeout_ms: Some(20),
        };
        let ok = Limits {
            fuel: 1_000,
            memory_bytes: MAX_MEMORY_BYTES,
            timeout_ms: 20,
        };
        assert_eq!(ceilings.refuse(&ok), None);
        let slow = Limits {
            timeout_ms: 21,
            ..ok
        };
        assert_eq!(
            ceilings.refuse(&slow).as_deref(),
            Some("timeout-ms 21 is above this tenant's ceiling 20")
        );
    }
}
