//! Shared state, split by who needs it: [`AppState`] for HTTP handlers (auth keys, CORS,
//! the placement batchers, the policy runtime) and [`WorkerContext`] for order workers
//! (store, queue, clock, wake-ups) — so `orderhost worker` builds no JWT keys, batchers or
//! CORS list it would never use, and starts without a JWT secret. This module imports no
//! router: `app.rs` assembles routers and spawns workers.

use std::sync::{Arc, atomic::AtomicBool};

use anyhow::Context as _;
use tokio::sync::Notify;

use crate::{
    auth::AuthState,
    clock::Clock,
    config::Config,
    policy::PolicyRuntime,
    queue::{DbQueue, JobQueue, QueueKind, outbox::Relay, redis::RedisQueue},
    store::Store,
};

/// The queue the configuration asks for, and in Redis mode the relay that feeds it. Redis
/// mode checks the server first ([`RedisQueue::check_server`]).
async fn build_queue(
    config: &Config,
    store: &Store,
    redis: Option<&redis::Client>,
    clock: &Arc<dyn Clock>,
    work: &Arc<Notify>,
) -> anyhow::Result<(Arc<dyn JobQueue>, Option<Relay>)> {
    let kind = config
        .queue
        .kind(&config.redis_url)
        .map_err(|e| anyhow::anyhow!(e))?;
    match (kind, redis) {
        (QueueKind::Redis, Some(client)) => {
            let queue = Arc::new(RedisQueue::new(
                client.clone(),
                &config.redis_prefix,
                config.queue.lease_ms,
            ));
            queue.check_server(config.environment).await?;
            let relay = Relay {
                store: store.clone(),
                queue: queue.clone(),
                clock: clock.clone(),
                wake: Arc::new(Notify::new()),
                work: work.clone(),
                linger_ms: config.queue.linger_ms,
            };
            tracing::info!(prefix = queue.prefix(), "queue: Redis, fed by the outbox");
            Ok((queue, Some(relay)))
        }
        _ => Ok((Arc::new(DbQueue::new(store.clone(), &config.queue)), None)),
    }
}

/// Opens the Redis client of `REDIS_URL` (no connection yet); `None` when it is empty.
fn redis_client(config: &Config) -> anyhow::Result<Option<redis::Client>> {
    match config.redis_url.trim() {
        "" => Ok(None),
        url => Ok(Some(
            redis::Client::open(url).context("REDIS_URL is not a valid Redis URL")?,
        )),
    }
}

/// State every handler can reach: one `Arc`, so the several middleware layers and the
/// handler that each take a copy per request pay one reference count, not one per field
/// (`AppState::clone`/drop were 2 % of the server's CPU under order load).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    /// The database.
    pub store: Store,
    /// The configuration the service started with.
    pub config: Arc<Config>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// Auth keys and throttling.
    pub auth: Arc<AuthState>,
    /// The policy runtime (components and the active bindings).
    pub policy: Arc<PolicyRuntime>,
    /// Where workers get jobs.
    pub queue: Arc<dyn JobQueue>,
    /// Writes accepted orders in groups.
    pub order_writer: crate::orders::writer::OrderWriter,
    /// Reads concurrent placements' customers and catalog lines together.
    pub order_reader: crate::orders::reader::OrderReader,
    /// Wakes this process's workers when an order is accepted.
    pub work: Arc<Notify>,
    /// Wakes event streams when an order changes in this process.
    pub order_events: Arc<Notify>,
    /// Redis mode: the outbox relay (woken when an order is accepted here).
    pub relay: Option<Relay>,
    /// Redis, when configured.
    pub redis: Option<redis::Client>,
    /// This replica's id, heartbeat and bindings announcements.
    pub fanout: Arc<crate::registry::fanout::Fanout>,
    /// Origins allowed for CORS and cookie-authenticated writes besides our own.
    pub allowed_origins: Arc<[String]>,
    /// Set once migrations ran.
    pub ready: Arc<AtomicBool>,
}

/// What order workers need: no HTTP state.
#[derive(Clone)]
pub struct WorkerContext {
    /// The database.
    pub store: Store,
    /// The configuration (queue tuning, idempotency lifetime).
    pub config: Arc<Config>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// Where jobs come from.
    pub queue: Arc<dyn JobQueue>,
    /// Wakes the workers when an order is accepted in this process.
    pub work: Arc<Notify>,
    /// Wakes event streams when an order changes in this process.
    pub order_events: Arc<Notify>,
    /// Redis mode: the outbox relay this process runs beside its workers.
    pub relay: Option<Relay>,
}

impl From<&AppState> for WorkerContext {
    fn from(state: &AppState) -> Self {
        Self {
            store: state.store.clone(),
            config: state.config.clone(),
            clock: state.clock.clone(),
            queue: state.queue.clone(),
            work: state.work.clone(),
            order_events: state.order_events.clone(),
            relay: state.relay.clone(),
        }
    }
}

impl From<&WorkerContext> for WorkerContext {
    fn from(ctx: &WorkerContext) -> Self {
        ctx.clone()
    }
}

/// Opens and migrates the database and sets up the queue: all `orderhost worker` needs.
pub async fn build_worker_context(
    config: Config,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<WorkerContext> {
    config.validate()?;
    config.store.check_durability(config.environment)?;
    let store = Store::open(
        &config.store,
        config.store.startup_timeout(config.environment),
    )
    .await?;
    let redis = redis_client(&config)?;
    let work = Arc::new(Notify::new());
    let (queue, relay) = build_queue(&config, &store, redis.as_ref(), &clock, &work).await?;
    Ok(WorkerContext {
        store,
        config: Arc::new(config),
        clock,
        queue,
        work,
        order_events: Arc::new(Notify::new()),
        relay,
    })
}

/// Checks the configuration, opens and migrates the database, loads the policies: the
/// state shared by the HTTP server and the workers.
pub async fn build_state(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
    config.validate()?;
    config.validate_http()?;
    config.store.check_durability(config.environment)?;
    let _ = crate::observability::metrics_handle();
    // Compiling the components is CPU work: keep it off the async threads.
    let policies_dir = config.policies_dir.clone();
    let (breaker, canary, runtime_clock) = (config.breaker, config.canary, clock.clone());
    let policy = tokio::task::spawn_blocking(move || {
        PolicyRuntime::load(&policies_dir).map(|p| {
            p.with_breaker(breaker, runtime_clock.clone())
                .with_canary_guard(canary, runtime_clock)
        })
    })
    .await
    .context("policy loading panicked")?
    .context("cannot load the policy bindings")?;
    let store = Store::open(
        &config.store,
        config.store.startup_timeout(config.environment),
    )
    .await?;
    let policy = Arc::new(policy);
    // Bindings made over the admin API take precedence over the TOML files.
    crate::registry::bindings::refresh(&store, &policy)
        .await
        .map_err(|e| anyhow::anyhow!("cannot load the database bindings: {e}"))?;
    let redis = redis_client(&config)?;
    let allowed_origins = config
        .cors_origins()
        .map(|o| o.trim_end_matches('/').to_owned())
        .collect();
    let work = Arc::new(Notify::new());
    let (queue, relay) = build_queue(&config, &store, redis.as_ref(), &clock, &work).await?;
    let fanout = Arc::new(crate::registry::fanout::Fanout::new(
        &config,
        redis.clone(),
        clock.now_ms(),
    ));
    let state = AppState(Arc::new(Shared {
        order_writer: crate::orders::writer::OrderWriter::start(store.clone(), queue.kind()),
        queue,
        work,
        relay,
        order_events: Arc::new(Notify::new()),
        order_reader: crate::orders::reader::OrderReader::start(store.clone()),
        store,
        auth: AuthState::from_config(&config),
        config: Arc::new(config),
        clock,
        policy,
        redis,
        fanout,
        allowed_origins,
        ready: Arc::new(AtomicBool::new(false)),
    }));
    Ok(state)
}
