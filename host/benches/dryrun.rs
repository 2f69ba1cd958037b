//! Dry-run bench: seeds DRYRUN_BENCH_ORDERS (default 10 000) real orders through the API
//! (with their decision records; the in-process workers settle them, so they end
//! CONFIRMED or FAILED OUT_OF_STOCK), then dry-runs `pricing-deeper` against the active
//! `pricing-standard` over all of them and prints orders/s replayed (both sides per
//! order) and the process's peak RSS during the run (VmHWM, reset before the run through
//! /proc/self/clear_refs, so it is the server's baseline plus what the run added).
//!
//! PostgreSQL when DATABASE_URL=postgres://… is set (a throw-away database), else a
//! SQLite file in a temp directory.
//!
//! `cargo bench -p orderhost --bench dryrun`

mod common;

use std::time::{Duration, Instant};

use orderhost::{App, Config, auth::Role, config::StoreConfig, users::Email};
use serde_json::{Value, json};

const PASSWORD: &str = "dryrun-bench-password";
const SECRET: &str = "dryrun-bench-secret-long-enough-for-production!";
const CUSTOMERS: usize = 20;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `/proc/self/status` field in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let orders = env_num("DRYRUN_BENCH_ORDERS", 10_000) as usize;
    let concurrency = env_num("DRYRUN_BENCH_CONCURRENCY", 32) as usize;
    let pg_server = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile_dir();
    let pg_name = format!("orderhost_dryrun_bench_{}", std::process::id());
    let database_url = match &pg_server {
        Some(server) => rt.block_on(common::create_pg_database(server, &pg_name)),
        None => format!("sqlite://{}", dir.join("orderhost.db").display()),
    };
    let backend = if pg_server.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let config = Config {
        store: StoreConfig {
            database_url,
            db_max_connections: 16,
            ..StoreConfig::default()
        },
        bind: "127.0.0.1:0".parse().expect("address"),
        jwt_secret: SECRET.to_owned(),
        policies_dir: dir.join("policies"),
        login_ip_max_failures: 1_000_000,
        ..Config::default()
    };
    let app = rt.block_on(App::build(config)).expect("orderhost starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let store = app.state().store.clone();
    rt.block_on(async {
        let hash = orderhost::auth::password::hash(PASSWORD.into())
            .await
            .expect("hash");
        for u in 0..=CUSTOMERS {
            let (email, role) = if u == 0 {
                ("admin@dryrun.test".to_owned(), Role::Admin)
            } else {
                (format!("customer{u}@dryrun.test"), Role::Customer)
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
    rt.spawn(app.run_until_stopped(std::future::pending()));

    rt.block_on(async {
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
        let admin = login("admin@dryrun.test".into()).await;
        // A quarter of the customers are VIPs: their quotes carry the VIP discount.
        for u in (1..=CUSTOMERS).step_by(4) {
            let r = client
                .post(format!("{base}/users/customer{u}@dryrun.test/promote-vip"))
                .bearer_auth(&admin)
                .send()
                .await
                .expect("promote");
            assert!(r.status().is_success(), "promote: {}", r.status());
        }
        let mut customers = Vec::new();
        for u in 1..=CUSTOMERS {
            customers.push(login(format!("customer{u}@dryrun.test")).await);
        }
        // MUG never runs out; TEA runs out after a while (FAILED OUT_OF_STOCK).
        for (sku, price, stock) in [("MUG", 1_200, 10_000_000), ("TEA", 350, 2_000)] {
            let r = client
                .post(format!("{base}/products"))
                .bearer_auth(&admin)
                .json(&json!({ "sku": sku, "name": sku, "unitPrice": price, "currency": "EUR", "initialStock": stock }))
                .send()
                .await
                .expect("product");
            assert!(r.status().is_success(), "product: {}", r.status());
        }
        let bytes = std::fs::read(
            std::path::Path::new(orderhost::policy::registry::BUILD_DIR).join("pricing_deeper.wasm"),
        )
        .expect("pricing_deeper.wasm built");
        let r = client
            .post(format!("{base}/admin/components?name=pricing-deeper&version=1.0.0"))
            .bearer_auth(&admin)
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .expect("upload");
        assert!(r.status().is_success(), "upload: {}", r.status());

        let seeding = Instant::now();
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (client, base, customers, next) =
                    (client.clone(), base.clone(), customers.clone(), next.clone());
                tokio::spawn(async move {
                    let mut took = Vec::new();
                    loop {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if n >= orders {
                            break took;
                        }
                        let sent = Instant::now();
                        let lines = if n % 3 == 0 {
                            json!([{ "sku": "TEA", "quantity": 1 + n % 4 }, { "sku": "MUG", "quantity": 1 }])
                        } else {
                            json!([{ "sku": "MUG", "quantity": 1 + n % 5 }])
                        };
                        let r = client
                            .post(format!("{base}/order"))
                            .bearer_auth(&customers[n % customers.len()])
                            .json(&json!({ "lines": lines }))
                            .send()
                            .await
                            .expect("order");
                        assert_eq!(r.status(), 202, "order refused");
                        took.push(sent.elapsed());
                    }
                })
            })
            .collect();
        let mut took = Vec::with_capacity(orders);
        for task in tasks {
            took.extend(task.await.expect("seeder"));
        }
        let seeded = seeding.elapsed();
        took.sort();
        println!(
            "seeded {orders} orders through the API on {backend} in {:.1} s ({:.0}/s, p50 {:.1} ms, p99 {:.1} ms)",
            seeded.as_secs_f64(),
            orders as f64 / seeded.as_secs_f64(),
            common::percentile(&took, 0.5).as_secs_f64() * 1000.0,
            common::percentile(&took, 0.99).as_secs_f64() * 1000.0,
        );
        // Let the workers settle them (their real outcomes label the changes).
        let settle = Instant::now();
        while settle.elapsed() < Duration::from_secs(120) {
            let pending: i64 = orderhost::with_pool!(&store, pool => sqlx::query_scalar(
                "select count(*) from orders where status = 'PENDING'",
            )
            .fetch_one(pool)
            .await)
            .expect("count");
            if pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let rss_before = status_kib("VmRSS:");
        let started = Instant::now();
        let r = client
            .post(format!("{base}/admin/tenants/default/dry-run"))
            .bearer_auth(&admin)
            .json(&json!({ "hook": "pricing", "candidate": "pricing-deeper@1.0.0", "orders": orders }))
            .send()
            .await
            .expect("dry run");
        assert_eq!(r.status(), 202, "dry run refused");
        let run: Value = r.json().await.expect("json");
        let id = run["id"].as_str().expect("id").to_owned();
        let run = loop {
            let run: Value = client
                .get(format!("{base}/admin/tenants/default/dry-run/{id}"))
                .bearer_auth(&admin)
                .send()
                .await
                .expect("poll")
                .json()
                .await
                .expect("json");
            if run["status"] != "running" {
                break run;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let wall = started.elapsed();
        let peak = status_kib("VmHWM:");
        assert_eq!(run["status"], "done", "{run}");
        let report = &run["report"];
        println!(
            "dry run over {} orders (pricing-standard vs pricing-deeper, {} threads): {} ms replay, {} orders/s in the report; {:.0} orders/s wall incl. polling",
            report["processed"],
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            report["elapsedMs"],
            report["ordersPerSecond"],
            report["processed"].as_f64().unwrap_or(0.0) / wall.as_secs_f64(),
        );
        println!(
            "  changed {}, exact {}, inexact {}, mismatches {}, price delta sum {}, by outcome {}",
            report["changed"],
            report["exact"],
            report["inexact"],
            report["activeMismatches"]["count"],
            report["priceDeltas"]["sum"],
            report["priceChanges"]["byOutcome"],
        );
        println!(
            "  latency µs p50/p99: active {}/{}, candidate {}/{}",
            report["performance"]["active"]["latencyUs"]["p50"],
            report["performance"]["active"]["latencyUs"]["p99"],
            report["performance"]["candidate"]["latencyUs"]["p50"],
            report["performance"]["candidate"]["latencyUs"]["p99"],
        );
        println!(
            "  process RSS before the run {:.1} MiB, peak during it (VmHWM) {:.1} MiB",
            rss_before as f64 / 1024.0,
            peak as f64 / 1024.0
        );
    });
    if let Some(server) = &pg_server {
        rt.block_on(common::drop_pg_database(server, &pg_name));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("orderhost-dryrun-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
