//! Order load generator: a real orderhost on 127.0.0.1 (started in this process, on its
//! own runtime threads), driven over HTTP like any client.
//!
//! It registers users (10 % promoted to VIP through the admin API), seeds a catalog
//! through the admin API (one hot SKU with less stock than demand, plus normal SKUs),
//! fires `LOADGEN_ORDERS` orders with `LOADGEN_CONCURRENCY` in flight, waits until every
//! order is final, checks the invariants, and prints the figures.
//!
//! ```sh
//! cargo bench -p orderhost --bench orders                       # embedded SQLite
//! DATABASE_URL=postgres://orderhost:orderhost@127.0.0.1/orderhost \
//!     cargo bench -p orderhost --bench orders                   # a fresh database on that server
//! ```
//!
//! Knobs (env): LOADGEN_ORDERS (5000), LOADGEN_CONCURRENCY (64), LOADGEN_USERS (100),
//! LOADGEN_WORKERS (1), LOADGEN_BATCH (256), LOADGEN_TIMEOUT_SECS (300); on SQLite,
//! ORDERHOST_SQLITE_SYNCHRONOUS (full).
//! Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.

mod common;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use common::percentile;
use orderhost::{
    App, Config, auth::Role, config::StoreConfig, store::Store, users::Email, with_pool,
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

struct Database {
    url: String,
    drop: Option<(String, String)>,
    _dir: Option<std::path::PathBuf>,
}

/// A fresh database: a new one on the PostgreSQL server of DATABASE_URL, or a temp SQLite file.
async fn fresh_database() -> Database {
    match std::env::var("DATABASE_URL") {
        Ok(server) if server.starts_with("postgres") => {
            let name = format!("orderhost_bench_{}", std::process::id());
            let url = common::create_pg_database(&server, &name).await;
            Database {
                url,
                drop: Some((server, name)),
                _dir: None,
            }
        }
        _ => {
            let dir =
                std::env::temp_dir().join(format!("orderhost-loadgen-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            Database {
                url: format!("sqlite://{}", dir.join("orderhost.db").display()),
                drop: None,
                _dir: Some(dir),
            }
        }
    }
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

fn main() {
    let orders = env_num("LOADGEN_ORDERS", 5_000) as usize;
    let concurrency = env_num("LOADGEN_CONCURRENCY", 64) as usize;
    let users = env_num("LOADGEN_USERS", 100) as usize;
    let workers = env_num("LOADGEN_WORKERS", 1) as u32;
    let batch = env_num("LOADGEN_BATCH", 256) as u32;
    let timeout = Duration::from_secs(env_num("LOADGEN_TIMEOUT_SECS", 300));
    let hot_stock = (orders / 6) as i64; // the hot SKU is in about a third of the orders

    // The server gets its own runtime (2 threads) so the client cannot starve it of a
    // scheduler, and vice versa; they still share the machine's cores, as in production
    // on one box.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_num("LOADGEN_SERVER_THREADS", 2) as usize)
        .enable_all()
        .build()
        .unwrap();
    let database = server_rt.block_on(fresh_database());
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
        workers,
        queue: orderhost::queue::QueueConfig {
            batch_size: batch,
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
    let store = app.state().store.clone();
    let backend = store.backend();
    server_rt.block_on(async {
        let hash = orderhost::auth::password::hash(PASSWORD.into())
            .await
            .unwrap();
        orderhost::users::create(
            &store,
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
    server_rt.spawn(app.run_until_stopped(std::future::pending()));

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_num("LOADGEN_CLIENT_THREADS", 2) as usize)
        .enable_all()
        .build()
        .unwrap();
    let report = client_rt.block_on(drive(
        base,
        store.clone(),
        orders,
        concurrency,
        users,
        hot_stock,
        timeout,
    ));
    println!(
        "orderhost load ({backend}, {workers} workers, batch {batch}, {concurrency} in flight, all three hooks)"
    );
    println!("{report}");

    if let Some((server, name)) = database.drop {
        server_rt.block_on(async {
            store.close().await;
            common::drop_pg_database(&server, &name).await;
        });
    }
}

struct Placed {
    id: String,
    vip: bool,
    hot: bool,
}

async fn drive(
    base: String,
    store: Store,
    orders: usize,
    concurrency: usize,
    users: usize,
    hot_stock: i64,
    timeout: Duration,
) -> String {
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

    // Fire. Each of the `concurrency` clients owns one keep-alive HTTP/1.1 connection
    // (hyper's client connection, no pool: the generator's own cost per request stays
    // small, since it shares the machine's two cores with the server).
    let authority = base.trim_start_matches("http://").to_owned();
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

    // Wait until every order is final.
    loop {
        let pending: i64 = with_pool!(&store, pool => sqlx::query_scalar("select count(*) from orders where status = 'PENDING'").fetch_one(pool).await).unwrap();
        if pending == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let final_secs = started.elapsed().as_secs_f64();
    let cpu = machine_cpu().zip(cpu_before).map(|(after, before)| {
        let busy = after.0 - before.0;
        let total = (after.0 + after.1) - (before.0 + before.1);
        (busy, busy as f64 / total.max(1) as f64)
    });

    // Figures and invariants, from the database.
    #[derive(sqlx::FromRow)]
    struct Row {
        id: String,
        status: String,
        reason: Option<String>,
        created_at: i64,
        final_at: Option<i64>,
    }
    let rows: Vec<Row> = with_pool!(&store, pool => sqlx::query_as::<_, Row>("select id, status, reason, created_at, final_at from orders").fetch_all(pool).await).unwrap();
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
            let ttc = Duration::from_millis(u64::try_from(f - r.created_at).unwrap_or(0));
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
    let stock: Vec<(String, i64, i64, i64)> =
        with_pool!(&store, pool => sqlx::query_as::<_, (String, i64, i64, i64)>(
        "select id, available, reserved, received from stock_items").fetch_all(pool).await)
        .unwrap();
    let confirmed_by_stock: Vec<(String, i64)> = with_pool!(&store, pool => sqlx::query_as::<_, (String, i64)>(
        "select l.stock_id, cast(sum(l.quantity) as bigint) from order_lines l join orders o on o.id = l.order_id \
         where o.status = 'CONFIRMED' group by l.stock_id").fetch_all(pool).await).unwrap();
    let double: i64 = with_pool!(&store, pool => sqlx::query_scalar(
        "select count(*) from (select order_id from order_events where status = 'CONFIRMED' group by order_id having count(*) > 1) t")
        .fetch_one(pool).await).unwrap();
    let mut violations = Vec::new();
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
    // With no backlog both kinds wait only for the next batch: equal within the
    // millisecond timestamps; with a backlog VIPs must be ahead.
    if !vip_ttc.is_empty()
        && !regular_ttc.is_empty()
        && vip_p50 > regular_p50 + Duration::from_millis(2)
    {
        violations.push("VIP time-to-confirm p50 above regular".into());
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort();
    format!(
        "  orders accepted        {} of {orders} ({rejected} refused)\n\
         \x20 accepted orders/s      {:.0}\n\
         \x20 POST /order p50 / p99  {:.2} ms / {:.2} ms\n\
         \x20 final orders/s (e2e)   {:.0}\n\
         \x20 final states           {}\n\
         \x20 hot SKU                stock {hot_stock}, demand {hot_demand}, confirmed {hot_confirmed}\n\
         \x20 time to confirm p50    VIP {:.1} ms, regular {:.1} ms\n\
         \x20 machine CPU per order  {}\n\
         \x20 invariants             {}",
        placed.len(),
        placed.len() as f64 / accept_secs,
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        rows.len() as f64 / final_secs,
        counts
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        vip_p50.as_secs_f64() * 1e3,
        regular_p50.as_secs_f64() * 1e3,
        cpu.map_or("n/a".to_owned(), |(busy, share)| format!(
            "{:.0} us (all processes: orderhost, database, this client; machine {:.0} % busy)",
            busy as f64 * 10_000.0 / rows.len().max(1) as f64,
            share * 100.0
        )),
        if violations.is_empty() {
            "all hold".to_owned()
        } else {
            format!("VIOLATED: {}", violations.join("; "))
        },
    )
}
