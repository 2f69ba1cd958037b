//! Dry runs: what a candidate component *would have done* to a tenant's real orders.
//! Owns the `dry_runs` table.
//!
//! `POST /admin/tenants/{tenant}/dry-run` replays the tenant's last N stored orders
//! (newest first, optionally since a time) through the hook's active binding and through
//! the candidate, and reports what would have changed, each change labelled with what
//! really happened to the order (CONFIRMED, FAILED with its reason, CANCELLED, PENDING)
//! and the money involved. Nothing is written to orders: the run reads `orders` and
//! `order_decisions` and writes only its own row.
//!
//! Replays are exact: each hook is a function of the order context alone, so replaying
//! the one hook on the stored context (`orders.context`) with the configuration the
//! original call read (from the order's decision record) gives the stored decision back;
//! the sandbox derives the randomness seed from the context and pins the clocks to the
//! order time, so nothing else varies. An order without a decision record (older than the
//! log, or past its retention), or whose record names another component than the active
//! one, is replayed with the active binding's current configuration and counted
//! `inexact`. The active side's replay is also checked against the stored outcome (the
//! order was accepted; `orders.quote`; `orders.priority`): any difference is an
//! `activeMismatches` entry, which an exact replay never has.
//!
//! The candidate runs with the request's config (default: the same config as the active
//! side), the request's limits (default: the active binding's) and the active binding's
//! `on_error`, so its decisions are what it would really have done; its failures are
//! counted by kind either way.
//!
//! Runs are asynchronous: the POST answers 202 with the run's id at once and the replay
//! continues on this replica; `GET …/dry-run/{id}` (any replica: the row is in the
//! database) shows `running` with `processed/total`, then `done` with the report, or
//! `failed`. The run is bounded: at most [`MAX_ORDERS`] orders and a time budget
//! (`budgetMs`, at most [`MAX_BUDGET_MS`]); a run that hits its budget stops with a
//! partial report marked `truncated`.
//!
//! Throughput: orders are read in pages, the next page is read while the current one is
//! replayed, and each page is split across the machine's cores on blocking threads. Both
//! sides use components compiled once (a candidate through the registry's sha256 cache);
//! each call instantiates from the pre-linked component in the pooling allocator, as live
//! calls do. Memory stays bounded by the page size plus a few numbers per order (fuel and
//! latency samples for the percentiles).

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::bindings::LimitsBody;
use crate::{
    auth::AuthUser,
    clock::rfc3339,
    http::{
        error::{ApiError, ErrorEnvelope},
        extract::{Json, Path},
    },
    policy::{
        Binding, FaultKind, Limits, PolicyRuntime,
        engine::CompiledComponent,
        manifest::OnError,
        types::{Hook, HookOutput, OrderContext, PricingRefusal, Quote},
    },
    state::AppState,
    store::{Store, WritePool as _},
    tenants, with_pool,
};

/// Orders replayed when the request does not say.
pub const DEFAULT_ORDERS: i64 = 1_000;
/// Most orders one run may replay.
pub const MAX_ORDERS: i64 = 100_000;
/// Time budget when the request does not say, ms.
pub const DEFAULT_BUDGET_MS: i64 = 60_000;
/// Largest time budget, ms.
pub const MAX_BUDGET_MS: i64 = 600_000;
/// Examples kept per kind of change.
pub const MAX_EXAMPLES: usize = 20;
/// Orders read per page.
const PAGE: i64 = 500;
/// A running run whose row has not moved for this long lost its replica.
const STALE_MS: i64 = 30_000;

/// `POST /admin/tenants/{tenant}/dry-run`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DryRunBody {
    /// The hook: `validation`, `pricing` or `prioritization`.
    pub hook: String,
    /// The candidate: `name@version` (or `name@<semver range>`) among the tenant's
    /// components, the platform's and the built-ins.
    pub candidate: String,
    /// The candidate's config (strings; integers and booleans as their text); default:
    /// the config each original call read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    /// The candidate's limits; default: the active binding's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsBody>,
    /// How many of the newest stored orders to replay: 1 to 100 000 (default 1 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<i64>,
    /// Only orders placed at or after this time: RFC 3339 (`2025-01-31T00:00:00Z`) or
    /// epoch milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub since: Option<serde_json::Value>,
    /// Time budget, ms: 1 to 600 000 (default 60 000). A run that hits it stops with a
    /// partial report marked `truncated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_ms: Option<i64>,
}

/// A run's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Replaying.
    Running,
    /// Finished (the report is there; `truncated` if it hit its budget).
    Done,
    /// Stopped by an error (or its replica stopped).
    Failed,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "running" => Self::Running,
            "done" => Self::Done,
            _ => Self::Failed,
        }
    }
}

/// A dry run as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRunView {
    /// Id (UUIDv7).
    pub id: String,
    /// Tenant slug.
    pub tenant: String,
    /// The hook replayed.
    pub hook: String,
    /// The candidate as requested.
    pub candidate: String,
    /// `running`, `done` or `failed`.
    pub status: RunStatus,
    /// Orders replayed so far.
    pub processed: i64,
    /// Orders to replay (the newest N that exist).
    pub total: i64,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The report, once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<DryRunReport>,
    /// Started (RFC 3339).
    pub created_at: String,
    /// Last progress (RFC 3339).
    pub updated_at: String,
}

/// One side of the comparison.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SideInfo {
    /// `name@version`.
    pub component: String,
    /// Its SHA-256.
    pub sha256: String,
    /// The config it ran with: `null` means each order's recorded config.
    pub config: Option<BTreeMap<String, String>>,
    /// Its limits.
    pub limits: LimitsBody,
    /// What a failed call does.
    pub on_error: OnError,
}

/// Orders of one real outcome among the changes of one kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeTally {
    /// Orders.
    pub orders: u64,
    /// Sum of their stored totals, minor units (the money involved).
    pub total: i64,
    /// Sum of their price deltas (candidate − active), minor units; 0 for other kinds.
    pub delta: i64,
}

/// One changed order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeExample {
    /// The order.
    pub order_id: String,
    /// What really happened to it: `CONFIRMED`, `FAILED`, `CANCELLED` or `PENDING`.
    pub status: String,
    /// Why it failed (`OUT_OF_STOCK`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its stored total, minor units.
    pub total: i64,
    /// Its currency.
    pub currency: String,
    /// When it was placed (RFC 3339).
    pub placed_at: String,
    /// What the active binding decided on replay.
    pub active: String,
    /// What the candidate decided.
    pub candidate: String,
    /// Candidate − active: the price (pricing) or the priority (prioritization).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<i64>,
}

/// The changes of one kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeKind {
    /// Orders changed this way.
    pub count: u64,
    /// By what really happened to them (`CONFIRMED`, `FAILED:OUT_OF_STOCK`, `CANCELLED`,
    /// `PENDING`).
    pub by_outcome: BTreeMap<String, OutcomeTally>,
    /// Up to 20, newest first.
    pub examples: Vec<ChangeExample>,
}

/// A bucket of the price-delta histogram: deltas in `from..=to` (minor units; an open
/// end is `null`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeltaBucket {
    /// Lowest delta, inclusive (`null`: no bound).
    pub from: Option<i64>,
    /// Highest delta, inclusive (`null`: no bound).
    pub to: Option<i64>,
    /// Orders.
    pub count: u64,
}

/// Price deltas (candidate − active) of the orders both priced.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PriceDeltas {
    /// Orders priced higher by the candidate.
    pub increased: u64,
    /// Orders priced lower.
    pub decreased: u64,
    /// Sum of the deltas, minor units.
    pub sum: i64,
    /// Largest increase (0 when none).
    pub max_increase: i64,
    /// Largest decrease, as a negative delta (0 when none).
    pub max_decrease: i64,
    /// Largest delta in absolute value.
    pub max_abs: i64,
    /// The non-zero deltas by size.
    pub histogram: Vec<DeltaBucket>,
}

/// Percentiles of one measure.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quantiles {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

/// Fuel and latency of one side's calls.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidePerformance {
    /// Fuel per call (the answering call).
    pub fuel: Quantiles,
    /// Instantiation + call, microseconds (both calls when it fell back).
    pub latency_us: Quantiles,
}

/// Both sides' performance.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Performance {
    /// The active binding.
    pub active: SidePerformance,
    /// The candidate.
    pub candidate: SidePerformance,
}

/// Failed calls by kind (`Trap`, `Timeout`, `InstructionLimitExceeded`, …), per side.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Errors {
    /// The active binding's.
    pub active: BTreeMap<String, u64>,
    /// The candidate's.
    pub candidate: BTreeMap<String, u64>,
}

/// What a candidate would have changed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRunReport {
    /// The hook replayed.
    pub hook: Hook,
    /// The active binding.
    pub active: SideInfo,
    /// The candidate.
    pub candidate: SideInfo,
    /// Orders asked for.
    pub requested: i64,
    /// Orders found to replay (at most `requested`).
    pub total: i64,
    /// Orders replayed.
    pub processed: u64,
    /// Replayed with the configuration the original call read.
    pub exact: u64,
    /// Replayed with the active binding's current configuration: no decision record
    /// (older than the log or past retention), or one of another component.
    pub inexact: u64,
    /// Whether the run stopped at its time budget before replaying every order.
    pub truncated: bool,
    /// Wall time of the replay, ms.
    pub elapsed_ms: u64,
    /// Orders replayed per second (each through both sides).
    pub orders_per_second: u64,
    /// Orders whose decision changed in any way.
    pub changed: u64,
    /// Accepted by the active binding, refused with the candidate: violations
    /// (validation), a pricing refusal, a price above the client's ceiling
    /// (`PRICE_MISMATCH`) or a failed call that rejects. Money: the order's total.
    pub accept_to_reject: ChangeKind,
    /// Refused by the active binding, accepted with the candidate. Only accepted orders
    /// are stored, so for an exact replay this is always 0 until rejected decisions are
    /// stored too.
    pub reject_to_accept: ChangeKind,
    /// Priced differently by the candidate (both priced).
    pub price_changes: ChangeKind,
    /// The price deltas of `priceChanges`.
    pub price_deltas: PriceDeltas,
    /// Prioritized differently (delta = candidate − active).
    pub priority_changes: ChangeKind,
    /// The active binding's replay differs from the stored decision: an inexact replay,
    /// or a binding that changed since. 0 for an exact replay.
    pub active_mismatches: ChangeKind,
    /// Failed calls by kind, per side.
    pub errors: Errors,
    /// Fuel and latency, per side.
    pub performance: Performance,
}

/// The routes of this file.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_run))
        .routes(routes!(get_run))
}

/// A refusal of the request, 422 with a stable code.
fn refused(code: &'static str, message: String, details: serde_json::Value) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_details(details)
}

fn parse_hook(raw: &str) -> Result<Hook, ApiError> {
    Hook::ALL
        .into_iter()
        .find(|h| h.as_str() == raw.trim())
        .ok_or_else(|| {
            refused(
                "HOOK_NOT_FOUND",
                format!(
                    "no hook {:?} (expected validation, pricing or prioritization)",
                    raw.chars().take(64).collect::<String>()
                ),
                serde_json::json!({ "field": "hook", "expected": ["validation", "pricing", "prioritization"] }),
            )
        })
}

fn bounded(
    value: Option<i64>,
    default: i64,
    max: i64,
    field: &str,
    code: &'static str,
) -> Result<i64, ApiError> {
    let value = value.unwrap_or(default);
    if (1..=max).contains(&value) {
        Ok(value)
    } else {
        Err(refused(
            code,
            format!("{field} must be between 1 and {max}, not {value}"),
            serde_json::json!({ "field": field, "min": 1, "max": max }),
        ))
    }
}

/// `since`: epoch milliseconds, or RFC 3339 with `Z` or a `±hh:mm` offset.
fn parse_since(raw: Option<&serde_json::Value>) -> Result<i64, ApiError> {
    let invalid = || {
        ApiError::validation(
            "since",
            "RFC 3339 (2025-01-31T00:00:00Z) or epoch milliseconds",
        )
    };
    match raw {
        None | Some(serde_json::Value::Null) => Ok(0),
        Some(serde_json::Value::Number(n)) => n.as_i64().filter(|ms| *ms >= 0).ok_or_else(invalid),
        Some(serde_json::Value::String(s)) => parse_rfc3339(s.trim()).ok_or_else(invalid),
        Some(_) => Err(invalid()),
    }
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let num = |t: &str| -> Option<u32> {
        t.chars()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (date, rest) = s.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-');
    let (year, month, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    let (clock, offset_s) = match rest.strip_suffix(['Z', 'z']) {
        Some(clock) => (clock, 0i64),
        None => {
            let at = rest.rfind(['+', '-'])?;
            let (clock, offset) = rest.split_at(at);
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let (h, m) = offset[1..].split_once(':')?;
            (
                clock,
                sign * (i64::from(num(h)?) * 3600 + i64::from(num(m)?) * 60),
            )
        }
    };
    let (clock, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut c = clock.splitn(3, ':');
    let (hour, minute, second) = (num(c.next()?)?, num(c.next()?)?, num(c.next()?)?);
    let millis = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().chain("000".chars()).take(3).collect();
        num(&digits)?
    };
    let date = time::Date::from_calendar_date(
        i32::try_from(year).ok()?,
        time::Month::try_from(u8::try_from(month).ok()?).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()?;
    let clock = time::Time::from_hms_milli(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
        u16::try_from(millis).ok()?,
    )
    .ok()?;
    let utc = time::PrimitiveDateTime::new(date, clock).assume_utc();
    let ms = utc.unix_timestamp_nanos() / 1_000_000 - i128::from(offset_s) * 1000;
    i64::try_from(ms).ok().filter(|ms| *ms >= 0)
}

/// The tenant in the path as (id, slug): a tenant admin's own (another → 404), any for an
/// operator; customers 403 — as the bindings routes.
async fn scope(
    state: &AppState,
    actor: &AuthUser,
    tenant: &str,
) -> Result<(String, String), ApiError> {
    let scope = tenants::admin_scope(&state.store, actor, Some(tenant)).await?;
    let slug = tenants::find_by_id(&state.store, &scope.tenant_id)
        .await?
        .map(|t| t.slug)
        .ok_or_else(|| tenants::not_found(tenant))?;
    Ok((scope.tenant_id, slug))
}

/// Replay the tenant's newest stored orders through the hook's active binding and a
/// candidate; answers 202 at once with the run to poll.
#[utoipa::path(post, path = "/admin/tenants/{tenant}/dry-run", tag = "bindings",
    params(("tenant" = String, Path)), request_body = DryRunBody,
    responses((status = 202, body = DryRunView, headers(("Location" = String))),
              (status = 403, body = ErrorEnvelope),
              (status = 404, description = "tenant not found", body = ErrorEnvelope),
              (status = 422, description = "HOOK_NOT_FOUND, COMPONENT_NOT_FOUND, HOOK_NOT_EXPORTED, COMPILE_FAILED, CONFIG_INVALID, LIMITS_OUT_OF_RANGE, ORDERS_OUT_OF_RANGE, BUDGET_OUT_OF_RANGE, VALIDATION_FAILED", body = ErrorEnvelope)))]
async fn start_run(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(tenant): Path<String>,
    Json(body): Json<DryRunBody>,
) -> Result<Response, ApiError> {
    let (tenant_id, slug) = scope(&state, &actor, &tenant).await?;
    let hook = parse_hook(&body.hook)?;
    let orders = bounded(
        body.orders,
        DEFAULT_ORDERS,
        MAX_ORDERS,
        "orders",
        "ORDERS_OUT_OF_RANGE",
    )?;
    let budget_ms = bounded(
        body.budget_ms,
        DEFAULT_BUDGET_MS,
        MAX_BUDGET_MS,
        "budgetMs",
        "BUDGET_OUT_OF_RANGE",
    )?;
    let since = parse_since(body.since.as_ref())?;
    let (config, limits) = super::bindings::candidate_settings(
        &state.store,
        &tenant_id,
        body.config.clone(),
        body.limits,
    )
    .await?;
    let candidate = super::bindings::candidate(&state, &tenant_id, &body.candidate, hook).await?;
    let set = state.policy.snapshot();
    let active = set.binding(&slug, hook).clone();
    let builtin = set.builtin(hook).clone();
    let now = state.clock.now_ms();
    let total: i64 = with_pool!(&state.store, pool => sqlx::query_scalar(
        "select count(*) from orders where tenant_id = $1 and created_at >= $2",
    )
    .bind(&tenant_id)
    .bind(since)
    .fetch_one(pool)
    .await)?;
    let total = total.min(orders);
    let id = uuid::Uuid::now_v7().to_string();
    let request = serde_json::to_string(&body).map_err(ApiError::internal)?;
    with_pool!(&state.store, pool => {
        let _turn = pool.write_turn().await;
        sqlx::query(
            "insert into dry_runs (id, tenant_id, hook, candidate, status, processed, total, \
             request, actor_id, created_at, updated_at) \
             values ($1, $2, $3, $4, 'running', 0, $5, $6, $7, $8, $8)",
        )
        .bind(&id)
        .bind(&tenant_id)
        .bind(hook.as_str())
        .bind(&body.candidate)
        .bind(total)
        .bind(&request)
        .bind(&actor.user_id)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ())
    })?;
    let plan = Arc::new(Plan {
        run_id: id.clone(),
        tenant_id,
        hook,
        candidate_limits: limits.unwrap_or(active.limits),
        candidate_config: config.map(Arc::new),
        candidate,
        active,
        builtin,
        requested: orders,
        total,
        since,
        budget: Duration::from_millis(u64::try_from(budget_ms).unwrap_or(0)),
    });
    tracing::info!(run = %id, tenant = %slug, hook = hook.as_str(), candidate = %plan.candidate.id(), orders = total, "dry run started");
    let span = tracing::Span::current();
    let runner = state.clone();
    tokio::spawn(tracing::Instrument::instrument(
        async move { execute(runner, plan).await },
        span,
    ));
    let view = DryRunView {
        id: id.clone(),
        tenant: slug.clone(),
        hook: hook.as_str().to_owned(),
        candidate: body.candidate,
        status: RunStatus::Running,
        processed: 0,
        total,
        error: None,
        report: None,
        created_at: rfc3339(now),
        updated_at: rfc3339(now),
    };
    let location = format!("/admin/tenants/{slug}/dry-run/{id}");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

#[derive(Debug, sqlx::FromRow)]
struct RunRow {
    id: String,
    hook: String,
    candidate: String,
    status: String,
    processed: i64,
    total: i64,
    report: Option<String>,
    error: Option<String>,
    created_at: i64,
    updated_at: i64,
}

/// A dry run: `running` with its progress, then `done` with the report (or `failed`).
#[utoipa::path(get, path = "/admin/tenants/{tenant}/dry-run/{id}", tag = "bindings",
    params(("tenant" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = DryRunView), (status = 403, body = ErrorEnvelope),
              (status = 404, description = "DRY_RUN_NOT_FOUND, tenant not found", body = ErrorEnvelope)))]
async fn get_run(
    State(state): State<AppState>,
    actor: AuthUser,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Json<DryRunView>, ApiError> {
    let (tenant_id, slug) = scope(&state, &actor, &tenant).await?;
    let row: Option<RunRow> = with_pool!(&state.store, pool => sqlx::query_as(
        "select id, hook, candidate, status, processed, total, report, error, created_at, \
         updated_at from dry_runs where id = $1 and tenant_id = $2",
    )
    .bind(&id)
    .bind(&tenant_id)
    .fetch_optional(pool)
    .await)?;
    let row = row.ok_or_else(|| ApiError::not_found("DRY_RUN_NOT_FOUND", "no such dry run"))?;
    let mut status = RunStatus::parse(&row.status);
    let mut error = row.error;
    if status == RunStatus::Running && state.clock.now_ms() - row.updated_at > STALE_MS {
        status = RunStatus::Failed;
        error = Some(format!(
            "the replica running it stopped (no progress for {} s)",
            STALE_MS / 1000
        ));
    }
    let report = row
        .report
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(ApiError::internal)?;
    Ok(Json(DryRunView {
        id: row.id,
        tenant: slug,
        hook: row.hook,
        candidate: row.candidate,
        status,
        processed: row.processed,
        total: row.total,
        error,
        report,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    }))
}

/// Everything a run needs, fixed when it starts.
struct Plan {
    run_id: String,
    tenant_id: String,
    hook: Hook,
    active: Arc<Binding>,
    builtin: Arc<Binding>,
    candidate: Arc<CompiledComponent>,
    candidate_config: Option<Arc<BTreeMap<String, String>>>,
    candidate_limits: Limits,
    requested: i64,
    total: i64,
    since: i64,
    budget: Duration,
}

/// A stored order, as replayed.
#[derive(Debug, sqlx::FromRow)]
struct StoredOrder {
    id: String,
    status: String,
    reason: Option<String>,
    total: i64,
    currency: String,
    priority: i64,
    quote: String,
    context: String,
    created_at: i64,
    decision: Option<String>,
}

/// The part of a decision record a replay reads (the record's other fields, and
/// `servedBy` values added later, do not matter here).
#[derive(Debug, Deserialize)]
struct RecordedDecision {
    hooks: Vec<RecordedHook>,
}

#[derive(Debug, Deserialize)]
struct RecordedHook {
    hook: Hook,
    component: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

async fn execute(state: AppState, plan: Arc<Plan>) {
    let run_id = plan.run_id.clone();
    let (status, report, error, processed) = match replay(&state, &plan).await {
        Ok(report) => {
            let processed = i64::try_from(report.processed).unwrap_or(i64::MAX);
            match serde_json::to_string(&report) {
                Ok(json) => (RunStatus::Done, Some(json), None, processed),
                Err(e) => (RunStatus::Failed, None, Some(e.to_string()), processed),
            }
        }
        Err(e) => {
            tracing::warn!(run = %run_id, error = %e, "dry run failed");
            (RunStatus::Failed, None, Some(format!("{e:#}")), 0)
        }
    };
    let now = state.clock.now_ms();
    let stored = with_pool!(&state.store, pool => {
        let _turn = pool.write_turn().await;
        sqlx::query(
            "update dry_runs set status = $1, report = $2, error = $3, \
             processed = case when $4 > processed then $4 else processed end, updated_at = $5 \
             where id = $6",
        )
        .bind(status.as_str())
        .bind(report)
        .bind(error)
        .bind(processed)
        .bind(now)
        .bind(&run_id)
        .execute(pool)
        .await
        .map(|_| ())
    });
    match stored {
        Ok(_) => tracing::info!(run = %run_id, status = status.as_str(), "dry run finished"),
        Err(e) => tracing::error!(run = %run_id, error = %e, "dry run result not stored"),
    }
}

async fn fetch_page(
    store: &Store,
    plan: &Plan,
    cursor: &(i64, String),
    limit: i64,
) -> Result<Vec<StoredOrder>, sqlx::Error> {
    with_pool!(store, pool => sqlx::query_as(
        "select o.id, o.status, o.reason, o.total, o.currency, o.priority, o.quote, o.context, \
         o.created_at, d.decision from orders o \
         left join order_decisions d on d.order_id = o.id \
         where o.tenant_id = $1 and o.created_at >= $2 \
         and (o.created_at < $3 or (o.created_at = $3 and o.id < $4)) \
         order by o.created_at desc, o.id desc limit $5",
    )
    .bind(&plan.tenant_id)
    .bind(plan.since)
    .bind(cursor.0)
    .bind(&cursor.1)
    .bind(limit)
    .fetch_all(pool)
    .await)
}

async fn save_progress(store: &Store, run_id: &str, processed: i64, now: i64) {
    let saved = with_pool!(store, pool => {
        let _turn = pool.write_turn().await;
        sqlx::query("update dry_runs set processed = $1, updated_at = $2 where id = $3")
            .bind(processed)
            .bind(now)
            .bind(run_id)
            .execute(pool)
            .await
            .map(|_| ())
    });
    if let Err(e) = saved {
        tracing::warn!(run = %run_id, error = %e, "dry run progress not stored");
    }
}

/// Reads the orders page by page (the next page while the current one replays) and
/// replays each page on blocking threads, one slice per core.
async fn replay(state: &AppState, plan: &Arc<Plan>) -> anyhow::Result<DryRunReport> {
    let started = Instant::now();
    let deadline = started + plan.budget;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut tally = Tally::default();
    let mut remaining = plan.total;
    let mut cursor = (i64::MAX, String::new());
    let mut page = if remaining > 0 {
        fetch_page(&state.store, plan, &cursor, remaining.min(PAGE)).await?
    } else {
        Vec::new()
    };
    let mut truncated = false;
    while !page.is_empty() {
        remaining -= i64::try_from(page.len()).unwrap_or(i64::MAX);
        if let Some(last) = page.last() {
            cursor = (last.created_at, last.id.clone());
        }
        let next = async {
            if remaining > 0 {
                fetch_page(&state.store, plan, &cursor, remaining.min(PAGE)).await
            } else {
                Ok(Vec::new())
            }
        };
        let (replayed, next) =
            tokio::join!(replay_page(state, plan, page, threads, deadline), next);
        tally.merge(replayed?);
        save_progress(
            &state.store,
            &plan.run_id,
            i64::try_from(tally.processed).unwrap_or(i64::MAX),
            state.clock.now_ms(),
        )
        .await;
        if tally.stopped {
            truncated = true;
            break;
        }
        page = next?;
    }
    Ok(tally.report(plan, truncated, started.elapsed()))
}

async fn replay_page(
    state: &AppState,
    plan: &Arc<Plan>,
    page: Vec<StoredOrder>,
    threads: usize,
    deadline: Instant,
) -> anyhow::Result<Tally> {
    let per_thread = page.len().div_ceil(threads.max(1)).max(1);
    let mut slices = Vec::with_capacity(threads);
    let mut page = page.into_iter();
    loop {
        let slice: Vec<StoredOrder> = page.by_ref().take(per_thread).collect();
        if slice.is_empty() {
            break;
        }
        slices.push(slice);
    }
    let span = tracing::Span::current();
    let tasks: Vec<_> = slices
        .into_iter()
        .map(|slice| {
            let (runtime, plan, span) = (state.policy.clone(), plan.clone(), span.clone());
            tokio::task::spawn_blocking(move || {
                span.in_scope(|| {
                    let mut tally = Tally::default();
                    for order in &slice {
                        if Instant::now() >= deadline {
                            tally.stopped = true;
                            break;
                        }
                        replay_order(&runtime, &plan, order, &mut tally);
                    }
                    tally
                })
            })
        })
        .collect();
    let mut tally = Tally::default();
    // Slices are merged in page order, so the examples stay newest first.
    for task in tasks {
        tally.merge(task.await?);
    }
    Ok(tally)
}

/// What one side decided on one order.
#[derive(Debug, Clone)]
enum Answer {
    Accept,
    Reject(String),
    Quote(Quote),
    Priority(u32),
}

impl Answer {
    fn accepts(&self) -> bool {
        !matches!(self, Self::Reject(_))
    }

    fn describe(&self) -> String {
        match self {
            Self::Accept => "accepted".into(),
            Self::Reject(why) => format!("rejected: {why}"),
            Self::Quote(q) => format!("total {} {}", q.total, q.currency),
            Self::Priority(p) => format!("priority {p}"),
        }
    }
}

struct Side {
    answer: Answer,
    fuel: u64,
    latency_us: u64,
    fault: Option<FaultKind>,
}

/// Runs one side as a live call would: the component, then on failure the built-in when
/// `on_error` says fallback; a failure that rejects rejects the order.
fn run_side(
    runtime: &PolicyRuntime,
    plan: &Plan,
    component: &CompiledComponent,
    config: Arc<BTreeMap<String, String>>,
    limits: Limits,
    ctx: &OrderContext,
) -> Side {
    let started = Instant::now();
    let hook = plan.hook;
    let (result, fault) = match runtime.replay_call(component, config, limits, ctx, hook) {
        Ok(outcome) => (Ok(outcome), None),
        Err(fault) if plan.active.on_error == OnError::Fallback => {
            let builtin = &plan.builtin;
            let outcome = runtime.replay_call(
                &builtin.component,
                builtin.config.clone(),
                builtin.limits,
                ctx,
                hook,
            );
            (outcome, Some(fault.kind))
        }
        Err(fault) => (Err(fault.clone()), Some(fault.kind)),
    };
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let (answer, fuel) = match result {
        Err(fault) => (
            Answer::Reject(format!("failed ({})", fault.kind)),
            fault.fuel_used,
        ),
        Ok(outcome) => {
            let answer = match outcome.output {
                HookOutput::Violations(v) if v.is_empty() => Answer::Accept,
                HookOutput::Violations(v) => Answer::Reject(
                    v.iter()
                        .map(|v| v.code.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                // The host refuses a price above the client's ceiling.
                HookOutput::Quote(Ok(q)) if ctx.expected_total.is_some_and(|e| q.total > e) => {
                    Answer::Reject(format!("PRICE_MISMATCH (total {})", q.total))
                }
                HookOutput::Quote(Ok(q)) => Answer::Quote(q),
                HookOutput::Quote(Err(
                    PricingRefusal::InvalidInput(m)
                    | PricingRefusal::Unsupported(m)
                    | PricingRefusal::Internal(m),
                )) => Answer::Reject(format!("PRICING_REFUSED ({m})")),
                HookOutput::Priority(p) => Answer::Priority(p),
            };
            (answer, outcome.fuel_used)
        }
    };
    Side {
        answer,
        fuel,
        latency_us,
        fault,
    }
}

fn replay_order(runtime: &PolicyRuntime, plan: &Plan, order: &StoredOrder, tally: &mut Tally) {
    tally.processed += 1;
    let ctx: OrderContext = match serde_json::from_str(&order.context) {
        Ok(ctx) => ctx,
        Err(e) => {
            // A context this version cannot read: counted, never replayed half-way.
            tally.unreadable += 1;
            tracing::debug!(order = %order.id, error = %e, "stored context unreadable");
            return;
        }
    };
    let active_id = plan.active.component.id();
    let recorded = order
        .decision
        .as_deref()
        .and_then(|d| serde_json::from_str::<RecordedDecision>(d).ok())
        .and_then(|d| d.hooks.into_iter().find(|h| h.hook == plan.hook))
        .filter(|h| h.component == active_id);
    let config = match recorded {
        Some(h) => {
            tally.exact += 1;
            Arc::new(h.config)
        }
        None => {
            tally.inexact += 1;
            plan.active.config.clone()
        }
    };
    let active = run_side(
        runtime,
        plan,
        &plan.active.component,
        config.clone(),
        plan.active.limits,
        &ctx,
    );
    let candidate = run_side(
        runtime,
        plan,
        &plan.candidate,
        plan.candidate_config.clone().unwrap_or(config),
        plan.candidate_limits,
        &ctx,
    );
    tally.record(plan.hook, order, &active, &candidate);
}

/// Partial results of a slice of orders; merged in order.
#[derive(Default)]
struct Tally {
    processed: u64,
    exact: u64,
    inexact: u64,
    unreadable: u64,
    changed: u64,
    accept_to_reject: ChangeKind,
    reject_to_accept: ChangeKind,
    price_changes: ChangeKind,
    priority_changes: ChangeKind,
    active_mismatches: ChangeKind,
    deltas: Vec<i64>,
    errors: Errors,
    fuel: [Vec<u64>; 2],
    latency: [Vec<u64>; 2],
    stopped: bool,
}

fn outcome_label(order: &StoredOrder) -> String {
    match &order.reason {
        Some(reason) if order.status == "FAILED" => format!("FAILED:{reason}"),
        _ => order.status.clone(),
    }
}

impl ChangeKind {
    /// Counts `order` under its real outcome; `price_delta` adds to the money delta.
    fn add(
        &mut self,
        order: &StoredOrder,
        active: String,
        candidate: String,
        delta: Option<i64>,
        price_delta: bool,
    ) {
        self.count += 1;
        let tally = self.by_outcome.entry(outcome_label(order)).or_default();
        tally.orders += 1;
        tally.total += order.total;
        if price_delta {
            tally.delta += delta.unwrap_or(0);
        }
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(ChangeExample {
                order_id: order.id.clone(),
                status: order.status.clone(),
                reason: order.reason.clone(),
                total: order.total,
                currency: order.currency.clone(),
                placed_at: rfc3339(order.created_at),
                active,
                candidate,
                delta,
            });
        }
    }

    fn merge(&mut self, other: ChangeKind) {
        self.count += other.count;
        for (label, t) in other.by_outcome {
            let mine = self.by_outcome.entry(label).or_default();
            mine.orders += t.orders;
            mine.total += t.total;
            mine.delta += t.delta;
        }
        let room = MAX_EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
    }
}

/// Whether the stored decision is what the active side's replay decided.
fn matches_stored(hook: Hook, order: &StoredOrder, active: &Answer) -> bool {
    match (hook, active) {
        (Hook::Validation, Answer::Accept) => true,
        (Hook::Pricing, Answer::Quote(q)) => serde_json::from_str::<Quote>(&order.quote)
            .is_ok_and(|stored| stored.total == q.total && stored.lines == q.lines),
        (Hook::Prioritization, Answer::Priority(p)) => i64::from(*p) == order.priority,
        _ => false,
    }
}

impl Tally {
    fn record(&mut self, hook: Hook, order: &StoredOrder, active: &Side, candidate: &Side) {
        for (i, side) in [active, candidate].into_iter().enumerate() {
            self.fuel[i].push(side.fuel);
            self.latency[i].push(side.latency_us);
            if let Some(kind) = side.fault {
                let errors = if i == 0 {
                    &mut self.errors.active
                } else {
                    &mut self.errors.candidate
                };
                *errors.entry(kind.as_str().to_owned()).or_default() += 1;
            }
        }
        let (a, c) = (&active.answer, &candidate.answer);
        if !matches_stored(hook, order, a) {
            // Shown as stored → replayed.
            let stored = match hook {
                Hook::Validation => "accepted".to_owned(),
                Hook::Pricing => format!("total {} {}", order.total, order.currency),
                Hook::Prioritization => format!("priority {}", order.priority),
            };
            self.active_mismatches
                .add(order, stored, a.describe(), None, false);
        }
        let changed = match (a, c) {
            (a, c) if a.accepts() && !c.accepts() => {
                self.accept_to_reject
                    .add(order, a.describe(), c.describe(), None, false);
                true
            }
            (a, c) if !a.accepts() && c.accepts() => {
                self.reject_to_accept
                    .add(order, a.describe(), c.describe(), None, false);
                true
            }
            (Answer::Quote(qa), Answer::Quote(qc)) if qa.total != qc.total => {
                let delta = qc.total - qa.total;
                self.deltas.push(delta);
                self.price_changes
                    .add(order, a.describe(), c.describe(), Some(delta), true);
                true
            }
            (Answer::Priority(pa), Answer::Priority(pc)) if pa != pc => {
                let delta = i64::from(*pc) - i64::from(*pa);
                self.priority_changes
                    .add(order, a.describe(), c.describe(), Some(delta), false);
                true
            }
            _ => false,
        };
        if changed {
            self.changed += 1;
        }
    }

    fn merge(&mut self, other: Tally) {
        self.processed += other.processed;
        self.exact += other.exact;
        self.inexact += other.inexact;
        self.unreadable += other.unreadable;
        self.changed += other.changed;
        self.accept_to_reject.merge(other.accept_to_reject);
        self.reject_to_accept.merge(other.reject_to_accept);
        self.price_changes.merge(other.price_changes);
        self.priority_changes.merge(other.priority_changes);
        self.active_mismatches.merge(other.active_mismatches);
        self.deltas.extend(other.deltas);
        for (kind, n) in other.errors.active {
            *self.errors.active.entry(kind).or_default() += n;
        }
        for (kind, n) in other.errors.candidate {
            *self.errors.candidate.entry(kind).or_default() += n;
        }
        for i in 0..2 {
            self.fuel[i].extend(&other.fuel[i]);
            self.latency[i].extend(&other.latency[i]);
        }
        self.stopped |= other.stopped;
    }

    fn report(mut self, plan: &Plan, truncated: bool, elapsed: Duration) -> DryRunReport {
        let side = |i: usize, tally: &mut Tally| SidePerformance {
            fuel: quantiles(&mut tally.fuel[i]),
            latency_us: quantiles(&mut tally.latency[i]),
        };
        let performance = Performance {
            active: side(0, &mut self),
            candidate: side(1, &mut self),
        };
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let orders_per_second = if elapsed.is_zero() {
            0
        } else {
            (self.processed as f64 / elapsed.as_secs_f64()) as u64
        };
        if self.unreadable > 0 {
            tracing::warn!(run = %plan.run_id, unreadable = self.unreadable, "stored contexts this version cannot read were skipped");
        }
        DryRunReport {
            hook: plan.hook,
            active: SideInfo {
                component: plan.active.component.id(),
                sha256: plan.active.component.sha256.clone(),
                config: None,
                limits: plan.active.limits.into(),
                on_error: plan.active.on_error,
            },
            candidate: SideInfo {
                component: plan.candidate.id(),
                sha256: plan.candidate.sha256.clone(),
                config: plan.candidate_config.as_deref().cloned(),
                limits: plan.candidate_limits.into(),
                on_error: plan.active.on_error,
            },
            requested: plan.requested,
            total: plan.total,
            processed: self.processed,
            exact: self.exact,
            inexact: self.inexact + self.unreadable,
            truncated,
            elapsed_ms,
            orders_per_second,
            changed: self.changed,
            price_deltas: price_deltas(&self.deltas),
            accept_to_reject: self.accept_to_reject,
            reject_to_accept: self.reject_to_accept,
            price_changes: self.price_changes,
            priority_changes: self.priority_changes,
            active_mismatches: self.active_mismatches,
            errors: self.errors,
            performance,
        }
    }
}

/// Nearest-rank percentiles; sorts `samples`.
fn quantiles(samples: &mut [u64]) -> Quantiles {
    if samples.is_empty() {
        return Quantiles::default();
    }
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    Quantiles {
        p50: at(0.5),
        p99: at(0.99),
        max: samples[samples.len() - 1],
    }
}

/// Bucket bounds of the histogram (minor units), symmetric around 0.
const BUCKETS: [(Option<i64>, Option<i64>); 8] = [
    (None, Some(-10_000)),
    (Some(-9_999), Some(-1_000)),
    (Some(-999), Some(-100)),
    (Some(-99), Some(-1)),
    (Some(1), Some(99)),
    (Some(100), Some(999)),
    (Some(1_000), Some(9_999)),
    (Some(10_000), None),
];

fn price_deltas(deltas: &[i64]) -> PriceDeltas {
    let histogram = BUCKETS
        .iter()
        .map(|&(from, to)| DeltaBucket {
            from,
            to,
            count: deltas
                .iter()
                .filter(|d| from.is_none_or(|f| **d >= f) && to.is_none_or(|t| **d <= t))
                .count() as u64,
        })
        .collect();
    PriceDeltas {
        increased: deltas.iter().filter(|d| **d > 0).count() as u64,
        decreased: deltas.iter().filter(|d| **d < 0).count() as u64,
        sum: deltas.iter().sum(),
        max_increase: deltas.iter().copied().filter(|d| *d > 0).max().unwrap_or(0),
        max_decrease: deltas.iter().copied().filter(|d| *d < 0).min().unwrap_or(0),
        max_abs: deltas.iter().map(|d| d.abs()).max().unwrap_or(0),
        histogram,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_rfc3339_and_epoch_milliseconds() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01Z"), Some(1_000));
        assert_eq!(
            parse_rfc3339("2025-01-31T00:00:00.250Z"),
            Some(1_738_281_600_250)
        );
        assert_eq!(
            parse_rfc3339("2025-01-31T02:00:00+02:00"),
            Some(1_738_281_600_000)
        );
        assert_eq!(parse_rfc3339("2025-13-31T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_since(Some(&serde_json::json!(42))).ok(), Some(42));
    }

    #[test]
    fn deltas_fall_in_their_buckets() {
        let d = price_deltas(&[-200, -95, 5, 10_000]);
        assert_eq!((d.increased, d.decreased, d.sum), (2, 2, 9_710));
        assert_eq!(
            (d.max_increase, d.max_decrease, d.max_abs),
            (10_000, -200, 10_000)
        );
        let counts: Vec<u64> = d.histogram.iter().map(|b| b.count).collect();
        assert_eq!(counts, [0, 0, 1, 1, 1, 0, 0, 1]);
    }
}
