//! The order queue: the whole job lifecycle, behind one seam. This module (with `db.rs`)
//! is the only one that names the `jobs` table; orders call it.
//!
//! | call | when | transactional with the order? |
//! |---|---|---|
//! | [`db::enqueue_in`] | an order is accepted | **yes**: a statement of the order's own write chain, so an accepted order can never be lost between the database and the queue (the original's PENDING-forever bug). In Redis mode the same call writes the outbox row the relay pushes. |
//! | [`db::acknowledge_in`] | a batch is settled | **yes** on the database queue: the job rows go in the settlement's own chain. A Redis queue acknowledges after the commit ([`JobQueue::acknowledge`]); a lost acknowledgement only redelivers a job whose order is settled, which changes nothing. |
//! | [`JobQueue::claim`] | a worker wants work | no: leases jobs, highest priority first, FIFO within a priority (creation time, then the time-ordered id); a job whose worker died is claimable again once its lease runs out |
//! | [`JobQueue::acknowledge`] | after a settlement committed | no (nothing to do on the database queue) |
//! | [`JobQueue::retry_later`] | a transient failure | no: back to the queue at `run_at`, with its last error |
//! | [`JobQueue::bury`] | the last attempt failed | no: dead, with its last error — the order is failed first, so a crash in between only redelivers a job whose order is final |
//! | [`JobQueue::release`] | an order was cancelled | no: the job goes; if this fails, the job is claimed later and skipped (its order is no longer PENDING) |
//! | [`JobQueue::dead`], [`JobQueue::retry_dead`], [`JobQueue::discard_dead`] | operators | no |
//! | [`JobQueue::depth`] | health, metrics | no: waiting jobs per priority, and in flight |
//!
//! The Redis queue (Redis mode) implements [`JobQueue`] next to [`db::DbQueue`]; the order
//! code does not know which one runs.

pub mod db;
pub use db::DbQueue;

use std::{collections::BTreeMap, future::Future, pin::Pin, time::Duration};

use rand::Rng as _;

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

/// A job that exhausted its attempts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct DeadJob {
    /// The order it processed.
    pub order_id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Priority.
    pub priority: i64,
    /// Attempts made.
    pub attempts: i32,
    /// The last error.
    pub last_error: Option<String>,
    /// When it died, epoch ms.
    pub updated_at: i64,
}

/// What the queue holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Depth {
    /// Jobs waiting to be claimed, per priority (highest first when iterated in reverse).
    pub waiting: BTreeMap<i64, i64>,
    /// Jobs claimed and not settled yet.
    pub in_flight: i64,
    /// Dead jobs.
    pub dead: i64,
}

impl Depth {
    /// Jobs waiting or in flight.
    pub fn total(&self) -> i64 {
        self.waiting.values().sum::<i64>() + self.in_flight
    }
}

/// Where workers get jobs from, and where their outcome goes (see the module table).
pub trait JobQueue: Send + Sync + 'static {
    /// Leases up to `max` jobs to `worker` until `now + lease`, and returns them highest
    /// priority first, FIFO within a priority.
    fn claim<'a>(
        &'a self,
        worker: &'a str,
        now: i64,
        max: u32,
    ) -> BoxFuture<'a, Result<Vec<Job>, sqlx::Error>>;

    /// `jobs` were settled and committed.
    fn acknowledge<'a>(&'a self, jobs: &'a [Job]) -> BoxFuture<'a, Result<(), sqlx::Error>>;

    /// Puts `job`, leased by `worker`, back for another attempt at `run_at`. `false` when
    /// the lease was no longer `worker`'s (another worker took the job over).
    fn retry_later<'a>(
        &'a self,
        worker: &'a str,
        job: &'a Job,
        run_at: i64,
        error: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, sqlx::Error>>;

    /// Marks `job`, leased by `worker`, dead with its last error. `false` when the lease
    /// was no longer `worker`'s.
    fn bury<'a>(
        &'a self,
        worker: &'a str,
        job: &'a Job,
        error: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, sqlx::Error>>;

    /// Drops the waiting job of a cancelled order; `false` when there was none.
    fn release<'a>(&'a self, order_id: &'a str) -> BoxFuture<'a, Result<bool, sqlx::Error>>;

    /// One page of dead jobs, newest first, and how many there are.
    fn dead(
        &self,
        limit: i64,
        offset: i64,
    ) -> BoxFuture<'_, Result<(Vec<DeadJob>, i64), sqlx::Error>>;

    /// Queues a dead job again with fresh attempts; `false` when it is not dead.
    fn retry_dead<'a>(
        &'a self,
        order_id: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, sqlx::Error>>;

    /// Deletes a dead job; `false` when it is not dead.
    fn discard_dead<'a>(&'a self, order_id: &'a str) -> BoxFuture<'a, Result<bool, sqlx::Error>>;

    /// Waiting jobs per priority, in flight, dead.
    fn depth(&self) -> BoxFuture<'_, Result<Depth, sqlx::Error>>;
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
