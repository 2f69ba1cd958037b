//! The order writer: accepted orders from concurrent requests are written together.
//!
//! Every accepted order needs the same few inserts (order, lines, first event, job) and a
//! counter update, atomically. Written one request at a time that is a dozen round trips
//! and a commit per order, which capped placement at about 1 200 orders/s on the 2-core
//! machine with both cores busy in PostgreSQL's per-statement overhead (perf). A
//! [`Batcher`] instead takes every order waiting (up to [`MAX_GROUP`]) and writes them as
//! column arrays in a [`Chain`](crate::store::Chain) — on PostgreSQL ONE statement, atomic
//! on its own (with a transaction only when idempotency keys are settled alongside); on
//! SQLite one transaction. Each request is answered only after the commit: a 202 still
//! means the order and its job are durable. If a group fails, its orders are written one
//! by one so one bad order cannot fail the others.

use super::{LineRow, OrderError, OrderRow};
use crate::{
    idempotency,
    queue::{self, NewJob, QueueKind},
    store::{Col, Store, WritePool as _, batch::Batcher},
    with_pool,
};

/// Most orders written in one transaction.
pub const MAX_GROUP: usize = 256;

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
    /// The client's idempotency key, settled with the order.
    pub idempotency: Option<idempotency::Done>,
    /// The decision log (JSON, `orders::decision`).
    pub decision: std::sync::Arc<str>,
}

/// Handle to the writer task.
#[derive(Clone, Debug)]
pub struct OrderWriter {
    batcher: Batcher<NewOrder, Result<(), OrderError>>,
}

impl OrderWriter {
    /// Starts the writer task on `store`.
    pub fn start(store: Store, kind: QueueKind) -> Self {
        // One lane: groups commit one after another, so the users' order counters are
        // updated by one transaction at a time.
        let batcher = Batcher::start(MAX_GROUP, 1, move |group: Vec<NewOrder>| {
            let store = store.clone();
            async move { write(&store, kind, group).await }
        });
        Self { batcher }
    }

    /// Writes `order`; returns once it is committed.
    pub async fn write(&self, order: NewOrder) -> Result<(), OrderError> {
        self.batcher.call(order).await?
    }
}

async fn write(
    store: &Store,
    kind: QueueKind,
    group: Vec<NewOrder>,
) -> Vec<Result<(), OrderError>> {
    let orders: Vec<&NewOrder> = group.iter().collect();
    match write_group(store, kind, &orders).await {
        Ok(()) => {
            metrics::histogram!("orderhost_order_write_group_size").record(group.len() as f64);
            group.iter().map(|_| Ok(())).collect()
        }
        Err(error) if group.len() > 1 => {
            tracing::warn!(%error, orders = group.len(), "group write failed; writing its orders one by one");
            let mut results = Vec::with_capacity(group.len());
            for order in &group {
                results.push(
                    write_group(store, kind, &[order])
                        .await
                        .map_err(OrderError::from),
                );
            }
            results
        }
        Err(error) => vec![Err(error.into())],
    }
}

#[tracing::instrument(level = "debug", skip_all, fields(orders = orders.len()))]
async fn write_group(
    store: &Store,
    kind: QueueKind,
    orders: &[&NewOrder],
) -> Result<(), sqlx::Error> {
    let text = |f: fn(&NewOrder) -> &str| Col::text(orders.iter().map(|n| f(n)));
    let int = |f: fn(&NewOrder) -> i64| Col::int(orders.iter().map(|n| f(n)));
    let lines: Vec<(&OrderRow, &LineRow)> = orders
        .iter()
        .flat_map(|n| n.lines.iter().map(move |l| (&n.order, l)))
        .collect();
    let line_text = |f: for<'a> fn(&'a OrderRow, &'a LineRow) -> &'a str| {
        Col::text(lines.iter().map(|(o, l)| f(o, l)))
    };
    let line_int = |f: fn(&OrderRow, &LineRow) -> i64| Col::int(lines.iter().map(|(o, l)| f(o, l)));
    // Each customer's new orders, for the order counters.
    let mut per_user: std::collections::BTreeMap<&str, i64> = Default::default();
    for new in orders {
        *per_user.entry(new.order.user_id.as_str()).or_default() += 1;
    }
    with_pool!(store, pool => {
        let mut chain = pool.chain();
        let q = chain.statement(
            "insert into orders (id, tenant_id, user_id, status, priority, total, currency, \
             expected_total, quote, context, components, created_at, updated_at) ",
        );
        pool.push_rows(q, vec![
            text(|n| &n.order.id),
            text(|n| &n.order.tenant_id),
            text(|n| &n.order.user_id),
            text(|n| n.order.status.as_str()),
            int(|n| n.order.priority),
            int(|n| n.order.total),
            text(|n| &n.order.currency),
            Col::Int(orders.iter().map(|n| n.order.expected_total).collect()),
            text(|n| &n.order.quote),
            text(|n| &n.context),
            text(|n| &n.order.components),
            int(|n| n.order.created_at),
            int(|n| n.order.created_at),
        ]);

        let q = chain.statement(
            "insert into order_lines (order_id, line_no, tenant_id, product_id, stock_id, sku, quantity, \
             unit_price, subtotal, created_at, updated_at) ",
        );
        pool.push_rows(q, vec![
            line_text(|o, _| &o.id),
            line_int(|_, l| i64::from(l.line_no)),
            line_text(|o, _| &o.tenant_id),
            line_text(|_, l| &l.product_id),
            line_text(|_, l| &l.stock_id),
            line_text(|_, l| &l.sku),
            line_int(|_, l| l.quantity),
            line_int(|_, l| l.unit_price),
            line_int(|_, l| l.subtotal),
            line_int(|o, _| o.created_at),
            line_int(|o, _| o.created_at),
        ]);

        let q = chain.statement(
            "insert into order_events (order_id, tenant_id, status, reason, created_at, updated_at) ",
        );
        pool.push_rows(q, vec![
            text(|n| &n.order.id),
            text(|n| &n.order.tenant_id),
            text(|_| "PENDING"),
            Col::Text(vec![None; orders.len()]),
            int(|n| n.order.created_at),
            int(|n| n.order.created_at),
        ]);

        let q = chain.statement("insert into order_decisions (order_id, tenant_id, decision, created_at) ");
        pool.push_rows(q, vec![
            text(|n| &n.order.id),
            text(|n| &n.order.tenant_id),
            text(|n| &n.decision),
            int(|n| n.order.created_at),
        ]);

        let jobs: Vec<NewJob<'_>> = orders
            .iter()
            .map(|n| NewJob {
                order_id: &n.order.id,
                tenant_id: &n.order.tenant_id,
                priority: n.order.priority,
                max_attempts: n.max_attempts,
                now: n.order.created_at,
            })
            .collect();
        queue::enqueue_in(kind, pool, &mut chain, &jobs);

        let q = chain.statement("update users set order_count = order_count + v.qty from ");
        pool.push_id_qty(q, "v", per_user.iter().map(|(u, n)| ((*u).to_owned(), *n)).collect());
        q.push(" where users.id = v.id");

        if chain.is_one_statement() && orders.iter().all(|n| n.idempotency.is_none()) {
            // One statement is a transaction of its own: no BEGIN/COMMIT round trips.
            return pool.run_chain(&mut *pool.acquire().await?, chain).await.map(|_| ());
        }
        let mut tx = pool.begin_write().await?;
        pool.run_chain(&mut tx, chain).await?;
        for new in orders {
            if let Some(done) = &new.idempotency {
                idempotency::mark_done!(
                    &mut *tx,
                    new.order.tenant_id.as_str(),
                    new.order.user_id.as_str(),
                    done.key.as_str(),
                    done.response_body.as_str(),
                    new.order.created_at
                )?;
            }
        }
        tx.commit().await
    })
}
