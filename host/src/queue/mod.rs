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
//! | [`JobQueue::bury`] | the last attempt failed | no: dead, with its last error — the order is failed first, so a crash in between only redelivers a job whose order is final, and that job is buried then |
//! | [`JobQueue::release`] | an order was cancelled | no: the job goes; if this fails, the job is claimed later and skipped (its order is no longer PENDING) |
//! | [`requeue_in`] | a dead-letter retry puts the order back to PENDING | **yes**: in that write |
//! | [`JobQueue::dead`], [`JobQueue::discard_dead`] | operators | no |
//! | [`JobQueue::depth`] | health, metrics | no: waiting jobs per priority, and in flight |
//!
//! The Redis queue (Redis mode) implements [`JobQueue`] next to [`db::DbQueue`]; the order
//! code does not know which one runs.

pub mod db;
pub mod dead_letters;
pub mod outbox;
pub mod redis;
pub use db::DbQueue;

use std::{collections::BTreeMap, future::Future, pin::Pin, time::Duration};

use rand::Rng as _;

use crate::store::{Chain, WritePool};

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
/// Default of [`QueueConfig::linger_ms`].
pub const DEFAULT_LINGER_MS: u64 = 10;

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
    /// How long a worker (and the outbox relay) waits after being woken by a new order
    /// before it claims, so that orders arriving together are settled (or pushed) together,
    /// ms (0 – 100). Only when its last claim found the queue nearly empty (at most an
    /// eighth of a batch; the relay: 8 rows): a busy queue is claimed at once. It adds
    /// at most this much to an order's time to final, never to `POST /order`'s answer;
    /// at light load it turns one settlement per order into one per few orders.
    #[arg(
        long = "queue-linger-ms",
        env = "ORDERHOST_QUEUE_LINGER_MS",
        default_value_t = DEFAULT_LINGER_MS,
        value_parser = clap::value_parser!(u64).range(0..=100)
    )]
    pub linger_ms: u64,
    /// Which queue runs: `auto` (Redis when `REDIS_URL` is set, the database otherwise),
    /// `database` or `redis` (needs `REDIS_URL`).
    #[arg(
        long = "queue",
        env = "ORDERHOST_QUEUE",
        value_enum,
        default_value_t = QueueBackend::Auto
    )]
    pub backend: QueueBackend,
}

/// The queue backend asked for (see [`QueueConfig::backend`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueBackend {
    /// Redis when `REDIS_URL` is set, the database otherwise.
    Auto,
    /// The `jobs` table of the order database.
    Database,
    /// Redis, fed by the transactional outbox.
    Redis,
}

/// The queue that runs, once the configuration is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// The `jobs` table: accepted orders write their job row.
    Database,
    /// Redis: accepted orders write an outbox row that the relay pushes.
    Redis,
}

impl QueueKind {
    /// Name shown by `/health` and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Redis => "redis",
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            lease_ms: DEFAULT_LEASE_MS,
            batch_size: DEFAULT_BATCH,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base_ms: DEFAULT_BACKOFF_MS,
            linger_ms: DEFAULT_LINGER_MS,
            backend: QueueBackend::Auto,
        }
    }
}

impl QueueConfig {
    /// The queue that runs with Redis at `redis_url` (empty: none); an error names what
    /// is missing.
    pub fn kind(&self, redis_url: &str) -> Result<QueueKind, String> {
        let has_redis = !redis_url.trim().is_empty();
        match (self.backend, has_redis) {
            (QueueBackend::Auto, true) | (QueueBackend::Redis, true) => Ok(QueueKind::Redis),
            (QueueBackend::Auto, false) | (QueueBackend::Database, _) => Ok(QueueKind::Database),
            (QueueBackend::Redis, false) => Err(
                "ORDERHOST_QUEUE=redis needs REDIS_URL (e.g. redis://127.0.0.1:6379)".to_owned(),
            ),
        }
    }

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

/// A job to enqueue with its order.
#[derive(Debug, Clone, Copy)]
pub struct NewJob<'a> {
    /// The order it will process (one job per order).
    pub order_id: &'a str,
    /// Tenant.
    pub tenant_id: &'a str,
    /// Priority (higher first).
    pub priority: i64,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// When it may run and its creation time, epoch ms.
    pub now: i64,
}

/// Appends the enqueue of `jobs` to the order write's `chain`, so the jobs commit with
/// their orders or not at all: their `jobs` rows on the database queue, their outbox rows
/// (which the relay pushes to Redis) in Redis mode.
pub fn enqueue_in<'q, P: WritePool>(
    kind: QueueKind,
    pool: &P,
    chain: &mut Chain<'q, P::Db>,
    jobs: &[NewJob<'_>],
) {
    match kind {
        QueueKind::Database => db::enqueue_in(pool, chain, jobs),
        QueueKind::Redis => outbox::insert_in(pool, chain, jobs, false),
    }
}

/// Appends the re-queueing of an order's job to the write that puts the order back to
/// PENDING (a dead-letter retry): on the database queue the order's `jobs` row is queued
/// again with fresh attempts (an upsert: one statement, as a chain on PostgreSQL shares one
/// snapshot), keeping its place in line (its acceptance time), as the Redis queue does; in
/// Redis mode an outbox row is written, and its push revives the dead job.
pub fn requeue_in<'q, P: WritePool>(
    kind: QueueKind,
    pool: &P,
    chain: &mut Chain<'q, P::Db>,
    job: &NewJob<'_>,
) {
    match kind {
        QueueKind::Database => db::requeue_in(pool, chain, job),
        QueueKind::Redis => outbox::insert_in(pool, chain, std::slice::from_ref(job), true),
    }
}

/// Appends the acknowledgement of settled jobs to the settlement's `chain`: the database
/// queue deletes their rows in the same commit; a Redis queue has nothing to write here
/// (its jobs are acknowledged after the commit, [`JobQueue::acknowledge`]).
pub fn acknowledge_in<'q, P: WritePool>(
    kind: QueueKind,
    pool: &P,
    chain: &mut Chain<'q, P::Db>,
    order_ids: Vec<String>,
) {
    if kind == QueueKind::Database {
        db::acknowledge_in(pool, chain, order_ids);
    }
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
    /// Redis failed or did not answer in time.
    #[error("redis: {0}")]
    Redis(String),
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
    /// When its first attempt started, epoch ms (`null` for a job that died before the
    /// column existed).
    pub first_attempt_at: Option<i64>,
    /// When its last attempt failed and it died, epoch ms.
    pub last_attempt_at: i64,
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
    /// Which queue this is (what accepted orders write with their order).
    fn kind(&self) -> QueueKind;

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

    /// One page of dead jobs (of `tenant`, or of every tenant), most recently dead
    /// first, and how many there are.
    fn dead<'a>(
        &'a self,
        tenant: Option<&'a str>,
        limit: i64,
        offset: i64,
    ) -> BoxFuture<'a, Result<(Vec<DeadJob>, i64), QueueError>>;

    /// Deletes a dead job; `false` when it is not dead. (A dead job is queued again by
    /// [`requeue_in`], in the write that puts its order back to PENDING.)
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
