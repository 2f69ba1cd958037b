//! The order queue. The `jobs` table is the source of truth: a job row is written in the
//! same transaction as its order (so an accepted order can never be lost between the
//! database and the queue), and workers claim rows with a lease — highest priority first,
//! FIFO within a priority (creation time, then the time-ordered id). A job whose worker
//! died is claimable again once its lease runs out.
//!
//! [`JobQueue`] is the seam for a second backend: the Redis queue of the next issue will
//! hand out the same jobs (fed from this table as an outbox) behind the same `claim`.

use std::{future::Future, pin::Pin, time::Duration};

use rand::Rng as _;

use crate::{
    store::{Store, WritePool as _},
    with_pool,
};

/// Queue tuning.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// How long a claimed job stays with its worker before it is redelivered, ms.
    pub lease_ms: i64,
    /// Most jobs claimed (and reserved in one transaction) at once.
    pub batch_size: u32,
    /// Attempts before a job is dead and its order FAILED `RETRIES_EXHAUSTED`.
    pub max_attempts: u32,
    /// First retry delay, ms; doubles per attempt, with jitter.
    pub backoff_base_ms: i64,
    /// Longest retry delay, ms.
    pub backoff_max_ms: i64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            lease_ms: 30_000,
            batch_size: 64,
            max_attempts: 5,
            backoff_base_ms: 200,
            backoff_max_ms: 30_000,
        }
    }
}

impl QueueConfig {
    /// Delay before retry number `attempt` (1-based): exponential, capped, with ±25 %
    /// jitter so retries of a failed batch do not stampede together.
    pub fn backoff_ms(&self, attempt: u32) -> i64 {
        let exp = self
            .backoff_base_ms
            .saturating_mul(1_i64 << attempt.saturating_sub(1).min(30))
            .min(self.backoff_max_ms);
        let jitter = exp / 4;
        if jitter == 0 {
            return exp;
        }
        exp + rand::thread_rng().gen_range(-jitter..=jitter)
    }
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Job {
    /// Job id.
    pub id: String,
    /// The order it processes.
    pub order_id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Priority (higher first).
    pub priority: i64,
    /// Attempts so far, this one included.
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Enqueue time, epoch ms.
    pub created_at: i64,
}

/// A boxed future, for the object-safe trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where workers get jobs from.
pub trait JobQueue: Send + Sync + 'static {
    /// Leases up to `max` jobs to `worker` until `now + lease`, and returns them highest
    /// priority first, FIFO within a priority.
    fn claim<'a>(
        &'a self,
        worker: &'a str,
        now: i64,
        max: u32,
    ) -> BoxFuture<'a, Result<Vec<Job>, sqlx::Error>>;

    /// Jobs waiting (queued or leased), for health and metrics.
    fn depth(&self) -> BoxFuture<'_, Result<i64, sqlx::Error>>;
}

/// The embedded queue: the `jobs` table itself.
#[derive(Debug, Clone)]
pub struct DbQueue {
    store: Store,
    lease_ms: i64,
}

impl DbQueue {
    /// A queue on `store`.
    pub fn new(store: Store, config: &QueueConfig) -> Self {
        Self {
            store,
            lease_ms: config.lease_ms,
        }
    }
}

impl JobQueue for DbQueue {
    fn claim<'a>(
        &'a self,
        worker: &'a str,
        now: i64,
        max: u32,
    ) -> BoxFuture<'a, Result<Vec<Job>, sqlx::Error>> {
        Box::pin(async move {
            let mut jobs = with_pool!(&self.store, pool => {
                // SQLite: the claim writes; wait for this process's write turn rather than
                // in SQLite's busy handler.
                let _turn = pool.write_turn().await;
                // A job whose worker died goes back to the queue once its lease ran out
                // (its attempt stays counted). Looked for first with a read (an index
                // probe that finds nothing almost always), so an idle claim takes no
                // write lock on SQLite.
                let expired: Option<i32> = sqlx::query_scalar(
                    "select 1 from jobs where status = 'leased' and lease_until <= $1 limit 1",
                )
                .bind(now)
                .fetch_optional(pool)
                .await?;
                if expired.is_some() {
                    sqlx::query(
                        "update jobs set status = 'queued', lease_until = null, leased_by = null, updated_at = $1 \
                         where status = 'leased' and lease_until <= $1",
                    )
                    .bind(now)
                    .execute(pool)
                    .await?;
                }
                // Claim order straight off the partial index `jobs_queued_idx`. PostgreSQL:
                // skip rows other claimers hold; SQLite: one writer at a time.
                let sql = format!(
                    "update jobs set status = 'leased', lease_until = $1, leased_by = $2, \
                     attempts = attempts + 1, updated_at = $3 \
                     where order_id in (select order_id from jobs where status = 'queued' and run_at <= $3 \
                        order by priority desc, created_at, id limit $4 {}) \
                     returning id, order_id, tenant_id, priority, attempts, max_attempts, created_at",
                    pool.skip_locked()
                );
                sqlx::query_as::<_, Job>(&sql)
                    .bind(now + self.lease_ms)
                    .bind(worker)
                    .bind(now)
                    .bind(i64::from(max))
                    .fetch_all(pool)
                    .await?
            });
            // `returning` has no order: restore the claim order.
            jobs.sort_by(|a, b| {
                b.priority
                    .cmp(&a.priority)
                    .then(a.created_at.cmp(&b.created_at))
                    .then(a.id.cmp(&b.id))
            });
            Ok(jobs)
        })
    }

    fn depth(&self) -> BoxFuture<'_, Result<i64, sqlx::Error>> {
        Box::pin(async move {
            with_pool!(&self.store, pool => sqlx::query_scalar::<_, i64>(
                "select count(*) from jobs where status in ('queued', 'leased')",
            )
            .fetch_one(pool)
            .await)
        })
    }
}

/// How long an idle worker waits before polling again when nothing woke it.
pub const IDLE_POLL: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_within_a_quarter() {
        let cfg = QueueConfig {
            backoff_base_ms: 100,
            backoff_max_ms: 1_000,
            ..Default::default()
        };
        for (attempt, base) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1_000),
            (40, 1_000),
        ] {
            for _ in 0..50 {
                let d = cfg.backoff_ms(attempt);
                assert!(
                    (base - base / 4..=base + base / 4).contains(&d),
                    "attempt {attempt}: {d}"
                );
            }
        }
    }
}
