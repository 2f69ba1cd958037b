//! Swap bench: two `orderhost` replicas on 127.0.0.1 sharing a fresh PostgreSQL database
//! (on the server of DATABASE_URL) and one Redis key prefix (REDIS_URL).
//!
//! It prints:
//! - convergence: time from the pricing `PUT`'s 200 on replica A to replica B serving the
//!   new revision, over `SWAP_BENCH_SWAPS` swaps (50) with pub/sub: p50, p99, max;
//! - the same with B's subscriber cut (a third replica C on another Redis prefix, so it
//!   only has its revision check, default 2 s) over `SWAP_BENCH_DEAF_SWAPS` swaps (10);
//! - the order path under a fixed offered rate (`SWAP_BENCH_RATE` orders/s, 200, for
//!   `SWAP_BENCH_SECS` s, 10, alternately through A and B), without swaps and with a
//!   pricing swap through A every 200 ms: POST /order p50/p99 and failed count.
//!
//! ```sh
//! DATABASE_URL=postgres://orderhost:orderhost@127.0.0.1:5432/orderhost \
//! REDIS_URL=redis://127.0.0.1:6379 cargo bench -p orderhost --bench swap
//! ```
//! Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::percentile;
use orderhost::{App, Config, auth::Role, config::StoreConfig, users::Email};
use serde_json::{Value, json};

const PASSWORD: &str = "swap-bench-password";
const SECRET: &str = "swap-bench-secret-long-enough-for-production!";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Starts a replica on `database_url` with Redis `prefix`; its base URL.
async fn replica(database_url: &str, redis_url: &str, prefix: &str) -> (String, App) {
    let dir = std::env::temp_dir().join("orderhost-swap-bench-no-policies");
    let config = Config {
        store: StoreConfig {
            database_url: database_url.to_owned(),
            db_max_connections: 16,
            ..StoreConfig::default()
        },
        bind: "127.0.0.1:0".parse().expect("address"),
        redis_url: redis_url.to_owned(),
        redis_prefix: prefix.to_owned(),
        jwt_secret: SECRET.to_owned(),
        policies_dir: dir,
        login_ip_max_failures: 1_000_000,
        ..Config::default()
    };
    let app = App::build(config).await.expect("orderhost starts");
    (format!("http://127.0.0.1:{}", app.port()), app)
}

/// The revision of the database binding serving the default tenant's pricing on `base`.
async fn served(client: &reqwest::Client, base: &str, token: &str) -> i64 {
    let view: Value = client
        .get(format!("{base}/admin/tenants/default/bindings"))
        .bearer_auth(token)
        .send()
        .await
        .expect("bindings")
        .json()
        .await
        .expect("json");
    view["bindings"]
        .as_array()
        .expect("bindings")
        .iter()
        .find(|b| b["hook"] == "pricing")
        .expect("pricing listed")["revision"]
        .as_i64()
        .unwrap_or(0)
}

/// Flips the pricing binding through `base`; the new revision.
async fn swap(client: &reqwest::Client, base: &str, token: &str, n: usize) -> i64 {
    let tiers = if n.is_multiple_of(2) {
        "3:1000"
    } else {
        "3:2000"
    };
    let response = client
        .put(format!("{base}/admin/tenants/default/bindings/pricing"))
        .bearer_auth(token)
        .json(&json!({
            "component": "pricing-standard@1.0.0",
            "config": { "bulk-tiers": tiers },
            "reason": format!("swap bench {n}"),
        }))
        .send()
        .await
        .expect("swap");
    assert_eq!(response.status(), 200, "swap refused");
    let change: Value = response.json().await.expect("json");
    change["change"]["revision"].as_i64().expect("revision")
}

/// Swaps `count` times through `a`, timing each from the PUT's 200 to `b` serving it.
async fn convergence(
    client: &reqwest::Client,
    a: &str,
    b: &str,
    token: &str,
    count: usize,
    bound: Duration,
) -> Vec<Duration> {
    let mut times = Vec::with_capacity(count);
    for n in 0..count {
        let revision = swap(client, a, token, n).await;
        let start = Instant::now();
        loop {
            if served(client, b, token).await >= revision {
                break;
            }
            assert!(
                start.elapsed() < bound,
                "revision {revision} not served after {bound:?}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        times.push(start.elapsed());
    }
    times.sort();
    times
}

/// `rate` orders/s for `secs` s, alternately to each of `bases` (open loop: each order is
/// sent on schedule whatever the previous ones are doing); latencies and failures.
async fn offered_load(
    client: &reqwest::Client,
    bases: &[String],
    tokens: &[String],
    rate: u64,
    secs: u64,
) -> (Vec<Duration>, usize) {
    let total = (rate * secs) as usize;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total);
    for n in 0..total {
        ticker.tick().await;
        let (client, url, token) = (
            client.clone(),
            format!("{}/order", bases[n % bases.len()]),
            tokens[n % tokens.len()].clone(),
        );
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let response = tokio::time::timeout(
                Duration::from_secs(10),
                client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({ "lines": [{ "sku": "MUG", "quantity": 3 }] }))
                    .send(),
            )
            .await;
            let ok = matches!(&response, Ok(Ok(r)) if r.status() == 202);
            (start.elapsed(), ok)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut failed = 0;
    for task in tasks {
        let (took, ok) = task.await.expect("order task");
        latencies.push(took);
        if !ok {
            failed += 1;
        }
    }
    latencies.sort();
    (latencies, failed)
}

fn main() {
    let server = match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => url,
        _ => {
            eprintln!("swap bench: needs DATABASE_URL=postgres://… and REDIS_URL");
            return;
        }
    };
    let Ok(redis_url) = std::env::var("REDIS_URL") else {
        eprintln!("swap bench: needs REDIS_URL");
        return;
    };
    let swaps = env_num("SWAP_BENCH_SWAPS", 50) as usize;
    let deaf_swaps = env_num("SWAP_BENCH_DEAF_SWAPS", 10) as usize;
    let rate = env_num("SWAP_BENCH_RATE", 200);
    let secs = env_num("SWAP_BENCH_SECS", 10);

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_num("SWAP_BENCH_SERVER_THREADS", 4) as usize)
        .enable_all()
        .build()
        .expect("runtime");
    let name = format!("orderhost_swap_bench_{}", std::process::id());
    let database_url = server_rt.block_on(common::create_pg_database(&server, &name));
    let prefix = format!("orderhost-swap-bench-{}", std::process::id());
    let (a, app_a) = server_rt.block_on(replica(&database_url, &redis_url, &prefix));
    let store = app_a.state().store.clone();
    let (b, app_b) = server_rt.block_on(replica(&database_url, &redis_url, &prefix));
    let (c, app_c) = server_rt.block_on(replica(
        &database_url,
        &redis_url,
        &format!("{prefix}-deaf"),
    ));
    server_rt.block_on(async {
        let hash = orderhost::auth::password::hash(PASSWORD.into())
            .await
            .expect("hash");
        for u in 0..=20 {
            let (email, role) = if u == 0 {
                ("admin@swap.test".to_owned(), Role::Admin)
            } else {
                (format!("customer{u}@swap.test"), Role::Customer)
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
    for app in [app_a, app_b, app_c] {
        server_rt.spawn(app.run_until_stopped(std::future::pending()));
    }

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_num("SWAP_BENCH_CLIENT_THREADS", 2) as usize)
        .enable_all()
        .build()
        .expect("runtime");
    client_rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .expect("client");
        let login = |email: String| {
            let (client, a) = (client.clone(), a.clone());
            async move {
                let r: Value = client
                    .post(format!("{a}/auth/login"))
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
        let admin = login("admin@swap.test".into()).await;
        let mut customers = Vec::new();
        for u in 1..=20 {
            customers.push(login(format!("customer{u}@swap.test")).await);
        }
        let product = client
            .post(format!("{a}/products"))
            .bearer_auth(&admin)
            .json(&json!({ "sku": "MUG", "name": "Mug", "unitPrice": 1200, "currency": "EUR", "initialStock": 10_000_000 }))
            .send()
            .await
            .expect("product");
        assert!(product.status().is_success(), "product: {}", product.status());

        // Convergence with pub/sub.
        let times = convergence(&client, &a, &b, &admin, swaps, Duration::from_secs(10)).await;
        println!(
            "convergence A→B by pub/sub, {} swaps: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            times.len(),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(times[times.len() - 1]),
        );
        // Convergence by the revision check alone (C hears nothing).
        let times =
            convergence(&client, &a, &c, &admin, deaf_swaps, Duration::from_secs(10)).await;
        println!(
            "convergence A→C by the 2 s revision check alone (subscriber cut), {} swaps: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            times.len(),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(times[times.len() - 1]),
        );

        // The order path at a fixed rate through both replicas, without and with swaps.
        let bases = [a.clone(), b.clone()];
        for swapping in [false, true] {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let swapper = swapping.then(|| {
                let (client, a, admin, stop) =
                    (client.clone(), a.clone(), admin.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    // Bounded: stops with the load, or after 10 minutes' worth of swaps.
                    while !stop.load(std::sync::atomic::Ordering::Acquire) && n < 3_000 {
                        swap(&client, &a, &admin, n).await;
                        n += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    n
                })
            });
            let (latencies, failed) =
                offered_load(&client, &bases, &customers, rate, secs).await;
            stop.store(true, std::sync::atomic::Ordering::Release);
            let swaps_done = match swapper {
                Some(task) => task.await.expect("swapper"),
                None => 0,
            };
            println!(
                "POST /order at {rate}/s for {secs} s through A and B, {}: {} orders, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, failed {failed}",
                if swapping {
                    format!("swap every 200 ms ({swaps_done} swaps)")
                } else {
                    "no swaps".to_owned()
                },
                latencies.len(),
                ms(percentile(&latencies, 0.5)),
                ms(percentile(&latencies, 0.99)),
                ms(latencies[latencies.len() - 1]),
            );
        }
    });
    drop(client_rt);

    server_rt.block_on(async {
        store.close().await;
        common::drop_pg_database(&server, &name).await;
    });
}
