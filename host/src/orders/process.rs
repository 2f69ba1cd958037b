//! Processing: workers claim jobs (highest priority first) and settle their orders.
//!
//! A claimed batch is settled in ONE write transaction, strictly in claim order: for each
//! order the status flips from PENDING under a guard (a redelivered job whose order is
//! already settled changes nothing — stock is never reserved twice), then every line is
//! reserved with a guarded update (`available >= quantity`) inside a savepoint; if one
//! line cannot be served the savepoint rolls back and the order is FAILED with
//! `OUT_OF_STOCK` or `PRODUCT_INACTIVE`. One commit per batch is what lets a hot SKU take
//! thousands of orders a second. On PostgreSQL the batch first locks every stock row it
//! touches in id order, so concurrent batches cannot deadlock.
//!
//! If the batch transaction fails (a database fault), each of its jobs is tried alone;
//! a job that still fails is retried later with exponential backoff and jitter, and after
//! its last attempt it is dead and its order FAILED `RETRIES_EXHAUSTED`, holding no stock.

use std::{collections::BTreeSet, time::Duration};

use tokio::sync::watch;

use super::OrderStatus;
use crate::{
    app::AppState,
    queue::{IDLE_POLL, Job},
    store::WritePool as _,
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

/// Appends a status change to `order_events` (a macro: the executor is a different
/// concrete type per backend and per nesting level).
macro_rules! record_event {
    ($executor:expr, $job:expr, $status:expr, $reason:expr, $now:expr) => {
        sqlx::query(
            "insert into order_events (order_id, tenant_id, status, reason, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $5)",
        )
        .bind($job.order_id.as_str())
        .bind($job.tenant_id.as_str())
        .bind($status.as_str())
        .bind($reason)
        .bind($now)
        .execute($executor)
        .await
    };
}

#[derive(sqlx::FromRow)]
struct LineToReserve {
    stock_id: String,
    quantity: i64,
}

/// Claims one batch and settles it. Returns what it did.
pub async fn run_once(state: &AppState, worker: &str) -> Result<PassReport, sqlx::Error> {
    let config = state.config.queue();
    let now = state.clock.now_ms();
    let jobs = state.queue.claim(worker, now, config.batch_size).await?;
    let mut report = PassReport {
        claimed: jobs.len(),
        ..Default::default()
    };
    if jobs.is_empty() {
        return Ok(report);
    }
    match settle(state, &jobs).await {
        Ok(outcomes) => tally(&mut report, &outcomes),
        Err(batch_error) => {
            tracing::warn!(error = %batch_error, jobs = jobs.len(), "batch failed; settling its jobs one by one");
            for job in &jobs {
                match settle(state, std::slice::from_ref(job)).await {
                    Ok(outcomes) => tally(&mut report, &outcomes),
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

fn tally(report: &mut PassReport, outcomes: &[Settled]) {
    for outcome in outcomes {
        match outcome {
            Settled::Confirmed => {
                report.confirmed += 1;
                metrics::counter!("orderhost_orders_settled_total", "status" => "CONFIRMED")
                    .increment(1);
            }
            Settled::Failed(reason) => {
                report.failed += 1;
                metrics::counter!("orderhost_orders_settled_total", "status" => "FAILED", "reason" => reason.clone())
                    .increment(1);
            }
            Settled::Skipped => {}
        }
    }
}

/// Settles `jobs` in one transaction, in order.
async fn settle(state: &AppState, jobs: &[Job]) -> Result<Vec<Settled>, sqlx::Error> {
    let now = state.clock.now_ms();
    with_pool!(&state.store, pool => {
        let mut tx = pool.begin_write().await?;
        let mut all_lines = Vec::with_capacity(jobs.len());
        let mut stock_ids = BTreeSet::new();
        for job in jobs {
            let lines = sqlx::query_as::<_, LineToReserve>(
                "select stock_id, quantity from order_lines where order_id = $1 order by line_no",
            )
            .bind(&job.order_id)
            .fetch_all(&mut *tx)
            .await?;
            stock_ids.extend(lines.iter().map(|l| l.stock_id.clone()));
            all_lines.push(lines);
        }
        let lock = pool.for_update();
        if !lock.is_empty() {
            // Lock every stock row of the batch in one order: no deadlock between batches.
            for id in &stock_ids {
                sqlx::query(&format!("select id from stock_items where id = $1 {lock}"))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let mut outcomes = Vec::with_capacity(jobs.len());
        for (job, lines) in jobs.iter().zip(&all_lines) {
            let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
            let flipped = sqlx::query(
                "update orders set status = 'CONFIRMED', updated_at = $1, final_at = $1 \
                 where id = $2 and status = 'PENDING'",
            )
            .bind(now)
            .bind(&job.order_id)
            .execute(&mut *savepoint)
            .await?
            .rows_affected();
            let mut outcome = if flipped == 1 { Settled::Confirmed } else { Settled::Skipped };
            if outcome == Settled::Confirmed {
                for line in lines {
                    let reserved = sqlx::query(
                        "update stock_items set available = available - $1, reserved = reserved + $1, \
                         version = version + 1, updated_at = $2 \
                         where id = $3 and available >= $1 \
                         and exists (select 1 from products p where p.id = stock_items.product_id and p.active)",
                    )
                    .bind(line.quantity)
                    .bind(now)
                    .bind(&line.stock_id)
                    .execute(&mut *savepoint)
                    .await?
                    .rows_affected();
                    if reserved == 0 {
                        let active: Option<bool> = sqlx::query_scalar(
                            "select p.active from stock_items s join products p on p.id = s.product_id where s.id = $1",
                        )
                        .bind(&line.stock_id)
                        .fetch_optional(&mut *savepoint)
                        .await?;
                        outcome = Settled::Failed(
                            if active == Some(true) { "OUT_OF_STOCK" } else { "PRODUCT_INACTIVE" }.to_owned(),
                        );
                        break;
                    }
                    sqlx::query(
                        "insert into stock_movements (id, tenant_id, stock_id, kind, quantity, reason, order_id, created_at, updated_at) \
                         values ($1, $2, $3, 'reserve', $4, 'order confirmed', $5, $6, $6)",
                    )
                    .bind(uuid::Uuid::now_v7().to_string())
                    .bind(&job.tenant_id)
                    .bind(&line.stock_id)
                    .bind(-line.quantity)
                    .bind(&job.order_id)
                    .bind(now)
                    .execute(&mut *savepoint)
                    .await?;
                }
            }
            match &outcome {
                Settled::Confirmed => {
                    record_event!(&mut *savepoint, job, OrderStatus::Confirmed, None::<&str>, now)?;
                    savepoint.commit().await?;
                }
                Settled::Failed(reason) => {
                    // Undo the status flip and any line already reserved, then fail it.
                    savepoint.rollback().await?;
                    sqlx::query(
                        "update orders set status = 'FAILED', reason = $1, updated_at = $2, final_at = $2 \
                         where id = $3 and status = 'PENDING'",
                    )
                    .bind(reason)
                    .bind(now)
                    .bind(&job.order_id)
                    .execute(&mut *tx)
                    .await?;
                    record_event!(&mut *tx, job, OrderStatus::Failed, Some(reason.as_str()), now)?;
                }
                Settled::Skipped => savepoint.rollback().await?,
            }
            sqlx::query("update jobs set status = 'done', lease_until = null, updated_at = $1 where id = $2")
                .bind(now)
                .bind(&job.id)
                .execute(&mut *tx)
                .await?;
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok(outcomes)
    })
}

/// After a failed attempt: retry later, or — on the last attempt — bury the job and fail
/// its order with `RETRIES_EXHAUSTED`. Returns whether it gave up. Guarded by the lease
/// so a job another worker took over is left alone.
async fn give_up_or_retry(
    state: &AppState,
    worker: &str,
    job: &Job,
    error: &str,
) -> Result<bool, sqlx::Error> {
    let config = state.config.queue();
    let now = state.clock.now_ms();
    let error: String = error.chars().take(500).collect();
    let attempts = u32::try_from(job.attempts).unwrap_or(u32::MAX);
    if attempts < u32::try_from(job.max_attempts).unwrap_or(1) {
        let run_at = now + config.backoff_ms(attempts);
        with_pool!(&state.store, pool => sqlx::query(
            "update jobs set status = 'queued', run_at = $1, lease_until = null, leased_by = null, \
             last_error = $2, updated_at = $3 where id = $4 and status = 'leased' and leased_by = $5",
        )
        .bind(run_at)
        .bind(&error)
        .bind(now)
        .bind(&job.id)
        .bind(worker)
        .execute(pool)
        .await
        .map(|_| ())?);
        tracing::warn!(order = %job.order_id, attempt = attempts, %error, "order processing failed; retrying");
        metrics::counter!("orderhost_queue_retries_total").increment(1);
        return Ok(false);
    }
    with_pool!(&state.store, pool => {
        let mut tx = pool.begin_write().await?;
        let buried = sqlx::query(
            "update jobs set status = 'dead', lease_until = null, last_error = $1, updated_at = $2 \
             where id = $3 and status = 'leased' and leased_by = $4",
        )
        .bind(&error)
        .bind(now)
        .bind(&job.id)
        .bind(worker)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if buried == 1 {
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
                record_event!(&mut *tx, job, OrderStatus::Failed, Some("RETRIES_EXHAUSTED"), now)?;
            }
        }
        tx.commit().await?;
    });
    tracing::error!(order = %job.order_id, %error, "order processing failed for the last time; job is dead");
    metrics::counter!("orderhost_queue_dead_total").increment(1);
    Ok(true)
}

/// A worker: claims and settles batches until `stop` turns true. Wakes early when an
/// order is accepted in this process; polls otherwise (other processes share the table).
pub async fn run_worker(state: AppState, worker: String, mut stop: watch::Receiver<bool>) {
    tracing::info!(%worker, "order worker started");
    let mut failures: u32 = 0;
    loop {
        if *stop.borrow() {
            break;
        }
        let wake = state.work.clone();
        let notified = wake.notified();
        match run_once(&state, &worker).await {
            Ok(report) if report.claimed > 0 => {
                failures = 0;
                continue;
            }
            Ok(_) => failures = 0,
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
            () = notified => {}
            () = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
    tracing::info!(%worker, "order worker stopped");
}

/// Starts `count` workers; they stop when the returned sender is set to true.
pub fn spawn_workers(
    state: &AppState,
    count: u32,
) -> (watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
    let (tx, rx) = watch::channel(false);
    let host = std::process::id();
    let handles = (0..count)
        .map(|i| {
            let worker = format!("{host}-{i}-{}", uuid::Uuid::new_v4().simple());
            tokio::spawn(run_worker(state.clone(), worker, rx.clone()))
        })
        .collect();
    (tx, handles)
}
