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

/// Default of [`QueueConfig::batch_size`].
pub const DEFAULT_BATCH: u32 = 64;
/// Default of [`QueueConfig::lease_ms`].
pub const DEFAULT_LEASE_MS: i64 = 30_000;
/// Default of [`QueueConfig::max_attempts`].
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Default of [`QueueConfig::backoff_base_ms`].
pub const DEFAULT_BACKOFF_MS: i64 = 200;
/// Longest retry delay, ms.
pub const BACKOFF_MAX_MS: i64 = 30_000;

/// Queue tuning: flags of `serve` and `worker` (each with its environment variable). An
/// out-of-range value is refused at start with clap's message, never clamped silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct QueueConfig {
    /// How long a claimed job stays with its worker before it is redelivered, ms
    /// (1 000 – 3 600 000).
    #[arg(
        long = "queue-lease-ms",
        env = "ORDERHOST_QUEUE_LEASE_MS",
        default_value_t = DEFAULT_LEASE_MS,
        value_parser = clap::value_parser!(i64).range(1_000..=3_600_000)
    )]
    pub lease_ms: i64,
    /// Jobs a worker claims and settles in one transaction (1 – 1 000).
    #[arg(
        long = "queue-batch",
        env = "ORDERHOST_QUEUE_BATCH",
        default_value_t = DEFAULT_BATCH,
        value_parser = clap::value_parser!(u32).range(1..=1_000)
    )]
    pub batch_size: u32,
    /// Attempts before a job is dead and its order FAILED `RETRIES_EXHAUSTED` (1 – 100).
    #[arg(
        long = "queue-max-attempts",
        env = "ORDERHOST_QUEUE_MAX_ATTEMPTS",
        default_value_t = DEFAULT_MAX_ATTEMPTS,
        value_parser = clap::value_parser!(u32).range(1..=100)
    )]
    pub max_attempts: u32,
    /// First retry delay in ms; doubles per attempt, ±25 % jitter, capped at 30 s
    /// (0 – 30 000).
    #[arg(
        long = "queue-backoff-ms",
        env = "ORDERHOST_QUEUE_BACKOFF_MS",
        default_value_t = DEFAULT_BACKOFF_MS,
        value_parser = clap::value_parser!(i64).range(0..=BACKOFF_MAX_MS)
    )]
    pub backoff_base_ms: i64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            lease_ms: DEFAULT_LEASE_MS,
            batch_size: DEFAULT_BATCH,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base_ms: DEFAULT_BACKOFF_MS,
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
            .min(BACKOFF_MAX_MS);
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

/// Why a queue call failed. The database queue fails only with its database; the Redis
/// queue adds its own variant.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

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
    ) -> BoxFuture<'a, Result<Vec<Job>, QueueError>>;

    /// `jobs` were settled and committed.
    fn acknowledge<'a>(&'a self, jobs: &'a [Job]) -> BoxFuture<'a, Result<(), QueueError>>;

    /// Puts `job`, leased by `worker`, back for another attempt at `run_at`. `false` when
    /// the lease was no longer `worker`'s (another worker took the job over).
    fn retry_later<'a>(
        &'a self,
        worker: &'a str,
        job: &'a Job,
        run_at: i64,
        error: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, QueueError>>;

    /// Marks `job`, leased by `worker`, dead with its last error. `false` when the lease
    /// was no longer `worker`'s.
    fn bury<'a>(
        &'a self,
        worker: &'a str,
        job: &'a Job,
        error: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, QueueError>>;

    /// Drops the waiting job of a cancelled order; `false` when there was none.
    fn release<'a>(&'a self, order_id: &'a str) -> BoxFuture<'a, Result<bool, QueueError>>;

    /// One page of dead jobs, newest first, and how many there are.
    fn dead(
        &self,
        limit: i64,
        offset: i64,
    ) -> BoxFuture<'_, Result<(Vec<DeadJob>, i64), QueueError>>;

    /// Queues a dead job again with fresh attempts; `false` when it is not dead.
    fn retry_dead<'a>(
        &'a self,
        order_id: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, QueueError>>;

    /// Deletes a dead job; `false` when it is not dead.
    fn discard_dead<'a>(&'a self, order_id: &'a str) -> BoxFuture<'a, Result<bool, QueueError>>;

    /// Waiting jobs per priority, in flight, dead.
    fn depth(&self) -> BoxFuture<'_, Result<Depth, QueueError>>;
}

/// How long an idle worker waits before polling again when nothing woke it.
pub const IDLE_POLL: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_within_a_quarter() {
        let cfg = QueueConfig {
            backoff_base_ms: 1_000,
            ..Default::default()
        };
        for (attempt, base) in [
            (1, 1_000),
            (2, 2_000),
            (3, 4_000),
            (4, 8_000),
            (5, 16_000),
            (6, BACKOFF_MAX_MS),
            (40, BACKOFF_MAX_MS),
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
