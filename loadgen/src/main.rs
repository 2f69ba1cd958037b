//! `orderhost-loadgen`: drives a running orderhost over HTTP from a process of its own, so
//! the service's cost is measured without the generator's.
//!
//! Two modes:
//! - **open loop** (`--rate R`): sends are scheduled at R per second whatever the service
//!   does; each order's latency is counted from its *scheduled* send time, so a stall
//!   shows as latency instead of silently lowering the offered rate (no coordinated
//!   omission). At most `--connections` requests are in flight; a send waiting for a
//!   connection keeps its scheduled time.
//! - **closed loop** (`--closed N`): N clients, each sending its next order when the
//!   previous one is answered (the saturation figure).
//!
//! `--sweep 10,25,50,75,90` first measures the closed-loop capacity (64 in flight), then
//! runs the open loop at those percentages of it, and prints one table.
//!
//! For every run it reports POST /order p50, p99, p99.9 and max, the whole machine's CPU
//! per accepted order with the generator's own CPU subtracted (from `/proc/stat` and
//! `/proc/self/stat`, counted until the queue has drained, so settling is included), the
//! service processes' own CPU (`--pid`), and with `--database-url` (PostgreSQL): statements
//! per order (`pg_stat_statements` when the extension is installed), transactions per
//! order, and sequential scans of the tables that grow with orders.
//!
//! Setup through the API: the admin signs in (`--admin-email`, password from
//! `LOADGEN_ADMIN_PASSWORD`), creates 50 products with ample stock, registers `--users`
//! customers (10 % promoted to VIP) and signs them in; names carry a run id, so runs can
//! repeat on one database. Traffic goes to loopback addresses only; every loop is bounded
//! in count and time.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode, client::conn::http1::SendRequest};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

type Body = Full<Bytes>;

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "orderhost-loadgen", version, about)]
struct Args {
    /// The running orderhost (a loopback address).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// An admin (or operator) of the default tenant, e.g. made with `orderhost user create`.
    #[arg(long, env = "LOADGEN_ADMIN_EMAIL")]
    admin_email: String,
    /// Its password.
    #[arg(long, env = "LOADGEN_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: String,
    /// The service's PostgreSQL database, for statements, transactions and table scans
    /// per order.
    #[arg(long, env = "LOADGEN_DATABASE_URL")]
    database_url: Option<String>,
    /// Open loop at these offered rates (orders/s), one run each.
    #[arg(long, value_delimiter = ',')]
    rate: Vec<f64>,
    /// Closed loop with this many orders in flight.
    #[arg(long)]
    closed: Option<usize>,
    /// Percentages of the closed-loop capacity (64 in flight, measured first) to run the
    /// open loop at.
    #[arg(long, value_delimiter = ',')]
    sweep: Vec<f64>,
    /// Seconds each run sends for.
    #[arg(long, default_value_t = 15.0)]
    duration: f64,
    /// Most requests in flight (and connections) in the open loop.
    #[arg(long, default_value_t = 256)]
    connections: usize,
    /// Customers the orders are spread over.
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Seconds of unmeasured traffic at 100 orders/s before the first run.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// How long to wait for the queue to drain after a run's last send.
    #[arg(long, default_value_t = 120)]
    drain_timeout_secs: u64,
    /// PIDs of the service's processes, whose own CPU is reported too.
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let url = url_authority(&args.url)?;
    // Two threads: the generator must stay small beside the service on a 2-core machine.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args, url))
}

/// `host:port` of a loopback URL; anything else is refused.
fn url_authority(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .context("--url must be http://127.0.0.1:PORT (plain HTTP on loopback)")?;
    let authority = rest.trim_end_matches('/');
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host);
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        bail!("--url must be a loopback address (127.0.0.1, localhost or [::1]), got {host}");
    }
    Ok(if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    })
}

async fn run(args: Args, authority: String) -> anyhow::Result<()> {
    if args.rate.is_empty() && args.closed.is_none() && args.sweep.is_empty() {
        bail!("nothing to do: give --rate R, --closed N or --sweep P,P,…");
    }
    if args
        .rate
        .iter()
        .chain(&args.sweep)
        .any(|r| !r.is_finite() || *r <= 0.0)
        || args.duration <= 0.0
    {
        bail!("rates, sweep percentages and --duration must be positive");
    }
    let target = Arc::new(Target::setup(&args, authority).await?);
    let db = match &args.database_url {
        Some(url) => Some(DbStats::connect(url).await?),
        None => None,
    };
    if args.warmup > 0.0 {
        eprintln!("warm-up: {} s at 100 orders/s", args.warmup);
        open_loop(&target, 100.0, args.warmup, args.connections).await;
        target
            .drain(Duration::from_secs(args.drain_timeout_secs))
            .await?;
    }

    let mut modes: Vec<Mode> = args.closed.map(Mode::Closed).into_iter().collect();
    modes.extend(args.rate.iter().map(|rate| Mode::Open(*rate)));
    let mut rows = Vec::new();
    for mode in modes {
        let row = measure(&target, db.as_ref(), &args, mode).await?;
        eprintln!("{}", row.line());
        rows.push(row);
    }
    if !args.sweep.is_empty() {
        let capacity = measure(&target, db.as_ref(), &args, Mode::Closed(64)).await?;
        eprintln!("{}", capacity.line());
        let accepted = capacity.accepted_per_sec;
        rows.push(capacity);
        for percent in &args.sweep {
            let mode = Mode::Open(accepted * percent / 100.0);
            let row = measure(&target, db.as_ref(), &args, mode).await?;
            eprintln!("{}", row.line());
            rows.push(row);
        }
    }
    println!("{}", Row::header());
    for row in &rows {
        println!("{}", row.line());
    }
    Ok(())
}

/// What one run does.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Open(f64),
    Closed(usize),
}

/// The service under load and what the orders are made of.
struct Target {
    authority: String,
    customers: Vec<String>,
    stock_ids: Vec<String>,
}

impl Target {
    async fn setup(args: &Args, authority: String) -> anyhow::Result<Self> {
        let mut conn = connect(&authority).await?;
        let run_id = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis()
        );
        let admin = login(
            &mut conn,
            &authority,
            &args.admin_email,
            &args.admin_password,
        )
        .await?;
        let mut stock_ids = Vec::new();
        for i in 0..50 {
            let sku = format!("LG-{run_id}-{i:02}");
            let body = json!({ "sku": sku, "name": sku, "unitPrice": 500 + i * 25,
                               "currency": "EUR", "initialStock": 100_000_000 });
            let (status, body) = call(
                &mut conn,
                &authority,
                Method::POST,
                "/products",
                Some(&admin),
                &body,
            )
            .await?;
            if status != StatusCode::CREATED {
                bail!("creating product {sku}: {status} {body}");
            }
            stock_ids.push(body["stockId"].as_str().context("stockId")?.to_owned());
        }
        let password = format!("loadgen-{run_id}-password");
        let mut customers = Vec::new();
        for u in 0..args.users.max(1) {
            let email = format!("lg-{run_id}-{u}@load.test");
            let body = json!({ "email": email, "password": password });
            let (status, body) = call(
                &mut conn,
                &authority,
                Method::POST,
                "/auth/register",
                None,
                &body,
            )
            .await?;
            if !status.is_success() {
                bail!("registering {email}: {status} {body}");
            }
            if u % 10 == 0 {
                let path = format!("/users/{email}/promote-vip");
                let (status, body) = call(
                    &mut conn,
                    &authority,
                    Method::POST,
                    &path,
                    Some(&admin),
                    &json!({}),
                )
                .await?;
                if !status.is_success() {
                    bail!("promoting {email}: {status} {body}");
                }
            }
            let token = login(&mut conn, &authority, &email, &password).await?;
            customers.push(format!("Bearer {token}"));
        }
        eprintln!(
            "set up: {} customers, {} products (run {run_id})",
            customers.len(),
            stock_ids.len()
        );
        Ok(Self {
            authority,
            customers,
            stock_ids,
        })
    }

    /// The n-th order: one line of one unit, customers and products round robin.
    fn order(&self, n: usize) -> Request<Body> {
        let body = format!(
            r#"{{"lines":[{{"stockId":"{}","quantity":1}}]}}"#,
            self.stock_ids[n % self.stock_ids.len()]
        );
        Request::post("/order")
            .header(hyper::header::HOST, self.authority.as_str())
            .header(
                hyper::header::AUTHORIZATION,
                self.customers[n % self.customers.len()].as_str(),
            )
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid request")
    }

    /// Waits until nothing waits in the queue, nothing is in flight and the outbox is
    /// empty, as `/health` reports them.
    async fn drain(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let mut conn = connect(&self.authority).await?;
        loop {
            let (_, health) = call(
                &mut conn,
                &self.authority,
                Method::GET,
                "/health",
                None,
                &Value::Null,
            )
            .await?;
            let queue = &health["queue"];
            let waiting: i64 = queue["waiting"]
                .as_object()
                .map_or(0, |m| m.values().filter_map(Value::as_i64).sum());
            let pending = waiting
                + queue["inFlight"].as_i64().unwrap_or(0)
                + queue["outbox"]["unsent"].as_i64().unwrap_or(0);
            if pending == 0 && queue["waiting"].is_object() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the queue did not drain within {limit:?}: {queue}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Signs in; the access token.
async fn login(
    conn: &mut SendRequest<Body>,
    authority: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    let body = json!({ "email": email, "password": password });
    let (status, body) = call(conn, authority, Method::POST, "/auth/login", None, &body).await?;
    if status != StatusCode::OK {
        bail!("login of {email}: {status} {body}");
    }
    body["accessToken"]
        .as_str()
        .map(str::to_owned)
        .context("login answered without accessToken")
}

async fn connect(authority: &str) -> anyhow::Result<SendRequest<Body>> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

async fn send(
    sender: &mut SendRequest<Body>,
    request: Request<Body>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// A JSON call of the setup (not measured).
async fn call(
    conn: &mut SendRequest<Body>,
    authority: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(hyper::header::HOST, authority);
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = if method == Method::GET {
        request.body(Full::new(Bytes::new()))?
    } else {
        request
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?
    };
    let (status, bytes) = send(conn, request).await?;
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, value))
}

/// What the sends of one run saw.
#[derive(Default)]
struct Outcome {
    /// Latency of every answered order (from its scheduled time in the open loop).
    latencies: Vec<Duration>,
    accepted: usize,
    refused: usize,
    failed: usize,
    first_refusal: Option<String>,
}

impl Outcome {
    fn record(&mut self, latency: Duration, result: anyhow::Result<(StatusCode, Bytes)>) {
        match result {
            Ok((status, body)) => {
                self.latencies.push(latency);
                if status == StatusCode::ACCEPTED {
                    self.accepted += 1;
                } else {
                    self.refused += 1;
                    self.first_refusal.get_or_insert_with(|| {
                        format!("{status} {}", String::from_utf8_lossy(&body))
                    });
                }
            }
            Err(error) => {
                self.failed += 1;
                self.first_refusal
                    .get_or_insert_with(|| format!("request failed: {error:#}"));
            }
        }
    }
}

/// Connections of the open loop: at most `cap`, opened as needed, reused.
struct Pool {
    idle: Mutex<Vec<SendRequest<Body>>>,
    permits: Arc<Semaphore>,
}

/// Offered load at `rate` orders/s for `secs` seconds.
async fn open_loop(target: &Arc<Target>, rate: f64, secs: f64, cap: usize) -> Outcome {
    let total = (rate * secs).round().max(1.0) as usize;
    let pool = Arc::new(Pool {
        idle: Mutex::new(Vec::new()),
        permits: Arc::new(Semaphore::new(cap.max(1))),
    });
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        let scheduled = start + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(scheduled).await;
        let (target, pool) = (target.clone(), pool.clone());
        tasks.spawn(async move {
            let request = target.order(n);
            let _permit = pool.permits.clone().acquire_owned().await.expect("open");
            let idle = pool.idle.lock().expect("pool").pop();
            let conn = match idle {
                Some(conn) => Ok(conn),
                None => connect(&target.authority).await,
            };
            let result = match conn {
                Ok(mut conn) => {
                    let result = send(&mut conn, request).await;
                    if result.is_ok() {
                        pool.idle.lock().expect("pool").push(conn);
                    }
                    result
                }
                Err(error) => Err(error),
            };
            (scheduled.elapsed(), result)
        });
    }
    let mut outcome = Outcome::default();
    while let Some(done) = tasks.join_next().await {
        let (latency, result) = done.expect("a send task");
        outcome.record(latency, result);
    }
    outcome
}

/// `clients` always in flight for `secs` seconds.
async fn closed_loop(target: &Arc<Target>, clients: usize, secs: f64) -> Outcome {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let (target, next) = (target.clone(), next.clone());
        tasks.spawn(async move {
            let mut outcome = Outcome::default();
            let mut conn = match connect(&target.authority).await {
                Ok(conn) => conn,
                Err(error) => {
                    outcome.record(Duration::ZERO, Err(error));
                    return outcome;
                }
            };
            while Instant::now() < end {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let request = target.order(n);
                let sent = Instant::now();
                let result = send(&mut conn, request).await;
                let failed = result.is_err();
                outcome.record(sent.elapsed(), result);
                if failed {
                    break;
                }
            }
            outcome
        });
    }
    let mut total = Outcome::default();
    while let Some(done) = tasks.join_next().await {
        let part = done.expect("a client task");
        total.latencies.extend(part.latencies);
        total.accepted += part.accepted;
        total.refused += part.refused;
        total.failed += part.failed;
        if total.first_refusal.is_none() {
            total.first_refusal = part.first_refusal;
        }
    }
    total
}

/// CPU time counters, in clock ticks.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    /// Every process of the machine (non-idle time of `/proc/stat`).
    machine: u64,
    /// This generator.
    own: u64,
    /// The service processes given with `--pid`.
    service: u64,
}

/// Clock ticks per second of `/proc` times (USER_HZ, 100 on Linux for x86 and arm).
const TICKS_PER_SEC: f64 = 100.0;

impl Cpu {
    fn now(pids: &[u32]) -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal: idle and iowait are not CPU
        // work, and steal is time the hypervisor gave to other machines.
        let machine =
            fields.iter().sum::<u64>() - fields.get(3)? - fields.get(4)? - fields.get(7)?;
        let own = process_ticks("self")?;
        let service = pids
            .iter()
            .filter_map(|pid| process_ticks(&pid.to_string()))
            .sum();
        Some(Self {
            machine,
            own,
            service,
        })
    }
}

/// utime + stime of a process, from `/proc/<pid>/stat` (fields 14 and 15; the command
/// name in parentheses may hold spaces, so count after its closing parenthesis).
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The tables that grow with every order: the order path must never scan them.
const GROWING_TABLES: &[&str] = &[
    "orders",
    "order_lines",
    "order_events",
    "order_decisions",
    "stock_movements",
    "jobs",
    "idempotency_keys",
    "outbox",
];

/// PostgreSQL counters of the service's database.
struct DbStats {
    pool: sqlx::PgPool,
    statements: bool,
}

#[derive(Debug, Clone, Default)]
struct DbCounters {
    statements: i64,
    transactions: i64,
    seq_scans: Vec<(String, i64)>,
}

impl DbStats {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .context("connecting to --database-url")?;
        let statements: bool = sqlx::query_scalar(
            "select exists (select 1 from pg_extension where extname = 'pg_stat_statements')",
        )
        .fetch_one(&pool)
        .await?;
        if !statements {
            eprintln!(
                "pg_stat_statements is not installed in this database: statements per order \
                 not reported (shared_preload_libraries = 'pg_stat_statements', then \
                 `create extension pg_stat_statements`)"
            );
        }
        Ok(Self { pool, statements })
    }

    async fn read(&self) -> anyhow::Result<DbCounters> {
        // Backends publish their counters at most once a second, and a transaction reads
        // one snapshot of them: wait, then drop the cached snapshot.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        sqlx::query("select pg_stat_clear_snapshot()")
            .execute(&self.pool)
            .await?;
        let statements = if self.statements {
            sqlx::query_scalar::<_, i64>(
                "select coalesce(sum(calls), 0)::bigint from pg_stat_statements \
                 where dbid = (select oid from pg_database where datname = current_database())",
            )
            .fetch_one(&self.pool)
            .await?
        } else {
            0
        };
        let transactions: i64 = sqlx::query_scalar(
            "select (xact_commit + xact_rollback)::bigint from pg_stat_database \
             where datname = current_database()",
        )
        .fetch_one(&self.pool)
        .await?;
        let tables: Vec<String> = GROWING_TABLES.iter().map(|t| (*t).to_owned()).collect();
        let seq_scans: Vec<(String, i64)> = sqlx::query_as(
            "select relname::text, coalesce(seq_scan, 0)::bigint from pg_stat_user_tables \
             where relname = any($1) order by relname",
        )
        .bind(&tables)
        .fetch_all(&self.pool)
        .await?;
        Ok(DbCounters {
            statements,
            transactions,
            seq_scans,
        })
    }
}

/// One line of the report.
struct Row {
    mode: String,
    offered: Option<f64>,
    accepted_per_sec: f64,
    final_per_sec: f64,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
    refused: usize,
    failed: usize,
    cpu_ms_per_order: Option<f64>,
    service_cpu_ms_per_order: Option<f64>,
    statements_per_order: Option<f64>,
    transactions_per_order: Option<f64>,
    seq_scans: Option<String>,
}

impl Row {
    fn header() -> String {
        "| mode | offered/s | accepted/s | final/s | p50 ms | p99 ms | p99.9 ms | max ms | refused | failed \
         | CPU ms/order (machine − generator) | service CPU ms/order | statements/order \
         | transactions/order | seq scans of growing tables |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
            .to_owned()
    }

    fn line(&self) -> String {
        let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
        let opt = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
        };
        let mut line = String::new();
        let _ = write!(
            line,
            "| {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.mode,
            opt(self.offered, 0),
            self.accepted_per_sec,
            self.final_per_sec,
            ms(self.p50),
            ms(self.p99),
            ms(self.p999),
            ms(self.max),
            self.refused,
            self.failed,
            opt(self.cpu_ms_per_order, 3),
            opt(self.service_cpu_ms_per_order, 3),
            opt(self.statements_per_order, 1),
            opt(self.transactions_per_order, 2),
            self.seq_scans.as_deref().unwrap_or("–"),
        );
        line
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn measure(
    target: &Arc<Target>,
    db: Option<&DbStats>,
    args: &Args,
    mode: Mode,
) -> anyhow::Result<Row> {
    let db_before = match db {
        Some(db) => Some(db.read().await?),
        None => None,
    };
    let cpu_before = Cpu::now(&args.pid);
    let started = Instant::now();
    let outcome = match mode {
        Mode::Open(rate) => open_loop(target, rate, args.duration, args.connections).await,
        Mode::Closed(n) => closed_loop(target, n, args.duration).await,
    };
    let sending = started.elapsed().as_secs_f64();
    target
        .drain(Duration::from_secs(args.drain_timeout_secs))
        .await?;
    // Accepted orders over the time until the last of them was final (drained).
    let settling = started.elapsed().as_secs_f64();
    let cpu_after = Cpu::now(&args.pid);
    let db_after = match db {
        Some(db) => Some(db.read().await?),
        None => None,
    };
    if let Some(refusal) = &outcome.first_refusal {
        eprintln!("first refusal: {refusal}");
    }

    let accepted = outcome.accepted.max(1) as f64;
    let per_order = |ticks: u64| ticks as f64 / TICKS_PER_SEC * 1e3 / accepted;
    let (cpu, service) = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) => (
            Some(per_order(
                (b.machine - a.machine).saturating_sub(b.own - a.own),
            )),
            (!args.pid.is_empty()).then(|| per_order(b.service.saturating_sub(a.service))),
        ),
        _ => (None, None),
    };
    let (statements, transactions, seq_scans) = match (db_before, db_after, db) {
        (Some(a), Some(b), Some(db)) => {
            let scans: Vec<String> = b
                .seq_scans
                .iter()
                .filter_map(|(table, after)| {
                    let before = a
                        .seq_scans
                        .iter()
                        .find(|(t, _)| t == table)
                        .map_or(0, |(_, n)| *n);
                    (after - before > 0).then(|| format!("{table} {}", after - before))
                })
                .collect();
            (
                db.statements
                    .then(|| (b.statements - a.statements) as f64 / accepted),
                Some((b.transactions - a.transactions) as f64 / accepted),
                Some(if scans.is_empty() {
                    "none".to_owned()
                } else {
                    scans.join(", ")
                }),
            )
        }
        _ => (None, None, None),
    };
    let mut sorted = outcome.latencies;
    sorted.sort_unstable();
    Ok(Row {
        mode: match mode {
            Mode::Open(_) => "open".to_owned(),
            Mode::Closed(n) => format!("closed {n}"),
        },
        offered: match mode {
            Mode::Open(rate) => Some(rate),
            Mode::Closed(_) => None,
        },
        accepted_per_sec: outcome.accepted as f64 / sending,
        final_per_sec: outcome.accepted as f64 / settling,
        p50: percentile(&sorted, 0.50),
        p99: percentile(&sorted, 0.99),
        p999: percentile(&sorted, 0.999),
        max: sorted.last().copied().unwrap_or_default(),
        refused: outcome.refused,
        failed: outcome.failed,
        cpu_ms_per_order: cpu,
        service_cpu_ms_per_order: service,
        statements_per_order: statements,
        transactions_per_order: transactions,
        seq_scans,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert_eq!(
            url_authority("http://127.0.0.1:8000").unwrap(),
            "127.0.0.1:8000"
        );
        assert_eq!(
            url_authority("http://localhost:8000/").unwrap(),
            "localhost:8000"
        );
        assert_eq!(url_authority("http://[::1]:9").unwrap(), "[::1]:9");
        assert_eq!(url_authority("http://127.0.0.1").unwrap(), "127.0.0.1:80");
        assert!(url_authority("http://example.com:8000").is_err());
        assert!(url_authority("http://10.0.0.1:8000").is_err());
        assert!(url_authority("https://127.0.0.1:8000").is_err());
    }

    #[test]
    fn process_times_are_read_after_the_command_name() {
        // Our own process: utime + stime exist and do not go backwards.
        let a = process_ticks("self").unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(process_ticks("self").unwrap() >= a);
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=1000).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 0.5), Duration::from_millis(501));
        assert_eq!(percentile(&sorted, 0.999), Duration::from_millis(999));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
