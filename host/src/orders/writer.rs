//! The order writer: accepted orders from concurrent requests are written together.
//!
//! Every accepted order needs the same few inserts (order, lines, first event, job) and a
//! counter update in one transaction. Written one request at a time that is a dozen round
//! trips and a commit per order, which capped placement at about 1 200 orders/s on the
//! 2-core machine with both cores busy in PostgreSQL's per-statement overhead (perf). One
//! task per process instead takes every order waiting in its channel (up to
//! [`MAX_GROUP`]), writes them with multi-row statements in one transaction, and answers
//! each request only after the commit: a 202 still means the order and its job are
//! durable. If a group fails, its orders are written one by one so one bad order cannot
//! fail the others.

use super::{LineRow, OrderRow};
use crate::{
    store::{Store, WritePool as _, batch::Batcher},
    with_pool,
};

/// Most orders written in one transaction.
pub const MAX_GROUP: usize = 256;
const CHUNK: usize = 200;

/// One accepted order, ready to write.
#[derive(Debug)]
pub struct NewOrder {
    /// The order row.
    pub order: OrderRow,
    /// The context snapshot, JSON.
    pub context: String,
    /// Its lines.
    pub lines: Vec<LineRow>,
    /// Attempts its job gets.
    pub max_attempts: i32,
    /// `(key, response body)` to record under the client's idempotency key.
    pub idempotency: Option<(String, String)>,
}

/// Handle to the writer task.
#[derive(Clone, Debug)]
pub struct OrderWriter {
    batcher: Batcher<NewOrder, Result<(), String>>,
}

impl OrderWriter {
    /// Starts the writer task on `store`.
    pub fn start(store: Store) -> Self {
        // One lane: groups commit one after another, so the users' order counters are
        // updated by one transaction at a time.
        let batcher = Batcher::start(MAX_GROUP, 1, move |group: Vec<NewOrder>| {
            let store = store.clone();
            async move { write(&store, group).await }
        });
        Self { batcher }
    }

    /// Writes `order`; returns once it is committed.
    pub async fn write(&self, order: NewOrder) -> Result<(), String> {
        self.batcher
            .call(order)
            .await
            .map_err(|_| "the order writer stopped".to_owned())?
    }
}

async fn write(store: &Store, group: Vec<NewOrder>) -> Vec<Result<(), String>> {
    let orders: Vec<&NewOrder> = group.iter().collect();
    match write_group(store, &orders).await {
        Ok(()) => {
            metrics::histogram!("orderhost_order_write_group_size").record(group.len() as f64);
            group.iter().map(|_| Ok(())).collect()
        }
        Err(error) if group.len() > 1 => {
            tracing::warn!(%error, orders = group.len(), "group write failed; writing its orders one by one");
            let mut results = Vec::with_capacity(group.len());
            for order in &group {
                results.push(
                    write_group(store, &[order])
                        .await
                        .map_err(|e| e.to_string()),
                );
            }
            results
        }
        Err(error) => vec![Err(error.to_string())],
    }
}

async fn write_group(store: &Store, orders: &[&NewOrder]) -> Result<(), sqlx::Error> {
    with_pool!(store, pool => {
        let mut tx = pool.begin_write().await?;
        for chunk in orders.chunks(CHUNK) {
            let mut q = sqlx::QueryBuilder::new(
                "insert into orders (id, tenant_id, user_id, status, priority, total, currency, \
                 expected_total, quote, context, components, created_at, updated_at) ",
            );
            q.push_values(chunk, |mut row, new| {
                let o = &new.order;
                row.push_bind(o.id.as_str())
                    .push_bind(o.tenant_id.as_str())
                    .push_bind(o.user_id.as_str())
                    .push_bind(o.status.as_str())
                    .push_bind(o.priority)
                    .push_bind(o.total)
                    .push_bind(o.currency.as_str())
                    .push_bind(o.expected_total)
                    .push_bind(o.quote.as_str())
                    .push_bind(new.context.as_str())
                    .push_bind(o.components.as_str())
                    .push_bind(o.created_at)
                    .push_bind(o.created_at);
            });
            q.build().execute(&mut *tx).await?;

            let lines: Vec<(&OrderRow, &LineRow)> =
                chunk.iter().flat_map(|n| n.lines.iter().map(move |l| (&n.order, l))).collect();
            for lines in lines.chunks(CHUNK) {
                let mut q = sqlx::QueryBuilder::new(
                    "insert into order_lines (order_id, line_no, tenant_id, product_id, stock_id, sku, quantity, \
                     unit_price, subtotal, created_at, updated_at) ",
                );
                q.push_values(lines, |mut row, (o, l)| {
                    row.push_bind(o.id.as_str())
                        .push_bind(l.line_no)
                        .push_bind(o.tenant_id.as_str())
                        .push_bind(l.product_id.as_str())
                        .push_bind(l.stock_id.as_str())
                        .push_bind(l.sku.as_str())
                        .push_bind(l.quantity)
                        .push_bind(l.unit_price)
                        .push_bind(l.subtotal)
                        .push_bind(o.created_at)
                        .push_bind(o.created_at);
                });
                q.build().execute(&mut *tx).await?;
            }

            let mut q = sqlx::QueryBuilder::new(
                "insert into order_events (order_id, tenant_id, status, reason, created_at, updated_at) ",
            );
            q.push_values(chunk, |mut row, new| {
                let o = &new.order;
                row.push_bind(o.id.as_str())
                    .push_bind(o.tenant_id.as_str())
                    .push_bind("PENDING")
                    .push_bind(None::<&str>)
                    .push_bind(o.created_at)
                    .push_bind(o.created_at);
            });
            q.build().execute(&mut *tx).await?;

            let mut q = sqlx::QueryBuilder::new(
                "insert into jobs (id, tenant_id, order_id, priority, status, attempts, max_attempts, run_at, \
                 created_at, updated_at) ",
            );
            q.push_values(chunk, |mut row, new| {
                let o = &new.order;
                row.push_bind(uuid::Uuid::now_v7().to_string())
                    .push_bind(o.tenant_id.as_str())
                    .push_bind(o.id.as_str())
                    .push_bind(o.priority)
                    .push_bind("queued")
                    .push_bind(0_i32)
                    .push_bind(new.max_attempts)
                    .push_bind(o.created_at)
                    .push_bind(o.created_at)
                    .push_bind(o.created_at);
            });
            q.build().execute(&mut *tx).await?;

            // Each customer's order counter, in one statement.
            let mut per_user: std::collections::BTreeMap<&str, i64> = Default::default();
            for new in chunk {
                *per_user.entry(new.order.user_id.as_str()).or_default() += 1;
            }
            let mut q = sqlx::QueryBuilder::new("update users set order_count = order_count + case id");
            for (user, n) in &per_user {
                q.push(" when ").push_bind(*user).push(" then ").push_bind(*n);
            }
            q.push(" else 0 end where id in (");
            let mut ids = q.separated(", ");
            for user in per_user.keys() {
                ids.push_bind(*user);
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        for new in orders {
            if let Some((key, body)) = &new.idempotency {
                sqlx::query(
                    "update idempotency_keys set state = 'done', response_status = 202, response_body = $1, \
                     updated_at = $2 where tenant_id = $3 and user_id = $4 and key = $5",
                )
                .bind(body.as_str())
                .bind(new.order.created_at)
                .bind(new.order.tenant_id.as_str())
                .bind(new.order.user_id.as_str())
                .bind(key.as_str())
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await
    })
}
