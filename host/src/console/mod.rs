//! The operator console: a small page served from the binary (`GET /admin/console`, its
//! login page and its static files, no CDN, no inline script) and the one JSON endpoint
//! it polls, `GET /admin/console/state`, which gathers what the other modules already
//! compute — the queue as `/health` sees it, the dead letters, each tenant's effective
//! bindings with their rollout, breakers and history, the replicas. The page's buttons
//! call the existing APIs (dead-letter retry/discard, binding rollback) with the
//! browser's cookies; the CSRF guard accepts them because `fetch` sends our `Origin`.
//!
//! Breakers, shadow reports and the canary's live counters are per process: the state
//! says which replica answered.

use axum::{
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{AuthUser, Role},
    clock::rfc3339,
    http::{
        error::{ApiError, ErrorEnvelope},
        extract::{Json, Query},
        health::{QueueHealth, queue_health},
    },
    policy::breaker::HookBreaker,
    queue::dead_letters::DeadLetterView,
    registry::{
        bindings::{BindingView, HistoryEntry},
        fanout::ReplicasView,
    },
    state::AppState,
    store::Store,
    tenants::{self, TenantRow},
    users, with_pool,
};

/// Where the page lives.
pub const CONSOLE_PATH: &str = "/admin/console";
/// Where an unauthenticated browser is sent.
pub const LOGIN_PATH: &str = "/admin/console/login";

/// What the browser may load on the console's pages: our own files only, no inline
/// script or style, no frames, forms posting nowhere else.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

const CONSOLE_HTML: &str = include_str!("console.html");
const CONSOLE_JS: &str = include_str!("console.js");
const CONSOLE_CSS: &str = include_str!("console.css");
const LOGIN_HTML: &str = include_str!("login.html");
const LOGIN_JS: &str = include_str!("login.js");

/// Throughput and time-to-final cover this much of the recent past.
const WINDOW_MS: i64 = 5 * 60_000;
/// At most this many of the latest order events are read for them (a range of the
/// primary key: the query stays bounded however large the table grows).
const EVENT_SCAN: i64 = 20_000;
/// Failed orders listed.
const RECENT_FAILURES: i64 = 10;
/// Dead letters listed (the total is always given).
const DEAD_LETTERS_SHOWN: i64 = 50;
/// Binding changes listed per tenant.
const HISTORY_SHOWN: i64 = 10;
/// Tenants whose bindings an operator sees at once without `?tenant=`.
const TENANTS_SHOWN: i64 = 10;
/// Tenants offered in the page's tenant picker.
const TENANTS_LISTED: i64 = 200;

/// The routes of the console. The state endpoint is documented; the pages and files are
/// not API.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(console_state))
        .route(CONSOLE_PATH, get(console_page))
        .route(LOGIN_PATH, get(login_page))
        .route(
            "/admin/console/assets/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", CONSOLE_JS) }),
        )
        .route(
            "/admin/console/assets/login.js",
            get(|| async { asset("text/javascript; charset=utf-8", LOGIN_JS) }),
        )
        .route(
            "/admin/console/assets/console.css",
            get(|| async { asset("text/css; charset=utf-8", CONSOLE_CSS) }),
        )
}

/// An HTML page with the console's security headers.
fn page(html: &'static str) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response();
    secure(&mut response);
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response();
    secure(&mut response);
    response
}

fn secure(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// The console for admins and operators; a browser without a valid session goes to the
/// login page (303), a customer gets 403.
async fn console_page(
    State(state): State<AppState>,
    actor: Result<AuthUser, ApiError>,
) -> Response {
    let Ok(actor) = actor else {
        return Redirect::to(LOGIN_PATH).into_response();
    };
    match actor.require_admin(&state.store).await {
        Ok(_) => page(CONSOLE_HTML),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => Redirect::to(LOGIN_PATH).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The sign-in form; it posts to `POST /auth/login`, which sets the cookies.
async fn login_page() -> Response {
    page(LOGIN_HTML)
}

/// Which tenant the console shows.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsoleQuery {
    /// Tenant slug. Operators: one tenant (default: every tenant, bindings of the first
    /// ten); admins: their own only (another slug is 404).
    pub tenant: Option<String>,
}

/// Everything the console shows, gathered in one answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleState {
    /// When this was gathered (RFC 3339, the service's clock).
    pub generated_at: String,
    /// The replica that answered: breakers, shadow reports and canary counters are its own.
    pub replica: String,
    /// Who is looking.
    pub viewer: Viewer,
    /// The tenant shown; `null`: every tenant (operators).
    pub tenant: Option<String>,
    /// Tenants the viewer may pick (an admin: its own).
    pub tenants: Vec<String>,
    /// The order queue and the order flow.
    pub queue: ConsoleQueue,
    /// Dead letters, most recently dead first.
    pub dead_letters: DeadLetters,
    /// Per tenant: bindings, breakers, latest changes.
    pub bindings: Vec<TenantBindings>,
    /// Tenants whose bindings are not shown (pick one with `?tenant=`).
    pub tenants_not_shown: i64,
    /// The replicas and the bindings revision each serves.
    pub replicas: ReplicasView,
}

/// The signed-in user.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Viewer {
    /// Email.
    pub email: String,
    /// `admin` or `operator`.
    pub role: Role,
    /// The user's own tenant (slug).
    pub tenant: String,
}

/// The queue (the whole platform's, as `/health` reports it) and the flow of orders of
/// the tenant shown.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleQueue {
    /// Depth per priority, in flight, dead letters, outbox.
    #[serde(flatten)]
    pub depth: QueueHealth,
    /// The window of the figures below, minutes.
    pub window_minutes: i64,
    /// Orders confirmed by the queue in the window.
    pub confirmed: i64,
    /// Orders failed in the window.
    pub failed: i64,
    /// Settled (confirmed + failed) per minute over the window.
    pub per_minute: f64,
    /// From placement to CONFIRMED or FAILED, ms (`null`: nothing settled).
    pub time_to_final_ms: Option<Percentiles>,
    /// `true` when the window held more events than are read: the figures cover only the
    /// latest part of it.
    pub sampled: bool,
    /// The latest failed orders.
    pub recent_failures: Vec<RecentFailure>,
}

/// A distribution, ms.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Percentiles {
    /// Median.
    pub p50: i64,
    /// 95th percentile.
    pub p95: i64,
    /// Largest.
    pub max: i64,
}

/// One failed order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecentFailure {
    /// The order.
    pub order_id: String,
    /// Its tenant (slug).
    pub tenant: String,
    /// Why it failed.
    pub reason: Option<String>,
    /// Its status now (a retried dead letter may be CONFIRMED since).
    pub status: String,
    /// When it failed (RFC 3339).
    pub failed_at: String,
}

#[derive(sqlx::FromRow)]
struct FailureRow {
    order_id: String,
    tenant: String,
    reason: Option<String>,
    status: String,
    failed_ms: i64,
}

impl From<FailureRow> for RecentFailure {
    fn from(row: FailureRow) -> Self {
        Self {
            order_id: row.order_id,
            tenant: row.tenant,
            reason: row.reason,
            status: row.status,
            failed_at: rfc3339(row.failed_ms),
        }
    }
}

/// The dead letters shown.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetters {
    /// How many there are.
    pub total: i64,
    /// The latest ones (at most 50).
    pub items: Vec<DeadLetterView>,
}

/// One tenant's bindings as this replica serves them.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantBindings {
    /// Tenant slug.
    pub tenant: String,
    /// The tenant's latest bindings revision (0: never bound over the API).
    pub revision: i64,
    /// One per hook: component, source, revision, canary, shadow.
    pub bindings: Vec<BindingView>,
    /// One per hook: this replica's breaker of the bound component.
    pub breakers: Vec<HookBreaker>,
    /// The latest changes, newest first.
    pub history: Vec<HistoryEntry>,
}

/// What the operator console shows, in one answer: the queue (the platform's depth; the
/// shown tenant's throughput, time to final and failures over the last minutes), dead
/// letters, each tenant's bindings with canary, shadow, breaker and latest changes, and
/// the replicas. Admins: their own tenant; operators: every tenant or `?tenant=`.
#[utoipa::path(get, path = "/admin/console/state", tag = "console", params(ConsoleQuery),
    responses((status = 200, body = ConsoleState),
              (status = 401, body = ErrorEnvelope),
              (status = 403, description = "customers", body = ErrorEnvelope),
              (status = 404, description = "no such tenant (or another tenant, for an admin)", body = ErrorEnvelope),
              (status = 503, description = "QUEUE_UNAVAILABLE, DEPENDENCY_UNAVAILABLE", body = ErrorEnvelope)))]
async fn console_state(
    State(state): State<AppState>,
    actor: AuthUser,
    Query(query): Query<ConsoleQuery>,
) -> Result<Json<ConsoleState>, ApiError> {
    let named = query
        .tenant
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let scope = tenants::admin_scope(&state.store, &actor, named).await?;
    let me = users::find_by_id(&state.store, &actor.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("the account no longer exists"))?;
    let all = scope.actor_role == Role::Operator && named.is_none();
    let filter = (!all).then_some(scope.tenant_id.as_str());

    // The tenants shown, and those the viewer may pick.
    let (shown, not_shown, pickable) = if all {
        let listed = list_tenants(&state.store, TENANTS_LISTED).await?;
        let total = count_tenants(&state.store).await?;
        let shown: Vec<TenantRow> = listed
            .iter()
            .take(TENANTS_SHOWN as usize)
            .cloned()
            .collect();
        let not_shown = total - shown.len() as i64;
        (
            shown,
            not_shown,
            listed.into_iter().map(|t| t.slug).collect(),
        )
    } else {
        let row = tenants::find_by_id(&state.store, &scope.tenant_id)
            .await?
            .ok_or_else(|| tenants::not_found(named.unwrap_or_default()))?;
        let pickable = if scope.actor_role == Role::Operator {
            list_tenants(&state.store, TENANTS_LISTED)
                .await?
                .into_iter()
                .map(|t| t.slug)
                .collect()
        } else {
            vec![row.slug.clone()]
        };
        (vec![row], 0, pickable)
    };

    let now = state.clock.now_ms();
    let flow = flow(&state.store, filter, now).await?;
    let (dead, dead_total) =
        crate::queue::dead_letters::list(&state, filter, DEAD_LETTERS_SHOWN, 0).await?;
    let mut bindings = Vec::with_capacity(shown.len());
    for tenant in shown {
        let view =
            crate::registry::bindings::effective(&state, &tenant.id, tenant.slug.clone()).await?;
        let breakers = crate::policy::breaker::view(&state, tenant.slug.clone()).breakers;
        let history =
            crate::registry::bindings::recent_history(&state.store, &tenant.id, HISTORY_SHOWN)
                .await?;
        bindings.push(TenantBindings {
            tenant: view.tenant,
            revision: view.revision,
            bindings: view.bindings,
            breakers,
            history,
        });
    }
    let mut replicas = state.fanout.replicas(&state.policy, now).await;
    if scope.actor_role != Role::Operator {
        // An admin sees its own tenant's revision on each replica, no other tenant's slug.
        for replica in &mut replicas.replicas {
            replica.tenants.retain(|slug, _| *slug == me.tenant_slug);
        }
    }
    Ok(Json(ConsoleState {
        generated_at: rfc3339(now),
        replica: state.fanout.id().to_owned(),
        viewer: Viewer {
            email: me.email,
            role: scope.actor_role,
            tenant: me.tenant_slug,
        },
        tenant: if all {
            None
        } else {
            bindings.first().map(|b| b.tenant.clone())
        },
        tenants: pickable,
        queue: ConsoleQueue {
            depth: queue_health(&state).await,
            window_minutes: WINDOW_MS / 60_000,
            confirmed: flow.confirmed,
            failed: flow.failed,
            per_minute: flow.per_minute,
            time_to_final_ms: flow.time_to_final,
            sampled: flow.sampled,
            recent_failures: flow.failures,
        },
        dead_letters: DeadLetters {
            total: dead_total,
            items: dead,
        },
        bindings,
        tenants_not_shown: not_shown,
        replicas,
    }))
}

async fn list_tenants(store: &Store, limit: i64) -> Result<Vec<TenantRow>, sqlx::Error> {
    with_pool!(store, pool => sqlx::query_as::<_, TenantRow>(
        "select id, slug, name, created_at, updated_at from tenants order by created_at, slug limit $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await)
}

async fn count_tenants(store: &Store) -> Result<i64, sqlx::Error> {
    with_pool!(store, pool => sqlx::query_scalar("select count(*) from tenants")
        .fetch_one(pool)
        .await)
}

/// The order flow over the window.
struct Flow {
    confirmed: i64,
    failed: i64,
    per_minute: f64,
    time_to_final: Option<Percentiles>,
    sampled: bool,
    failures: Vec<RecentFailure>,
}

#[derive(sqlx::FromRow)]
struct Settled {
    status: String,
    settled_at: i64,
    placed_at: i64,
}

/// Throughput, time to final and the latest failures of one tenant (`None`: all), read
/// from the order events. Settling an order appends an event, so the latest events are a
/// range of `order_events`' primary key: reading at most [`EVENT_SCAN`] of them keeps
/// this bounded without an index on `orders.final_at` (which would cost every settlement
/// its HOT update, see migration 0005).
async fn flow(store: &Store, tenant_id: Option<&str>, now: i64) -> Result<Flow, sqlx::Error> {
    let since = now - WINDOW_MS;
    let (settled, before, failures) = with_pool!(store, pool => {
        let top: Option<i64> = sqlx::query_scalar("select max(seq) from order_events")
            .fetch_one(pool)
            .await?;
        let floor = top.unwrap_or(0) - EVENT_SCAN;
        let settled: Vec<Settled> = sqlx::query_as(
            "select e.status, e.created_at as settled_at, o.created_at as placed_at \
             from order_events e join orders o on o.id = e.order_id \
             where e.seq > $1 and e.created_at >= $2 and e.status in ('CONFIRMED', 'FAILED') \
             and e.tenant_id = coalesce($3, e.tenant_id)",
        )
        .bind(floor)
        .bind(since)
        .bind(tenant_id)
        .fetch_all(pool)
        .await?;
        // The newest event left out: when it is older than the window, nothing was.
        let before: Option<i64> = sqlx::query_scalar(
            "select created_at from order_events where seq <= $1 order by seq desc limit 1",
        )
        .bind(floor)
        .fetch_optional(pool)
        .await?;
        let failures: Vec<FailureRow> = sqlx::query_as(
            "select e.order_id, t.slug as tenant, e.reason, o.status, e.created_at as failed_ms \
             from order_events e join orders o on o.id = e.order_id \
             join tenants t on t.id = e.tenant_id \
             where e.seq > $1 and e.status = 'FAILED' and e.tenant_id = coalesce($2, e.tenant_id) \
             order by e.seq desc limit $3",
        )
        .bind(floor)
        .bind(tenant_id)
        .bind(RECENT_FAILURES)
        .fetch_all(pool)
        .await?;
        (settled, before, failures)
    });
    let sampled = before.is_some_and(|t| t >= since);
    // A sampled window covers only the time since the newest event left out.
    let covered_ms = (now - before.filter(|_| sampled).unwrap_or(since)).max(1);
    let confirmed = settled.iter().filter(|s| s.status == "CONFIRMED").count() as i64;
    let failed = settled.len() as i64 - confirmed;
    let mut durations: Vec<i64> = settled
        .iter()
        .map(|s| (s.settled_at - s.placed_at).max(0))
        .collect();
    durations.sort_unstable();
    let at = |q: f64| durations[((durations.len() - 1) as f64 * q).round() as usize];
    let time_to_final = (!durations.is_empty()).then(|| Percentiles {
        p50: at(0.5),
        p95: at(0.95),
        max: at(1.0),
    });
    Ok(Flow {
        confirmed,
        failed,
        per_minute: (confirmed + failed) as f64 * 60_000.0 / covered_ms as f64,
        time_to_final,
        sampled,
        failures: failures.into_iter().map(Into::into).collect(),
    })
}
