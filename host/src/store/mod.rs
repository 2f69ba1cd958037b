//! Storage: the connection pool, migrations and the choice of backend.
//!
//! The backend is chosen at start-up from the `DATABASE_URL` scheme: `sqlite://` (the
//! embedded default) or `postgres://`. Queries are written once in SQL both dialects
//! understand (`$1` placeholders, bigint epoch-millisecond timestamps, text ids) and run on
//! either pool through [`with_pool!`]; the few places where the dialects must differ are
//! kept side by side in this module.

pub mod backup;
pub mod batch;

use std::{
    collections::HashMap,
    path::PathBuf,
    str::FromStr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use sqlx::{
    PgPool, SqlitePool,
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use crate::config::{SqliteSynchronous as Synchronous, StoreConfig};

/// Id of the tenant that exists on every installation (seeded by the first migration).
pub const DEFAULT_TENANT_ID: &str = "00000000-0000-0000-0000-000000000001";

/// Slug of the tenant that exists on every installation.
pub const DEFAULT_TENANT_SLUG: &str = "default";

/// A database pool of the backend chosen at start-up.
#[derive(Clone, Debug)]
pub enum Store {
    /// Embedded SQLite file.
    Sqlite(SqlitePool),
    /// PostgreSQL server.
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool of `$store`. The body is compiled
/// once per backend, so one query text and one `FromRow` type serve both.
#[macro_export]
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool) => $body,
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A `DATABASE_URL` with a scheme we do not serve.
    #[error(
        "DATABASE_URL {0:?} is not supported: use sqlite://path/to/file.db or postgres://user:password@host/db"
    )]
    UnsupportedUrl(String),
    /// The folder of the SQLite file could not be created.
    #[error("cannot create the folder {path} for the SQLite database: {source}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Connecting failed.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database did not answer within the start-up timeout.
    #[error(
        "the database at {target} did not answer within {waited_secs} s ({attempts} attempt(s)); last error: {last} (is it running and reachable? ORDERHOST_DB_STARTUP_TIMEOUT_SECS sets how long start-up waits)"
    )]
    Unreachable {
        /// Where the database is: `host:port/database`, never the password.
        target: String,
        /// How long start-up waited, in seconds.
        waited_secs: u64,
        /// Connection attempts made.
        attempts: u32,
        /// The last attempt's error, with the URL's password masked.
        last: String,
    },
}

/// Whether `err` means the database cannot be reached right now (down, restarting, out of
/// connections, the network in between failing) rather than a bug or a refusal: requests
/// answer it with 503 `DEPENDENCY_UNAVAILABLE`, start-up retries it.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception), 57P01–57P03 (the server shuts down,
        // crashed or is starting up), 53300 (too many connections).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// The longest pause between two start-up attempts.
pub const STARTUP_BACKOFF_MAX: Duration = Duration::from_secs(4);

impl StoreError {
    /// Whether this is the database being unreachable (worth retrying at start-up).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Connect(e) => is_unavailable(e),
            Self::Migrate(e) => migration_unavailable(e),
            Self::Unreachable { .. } => true,
            Self::UnsupportedUrl(_) | Self::CreateDir { .. } => false,
        }
    }
}

/// Whether a migration failed because the database could not be reached.
fn migration_unavailable(err: &sqlx::migrate::MigrateError) -> bool {
    match err {
        sqlx::migrate::MigrateError::Execute(e)
        | sqlx::migrate::MigrateError::ExecuteMigration(e, _) => is_unavailable(e),
        _ => false,
    }
}

/// `url` with its password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.trim().to_owned(),
        // Not a URL we can take apart: say nothing of it but its scheme.
        Err(_) => match url.trim().split_once("://") {
            Some((scheme, _)) => format!("{scheme}://…"),
            None => "(unparsable URL)".to_owned(),
        },
    }
}

/// `text` with every occurrence of the password of `url` (as written and percent-decoded)
/// replaced by `***`.
pub fn redact_password(text: &str, url: &str) -> String {
    let Some(password) = url::Url::parse(url.trim())
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
    else {
        return text.to_owned();
    };
    let decoded = percent_encoding::percent_decode_str(&password)
        .decode_utf8_lossy()
        .into_owned();
    let mut text = text.to_owned();
    for secret in [password, decoded] {
        if !secret.is_empty() {
            text = text.replace(&secret, "***");
        }
    }
    text
}

/// Where the database of `url` is, for messages: `host:port/database` for PostgreSQL, the
/// file for SQLite; never the user's password.
pub fn database_target(url: &str) -> String {
    let url = url.trim();
    if let Some(path) = sqlite_path(url) {
        return path.display().to_string();
    }
    match url::Url::parse(url) {
        Ok(parsed) => format!(
            "{}:{}{}",
            parsed.host_str().unwrap_or("localhost"),
            parsed.port().unwrap_or(5432),
            parsed.path()
        ),
        Err(_) => redact_url(url),
    }
}

/// The file path in a `sqlite:` URL, if it is one (`sqlite::memory:` has none).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// The SQLite schema's migrations (also what a restored backup is checked against).
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The connection options every orderhost connection to the SQLite file at `url` uses.
fn sqlite_options(url: &str, sync: Synchronous) -> Result<SqliteConnectOptions, StoreError> {
    Ok(SqliteConnectOptions::from_str(url)
        .map_err(StoreError::Connect)?
        // WAL lets readers run beside the single writer; busy_timeout makes a writer wait
        // for the lock instead of failing at once.
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: the WAL is fsynced at every commit, so a 202 survives a power loss. Its
        // cost is one fsync per write transaction, which the group writes and batch
        // settlements already share between many orders (README, "Order benchmark").
        .synchronous(match sync {
            Synchronous::Full => SqliteSynchronous::Full,
            Synchronous::Normal => SqliteSynchronous::Normal,
        })
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true))
}

impl Store {
    /// Opens a pool for `cfg.database_url`, creating the SQLite file and its folder if
    /// missing.
    pub async fn connect(cfg: &StoreConfig) -> Result<Self, StoreError> {
        let url = cfg.database_url.trim();
        if url.starts_with("sqlite:") {
            if let Some(dir) = sqlite_path(url).and_then(|p| p.parent().map(PathBuf::from))
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(&dir).map_err(|source| StoreError::CreateDir {
                    path: dir.clone(),
                    source,
                })?;
            }
            let options = sqlite_options(url, cfg.sqlite_synchronous)?.create_if_missing(true);
            if cfg.sqlite_synchronous == Synchronous::Normal {
                tracing::warn!(
                    "ORDERHOST_SQLITE_SYNCHRONOUS=normal: SQLite commits are not flushed to disk \
                     before the answer, so a power loss or kernel crash can roll back the last \
                     commits, orders already answered 202 included (a crash of the orderhost \
                     process alone loses nothing); use full (the default) to keep every 202"
                );
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(cfg.db_max_connections.max(1))
                .acquire_timeout(cfg.acquire_timeout())
                .connect_with(options)
                .await
                .map_err(StoreError::Connect)?;
            Ok(Self::Sqlite(pool))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // No ping before each checkout (sqlx's default): a round trip to the server
            // per statement, ~4 % of the server's CPU under order load. A connection that
            // died fails its statement with an I/O error (503, and the worker retries);
            // the pool then replaces it.
            // Generic plans for every prepared statement: with the default (`auto`)
            // PostgreSQL plans each execution again until its generic plan looks cheaper,
            // which for the order path's array-bound statements it rarely does — measured,
            // planning was most of the server's CPU at light load — and its custom plans
            // for the claim chose a sort of the whole backlog. The generic plans of the
            // order path are the ones `tests/api/plans.rs` checks use indexes.
            // And no sequential scan where an index serves: a generic plan is made from
            // the statistics of the moment and kept until ANALYZE changes them, so a plan
            // made while a table was tiny — `jobs` and `outbox` always are at rest, and a
            // new database's `orders` too — scanned it whole for every settlement and
            // claim once a backlog built up (measured: the closed-loop settled rate fell
            // to 1 550–1 800/s, each batch's `delete from jobs` scanning the backlog).
            // Every statement of this service is meant to be index-driven (the plans
            // test); one with no usable index still gets its sequential scan — whose
            // cost then includes the planner's penalty, which would make PostgreSQL
            // JIT-compile it on every execution (measured: LLVM in the profile of every
            // `/health`), so JIT is off too: it pays only for long analytic queries,
            // which this service does not run. For the same reason no parallel workers:
            // starting them costs milliseconds, and a generic plan estimating many rows
            // chose them for the order path's read of a customer's recent units
            // (measured: 4.6 ms with two workers, 0.3 ms without, on the 2.2 M-order
            // preload).
            let options = sqlx::postgres::PgConnectOptions::from_str(url)
                .map_err(StoreError::Connect)?
                .options([
                    ("plan_cache_mode", "force_generic_plan"),
                    ("enable_seqscan", "off"),
                    ("jit", "off"),
                    ("max_parallel_workers_per_gather", "0"),
                ]);
            let pool = PgPoolOptions::new()
                .test_before_acquire(false)
                .max_connections(cfg.db_max_connections.max(1))
                .acquire_timeout(cfg.acquire_timeout())
                .connect_with(options)
                .await
                .map_err(StoreError::Connect)?;
            let store = Self::Postgres(pool);
            // A 202 on PostgreSQL is durable because the server flushes its WAL before
            // acknowledging the commit. orderhost never lowers `synchronous_commit`; a
            // server (or role, or database) default of `off` would, so say so loudly.
            match store.commit_durability().await {
                Ok(setting) if setting == "off" => tracing::warn!(
                    synchronous_commit = %setting,
                    "PostgreSQL synchronous_commit is off for this role/database: a crash of \
                     the database server can lose the last commits, orders already answered \
                     202 included; set it to on (ALTER ROLE/DATABASE … SET synchronous_commit = on)"
                ),
                Ok(setting) => {
                    tracing::debug!(synchronous_commit = %setting, "PostgreSQL commit durability")
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read PostgreSQL synchronous_commit")
                }
            }
            Ok(store)
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }

    /// Opens the pool and applies the migrations, as every start-up does. A database that
    /// cannot be reached (refused, timed out, starting up, out of connections) is retried
    /// with a backoff capped at [`STARTUP_BACKOFF_MAX`], one WARN per failed attempt, until
    /// `wait` has passed; then [`StoreError::Unreachable`] names where the database is
    /// (never its password). Other errors (a bad URL, wrong credentials, a migration that
    /// does not apply) stop at once.
    pub async fn open(cfg: &StoreConfig, wait: Duration) -> Result<Self, StoreError> {
        let started = tokio::time::Instant::now();
        let deadline = started + wait;
        let url = cfg.database_url.trim();
        let mut backoff = Duration::from_millis(250);
        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            // An attempt may not outlast the start-up window, nor the pool's own acquire
            // timeout when there is no window (a single attempt).
            let budget = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .clamp(
                    Duration::from_millis(500),
                    cfg.acquire_timeout().max(Duration::from_millis(500)),
                );
            let error = match Self::open_once(cfg, budget).await {
                Ok(store) => {
                    if attempts > 1 {
                        tracing::info!(
                            database = %database_target(url),
                            attempts,
                            "database reachable"
                        );
                    }
                    return Ok(store);
                }
                Err(error) if error.is_unavailable() => error,
                Err(error) => return Err(error),
            };
            let last = redact_password(&error.to_string(), url);
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(StoreError::Unreachable {
                    target: database_target(url),
                    waited_secs: started.elapsed().as_secs(),
                    attempts,
                    last,
                });
            }
            let pause = backoff.min(remaining);
            tracing::warn!(
                database = %database_target(url),
                attempt = attempts,
                error = %last,
                retry_in_ms = pause.as_millis() as u64,
                remaining_secs = remaining.as_secs(),
                "database not reachable yet; retrying"
            );
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(STARTUP_BACKOFF_MAX);
        }
    }

    /// One start-up attempt: a first connection within `budget` (so the real error, not a
    /// pool timeout, is reported), then the pool and the migrations.
    async fn open_once(cfg: &StoreConfig, budget: Duration) -> Result<Self, StoreError> {
        let url = cfg.database_url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            use sqlx::ConnectOptions as _;
            let options =
                sqlx::postgres::PgConnectOptions::from_str(url).map_err(StoreError::Connect)?;
            match tokio::time::timeout(budget, options.connect()).await {
                Ok(Ok(probe)) => {
                    let _ = sqlx::Connection::close(probe).await;
                }
                Ok(Err(error)) => return Err(StoreError::Connect(error)),
                Err(_) => {
                    return Err(StoreError::Connect(sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {} ms", budget.as_millis()),
                    ))));
                }
            }
        }
        let store = Self::connect(cfg).await?;
        if let Err(error) = store.migrate().await {
            store.close().await;
            return Err(error);
        }
        Ok(store)
    }

    /// How durable a commit is, as the database reports it for a pooled connection:
    /// SQLite's `synchronous` (`off`, `normal`, `full`, `extra`), PostgreSQL's
    /// `synchronous_commit` (`on`, `off`, `local`, `remote_write`, `remote_apply`).
    pub async fn commit_durability(&self) -> Result<String, sqlx::Error> {
        match self {
            Self::Sqlite(pool) => {
                let level: i64 = sqlx::query_scalar("pragma synchronous")
                    .fetch_one(pool)
                    .await?;
                Ok(match level {
                    0 => "off",
                    1 => "normal",
                    2 => "full",
                    _ => "extra",
                }
                .to_owned())
            }
            Self::Postgres(pool) => {
                sqlx::query_scalar("show synchronous_commit")
                    .fetch_one(pool)
                    .await
            }
        }
    }

    /// Applies the migrations of this backend (one folder per dialect).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
            Self::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// The backend's name, for health reports and logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// A round trip to the database.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        with_pool!(self, pool => sqlx::query("select 1").execute(pool).await.map(|_| ()))
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }
}

/// The dialect forks — write transactions and turns, row locking, list and row binds,
/// statement chains — side by side. Bodies run
/// through [`with_pool!`] call these as methods on the concrete pool.
pub trait WritePool {
    /// The database of the pool.
    type Db: sqlx::Database;

    /// Begins a transaction that will write. SQLite: `BEGIN IMMEDIATE`, so the single
    /// writer lock is taken up front and a later write cannot fail with a stale snapshot;
    /// PostgreSQL: a plain `BEGIN` (rows are locked as they are touched).
    fn begin_write(&self) -> impl Future<Output = Result<WriteTx<Self::Db>, sqlx::Error>> + Send;

    /// Waits for this process's turn to write to the database: SQLite has one writer per
    /// file, and a writer that finds the file locked sleeps in SQLite's busy handler
    /// (1, 2, 5, 10 … 100 ms), which under load was most of the embedded store's p99 and
    /// left a third of the machine idle. Writers of one process therefore queue here, in
    /// FIFO order, and only writers of other processes meet the busy handler. PostgreSQL
    /// locks rows, not the database: no turn to wait for (`None`).
    fn write_turn(&self) -> impl Future<Output = Option<WriteTurn>> + Send;

    /// Row-lock clause for a `select` that is followed by writes to the same rows:
    /// `for update` on PostgreSQL; nothing on SQLite, whose writer already excludes others.
    fn for_update(&self) -> &'static str;

    /// Row-lock clause for a join that locks only the rows of `alias`: `for update of
    /// alias` on PostgreSQL; nothing on SQLite.
    fn for_update_of(&self, alias: &str) -> String;

    /// Row-lock clause for claiming queue rows: `for update skip locked` on PostgreSQL, so
    /// concurrent claimers take different rows; nothing on SQLite (one writer at a time).
    fn skip_locked(&self) -> &'static str;

    /// An empty [`TextList`] as an SQL literal: `'{}'::text[]` on PostgreSQL, `'[]'` (a
    /// JSON array) on SQLite.
    fn empty_text_list(&self) -> &'static str;

    /// Appends "`column` is one of `values`" with the whole list as ONE bind, so the SQL
    /// text is the same for any number of values and a batch of any size reuses one
    /// prepared statement (an `in ($1, $2, …)` list is a new statement per length, and
    /// PostgreSQL parses and plans each). PostgreSQL: `column = any($n)` with a `text[]`;
    /// SQLite: `column in (select value from json_each($n))` with a JSON array.
    fn push_any<'q>(
        &self,
        q: &mut sqlx::QueryBuilder<'q, Self::Db>,
        column: &str,
        values: Vec<String>,
    );

    /// Appends a derived table `alias(id, qty)` of `pairs`, bound as fixed-text array
    /// parameters: one statement for any number of rows (a multi-row update with
    /// `update … from`). PostgreSQL: `unnest($a::text[], $b::bigint[])`; SQLite: the
    /// rows of a JSON array through `json_each`.
    fn push_id_qty<'q>(
        &self,
        q: &mut sqlx::QueryBuilder<'q, Self::Db>,
        alias: &str,
        pairs: Vec<(String, i64)>,
    );

    /// Appends `select <the rows of cols>` for `insert into t (…) ` + this: a multi-row
    /// insert whose text depends only on the number of columns, so every batch size
    /// shares one prepared statement (a `values (…), (…)` list of N rows is a new
    /// statement — parsed, analysed and planned again — for every N, and with thousands
    /// of parameters that dominated PostgreSQL's time under order load). PostgreSQL:
    /// `select * from unnest($1::text[], $2::bigint[], …)`; SQLite: the rows of one JSON
    /// array of arrays through `json_each`. All columns must have the same length; the
    /// result columns are named `c0`, `c1`, … in both dialects, so the rows can also be
    /// the derived table of an `update … from (…) as v`.
    fn push_rows<'q>(&self, q: &mut sqlx::QueryBuilder<'q, Self::Db>, cols: Vec<Col>);

    /// A [`Chain`] of statements for this backend.
    fn chain<'q>(&self) -> Chain<'q, Self::Db>;

    /// Runs `chain` on `conn` (a transaction's, or a pooled one when the chain is one
    /// statement) and returns the rows the LAST statement affected.
    fn run_chain<'q>(
        &self,
        conn: &mut <Self::Db as sqlx::Database>::Connection,
        chain: Chain<'q, Self::Db>,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;
}

/// Data-modifying statements that run together: on PostgreSQL as ONE statement (each as a
/// `with sN as (…)` data-modifying CTE, which PostgreSQL runs to completion whether or not
/// the main statement reads it; the main statement counts the last one's rows), so a group write is one round trip
/// instead of one per table — on a busy 2-core machine each round trip also costs a
/// wake-up of the server process and of ours; on SQLite (no data-modifying CTEs, and an
/// in-process call per statement anyway) one after another. The statements must not
/// depend on each other's effects (in one PostgreSQL statement they share a snapshot);
/// constraints are still checked at the end of the statement. Statements carry no
/// `returning` clause of their own.
pub struct Chain<'q, DB: sqlx::Database> {
    combine: bool,
    done: Vec<sqlx::QueryBuilder<'q, DB>>,
    current: Option<sqlx::QueryBuilder<'q, DB>>,
    count: usize,
}

impl<DB: sqlx::Database> std::fmt::Debug for Chain<'_, DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("combine", &self.combine)
            .field("statements", &self.count)
            .finish()
    }
}

impl<'q, DB: sqlx::Database> Chain<'q, DB> {
    fn new(combine: bool) -> Self {
        Self {
            combine,
            done: Vec::new(),
            current: None,
            count: 0,
        }
    }

    /// Starts the next statement with `head`; returns its builder to push the rest.
    pub fn statement(&mut self, head: &str) -> &mut sqlx::QueryBuilder<'q, DB> {
        let n = self.count;
        self.count += 1;
        let current = match self.current.take() {
            Some(mut q) if self.combine => {
                q.push(format_args!(") , s{n} as ({head}"));
                q
            }
            Some(q) => {
                self.done.push(q);
                sqlx::QueryBuilder::new(head)
            }
            None if self.combine => sqlx::QueryBuilder::new(format!("with s{n} as ({head}")),
            None => sqlx::QueryBuilder::new(head),
        };
        self.current.insert(current)
    }

    /// Whether the chain runs as one statement (atomic on its own, no transaction
    /// needed).
    pub fn is_one_statement(&self) -> bool {
        self.combine
    }

    /// The builders to execute, in order (PostgreSQL: one).
    fn finish(mut self) -> Vec<sqlx::QueryBuilder<'q, DB>> {
        if let Some(mut q) = self.current.take() {
            if self.combine {
                // The main statement counts the rows of the last one (whose text ends
                // the builder, so its `returning` goes here).
                q.push(format_args!(
                    " returning 1) select count(*) from s{}",
                    self.count - 1
                ));
            }
            self.done.push(q);
        }
        self.done
    }
}

/// A process's turn to write to a SQLite file (see [`WritePool::write_turn`]); the turn
/// passes on when this is dropped.
pub type WriteTurn = tokio::sync::OwnedMutexGuard<()>;

/// A write transaction, holding the process's write turn on SQLite until it commits or
/// is dropped (rolled back). Dereferences to the connection, like `sqlx::Transaction`.
#[derive(Debug)]
pub struct WriteTx<DB: sqlx::Database> {
    tx: sqlx::Transaction<'static, DB>,
    _turn: Option<WriteTurn>,
}

impl<DB: sqlx::Database> WriteTx<DB> {
    /// Commits, then passes the turn on.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl<DB: sqlx::Database> std::ops::Deref for WriteTx<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl<DB: sqlx::Database> std::ops::DerefMut for WriteTx<DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// The write turn of each SQLite file this process opened, by file name. A static
/// because the pool type (`SqlitePool`, shared by clones of `Store`) has no room for it
/// and every pool on one file must share the same turn.
fn sqlite_turn(pool: &SqlitePool) -> Arc<tokio::sync::Mutex<()>> {
    static TURNS: OnceLock<std::sync::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
        OnceLock::new();
    let file = pool.connect_options().get_filename().to_path_buf();
    let mut turns = TURNS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    turns.entry(file).or_default().clone()
}

/// One column of a [`WritePool::push_rows`] insert.
#[derive(Debug, Clone)]
pub enum Col {
    /// A text column (NULL where `None`).
    Text(Vec<Option<String>>),
    /// An integer column (NULL where `None`).
    Int(Vec<Option<i64>>),
}

impl Col {
    /// A text column without NULLs.
    pub fn text<S: Into<String>>(values: impl IntoIterator<Item = S>) -> Self {
        Self::Text(values.into_iter().map(|v| Some(v.into())).collect())
    }

    /// An integer column without NULLs.
    pub fn int<I: Into<i64>>(values: impl IntoIterator<Item = I>) -> Self {
        Self::Int(values.into_iter().map(|v| Some(v.into())).collect())
    }

    fn len(&self) -> usize {
        match self {
            Self::Text(v) => v.len(),
            Self::Int(v) => v.len(),
        }
    }

    fn json(&self, row: usize) -> serde_json::Value {
        match self {
            Self::Text(v) => v[row].clone().map_or(serde_json::Value::Null, Into::into),
            Self::Int(v) => v[row].map_or(serde_json::Value::Null, Into::into),
        }
    }
}

/// A list of strings stored in one column — the tags of users and products: a `text[]`
/// on PostgreSQL, a JSON array in a `text` column on SQLite (which has no arrays). Binds
/// and reads as either, so a query that names such a column keeps one text for both
/// backends, and `union all` branches that each select one of them line up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextList(pub Vec<String>);

impl TextList {
    /// The strings.
    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

impl sqlx::Type<sqlx::Postgres> for TextList {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <Vec<String> as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <Vec<String> as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Postgres> for TextList {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <Vec<String> as sqlx::Encode<'q, sqlx::Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for TextList {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        <Vec<String> as sqlx::Decode<'r, sqlx::Postgres>>::decode(value).map(Self)
    }
}

impl sqlx::Type<sqlx::Sqlite> for TextList {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <String as sqlx::Type<sqlx::Sqlite>>::type_info()
    }

    fn compatible(ty: &sqlx::sqlite::SqliteTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Sqlite>>::compatible(ty)
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Sqlite> for TextList {
    fn encode_by_ref(
        &self,
        buf: &mut Vec<sqlx::sqlite::SqliteArgumentValue<'q>>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        let json = serde_json::to_string(&self.0)?;
        <String as sqlx::Encode<'q, sqlx::Sqlite>>::encode(json, buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Sqlite> for TextList {
    fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let json = <&str as sqlx::Decode<'r, sqlx::Sqlite>>::decode(value)?;
        Ok(Self(serde_json::from_str(json)?))
    }
}

impl WritePool for SqlitePool {
    type Db = sqlx::Sqlite;

    async fn begin_write(&self) -> Result<WriteTx<sqlx::Sqlite>, sqlx::Error> {
        let turn = self.write_turn().await;
        let tx = self.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx { tx, _turn: turn })
    }

    async fn write_turn(&self) -> Option<WriteTurn> {
        Some(sqlite_turn(self).lock_owned().await)
    }

    fn for_update(&self) -> &'static str {
        ""
    }

    fn for_update_of(&self, _alias: &str) -> String {
        String::new()
    }

    fn skip_locked(&self) -> &'static str {
        ""
    }

    fn empty_text_list(&self) -> &'static str {
        "'[]'"
    }

    fn push_any<'q>(
        &self,
        q: &mut sqlx::QueryBuilder<'q, sqlx::Sqlite>,
        column: &str,
        values: Vec<String>,
    ) {
        // A Vec<String> always serializes.
        let json = serde_json::to_string(&values).unwrap_or_else(|_| "[]".to_owned());
        q.push(column)
            .push(" in (select value from json_each(")
            .push_bind(json)
            .push("))");
    }

    fn push_id_qty<'q>(
        &self,
        q: &mut sqlx::QueryBuilder<'q, sqlx::Sqlite>,
        alias: &str,
        pairs: Vec<(String, i64)>,
    ) {
        let json = serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".to_owned());
        q.push("(select json_extract(value, '$[0]') as id, json_extract(value, '$[1]') as qty from json_each(")
            .push_bind(json)
            .push(")) as ")
            .push(alias);
    }

    fn chain<'q>(&self) -> Chain<'q, sqlx::Sqlite> {
        Chain::new(false)
    }

    async fn run_chain<'q>(
        &self,
        conn: &mut <sqlx::Sqlite as sqlx::Database>::Connection,
        chain: Chain<'q, sqlx::Sqlite>,
    ) -> Result<u64, sqlx::Error> {
        let mut last = 0;
        for mut q in chain.finish() {
            last = q.build().execute(&mut *conn).await?.rows_affected();
        }
        Ok(last)
    }

    fn push_rows<'q>(&self, q: &mut sqlx::QueryBuilder<'q, sqlx::Sqlite>, cols: Vec<Col>) {
        let n = cols.first().map_or(0, Col::len);
        let rows: Vec<serde_json::Value> = (0..n)
            .map(|r| cols.iter().map(|c| c.json(r)).collect())
            .collect();
        q.push("select ");
        for i in 0..cols.len() {
            if i > 0 {
                q.push(", ");
            }
            q.push(format_args!("json_extract(value, '$[{i}]') as c{i}"));
        }
        q.push(" from json_each(")
            .push_bind(serde_json::Value::Array(rows).to_string())
            .push(")");
    }
}

impl WritePool for PgPool {
    type Db = sqlx::Postgres;

    async fn begin_write(&self) -> Result<WriteTx<sqlx::Postgres>, sqlx::Error> {
        Ok(WriteTx {
            tx: self.begin().await?,
            _turn: None,
        })
    }

    async fn write_turn(&self) -> Option<WriteTurn> {
        None
    }

    fn for_update(&self) -> &'static str {
        "for update"
    }

    fn for_update_of(&self, alias: &str) -> String {
        format!("for update of {alias}")
    }

    fn skip_locked(&self) -> &'static str {
        "for update skip locked"
    }

    fn empty_text_list(&self) -> &'static str {
        "cast('{}' as text[])"
    }

    fn push_any<'q>(
        &self,
        q: &mut sqlx::QueryBuilder<'q, sqlx::Postgres>,
        column: &str,
        values: Vec<String>,
    ) {
        q.push(column).push(" = any(").push_bind(values).push(")");
    }

    fn push_id_qty<'q>(
        &self,
        q: &mut sqlx::QueryBuilder<'q, sqlx::Postgres>,
        alias: &str,
        pairs: Vec<(String, i64)>,
    ) {
        let (ids, qtys): (Vec<String>, Vec<i64>) = pairs.into_iter().unzip();
        q.push("unnest(")
            .push_bind(ids)
            .push("::text[], ")
            .push_bind(qtys)
            .push("::bigint[]) as ")
            .push(alias)
            .push("(id, qty)");
    }

    fn chain<'q>(&self) -> Chain<'q, sqlx::Postgres> {
        Chain::new(true)
    }

    async fn run_chain<'q>(
        &self,
        conn: &mut <sqlx::Postgres as sqlx::Database>::Connection,
        chain: Chain<'q, sqlx::Postgres>,
    ) -> Result<u64, sqlx::Error> {
        let mut last = 0;
        for mut q in chain.finish() {
            // The main statement counts the last CTE's rows.
            let n: i64 = q.build_query_scalar().fetch_one(&mut *conn).await?;
            last = u64::try_from(n).unwrap_or(0);
        }
        Ok(last)
    }

    fn push_rows<'q>(&self, q: &mut sqlx::QueryBuilder<'q, sqlx::Postgres>, cols: Vec<Col>) {
        let n = cols.len();
        q.push("select * from unnest(");
        for (i, col) in cols.into_iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            match col {
                Col::Text(v) => q.push_bind(v).push("::text[]"),
                Col::Int(v) => q.push_bind(v).push("::bigint[]"),
            };
        }
        q.push(") as r(");
        for i in 0..n {
            if i > 0 {
                q.push(", ");
            }
            q.push(format_args!("c{i}"));
        }
        q.push(")");
    }
}

/// Whether `err` is the violation of the unique constraint named `constraint`
/// (both backends report the constraint name; SQLite only the columns, so we match
/// either).
pub fn is_unique_violation(err: &sqlx::Error, constraint: &str, columns: &str) -> bool {
    let Some(db) = err.as_database_error() else {
        return false;
    };
    if !db.is_unique_violation() {
        return false;
    }
    match db.constraint() {
        Some(name) => name == constraint,
        // SQLite says "UNIQUE constraint failed: users.tenant_id, users.email".
        None => db.message().contains(columns),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_database_but_never_its_password() {
        let url = "postgres://shop:s3cr%40t@db.internal:6432/orders";
        assert_eq!(database_target(url), "db.internal:6432/orders");
        assert_eq!(
            database_target("postgres://shop@127.0.0.1/shop"),
            "127.0.0.1:5432/shop"
        );
        assert_eq!(
            database_target("sqlite://data/orderhost.db"),
            "data/orderhost.db"
        );
        let redacted = redact_url(url);
        assert!(!redacted.contains("s3cr"), "{redacted}");
        assert!(redacted.contains("shop:***@db.internal"), "{redacted}");
        // The password as written and percent-decoded.
        let text = "failed for s3cr%40t and s3cr@t";
        assert_eq!(redact_password(text, url), "failed for *** and ***");
        assert_eq!(redact_password(text, "postgres://shop@h/db"), text);
        assert_eq!(redact_url("postgres://u:pw@[bad/db"), "postgres://…");
        assert_eq!(redact_url("not a url"), "(unparsable URL)");
    }

    #[test]
    fn only_an_unreachable_database_is_unavailable() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(is_unavailable(&sqlx::Error::Io(refused)));
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::Protocol("bad".into())));
        assert!(StoreError::Connect(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(!StoreError::UnsupportedUrl("mysql://…".into()).is_unavailable());
    }
}
