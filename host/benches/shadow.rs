//! Shadow bench: what an A/A pricing shadow at 100 % sampling costs the order path.
//!
//! A real orderhost on 127.0.0.1 (embedded SQLite in a temp dir, or a fresh database on
//! the PostgreSQL server of `DATABASE_URL`), the default tenant's pricing bound over the
//! API to `pricing-standard`, then phases of `SHADOW_BENCH_ORDERS` orders (2 000) each
//! with `SHADOW_BENCH_CONCURRENCY` (32) always in flight, alternating shadow off (0 %) and
//! on (`pricing-standard` as its own shadow, 100 %), `SHADOW_BENCH_ROUNDS` (2) times:
//! side by side in one run, so the machine's drift hits both alike. Prints per phase the
//! accepted orders/s and `POST /order` p50/p99, and the on/off ratios (target: p50 and
//! throughput within 5 %), and the shadow report (runs, skipped, disagreements: 0).
//!
//! ```sh
//! cargo bench -p orderhost --bench shadow
//! DATABASE_URL=postgres://orderhost:orderhost@127.0.0.1:5432/orderhost cargo bench -p orderhost --bench shadow
//! ```
//! Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.

mod common;

use std::time::{Duration, Instant};

use common::percentile;
use orderhost::{App, Config, auth::Role, config::StoreConfig, users::Email};
use serde_json::{Value, json};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PASSWORD: &str = "shadow-bench-password";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One phase: `orders` orders, `concurrency` in flight; (orders/s, sorted latencies).
async fn phase(
    client: &reqwest::Client,
    base: &str,
    tokens: &[String],
    orders: usize,
    concurrency: usize,
) -> (f64, Vec<Duration>) {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (client, url, token, next) = (
            client.clone(),
            format!("{base}/order"),
            tokens[w % tokens.len()].clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < orders {
                let start = Instant::now();
                let response = tokio::time::timeout(
                    Duration::from_secs(10),
                    client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({ "lines": [{ "sku": "MUG", "quantity": 1 }] }))
                        .send(),
                )
                .await;
                assert!(
                    matches!(&response, Ok(Ok(r)) if r.status() == 202),
                    "an order failed: {response:?}"
                );
                latencies.push(start.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(orders);
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    let rate = orders as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    (rate, latencies)
}

fn main() {
    let orders = env_num("SHADOW_BENCH_ORDERS", 2_000) as usize;
    let concurrency = env_num("SHADOW_BENCH_CONCURRENCY", 32) as usize;
    let rounds = env_num("SHADOW_BENCH_ROUNDS", 2);
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("orderhost-shadow-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pg_server = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"));
    let name = format!("orderhost_shadow_bench_{}", std::process::id());
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
        jwt_secret: "shadow-bench-secret-long-enough-for-production!!".into(),
        policies_dir: dir.join("policies"),
        login_ip_max_failures: 1_000_000,
        ..Config::default()
    };
    let app = server_rt
        .block_on(App::build(config))
        .expect("orderhost starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let store = app.state().store.clone();
    let shadows = app.state().policy.clone();
    server_rt.block_on(async {
        let hash = orderhost::auth::password::hash(PASSWORD.into())
            .await
            .expect("hash");
        for u in 0..=16 {
            let (email, role) = if u == 0 {
                ("admin@shadow.test".to_owned(), Role::Admin)
            } else {
                (format!("customer{u}@shadow.test"), Role::Customer)
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
        .worker_threads(1)
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
        let admin = login("admin@shadow.test".into()).await;
        let mut customers = Vec::new();
        for u in 1..=16 {
            customers.push(login(format!("customer{u}@shadow.test")).await);
        }
        let product = client
            .post(format!("{base}/products"))
            .bearer_auth(&admin)
            .json(&json!({ "sku": "MUG", "name": "Mug", "unitPrice": 1200, "currency": "EUR", "initialStock": 10_000_000 }))
            .send()
            .await
            .expect("product");
        assert!(product.status().is_success(), "product: {}", product.status());
        let binding = format!("{base}/admin/tenants/default/bindings/pricing");
        let bound = client
            .put(&binding)
            .bearer_auth(&admin)
            .json(&json!({ "component": "pricing-standard@1.0.0" }))
            .send()
            .await
            .expect("bind");
        assert_eq!(bound.status(), 200, "binding refused");
        let set_shadow = |percent: u32| {
            let (client, binding, admin) = (client.clone(), binding.clone(), admin.clone());
            async move {
                let r = client
                    .patch(&binding)
                    .bearer_auth(&admin)
                    .json(&json!({ "shadow": { "component": "pricing-standard@1.0.0", "percent": percent } }))
                    .send()
                    .await
                    .expect("shadow");
                assert_eq!(r.status(), 200, "shadow refused");
            }
        };
        // Warm-up (compiled paths, connections, caches), not measured.
        phase(&client, &base, &customers, orders / 4, concurrency).await;
        println!(
            "orderhost shadow bench ({}, {orders} orders per phase, {concurrency} in flight, A/A pricing shadow)\n",
            if pg_server.is_some() { "postgres" } else { "sqlite" }
        );
        println!("| phase | accepted/s | `POST /order` p50 / p99 |\n|---|---|---|");
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            for percent in [0, 100] {
                set_shadow(percent).await;
                let (rate, latencies) = phase(&client, &base, &customers, orders, concurrency).await;
                let p50 = percentile(&latencies, 0.5);
                let p99 = percentile(&latencies, 0.99);
                println!(
                    "| round {round}, shadow {percent} % | {rate:.0} | {:.2} / {:.2} ms |",
                    p50.as_secs_f64() * 1e3,
                    p99.as_secs_f64() * 1e3
                );
                if percent == 0 { &mut off } else { &mut on }.push((rate, p50));
            }
        }
        let mean = |v: &[(f64, Duration)]| {
            let n = v.len() as f64;
            (
                v.iter().map(|x| x.0).sum::<f64>() / n,
                v.iter().map(|x| x.1.as_secs_f64()).sum::<f64>() / n * 1e3,
            )
        };
        let ((off_rate, off_p50), (on_rate, on_p50)) = (mean(&off), mean(&on));
        println!(
            "\nshadow 100 % vs off: throughput {:+.1} %, p50 {:+.1} % (target: within 5 %)",
            (on_rate / off_rate - 1.0) * 100.0,
            (on_p50 / off_p50 - 1.0) * 100.0
        );
        // The last `on` phase's revision: its report (runs, skipped, disagreements).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let revision = shadows
            .snapshot()
            .binding("default", orderhost::policy::types::Hook::Pricing)
            .revision
            .unwrap_or_default();
        match shadows.shadows().report(
            "default",
            orderhost::policy::types::Hook::Pricing,
            revision,
        ) {
            Some(r) => println!(
                "last shadow phase: {} runs, {} skipped (all 4 shadow slots busy), disagreements {:?}",
                r.runs, r.skipped, r.disagreements
            ),
            None => println!("last shadow phase: no report"),
        }
    });
    if let Some(server) = &pg_server {
        server_rt.block_on(common::drop_pg_database(server, &name));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
