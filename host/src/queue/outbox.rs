//! The transactional outbox of Redis mode, and its relay.
//!
//! An accepted order writes an `outbox` row in the order's own write ([`insert_in`], called
//! through [`super::enqueue_in`]): the order and the promise to queue it commit together,
//! so an order can never be lost between the database and Redis (the original pushed its
//! BullMQ job after the database write and left orders PENDING forever when that failed).
//!
//! A relay runs in every `serve` and `worker` process in Redis mode ([`run_relay`]). Each
//! pass takes up to [`RELAY_BATCH`] due rows and pushes them to Redis in ONE script call.
//! On PostgreSQL it deletes them (`for update skip locked`, so relays in many processes
//! take different rows) in a transaction that commits after the push: a failed push, or a
//! relay dying mid-push, rolls the delete back. On SQLite (one writer: a transaction held
//! across a Redis call would stall every write) it claims them by moving `next_try_at` past
//! a short lease and deletes them after the push; a relay that dies leaves them to another
//! once the lease ends. A failed push moves the rows' `next_try_at` by an exponential
//! backoff and keeps their last error.
//! Delivery is at least once: a relay that dies between the push and the delete pushes
//! again, and the push script ignores a job Redis already holds (and a job whose order is
//! already settled is skipped by the worker), so a duplicate changes nothing.
//!
//! The relay wakes at once when this process accepts an order, and polls every
//! [`RELAY_POLL`] as the backstop (other processes' rows, retries after backoff). The
//! outbox holds only what Redis has not got yet; its lag (age of the oldest row) is the
//! gauge `orderhost_outbox_lag_seconds`.

use std::{sync::Arc, time::Duration};

use tokio::sync::{Notify, watch};

use super::{NewJob, QueueError, redis::RedisQueue};
use crate::{
    clock::Clock,
    store::{Chain, Col, Store, WritePool},
    with_pool,
};

/// Most rows one relay pass pushes.
pub const RELAY_BATCH: i64 = 512;
/// The relay's claim on PostgreSQL: the due rows in order off `outbox_due_idx`, locked
/// (`skip locked`: relays take different rows), deleted by primary key through
/// `= any(array(…))` — written as `in (select …)` it was planned as a sequential scan of
/// the whole outbox under a backlog (see `queue::db::CLAIM_POSTGRES`).
pub const CLAIM_POSTGRES: &str = "delete from outbox where id = any(array(select id from outbox \
     where next_try_at <= $1 order by next_try_at, id limit $2 for update skip locked)) \
     returning id, order_id, tenant_id, priority, max_attempts, kind, attempts, created_at";

/// A pass that pushed at most this many rows found the outbox nearly empty: only then
/// does the next wake-up linger ([`super::QueueConfig::linger_ms`]).
const LINGER_BELOW: usize = 8;
/// How long a relay owns the rows it claimed before another relay may push them, ms.
pub const RELAY_LEASE_MS: i64 = 10_000;
/// The relay's backstop poll.
pub const RELAY_POLL: Duration = Duration::from_millis(250);
/// First delay after a failed push, ms; doubles per failed attempt of the row.
const PUSH_BACKOFF_MS: i64 = 100;
/// Longest delay after a failed push, ms.
const PUSH_BACKOFF_MAX_MS: i64 = 5_000;

/// One unsent row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxRow {
    /// Row id (time-ordered).
    pub id: String,
    /// The order whose job it carries.
    pub order_id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Job priority.
    pub priority: i64,
    /// Attempts the job gets.
    pub max_attempts: i32,
    /// `new` or `retry` (see [`insert_in`]).
    pub kind: String,
    /// Push attempts so far, the current one included.
    pub attempts: i32,
    /// When the order was accepted, epoch ms (the job's FIFO position).
    pub created_at: i64,
}

/// Appends the outbox rows of `jobs` to the order write's `chain`; `retry` rows revive a
/// dead job (a dead-letter retry), others leave any job Redis holds alone.
pub fn insert_in<'q, P: WritePool>(
    pool: &P,
    chain: &mut Chain<'q, P::Db>,
    jobs: &[NewJob<'_>],
    retry: bool,
) {
    let q = chain.statement(
        "insert into outbox (id, order_id, tenant_id, priority, max_attempts, kind, attempts, next_try_at, created_at) ",
    );
    pool.push_rows(
        q,
        vec![
            Col::text(jobs.iter().map(|_| uuid::Uuid::now_v7().to_string())),
            Col::text(jobs.iter().map(|j| j.order_id)),
            Col::text(jobs.iter().map(|j| j.tenant_id)),
            Col::int(jobs.iter().map(|j| j.priority)),
            Col::int(jobs.iter().map(|j| i64::from(j.max_attempts))),
            Col::text(jobs.iter().map(|_| if retry { "retry" } else { "new" })),
            Col::int(jobs.iter().map(|_| 0)),
            Col::int(jobs.iter().map(|j| j.now)),
            Col::int(jobs.iter().map(|j| j.now)),
        ],
    );
}

/// Claims up to `max` due rows for `RELAY_LEASE_MS`, oldest first.
pub async fn claim(store: &Store, now: i64, max: i64) -> Result<Vec<OutboxRow>, sqlx::Error> {
    let mut rows = with_pool!(store, pool => {
        let _turn = pool.write_turn().await;
        let sql = format!(
            "update outbox set next_try_at = $1, attempts = attempts + 1 \
             where id in (select id from outbox where next_try_at <= $2 order by next_try_at, id limit $3 {}) \
             returning id, order_id, tenant_id, priority, max_attempts, kind, attempts, created_at",
            pool.skip_locked()
        );
        sqlx::query_as::<_, OutboxRow>(&sql)
            .bind(now + RELAY_LEASE_MS)
            .bind(now)
            .bind(max)
            .fetch_all(pool)
            .await?
    });
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(rows)
}

/// Deletes rows Redis has: pushed.
pub async fn delete(store: &Store, ids: Vec<String>) -> Result<(), sqlx::Error> {
    with_pool!(store, pool => {
        let _turn = pool.write_turn().await;
        let mut q = sqlx::QueryBuilder::new("delete from outbox where ");
        pool.push_any(&mut q, "id", ids);
        q.build().execute(pool).await?;
        Ok(())
    })
}

/// Delay before the next push of a row that failed `attempts` times: exponential, capped.
fn push_backoff_ms(attempts: i32) -> i64 {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    PUSH_BACKOFF_MS
        .saturating_mul(1_i64 << doublings)
        .min(PUSH_BACKOFF_MAX_MS)
}

/// Puts rows whose push failed back for a later try, with the error. `counted`: whether
/// the failed attempt is already in the rows' `attempts` (the lease claim counts it; the
/// PostgreSQL relay's claim-by-delete, rolled back, does not).
pub async fn postpone(
    store: &Store,
    rows: &[OutboxRow],
    now: i64,
    error: &str,
    counted: bool,
) -> Result<(), sqlx::Error> {
    let error: String = error.chars().take(500).collect();
    let bump = i32::from(!counted);
    with_pool!(store, pool => {
        let mut tx = pool.begin_write().await?;
        for row in rows {
            sqlx::query(
                "update outbox set next_try_at = $1, last_error = $2, attempts = attempts + $4 where id = $3",
            )
                .bind(now + push_backoff_ms(row.attempts + bump))
                .bind(&error)
                .bind(&row.id)
                .bind(bump)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    })
}

/// Rows not pushed yet, and the acceptance time of the oldest (epoch ms).
pub async fn backlog(store: &Store) -> Result<(i64, Option<i64>), sqlx::Error> {
    with_pool!(store, pool => {
        sqlx::query_as::<_, (i64, Option<i64>)>("select count(*), min(created_at) from outbox")
            .fetch_one(pool)
            .await
    })
}

/// `orderhost queue resync`: writes a fresh job for every PENDING order (an outbox row in
/// Redis mode, a `jobs` row on the database queue where the order has none). For when
/// Redis lost its keys (flushed, evicted, a new server) or the queue backend was switched
/// with orders in flight. The push ignores jobs Redis still holds, so it is safe to run at
/// any time. Returns how many jobs were written.
pub async fn resync(
    store: &Store,
    kind: super::QueueKind,
    max_attempts: i32,
    now: i64,
) -> Result<u64, sqlx::Error> {
    with_pool!(store, pool => {
        let _turn = pool.write_turn().await;
        let sql = match kind {
            super::QueueKind::Redis => {
                "insert into outbox (id, order_id, tenant_id, priority, max_attempts, attempts, next_try_at, created_at) \
                 select 'resync-' || o.id, o.id, o.tenant_id, o.priority, $1, 0, $2, o.created_at from orders o \
                 where o.status = 'PENDING' \
                 and not exists (select 1 from outbox x where x.order_id = o.id)"
            }
            super::QueueKind::Database => {
                "insert into jobs (id, tenant_id, order_id, priority, status, attempts, max_attempts, run_at, created_at, updated_at) \
                 select 'resync-' || o.id, o.tenant_id, o.id, o.priority, 'queued', 0, $1, $2, o.created_at, $2 from orders o \
                 where o.status = 'PENDING' \
                 and not exists (select 1 from jobs j where j.order_id = o.id)"
            }
        };
        Ok(sqlx::query(sql)
            .bind(max_attempts)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected())
    })
}

/// What the relay needs.
#[derive(Clone)]
pub struct Relay {
    /// The database holding the outbox.
    pub store: Store,
    /// Where rows go.
    pub queue: Arc<RedisQueue>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// Woken when this process accepts an order.
    pub wake: Arc<Notify>,
    /// Woken after a push, so this process's workers claim at once.
    pub work: Arc<Notify>,
    /// How long to wait after being woken before pushing ([`super::QueueConfig::linger_ms`]).
    pub linger_ms: u64,
}

impl Relay {
    /// One pass: take due rows, push them, and they are gone (or postponed on failure).
    /// Returns how many rows it pushed.
    ///
    /// PostgreSQL: the rows are deleted (`for update skip locked`, so relays take
    /// different rows) in a transaction that commits only after the push — one row write
    /// per order, where a lease claim and a delete would be two; a failed push rolls the
    /// delete back, a relay dying mid-push too (the push is then repeated: harmless).
    /// SQLite (one writer: holding a transaction across a Redis call would stall every
    /// writer) claims with a lease and deletes after the push.
    pub async fn run_once(&self) -> Result<usize, QueueError> {
        let now = self.clock.now_ms();
        if let Store::Postgres(pool) = &self.store {
            let mut tx = pool.begin().await.map_err(QueueError::from)?;
            let mut rows = sqlx::query_as::<_, OutboxRow>(CLAIM_POSTGRES)
                .bind(now)
                .bind(RELAY_BATCH)
                .fetch_all(&mut *tx)
                .await?;
            if rows.is_empty() {
                return Ok(0);
            }
            rows.sort_by(|a, b| a.id.cmp(&b.id));
            return match self.queue.push(&rows).await {
                Ok(_added) => {
                    tx.commit().await?;
                    self.pushed(rows.len());
                    Ok(rows.len())
                }
                Err(error) => {
                    drop(tx);
                    postpone(
                        &self.store,
                        &rows,
                        self.clock.now_ms(),
                        &error.to_string(),
                        false,
                    )
                    .await?;
                    metrics::counter!("orderhost_outbox_push_failures_total").increment(1);
                    Err(error)
                }
            };
        }
        let rows = claim(&self.store, now, RELAY_BATCH).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        match self.queue.push(&rows).await {
            Ok(_added) => {
                delete(&self.store, rows.iter().map(|r| r.id.clone()).collect()).await?;
                self.pushed(rows.len());
                Ok(rows.len())
            }
            Err(error) => {
                postpone(
                    &self.store,
                    &rows,
                    self.clock.now_ms(),
                    &error.to_string(),
                    true,
                )
                .await?;
                metrics::counter!("orderhost_outbox_push_failures_total").increment(1);
                Err(error)
            }
        }
    }

    /// After a push: counted, and this process's workers woken.
    fn pushed(&self, rows: usize) {
        metrics::counter!("orderhost_outbox_pushed_total").increment(rows as u64);
        self.work.notify_waiters();
    }

    /// Exports the outbox's size and lag.
    async fn export_backlog(&self) {
        if let Ok((unsent, oldest)) = backlog(&self.store).await {
            let lag = oldest.map_or(0, |t| (self.clock.now_ms() - t).max(0));
            metrics::gauge!("orderhost_outbox_unsent").set(unsent as f64);
            metrics::gauge!("orderhost_outbox_lag_seconds").set(lag as f64 / 1000.0);
        }
    }
}

/// The relay loop: runs until `stop` turns true.
pub async fn run_relay(relay: Relay, mut stop: watch::Receiver<bool>) {
    tracing::info!("outbox relay started");
    let mut failures: u32 = 0;
    let mut last_export = tokio::time::Instant::now();
    loop {
        if *stop.borrow() {
            break;
        }
        let wake = relay.wake.clone();
        let notified = wake.notified();
        let pushed = match relay.run_once().await {
            // Nothing was due: after a failure, only a PING says whether Redis is back
            // (the postponed rows are not due yet).
            Ok(0) if failures > 0 => {
                if relay.queue.ping().await.is_ok() {
                    tracing::info!("outbox relay: Redis answers again");
                    failures = 0;
                }
                0
            }
            Ok(n) => {
                if failures > 0 {
                    tracing::info!(rows = n, "outbox relay pushing again");
                }
                failures = 0;
                n
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                // Loud once, then quieter while the fault lasts.
                if failures == 1 {
                    tracing::error!(%error, "outbox relay cannot push; orders wait in the outbox");
                } else {
                    tracing::debug!(%error, failures, "outbox relay still cannot push");
                }
                0
            }
        };
        if last_export.elapsed() >= Duration::from_secs(1) {
            last_export = tokio::time::Instant::now();
            relay.export_backlog().await;
        }
        if pushed as i64 >= RELAY_BATCH {
            continue;
        }
        let pause = if failures == 0 {
            RELAY_POLL
        } else {
            Duration::from_millis(50u64.saturating_mul(1 << failures.min(6)))
        };
        tokio::select! {
            () = notified, if failures == 0 => {
                // At light load (the last pass pushed a handful at most), gather the orders
                // accepted together into one push: the workers then settle them together
                // (they claim at once when the relay wakes them).
                if relay.linger_ms > 0 && pushed <= LINGER_BELOW {
                    tokio::time::sleep(Duration::from_millis(relay.linger_ms)).await;
                }
            }
            () = tokio::time::sleep(pause) => {}
            // A dropped sender (its owner is gone) means stop as well.
            changed = stop.changed() => if changed.is_err() { break; }
        }
    }
    tracing::info!("outbox relay stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_backoff_doubles_and_caps() {
        assert_eq!(push_backoff_ms(1), 100);
        assert_eq!(push_backoff_ms(2), 200);
        assert_eq!(push_backoff_ms(4), 800);
        assert_eq!(push_backoff_ms(7), 5_000);
        assert_eq!(push_backoff_ms(1_000), 5_000);
        assert_eq!(push_backoff_ms(0), 100);
    }
}
