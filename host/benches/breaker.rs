//! Breaker bench, two parts.
//!
//! 1. The cost on the order path: `Breakers::admit` + `Ticket::record` of a closed
//!    breaker (what every hook call pays), ns per call on one thread and with every core
//!    hammering the same breaker (the worst case: one tenant's one hook).
//! 2. Tripping under load: a real orderhost on 127.0.0.1 (embedded SQLite in a temp dir,
//!    or a fresh database on the PostgreSQL server of `DATABASE_URL`), the default tenant's
//!    validation bound to `trap-some-skus` trapping on the only SKU ordered (so it traps
//!    on every call) with `on-error = "fallback"` and the default breaker settings; orders
//!    sent at a fixed `BREAKER_BENCH_RATE` orders/s (500) for `BREAKER_BENCH_SECS` s (3),
//!    open loop. It prints the time from the first order (the first failing call) to the
//!    first order answered by the open breaker, how many orders the fallback served in
//!    between (from each order's decision log), and the failed orders (target: ≤ 1 s, 0
//!    failed).
//!
//! ```sh
//! cargo bench -p orderhost --bench breaker
//! DATABASE_URL=postgres://orderhost:orderhost@127.0.0.1:5432/orderhost \
//!     cargo bench -p orderhost --bench breaker
//! ```
//! Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.

mod common;

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use common::percentile;
use orderhost::{
    App, Config,
    auth::Role,
    clock::SystemClock,
    config::StoreConfig,
    policy::{
        PolicyRuntime,
        breaker::{BreakerConfig, Breakers},
        engine::CallOutcome,
        registry::BUILD_DIR,
        types::{Hook, HookOutput},
    },
    users::Email,
};
use serde_json::{Value, json};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PASSWORD: &str = "breaker-bench-password";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Part 1: ns per admit + record on a closed breaker.
fn hot_path() {
    let dir = std::env::temp_dir().join(format!("orderhost-breaker-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let runtime = PolicyRuntime::load(&dir).expect("built-ins load");
    let binding = runtime
        .snapshot()
        .binding("default", Hook::Validation)
        .clone();
    let breakers = Arc::new(Breakers::new(
        BreakerConfig::default(),
        Arc::new(SystemClock),
    ));
    let outcome = || CallOutcome {
        output: HookOutput::Violations(Vec::new()),
        fuel_used: 1,
        peak_memory_bytes: 0,
        elapsed: Duration::ZERO,
        logs: Vec::new(),
    };
    const CALLS: u64 = 1_000_000;
    let run = |breakers: &Breakers, binding: &orderhost::policy::Binding| {
        let mut kept = outcome();
        for _ in 0..CALLS {
            let ticket = breakers
                .admit("default", Hook::Validation, binding)
                .expect("closed");
            kept = ticket.record(Ok(kept)).expect("success");
        }
        std::hint::black_box(kept);
    };
    run(&breakers, &binding); // warm up
    let started = Instant::now();
    run(&breakers, &binding);
    let single = started.elapsed().as_nanos() as f64 / CALLS as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..cores {
            s.spawn(|| run(&breakers, &binding));
        }
    });
    let shared = started.elapsed().as_nanos() as f64 / CALLS as f64;
    println!(
        "breaker admit + record (closed), {CALLS} calls: {single:.0} ns/call on 1 thread; {cores} threads on the same breaker: {shared:.0} ns per call of each thread (target <= 1000 ns)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    hot_path();

    let rate = env_num("BREAKER_BENCH_RATE", 500);
    let secs = env_num("BREAKER_BENCH_SECS", 3);
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_num("BREAKER_BENCH_SERVER_THREADS", 2) as usize)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempdir();
    let pg_server = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"));
    let name = format!("orderhost_breaker_bench_{}", std::process::id());
    let database_url = match &pg_server {
        Some(server) => server_rt.block_on(common::create_pg_database(server, &name)),
        None => format!("sqlite://{}", dir.join("orderhost.db").display()),
    };
    let config = Config {
        store: StoreConfig {
            database_url,
            db_max_connections: 16,
            ..StoreConfig::default()
        },
        bind: "127.0.0.1:0".parse().expect("address"),
        jwt_secret: "breaker-bench-secret-long-enough-for-production!".into(),
        policies_dir: dir.join("policies"),
        login_ip_max_failures: 1_000_000,
        ..Config::default()
    };
    let app = server_rt
        .block_on(App::build(config))
        .expect("orderhost starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let store = app.state().store.clone();
    server_rt.block_on(async {
        let hash = orderhost::auth::password::hash(PASSWORD.into())
            .await
            .expect("hash");
        for u in 0..=20 {
            let (email, role) = if u == 0 {
                ("admin@breaker.test".to_owned(), Role::Admin)
            } else {
                (format!("customer{u}@breaker.test"), Role::Customer)
            };
            orderhost::users::create(
                &store,
                orderhost::store::DEFAULT_TENANT_ID,
                &Email::parse(&email).expect("email"),
                None,
                &hash,
                role,
                0,
            )
            .await
            .expect("user");
        }
    });
    server_rt.spawn(app.run_until_stopped(std::future::pending()));

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_num("BREAKER_BENCH_CLIENT_THREADS", 1) as usize)
        .enable_all()
        .build()
        .expect("runtime");
    client_rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .expect("client");
        let login = |email: String| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let r: Value = client
                    .post(format!("{base}/auth/login"))
                    .json(&json!({ "email": email, "password": PASSWORD }))
                    .send()
                    .await
                    .expect("login")
                    .json()
                    .await
                    .expect("json");
                r["accessToken"].as_str().expect("access token").to_owned()
            }
        };
        let admin = login("admin@breaker.test".into()).await;
        let mut customers = Vec::new();
        for u in 1..=20 {
            customers.push(login(format!("customer{u}@breaker.test")).await);
        }
        let product = client
            .post(format!("{base}/products"))
            .bearer_auth(&admin)
            .json(&json!({ "sku": "MUG", "name": "Mug", "unitPrice": 1200, "currency": "EUR", "initialStock": 10_000_000 }))
            .send()
            .await
            .expect("product");
        assert!(product.status().is_success(), "product: {}", product.status());
        let bytes = std::fs::read(Path::new(BUILD_DIR).join("trap_some_skus.wasm"))
            .expect("trap_some_skus.wasm built");
        let uploaded = client
            .post(format!("{base}/admin/components?name=trap-some-skus&version=1.0.0"))
            .bearer_auth(&admin)
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .expect("upload");
        assert_eq!(uploaded.status(), 201, "upload refused");
        let bound = client
            .put(format!("{base}/admin/tenants/default/bindings/validation"))
            .bearer_auth(&admin)
            .json(&json!({
                "component": "trap-some-skus@1.0.0",
                "config": { "skus": "MUG" },
                "onError": "fallback",
                "reason": "breaker bench: traps on every order",
            }))
            .send()
            .await
            .expect("bind");
        assert_eq!(bound.status(), 200, "binding refused");

        // Open loop: each order leaves on schedule whatever the earlier ones are doing.
        let total = (rate * secs) as usize;
        let period = Duration::from_secs_f64(1.0 / rate as f64);
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut tasks = Vec::with_capacity(total);
        for n in 0..total {
            ticker.tick().await;
            let (client, url, token) = (
                client.clone(),
                format!("{base}/order"),
                customers[n % customers.len()].clone(),
            );
            tasks.push(tokio::spawn(async move {
                let sent = SystemTime::now();
                let start = Instant::now();
                let response = tokio::time::timeout(
                    Duration::from_secs(10),
                    client
                        .post(url)
                        .bearer_auth(token)
                        .json(&json!({ "lines": [{ "sku": "MUG", "quantity": 1 }] }))
                        .send(),
                )
                .await;
                let id = match response {
                    Ok(Ok(r)) if r.status() == 202 => r
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v["id"].as_str().map(str::to_owned)),
                    _ => None,
                };
                (sent, start.elapsed(), id)
            }));
        }
        let mut results = Vec::with_capacity(total);
        for task in tasks {
            results.push(task.await.expect("order task"));
        }
        let failed = results.iter().filter(|(_, _, id)| id.is_none()).count();
        let mut latencies: Vec<Duration> = results.iter().map(|(_, took, _)| *took).collect();
        latencies.sort();

        // What served each order's validation, from its decision log (bounded: one GET
        // per accepted order).
        let (mut fallback, mut open, mut stable, mut other) = (0usize, 0usize, 0usize, 0usize);
        let first_sent = results[0].0;
        let mut first_open: Option<SystemTime> = None;
        let mut fallback_before_open = 0usize;
        for (sent, _, id) in &results {
            let Some(id) = id else { continue };
            let decision: Value = client
                .get(format!("{base}/order/{id}/decision"))
                .bearer_auth(&admin)
                .send()
                .await
                .expect("decision")
                .json()
                .await
                .expect("json");
            let served = decision["hooks"]
                .as_array()
                .and_then(|h| h.iter().find(|h| h["hook"] == "validation"))
                .map(|h| h["servedBy"].as_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            match served.as_str() {
                "fallback" => {
                    fallback += 1;
                    if first_open.is_none() {
                        fallback_before_open += 1;
                    }
                }
                "breaker-open" => {
                    open += 1;
                    first_open = Some(first_open.map_or(*sent, |t| t.min(*sent)));
                }
                "stable" => stable += 1,
                _ => other += 1,
            }
        }
        let breakers: Value = client
            .get(format!("{base}/admin/tenants/default/breakers"))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("breakers")
            .json()
            .await
            .expect("json");
        let validation = breakers["breakers"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["hook"] == "validation"))
            .cloned()
            .unwrap_or_default();
        let to_open = first_open.map(|t| t.duration_since(first_sent).unwrap_or_default());
        println!(
            "trapping binding (on-error fallback, default breaker: 20 calls, 50 %, 10 s window), {rate} orders/s for {secs} s: {} orders sent, {failed} failed",
            results.len()
        );
        match to_open {
            Some(d) => println!(
                "  first failing call -> breaker open: <= {:.1} ms (first order sent -> first order answered by the open breaker), {fallback_before_open} orders served by the fallback meanwhile (target <= 1000 ms)",
                ms(d)
            ),
            None => println!("  the breaker never opened (MISSED)"),
        }
        println!(
            "  validation served by: fallback {fallback}, breaker-open {open}, component {stable}, other {other}; breaker now {} (opened {} time(s))",
            validation["state"], validation["timesOpened"]
        );
        println!(
            "  POST /order p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            ms(latencies[latencies.len() - 1]),
        );
    });
    drop(client_rt);
    server_rt.block_on(async {
        store.close().await;
        if let Some(server) = &pg_server {
            common::drop_pg_database(server, &name).await;
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "orderhost-breaker-bench-app-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
