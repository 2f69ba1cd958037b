//! The Redis queue (Redis mode): a priority queue with leases, delayed retries and a
//! dead-letter set, every change made by one Lua script so it is atomic.
//!
//! Keys, under `P = <ORDERHOST_REDIS_PREFIX>:queue` (the test suite gives every test a
//! prefix of its own):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:ready` | sorted set, every score 0 | waiting jobs as `RRRRRRRR:CCCCCCCCCCCCCCCC:<order id>`: `R` = `ffffffff − priority` and `C` = acceptance time in ms, both fixed-width hex, so the set's lexicographic order is highest priority first, then FIFO (then the time-ordered order id) |
//! | `P:job:<order id>` | hash | the job: `member` (its `ready` entry), `tenant`, `priority`, `attempts`, `max_attempts`, `created_at`, `state` (`ready`, `leased`, `delayed`, `dead`), `worker`, `first_attempt_at`, `last_attempt_at`, `last_error` |
//! | `P:leased` | sorted set | claimed jobs by lease deadline (ms): a job whose worker died is back in `ready` once it passed |
//! | `P:delayed` | sorted set | jobs waiting for a retry, by the time they may run (ms) |
//! | `P:dead` and `P:dead:<tenant>` | sorted sets | dead jobs by the time they died |
//! | `P:depth` | hash | waiting jobs (ready or delayed) per priority |
//!
//! Scripts ([`SCRIPTS`]): `push` (the relay: adds jobs Redis does not hold; a dead-letter
//! retry revives a dead one with fresh attempts), `claim` (first moves due delayed jobs
//! and expired leases back to `ready`, then leases up to N jobs in order), `ack`,
//! `retry_later`, `bury`, `release`, `discard_dead`, `dead` (a page of the dead-letter
//! set) and `depth`. `retry_later` and `bury` change a job only while `worker` holds its
//! lease. Each is sent once by SHA (`EVALSHA`); the `redis` crate loads it again when the
//! server answers `NOSCRIPT` (after a restart or `SCRIPT FLUSH`).
//!
//! The keys of one deployment are built inside the scripts from the prefix, so they must
//! all live on one server (a single Redis or one hash slot: put a `{tag}` in the prefix
//! for Redis Cluster).

use std::{sync::LazyLock, time::Duration};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::{BoxFuture, DeadJob, Depth, Job, JobQueue, QueueError, QueueKind, outbox::OutboxRow};

/// How long one Redis call may take before it is reported as a failure.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest a claim moves per call from `delayed` or from expired leases back to `ready`.
const MOVE_BACK_MAX: u32 = 1_000;

/// The Lua scripts, by name (documented in the README's Redis mode section).
pub static SCRIPTS: LazyLock<Scripts> = LazyLock::new(Scripts::new);

/// Every script the queue runs.
pub struct Scripts {
    push: redis::Script,
    claim: redis::Script,
    ack: redis::Script,
    retry_later: redis::Script,
    bury: redis::Script,
    release: redis::Script,
    discard_dead: redis::Script,
    dead: redis::Script,
    depth: redis::Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            push: redis::Script::new(PUSH),
            claim: redis::Script::new(CLAIM),
            ack: redis::Script::new(ACK),
            retry_later: redis::Script::new(RETRY_LATER),
            bury: redis::Script::new(BURY),
            release: redis::Script::new(RELEASE),
            discard_dead: redis::Script::new(DISCARD_DEAD),
            dead: redis::Script::new(DEAD),
            depth: redis::Script::new(DEPTH),
        }
    }

    fn all(&self) -> [&redis::Script; 9] {
        [
            &self.push,
            &self.claim,
            &self.ack,
            &self.retry_later,
            &self.bury,
            &self.release,
            &self.discard_dead,
            &self.dead,
            &self.depth,
        ]
    }
}

/// KEYS[1] = prefix; ARGV = groups of (order id, tenant, priority, max attempts,
/// created at, member, kind). Returns how many jobs it added or revived. The depth hash is
/// updated once per priority, not once per job.
const PUSH: &str = r"
local p = KEYS[1]
local added, depth, ready = 0, {}, {}
for i = 1, #ARGV, 7 do
  local id, tenant, prio, max, created, member, kind =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local job = p .. ':job:' .. id
  local state = redis.call('HGET', job, 'state')
  if not state then
    redis.call('HSET', job, 'member', member, 'tenant', tenant, 'priority', prio,
      'attempts', 0, 'max_attempts', max, 'created_at', created, 'state', 'ready')
    table.insert(ready, 0)
    table.insert(ready, member)
    depth[prio] = (depth[prio] or 0) + 1
    added = added + 1
  elseif state == 'dead' and kind == 'retry' then
    local f = redis.call('HMGET', job, 'tenant', 'member', 'priority')
    redis.call('ZREM', p .. ':dead', id)
    redis.call('ZREM', p .. ':dead:' .. f[1], id)
    redis.call('HDEL', job, 'worker', 'last_error', 'first_attempt_at', 'last_attempt_at')
    redis.call('HSET', job, 'attempts', 0, 'max_attempts', max, 'state', 'ready')
    table.insert(ready, 0)
    table.insert(ready, f[2])
    depth[f[3]] = (depth[f[3]] or 0) + 1
    added = added + 1
  end
end
if #ready > 0 then redis.call('ZADD', p .. ':ready', unpack(ready)) end
for prio, n in pairs(depth) do redis.call('HINCRBY', p .. ':depth', prio, n) end
return added
";

/// KEYS[1] = prefix; ARGV = now, lease deadline, worker, max, move-back cap. Returns
/// groups of (order id, tenant, priority, attempts, max attempts, created at) in claim
/// order. Per job one `HMGET` and one `HSET`; the ready set, the leased set and the depth
/// hash are changed once per call.
const CLAIM: &str = r"
local p = KEYS[1]
local now, lease, worker, max, cap = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. ':delayed', '-inf', now, 'LIMIT', 0, cap)) do
  redis.call('ZREM', p .. ':delayed', id)
  local job = p .. ':job:' .. id
  local member = redis.call('HGET', job, 'member')
  if member then
    redis.call('HSET', job, 'state', 'ready')
    redis.call('ZADD', p .. ':ready', 0, member)
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. ':leased', '-inf', now, 'LIMIT', 0, cap)) do
  redis.call('ZREM', p .. ':leased', id)
  local job = p .. ':job:' .. id
  local member = redis.call('HGET', job, 'member')
  if member then
    redis.call('HSET', job, 'state', 'ready')
    redis.call('HDEL', job, 'worker')
    redis.call('ZADD', p .. ':ready', 0, member)
    redis.call('HINCRBY', p .. ':depth', redis.call('HGET', job, 'priority'), 1)
  end
end
local out = {}
if max < 1 then return out end
local members = redis.call('ZRANGE', p .. ':ready', 0, max - 1)
if #members == 0 then return out end
redis.call('ZREMRANGEBYRANK', p .. ':ready', 0, #members - 1)
local leased, depth = {}, {}
for _, member in ipairs(members) do
  local id = string.match(member, '[^:]+$')
  local job = p .. ':job:' .. id
  local f = redis.call('HMGET', job, 'tenant', 'priority', 'max_attempts', 'created_at', 'attempts')
  if f[1] then
    local attempts = tonumber(f[5] or '0') + 1
    if attempts == 1 then
      redis.call('HSET', job, 'attempts', attempts, 'state', 'leased', 'worker', worker,
        'last_attempt_at', now, 'first_attempt_at', now)
    else
      redis.call('HSET', job, 'attempts', attempts, 'state', 'leased', 'worker', worker,
        'last_attempt_at', now)
    end
    table.insert(leased, lease)
    table.insert(leased, id)
    depth[f[2]] = (depth[f[2]] or 0) - 1
    table.insert(out, id)
    table.insert(out, f[1])
    table.insert(out, f[2])
    table.insert(out, attempts)
    table.insert(out, f[3])
    table.insert(out, f[4])
  end
end
if #leased > 0 then redis.call('ZADD', p .. ':leased', unpack(leased)) end
for prio, n in pairs(depth) do redis.call('HINCRBY', p .. ':depth', prio, n) end
return out
";

/// `ack` and `release` share `forget`: it removes a job from wherever it waits (never from
/// the dead set) and returns 1 when it removed one.
macro_rules! with_forget {
    ($body:literal) => {
        concat!(
            r"
local function forget(p, id)
  local job = p .. ':job:' .. id
  local f = redis.call('HMGET', job, 'state', 'member', 'priority')
  local state = f[1]
  if not state or state == 'dead' then return 0 end
  if state == 'ready' then
    redis.call('ZREM', p .. ':ready', f[2])
    redis.call('HINCRBY', p .. ':depth', f[3], -1)
  elseif state == 'delayed' then
    redis.call('ZREM', p .. ':delayed', id)
    redis.call('HINCRBY', p .. ':depth', f[3], -1)
  else
    redis.call('ZREM', p .. ':leased', id)
  end
  redis.call('DEL', job)
  return 1
end
",
            $body
        )
    };
}

/// KEYS[1] = prefix; ARGV = order ids settled. Returns how many it removed. The common
/// case — every job still leased — is one `ZREM` and one `DEL` for the whole batch (a job
/// is in the leased set exactly while its state is `leased`); when some job moved
/// meanwhile (its lease expired: back in `ready`), each is forgotten on its own, which
/// keeps the depth per priority right.
const ACK: &str = with_forget!(
    r"
local p = KEYS[1]
if #ARGV == 0 then return 0 end
local removed = redis.call('ZREM', p .. ':leased', unpack(ARGV))
if removed == #ARGV then
  local jobs = {}
  for i, id in ipairs(ARGV) do jobs[i] = p .. ':job:' .. id end
  return redis.call('DEL', unpack(jobs))
end
local n = 0
for _, id in ipairs(ARGV) do n = n + forget(p, id) end
return n
"
);

/// KEYS[1] = prefix; ARGV = order id. Returns 1 when a waiting or leased job went.
const RELEASE: &str = with_forget!("return forget(KEYS[1], ARGV[1])\n");

/// KEYS[1] = prefix; ARGV = order id, worker, run at, error. 1 when the worker still held
/// the lease and the job now waits in `delayed`.
const RETRY_LATER: &str = r"
local p, id = KEYS[1], ARGV[1]
local job = p .. ':job:' .. id
local f = redis.call('HMGET', job, 'state', 'worker', 'priority')
if f[1] ~= 'leased' or f[2] ~= ARGV[2] then return 0 end
redis.call('ZREM', p .. ':leased', id)
redis.call('ZADD', p .. ':delayed', ARGV[3], id)
redis.call('HSET', job, 'state', 'delayed', 'last_error', ARGV[4])
redis.call('HDEL', job, 'worker')
redis.call('HINCRBY', p .. ':depth', f[3], 1)
return 1
";

/// KEYS[1] = prefix; ARGV = order id, worker, error, now. 1 when the worker still held
/// the lease and the job is now dead.
const BURY: &str = r"
local p, id = KEYS[1], ARGV[1]
local job = p .. ':job:' .. id
local f = redis.call('HMGET', job, 'state', 'worker', 'tenant')
if f[1] ~= 'leased' or f[2] ~= ARGV[2] then return 0 end
redis.call('ZREM', p .. ':leased', id)
redis.call('ZADD', p .. ':dead', ARGV[4], id)
redis.call('ZADD', p .. ':dead:' .. f[3], ARGV[4], id)
redis.call('HSET', job, 'state', 'dead', 'last_error', ARGV[3], 'last_attempt_at', ARGV[4])
redis.call('HDEL', job, 'worker')
return 1
";

/// KEYS[1] = prefix; ARGV = order id. 1 when a dead job went.
const DISCARD_DEAD: &str = r"
local p, id = KEYS[1], ARGV[1]
local job = p .. ':job:' .. id
local f = redis.call('HMGET', job, 'state', 'tenant')
if f[1] ~= 'dead' then return 0 end
redis.call('ZREM', p .. ':dead', id)
redis.call('ZREM', p .. ':dead:' .. f[2], id)
redis.call('DEL', job)
return 1
";

/// KEYS[1] = the dead set (all, or one tenant's), KEYS[2] = prefix; ARGV = offset, limit.
/// Returns the total, then groups of (order id, tenant, priority, attempts, last error,
/// first attempt at, last attempt at).
const DEAD: &str = r"
local total = redis.call('ZCARD', KEYS[1])
local out = { total }
local offset, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
if limit < 1 then return out end
for _, id in ipairs(redis.call('ZREVRANGE', KEYS[1], offset, offset + limit - 1)) do
  local f = redis.call('HMGET', KEYS[2] .. ':job:' .. id, 'tenant', 'priority', 'attempts',
    'last_error', 'first_attempt_at', 'last_attempt_at')
  table.insert(out, id)
  for i = 1, 6 do table.insert(out, f[i] or '') end
end
return out
";

/// KEYS[1] = prefix. Returns in flight, dead, then (priority, waiting) pairs.
const DEPTH: &str = r"
local p = KEYS[1]
local out = { redis.call('ZCARD', p .. ':leased'), redis.call('ZCARD', p .. ':dead') }
for _, v in ipairs(redis.call('HGETALL', p .. ':depth')) do table.insert(out, v) end
return out
";

/// The `ready` member of a job: sorts highest priority first, then by acceptance time,
/// then by order id. Priorities outside 0..=u32::MAX (the WIT's range) are clamped.
pub fn member(priority: i64, created_at: i64, order_id: &str) -> String {
    let rank = u32::MAX - u32::try_from(priority.clamp(0, i64::from(u32::MAX))).unwrap_or(0);
    let created = u64::try_from(created_at.max(0)).unwrap_or(0);
    format!("{rank:08x}:{created:016x}:{order_id}")
}

/// The Redis queue.
pub struct RedisQueue {
    client: redis::Client,
    prefix: String,
    lease_ms: i64,
    conn: OnceCell<ConnectionManager>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn redis_error(error: impl std::fmt::Display) -> QueueError {
    QueueError::Redis(error.to_string())
}

impl RedisQueue {
    /// A queue on `client` under `<deployment prefix>:queue`. Connects on first use, and
    /// the connection reconnects by itself after a failure.
    pub fn new(client: redis::Client, deployment_prefix: &str, lease_ms: i64) -> Self {
        Self {
            client,
            prefix: format!("{deployment_prefix}:queue"),
            lease_ms,
            conn: OnceCell::new(),
        }
    }

    /// The key prefix (`<deployment prefix>:queue`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn connection(&self) -> Result<ConnectionManager, QueueError> {
        self.conn
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(REDIS_TIMEOUT)
                    .set_response_timeout(REDIS_TIMEOUT)
                    .set_number_of_retries(1);
                tokio::time::timeout(
                    REDIS_TIMEOUT * 2,
                    self.client.get_connection_manager_with_config(config),
                )
                .await
                .map_err(|_| QueueError::Redis("no connection within 4 s".to_owned()))?
                .map_err(redis_error)
            })
            .await
            .cloned()
    }

    /// Loads every script into the server's cache (at start; `NOSCRIPT` reloads later).
    pub async fn load_scripts(&self) -> Result<(), QueueError> {
        let mut conn = self.connection().await?;
        for script in SCRIPTS.all() {
            script
                .prepare_invoke()
                .load_async(&mut conn)
                .await
                .map_err(redis_error)?;
        }
        Ok(())
    }

    /// Runs `script` with the prefix as KEYS[1] and `args`, with a deadline.
    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: Vec<String>,
    ) -> Result<T, QueueError> {
        let mut conn = self.connection().await?;
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        match tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async(&mut conn)).await {
            Ok(result) => result.map_err(redis_error),
            Err(_) => Err(QueueError::Redis(format!(
                "no answer within {} ms",
                REDIS_TIMEOUT.as_millis()
            ))),
        }
    }

    /// The relay's push: adds the rows' jobs Redis does not hold yet (and revives dead
    /// ones for `retry` rows). Returns how many it added.
    pub async fn push(&self, rows: &[OutboxRow]) -> Result<i64, QueueError> {
        let mut args = Vec::with_capacity(rows.len() * 7);
        for row in rows {
            args.push(row.order_id.clone());
            args.push(row.tenant_id.clone());
            args.push(row.priority.to_string());
            args.push(row.max_attempts.to_string());
            args.push(row.created_at.to_string());
            args.push(member(row.priority, row.created_at, &row.order_id));
            args.push(row.kind.clone());
        }
        self.run(&SCRIPTS.push, &[&self.prefix], args).await
    }

    /// Start-up safety: Redis must keep the queue's keys. A `maxmemory-policy` other than
    /// `noeviction` could evict them: an error in production, a loud warning in
    /// development. No persistence at all (neither AOF nor RDB snapshots) loses the queue
    /// on a restart (the outbox does not hold pushed jobs; `orderhost queue resync`
    /// re-pushes PENDING orders): a warning. A server that does not answer stops a
    /// production start (an orchestrator restarts it) and is a warning in development
    /// (orders wait in the outbox until it answers). A server that refuses `CONFIG GET`
    /// (some managed services) is a warning naming what could not be checked.
    pub async fn check_server(
        &self,
        environment: crate::config::Environment,
    ) -> anyhow::Result<()> {
        let production = environment == crate::config::Environment::Production;
        let conn = match self.connection().await {
            Ok(conn) => conn,
            Err(error) if production => {
                anyhow::bail!(
                    "Redis (REDIS_URL) does not answer: {error}; a production start needs it"
                )
            }
            Err(error) => {
                tracing::warn!(%error, "Redis (REDIS_URL) does not answer; orders wait in the outbox until it does");
                return Ok(());
            }
        };
        if let Err(error) = self.load_scripts().await {
            tracing::warn!(%error, "cannot load the queue scripts yet; they load on first use");
        }
        let get = |name: &'static str| {
            let mut conn = conn.clone();
            async move {
                let pair: Vec<String> = tokio::time::timeout(
                    REDIS_TIMEOUT,
                    redis::cmd("CONFIG")
                        .arg("GET")
                        .arg(name)
                        .query_async(&mut conn),
                )
                .await
                .map_err(|_| format!("CONFIG GET {name}: no answer"))?
                .map_err(|e| format!("CONFIG GET {name}: {e}"))?;
                Ok::<_, String>(pair.get(1).cloned().unwrap_or_default())
            }
        };
        match get("maxmemory-policy").await {
            Ok(policy) if policy == "noeviction" => {}
            Ok(policy) if production => anyhow::bail!(
                "Redis maxmemory-policy is {policy:?}: it may evict queue keys. Set \
                 `maxmemory-policy noeviction` (redis.conf, or CONFIG SET maxmemory-policy noeviction)"
            ),
            Ok(policy) => tracing::warn!(
                %policy,
                "REDIS MAY EVICT QUEUE KEYS: maxmemory-policy is not noeviction; set \
                 `maxmemory-policy noeviction` (this is an error in production)"
            ),
            Err(error) => {
                tracing::warn!(%error, "cannot check Redis maxmemory-policy; make sure it is noeviction")
            }
        }
        match (get("appendonly").await, get("save").await) {
            (Ok(aof), Ok(save)) if aof != "yes" && save.trim().is_empty() => tracing::warn!(
                "Redis has no persistence (appendonly no, save \"\"): a Redis restart loses queued jobs \
                 until `orderhost queue resync`; set `appendonly yes`"
            ),
            (Ok(_), Ok(_)) => {}
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "cannot check Redis persistence")
            }
        }
        Ok(())
    }

    /// `PING`, with the queue's deadline.
    pub async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.connection().await?;
        match tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        {
            Ok(result) => result.map(|_| ()).map_err(redis_error),
            Err(_) => Err(QueueError::Redis("PING: no answer".to_owned())),
        }
    }

    /// Deletes every key of this queue (tests, and `orderhost queue resync --flush`
    /// when the keys are known to be stale). Uses `SCAN`, never `KEYS`.
    pub async fn delete_all_keys(&self) -> Result<u64, QueueError> {
        let mut conn = self.connection().await?;
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}:*", self.prefix))
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
            if !keys.is_empty() {
                deleted += redis::cmd("DEL")
                    .arg(&keys)
                    .query_async::<u64>(&mut conn)
                    .await
                    .map_err(redis_error)?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}

fn int(value: &str) -> i64 {
    value.parse().unwrap_or(0)
}

impl JobQueue for RedisQueue {
    fn kind(&self) -> QueueKind {
        QueueKind::Redis
    }

    fn claim<'a>(
        &'a self,
        worker: &'a str,
        now: i64,
        max: u32,
    ) -> BoxFuture<'a, Result<Vec<Job>, QueueError>> {
        Box::pin(async move {
            let flat: Vec<String> = self
                .run(
                    &SCRIPTS.claim,
                    &[&self.prefix],
                    vec![
                        now.to_string(),
                        (now + self.lease_ms).to_string(),
                        worker.to_owned(),
                        max.to_string(),
                        MOVE_BACK_MAX.to_string(),
                    ],
                )
                .await?;
            Ok(flat
                .chunks_exact(6)
                .map(|f| Job {
                    id: f[0].clone(),
                    order_id: f[0].clone(),
                    tenant_id: f[1].clone(),
                    priority: int(&f[2]),
                    attempts: i32::try_from(int(&f[3])).unwrap_or(i32::MAX),
                    max_attempts: i32::try_from(int(&f[4])).unwrap_or(1),
                    created_at: int(&f[5]),
                })
                .collect())
        })
    }

    fn acknowledge<'a>(&'a self, jobs: &'a [Job]) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            if jobs.is_empty() {
                return Ok(());
            }
            let ids = jobs.iter().map(|j| j.order_id.clone()).collect();
            self.run::<i64>(&SCRIPTS.ack, &[&self.prefix], ids)
                .await
                .map(|_| ())
        })
    }

    fn retry_later<'a>(
        &'a self,
        worker: &'a str,
        job: &'a Job,
        run_at: i64,
        error: &'a str,
        _now: i64,
    ) -> BoxFuture<'a, Result<bool, QueueError>> {
        Box::pin(async move {
            let changed: i64 = self
                .run(
                    &SCRIPTS.retry_later,
                    &[&self.prefix],
                    vec![
                        job.order_id.clone(),
                        worker.to_owned(),
                        run_at.to_string(),
                        error.to_owned(),
                    ],
                )
                .await?;
            Ok(changed == 1)
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
            let changed: i64 = self
                .run(
                    &SCRIPTS.bury,
                    &[&self.prefix],
                    vec![
                        job.order_id.clone(),
                        worker.to_owned(),
                        error.to_owned(),
                        now.to_string(),
                    ],
                )
                .await?;
            Ok(changed == 1)
        })
    }

    fn release<'a>(&'a self, order_id: &'a str) -> BoxFuture<'a, Result<bool, QueueError>> {
        Box::pin(async move {
            let changed: i64 = self
                .run(&SCRIPTS.release, &[&self.prefix], vec![order_id.to_owned()])
                .await?;
            Ok(changed == 1)
        })
    }

    fn dead<'a>(
        &'a self,
        tenant: Option<&'a str>,
        limit: i64,
        offset: i64,
    ) -> BoxFuture<'a, Result<(Vec<DeadJob>, i64), QueueError>> {
        Box::pin(async move {
            let set = match tenant {
                Some(tenant) => format!("{}:dead:{tenant}", self.prefix),
                None => format!("{}:dead", self.prefix),
            };
            let flat: Vec<String> = self
                .run(
                    &SCRIPTS.dead,
                    &[&set, &self.prefix],
                    vec![offset.max(0).to_string(), limit.max(0).to_string()],
                )
                .await?;
            let total = flat.first().map_or(0, |t| int(t));
            let jobs = flat
                .get(1..)
                .unwrap_or_default()
                .chunks_exact(7)
                .map(|f| DeadJob {
                    order_id: f[0].clone(),
                    tenant_id: f[1].clone(),
                    priority: int(&f[2]),
                    attempts: i32::try_from(int(&f[3])).unwrap_or(i32::MAX),
                    last_error: Some(f[4].clone()).filter(|e| !e.is_empty()),
                    first_attempt_at: Some(&f[5]).filter(|t| !t.is_empty()).map(|t| int(t)),
                    last_attempt_at: int(&f[6]),
                })
                .collect();
            Ok((jobs, total))
        })
    }

    fn discard_dead<'a>(&'a self, order_id: &'a str) -> BoxFuture<'a, Result<bool, QueueError>> {
        Box::pin(async move {
            let changed: i64 = self
                .run(
                    &SCRIPTS.discard_dead,
                    &[&self.prefix],
                    vec![order_id.to_owned()],
                )
                .await?;
            Ok(changed == 1)
        })
    }

    fn depth(&self) -> BoxFuture<'_, Result<Depth, QueueError>> {
        Box::pin(async move {
            let flat: Vec<i64> = self.run(&SCRIPTS.depth, &[&self.prefix], vec![]).await?;
            let mut depth = Depth {
                in_flight: flat.first().copied().unwrap_or(0),
                dead: flat.get(1).copied().unwrap_or(0),
                ..Default::default()
            };
            for pair in flat.get(2..).unwrap_or_default().chunks_exact(2) {
                if pair[1] != 0 {
                    depth.waiting.insert(pair[0], pair[1]);
                }
            }
            Ok(depth)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_sort_by_priority_then_time_then_id() {
        let mut members = [
            member(1, 2_000, "b"),
            member(5, 3_000, "c"),
            member(1, 1_000, "a"),
            member(5, 1_000, "d"),
            member(0, 0, "e"),
            member(i64::from(u32::MAX), 9_000, "f"),
            member(1, 1_000, "0"),
        ];
        members.sort();
        let ids: Vec<&str> = members
            .iter()
            .map(|m| m.rsplit(':').next().unwrap())
            .collect();
        assert_eq!(ids, ["f", "d", "c", "0", "a", "b", "e"]);
        assert_eq!(member(-3, 1, "x"), member(0, 1, "x"));
    }
}
