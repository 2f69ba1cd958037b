//! Bindings across replicas: two orderhost processes on one PostgreSQL database and one
//! Redis key prefix — a change made through one is served by the other after the pub/sub
//! announcement (convergence p50/p99 printed); a replica that never hears the channel
//! still converges within its revision check; `GET /admin/replicas` lists the replicas
//! with their revisions, for operators only; without Redis it lists this process; the
//! pricing binding flipped ≥ 20 times through one replica under concurrent orders and
//! quotes sent to both fails no request, and every order is priced by exactly one version.

use std::{path::Path, time::Duration};

use orderhost::{auth::Role, policy::registry::BUILD_DIR};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{
    backend_tests,
    helpers::{
        Backend, TestApp, assert_error, json_ok, new_client, spawn_app_with, spawn_second_app,
    },
};

backend_tests!(replicas_lists_this_process_for_operators_only);

async fn get(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    new_client()
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

async fn replicas(app: &TestApp, token: &str) -> Value {
    json_ok(get(app, token, "/admin/replicas").await, StatusCode::OK).await
}

/// The revision of the database binding serving acme's `hook` on `app` (0: none).
async fn served_revision(app: &TestApp, token: &str, hook: &str) -> i64 {
    let view = json_ok(
        get(app, token, "/admin/tenants/acme/bindings").await,
        StatusCode::OK,
    )
    .await;
    view["bindings"]
        .as_array()
        .expect("bindings")
        .iter()
        .find(|b| b["hook"] == hook)
        .expect("hook listed")["revision"]
        .as_i64()
        .unwrap_or(0)
}

/// Binds flash-sale for acme's validation through `app`; the new tenant revision.
async fn swap(app: &TestApp, token: &str, max_units: u32) -> i64 {
    let response = new_client()
        .put(app.url("/admin/tenants/acme/bindings/validation"))
        .bearer_auth(token)
        .json(&json!({
            "component": "flash-sale@0.1.0",
            "config": { "skus": "MUG", "max-units": max_units },
            "reason": "replica test",
        }))
        .send()
        .await
        .expect("request");
    let change = json_ok(response, StatusCode::OK).await;
    change["change"]["revision"].as_i64().expect("revision")
}

/// How long until `app` serves `revision` for validation (panics after `bound`).
async fn converge(app: &TestApp, token: &str, revision: i64, bound: Duration) -> Duration {
    converge_hook(app, token, "validation", revision, bound).await
}

/// How long until `app` serves `revision` for `hook` (panics after `bound`).
async fn converge_hook(
    app: &TestApp,
    token: &str,
    hook: &str,
    revision: i64,
    bound: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        if served_revision(app, token, hook).await >= revision {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < bound,
            "replica still not serving revision {revision} after {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn replicas_lists_this_process_for_operators_only(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    app.tenant("acme").await;
    let operator = app
        .user_with_role("ops@example.com", Role::Operator, None)
        .await;
    let admin = app
        .user_with_role("boss@acme.example", Role::Admin, Some("acme"))
        .await;
    let customer = app
        .user_with_role("buyer@acme.example", Role::Customer, Some("acme"))
        .await;

    let view = replicas(&app, &operator).await;

    let list = view["replicas"].as_array().expect("replicas");
    assert_eq!(list.len(), 1, "{view}");
    assert_eq!(list[0]["id"], view["this"]);
    assert_eq!(list[0]["revision"], 0);
    assert!(list[0]["started"].is_string() && list[0]["lastHeartbeat"].is_string());
    let source = match backend {
        Backend::Sqlite => "local",
        Backend::Postgres => "redis",
    };
    assert_eq!(view["source"], source);
    for token in [&admin, &customer] {
        assert_error(
            get(&app, token, "/admin/replicas").await,
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
        )
        .await;
    }
    let anonymous = new_client()
        .get(app.url("/admin/replicas"))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_converge_by_pubsub_and_by_the_revision_check() {
    // Arrange: replicas A and B on one database and one prefix, sharing the JWT secret so
    // a token works on both. Their revision check is slow (2 s) so what is measured is
    // the announcement.
    let a = spawn_app_with(Backend::Postgres, |c| {
        c.jwt_secret = "a-test-secret-long-enough-for-production!".into();
        c.bindings_check_ms = 2_000;
    })
    .await;
    let b = spawn_second_app(&a, |_| {}).await;
    a.tenant("acme").await;
    let operator = a
        .user_with_role("ops@example.com", Role::Operator, None)
        .await;
    let admin = a
        .user_with_role("boss@acme.example", Role::Admin, Some("acme"))
        .await;
    let customer = a
        .user_with_role("buyer@acme.example", Role::Customer, Some("acme"))
        .await;
    let upload = new_client()
        .post(a.url("/admin/components?name=flash-sale&version=0.1.0"))
        .bearer_auth(&admin)
        .header("content-type", "application/wasm")
        .body(std::fs::read(Path::new(BUILD_DIR).join("flash_sale.wasm")).expect("built"))
        .send()
        .await
        .expect("request");
    json_ok(upload, StatusCode::CREATED).await;

    // Act: 20 swaps through A, each timed from the PUT's 200 to B serving it.
    let mut times = Vec::new();
    for i in 0..20 {
        let revision = swap(&a, &admin, 2 + (i % 2)).await;
        times.push(converge(&b, &admin, revision, Duration::from_secs(5)).await);
    }

    // Assert: every swap reached B (within the bound); the figures are printed.
    times.sort();
    eprintln!(
        "replica convergence by pub/sub over {} swaps: p50 {:?}, p99 {:?}, max {:?}",
        times.len(),
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        times[times.len() - 1],
    );

    // Both replicas report the latest revision in their heartbeats.
    let latest = a
        .scalar("select revision from bindings_revision where id = 1")
        .await;
    let start = Instant::now();
    let view = loop {
        let view = replicas(&a, &operator).await;
        let list = view["replicas"].as_array().expect("replicas").clone();
        if list.len() == 2 && list.iter().all(|r| r["revision"] == latest) {
            break view;
        }
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "replicas not both at revision {latest}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ids: Vec<&str> = view["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&view["this"].as_str().unwrap()));
    assert_eq!(
        view["replicas"][0]["tenants"]["acme"],
        view["replicas"][1]["tenants"]["acme"]
    );
    for token in [&admin, &customer] {
        assert_error(
            get(&b, token, "/admin/replicas").await,
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
        )
        .await;
    }

    // A replica whose subscriber never hears A (another prefix) converges through its
    // revision check alone: within the interval + 1 s.
    let check = Duration::from_millis(300);
    let c = spawn_second_app(&a, |config| {
        config.redis_prefix = format!("orderhost-test-deaf-{}", uuid::Uuid::new_v4().simple());
        config.bindings_check_ms = 300;
    })
    .await;
    let mut backstop = Vec::new();
    for i in 0..3 {
        let revision = swap(&a, &admin, 4 + i).await;
        backstop.push(converge(&c, &admin, revision, check + Duration::from_secs(1)).await);
    }
    eprintln!("replica convergence by the revision check alone ({check:?}): {backstop:?}");
    // C is not among A's replicas: it heartbeats under its own prefix.
    let view = replicas(&a, &operator).await;
    assert_eq!(view["replicas"].as_array().unwrap().len(), 2, "{view}");
    assert_eq!(
        replicas(&c, &operator).await["replicas"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_reachable_redis_changes_still_reach_every_replica() {
    // Arrange: two PostgreSQL replicas whose Redis does not answer (nothing listens there).
    let a = spawn_app_with(Backend::Postgres, |c| {
        c.jwt_secret = "a-test-secret-long-enough-for-production!".into();
        c.redis_url = "redis://127.0.0.1:1".into();
        c.bindings_check_ms = 300;
    })
    .await;
    let b = spawn_second_app(&a, |_| {}).await;
    a.tenant("acme").await;
    let operator = a
        .user_with_role("ops@example.com", Role::Operator, None)
        .await;
    let admin = a
        .user_with_role("boss@acme.example", Role::Admin, Some("acme"))
        .await;
    let upload = new_client()
        .post(a.url("/admin/components?name=flash-sale&version=0.1.0"))
        .bearer_auth(&admin)
        .header("content-type", "application/wasm")
        .body(std::fs::read(Path::new(BUILD_DIR).join("flash_sale.wasm")).expect("built"))
        .send()
        .await
        .expect("request");
    json_ok(upload, StatusCode::CREATED).await;

    // Act: a change through A (its announcement fails and is logged).
    let revision = swap(&a, &admin, 2).await;

    // Assert: B serves it through its revision check; the list falls back to this process.
    let took = converge(&b, &admin, revision, Duration::from_millis(1_300)).await;
    eprintln!("replica convergence with Redis down (300 ms check): {took:?}");
    let view = replicas(&b, &operator).await;
    assert_eq!(view["source"], "local", "{view}");
    assert_eq!(view["replicas"].as_array().unwrap().len(), 1);
}

/// Binds a pricing version for acme through `app`; the new tenant revision.
async fn bind_pricing(app: &TestApp, token: &str, body: Value) -> i64 {
    let response = new_client()
        .put(app.url("/admin/tenants/acme/bindings/pricing"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let change = json_ok(response, StatusCode::OK).await;
    change["change"]["revision"].as_i64().expect("revision")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pricing_flips_under_load_through_two_replicas_fail_nothing_and_never_mix() {
    // Arrange: replicas A and B on one database and prefix; a MUG at 12.00; two pricing
    // versions that charge 3 MUGs differently (10 % and 20 % bulk discount from 3 units).
    let a = spawn_app_with(Backend::Postgres, |c| {
        c.jwt_secret = "a-test-secret-long-enough-for-production!".into();
    })
    .await;
    let b = spawn_second_app(&a, |_| {}).await;
    a.tenant("acme").await;
    a.seed_product(Some("acme"), "MUG", 1_200, 1_000_000).await;
    let admin = a
        .user_with_role("boss@acme.example", Role::Admin, Some("acme"))
        .await;
    let buyer = a
        .user_with_role("buyer@acme.example", Role::Customer, Some("acme"))
        .await;
    let upload = new_client()
        .post(a.url("/admin/components?name=pricing-alt&version=1.0.0"))
        .bearer_auth(&admin)
        .header("content-type", "application/wasm")
        .body(std::fs::read(Path::new(BUILD_DIR).join("pricing_standard.wasm")).expect("built"))
        .send()
        .await
        .expect("request");
    json_ok(upload, StatusCode::CREATED).await;
    let versions = [
        ("pricing-standard@1.0.0", "3:1000", 3_240),
        ("pricing-alt@1.0.0", "3:2000", 2_880),
    ];
    let body = |flip: usize| {
        let (component, tiers, _) = versions[flip % 2];
        json!({
            "component": component,
            "config": { "bulk-tiers": tiers, "vip-discount-bps": "0" },
            "reason": format!("flip {flip}"),
        })
    };
    // Both replicas serve the first version before any order is sent.
    let revision = bind_pricing(&a, &admin, body(0)).await;
    converge_hook(&b, &admin, "pricing", revision, Duration::from_secs(5)).await;

    // Act: 4 clients, each alternating replicas and /order with /order/quote, bounded to
    // 1 000 requests each and 60 s; meanwhile 24 flips through A, 40 ms apart.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut clients = Vec::new();
    for i in 0..4usize {
        let urls = [a.address.clone(), b.address.clone()];
        let (token, stop) = (buyer.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let client = new_client();
            let (mut orders, mut failures, mut quotes) = (Vec::new(), Vec::new(), 0usize);
            for n in 0..1_000usize {
                if stop.load(std::sync::atomic::Ordering::Acquire) || Instant::now() > deadline {
                    break;
                }
                let url = &urls[(i + n) % 2];
                let path = if (i + n / 2) % 2 == 0 {
                    "/order"
                } else {
                    "/order/quote"
                };
                let response = client
                    .post(format!("{url}{path}"))
                    .bearer_auth(&token)
                    .json(&json!({ "lines": [{ "sku": "MUG", "quantity": 3 }] }))
                    .send()
                    .await;
                let response = match response {
                    Ok(response) => response,
                    Err(e) => {
                        failures.push(format!("{url}{path}: {e}"));
                        continue;
                    }
                };
                let status = response.status();
                let body: Value = response.json().await.unwrap_or_default();
                match (path, status) {
                    ("/order", StatusCode::ACCEPTED) => orders.push(body),
                    ("/order/quote", StatusCode::OK) => quotes += 1,
                    _ => failures.push(format!("{url}{path} {status} {body}")),
                }
            }
            (orders, failures, quotes)
        }));
    }
    let flips = 24;
    for flip in 1..=flips {
        bind_pricing(&a, &admin, body(flip)).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let (mut orders, mut failures, mut quotes) = (Vec::new(), Vec::new(), 0);
    for client in clients {
        let (o, f, q) = client.await.expect("client task");
        orders.extend(o);
        failures.extend(f);
        quotes += q;
    }

    // Assert: nothing failed; every order names exactly one of the two pricing versions
    // and was charged what that version charges; orders ran on both.
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(quotes > 0, "some quotes were answered");
    let mut seen = std::collections::HashMap::new();
    for order in &orders {
        let pricing: Vec<&Value> = order["components"]
            .as_array()
            .expect("components")
            .iter()
            .filter(|c| c["hook"] == "pricing")
            .collect();
        assert_eq!(pricing.len(), 1, "{order}");
        let component = pricing[0]["component"].as_str().expect("component");
        let (_, _, charged) = versions
            .iter()
            .find(|(name, _, _)| *name == component)
            .unwrap_or_else(|| panic!("unexpected pricing version: {order}"));
        assert_eq!(order["total"], *charged, "{order}");
        *seen.entry(component.to_owned()).or_insert(0usize) += 1;
    }
    eprintln!(
        "{} orders and {quotes} quotes across {flips} pricing flips through two replicas: {seen:?}",
        orders.len()
    );
    assert_eq!(seen.len(), 2, "orders ran on both versions: {seen:?}");
}
