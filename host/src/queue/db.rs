//! The database queue: the `jobs` table of the order database (SQLite or PostgreSQL).
//! PostgreSQL claims with `for update skip locked`, so any number of workers and
//! processes share the table; SQLite claims under its single writer.

use tracing::Instrument as _;

use super::{BoxFuture, DeadJob, Depth, Job, JobQueue, NewJob, QueueConfig, QueueError};
use crate::{
    store::{Chain, Col, Store, WritePool},
    with_pool,
};

/// Runs one write statement in this process's write turn (SQLite's single writer; nothing
/// to wait for on PostgreSQL); `true` when it changed exactly one row.
macro_rules! changed_one {
    ($store:expr, $pool:ident => $query:expr) => {
        with_pool!($store, $pool => {
            let _turn = $pool.write_turn().await;
            $query
                .execute($pool)
                .await
                .map(|r| r.rows_affected() == 1)
                .map_err(QueueError::from)
        })
    };
}

/// Appends the enqueue of `jobs` to the order write's `chain`: the jobs commit with their
/// orders or not at all.
pub fn enqueue_in<'q, P: WritePool>(pool: &P, chain: &mut Chain<'q, P::Db>, jobs: &[NewJob<'_>]) {
    let q = chain.statement(
        "insert into jobs (id, tenant_id, order_id, priority, status, attempts, max_attempts, run_at, \
         created_at, updated_at) ",
    );
    pool.push_rows(
        q,
        vec![
            Col::text(jobs.iter().map(|_| uuid::Uuid::now_v7().to_string())),
            Col::text(jobs.iter().map(|j| j.tenant_id)),
            Col::text(jobs.iter().map(|j| j.order_id)),
            Col::int(jobs.iter().map(|j| j.priority)),
            Col::text(jobs.iter().map(|_| "queued")),
            Col::int(jobs.iter().map(|_| 0)),
            Col::int(jobs.iter().map(|j| i64::from(j.max_attempts))),
            Col::int(jobs.iter().map(|j| j.now)),
            Col::int(jobs.iter().map(|j| j.now)),
            Col::int(jobs.iter().map(|j| j.now)),
        ],
    );
}

/// Appends the re-queueing of `job` (see [`super::requeue_in`]): its row, dead or gone,
/// is queued with fresh attempts; its acceptance time stays.
pub fn requeue_in<'q, P: WritePool>(pool: &P, chain: &mut Chain<'q, P::Db>, job: &NewJob<'_>) {
    let q = chain.statement(
        "insert into jobs (id, tenant_id, order_id, priority, status, attempts, max_attempts, run_at, \
         created_at, updated_at) ",
    );
    pool.push_rows(
        q,
        vec![
            Col::text([uuid::Uuid::now_v7().to_string()]),
            Col::text([job.tenant_id]),
            Col::text([job.order_id]),
            Col::int([job.priority]),
            Col::text(["queued"]),
            Col::int([0]),
            Col::int([i64::from(job.max_attempts)]),
            Col::int([job.now]),
            Col::int([job.now]),
            Col::int([job.now]),
        ],
    );
    // `where true`: SQLite's upsert needs it after a `select … from`.
    q.push(
        " where true on conflict (order_id) do update set status = 'queued', attempts = 0, \
         max_attempts = excluded.max_attempts, run_at = excluded.run_at, lease_until = null, \
         leased_by = null, last_error = null, first_attempt_at = null, updated_at = excluded.updated_at",
    );
}

/// Appends the acknowledgement of the jobs of `order_ids` to the settlement's `chain`: a
/// settled job is deleted (the order row and its events are the record).
pub fn acknowledge_in<'q, P: WritePool>(
    pool: &P,
    chain: &mut Chain<'q, P::Db>,
    order_ids: Vec<String>,
) {
    let q = chain.statement("delete from jobs where ");
    pool.push_any(q, "order_id", order_ids);
}

/// The claim on PostgreSQL. The jobs are picked off the partial index `jobs_queued_idx`
/// in claim order and locked (`skip locked`: concurrent claimers take different rows),
/// then updated by primary key through `= any(array(…))`. Written as `in (select …)`, it
/// was planned as a hash semi-join over a sequential scan of `jobs`: 21 ms per claim of 64
/// with 50 000 jobs waiting, so a backlog slowed the worker that had to clear it (the
/// closed-loop benchmark's settled rate fell to a few hundred per second). This form is
/// planned as two index scans, 1.1 ms at the same backlog; `tests/api/plans.rs` EXPLAINs it
/// with a backlog.
pub const CLAIM_POSTGRES: &str = "update jobs set status = 'leased', lease_until = $1, leased_by = $2, \
     attempts = attempts + 1, updated_at = $3, first_attempt_at = coalesce(first_attempt_at, $3) \
     where order_id = any(array(select order_id from jobs where status = 'queued' and run_at <= $3 \
        order by priority desc, created_at, id limit $4 for update skip locked)) \
     returning id, order_id, tenant_id, priority, attempts, max_attempts, created_at";

/// The claim on SQLite (no arrays, no row locks: the claimer holds the single writer).
const CLAIM_SQLITE: &str = "update jobs set status = 'leased', lease_until = $1, leased_by = $2, \
     attempts = attempts + 1, updated_at = $3, first_attempt_at = coalesce(first_attempt_at, $3) \
     where order_id in (select order_id from jobs where status = 'queued' and run_at <= $3 \
        order by priority desc, created_at, id limit $4) \
     returning id, order_id, tenant_id, priority, attempts, max_attempts, created_at";

/// The embedded queue: the `jobs` table itself.
#[derive(Debug, Clone)]
pub struct DbQueue {
    store: Store,
    lease_ms: i64,
    /// When (clock ms) a claim next looks for leases that ran out. Shared by the clones.
    next_expiry_check: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl DbQueue {
    /// A queue on `store`.
    pub fn new(store: Store, config: &QueueConfig) -> Self {
        Self {
            store,
            lease_ms: config.lease_ms,
            next_expiry_check: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN)),
        }
    }

    /// Whether this claim looks for run-out leases: at most once per quarter lease (at
    /// least 250 ms) per process, so a job whose worker died is back within 1.25 leases,
    /// and a claim at light load is one statement instead of two.
    fn expiry_check_due(&self, now: i64) -> bool {
        use std::sync::atomic::Ordering;
        let next = self.next_expiry_check.load(Ordering::Relaxed);
        now >= next
            && self
                .next_expiry_check
                .compare_exchange(
                    next,
                    now + self.lease_ms / 4,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

impl JobQueue for DbQueue {
    fn kind(&self) -> super::QueueKind {
        super::QueueKind::Database
    }

    fn claim<'a>(
        &'a self,
        worker: &'a str,
        now: i64,
        max: u32,
    ) -> BoxFuture<'a, Result<Vec<Job>, QueueError>> {
        Box::pin(async move {
            let mut jobs = with_pool!(&self.store, pool => {
                // SQLite: the claim writes; wait for this process's write turn rather than
                // in SQLite's busy handler.
                let _turn = pool.write_turn().await;
                // A job whose worker died goes back to the queue once its lease ran out
                // (its attempt stays counted). Looked for first with a read (an index
                // probe that finds nothing almost always), so an idle claim takes no
                // write lock on SQLite; and only every quarter lease (`expiry_check_due`).
                let expired: Option<i32> = if self.expiry_check_due(now) {
                    sqlx::query_scalar(
                        "select 1 from jobs where status = 'leased' and lease_until <= $1 limit 1",
                    )
                    .bind(now)
                    .fetch_optional(pool)
                    .await?
                } else {
                    None
                };
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
                let sql = if pool.skip_locked().is_empty() { CLAIM_SQLITE } else { CLAIM_POSTGRES };
                sqlx::query_as::<_, Job>(sql)
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
        }
        .instrument(tracing::debug_span!("claim", %worker, max)))
    }

    fn acknowledge<'a>(&'a self, _jobs: &'a [Job]) -> BoxFuture<'a, Result<(), QueueError>> {
        // The settlement's own chain deleted the rows (`acknowledge_in`).
        Box::pin(async { Ok(()) })
    }

    fn retry_later<'a>(
        &'a self,
        worker: &'a str,
        job: &'a Job,
        run_at: i64,
        error: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, QueueError>> {
        Box::pin(async move {
            changed_one!(&self.store, pool => sqlx::query(
                    "update jobs set status = 'queued', run_at = $1, lease_until = null, leased_by = null, \
                     last_error = $2, updated_at = $3 where order_id = $4 and status = 'leased' and leased_by = $5",
                )
                .bind(run_at)
                .bind(error)
                .bind(now)
                .bind(&job.order_id)
                .bind(worker))
        })
    }

    fn bury<'a>(
        &'a self,
        worker: &'a str,
        job: &'a Job,
        error: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, QueueError>> {
        Box::pin(async move {
            changed_one!(&self.store, pool => sqlx::query(
                    "update jobs set status = 'dead', lease_until = null, last_error = $1, updated_at = $2 \
                     where order_id = $3 and status = 'leased' and leased_by = $4",
                )
                .bind(error)
                .bind(now)
                .bind(&job.order_id)
                .bind(worker))
        })
    }

    fn release<'a>(&'a self, order_id: &'a str) -> BoxFuture<'a, Result<bool, QueueError>> {
        Box::pin(async move {
            changed_one!(&self.store, pool => sqlx::query("delete from jobs where order_id = $1 and status in ('queued', 'leased')")
                    .bind(order_id))
        })
    }

    fn dead<'a>(
        &'a self,
        tenant: Option<&'a str>,
        limit: i64,
        offset: i64,
    ) -> BoxFuture<'a, Result<(Vec<DeadJob>, i64), QueueError>> {
        Box::pin(async move {
            with_pool!(&self.store, pool => {
                let jobs = sqlx::query_as::<_, DeadJob>(
                    "select order_id, tenant_id, priority, attempts, last_error, first_attempt_at, \
                     updated_at as last_attempt_at from jobs \
                     where status = 'dead' and ($1 is null or tenant_id = $1) \
                     order by updated_at desc, order_id limit $2 offset $3",
                )
                .bind(tenant)
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
                let total: i64 = sqlx::query_scalar(
                    "select count(*) from jobs where status = 'dead' and ($1 is null or tenant_id = $1)",
                )
                .bind(tenant)
                .fetch_one(pool)
                .await?;
                Ok((jobs, total))
            })
        })
    }

    fn discard_dead<'a>(&'a self, order_id: &'a str) -> BoxFuture<'a, Result<bool, QueueError>> {
        Box::pin(async move {
            changed_one!(&self.store, pool => sqlx::query("delete from jobs where order_id = $1 and status = 'dead'")
                    .bind(order_id))
        })
    }

    fn depth(&self) -> BoxFuture<'_, Result<Depth, QueueError>> {
        Box::pin(async move {
            let rows: Vec<(String, i64, i64)> = with_pool!(&self.store, pool => sqlx::query_as(
                "select status, priority, count(*) from jobs group by status, priority",
            )
            .fetch_all(pool)
            .await)?;
            let mut depth = Depth::default();
            for (status, priority, count) in rows {
                match status.as_str() {
                    "queued" => *depth.waiting.entry(priority).or_default() += count,
                    "leased" => depth.in_flight += count,
                    "dead" => depth.dead += count,
                    _ => {}
                }
            }
            Ok(depth)
        })
    }
}
