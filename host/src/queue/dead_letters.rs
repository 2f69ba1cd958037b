//! The dead-letter queue over HTTP, on either queue backend: `GET /admin/dead-letters`,
//! `POST /admin/dead-letters/{orderId}/retry` and `…/discard`. Tenant admins see and act
//! on their own tenant's dead letters, operators on every tenant's.
//!
//! A dead letter is a job that used up its attempts; its order is FAILED
//! `RETRIES_EXHAUSTED`. The order row, not the queue entry, says what may be done (the
//! queue entry can outlive a write, e.g. when Redis fails after a commit):
//!
//! | action | order (one write transaction) | queue |
//! |---|---|---|
//! | retry | FAILED `RETRIES_EXHAUSTED` → PENDING, event PENDING `RETRIED` | [`super::requeue_in`] in the same transaction: a fresh `jobs` row, or a `retry` outbox row whose push revives the dead job with fresh attempts |
//! | discard | FAILED `RETRIES_EXHAUSTED` → FAILED `DISCARDED`, event FAILED `DISCARDED`, any stock the order's movements still hold released | the `jobs` row goes in the same transaction; a Redis entry goes after the commit (if that fails: 503, and discarding again removes it) |
//!
//! Any other order state: retry answers 409 `NOT_DEAD`, discard 404 `NOT_DEAD`. Another
//! tenant's order is 404 `ORDER_NOT_FOUND`, exactly like a missing one.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{DeadJob, NewJob, QueueError, QueueKind};
use crate::{
    auth::{AuthUser, Role},
    clock::rfc3339,
    http::{
        error::{ApiError, ErrorEnvelope},
        extract::{Json, Path, Query},
        pagination::{Page, PageQuery},
    },
    orders::{
        LINE_COLUMNS, LineRow, ORDER_COLUMNS, OrderRow, OrderStatus, OrderView, record_event,
    },
    state::AppState,
    store::{Store, WritePool as _},
    tenants, with_pool,
};

/// The reason of an order whose job died.
pub const RETRIES_EXHAUSTED: &str = "RETRIES_EXHAUSTED";
/// The reason of a dead letter's order an admin gave up on (the order stays FAILED).
pub const DISCARDED: &str = "DISCARDED";
/// The reason on the PENDING event of a dead letter's order queued again.
pub const RETRIED: &str = "RETRIED";

/// The routes of this file.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_dead_letters))
        .routes(routes!(retry_dead_letter))
        .routes(routes!(discard_dead_letter))
}

/// One dead letter: the dead job and its order as they are now.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterView {
    /// The order.
    pub order_id: String,
    /// The order's tenant (slug; the id when the tenant row is gone).
    pub tenant: String,
    /// The order's status now (`null` when the order row is missing).
    pub status: Option<OrderStatus>,
    /// The order's reason now (`RETRIES_EXHAUSTED` until someone acts).
    pub reason: Option<String>,
    /// The order's total, minor units.
    pub total: Option<i64>,
    /// Currency of the total.
    pub currency: Option<String>,
    /// Queue priority (higher first).
    pub priority: i64,
    /// Attempts made.
    pub attempts: i32,
    /// The error of the last attempt.
    pub last_error: Option<String>,
    /// When the first attempt started (RFC 3339; `null` when unknown).
    pub first_attempt_at: Option<String>,
    /// When the last attempt failed and the job died (RFC 3339).
    pub last_attempt_at: String,
}

/// Which tenant's dead letters to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Tenant slug. Operators: one tenant's (default: every tenant's); admins: their own
    /// tenant only (another slug is 404).
    pub tenant: Option<String>,
}

/// The order's columns a dead letter shows, with its tenant's slug.
#[derive(sqlx::FromRow)]
struct OrderSummary {
    id: String,
    #[sqlx(try_from = "String")]
    status: OrderStatus,
    reason: Option<String>,
    total: i64,
    currency: String,
    slug: String,
}

/// List dead letters, most recently dead first (tenant admin: its tenant's; operator:
/// every tenant's, or `?tenant=`'s).
#[utoipa::path(get, path = "/admin/dead-letters", tag = "queue", params(DeadLetterQuery, PageQuery),
    responses((status = 200, body = Page<DeadLetterView>),
              (status = 403, body = ErrorEnvelope),
              (status = 404, description = "no such tenant (or another tenant, for an admin)", body = ErrorEnvelope),
              (status = 503, description = "QUEUE_UNAVAILABLE: the queue did not answer", body = ErrorEnvelope)))]
async fn list_dead_letters(
    State(state): State<AppState>,
    actor: AuthUser,
    Query(query): Query<DeadLetterQuery>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<DeadLetterView>>, ApiError> {
    let named = query
        .tenant
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let scope = tenants::admin_scope(&state.store, &actor, named).await?;
    let tenant = match (scope.actor_role, named) {
        (Role::Operator, None) => None,
        _ => Some(scope.tenant_id.as_str()),
    };
    let (items, total) = list(&state, tenant, page.limit(), page.offset()).await?;
    Ok(Json(Page::new(page, items, total)))
}

/// Dead letters of one tenant (every tenant's with `None`), most recently dead first,
/// with their orders, and how many there are in all: what `GET /admin/dead-letters`
/// lists and the operator console shows.
pub(crate) async fn list(
    state: &AppState,
    tenant_id: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<DeadLetterView>, i64), ApiError> {
    let (jobs, total) = state
        .queue
        .dead(tenant_id, limit, offset)
        .await
        .map_err(queue_unavailable)?;
    Ok((describe(&state.store, jobs).await?, total))
}

/// Joins dead jobs with their orders and tenants, keeping the queue's order.
async fn describe(store: &Store, jobs: Vec<DeadJob>) -> Result<Vec<DeadLetterView>, sqlx::Error> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let ids = jobs.iter().map(|j| j.order_id.clone()).collect();
    let orders: std::collections::HashMap<String, OrderSummary> = with_pool!(store, pool => {
        let mut q = sqlx::QueryBuilder::new(
            "select o.id, o.status, o.reason, o.total, o.currency, t.slug from orders o \
             join tenants t on t.id = o.tenant_id where ",
        );
        pool.push_any(&mut q, "o.id", ids);
        q.build_query_as::<OrderSummary>().fetch_all(pool).await?
    })
    .into_iter()
    .map(|o| (o.id.clone(), o))
    .collect();
    Ok(jobs
        .into_iter()
        .map(|job| {
            let order = orders.get(&job.order_id);
            DeadLetterView {
                tenant: order.map_or_else(|| job.tenant_id.clone(), |o| o.slug.clone()),
                status: order.map(|o| o.status),
                reason: order.and_then(|o| o.reason.clone()),
                total: order.map(|o| o.total),
                currency: order.map(|o| o.currency.clone()),
                priority: job.priority,
                attempts: job.attempts,
                last_error: job.last_error,
                first_attempt_at: job.first_attempt_at.map(rfc3339),
                last_attempt_at: rfc3339(job.last_attempt_at),
                order_id: job.order_id,
            }
        })
        .collect())
}

/// Queue a dead letter's order again: PENDING with a `RETRIED` event and a fresh job, in
/// one transaction. 409 `NOT_DEAD` unless the order is FAILED `RETRIES_EXHAUSTED`.
#[utoipa::path(post, path = "/admin/dead-letters/{orderId}/retry", tag = "queue",
    params(("orderId" = String, Path, description = "The dead letter's order")),
    responses((status = 202, description = "queued again", body = OrderView),
              (status = 403, body = ErrorEnvelope),
              (status = 404, description = "ORDER_NOT_FOUND (also another tenant's)", body = ErrorEnvelope),
              (status = 409, description = "NOT_DEAD: the order is not FAILED RETRIES_EXHAUSTED", body = ErrorEnvelope)))]
async fn retry_dead_letter(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(order_id): Path<String>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    let role = actor.require_admin(&state.store).await?;
    let order = scoped_order(&state.store, &actor, role, &order_id).await?;
    let kind = state.queue.kind();
    let max_attempts = i32::try_from(state.config.queue.max_attempts).unwrap_or(i32::MAX);
    with_pool!(&state.store, pool => {
        let mut tx = pool.begin_write().await?;
        let now = state.clock.now_ms();
        let (status, reason): (String, Option<String>) = sqlx::query_as(&format!(
            "select status, reason from orders where id = $1 {}",
            pool.for_update()
        ))
        .bind(&order.id)
        .fetch_one(&mut *tx)
        .await?;
        if !is_dead(&status, reason.as_deref()) {
            return Err(not_dead(StatusCode::CONFLICT, &order.id, &status, reason.as_deref(), "retried"));
        }
        sqlx::query(
            "update orders set status = 'PENDING', reason = null, final_at = null, updated_at = $1 \
             where id = $2 and status = 'FAILED' and reason = 'RETRIES_EXHAUSTED'",
        )
        .bind(now)
        .bind(&order.id)
        .execute(&mut *tx)
        .await?;
        record_event!(&mut *tx, &order.id, &order.tenant_id, OrderStatus::Pending, Some(RETRIED), now)?;
        let mut chain = pool.chain();
        super::requeue_in(kind, pool, &mut chain, &NewJob {
            order_id: &order.id,
            tenant_id: &order.tenant_id,
            priority: order.priority,
            max_attempts,
            now,
        });
        pool.run_chain(&mut *tx, chain).await?;
        tx.commit().await?;
    });
    // The relay pushes the outbox row (Redis mode); workers claim the job.
    match &state.relay {
        Some(relay) => relay.wake.notify_waiters(),
        None => state.work.notify_waiters(),
    }
    state.order_events.notify_waiters();
    metrics::counter!("orderhost_dead_letters_total", "action" => "retry").increment(1);
    tracing::info!(order = %order.id, tenant = %order.tenant_id, by = %actor.user_id,
        role = role.as_str(), "dead letter retried: order PENDING again");
    Ok((
        StatusCode::ACCEPTED,
        Json(order_view(&state.store, &order.id).await?),
    ))
}

/// What a discard found.
enum Discard {
    /// The order was discarded now.
    Now,
    /// The order was discarded before; only a queue entry may be left.
    Before,
}

/// Give up on a dead letter: its order stays FAILED with reason `DISCARDED` (event), any
/// stock it still holds is released, and the dead job goes. 404 `NOT_DEAD` when there is
/// nothing to discard.
#[utoipa::path(post, path = "/admin/dead-letters/{orderId}/discard", tag = "queue",
    params(("orderId" = String, Path, description = "The dead letter's order")),
    responses((status = 200, description = "discarded", body = OrderView),
              (status = 403, body = ErrorEnvelope),
              (status = 404, description = "ORDER_NOT_FOUND (also another tenant's), or NOT_DEAD: nothing to discard", body = ErrorEnvelope),
              (status = 503, description = "QUEUE_UNAVAILABLE: the order is discarded, its queue entry not yet; discard again", body = ErrorEnvelope)))]
async fn discard_dead_letter(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(order_id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    let role = actor.require_admin(&state.store).await?;
    let order = scoped_order(&state.store, &actor, role, &order_id).await?;
    let kind = state.queue.kind();
    let outcome = with_pool!(&state.store, pool => {
        let mut tx = pool.begin_write().await?;
        let now = state.clock.now_ms();
        let (status, reason): (String, Option<String>) = sqlx::query_as(&format!(
            "select status, reason from orders where id = $1 {}",
            pool.for_update()
        ))
        .bind(&order.id)
        .fetch_one(&mut *tx)
        .await?;
        if status == OrderStatus::Failed.as_str() && reason.as_deref() == Some(DISCARDED) {
            Discard::Before
        } else if is_dead(&status, reason.as_deref()) {
            sqlx::query(
                "update orders set reason = 'DISCARDED', updated_at = $1 \
                 where id = $2 and status = 'FAILED' and reason = 'RETRIES_EXHAUSTED'",
            )
            .bind(now)
            .bind(&order.id)
            .execute(&mut *tx)
            .await?;
            record_event!(&mut *tx, &order.id, &order.tenant_id, OrderStatus::Failed, Some(DISCARDED), now)?;
            // By design a dead job's order reserved nothing (its settlement failed as a
            // whole); the movements say what it holds, so "released if any" is checked,
            // not assumed. Stock rows in id order, like every other writer.
            let held: Vec<(String, i64)> = sqlx::query_as(
                "select stock_id, cast(sum(quantity) as bigint) from stock_movements \
                 where order_id = $1 and kind in ('reserve', 'release') group by stock_id order by stock_id",
            )
            .bind(&order.id)
            .fetch_all(&mut *tx)
            .await?;
            for (stock_id, net) in held {
                let quantity = -net;
                if quantity <= 0 {
                    continue;
                }
                sqlx::query(
                    "update stock_items set available = available + $1, reserved = reserved - $1, \
                     version = version + 1, updated_at = $2 where id = $3",
                )
                .bind(quantity)
                .bind(now)
                .bind(&stock_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "insert into stock_movements (id, tenant_id, stock_id, kind, quantity, reason, actor_id, order_id, created_at, updated_at) \
                     values ($1, $2, $3, 'release', $4, 'dead letter discarded', $5, $6, $7, $7)",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(&order.tenant_id)
                .bind(&stock_id)
                .bind(quantity)
                .bind(&actor.user_id)
                .bind(&order.id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tracing::warn!(order = %order.id, stock = %stock_id, quantity, "a dead letter held stock; released");
            }
            if kind == QueueKind::Database {
                sqlx::query("delete from jobs where order_id = $1")
                    .bind(&order.id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Discard::Now
        } else {
            return Err(not_dead(StatusCode::NOT_FOUND, &order.id, &status, reason.as_deref(), "discarded"));
        }
    });
    match outcome {
        Discard::Now => {
            state.order_events.notify_waiters();
            metrics::counter!("orderhost_dead_letters_total", "action" => "discard").increment(1);
            tracing::info!(order = %order.id, tenant = %order.tenant_id, by = %actor.user_id,
                role = role.as_str(), "dead letter discarded: order FAILED DISCARDED");
            if kind == QueueKind::Redis {
                state.queue.discard_dead(&order.id).await.map_err(|error| {
                    queue_unavailable(error).with_details(serde_json::json!({
                        "orderId": order.id,
                        "orderDiscarded": true,
                        "hint": "the order is discarded; discard again to remove its queue entry",
                    }))
                })?;
            }
        }
        Discard::Before => {
            // Left behind by an earlier discard whose queue call failed after its commit.
            if !state
                .queue
                .discard_dead(&order.id)
                .await
                .map_err(queue_unavailable)?
            {
                return Err(not_dead(
                    StatusCode::NOT_FOUND,
                    &order.id,
                    OrderStatus::Failed.as_str(),
                    Some(DISCARDED),
                    "discarded",
                ));
            }
            tracing::info!(order = %order.id, tenant = %order.tenant_id, by = %actor.user_id,
                role = role.as_str(), "dead letter of a discarded order removed");
        }
    }
    Ok(Json(order_view(&state.store, &order.id).await?))
}

fn is_dead(status: &str, reason: Option<&str>) -> bool {
    status == OrderStatus::Failed.as_str() && reason == Some(RETRIES_EXHAUSTED)
}

/// `NOT_DEAD`, naming the order's status and reason.
fn not_dead(
    http: StatusCode,
    order_id: &str,
    status: &str,
    reason: Option<&str>,
    action: &str,
) -> ApiError {
    let shown = match reason {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_owned(),
    };
    ApiError::new(
        http,
        "NOT_DEAD",
        format!(
            "order {order_id} is {shown}: only a dead letter (FAILED RETRIES_EXHAUSTED) can be {action}"
        ),
    )
    .with_details(serde_json::json!({ "orderId": order_id, "status": status, "reason": reason }))
}

/// A queue failure: 503 `QUEUE_UNAVAILABLE` for Redis (the database queue fails as the
/// database does).
fn queue_unavailable(error: QueueError) -> ApiError {
    match error {
        QueueError::Db(error) => error.into(),
        QueueError::Redis(_) => {
            tracing::error!(%error, "queue unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "QUEUE_UNAVAILABLE",
                "the queue (Redis) did not answer; retry later",
            )
            .with_retry_after(1)
        }
    }
}

/// The order `id` in the caller's reach: any tenant's for an operator, its own tenant's for
/// an admin. Anything else is 404 like a missing order, so ids do not leak across tenants.
async fn scoped_order(
    store: &Store,
    actor: &AuthUser,
    role: Role,
    id: &str,
) -> Result<OrderRow, ApiError> {
    let sql = format!("select {ORDER_COLUMNS} from orders where id = $1");
    let order = with_pool!(store, pool => sqlx::query_as::<_, OrderRow>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?);
    order
        .filter(|o| role == Role::Operator || o.tenant_id == actor.tenant_id)
        .ok_or_else(|| ApiError::not_found("ORDER_NOT_FOUND", "no such order"))
}

async fn order_view(store: &Store, id: &str) -> Result<OrderView, sqlx::Error> {
    let order_sql = format!("select {ORDER_COLUMNS} from orders where id = $1");
    let lines_sql =
        format!("select {LINE_COLUMNS} from order_lines where order_id = $1 order by line_no");
    with_pool!(store, pool => {
        let order = sqlx::query_as::<_, OrderRow>(&order_sql).bind(id).fetch_one(pool).await?;
        let lines = sqlx::query_as::<_, LineRow>(&lines_sql).bind(id).fetch_all(pool).await?;
        Ok(OrderView::from_rows(order, lines))
    })
}
