//! Reading and cancelling orders, and following their status as server-sent events.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::State,
    http::StatusCode,
    response::sse::{Event, KeepAlive, Sse},
};
use futures_util::stream::{self, Stream};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{LINE_COLUMNS, LineRow, ORDER_COLUMNS, OrderRow, OrderStatus, OrderView};
use crate::{
    auth::{AuthUser, Role},
    http::{
        error::{ApiError, ErrorEnvelope},
        extract::{Json, Path, Query},
        pagination::{Page, PageQuery},
    },
    state::AppState,
    store::{Store, WritePool as _},
    with_pool,
};

/// The routes of this file.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orders))
        .routes(routes!(get_order))
        .routes(routes!(cancel_order))
        .routes(routes!(order_events))
}

fn not_found() -> ApiError {
    ApiError::not_found("ORDER_NOT_FOUND", "no such order")
}

/// Loads an order the caller may see: its own, or any of its tenant's for an admin.
/// Anything else is 404, so ids of other customers and tenants do not leak.
async fn visible_order(store: &Store, actor: &AuthUser, id: &str) -> Result<OrderRow, ApiError> {
    let sql = format!("select {ORDER_COLUMNS} from orders where id = $1 and tenant_id = $2");
    let order = with_pool!(store, pool => sqlx::query_as::<_, OrderRow>(&sql)
        .bind(id)
        .bind(&actor.tenant_id)
        .fetch_optional(pool)
        .await?)
    .ok_or_else(not_found)?;
    if order.user_id != actor.user_id
        && !matches!(actor.role(store).await?, Role::Admin | Role::Operator)
    {
        return Err(not_found());
    }
    Ok(order)
}

async fn lines_of(store: &Store, order_id: &str) -> Result<Vec<LineRow>, sqlx::Error> {
    let sql =
        format!("select {LINE_COLUMNS} from order_lines where order_id = $1 order by line_no");
    with_pool!(store, pool => sqlx::query_as::<_, LineRow>(&sql).bind(order_id).fetch_all(pool).await)
}

/// My orders, newest first.
#[utoipa::path(get, path = "/order", tag = "orders", params(PageQuery),
    responses((status = 200, body = Page<OrderView>), (status = 401, body = ErrorEnvelope)))]
async fn list_orders(
    State(state): State<AppState>,
    actor: AuthUser,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<OrderView>>, ApiError> {
    let sql = format!(
        "select {ORDER_COLUMNS} from orders where tenant_id = $1 and user_id = $2 \
         order by created_at desc, id desc limit $3 offset $4"
    );
    let (rows, total) = with_pool!(&state.store, pool => {
        let rows = sqlx::query_as::<_, OrderRow>(&sql)
            .bind(&actor.tenant_id)
            .bind(&actor.user_id)
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(pool)
            .await?;
        let total: i64 = sqlx::query_scalar("select count(*) from orders where tenant_id = $1 and user_id = $2")
            .bind(&actor.tenant_id)
            .bind(&actor.user_id)
            .fetch_one(pool)
            .await?;
        (rows, total)
    });
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let lines = lines_of(&state.store, &row.id).await?;
        items.push(OrderView::from_rows(row, lines));
    }
    Ok(Json(Page::new(page, items, total)))
}

/// One order (the customer's own; an admin sees every order of its tenant).
#[utoipa::path(get, path = "/order/{id}", tag = "orders", params(("id" = String, Path)),
    responses((status = 200, body = OrderView), (status = 404, body = ErrorEnvelope)))]
async fn get_order(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    let order = visible_order(&state.store, &actor, &id).await?;
    let lines = lines_of(&state.store, &order.id).await?;
    Ok(Json(OrderView::from_rows(order, lines)))
}

/// Cancel a PENDING or CONFIRMED order; a confirmed order's reserved stock is released
/// in the same transaction. Cancelling a cancelled order is a no-op (idempotent).
#[utoipa::path(post, path = "/order/{id}/cancel", tag = "orders", params(("id" = String, Path)),
    responses((status = 200, body = OrderView),
              (status = 404, body = ErrorEnvelope),
              (status = 409, description = "the order FAILED: nothing to cancel", body = ErrorEnvelope)))]
async fn cancel_order(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    let order = visible_order(&state.store, &actor, &id).await?;
    let now = state.clock.now_ms();
    let outcome: Result<(), ApiError> = with_pool!(&state.store, pool => {
        let mut tx = pool.begin_write().await?;
        let status: String = sqlx::query_scalar(&format!("select status from orders where id = $1 {}", pool.for_update()))
            .bind(&order.id)
            .fetch_one(&mut *tx)
            .await?;
        match OrderStatus::parse(&status) {
            Err(unknown) => Err(ApiError::internal(unknown)),
            Ok(OrderStatus::Cancelled) => Ok(()),
            Ok(OrderStatus::Failed) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "ORDER_NOT_CANCELLABLE",
                "a failed order holds nothing to cancel",
            )),
            Ok(previous @ (OrderStatus::Pending | OrderStatus::Confirmed)) => {
                if previous == OrderStatus::Confirmed {
                    let lines = sqlx::query_as::<_, LineRow>(&format!(
                        "select {LINE_COLUMNS} from order_lines where order_id = $1 order by stock_id"
                    ))
                    .bind(&order.id)
                    .fetch_all(&mut *tx)
                    .await?;
                    // What the confirmation added to the customer's figures (WIT 1.1's
                    // lifetime totals and recent units) goes again.
                    sqlx::query(
                        "update customer_totals set orders = orders - 1, spend = spend - $1 \
                         where user_id = $2 and currency = $3",
                    )
                    .bind(order.total)
                    .bind(&order.user_id)
                    .bind(&order.currency)
                    .execute(&mut *tx)
                    .await?;
                    for line in &lines {
                        sqlx::query(
                            "update customer_sku_hours set units = units - $1 \
                             where user_id = $2 and sku = $3 and hour = $4",
                        )
                        .bind(line.quantity)
                        .bind(&order.user_id)
                        .bind(&line.sku)
                        .bind(order.created_at / super::HOUR_MS)
                        .execute(&mut *tx)
                        .await?;
                    }
                    for line in lines {
                        sqlx::query(
                            "update stock_items set available = available + $1, reserved = reserved - $1, \
                             version = version + 1, updated_at = $2 where id = $3",
                        )
                        .bind(line.quantity)
                        .bind(now)
                        .bind(&line.stock_id)
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query(
                            "insert into stock_movements (id, tenant_id, stock_id, kind, quantity, reason, actor_id, order_id, created_at, updated_at) \
                             values ($1, $2, $3, 'release', $4, 'order cancelled', $5, $6, $7, $7)",
                        )
                        .bind(uuid::Uuid::now_v7().to_string())
                        .bind(&order.tenant_id)
                        .bind(&line.stock_id)
                        .bind(line.quantity)
                        .bind(&actor.user_id)
                        .bind(&order.id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                sqlx::query(
                    "update orders set status = 'CANCELLED', updated_at = $1, final_at = $1 where id = $2 and status = $3",
                )
                .bind(now)
                .bind(&order.id)
                .bind(previous.as_str())
                .execute(&mut *tx)
                .await?;
                record_event!(&mut *tx, &order.id, &order.tenant_id, OrderStatus::Cancelled, None::<&str>, now)?;
                tx.commit().await?;
                Ok(())
            }
        }
    });
    outcome?;
    // The queued job has nothing left to do. Best effort: a job left behind is claimed
    // later and skipped, its order being no longer PENDING.
    if let Err(error) = state.queue.release(&order.id).await {
        tracing::warn!(%error, order = %order.id, "could not release the cancelled order's job");
    }
    state.order_events.notify_waiters();
    let order = visible_order(&state.store, &actor, &id).await?;
    let lines = lines_of(&state.store, &order.id).await?;
    Ok(Json(OrderView::from_rows(order, lines)))
}

/// One status change as sent on the event stream.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct OrderEvent {
    /// Position in this order's history: 1, 2, … (numbered per order, so nothing about
    /// other orders can be read from it; also the SSE event id).
    pub seq: i64,
    /// New status.
    pub status: String,
    /// Failure reason.
    pub reason: Option<String>,
    /// When, epoch ms.
    pub created_at: i64,
}

/// How often the stream re-reads events when nothing in this process signalled a change.
const EVENT_POLL: Duration = Duration::from_millis(250);

/// Server-sent events: one `status` event per change, from PENDING until a final status.
/// A settled order gets its history and the stream ends.
#[utoipa::path(get, path = "/order/{id}/events", tag = "orders", params(("id" = String, Path)),
    responses((status = 200, description = "text/event-stream of OrderEvent", content_type = "text/event-stream"),
              (status = 404, body = ErrorEnvelope)))]
async fn order_events(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let order = visible_order(&state.store, &actor, &id).await?;
    struct Cursor {
        state: AppState,
        order_id: String,
        /// Events of this order already sent.
        sent: usize,
        pending: std::collections::VecDeque<OrderEvent>,
        done: bool,
    }
    let cursor = Cursor {
        state,
        order_id: order.id,
        sent: 0,
        pending: Default::default(),
        done: false,
    };
    let events = stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(event) = c.pending.pop_front() {
                c.sent += 1;
                // Final: FAILED or CANCELLED; CONFIRMED ends processing too (a later
                // cancellation is a new request the client makes itself).
                if event.status != "PENDING" {
                    c.done = true;
                }
                let data = serde_json::to_string(&event).unwrap_or_default();
                return Some((
                    Ok(Event::default()
                        .event("status")
                        .id(event.seq.to_string())
                        .data(data)),
                    c,
                ));
            }
            if c.done {
                return None;
            }
            let notified = c.state.order_events.notified();
            // The whole history each time (an order has a handful of events): the global
            // `seq` orders them and is never shown.
            let fetched = with_pool!(&c.state.store, pool => sqlx::query_as::<_, OrderEvent>(
                "select seq, status, reason, created_at from order_events where order_id = $1 order by seq",
            )
            .bind(&c.order_id)
            .fetch_all(pool)
            .await);
            match fetched {
                Ok(events) if events.len() > c.sent => {
                    let sent = c.sent;
                    c.pending
                        .extend(events.into_iter().enumerate().skip(sent).map(|(i, mut e)| {
                            e.seq = i64::try_from(i + 1).unwrap_or(i64::MAX);
                            e
                        }));
                }
                Ok(_) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep(EVENT_POLL) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "event stream could not read events");
                    tokio::time::sleep(EVENT_POLL).await;
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
