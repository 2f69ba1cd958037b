//! Processing: workers claim jobs (highest priority first) and settle their orders.
//!
//! A claimed batch is settled in ONE write transaction, strictly in claim order, and
//! set-based: the orders still PENDING are read with their lines (and locked against a
//! concurrent cancel), the stock rows they touch are locked in id order (so concurrent
//! batches queue instead of deadlocking), the decision who gets stock is made in memory
//! in claim order, and the result is written in one chain of multi-row statements (one
//! statement on PostgreSQL): status changes guarded by `status = 'PENDING'` (a redelivered
//! job whose order is already settled changes nothing — stock is never reserved twice),
//! events, stock movements, the jobs' deletion, and one guarded update of every stock row
//! (`available >= quantity`). An order whose lines cannot all be served is FAILED with
//! `OUT_OF_STOCK` or `PRODUCT_INACTIVE` and reserves nothing. One commit per batch is what
//! lets a hot SKU take thousands of orders a second.
//!
//! If the batch transaction fails (a database fault), each of its jobs is tried alone;
//! a job that still fails is retried later with exponential backoff and jitter, and after
//! its last attempt it is dead and its order FAILED `RETRIES_EXHAUSTED`, holding no stock.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use tokio::sync::watch;

use super::OrderStatus;
use crate::{
    queue::{self, IDLE_POLL, Job, QueueError},
    state::WorkerContext,
    store::{Col, WritePool as _},
    with_pool,
};

/// What happened to one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Stock reserved.
    Confirmed,
    /// Not fulfilled, with the reason.
    Failed(String),
    /// The order was already settled (redelivery or cancellation): nothing changed.
    Skipped,
    /// The order is FAILED `RETRIES_EXHAUSTED` but its job came back: the worker that
    /// failed it died (or lost Redis) before burying the job. It is buried now, so the
    /// dead-letter queue lists every order that ran out of attempts.
    Exhausted,
}

/// Counts of one pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    /// Jobs claimed.
    pub claimed: usize,
    /// Orders confirmed.
    pub confirmed: usize,
    /// Orders failed (business reasons or retries exhausted).
    pub failed: usize,
    /// Jobs put back for a retry.
    pub retried: usize,
}

/// Claims one batch and settles it. Returns what it did.
pub async fn run_once(
    state: impl Into<WorkerContext>,
    worker: &str,
) -> Result<PassReport, QueueError> {
    let state = &state.into();
    let config = state.config.queue;
    let now = state.clock.now_ms();
    let jobs = state.queue.claim(worker, now, config.batch_size).await?;
    process_claimed(state, worker, &jobs).await
}

/// Settles jobs `worker` claimed. A job whose lease ran out and that another worker
/// already settled changes nothing here (its order is no longer PENDING).
pub async fn process_claimed(
    state: impl Into<WorkerContext>,
    worker: &str,
    jobs: &[Job],
) -> Result<PassReport, QueueError> {
    let state = &state.into();
    let mut report = PassReport {
        claimed: jobs.len(),
        ..Default::default()
    };
    if jobs.is_empty() {
        return Ok(report);
    }
    match settle(state, jobs).await {
        Ok(outcomes) => {
            tally(state, &mut report, jobs, &outcomes);
            finish(state, worker, jobs, &outcomes).await?;
        }
        Err(batch_error) => {
            tracing::warn!(error = %batch_error, jobs = jobs.len(), "batch failed; settling its jobs one by one");
            for job in jobs {
                match settle(state, std::slice::from_ref(job)).await {
                    Ok(outcomes) => {
                        tally(state, &mut report, std::slice::from_ref(job), &outcomes);
                        finish(state, worker, std::slice::from_ref(job), &outcomes).await?;
                    }
                    Err(error) => {
                        if give_up_or_retry(state, worker, job, &error.to_string()).await? {
                            report.failed += 1;
                        } else {
                            report.retried += 1;
                        }
                    }
                }
            }
        }
    }
    state.order_events.notify_waiters();
    Ok(report)
}

/// After a settlement committed: acknowledges the jobs, and buries those whose order had
/// already run out of attempts.
async fn finish(
    state: &WorkerContext,
    worker: &str,
    jobs: &[Job],
    outcomes: &[Settled],
) -> Result<(), QueueError> {
    if !outcomes.contains(&Settled::Exhausted) {
        return state.queue.acknowledge(jobs).await;
    }
    let pairs = || jobs.iter().zip(outcomes);
    let done: Vec<Job> = pairs()
        .filter(|(_, o)| **o != Settled::Exhausted)
        .map(|(job, _)| job.clone())
        .collect();
    state.queue.acknowledge(&done).await?;
    let now = state.clock.now_ms();
    for (job, _) in pairs().filter(|(_, o)| **o == Settled::Exhausted) {
        let error = "redelivered after its order failed RETRIES_EXHAUSTED; buried again";
        if state.queue.bury(worker, job, error, now).await? {
            tracing::warn!(order = %job.order_id, "a dead job had been redelivered; buried");
        }
    }
    Ok(())
}

/// Counts a committed batch: the report, and per order its class, status and time from
/// acceptance (the job's creation) to now.
fn tally(state: &WorkerContext, report: &mut PassReport, jobs: &[Job], outcomes: &[Settled]) {
    let metrics = crate::observability::order_metrics();
    let now = state.clock.now_ms();
    for (job, outcome) in jobs.iter().zip(outcomes) {
        match outcome {
            Settled::Confirmed => {
                report.confirmed += 1;
                metrics.settled(job.priority, None, now - job.created_at);
            }
            Settled::Failed(reason) => {
                report.failed += 1;
                metrics.settled(job.priority, Some(reason.as_str()), now - job.created_at);
            }
            Settled::Skipped | Settled::Exhausted => {}
        }
    }
}

#[derive(sqlx::FromRow)]
struct BatchLine {
    order_id: String,
    status: String,
    reason: Option<String>,
    user_id: String,
    currency: String,
    total: i64,
    created_at: i64,
    sku: Option<String>,
    stock_id: Option<String>,
    quantity: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct StockState {
    id: String,
    available: i64,
    active: bool,
}

/// Settles `jobs` in one transaction, deciding strictly in claim order.
///
/// The statement count does not grow with the batch: one read of the pending orders and
/// their lines, one of the stock rows, one chain of writes. The guard `available >= qty`
/// still backs the in-memory decision: if it ever refuses, the transaction fails and the
/// jobs are retried.
#[tracing::instrument(level = "debug", skip_all, fields(jobs = jobs.len()))]
async fn settle(state: &WorkerContext, jobs: &[Job]) -> Result<Vec<Settled>, sqlx::Error> {
    with_pool!(&state.store, pool => {
        let mut tx = pool.begin_write().await?;
        // Read the clock once the write lock is ours: `final_at` is when the batch was
        // actually settled, not when it started waiting for SQLite's single writer.
        let now = state.clock.now_ms();
        let mut pending = std::collections::HashSet::new();
        let mut exhausted = std::collections::HashSet::new();
        let mut lines: std::collections::HashMap<String, Vec<(String, i64)>> = Default::default();
        // Each pending order's customer, currency, total and placement time, and its units
        // per SKU: what a confirmation adds to `customer_totals` and `customer_sku_hours`.
        let mut buyers: std::collections::HashMap<String, (String, String, i64, i64)> = Default::default();
        let mut units: std::collections::HashMap<String, Vec<(String, i64)>> = Default::default();
        // The jobs' orders (locked against a concurrent cancel on PostgreSQL) with the
        // lines of those still PENDING, in one statement.
        let mut q = sqlx::QueryBuilder::new(
            "select o.id as order_id, o.status, o.reason, o.user_id, o.currency, o.total, o.created_at, \
             l.sku, l.stock_id, l.quantity from orders o \
             left join order_lines l on l.order_id = o.id and o.status = 'PENDING' where ",
        );
        pool.push_any(&mut q, "o.id", jobs.iter().map(|job| job.order_id.clone()).collect());
        q.push(" order by o.id, l.line_no ").push(pool.for_update_of("o"));
        for row in q.build_query_as::<BatchLine>().fetch_all(&mut *tx).await? {
            if row.status != OrderStatus::Pending.as_str() {
                if row.status == OrderStatus::Failed.as_str()
                    && row.reason.as_deref() == Some("RETRIES_EXHAUSTED")
                {
                    exhausted.insert(row.order_id);
                }
                continue;
            }
            pending.insert(row.order_id.clone());
            buyers.entry(row.order_id.clone()).or_insert_with(|| {
                (row.user_id.clone(), row.currency.clone(), row.total, row.created_at)
            });
            if let (Some(sku), Some(quantity)) = (&row.sku, row.quantity) {
                units.entry(row.order_id.clone()).or_default().push((sku.clone(), quantity));
            }
            if let (Some(stock_id), Some(quantity)) = (row.stock_id, row.quantity) {
                lines.entry(row.order_id).or_default().push((stock_id, quantity));
            }
        }
        let stock_ids: BTreeSet<&str> = lines.values().flatten().map(|(s, _)| s.as_str()).collect();
        let mut stock: std::collections::HashMap<String, StockState> = Default::default();
        if !stock_ids.is_empty() {
            let mut q = sqlx::QueryBuilder::new(
                "select s.id, s.available, p.active from stock_items s join products p on p.id = s.product_id where ",
            );
            pool.push_any(&mut q, "s.id", stock_ids.into_iter().map(str::to_owned).collect());
            // PostgreSQL: lock the stock rows (not the products) in id order, so concurrent
            // batches queue instead of deadlocking.
            q.push(" order by s.id ").push(pool.for_update_of("s"));
            for row in q.build_query_as::<StockState>().fetch_all(&mut *tx).await? {
                stock.insert(row.id.clone(), row);
            }
        }

        // Decide, in claim order (highest priority first, FIFO within a priority).
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut totals: std::collections::BTreeMap<String, i64> = Default::default();
        for job in jobs {
            if !pending.contains(&job.order_id) {
                outcomes.push(if exhausted.contains(&job.order_id) {
                    Settled::Exhausted
                } else {
                    Settled::Skipped
                });
                continue;
            }
            let mut need: std::collections::BTreeMap<&str, i64> = Default::default();
            for (stock_id, quantity) in lines.get(&job.order_id).map(Vec::as_slice).unwrap_or_default() {
                *need.entry(stock_id.as_str()).or_default() += quantity;
            }
            let mut outcome = Settled::Confirmed;
            for (stock_id, quantity) in &need {
                match stock.get(*stock_id) {
                    Some(s) if !s.active => {
                        outcome = Settled::Failed("PRODUCT_INACTIVE".into());
                        break;
                    }
                    Some(s) if s.available >= *quantity => {}
                    _ => {
                        outcome = Settled::Failed("OUT_OF_STOCK".into());
                        break;
                    }
                }
            }
            if need.is_empty() {
                outcome = Settled::Failed("OUT_OF_STOCK".into());
            }
            if outcome == Settled::Confirmed {
                for (stock_id, quantity) in need {
                    if let Some(s) = stock.get_mut(stock_id) {
                        s.available -= quantity;
                    }
                    *totals.entry(stock_id.to_owned()).or_default() += quantity;
                }
            }
            outcomes.push(outcome);
        }

        let settled: Vec<(&Job, &Settled)> = jobs
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| !matches!(o, Settled::Skipped | Settled::Exhausted))
            .collect();
        let status_of = |outcome: &Settled| match outcome {
            Settled::Failed(reason) => (OrderStatus::Failed.as_str(), Some(reason.clone())),
            _ => (OrderStatus::Confirmed.as_str(), None),
        };
        // Apply, as one chain (one statement on PostgreSQL).
        let mut chain = pool.chain();
        if !settled.is_empty() {
            let q = chain.statement("update orders set status = v.c1, reason = v.c2, updated_at = ");
            q.push_bind(now).push(", final_at = ").push_bind(now).push(" from (");
            pool.push_rows(q, vec![
                Col::text(settled.iter().map(|(job, _)| job.order_id.as_str())),
                Col::text(settled.iter().map(|(_, o)| status_of(o).0)),
                Col::Text(settled.iter().map(|(_, o)| status_of(o).1).collect()),
            ]);
            q.push(") as v where orders.id = v.c0 and orders.status = 'PENDING'");

            let q = chain.statement(
                "insert into order_events (order_id, tenant_id, status, reason, created_at, updated_at) ",
            );
            pool.push_rows(q, vec![
                Col::text(settled.iter().map(|(job, _)| job.order_id.as_str())),
                Col::text(settled.iter().map(|(job, _)| job.tenant_id.as_str())),
                Col::text(settled.iter().map(|(_, o)| status_of(o).0)),
                Col::Text(settled.iter().map(|(_, o)| status_of(o).1).collect()),
                Col::int(settled.iter().map(|_| now)),
                Col::int(settled.iter().map(|_| now)),
            ]);
        }
        let movements: Vec<(&Job, &str, i64)> = settled
            .iter()
            .filter(|(_, o)| **o == Settled::Confirmed)
            .flat_map(|(job, _)| {
                lines
                    .get(&job.order_id)
                    .into_iter()
                    .flatten()
                    .map(move |(stock_id, quantity)| (*job, stock_id.as_str(), *quantity))
            })
            .collect();
        if !movements.is_empty() {
            let q = chain.statement(
                "insert into stock_movements (id, tenant_id, stock_id, kind, quantity, reason, order_id, created_at, updated_at) ",
            );
            pool.push_rows(q, vec![
                Col::text(movements.iter().map(|_| uuid::Uuid::now_v7().to_string())),
                Col::text(movements.iter().map(|(job, _, _)| job.tenant_id.as_str())),
                Col::text(movements.iter().map(|(_, stock_id, _)| *stock_id)),
                Col::text(movements.iter().map(|_| "reserve")),
                Col::int(movements.iter().map(|(_, _, quantity)| -*quantity)),
                Col::text(movements.iter().map(|_| "order confirmed")),
                Col::text(movements.iter().map(|(job, _, _)| job.order_id.as_str())),
                Col::int(movements.iter().map(|_| now)),
                Col::int(movements.iter().map(|_| now)),
            ]);
        }
        // The customers' confirmed totals (what WIT 1.1's context reports as lifetime
        // orders and spend), one row per customer and currency of the batch.
        let mut bought: BTreeMap<(&str, &str), (&str, i64, i64)> = BTreeMap::new();
        let mut hours: BTreeMap<(&str, &str, i64), i64> = BTreeMap::new();
        for (job, outcome) in &settled {
            if **outcome == Settled::Confirmed
                && let Some((user_id, currency, total, created_at)) = buyers.get(&job.order_id)
            {
                let entry = bought
                    .entry((user_id.as_str(), currency.as_str()))
                    .or_insert((job.tenant_id.as_str(), 0, 0));
                entry.1 += 1;
                entry.2 = entry.2.saturating_add(*total);
                for (sku, quantity) in units.get(&job.order_id).into_iter().flatten() {
                    *hours
                        .entry((user_id.as_str(), sku.as_str(), created_at / super::HOUR_MS))
                        .or_default() += quantity;
                }
            }
        }
        if !bought.is_empty() {
            let q = chain.statement(
                "insert into customer_totals (user_id, currency, tenant_id, orders, spend) ",
            );
            pool.push_rows(q, vec![
                Col::text(bought.keys().map(|(user_id, _)| *user_id)),
                Col::text(bought.keys().map(|(_, currency)| *currency)),
                Col::text(bought.values().map(|(tenant_id, _, _)| *tenant_id)),
                Col::int(bought.values().map(|(_, orders, _)| *orders)),
                Col::int(bought.values().map(|(_, _, spend)| *spend)),
            ]);
            // `where true`: SQLite reads `on conflict` after a bare `from json_each(…)`
            // as the join's constraint otherwise.
            q.push(
                " where true on conflict (user_id, currency) do update set \
                 orders = customer_totals.orders + excluded.orders, \
                 spend = customer_totals.spend + excluded.spend",
            );
        }
        if !hours.is_empty() {
            let q = chain.statement("insert into customer_sku_hours (user_id, sku, hour, units) ");
            pool.push_rows(q, vec![
                Col::text(hours.keys().map(|(user_id, _, _)| *user_id)),
                Col::text(hours.keys().map(|(_, sku, _)| *sku)),
                Col::int(hours.keys().map(|(_, _, hour)| *hour)),
                Col::int(hours.values().copied()),
            ]);
            q.push(
                " where true on conflict (user_id, sku, hour) do update set \
                 units = customer_sku_hours.units + excluded.units",
            );
        }
        // Settled: the jobs are acknowledged in the same chain.
        // (An exhausted order's job stays, to be buried after the commit.)
        let acknowledged = jobs
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o != Settled::Exhausted)
            .map(|(job, _)| job.order_id.clone())
            .collect();
        queue::acknowledge_in(state.queue.kind(), pool, &mut chain, acknowledged);
        // Last, so its row count is what the chain returns: every stock row's reservation
        // in one statement. The guard `available >= qty` still backs the decision made
        // above under the rows' locks: if it ever refuses a row, the transaction fails
        // and the jobs are retried.
        let expected = totals.len() as u64;
        if expected > 0 {
            let q = chain.statement(
                "update stock_items set available = available - v.qty, reserved = reserved + v.qty, \
                 version = version + 1, updated_at = ",
            );
            q.push_bind(now).push(" from ");
            pool.push_id_qty(q, "v", totals.into_iter().collect());
            q.push(" where stock_items.id = v.id and stock_items.available >= v.qty");
        }
        let updated = pool.run_chain(&mut *tx, chain).await?;
        if expected > 0 && updated != expected {
            return Err(sqlx::Error::Protocol(format!(
                "{} of {expected} stock rows changed under the batch's lock; retrying the batch",
                expected - updated.min(expected)
            )));
        }
        tx.commit().await?;
        Ok(outcomes)
    })
}

/// After a failed attempt: retry later, or — on the last attempt — fail its order with
/// `RETRIES_EXHAUSTED` and bury the job. Returns whether it gave up. The order is failed
/// first, guarded by `status = 'PENDING'`: if the process dies before the job is buried,
/// the job is redelivered once its lease ends and skipped (its order is final). The queue
/// calls are guarded by the lease, so a job another worker took over is left alone.
async fn give_up_or_retry(
    state: &WorkerContext,
    worker: &str,
    job: &Job,
    error: &str,
) -> Result<bool, QueueError> {
    let config = state.config.queue;
    let now = state.clock.now_ms();
    let error: String = error.chars().take(500).collect();
    let attempts = u32::try_from(job.attempts).unwrap_or(u32::MAX);
    if attempts < u32::try_from(job.max_attempts).unwrap_or(1) {
        let run_at = now + config.backoff_ms(attempts);
        state
            .queue
            .retry_later(worker, job, run_at, &error, now)
            .await?;
        tracing::warn!(order = %job.order_id, attempt = attempts, %error, "order processing failed; retrying");
        metrics::counter!("orderhost_queue_retries_total").increment(1);
        return Ok(false);
    }
    let failed = with_pool!(&state.store, pool => {
        let mut tx = pool.begin_write().await?;
        let failed = sqlx::query(
            "update orders set status = 'FAILED', reason = 'RETRIES_EXHAUSTED', updated_at = $1, final_at = $1 \
             where id = $2 and status = 'PENDING'",
        )
        .bind(now)
        .bind(&job.order_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if failed == 1 {
            record_event!(&mut *tx, &job.order_id, &job.tenant_id, OrderStatus::Failed, Some("RETRIES_EXHAUSTED"), now)?;
        }
        tx.commit().await?;
        failed
    });
    if failed == 0 {
        // Settled meanwhile (another worker, or a cancel): nothing is dead.
        state.queue.acknowledge(std::slice::from_ref(job)).await?;
        return Ok(false);
    }
    crate::observability::order_metrics().settled(
        job.priority,
        Some("RETRIES_EXHAUSTED"),
        now - job.created_at,
    );
    state.queue.bury(worker, job, &error, now).await?;
    tracing::error!(order = %job.order_id, %error, "order processing failed for the last time; job is dead");
    metrics::counter!("orderhost_queue_dead_total").increment(1);
    Ok(true)
}

/// A claim of at most this many jobs means the queue is nearly empty: light load, where
/// lingering turns one settlement per order into one per few orders. Above it, the queue
/// is busy enough that batches form by themselves.
pub(crate) fn nearly_empty_below(batch_size: u32) -> usize {
    (batch_size as usize / 8).max(1)
}

/// Waits `ms` milliseconds (the queue's linger, see [`queue::QueueConfig::linger_ms`]).
pub(crate) async fn linger(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// How often a worker sweeps expired idempotency keys.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A worker: claims and settles batches until `stop` turns true. Wakes early when an
/// order is accepted in this process; polls otherwise (other processes share the table).
pub async fn run_worker(state: WorkerContext, worker: String, mut stop: watch::Receiver<bool>) {
    tracing::info!(%worker, "order worker started");
    let mut failures: u32 = 0;
    let mut last_sweep = tokio::time::Instant::now();
    // Whether the last claim found the queue nearly empty (light load): only then does a
    // wake-up linger, so a busy queue's partial batches are claimed at once.
    let mut nearly_empty = true;
    loop {
        if *stop.borrow() {
            break;
        }
        // Housekeeping rides along with the workers (any process that runs them).
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = tokio::time::Instant::now();
            match super::sweep_expired_keys(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(keys = n, "expired idempotency keys swept"),
                Err(error) => tracing::warn!(%error, "sweeping idempotency keys failed"),
            }
            let now = state.clock.now_ms();
            let retention = state.config.decision_retention_ms();
            match super::decision::sweep_expired(&state.store, now, retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(decisions = n, "decision logs past retention deleted"),
                Err(error) => tracing::warn!(%error, "sweeping decision logs failed"),
            }
            match super::sweep_old_sku_hours(&state.store, now).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(buckets = n, "customer units older than 31 days deleted"),
                Err(error) => tracing::warn!(%error, "sweeping customer units failed"),
            }
        }
        let wake = state.work.clone();
        let notified = wake.notified();
        match run_once(&state, &worker).await {
            // A full batch: there is a backlog, go on at once.
            Ok(report) if report.claimed >= state.config.queue.batch_size as usize => {
                failures = 0;
                continue;
            }
            // A partial batch: the queue ran dry. Wait to be woken (or for the poll) like
            // an idle worker, so at light load the next claim gathers what arrived meanwhile
            // instead of settling one order per transaction.
            Ok(report) => {
                failures = 0;
                nearly_empty = report.claimed <= nearly_empty_below(state.config.queue.batch_size);
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::error!(%worker, %error, "queue unavailable");
            }
        }
        let pause = if failures == 0 {
            IDLE_POLL
        } else {
            Duration::from_millis(100u64.saturating_mul(1 << failures.min(6)))
        };
        tokio::select! {
            () = notified => {
                // Woken by an order accepted here: linger a moment so the orders placed
                // together (one write group, or a few) are settled in one transaction. In
                // Redis mode the relay lingered before its push woke us: no second wait.
                if nearly_empty && state.queue.kind() == queue::QueueKind::Database {
                    linger(state.config.queue.linger_ms).await;
                }
            }
            () = tokio::time::sleep(pause) => {}
            // A dropped sender (its owner is gone) means stop as well.
            changed = stop.changed() => if changed.is_err() { break; }
        }
    }
    tracing::info!(%worker, "order worker stopped");
}

/// Starts `count` workers, and in Redis mode the outbox relay (even with no worker: a
/// `serve` without workers still hands its orders to Redis); they stop when the returned
/// sender is set to true.
pub fn spawn_workers(
    state: &WorkerContext,
    count: u32,
) -> (watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
    let (tx, rx) = watch::channel(false);
    let host = std::process::id();
    let mut handles: Vec<_> = (0..count)
        .map(|i| {
            let worker = format!("{host}-{i}-{}", uuid::Uuid::new_v4().simple());
            tokio::spawn(run_worker(state.clone(), worker, rx.clone()))
        })
        .collect();
    if let Some(relay) = &state.relay {
        handles.push(tokio::spawn(queue::outbox::run_relay(
            relay.clone(),
            rx.clone(),
        )));
    }
    (tx, handles)
}
