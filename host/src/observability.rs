//! Logging: `tracing` to standard output (pretty or JSON) and, like the service it
//! replaces, to `logs/combined.log` (everything) and `logs/error.log` (errors), rotated
//! daily and kept for two weeks.
//!
//! Metrics: the process-wide Prometheus recorder, the `/metrics` settings (a bearer token
//! and/or a listener of its own), the cached handles of the order path, and the sampler
//! that exports the queue depth and the database pool every few seconds.

use std::{net::SocketAddr, sync::OnceLock, time::Duration};

use clap::Args;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_appender::{
    non_blocking::WorkerGuard,
    rolling::{RollingFileAppender, Rotation},
};
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    field::RecordFields,
    filter::LevelFilter,
    fmt::{
        FormatFields,
        format::{DefaultFields, Writer},
    },
    layer::SubscriberExt,
    util::SubscriberInitExt,
};

use crate::config::{LogConfig, LogFormat};

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Field formatter distinct per output. `fmt` layers cache a span's formatted fields in
/// the span under the formatter's type; layers sharing a type would each append to the
/// same cache and every field recorded after span creation (status, user, …) would print
/// once per layer. A distinct type per output keeps one copy each.
#[derive(Default)]
struct OutputFields<const N: u8>(DefaultFields);

impl<'w, const N: u8> FormatFields<'w> for OutputFields<N> {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> std::fmt::Result {
        self.0.format_fields(writer, fields)
    }
}

fn fmt_layer<W, const N: u8>(format: LogFormat, writer: W, ansi: bool) -> BoxedLayer
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            // The whole span list: a line logged inside a step of a request (`decide`, a
            // policy call) still carries the request span's id, tenant and user.
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(writer)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .fmt_fields(OutputFields::<N>::default())
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
    }
}

fn appender(dir: &str, prefix: &str) -> anyhow::Result<RollingFileAppender> {
    Ok(RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(prefix)
        .filename_suffix("log")
        .max_log_files(14)
        .build(dir)?)
}

/// The process-wide Prometheus recorder, installed on first use (one per process: the
/// `metrics` facade has a single global recorder, shared by every app in a test run).
/// Installing it also describes every series and registers those whose labels are known
/// in advance, so they are scraped (at 0) before their first event.
pub fn metrics_handle() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                // Policy calls take microseconds: the default buckets start there.
                .set_buckets(&[
                    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5,
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("orderhost_http_request_duration_seconds".into()),
                    &[
                        0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0, 30.0,
                    ],
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("orderhost_order_time_to_final_seconds".into()),
                    &[
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                        300.0, 900.0, 3_600.0,
                    ],
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("orderhost_policy_fuel_used".into()),
                    &[1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9],
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("orderhost_order_write_group_size".into()),
                    &[
                        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1_024.0,
                    ],
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe_and_register();
            Some(handle)
        })
        .clone()
}

/// Every series orderhost exports, with its help text (the README's "Metrics" table
/// lists the same names).
fn describe_and_register() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "orderhost_http_requests_total",
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        "orderhost_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "time to answer an HTTP request (response head), by method and route template"
    );
    describe_counter!(
        "orderhost_orders_accepted_total",
        "orders accepted (202), by priority class"
    );
    describe_counter!(
        "orderhost_orders_settled_total",
        "orders a worker brought to a final state, by priority class, status and reason"
    );
    describe_histogram!(
        "orderhost_order_time_to_final_seconds",
        metrics::Unit::Seconds,
        "time from acceptance to the final state set by a worker, by priority class and status"
    );
    describe_histogram!(
        "orderhost_order_write_group_size",
        "orders written per grouped commit of the order writer"
    );
    describe_gauge!(
        "orderhost_queue_waiting",
        "jobs waiting to be claimed, by priority class (sampled)"
    );
    describe_gauge!(
        "orderhost_queue_in_flight",
        "jobs claimed by a worker and not settled yet (sampled)"
    );
    describe_gauge!(
        "orderhost_queue_dead_letters",
        "jobs in the dead-letter queue (sampled)"
    );
    describe_counter!(
        "orderhost_queue_retries_total",
        "failed job attempts put back for a retry"
    );
    describe_counter!(
        "orderhost_queue_dead_total",
        "jobs that ran out of attempts and went to the dead-letter queue"
    );
    describe_counter!(
        "orderhost_dead_letters_total",
        "dead letters handled by an operator, by action (retry, discard)"
    );
    describe_gauge!(
        "orderhost_outbox_unsent",
        "Redis mode: accepted orders not handed to Redis yet (0 on the database queue)"
    );
    describe_gauge!(
        "orderhost_outbox_lag_seconds",
        metrics::Unit::Seconds,
        "Redis mode: age of the oldest unsent outbox row (0 on the database queue)"
    );
    describe_counter!(
        "orderhost_outbox_pushed_total",
        "Redis mode: outbox rows pushed to Redis"
    );
    describe_counter!(
        "orderhost_outbox_push_failures_total",
        "Redis mode: failed pushes of outbox rows"
    );
    describe_counter!(
        "orderhost_policy_calls_total",
        "component calls, by hook and component"
    );
    describe_counter!(
        "orderhost_policy_errors_total",
        "failed component calls, by hook, component and kind"
    );
    describe_histogram!(
        "orderhost_policy_fuel_used",
        "fuel (WebAssembly instructions) used by a successful component call"
    );
    describe_histogram!(
        "orderhost_policy_call_seconds",
        metrics::Unit::Seconds,
        "duration of a successful component call, by hook and component"
    );
    describe_gauge!(
        "orderhost_breaker_state",
        "circuit breaker of a binding: 0 closed, 1 half-open, 2 open"
    );
    describe_counter!(
        "orderhost_breaker_transitions_total",
        "circuit breaker transitions, by binding and new state"
    );
    describe_counter!(
        "orderhost_canary_auto_rollbacks_total",
        "canaries rolled back by the guard, by hook"
    );
    describe_counter!(
        "orderhost_shadow_disagreements_total",
        "shadow candidates that disagreed with the live decision, by hook and kind"
    );
    describe_gauge!(
        "orderhost_db_pool_connections",
        "database connections open in this process's pool (sampled)"
    );
    describe_gauge!(
        "orderhost_db_pool_idle_connections",
        "open database connections not in use (sampled)"
    );
    describe_gauge!(
        "orderhost_db_pool_in_use_connections",
        "database connections in use (sampled)"
    );
    describe_gauge!(
        "orderhost_db_pool_max_connections",
        "largest number of connections the pool opens (ORDERHOST_DB_MAX_CONNECTIONS)"
    );
    // Scraped at 0 before their first event: a rate over a series that appears late
    // misses its first increment, and an alert on it cannot tell "none" from "not yet".
    for name in [
        "orderhost_queue_retries_total",
        "orderhost_queue_dead_total",
        "orderhost_outbox_pushed_total",
        "orderhost_outbox_push_failures_total",
    ] {
        let _ = metrics::counter!(name);
    }
    for action in ["retry", "discard"] {
        let _ = metrics::counter!("orderhost_dead_letters_total", "action" => action);
    }
    for hook in crate::policy::types::Hook::ALL {
        let _ = metrics::counter!("orderhost_canary_auto_rollbacks_total", "hook" => hook.as_str());
    }
    for (hook, kinds) in [
        ("validation", ["validationMismatch", "candidateError"]),
        ("pricing", ["priceDelta", "candidateError"]),
        ("prioritization", ["priorityDelta", "candidateError"]),
    ] {
        for kind in kinds {
            let _ = metrics::counter!("orderhost_shadow_disagreements_total",
                "hook" => hook, "kind" => kind);
        }
    }
    for name in [
        "orderhost_outbox_unsent",
        "orderhost_outbox_lag_seconds",
        "orderhost_queue_in_flight",
        "orderhost_queue_dead_letters",
        "orderhost_db_pool_connections",
        "orderhost_db_pool_idle_connections",
        "orderhost_db_pool_in_use_connections",
        "orderhost_db_pool_max_connections",
    ] {
        let _ = metrics::gauge!(name);
    }
    for class in PRIORITY_CLASSES {
        let _ = metrics::gauge!("orderhost_queue_waiting", "class" => class);
    }
}

/// Lowest priority of the `vip` class. Priorities come from the tenants' prioritization
/// components (any `u32`): metrics group them in two classes so the label stays bounded.
/// The built-in `priority-vip` gives VIPs 100 and everyone else 10.
pub const VIP_PRIORITY: i64 = 100;

/// The priority classes, as the `class` label spells them.
pub const PRIORITY_CLASSES: [&str; 2] = ["vip", "regular"];

/// The class of a priority: `vip` from [`VIP_PRIORITY`] up, `regular` below.
pub fn priority_class(priority: i64) -> &'static str {
    PRIORITY_CLASSES[class_index(priority)]
}

fn class_index(priority: i64) -> usize {
    usize::from(priority < VIP_PRIORITY)
}

/// Why a settled order ended as it did, as the `reason` label spells it.
const SETTLED: [(&str, &str); 5] = [
    ("CONFIRMED", "none"),
    ("FAILED", "OUT_OF_STOCK"),
    ("FAILED", "PRODUCT_INACTIVE"),
    ("FAILED", "RETRIES_EXHAUSTED"),
    ("FAILED", "other"),
];

/// The order path's metric handles, resolved once: counting an order is an atomic add,
/// not a registry lookup with freshly built labels.
pub struct OrderMetrics {
    accepted: [Counter; 2],
    settled: [[Counter; SETTLED.len()]; 2],
    /// Per class, CONFIRMED then FAILED.
    time_to_final: [[Histogram; 2]; 2],
}

/// The order path's handles (created, and scraped at 0, on first use).
pub fn order_metrics() -> &'static OrderMetrics {
    static METRICS: OnceLock<OrderMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        // The recorder first: a handle taken before it is installed would count nothing.
        let _ = metrics_handle();
        OrderMetrics {
            accepted: PRIORITY_CLASSES.map(
                |class| metrics::counter!("orderhost_orders_accepted_total", "class" => class),
            ),
            settled: PRIORITY_CLASSES.map(|class| {
                SETTLED.map(|(status, reason)| {
                    metrics::counter!("orderhost_orders_settled_total",
                        "class" => class, "status" => status, "reason" => reason)
                })
            }),
            time_to_final: PRIORITY_CLASSES.map(|class| {
                ["CONFIRMED", "FAILED"].map(|status| {
                    metrics::histogram!("orderhost_order_time_to_final_seconds",
                        "class" => class, "status" => status)
                })
            }),
        }
    })
}

impl OrderMetrics {
    /// An order of `priority` was accepted.
    pub fn accepted(&self, priority: i64) {
        self.accepted[class_index(priority)].increment(1);
    }

    /// An order of `priority` accepted `elapsed_ms` ago reached a final state: confirmed,
    /// or failed with `reason`.
    pub fn settled(&self, priority: i64, failed: Option<&str>, elapsed_ms: i64) {
        let class = class_index(priority);
        let which = match failed {
            None => 0,
            Some("OUT_OF_STOCK") => 1,
            Some("PRODUCT_INACTIVE") => 2,
            Some("RETRIES_EXHAUSTED") => 3,
            Some(_) => 4,
        };
        self.settled[class][which].increment(1);
        self.time_to_final[class][usize::from(failed.is_some())]
            .record(elapsed_ms.max(0) as f64 / 1_000.0);
    }
}

/// The handles of one hook of one component (`hook`, `component` labels).
pub struct CallMetrics {
    /// `orderhost_policy_calls_total`.
    pub calls: Counter,
    /// `orderhost_policy_fuel_used` (successful calls).
    pub fuel: Histogram,
    /// `orderhost_policy_call_seconds` (successful calls).
    pub seconds: Histogram,
}

impl CallMetrics {
    /// Resolves the handles of `hook` of `component` (`name@version`).
    pub fn new(hook: &'static str, component: String) -> Self {
        // The recorder first: a handle taken before it is installed would count nothing.
        let _ = metrics_handle();
        Self {
            calls: metrics::counter!("orderhost_policy_calls_total",
                "hook" => hook, "component" => component.clone()),
            fuel: metrics::histogram!("orderhost_policy_fuel_used",
                "hook" => hook, "component" => component.clone()),
            seconds: metrics::histogram!("orderhost_policy_call_seconds",
                "hook" => hook, "component" => component),
        }
    }
}

/// Who may read `GET /metrics`, and where.
#[derive(Debug, Clone, Default, Args)]
pub struct MetricsConfig {
    /// Bearer token `GET /metrics` requires (`Authorization: Bearer <token>`); empty = no
    /// token. At least 16 bytes in production.
    #[arg(
        long = "metrics-token",
        id = "metrics_token",
        env = "ORDERHOST_METRICS_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    pub metrics_token: String,
    /// Serve `GET /metrics` on this address of its own (e.g. `127.0.0.1:9100`) and not on
    /// the API port. Production without it and without a token serves no metrics.
    #[arg(
        long = "metrics-addr",
        id = "metrics_addr",
        env = "ORDERHOST_METRICS_ADDR"
    )]
    pub metrics_addr: Option<SocketAddr>,
}

/// Shortest metrics token accepted in production.
pub const MIN_METRICS_TOKEN_BYTES: usize = 16;

/// Where `GET /metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsExposure {
    /// On the API port (behind the token when one is set).
    ApiPort,
    /// On a listener of its own (behind the token when one is set); 404 on the API port.
    Separate(SocketAddr),
    /// Nowhere: production with neither a token nor an address of its own.
    Disabled,
}

/// A metrics setting this environment refuses.
#[derive(Debug, thiserror::Error)]
pub enum MetricsConfigError {
    /// A short token in production.
    #[error(
        "ORDERHOST_METRICS_TOKEN is {0} bytes long: a production start needs at least {MIN_METRICS_TOKEN_BYTES} bytes (e.g. `openssl rand -base64 32`)"
    )]
    WeakToken(usize),
}

impl MetricsConfig {
    /// The token, when one is set.
    pub fn token(&self) -> Option<&str> {
        Some(self.metrics_token.trim()).filter(|t| !t.is_empty())
    }

    /// Where metrics are served in `environment`: production never serves them
    /// unauthenticated on the API port.
    pub fn exposure(&self, environment: crate::config::Environment) -> MetricsExposure {
        match (self.metrics_addr, self.token()) {
            (Some(addr), _) => MetricsExposure::Separate(addr),
            (None, Some(_)) => MetricsExposure::ApiPort,
            (None, None) if environment == crate::config::Environment::Production => {
                MetricsExposure::Disabled
            }
            (None, None) => MetricsExposure::ApiPort,
        }
    }

    /// Checks the token's length in production.
    pub fn check(&self, environment: crate::config::Environment) -> Result<(), MetricsConfigError> {
        match self.token() {
            Some(t)
                if environment == crate::config::Environment::Production
                    && t.len() < MIN_METRICS_TOKEN_BYTES =>
            {
                Err(MetricsConfigError::WeakToken(t.len()))
            }
            _ => Ok(()),
        }
    }

    /// Whether an `Authorization` header value carries the token (always true without
    /// one). Compared in constant time: both sides are MACed with a per-process key and the
    /// tags compared with `verify_slice`, so neither the content nor the length leaks.
    pub fn authorizes(&self, authorization: Option<&str>) -> bool {
        use hmac::Mac as _;
        let Some(expected) = self.token() else {
            return true;
        };
        let Some(given) = authorization.and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        }) else {
            return false;
        };
        static KEY: OnceLock<[u8; 32]> = OnceLock::new();
        let key = KEY.get_or_init(rand::random);
        let tag = |bytes: &[u8]| {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key)
                .expect("HMAC takes keys of any length");
            mac.update(bytes);
            mac
        };
        let expected = tag(expected.as_bytes()).finalize().into_bytes();
        tag(given.trim().as_bytes()).verify_slice(&expected).is_ok()
    }
}

/// How often the sampler exports the queue depth and the pool, and runs the recorder's
/// upkeep (histogram samples are folded in between scrapes, so memory stays bounded
/// when nothing scrapes).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// A task aborted when this is dropped (with the serving future that owns it).
pub struct TaskGuard(tokio::task::JoinHandle<()>);

impl TaskGuard {
    /// Spawns `task`, aborted when the guard is dropped.
    pub fn spawn(task: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(tokio::spawn(task))
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the sampler: every [`SAMPLE_EVERY`] (the first at once), the queue depth per
/// priority class, the jobs in flight and dead (read like `GET /health` reads them), and
/// this process's database pool. Stops when the guard is dropped.
pub fn spawn_sampler(
    queue: std::sync::Arc<dyn crate::queue::JobQueue>,
    store: crate::store::Store,
) -> TaskGuard {
    let _ = order_metrics();
    let waiting =
        PRIORITY_CLASSES.map(|class| metrics::gauge!("orderhost_queue_waiting", "class" => class));
    let in_flight = metrics::gauge!("orderhost_queue_in_flight");
    let dead = metrics::gauge!("orderhost_queue_dead_letters");
    let pool_open = metrics::gauge!("orderhost_db_pool_connections");
    let pool_idle = metrics::gauge!("orderhost_db_pool_idle_connections");
    let pool_in_use = metrics::gauge!("orderhost_db_pool_in_use_connections");
    let pool_max = metrics::gauge!("orderhost_db_pool_max_connections");
    TaskGuard(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SAMPLE_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            // A queue that does not answer leaves the last values (and `/health` says why).
            if let Ok(Ok(depth)) = tokio::time::timeout(Duration::from_secs(2), queue.depth()).await
            {
                let mut per_class = [0i64; 2];
                for (priority, n) in &depth.waiting {
                    per_class[class_index(*priority)] += n;
                }
                for (gauge, n) in waiting.iter().zip(per_class) {
                    gauge.set(n as f64);
                }
                in_flight.set(depth.in_flight as f64);
                dead.set(depth.dead as f64);
            }
            let (open, idle, max) = crate::with_pool!(&store, pool => (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            ));
            pool_open.set(f64::from(open));
            pool_idle.set(idle as f64);
            pool_in_use.set((open as usize).saturating_sub(idle) as f64);
            pool_max.set(f64::from(max));
            if let Some(handle) = metrics_handle() {
                handle.run_upkeep();
            }
        }
    }))
}

/// The format when none is set: JSON in production, pretty otherwise. Logging starts
/// before the command's own options are parsed (and not every command has `--env`), so
/// the environment is read from the command line's `--env` and `ORDERHOST_ENV` here.
fn default_format() -> LogFormat {
    let mut from_args = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--env" {
            from_args = args.next();
        } else if let Some(value) = arg.strip_prefix("--env=") {
            from_args = Some(value.to_owned());
        }
    }
    match from_args.or_else(|| std::env::var("ORDERHOST_ENV").ok()) {
        Some(env) if env.trim() == "production" => LogFormat::Json,
        _ => LogFormat::Pretty,
    }
}

/// Installs the global subscriber. Keep the returned guards alive for the life of the
/// process: they flush the file writers on drop.
pub fn init(cfg: &LogConfig) -> anyhow::Result<Vec<WorkerGuard>> {
    let filter = EnvFilter::try_new(&cfg.log_level).map_err(|e| {
        anyhow::anyhow!(
            "ORDERHOST_LOG {:?} is not a valid filter: {e}",
            cfg.log_level
        )
    })?;
    let format = cfg.log_format.unwrap_or_else(default_format);
    let mut layers: Vec<BoxedLayer> = vec![fmt_layer::<_, 0>(format, std::io::stdout, true)];
    let mut guards = Vec::new();
    if !cfg.log_dir.trim().is_empty() {
        std::fs::create_dir_all(&cfg.log_dir)
            .map_err(|e| anyhow::anyhow!("cannot create log folder {:?}: {e}", cfg.log_dir))?;
        let (combined, guard) = tracing_appender::non_blocking(appender(&cfg.log_dir, "combined")?);
        guards.push(guard);
        layers.push(fmt_layer::<_, 1>(format, combined, false));
        let (errors, guard) = tracing_appender::non_blocking(appender(&cfg.log_dir, "error")?);
        guards.push(guard);
        layers.push(
            fmt_layer::<_, 2>(format, errors, false)
                .with_filter(LevelFilter::ERROR)
                .boxed(),
        );
    }
    tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init()
        .map_err(|e| anyhow::anyhow!("logging already initialised: {e}"))?;
    Ok(guards)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Environment;

    fn config(token: &str, addr: Option<&str>) -> MetricsConfig {
        MetricsConfig {
            metrics_token: token.to_owned(),
            metrics_addr: addr.map(|a| a.parse().unwrap()),
        }
    }

    #[test]
    fn production_never_exposes_metrics_openly_on_the_api_port() {
        let open = config("", None);
        assert_eq!(
            open.exposure(Environment::Development),
            MetricsExposure::ApiPort
        );
        assert_eq!(
            open.exposure(Environment::Production),
            MetricsExposure::Disabled
        );
        let token = config("a-token-of-sixteen-bytes", None);
        assert_eq!(
            token.exposure(Environment::Production),
            MetricsExposure::ApiPort
        );
        let separate = config("", Some("127.0.0.1:9100"));
        assert_eq!(
            separate.exposure(Environment::Production),
            MetricsExposure::Separate("127.0.0.1:9100".parse().unwrap())
        );
        // Blank is no token.
        assert_eq!(config("   ", None).token(), None);
    }

    #[test]
    fn a_short_token_is_refused_in_production_only() {
        let short = config("short", None);
        assert!(short.check(Environment::Development).is_ok());
        let error = short
            .check(Environment::Production)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("5 bytes") && !error.contains("short"),
            "{error}"
        );
        assert!(
            config("exactly-16-bytes", None)
                .check(Environment::Production)
                .is_ok()
        );
    }

    #[test]
    fn only_the_exact_bearer_token_authorizes() {
        let token = "a-token-of-sixteen-bytes";
        let cfg = config(token, None);
        assert!(cfg.authorizes(Some(&format!("Bearer {token}"))));
        assert!(cfg.authorizes(Some(&format!("bearer {token}"))));
        for refused in [
            None,
            Some(token.to_owned()),
            Some(format!("Basic {token}")),
            Some(format!("Bearer {token}x")),
            Some(format!("Bearer {}", &token[1..])),
            Some("Bearer ".to_owned()),
        ] {
            assert!(!cfg.authorizes(refused.as_deref()), "{refused:?}");
        }
        // Without a token, anyone.
        assert!(config("", None).authorizes(None));
    }

    #[test]
    fn priorities_fall_in_two_classes() {
        assert_eq!(priority_class(100), "vip");
        assert_eq!(priority_class(1_000), "vip");
        assert_eq!(priority_class(99), "regular");
        assert_eq!(priority_class(10), "regular");
        assert_eq!(priority_class(0), "regular");
    }
}
