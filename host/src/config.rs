//! Configuration: every setting the service reads, with its command-line flag, its
//! environment variable and its default. `orderhost serve` with nothing set starts a
//! development instance on 127.0.0.1:8000 backed by `data/orderhost.db`.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, ValueEnum};

/// Where the service runs: development relaxes cookie security and invents a JWT secret,
/// production refuses to start without a strong one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    /// Local work: cookies without `Secure`, a random JWT secret when none is set.
    Development,
    /// Real traffic: `Secure` cookies, a JWT secret of at least 32 bytes is mandatory.
    Production,
}

/// Log line format on standard output and in the log files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable, one line per event.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Settings shared by every command that touches the database.
#[derive(Debug, Clone, Args)]
pub struct StoreConfig {
    /// Database: `sqlite://path` (created if missing) or `postgres://user:pass@host/db`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Largest number of pooled database connections.
    #[arg(long, env = "ORDERHOST_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// SQLite only: when a commit reaches the disk. `full` flushes the write-ahead log at
    /// every commit, so an order answered 202 survives a power loss or kernel crash;
    /// `normal` flushes only at checkpoints: a process crash still loses nothing, but a
    /// power loss or kernel crash can roll back the last commits (orders already answered
    /// 202). Production refuses `normal` unless `ORDERHOST_SQLITE_ACCEPT_DATA_LOSS=true`.
    #[arg(
        long,
        env = "ORDERHOST_SQLITE_SYNCHRONOUS",
        value_enum,
        default_value_t = SqliteSynchronous::Full
    )]
    pub sqlite_synchronous: SqliteSynchronous,
    /// Acknowledges that `ORDERHOST_SQLITE_SYNCHRONOUS=normal` can lose accepted orders on
    /// a power loss or kernel crash; production starts with `normal` only when this is set.
    #[arg(
        long,
        env = "ORDERHOST_SQLITE_ACCEPT_DATA_LOSS",
        default_value_t = false
    )]
    pub sqlite_accept_data_loss: bool,
    /// How long a database operation waits for a pooled connection, in ms (100 – 600 000).
    /// While the database is down, a request waits this long for a new connection before
    /// it is answered 503 `DEPENDENCY_UNAVAILABLE`.
    #[arg(
        long,
        env = "ORDERHOST_DB_ACQUIRE_TIMEOUT_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(100..=600_000)
    )]
    pub db_acquire_timeout_ms: u64,
    /// How long start-up (`serve`, `worker`, `migrate`, `demo`) keeps retrying a database
    /// that does not answer, in seconds (0 – 3 600; 0 = one attempt). Default: 60 in
    /// production, 5 in development. Then the command exits non-zero naming the database.
    #[arg(
        long,
        env = "ORDERHOST_DB_STARTUP_TIMEOUT_SECS",
        value_parser = clap::value_parser!(u64).range(0..=3_600)
    )]
    pub db_startup_timeout_secs: Option<u64>,
}

/// When a SQLite commit reaches the disk (`PRAGMA synchronous`, in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SqliteSynchronous {
    /// The write-ahead log is flushed at every commit: a 202 survives a power loss.
    Full,
    /// The log is flushed at checkpoints only: a power loss or kernel crash can roll back
    /// the last commits; a process crash loses nothing.
    Normal,
}

/// Default database: an embedded SQLite file next to the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/orderhost.db";

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            db_max_connections: 16,
            sqlite_synchronous: SqliteSynchronous::Full,
            sqlite_accept_data_loss: false,
            db_acquire_timeout_ms: 10_000,
            db_startup_timeout_secs: None,
        }
    }
}

/// A store setting that this environment refuses.
#[derive(Debug, thiserror::Error)]
pub enum StoreConfigError {
    /// Production with commits that a power loss can roll back, not acknowledged.
    #[error(
        "ORDERHOST_SQLITE_SYNCHRONOUS=normal is refused in production: a power loss or kernel crash can roll back orders already answered 202. Use full (the default), or set ORDERHOST_SQLITE_ACCEPT_DATA_LOSS=true to accept that risk"
    )]
    UnacknowledgedDataLoss,
}

impl StoreConfig {
    /// Whether the database is the embedded SQLite file (or memory).
    pub fn is_sqlite(&self) -> bool {
        self.database_url.trim().starts_with("sqlite:")
    }

    /// How long a database operation waits for a pooled connection.
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.db_acquire_timeout_ms)
    }

    /// How long start-up keeps retrying an unreachable database in `environment`: the
    /// configured value, else 60 s in production (the database of a fresh deployment may
    /// start after orderhost) and 5 s in development (a newcomer learns fast that it is
    /// not there).
    pub fn startup_timeout(&self, environment: Environment) -> Duration {
        Duration::from_secs(self.db_startup_timeout_secs.unwrap_or(match environment {
            Environment::Production => 60,
            Environment::Development => 5,
        }))
    }

    /// Checks the durability setting against the environment: production refuses
    /// `sqlite_synchronous = normal` on SQLite unless the risk is acknowledged.
    pub fn check_durability(&self, environment: Environment) -> Result<(), StoreConfigError> {
        if environment == Environment::Production
            && self.is_sqlite()
            && self.sqlite_synchronous == SqliteSynchronous::Normal
            && !self.sqlite_accept_data_loss
        {
            return Err(StoreConfigError::UnacknowledgedDataLoss);
        }
        Ok(())
    }
}

/// Logging settings.
#[derive(Debug, Clone, Args)]
pub struct LogConfig {
    /// Line format: `pretty` or `json`; unset = `json` in production, `pretty` otherwise.
    #[arg(long, global = true, env = "ORDERHOST_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Filter in `tracing` syntax, e.g. `info` or `orderhost=debug,tower_http=info`.
    #[arg(long, global = true, env = "ORDERHOST_LOG", default_value = "info")]
    pub log_level: String,
    /// Folder for `combined.log` and `error.log` (rotated daily); empty disables files.
    #[arg(long, global = true, env = "ORDERHOST_LOG_DIR", default_value = "logs")]
    pub log_dir: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            log_format: None,
            log_level: "info".to_owned(),
            log_dir: "logs".to_owned(),
        }
    }
}

/// Everything `orderhost serve` needs.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Database settings.
    #[command(flatten)]
    pub store: StoreConfig,
    /// `development` or `production`.
    #[arg(long = "env", env = "ORDERHOST_ENV", value_enum, default_value_t = Environment::Development)]
    pub environment: Environment,
    /// Address and port to listen on (port 0 picks a free one).
    #[arg(long, env = "ORDERHOST_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,
    /// Redis for queues and fan-out (`redis://127.0.0.1:6379`); empty = not used.
    #[arg(long, env = "REDIS_URL", default_value = "")]
    pub redis_url: String,
    /// Prefix of every Redis key and channel this deployment uses (the bindings channel
    /// `<prefix>:bindings`, the heartbeats `<prefix>:replicas:<id>`): replicas that share
    /// it hear each other; two deployments on one Redis keep apart with distinct ones.
    #[arg(long, env = "ORDERHOST_REDIS_PREFIX", default_value = "orderhost")]
    pub redis_prefix: String,
    /// How often each replica compares the database's bindings revision with its own and
    /// writes its heartbeat, in ms: the backstop when a Redis message is lost or the
    /// subscriber is disconnected (and the only path between PostgreSQL replicas without
    /// Redis). Heartbeats expire after three intervals.
    #[arg(
        long,
        env = "ORDERHOST_BINDINGS_CHECK_MS",
        default_value_t = 2_000,
        value_parser = clap::value_parser!(u64).range(50..)
    )]
    pub bindings_check_ms: u64,
    /// Folder of the policy bindings: `default.toml`, `tenants/<slug>.toml` and
    /// `components/<name>@<version>.wasm`. A missing folder means the built-ins.
    #[arg(long, env = "ORDERHOST_POLICIES_DIR", default_value = "policies")]
    pub policies_dir: std::path::PathBuf,
    /// HMAC secret for access tokens; at least 32 bytes in production. Development
    /// generates a random one per start when it is empty.
    #[arg(
        long,
        env = "ORDERHOST_JWT_SECRET",
        default_value = "",
        hide_env_values = true
    )]
    pub jwt_secret: String,
    /// Access token (JWT) lifetime in seconds.
    #[arg(long, env = "ORDERHOST_ACCESS_TOKEN_TTL_SECS", default_value_t = 900)]
    pub access_token_ttl_secs: u64,
    /// Refresh token lifetime in seconds.
    #[arg(long, env = "ORDERHOST_REFRESH_TOKEN_TTL_SECS", default_value_t = 14 * 24 * 3600)]
    pub refresh_token_ttl_secs: u64,
    /// Browser origins allowed to call the API with credentials (comma separated,
    /// e.g. `https://shop.example.com`). Same-origin requests are always allowed.
    #[arg(
        long,
        env = "ORDERHOST_CORS_ORIGINS",
        default_value = "",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// Largest accepted request body in bytes (bigger → 413 `PAYLOAD_TOO_LARGE`).
    #[arg(long, env = "ORDERHOST_BODY_LIMIT_BYTES", default_value_t = 64 * 1024)]
    pub body_limit_bytes: usize,
    /// Largest component accepted by `POST /admin/components`, in bytes (bigger → 422
    /// `TOO_LARGE`). That route alone reads bodies up to this size instead of
    /// `ORDERHOST_BODY_LIMIT_BYTES` (see `http/edge.rs`).
    #[arg(long, env = "ORDERHOST_COMPONENT_MAX_BYTES", default_value_t = 1 << 20)]
    pub component_max_bytes: usize,
    /// Components a tenant may own unless an operator set its quota
    /// (`PUT /admin/tenants/{tenant}/component-quota`); platform components do not count.
    #[arg(long, env = "ORDERHOST_COMPONENT_QUOTA_COUNT", default_value_t = 20)]
    pub component_quota_count: u32,
    /// Total bytes of the components a tenant may own unless an operator set its quota.
    #[arg(long, env = "ORDERHOST_COMPONENT_QUOTA_BYTES", default_value_t = 16 << 20)]
    pub component_quota_bytes: u64,
    /// Time a request may take before it is answered 503 `REQUEST_TIMEOUT`, in ms.
    #[arg(long, env = "ORDERHOST_REQUEST_TIMEOUT_MS", default_value_t = 15_000)]
    pub request_timeout_ms: u64,
    /// Order workers running inside `serve` (0 = none; run `orderhost worker` instead).
    #[arg(long, env = "ORDERHOST_WORKERS", default_value_t = 1)]
    pub workers: u32,
    /// Queue tuning.
    #[command(flatten)]
    pub queue: crate::queue::QueueConfig,
    /// The per-binding circuit breakers of the policy runtime.
    #[command(flatten)]
    pub breaker: crate::policy::breaker::BreakerConfig,
    /// The canary guard: when a canary is rolled back by itself.
    #[command(flatten)]
    pub canary: crate::policy::canary::CanaryConfig,
    /// Who may read `GET /metrics`, and on which address.
    #[command(flatten)]
    pub metrics: crate::observability::MetricsConfig,
    /// How long an `Idempotency-Key` is honoured after its first use, in seconds (at least
    /// 60); after that the key is free again and expired keys are swept.
    #[arg(
        long,
        env = "ORDERHOST_IDEMPOTENCY_TTL_SECS",
        default_value_t = 24 * 3600,
        value_parser = clap::value_parser!(u64).range(60..)
    )]
    pub idempotency_ttl_secs: u64,
    /// How long each order's decision log (`GET /order/{id}/decision`) is kept, in days
    /// (1 – 3 650); the workers delete older ones.
    #[arg(
        long,
        env = "ORDERHOST_DECISION_RETENTION_DAYS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u32).range(1..=3_650)
    )]
    pub decision_retention_days: u32,
    /// Failed logins per account within the window before the account is throttled.
    #[arg(long, env = "ORDERHOST_LOGIN_MAX_FAILURES", default_value_t = 5)]
    pub login_max_failures: u32,
    /// Failed logins per client IP within the window before the IP is throttled.
    #[arg(long, env = "ORDERHOST_LOGIN_IP_MAX_FAILURES", default_value_t = 20)]
    pub login_ip_max_failures: u32,
    /// Length of the login throttling window in seconds.
    #[arg(long, env = "ORDERHOST_LOGIN_WINDOW_SECS", default_value_t = 900)]
    pub login_window_secs: u64,
    /// Take the client IP from the first `X-Forwarded-For` entry (only behind a proxy
    /// you control, such as the bundled nginx).
    #[arg(long, env = "ORDERHOST_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            store: StoreConfig::default(),
            environment: Environment::Development,
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            redis_url: String::new(),
            redis_prefix: "orderhost".to_owned(),
            bindings_check_ms: 2_000,
            policies_dir: "policies".into(),
            jwt_secret: String::new(),
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 14 * 24 * 3600,
            cors_origins: Vec::new(),
            body_limit_bytes: 64 * 1024,
            component_max_bytes: 1 << 20,
            component_quota_count: 20,
            component_quota_bytes: 16 << 20,
            request_timeout_ms: 15_000,
            workers: 1,
            queue: crate::queue::QueueConfig::default(),
            breaker: crate::policy::breaker::BreakerConfig::default(),
            canary: crate::policy::canary::CanaryConfig::default(),
            metrics: crate::observability::MetricsConfig::default(),
            idempotency_ttl_secs: 24 * 3600,
            decision_retention_days: 30,
            login_max_failures: 5,
            login_ip_max_failures: 20,
            login_window_secs: 900,
            trust_forwarded_for: false,
        }
    }
}

/// Shortest JWT secret accepted in production (HS256 wants at least 256 bits).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// A configuration that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Production without a JWT secret.
    #[error(
        "ORDERHOST_JWT_SECRET is not set: a production start needs a secret of at least {MIN_JWT_SECRET_BYTES} bytes (e.g. `openssl rand -base64 48`)"
    )]
    MissingJwtSecret,
    /// Production with a short JWT secret.
    #[error(
        "ORDERHOST_JWT_SECRET is {0} bytes long: a production start needs at least {MIN_JWT_SECRET_BYTES} bytes"
    )]
    WeakJwtSecret(usize),
    /// A CORS origin that is not `scheme://host[:port]`.
    #[error("ORDERHOST_CORS_ORIGINS entry {0:?} is not an origin like https://shop.example.com")]
    BadCorsOrigin(String),
}

impl Config {
    /// Whether the service runs in development mode.
    pub fn is_development(&self) -> bool {
        self.environment == Environment::Development
    }

    /// Checks what can be checked before anything starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Checks what only the HTTP server needs: the JWT secret (mandatory in production)
    /// and the CORS origins. `orderhost worker` skips it.
    pub fn validate_http(&self) -> Result<(), ConfigError> {
        if self.environment == Environment::Production {
            match self.jwt_secret.len() {
                0 => return Err(ConfigError::MissingJwtSecret),
                n if n < MIN_JWT_SECRET_BYTES => return Err(ConfigError::WeakJwtSecret(n)),
                _ => {}
            }
        }
        for origin in self.cors_origins() {
            let ok = url::Url::parse(origin)
                .map(|u| u.origin().ascii_serialization() == origin.trim_end_matches('/'))
                .unwrap_or(false);
            if !ok {
                return Err(ConfigError::BadCorsOrigin(origin.to_owned()));
            }
        }
        Ok(())
    }

    /// The configured CORS origins without empty entries.
    pub fn cors_origins(&self) -> impl Iterator<Item = &str> {
        self.cors_origins
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }

    /// How long an order's decision log is kept, ms.
    pub fn decision_retention_ms(&self) -> i64 {
        i64::from(self.decision_retention_days) * 86_400_000
    }

    /// How long an idempotency key is honoured, in ms.
    pub fn idempotency_ttl_ms(&self) -> i64 {
        i64::try_from(self.idempotency_ttl_secs)
            .unwrap_or(i64::MAX / 1_000)
            .saturating_mul(1_000)
    }

    /// Request timeout as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}
