//! Bindings across replicas: after a change commits, the replica that made it announces
//! the new `bindings_revision` on the Redis channel `<prefix>:bindings`; every replica's
//! subscriber hears it and calls [`refresh`]. A periodic revision check
//! (`ORDERHOST_BINDINGS_CHECK_MS`) is the backstop when a message is lost, the subscriber
//! is reconnecting, or there is no Redis at all (PostgreSQL-only replicas; with SQLite the
//! swap is in-process and the check finds nothing to do). The same tick writes this
//! replica's heartbeat to `<prefix>:replicas:<id>` with a TTL of three intervals, which
//! `GET /admin/replicas` lists (SCAN, never KEYS).
//!
//! Redis is never needed for correctness: every failure is logged and survived, the
//! database revision check keeps replicas converging.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures_util::StreamExt as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use tokio::{sync::Mutex, task::JoinHandle};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::bindings::refresh;
use crate::{
    auth::AuthUser,
    clock::{Clock, rfc3339},
    config::Config,
    http::error::{ApiError, ErrorEnvelope},
    policy::PolicyRuntime,
    state::AppState,
    store::Store,
};

/// A Redis command that has not answered within this is given up (logged; the backstop
/// covers what it would have done).
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest wait between two subscription attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// This replica's identity and its Redis handles.
pub struct Fanout {
    /// Random at every start.
    id: String,
    /// Start time, ms since the epoch.
    started_ms: i64,
    prefix: String,
    check: Duration,
    redis: Option<redis::Client>,
    /// Opened on first use and kept: it reconnects by itself.
    commands: Mutex<Option<ConnectionManager>>,
}

/// One replica as its heartbeat describes it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaView {
    /// Random id chosen at start.
    pub id: String,
    /// When it started (RFC 3339).
    pub started: String,
    /// The database `bindings_revision` its active snapshot includes.
    pub revision: i64,
    /// Its local snapshot generation (counts every publish, TOML reloads included).
    pub generation: u64,
    /// Per tenant slug, the highest revision among its database bindings it serves.
    #[serde(default)]
    pub tenants: BTreeMap<String, i64>,
    /// When it last wrote its heartbeat (RFC 3339).
    pub last_heartbeat: String,
}

/// Body of `GET /admin/replicas`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicasView {
    /// The replica that answered.
    pub this: String,
    /// Where the list comes from: `redis` (every live heartbeat) or `local` (no Redis, or
    /// Redis unreachable: this process only).
    pub source: String,
    /// Replicas by id.
    pub replicas: Vec<ReplicaView>,
}

impl Fanout {
    /// A new identity for this process.
    pub fn new(config: &Config, redis: Option<redis::Client>, now_ms: i64) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            started_ms: now_ms,
            prefix: config.redis_prefix.clone(),
            check: Duration::from_millis(config.bindings_check_ms),
            redis,
            commands: Mutex::new(None),
        }
    }

    /// This replica's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn channel(&self) -> String {
        format!("{}:bindings", self.prefix)
    }

    fn heartbeat_key(&self) -> String {
        format!("{}:replicas:{}", self.prefix, self.id)
    }

    /// The command connection, opened on first use.
    async fn connection(&self) -> redis::RedisResult<Option<ConnectionManager>> {
        let Some(client) = &self.redis else {
            return Ok(None);
        };
        let mut slot = self.commands.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(Some(conn.clone()));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT)
            .set_number_of_retries(2);
        let conn = client.get_connection_manager_with_config(config).await?;
        *slot = Some(conn.clone());
        Ok(Some(conn))
    }

    /// Runs one Redis command with a deadline; `None` without Redis.
    async fn command<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<Option<T>, String> {
        let work = async {
            match self.connection().await? {
                Some(mut conn) => cmd.query_async::<T>(&mut conn).await.map(Some),
                None => Ok(None),
            }
        };
        match tokio::time::timeout(REDIS_TIMEOUT * 2, work).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err("Redis did not answer in time".to_owned()),
        }
    }

    /// Tells the other replicas that the database bindings are at `revision` (after the
    /// change committed). A failure is logged: their revision check catches up.
    pub async fn announce(&self, revision: i64) {
        if self.redis.is_none() {
            return;
        }
        let cmd = redis::cmd("PUBLISH")
            .arg(self.channel())
            .arg(revision)
            .to_owned();
        if let Err(e) = self.command::<i64>(&cmd).await {
            tracing::warn!(error = %e, revision, "bindings change not announced on Redis; replicas catch up at their next revision check");
        }
    }

    /// This process as its heartbeat describes it.
    fn describe(&self, policy: &PolicyRuntime, now_ms: i64) -> ReplicaView {
        let set = policy.snapshot();
        ReplicaView {
            id: self.id.clone(),
            started: rfc3339(self.started_ms),
            revision: set.database_revision(),
            generation: set.generation,
            tenants: set.database_tenant_revisions(),
            last_heartbeat: rfc3339(now_ms),
        }
    }

    /// Writes this replica's heartbeat (expires after three check intervals).
    async fn heartbeat(&self, policy: &PolicyRuntime, now_ms: i64) {
        if self.redis.is_none() {
            return;
        }
        let view = self.describe(policy, now_ms);
        let ttl_ms = u64::try_from((self.check * 3).as_millis())
            .unwrap_or(u64::MAX)
            .max(1_000);
        let value = serde_json::to_string(&view).unwrap_or_default();
        let cmd = redis::cmd("SET")
            .arg(self.heartbeat_key())
            .arg(value)
            .arg("PX")
            .arg(ttl_ms)
            .to_owned();
        if let Err(e) = self.command::<()>(&cmd).await {
            tracing::warn!(error = %e, "replica heartbeat not written");
        }
    }

    /// Every live replica's heartbeat (SCAN over the prefix), this one's included even
    /// when Redis is absent or failing.
    pub async fn replicas(&self, policy: &PolicyRuntime, now_ms: i64) -> ReplicasView {
        let this = self.describe(policy, now_ms);
        let (source, mut replicas) = match self.scan().await {
            Ok(Some(found)) => ("redis", found),
            Ok(None) => ("local", Vec::new()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the replicas' heartbeats; answering with this one");
                ("local", Vec::new())
            }
        };
        replicas.retain(|r| r.id != this.id);
        replicas.push(this);
        replicas.sort_by(|a, b| a.id.cmp(&b.id));
        ReplicasView {
            this: self.id.clone(),
            source: source.to_owned(),
            replicas,
        }
    }

    async fn scan(&self) -> Result<Option<Vec<ReplicaView>>, String> {
        if self.redis.is_none() {
            return Ok(None);
        }
        let pattern = format!("{}:replicas:*", self.prefix);
        let mut keys = Vec::new();
        let mut cursor = 0_u64;
        loop {
            let cmd = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(200)
                .to_owned();
            let Some((next, batch)) = self.command::<(u64, Vec<String>)>(&cmd).await? else {
                return Ok(None);
            };
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        if keys.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let cmd = redis::cmd("MGET").arg(&keys).to_owned();
        let values = self
            .command::<Vec<Option<String>>>(&cmd)
            .await?
            .unwrap_or_default();
        Ok(Some(
            values
                .into_iter()
                .flatten()
                .filter_map(|v| serde_json::from_str::<ReplicaView>(&v).ok())
                .collect(),
        ))
    }
}

/// The background tasks of [`spawn`]; dropping it stops them.
pub struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Starts the revision check (with the heartbeat) and, with Redis, the subscriber.
pub fn spawn(state: &AppState) -> Tasks {
    let fanout = state.fanout.clone();
    let store = state.store.clone();
    let policy = state.policy.clone();
    let clock = state.clock.clone();
    let mut tasks = vec![tokio::spawn(check_loop(
        fanout.clone(),
        store.clone(),
        policy.clone(),
        clock,
    ))];
    if let Some(client) = fanout.redis.clone() {
        tasks.push(tokio::spawn(subscribe_loop(
            fanout,
            client,
            store,
            policy,
            state.clock.clone(),
        )));
    }
    Tasks(tasks)
}

async fn refresh_logged(store: &Store, policy: &Arc<PolicyRuntime>, why: &'static str) {
    if let Err(e) = refresh(store, policy).await {
        tracing::error!(error = %e, why, "database bindings not refreshed; the active snapshot stays");
    }
}

/// The backstop: compare revisions and write the heartbeat every interval.
async fn check_loop(
    fanout: Arc<Fanout>,
    store: Store,
    policy: Arc<PolicyRuntime>,
    clock: Arc<dyn Clock>,
) {
    let mut ticks = tokio::time::interval(fanout.check);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let before = policy.snapshot().database_revision();
        refresh_logged(&store, &policy, "revision check").await;
        let after = policy.snapshot().database_revision();
        if after > before {
            tracing::info!(
                from = before,
                to = after,
                "revision check found newer bindings"
            );
        }
        fanout.heartbeat(&policy, clock.now_ms()).await;
    }
}

/// Listens on the bindings channel, reconnecting with backoff; refreshes on every message
/// newer than the active snapshot, and once after each (re)subscription for what was
/// announced while it was away.
async fn subscribe_loop(
    fanout: Arc<Fanout>,
    client: redis::Client,
    store: Store,
    policy: Arc<PolicyRuntime>,
    clock: Arc<dyn Clock>,
) {
    let channel = fanout.channel();
    let mut backoff = Duration::from_millis(100);
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(REDIS_TIMEOUT * 4, subscribed).await {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(100);
                tracing::debug!(channel, "subscribed to bindings changes");
                refresh_logged(&store, &policy, "resubscribed").await;
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    let revision = message.get_payload::<i64>().unwrap_or(i64::MAX);
                    if revision > policy.snapshot().database_revision() {
                        refresh_logged(&store, &policy, "announced").await;
                        fanout.heartbeat(&policy, clock.now_ms()).await;
                    }
                }
                tracing::warn!(channel, "bindings subscription lost; reconnecting");
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, channel, "cannot subscribe to bindings changes; retrying")
            }
            Err(_) => tracing::warn!(
                channel,
                "subscribing to bindings changes timed out; retrying"
            ),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_replicas))
}

/// The replicas that wrote a heartbeat within three check intervals, with the bindings
/// revision each serves; without Redis, this process only. Operators only.
#[utoipa::path(get, path = "/admin/replicas", tag = "bindings",
    responses((status = 200, body = ReplicasView), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope)))]
async fn list_replicas(
    axum::extract::State(state): axum::extract::State<AppState>,
    actor: AuthUser,
) -> Result<crate::http::extract::Json<ReplicasView>, ApiError> {
    actor.require_operator(&state.store).await?;
    Ok(crate::http::extract::Json(
        state
            .fanout
            .replicas(&state.policy, state.clock.now_ms())
            .await,
    ))
}
