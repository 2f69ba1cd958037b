//! The application: the one place that assembles the router and spawns the workers —
//! start-up (the state from `state.rs`, the listener), and serving until a shutdown
//! signal, finishing the requests in flight. Nothing imports this module but the CLI.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
};

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::{
    clock::{Clock, SystemClock},
    config::Config,
    state::{AppState, WorkerContext, build_state},
};

/// A built application bound to its port, ready to serve.
pub struct App {
    listener: TcpListener,
    state: AppState,
    port: u16,
    /// The listener of `GET /metrics` when `ORDERHOST_METRICS_ADDR` is set.
    metrics_listener: Option<TcpListener>,
}

impl App {
    /// Builds the application with the system clock.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Builds the application with the given clock (tests move time by hand).
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        config.metrics.check(config.environment)?;
        let state = build_state(config, clock).await?;
        let listener = TcpListener::bind(state.config.bind)
            .await
            .with_context(|| format!("cannot listen on {}", state.config.bind))?;
        let port = listener.local_addr()?.port();
        let metrics_listener =
            match state.config.metrics.metrics_addr {
                Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
                    format!("cannot listen on {addr} (ORDERHOST_METRICS_ADDR)")
                })?),
                None => None,
            };
        state.ready.store(true, Ordering::Release);
        Ok(Self {
            listener,
            state,
            port,
            metrics_listener,
        })
    }

    /// The port of the metrics listener, when `ORDERHOST_METRICS_ADDR` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
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
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let store = self.state.store.clone();
        let (stop_workers, workers) = crate::orders::process::spawn_workers(
            &WorkerContext::from(&self.state),
            self.state.config.workers,
        );
        let hangups = reload_on_hangup(self.state.policy.clone());
        // Canaries the guard rolls back become `auto-rollback` revisions.
        let auto_rollbacks = crate::registry::bindings::spawn_auto_rollbacks(&self.state);
        // Dropped (and so stopped) when serving ends, or when this future is dropped.
        let _fanout = crate::registry::fanout::spawn(&self.state);
        let _sampler =
            crate::observability::spawn_sampler(self.state.queue.clone(), self.state.store.clone());
        let _metrics_server = self.serve_metrics();
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
        if let Some(hangups) = hangups {
            hangups.abort();
        }
        auto_rollbacks.abort();
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

impl App {
    /// Serves `GET /metrics` on its own listener when one is configured; says where
    /// metrics are (or that production serves none). Stops when the guard is dropped.
    fn serve_metrics(&mut self) -> Option<crate::observability::TaskGuard> {
        use crate::observability::MetricsExposure;
        let config = &self.state.config;
        let token = config.metrics.token().is_some();
        match config.metrics.exposure(config.environment) {
            MetricsExposure::ApiPort => {
                tracing::info!(token, "metrics served at /metrics on the API port");
            }
            MetricsExposure::Disabled => tracing::warn!(
                "metrics are not served: production exposes GET /metrics only behind \
                 ORDERHOST_METRICS_TOKEN or on ORDERHOST_METRICS_ADDR"
            ),
            MetricsExposure::Separate(_) => {
                let listener = self.metrics_listener.take()?;
                return Some(serve_metrics_on(listener, &config.metrics));
            }
        }
        None
    }
}

fn serve_metrics_on(
    listener: TcpListener,
    config: &crate::observability::MetricsConfig,
) -> crate::observability::TaskGuard {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let token = config.token().is_some();
    tracing::info!(%addr, token, "metrics served at /metrics on their own listener");
    let router = crate::http::metrics_router(config.clone());
    crate::observability::TaskGuard::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "metrics listener failed");
        }
    })
}

/// `orderhost worker`'s metrics: its settlements, the queue and its pool, sampled and
/// served on `ORDERHOST_METRICS_ADDR` (behind the token when set). A worker has no API
/// port: without that address it exports nothing. Stops when the guard is dropped.
pub async fn worker_metrics(
    state: &WorkerContext,
) -> anyhow::Result<
    Option<(
        crate::observability::TaskGuard,
        crate::observability::TaskGuard,
    )>,
> {
    let config = &state.config.metrics;
    config.check(state.config.environment)?;
    let Some(addr) = config.metrics_addr else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (ORDERHOST_METRICS_ADDR)"))?;
    let _ = crate::observability::metrics_handle();
    let sampler = crate::observability::spawn_sampler(state.queue.clone(), state.store.clone());
    Ok(Some((serve_metrics_on(listener, config), sampler)))
}

/// Re-reads the TOML bindings on every SIGHUP (the database bindings stay above them); a
/// manifest that does not load is logged and the active bindings stay.
fn reload_on_hangup(
    policy: Arc<crate::policy::PolicyRuntime>,
) -> Option<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup()).ok()?;
        Some(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let policy = policy.clone();
                match tokio::task::spawn_blocking(move || policy.reload()).await {
                    Ok(Ok(generation)) => {
                        tracing::info!(generation, "SIGHUP: TOML bindings re-read")
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "SIGHUP: TOML bindings not reloaded; the active ones stay")
                    }
                    Err(e) => tracing::error!(error = %e, "SIGHUP: reload task failed"),
                }
            }
        }))
    }
    #[cfg(not(unix))]
    {
        let _ = policy;
        None
    }
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
