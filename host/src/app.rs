//! The application: shared state, start-up (configuration check, database, migrations,
//! router) and serving until a shutdown signal, finishing the requests in flight.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::{
    auth::AuthState,
    clock::{Clock, SystemClock},
    config::Config,
    policy::PolicyRuntime,
    queue::{DbQueue, JobQueue},
    store::Store,
};
use tokio::sync::Notify;

/// State every handler can reach.
#[derive(Clone)]
pub struct AppState {
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
    /// Redis, when configured.
    pub redis: Option<redis::Client>,
    /// Origins allowed for CORS and cookie-authenticated writes besides our own.
    pub allowed_origins: Arc<[String]>,
    /// Set once migrations ran.
    pub ready: Arc<AtomicBool>,
}

/// A built application bound to its port, ready to serve.
pub struct App {
    listener: TcpListener,
    state: AppState,
    port: u16,
}

impl App {
    /// Builds the application with the system clock.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Builds the application with the given clock (tests move time by hand).
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let state = build_state(config, clock).await?;
        let listener = TcpListener::bind(state.config.bind)
            .await
            .with_context(|| format!("cannot listen on {}", state.config.bind))?;
        let port = listener.local_addr()?.port();
        state.ready.store(true, Ordering::Release);
        Ok(Self {
            listener,
            state,
            port,
        })
    }

    /// The port the application listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (tests reach the store through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and closes the
    /// database pool.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let store = self.state.store.clone();
        let (stop_workers, workers) =
            crate::orders::process::spawn_workers(&self.state, self.state.config.workers);
        let router = crate::http::router(self.state);
        tracing::info!(
            port = self.port,
            backend = store.backend(),
            "orderhost listening"
        );
        axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("server error")?;
        tracing::info!("in-flight requests finished; stopping workers");
        let _ = stop_workers.send(true);
        for worker in workers {
            let _ = worker.await;
        }
        tracing::info!("closing the database");
        store.close().await;
        Ok(())
    }
}

/// Checks the configuration, opens and migrates the database, loads the policies: the
/// state shared by the HTTP server and the workers.
pub async fn build_state(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
    config.validate()?;
    config.store.check_durability(config.environment)?;
    let _ = crate::observability::metrics_handle();
    // Compiling the components is CPU work: keep it off the async threads.
    let policies_dir = config.policies_dir.clone();
    let policy = tokio::task::spawn_blocking(move || PolicyRuntime::load(&policies_dir))
        .await
        .context("policy loading panicked")?
        .context("cannot load the policy bindings")?;
    let store = Store::connect(&config.store).await?;
    store.migrate().await?;
    let redis = match config.redis_url.trim() {
        "" => None,
        url => Some(redis::Client::open(url).context("REDIS_URL is not a valid Redis URL")?),
    };
    let allowed_origins = config
        .cors_origins()
        .map(|o| o.trim_end_matches('/').to_owned())
        .collect();
    let queue: Arc<dyn JobQueue> = Arc::new(DbQueue::new(store.clone(), &config.queue()));
    let state = AppState {
        queue,
        work: Arc::new(Notify::new()),
        order_events: Arc::new(Notify::new()),
        order_writer: crate::orders::writer::OrderWriter::start(store.clone()),
        order_reader: crate::orders::reader::OrderReader::start(store.clone()),
        store,
        auth: AuthState::from_config(&config),
        config: Arc::new(config),
        clock,
        policy: Arc::new(policy),
        redis,
        allowed_origins,
        ready: Arc::new(AtomicBool::new(false)),
    };
    Ok(state)
}

/// Completes on ctrl-c or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled, so a signal that arrives during start-up (compiling
/// components, migrating) is not lost to the default action: the process starts, then
/// shuts down cleanly.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let mut signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let terminate = async {
                match signals.0.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let interrupt = async {
                match signals.1.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = terminate => {},
                () = interrupt => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown signal received");
    }
}
