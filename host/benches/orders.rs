//! Order load generator: a real orderhost on 127.0.0.1 (started in this process, on its
//! own runtime threads), driven over HTTP like any client.
//!
//! It registers users (10 % promoted to VIP through the admin API), seeds a catalog
//! through the admin API (one hot SKU with less stock than demand, plus normal SKUs),
//! fires `LOADGEN_ORDERS` orders with `LOADGEN_CONCURRENCY` in flight, waits until every
//! order is final, checks the invariants, and prints the figures: one table row per queue.
//!
//! ```sh
//! cargo bench -p orderhost --bench orders                       # embedded SQLite
//! DATABASE_URL=postgres://orderhost:orderhost@127.0.0.1/orderhost \
//!     cargo bench -p orderhost --bench orders                   # a fresh database on that server
//! DATABASE_URL=postgres://orderhost:orderhost@127.0.0.1/orderhost \
//!     REDIS_URL=redis://127.0.0.1:6379 \
//!     cargo bench -p orderhost --bench orders                   # database queue, then Redis queue
//! ```
//!
//! Knobs (env): LOADGEN_ORDERS (5000), LOADGEN_CONCURRENCY (64), LOADGEN_USERS (100),
//! LOADGEN_WORKERS (1), LOADGEN_BATCH (256), LOADGEN_TIMEOUT_SECS (300); on SQLite,
//! ORDERHOST_SQLITE_SYNCHRONOUS (full); LOADGEN_QUEUE (`database`, `redis` or `both`;
//! `both` when REDIS_URL is set, `database` otherwise): each queue runs on a fresh database
//! and a Redis key prefix of its own, deleted afterwards (SCAN + DEL, never FLUSHALL);
//! LOADGEN_BACKLOG (0): 1 starts the workers only once every order is placed (and, on the
//! Redis queue, pushed out of the outbox), so VIPs must be served ahead of a backlog.
//! LOADGEN_HISTORY (0): N settled orders preloaded into each fresh database before the
//! server starts (`orderhost::orders::history`: e.g. 1 000 000 on PostgreSQL, 200 000 on
//! SQLite), so the figures show whether the order path's cost stays flat with a history;
//! on PostgreSQL the bench then prints the `seq_scan` delta of every table that grows with
//! orders, from before the server started to after it stopped (a backend's counters are
//! complete only once it has exited), which must be 0 with a history. The bench's own
//! reads select this run's orders by id range (ids are time-ordered), so history orders
//! are neither counted nor scanned.
//! Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.

mod common;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use common::percentile;
use orderhost::{
    App, Config,
    auth::Role,
    config::StoreConfig,
    queue::{QueueBackend, QueueConfig},
    state::WorkerContext,
    users::Email,
    with_pool,
};
use serde_json::{Value, json};

// The allocator the `orderhost` binary runs with (see src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const PASSWORD: &str = "load-generator-password";

/// The queue one run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    Database,
    Redis,
}

impl Queue {
    fn name(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Redis => "redis",
        }
    }

    fn backend(self) -> QueueBackend {
        match self {
            Self::Database => QueueBackend::Database,
            Self::Redis => QueueBackend::Redis,
        }
    }
}

/// The queues `LOADGEN_QUEUE` asks for; exits with the reason when it cannot be served.
fn queues(redis_url: &str) -> Vec<Queue> {
    let default = if redis_url.is_empty() {
        "database"
    } else {
        "both"
    };
    let asked = std::env::var("LOADGEN_QUEUE").unwrap_or_else(|_| default.to_owned());
    let queues = match asked.trim() {
        "database" => vec![Queue::Database],
        "redis" => vec![Queue::Redis],
        "both" => vec![Queue::Database, Queue::Redis],
        other => {
            eprintln!("LOADGEN_QUEUE must be `database`, `redis` or `both`, not {other:?}");
            std::process::exit(2);
        }
    };
    if queues.contains(&Queue::Redis) && redis_url.is_empty() {
        eprintln!(
            "LOADGEN_QUEUE={} needs REDIS_URL (e.g. REDIS_URL=redis://127.0.0.1:6379): \
             the Redis queue runs on that server",
            asked.trim()
        );
        std::process::exit(2);
    }
    queues
}

/// Everything the environment sets, read once.
struct Knobs {
    orders: usize,
    concurrency: usize,
    users: usize,
    workers: u32,
    batch: u32,
    timeout: Duration,
    backlog: bool,
    history: u64,
    redis_url: String,
}

impl Knobs {
    fn from_env() -> Self {
        Self {
            orders: env_num("LOADGEN_ORDERS", 5_000) as usize,
            concurrency: env_num("LOADGEN_CONCURRENCY", 64) as usize,
            users: env_num("LOADGEN_USERS", 100) as usize,
            workers: env_num("LOADGEN_WORKERS", 1) as u32,
            batch: env_num("LOADGEN_BATCH", 256) as u32,
            timeout: Duration::from_secs(env_num("LOADGEN_TIMEOUT_SECS", 300)),
            backlog: env_num("LOADGEN_BACKLOG", 0) != 0,
            history: env_num("LOADGEN_HISTORY", 0),
            redis_url: std::env::var("REDIS_URL")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }
    }

    fn hot_stock(&self) -> i64 {
        (self.orders / 6) as i64 // the hot SKU is in about a third of the orders
    }
}

struct Database {
    url: String,
    drop: Option<(String, String)>,
    _dir: Option<std::path::PathBuf>,
}

/// A fresh database for the run named `run`: a new one on the PostgreSQL server of
/// DATABASE_URL, or a temp SQLite file.
async fn fresh_database(run: &str) -> Database {
    match std::env::var("DATABASE_URL") {
        Ok(server) if server.starts_with("postgres") => {
            let name = format!("orderhost_bench_{}_{run}", std::process::id());
            let url = common::create_pg_database(&server, &name).await;
            Database {
                url,
                drop: Some((server, name)),
                _dir: None,
            }
        }
        _ => {
            let dir = std::env::temp_dir()
                .join(format!("orderhost-loadgen-{}-{run}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            Database {
                url: format!("sqlite://{}", dir.join("orderhost.db").display()),
                drop: None,
                _dir: Some(dir),
            }
        }
    }
}

/// Deletes every key under `prefix:` with SCAN + DEL (the server is shared: never
/// FLUSHALL). Returns how many went.
async fn delete_redis_prefix(redis_url: &str, prefix: &str) -> redis::RedisResult<u64> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    // Bounded: a SCAN pass over even a large server is a few thousand calls.
    for _ in 0..1_000_000 {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1_000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            deleted += redis::cmd("DEL")
                .arg(&keys)
                .query_async::<u64>(&mut conn)
                .await?;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Ok(deleted)
}

/// Calls and server time (µs) per command, from `INFO commandstats`.
async fn redis_commandstats(
    conn: &mut redis::aio::MultiplexedConnection,
) -> Option<HashMap<String, (u64, u64)>> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .ok()?;
    let mut stats = HashMap::new();
    for line in info.lines() {
        let Some((name, fields)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let field = |key: &str| {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix(key))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        stats.insert(name.to_owned(), (field("calls="), field("usec=")));
    }
    Some(stats)
}

/// Busy and idle time of the whole machine so far, in clock ticks (1/100 s), from
/// /proc/stat: what every process (orderhost, the database, this client) spent.
fn machine_cpu() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let idle = fields.get(3)? + fields.get(4)?;
    let busy = fields.iter().take(8).sum::<u64>() - idle;
    Some((busy, idle))
}

/// The smallest UUIDv7 text of millisecond `ms`: every id made at or after `ms` sorts at
/// or above it.
fn first_id_at(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    format!(
        "{:08x}-{:04x}-0000-0000-000000000000",
        ms >> 16,
        ms & 0xffff
    )
}

/// Preloads `orders` settled orders of history into the database at `url` (migrating it
/// first), printing how long it took.
async fn preload_history(url: &str, orders: u64) {
    let store = orderhost::store::Store::open(
        &StoreConfig {
            database_url: url.to_owned(),
            ..StoreConfig::default()
        },
        Duration::from_secs(10),
    )
    .await
    .expect("the database opens");
    let started = Instant::now();
    let plan = orderhost::orders::history::Preload::new(orders, now_ms());
    let report = orderhost::orders::history::preload(&store, &plan, |_| {})
        .await
        .expect("history preloads");
    store.close().await;
    eprintln!(
        "history: {} orders ({} lines, {} events) preloaded in {:.1} s",
        report.orders,
        report.lines,
        report.events,
        started.elapsed().as_secs_f64()
    );
}

/// PostgreSQL: `seq_scan` of every user table, read once no other backend is connected
/// to the database (a backend's counters are complete once it has exited; while it
/// lives they are flushed only every so often), on a connection of its own with a fresh
/// statistics snapshot. `None` on SQLite or when they cannot be read.
async fn seq_scans(url: &str) -> Option<HashMap<String, i64>> {
    use sqlx::Connection as _;
    if !url.starts_with("postgres") {
        return None;
    }
    let mut conn = sqlx::PgConnection::connect(url).await.ok()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let others: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where datname = current_database() \
             and pid <> pg_backend_pid() and backend_type = 'client backend'",
        )
        .fetch_one(&mut conn)
        .await
        .ok()?;
        if others == 0 {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("{others} backends still connected after 30 s: seq_scan counts may be short");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sqlx::query("select pg_stat_clear_snapshot()")
        .execute(&mut conn)
        .await
        .ok()?;
    let rows: Vec<(String, i64)> =
        sqlx::query_as("select relname::text, seq_scan from pg_stat_user_tables")
            .fetch_all(&mut conn)
            .await
            .ok()?;
    let _ = conn.close().await;
    Some(rows.into_iter().collect())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn main() {
    let knobs = Knobs::from_env();
    let queues = queues(&knobs.redis_url);
    let mut backend = "";
    let mut reports = Vec::new();
    for queue in queues {
        let (name, report) = run(&knobs, queue);
        backend = name;
        reports.push(report);
    }

    let scenario = if knobs.backlog {
        "backlog: workers started once every order was placed"
    } else {
        "live: workers running while orders arrive"
    };
    let history = if knobs.history > 0 {
        format!("; {} settled orders of history", knobs.history)
    } else {
        "; empty database".to_owned()
    };
    println!(
        "orderhost load ({backend}, {} workers, batch {}, {} in flight, {} orders, all three hooks; {scenario}{history})",
        knobs.workers, knobs.batch, knobs.concurrency, knobs.orders
    );
    println!();
    println!(
        "| queue | accepted/s | `POST /order` p50 / p99 | final orders/s | final states | time to confirm p50 VIP / regular | machine CPU per order | invariants |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &reports {
        println!("{}", r.row());
    }
    println!();
    for r in &reports {
        println!("{}", r.details());
    }
    if reports.iter().any(|r| !r.violations.is_empty()) {
        std::process::exit(1);
    }
}

/// One queue, start to finish: a fresh database (and Redis prefix), an orderhost, the
/// load, the figures, the clean-up. Returns the store backend's name and the report.
fn run(knobs: &Knobs, queue: Queue) -> (&'static str, Report) {
    // The server gets its own runtime (2 threads) so the client cannot starve it of a
    // scheduler, and vice versa; they still share the machine's cores, as in production
    // on one box.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_num("LOADGEN_SERVER_THREADS", 2) as usize)
        .enable_all()
        .build()
        .unwrap();
    let database = server_rt.block_on(fresh_database(queue.name()));
    // History first, then the counters' starting point: nothing else is connected yet.
    let scans_before = server_rt.block_on(async {
        if knobs.history > 0 {
            preload_history(&database.url, knobs.history).await;
        }
        seq_scans(&database.url).await
    });
    // Unique per run, so this run's queue keys never meet another's on a shared server.
    let prefix = format!(
        "orderhost-bench-{}-{}-{}",
        std::process::id(),
        queue.name(),
        now_ms()
    );
    let config = Config {
        store: StoreConfig {
            database_url: database.url.clone(),
            db_max_connections: env_num("LOADGEN_DB_CONNECTIONS", 16) as u32,
            // As `serve` reads it: `full` (default) or `normal`, to measure the cost of
            // flushing every commit.
            sqlite_synchronous: std::env::var("ORDERHOST_SQLITE_SYNCHRONOUS")
                .ok()
                .map(|v| clap::ValueEnum::from_str(&v, true).expect("full or normal"))
                .unwrap_or(orderhost::config::SqliteSynchronous::Full),
            ..StoreConfig::default()
        },
        bind: "127.0.0.1:0".parse().unwrap(),
        // Backlog: `serve` without workers (in Redis mode it still runs the relay);
        // the load generator starts them once every order is in.
        workers: if knobs.backlog { 0 } else { knobs.workers },
        // Both queues get Redis when it is there (the replica fan-out uses it), so the
        // rows differ only by the queue.
        redis_url: knobs.redis_url.clone(),
        redis_prefix: prefix.clone(),
        queue: QueueConfig {
            batch_size: knobs.batch,
            backend: queue.backend(),
            ..Default::default()
        },
        policies_dir: std::env::temp_dir().join("orderhost-loadgen-no-policies"),
        login_ip_max_failures: 1_000_000,
        ..Config::default()
    };
    let app = server_rt
        .block_on(App::build(config))
        .expect("orderhost starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let ctx = WorkerContext::from(app.state());
    let backend = ctx.store.backend();
    server_rt.block_on(async {
        let hash = orderhost::auth::password::hash(PASSWORD.into())
            .await
            .unwrap();
        orderhost::users::create(
            &ctx.store,
            orderhost::store::DEFAULT_TENANT_ID,
            &Email::parse("admin@load.test").unwrap(),
            None,
            &hash,
            Role::Admin,
            0,
        )
        .await
        .unwrap();
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = server_rt.spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_num("LOADGEN_CLIENT_THREADS", 2) as usize)
        .enable_all()
        .build()
        .unwrap();
    let mut report = client_rt.block_on(drive(knobs, queue, base, ctx, server_rt.handle().clone()));

    // Stop serving (which stops the workers and closes the pool), then clean up.
    let _ = stop.send(());
    server_rt.block_on(async {
        match tokio::time::timeout(Duration::from_secs(30), server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("orderhost ({}) stopped with: {e:#}", queue.name()),
            Ok(Err(e)) => eprintln!("orderhost ({}) panicked: {e}", queue.name()),
            Err(_) => eprintln!("orderhost ({}) did not stop within 30 s", queue.name()),
        }
        // The server's backends have exited (or are exiting): their counters are flushed.
        if let (Some(before), Some(after)) = (&scans_before, seq_scans(&database.url).await) {
            report.seq_scans = Some(
                orderhost::orders::history::GROWING_TABLES
                    .iter()
                    .map(|t| {
                        let delta = after.get(*t).copied().unwrap_or(0)
                            - before.get(*t).copied().unwrap_or(0);
                        format!("{t} {delta}")
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        if let Some((server, name)) = &database.drop {
            common::drop_pg_database(server, name).await;
        }
        if !knobs.redis_url.is_empty()
            && let Err(e) = delete_redis_prefix(&knobs.redis_url, &prefix).await
        {
            eprintln!("could not delete the Redis keys under {prefix}: {e}");
        }
    });
    (backend, report)
}

struct Placed {
    id: String,
    vip: bool,
    hot: bool,
}

/// What one run measured.
struct Report {
    queue: Queue,
    backlog: bool,
    orders: usize,
    placed: usize,
    rejected: usize,
    accepted_per_s: f64,
    latency_p50: Duration,
    latency_p99: Duration,
    final_per_s: f64,
    /// Backlog: orders settled per second from the workers' start.
    drain_per_s: Option<f64>,
    /// Backlog: how long the relay took, after the last placement, to empty the outbox.
    outbox_wait: Option<Duration>,
    states: String,
    hot: (i64, i64, i64),
    vip_p50: Duration,
    regular_p50: Duration,
    /// µs of the whole machine's CPU per order, and how busy the machine was.
    cpu: Option<(f64, f64)>,
    /// Redis server time during the run (this run and whatever else used the server).
    redis: Option<String>,
    /// PostgreSQL: sequential scans of each growing table, from before the server started
    /// to after it stopped.
    seq_scans: Option<String>,
    violations: Vec<String>,
}

impl Report {
    fn row(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "| {} | {:.0} | {:.2} / {:.2} ms | {:.0}{} | {} | {:.1} / {:.1} ms{} | {} | {} |",
            self.queue.name(),
            self.accepted_per_s,
            ms(self.latency_p50),
            ms(self.latency_p99),
            self.final_per_s,
            self.drain_per_s
                .map_or(String::new(), |d| format!(" (drain {d:.0})")),
            self.states,
            ms(self.vip_p50),
            ms(self.regular_p50),
            if self.backlog {
                " from workers' start"
            } else {
                ""
            },
            self.cpu
                .map_or("n/a".to_owned(), |(us, _)| format!("{us:.0} µs")),
            if self.violations.is_empty() {
                "all hold"
            } else {
                "VIOLATED"
            },
        )
    }

    fn details(&self) -> String {
        let (stock, demand, confirmed) = self.hot;
        let mut out = format!(
            "{} queue: {} of {} orders accepted ({} refused); hot SKU stock {stock}, demand {demand}, confirmed {confirmed}",
            self.queue.name(),
            self.placed,
            self.orders,
            self.rejected
        );
        if let Some((_, busy)) = self.cpu {
            out += &format!(
                "; machine {:.0} % busy (CPU per order counts every process: orderhost, the database, Redis, this client)",
                busy * 100.0
            );
        }
        if let Some(wait) = self.outbox_wait {
            out += &format!(
                "\n  outbox empty {:.0} ms after the last placement",
                wait.as_secs_f64() * 1e3
            );
        }
        if let Some(redis) = &self.redis {
            out += &format!("\n  Redis: {redis}");
        }
        if let Some(scans) = &self.seq_scans {
            out += &format!(
                "\n  sequential scans of the growing tables (pg_stat_user_tables, server start to stop, \
                 set-up and checks included): {scans}"
            );
        }
        out += &format!(
            "\n  invariants: {}",
            if self.violations.is_empty() {
                "all hold".to_owned()
            } else {
                format!("VIOLATED: {}", self.violations.join("; "))
            }
        );
        out
    }
}

async fn drive(
    knobs: &Knobs,
    queue: Queue,
    base: String,
    ctx: WorkerContext,
    server: tokio::runtime::Handle,
) -> Report {
    let (orders, concurrency, users, timeout) =
        (knobs.orders, knobs.concurrency, knobs.users, knobs.timeout);
    let hot_stock = knobs.hot_stock();
    let store = ctx.store.clone();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let login = |email: String| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let r: Value = client
                .post(format!("{base}/auth/login"))
                .json(&json!({ "email": email, "password": PASSWORD }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            r["accessToken"].as_str().expect("login").to_owned()
        }
    };
    let admin = login("admin@load.test".into()).await;

    // Catalog through the admin API: the hot SKU and 50 normal ones.
    let mut stock_ids = Vec::new();
    for i in 0..=50 {
        let (sku, stock) = if i == 0 {
            ("HOT".to_owned(), hot_stock)
        } else {
            (format!("SKU-{i:03}"), 1_000_000)
        };
        let product: Value = client
            .post(format!("{base}/products"))
            .bearer_auth(&admin)
            .json(&json!({ "sku": sku, "name": sku, "unitPrice": 500 + i * 25, "currency": "EUR", "initialStock": stock }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stock_ids.push(
            product["stockId"]
                .as_str()
                .unwrap_or_else(|| panic!("product created: {product}"))
                .to_owned(),
        );
    }

    // Customers: register, 10 % VIP, sign in.
    let mut tokens = Vec::with_capacity(users);
    for u in 0..users {
        let email = format!("customer{u}@load.test");
        let r = client
            .post(format!("{base}/auth/register"))
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "register {}", r.status());
        let vip = u % 10 == 0;
        if vip {
            let r = client
                .post(format!("{base}/users/{email}/promote-vip"))
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
        tokens.push((format!("Bearer {}", login(email).await), vip));
    }

    // Redis server time is read before and after (the server may have other clients).
    let mut redis_conn = match queue {
        Queue::Redis => redis::Client::open(knobs.redis_url.as_str())
            .expect("REDIS_URL")
            .get_multiplexed_async_connection()
            .await
            .ok(),
        Queue::Database => None,
    };
    let redis_before = match &mut redis_conn {
        Some(conn) => redis_commandstats(conn).await,
        None => None,
    };

    // Fire. Each of the `concurrency` clients owns one keep-alive HTTP/1.1 connection
    // (hyper's client connection, no pool: the generator's own cost per request stays
    // small, since it shares the machine's two cores with the server).
    let authority = base.trim_start_matches("http://").to_owned();
    // Every order of this run has an id at or above this one (UUIDv7: time-ordered);
    // history orders are below it.
    let since = first_id_at(now_ms());
    let cpu_before = machine_cpu();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + timeout;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (authority, next, tokens, stock_ids) = (
                authority.clone(),
                next.clone(),
                tokens.clone(),
                stock_ids.clone(),
            );
            tokio::spawn(async move {
                use http_body_util::BodyExt as _;
                let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(connection);
                let mut placed = Vec::new();
                let mut latencies = Vec::new();
                let mut rejected = 0usize;
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= orders || Instant::now() > deadline {
                        break;
                    }
                    let (token, vip) = &tokens[n % tokens.len()];
                    let hot = n % 3 == 0;
                    let mut lines =
                        vec![json!({ "stockId": stock_ids[1 + n % 50], "quantity": 1 + (n % 3) })];
                    if hot {
                        lines.push(json!({ "stockId": stock_ids[0], "quantity": 1 }));
                    }
                    // The request is ready before the clock starts.
                    let request = hyper::Request::post("/order")
                        .header(hyper::header::HOST, authority.as_str())
                        .header(hyper::header::AUTHORIZATION, token.as_str())
                        .header(hyper::header::CONTENT_TYPE, "application/json")
                        .body(http_body_util::Full::new(bytes::Bytes::from(
                            serde_json::to_vec(&json!({ "lines": lines })).unwrap(),
                        )))
                        .unwrap();
                    let t = Instant::now();
                    let response = match sender.ready().await {
                        Ok(()) => sender.send_request(request).await,
                        Err(e) => Err(e),
                    };
                    let response = match response {
                        Ok(r) => {
                            let status = r.status();
                            r.into_body()
                                .collect()
                                .await
                                .map(|body| (status, body.to_bytes()))
                        }
                        Err(e) => Err(e),
                    };
                    let elapsed = t.elapsed();
                    match response {
                        Ok((status, body)) if status.as_u16() == 202 => {
                            latencies.push(elapsed);
                            #[derive(serde::Deserialize)]
                            struct Accepted {
                                id: String,
                            }
                            let body: Accepted = serde_json::from_slice(&body).unwrap();
                            placed.push(Placed {
                                id: body.id,
                                vip: *vip,
                                hot,
                            });
                        }
                        Ok((status, body)) => {
                            rejected += 1;
                            if rejected < 5 {
                                eprintln!("rejected: {status} {}", String::from_utf8_lossy(&body));
                            }
                        }
                        Err(e) => {
                            rejected += 1;
                            eprintln!("request failed: {e}");
                            break;
                        }
                    }
                }
                (placed, latencies, rejected)
            })
        })
        .collect();
    let mut placed = Vec::new();
    let mut latencies = Vec::new();
    let mut rejected = 0;
    for task in tasks {
        let (p, l, r) = task.await.unwrap();
        placed.extend(p);
        latencies.extend(l);
        rejected += r;
    }
    let accept_secs = started.elapsed().as_secs_f64();
    let mut violations = Vec::new();

    // Backlog: every order waits in the queue before a worker runs. In Redis mode the
    // relay (which `serve` runs even without workers) must first have pushed them all, so
    // the workers meet the whole backlog in Redis rather than a trickle from the outbox.
    let mut outbox_wait = None;
    let mut workers = None;
    let mut workers_started = None;
    if knobs.backlog {
        let t = Instant::now();
        loop {
            let (unsent, _) = orderhost::queue::outbox::backlog(&store).await.unwrap();
            if unsent == 0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        outbox_wait = Some(t.elapsed());
        let settled: i64 = with_pool!(&store, pool => sqlx::query_scalar("select count(*) from orders where id >= $1 and status <> 'PENDING'").bind(&since).fetch_one(pool).await).unwrap();
        if settled > 0 {
            violations.push(format!(
                "{settled} orders settled before the workers started: no backlog"
            ));
        }
        // The workers run on the server's runtime, as `serve` would run them.
        let _enter = server.enter();
        workers_started = Some((Instant::now(), now_ms()));
        workers = Some(orderhost::orders::process::spawn_workers(
            &ctx,
            knobs.workers,
        ));
    }

    // Wait until every order is final.
    loop {
        let pending: i64 = with_pool!(&store, pool => sqlx::query_scalar("select count(*) from orders where id >= $1 and status = 'PENDING'").bind(&since).fetch_one(pool).await).unwrap();
        if pending == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let finished = Instant::now();
    let final_secs = (finished - started).as_secs_f64();
    let cpu = machine_cpu().zip(cpu_before).map(|(after, before)| {
        let busy = after.0 - before.0;
        let total = (after.0 + after.1) - (before.0 + before.1);
        (busy, busy as f64 / total.max(1) as f64)
    });
    let redis = match (&mut redis_conn, redis_before) {
        (Some(conn), Some(before)) => redis_commandstats(conn).await.map(|after| {
            let mut calls = 0;
            let mut usec = 0;
            let mut scripts = (0, 0);
            for (name, (c, u)) in &after {
                let (c0, u0) = before.get(name).copied().unwrap_or((0, 0));
                calls += c - c0.min(*c);
                usec += u - u0.min(*u);
                if name == "evalsha" || name == "eval" {
                    scripts.0 += c - c0.min(*c);
                    scripts.1 += u - u0.min(*u);
                }
            }
            format!(
                "{calls} commands, {:.1} ms server time ({:.1} µs per order); scripts (EVALSHA) \
                 {} calls, {:.1} ms — from INFO commandstats, the server is shared",
                usec as f64 / 1e3,
                usec as f64 / placed.len().max(1) as f64,
                scripts.0,
                scripts.1 as f64 / 1e3
            )
        }),
        _ => None,
    };

    // The queue is empty once everything is final: nothing waiting, in flight or dead.
    // (A Redis queue acknowledges a batch just after its commit: give it a moment.)
    let mut depth = None;
    for _ in 0..100 {
        match ctx.queue.depth().await {
            Ok(d) if d.total() == 0 && d.dead == 0 => {
                depth = None;
                break;
            }
            Ok(d) => depth = Some(format!("{d:?}")),
            Err(e) => depth = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(depth) = depth {
        violations.push(format!("queue not empty at the end: {depth}"));
    }
    let (unsent, _) = orderhost::queue::outbox::backlog(&store).await.unwrap();
    if unsent > 0 {
        violations.push(format!("{unsent} outbox rows never pushed"));
    }
    if let Some((stop, handles)) = workers {
        let _ = stop.send(true);
        for handle in handles {
            let _ = handle.await;
        }
    }

    // Figures and invariants, from the database.
    #[derive(sqlx::FromRow)]
    struct Row {
        id: String,
        status: String,
        reason: Option<String>,
        created_at: i64,
        final_at: Option<i64>,
    }
    let rows: Vec<Row> = with_pool!(&store, pool => sqlx::query_as::<_, Row>("select id, status, reason, created_at, final_at from orders where id >= $1").bind(&since).fetch_all(pool).await).unwrap();
    let by_id: HashMap<&str, &Row> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in &rows {
        *counts
            .entry(format!(
                "{}{}",
                r.status,
                r.reason
                    .as_deref()
                    .map(|x| format!(" {x}"))
                    .unwrap_or_default()
            ))
            .or_default() += 1;
    }
    let mut vip_ttc = Vec::new();
    let mut regular_ttc = Vec::new();
    let mut hot_demand = 0i64;
    for p in &placed {
        hot_demand += i64::from(p.hot);
        if let Some(r) = by_id.get(p.id.as_str())
            && r.status == "CONFIRMED"
            && let Some(f) = r.final_at
        {
            // Backlog: from the workers' start (every order was waiting by then).
            let from = workers_started.map_or(r.created_at, |(_, ms)| ms);
            let ttc = Duration::from_millis(u64::try_from(f - from).unwrap_or(0));
            if p.vip {
                vip_ttc.push(ttc)
            } else {
                regular_ttc.push(ttc)
            }
        }
    }
    vip_ttc.sort();
    regular_ttc.sort();
    latencies.sort();
    // This run's stock rows and orders only (history has stock rows of its own).
    let stock: Vec<(String, i64, i64, i64)> =
        with_pool!(&store, pool => sqlx::query_as::<_, (String, i64, i64, i64)>(
        "select id, available, reserved, received from stock_items").fetch_all(pool).await)
        .unwrap()
        .into_iter()
        .filter(|(id, ..)| stock_ids.contains(id))
        .collect();
    let confirmed_by_stock: Vec<(String, i64)> = with_pool!(&store, pool => sqlx::query_as::<_, (String, i64)>(
        "select l.stock_id, cast(sum(l.quantity) as bigint) from order_lines l join orders o on o.id = l.order_id \
         where o.id >= $1 and l.order_id >= $1 and o.status = 'CONFIRMED' group by l.stock_id").bind(&since).fetch_all(pool).await).unwrap();
    let double: i64 = with_pool!(&store, pool => sqlx::query_scalar(
        "select count(*) from (select order_id from order_events where order_id >= $1 and status = 'CONFIRMED' group by order_id having count(*) > 1) t")
        .bind(&since).fetch_one(pool).await).unwrap();
    for (id, available, reserved, received) in &stock {
        if *available < 0 || *reserved < 0 {
            violations.push(format!("stock {id} negative"));
        }
        let confirmed = confirmed_by_stock
            .iter()
            .find(|(s, _)| s == id)
            .map_or(0, |(_, q)| *q);
        if confirmed > *received || confirmed != *reserved {
            violations.push(format!(
                "stock {id}: confirmed {confirmed}, reserved {reserved}, received {received}"
            ));
        }
    }
    let pending = rows.iter().filter(|r| r.status == "PENDING").count();
    if pending > 0 {
        violations.push(format!("{pending} orders still PENDING"));
    }
    if double > 0 {
        violations.push(format!("{double} orders confirmed twice"));
    }
    let hot_confirmed = confirmed_by_stock
        .iter()
        .find(|(s, _)| *s == stock_ids[0])
        .map_or(0, |(_, q)| *q);
    if hot_confirmed != hot_stock.min(hot_demand) {
        violations.push(format!(
            "hot SKU: {hot_confirmed} confirmed of {} servable: orders lost to contention",
            hot_stock.min(hot_demand)
        ));
    }
    let contention_failures = rows
        .iter()
        .filter(|r| r.status == "FAILED" && r.reason.as_deref() != Some("OUT_OF_STOCK"))
        .count();
    if contention_failures > 0 {
        violations.push(format!(
            "{contention_failures} orders failed for reasons other than stock"
        ));
    }
    let vip_p50 = percentile(&vip_ttc, 0.5);
    let regular_p50 = percentile(&regular_ttc, 0.5);
    if !vip_ttc.is_empty() && !regular_ttc.is_empty() {
        if knobs.backlog {
            // Ahead of a backlog, VIPs must be settled first.
            if vip_p50 >= regular_p50 {
                violations.push("backlog: VIP time-to-confirm p50 not below regular".into());
            }
        } else if vip_p50 > regular_p50 + Duration::from_millis(2) {
            // With no backlog both kinds wait only for the next batch: equal within the
            // millisecond timestamps.
            violations.push("VIP time-to-confirm p50 above regular".into());
        }
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort();
    Report {
        queue,
        backlog: knobs.backlog,
        orders,
        placed: placed.len(),
        rejected,
        accepted_per_s: placed.len() as f64 / accept_secs,
        latency_p50: percentile(&latencies, 0.5),
        latency_p99: percentile(&latencies, 0.99),
        final_per_s: rows.len() as f64 / final_secs,
        drain_per_s: workers_started
            .map(|(t, _)| rows.len() as f64 / (finished - t).as_secs_f64().max(1e-3)),
        outbox_wait,
        states: counts
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        hot: (hot_stock, hot_demand, hot_confirmed),
        vip_p50,
        regular_p50,
        cpu: cpu.map(|(busy, share)| (busy as f64 * 10_000.0 / rows.len().max(1) as f64, share)),
        redis,
        seq_scans: None,
        violations,
    }
}
