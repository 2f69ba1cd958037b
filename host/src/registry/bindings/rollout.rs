//! Safe rollout of a database binding: a sticky canary (set, ramped, promoted) and a
//! shadow (`policy/shadow.rs`), audited like every binding change — each is a new history
//! revision carrying the stable binding unchanged and the candidates beside it.
//!
//! A canary serves the customers whose sticky bucket (`policy::runtime::canary_bucket`:
//! a hash of tenant and customer id, 0–999) is below its share, so a customer stays on
//! one version while the share ramps up or down. Shares are percentages with one decimal
//! (0–100 in 0.1 steps), stored per mille. Promoting makes the candidate (with its config)
//! the stable binding and ends the canary; any later `PUT` bind also ends it; rolling back
//! restores the earlier revision's canary with it.

use std::collections::BTreeMap;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    BindingError, Candidate, Change, ChangeView, HistoryRow, apply, check, choose, compiled,
    history_rows, optional_body, parse_config, parse_hook, parse_reason, scope,
};
use crate::{
    auth::AuthUser,
    http::{
        error::{ApiError, ErrorEnvelope},
        extract::{Json, Path},
    },
    policy::{Binding, types::Hook},
    state::AppState,
    store::Store,
    with_pool,
};

/// A canary or a shadow as the API sets it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CandidateBody {
    /// The candidate, `name@version` or `name@<range>`; absent: keep the current
    /// candidate (a ramp).
    pub component: Option<String>,
    /// The candidate's configuration; absent: the current candidate's (a ramp), or none
    /// for a new candidate.
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    /// Its share, 0–100 in steps of 0.1: of the customers a canary serves, of the orders
    /// a shadow runs on.
    pub percent: f64,
}

/// `PATCH /admin/tenants/{tenant}/bindings/{hook}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutBody {
    /// Set or ramp the canary.
    pub canary: Option<CandidateBody>,
    /// Set or change the shadow (`percent: 0` stops it).
    pub shadow: Option<CandidateBody>,
    /// Why (kept in the history).
    #[serde(default)]
    pub reason: String,
}

/// `POST …/bindings/{hook}/promote`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromoteBody {
    /// Why (kept in the history).
    #[serde(default)]
    pub reason: String,
}

/// A canary or shadow as shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CandidateView {
    /// `name@version`.
    pub component: String,
    /// Its sha256 (empty for a built-in).
    pub sha256: String,
    /// Its configuration.
    pub config: BTreeMap<String, String>,
    /// Its share in percent (of customers for a canary, of orders for a shadow).
    pub percent: f64,
}

impl From<&Candidate> for CandidateView {
    fn from(c: &Candidate) -> Self {
        Self {
            component: c.id(),
            sha256: c.sha256.clone(),
            config: c.config.clone(),
            percent: f64::from(c.permille) / 10.0,
        }
    }
}

impl From<&crate::policy::runtime::Rollout> for CandidateView {
    fn from(r: &crate::policy::runtime::Rollout) -> Self {
        Self {
            component: r.binding.component.id(),
            sha256: r.binding.component.sha256.clone(),
            config: (*r.binding.config).clone(),
            percent: f64::from(r.permille) / 10.0,
        }
    }
}

/// A percentage with at most one decimal, 0–100, as per mille.
pub(super) fn permille(field: &'static str, percent: f64) -> Result<u16, BindingError> {
    let tenths = percent * 10.0;
    let rounded = tenths.round();
    if !percent.is_finite()
        || !(0.0..=1_000.0).contains(&rounded)
        || (tenths - rounded).abs() > 1e-6
    {
        return Err(BindingError::Field {
            field,
            problem: format!("{percent} is not a percentage from 0 to 100 in steps of 0.1"),
        });
    }
    // In 0..=1000 after the check above.
    Ok(rounded as u16)
}

/// The active database binding's revision row of `hook`, or 409 `NO_DATABASE_BINDING`.
pub(super) async fn active_row(
    store: &Store,
    tenant_id: &str,
    hook: Hook,
) -> Result<HistoryRow, BindingError> {
    let active: Option<i64> = with_pool!(store, pool => sqlx::query_scalar(
        "select revision from bindings where tenant_id = $1 and hook = $2",
    )
    .bind(tenant_id)
    .bind(hook.as_str())
    .fetch_optional(pool)
    .await)?;
    let active = active.ok_or(BindingError::NoDatabaseBinding(hook))?;
    history_rows(store, tenant_id, Some(hook.as_str()), Some(active), 1, 0)
        .await?
        .into_iter()
        .next()
        .ok_or(BindingError::NoDatabaseBinding(hook))
}

/// The change that keeps `row`'s stable binding (the caller sets its canary and shadow).
fn keep_stable<'a>(
    row: &'a HistoryRow,
    tenant_id: &'a str,
    hook: Hook,
    action: &'a str,
    actor_id: &'a str,
    reason: &'a str,
    config: &'a BTreeMap<String, String>,
) -> Change<'a> {
    Change {
        tenant_id,
        hook,
        action,
        component: row
            .component_name
            .as_deref()
            .zip(row.component_version.as_deref())
            .map(|(n, v)| (n, v, row.sha256.as_deref().unwrap_or_default())),
        config,
        limits: row.limits(),
        on_error: row.on_error(),
        actor_id,
        reason,
        restores: None,
        canary: None,
        shadow: None,
    }
}

/// Set or ramp the canary of a tenant's database binding: `{"canary": {"component":
/// "name@version", "config": {…}, "percent": 10}}` sets a candidate (compiled and
/// smoke-called first); `{"canary": {"percent": 30}}` ramps the current one. Audited as a
/// `canary` revision.
#[utoipa::path(patch, path = "/admin/tenants/{tenant}/bindings/{hook}", tag = "bindings",
    params(("tenant" = String, Path), ("hook" = String, Path)), request_body = RolloutBody,
    responses((status = 200, body = ChangeView), (status = 403, body = ErrorEnvelope),
              (status = 404, description = "HOOK_NOT_FOUND, tenant not found", body = ErrorEnvelope),
              (status = 409, description = "NO_DATABASE_BINDING, NO_CANARY", body = ErrorEnvelope),
              (status = 422, description = "COMPONENT_NOT_FOUND, HOOK_NOT_EXPORTED, CONFIG_INVALID, SMOKE_CALL_FAILED, VALIDATION_FAILED", body = ErrorEnvelope)))]
pub(super) async fn set_rollout(
    State(state): State<AppState>,
    actor: AuthUser,
    Path((tenant, hook)): Path<(String, String)>,
    Json(body): Json<RolloutBody>,
) -> Result<Json<ChangeView>, ApiError> {
    let scope = scope(&state, &actor, &tenant).await?;
    let hook = parse_hook(&hook)?;
    let reason = parse_reason(&body.reason)?;
    if body.canary.is_none() && body.shadow.is_none() {
        return Err(BindingError::Field {
            field: "body",
            problem: "nothing to change: give `canary` or `shadow`".into(),
        }
        .into());
    }
    let row = active_row(&state.store, &scope.0, hook).await?;
    let mut canary = row.canary();
    let mut shadow = row.shadow();
    let mut action = "shadow";
    if let Some(body) = body.canary {
        canary = Some(candidate(&state, &scope, hook, &row, body, canary, "canary").await?);
        action = "canary";
    }
    if let Some(body) = body.shadow {
        shadow = Some(candidate(&state, &scope, hook, &row, body, shadow, "shadow").await?);
    }
    let stable_config = row.config();
    let mut change = keep_stable(
        &row,
        &scope.0,
        hook,
        action,
        &actor.user_id,
        &reason,
        &stable_config,
    );
    change.canary = canary.as_ref();
    change.shadow = shadow.as_ref();
    Ok(Json(apply(&state, &scope, change, None).await?))
}

/// A canary or shadow as asked: a new candidate (resolved, compiled and smoke-called with
/// its config and the stable limits), or the `current` one with a new share (and config).
async fn candidate(
    state: &AppState,
    scope: &(String, String),
    hook: Hook,
    row: &HistoryRow,
    body: CandidateBody,
    current: Option<Candidate>,
    what: &'static str,
) -> Result<Candidate, BindingError> {
    let share = permille(
        if what == "canary" {
            "canary.percent"
        } else {
            "shadow.percent"
        },
        body.percent,
    )?;
    let Some(spec) = body.component else {
        let mut current = current.ok_or(if what == "canary" {
            BindingError::NoCanary(hook)
        } else {
            BindingError::NoShadow(hook)
        })?;
        if let Some(config) = body.config {
            current.config = parse_config(config)?;
        }
        current.permille = share;
        return Ok(current);
    };
    let chosen = choose(&state.store, &scope.0, &spec).await?;
    let config = parse_config(body.config.unwrap_or_default())?;
    let component = compiled(
        &state.store,
        &state.policy,
        &chosen.name,
        &chosen.version,
        &chosen.sha256,
    )
    .await?;
    // The candidate must serve the hook with its config and the stable limits.
    let smoke = Binding {
        component: component.clone(),
        config: std::sync::Arc::new(config.clone()),
        limits: row.limits(),
        on_error: row.on_error(),
        source: "smoke call".into(),
        revision: None,
        canary: None,
        shadow: None,
    };
    check(&state.policy, smoke, hook, &scope.1).await?;
    Ok(Candidate {
        name: chosen.name,
        version: chosen.version,
        sha256: component.sha256.clone(),
        config,
        permille: share,
    })
}

/// This replica's shadow results for the hook's active binding revision: runs,
/// agreements, disagreements per kind (`validationMismatch`, `priceDelta`,
/// `priorityDelta`, `candidateError`) with rates and up to 20 examples each.
#[utoipa::path(get, path = "/admin/tenants/{tenant}/bindings/{hook}/shadow", tag = "bindings",
    params(("tenant" = String, Path), ("hook" = String, Path)),
    responses((status = 200, body = crate::policy::shadow::ShadowReport), (status = 403, body = ErrorEnvelope),
              (status = 404, description = "HOOK_NOT_FOUND, tenant not found", body = ErrorEnvelope),
              (status = 409, description = "NO_DATABASE_BINDING, NO_SHADOW", body = ErrorEnvelope)))]
pub(super) async fn shadow_report(
    State(state): State<AppState>,
    actor: AuthUser,
    Path((tenant, hook)): Path<(String, String)>,
) -> Result<Json<crate::policy::shadow::ShadowReport>, ApiError> {
    let scope = scope(&state, &actor, &tenant).await?;
    let hook = parse_hook(&hook)?;
    let row = active_row(&state.store, &scope.0, hook).await?;
    let shadow = row.shadow().ok_or(BindingError::NoShadow(hook))?;
    let report = state
        .policy
        .shadows()
        .report(&scope.1, hook, row.revision)
        .unwrap_or_else(|| crate::policy::shadow::ShadowReport {
            candidate: shadow.id(),
            revision: row.revision,
            ..Default::default()
        });
    Ok(Json(report))
}

/// Make the canary the stable binding (its component and config; the stable limits and
/// `on_error` stay), ending the canary. Audited as a `promote` revision.
#[utoipa::path(post, path = "/admin/tenants/{tenant}/bindings/{hook}/promote", tag = "bindings",
    params(("tenant" = String, Path), ("hook" = String, Path)), request_body = PromoteBody,
    responses((status = 200, body = ChangeView), (status = 403, body = ErrorEnvelope),
              (status = 404, description = "HOOK_NOT_FOUND, tenant not found", body = ErrorEnvelope),
              (status = 409, description = "NO_DATABASE_BINDING, NO_CANARY", body = ErrorEnvelope)))]
pub(super) async fn promote(
    State(state): State<AppState>,
    actor: AuthUser,
    Path((tenant, hook)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<ChangeView>, ApiError> {
    let scope = scope(&state, &actor, &tenant).await?;
    let hook = parse_hook(&hook)?;
    let body: PromoteBody = optional_body(&body, "promote")?;
    let reason = parse_reason(&body.reason)?;
    let row = active_row(&state.store, &scope.0, hook).await?;
    let candidate = row.canary().ok_or(BindingError::NoCanary(hook))?;
    let component = compiled(
        &state.store,
        &state.policy,
        &candidate.name,
        &candidate.version,
        &candidate.sha256,
    )
    .await?;
    let shadow = row.shadow();
    let sha256 = component.sha256.clone();
    let change = Change {
        tenant_id: &scope.0,
        hook,
        action: "promote",
        component: Some((&candidate.name, &candidate.version, &sha256)),
        config: &candidate.config,
        limits: row.limits(),
        on_error: row.on_error(),
        actor_id: &actor.user_id,
        reason: &reason,
        restores: None,
        canary: None,
        shadow: shadow.as_ref(),
    };
    Ok(Json(apply(&state, &scope, change, Some(component)).await?))
}

/// Makes the canary guard's rollbacks durable: starts the task that turns each into an
/// `auto-rollback` revision (the canary at 0 %, the stable binding unchanged, by
/// `system`, with the guard's reason), published and announced like any change. A
/// revision that moved on meanwhile (another replica wrote it, an operator changed the
/// binding) is left alone.
pub fn spawn_auto_rollbacks(state: &AppState) -> tokio::task::JoinHandle<()> {
    let (sink, mut requests) = tokio::sync::mpsc::unbounded_channel();
    state.policy.canaries().set_sink(sink);
    let state = state.clone();
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            if let Err(error) = auto_rollback(&state, &request).await {
                tracing::error!(tenant = %request.tenant, hook = request.hook.as_str(),
                    revision = request.revision, %error,
                    "could not store an automatic canary rollback; this process keeps the canary off");
            }
        }
    })
}

/// The durable half of one automatic rollback.
async fn auto_rollback(
    state: &AppState,
    request: &crate::policy::canary::AutoRollback,
) -> Result<(), ApiError> {
    let Some(tenant) = crate::tenants::find_by_slug(&state.store, &request.tenant).await? else {
        return Ok(());
    };
    let scope = (tenant.id.clone(), tenant.slug.clone());
    let row = match active_row(&state.store, &scope.0, request.hook).await {
        Ok(row) => row,
        Err(BindingError::NoDatabaseBinding(_)) => return Ok(()),
        Err(error) => return Err(error.into()),
    };
    let Some(mut canary) = row.canary() else {
        return Ok(());
    };
    if row.revision != request.revision || canary.permille == 0 {
        return Ok(());
    }
    canary.permille = 0;
    let stable_config = row.config();
    let shadow = row.shadow();
    let reason: String = request
        .reason
        .chars()
        .take(super::MAX_REASON_CHARS)
        .collect();
    let mut change = keep_stable(
        &row,
        &scope.0,
        request.hook,
        "auto-rollback",
        AUTO_ACTOR,
        &reason,
        &stable_config,
    );
    change.canary = Some(&canary);
    change.shadow = shadow.as_ref();
    apply(state, &scope, change, None).await?;
    Ok(())
}

/// The actor of the service's own binding changes.
pub const AUTO_ACTOR: &str = "system";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_tenths_from_0_to_100() {
        assert_eq!(permille("p", 0.0).unwrap(), 0);
        assert_eq!(permille("p", 0.1).unwrap(), 1);
        assert_eq!(permille("p", 12.5).unwrap(), 125);
        assert_eq!(permille("p", 33.3).unwrap(), 333);
        assert_eq!(permille("p", 100.0).unwrap(), 1_000);
        for bad in [-0.1, 100.1, 0.05, 12.34, f64::NAN, f64::INFINITY] {
            assert!(permille("p", bad).is_err(), "{bad}");
        }
    }
}
