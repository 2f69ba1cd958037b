//! The per-binding breaker over HTTP with a real failing component: `trap-some-skus`
//! bound to the validation hook traps on the SKU its config lists (BOOM) and accepts the
//! others (MUG), so one binding can fail, open its breaker, and recover through its
//! probes. The app's manual clock moves the breaker through its cool-down; nothing
//! sleeps. Breakers here trip after 4 calls with half of them failed, stay open 5 s and
//! close after 2 probe successes.

use std::path::Path;

use orderhost::{auth::Role, policy::registry::BUILD_DIR};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::{
    backend_tests,
    helpers::{Backend, TestApp, assert_error, json_ok, new_client, spawn_app_with},
};

backend_tests!(
    a_failing_binding_opens_its_breaker_and_probes_close_it,
    a_rejecting_binding_answers_503_at_once_while_open,
    breakers_are_listed_per_tenant_for_its_admins_and_operators,
);

const OPEN_MS: i64 = 5_000;

async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(backend, |config| {
        config.breaker.min_calls = 4;
        config.breaker.failure_ratio = 50;
        config.breaker.window_ms = 10_000;
        config.breaker.open_ms = OPEN_MS as u64;
        config.breaker.probes = 2;
    })
    .await
}

async fn send(request: reqwest::RequestBuilder) -> Response {
    request.send().await.expect("request")
}

/// Uploads `trap-some-skus` as the default tenant's own component and binds it to
/// validation, trapping on BOOM, with `on_error`.
async fn bind_trapper(app: &TestApp, admin: &str, on_error: &str) {
    let bytes = std::fs::read(Path::new(BUILD_DIR).join("trap_some_skus.wasm"))
        .expect("trap_some_skus.wasm built");
    let uploaded = send(
        new_client()
            .post(app.url("/admin/components?name=trap-some-skus&version=1.0.0"))
            .bearer_auth(admin)
            .header("content-type", "application/wasm")
            .body(bytes),
    )
    .await;
    json_ok(uploaded, StatusCode::CREATED).await;
    let bound = send(
        new_client()
            .put(app.url("/admin/tenants/default/bindings/validation"))
            .bearer_auth(admin)
            .json(&json!({
                "component": "trap-some-skus@1.0.0",
                "config": { "skus": "BOOM" },
                "onError": on_error,
            })),
    )
    .await;
    json_ok(bound, StatusCode::OK).await;
}

async fn order(app: &TestApp, token: &str, sku: &str) -> Response {
    send(
        new_client()
            .post(app.url("/order"))
            .bearer_auth(token)
            .json(&json!({ "lines": [{ "sku": sku, "quantity": 1 }] })),
    )
    .await
}

/// Places an order that must be accepted; the validation hook of its decision log.
async fn accepted(app: &TestApp, buyer: &str, admin: &str, sku: &str) -> Value {
    let placed = json_ok(order(app, buyer, sku).await, StatusCode::ACCEPTED).await;
    let id = placed["id"].as_str().expect("order id");
    let decision = json_ok(
        send(
            new_client()
                .get(app.url(&format!("/order/{id}/decision")))
                .bearer_auth(admin),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    decision["hooks"]
        .as_array()
        .expect("hooks")
        .iter()
        .find(|h| h["hook"] == "validation")
        .cloned()
        .expect("validation decided")
}

async fn breakers(app: &TestApp, token: &str, tenant: &str) -> Response {
    send(
        new_client()
            .get(app.url(&format!("/admin/tenants/{tenant}/breakers")))
            .bearer_auth(token),
    )
    .await
}

/// The validation breaker of the default tenant.
async fn validation_breaker(app: &TestApp, token: &str) -> Value {
    let view = json_ok(breakers(app, token, "default").await, StatusCode::OK).await;
    view["breakers"]
        .as_array()
        .expect("breakers")
        .iter()
        .find(|b| b["hook"] == "validation")
        .cloned()
        .expect("validation listed")
}

async fn cast(app: &TestApp) -> (String, String) {
    app.seed_product(None, "MUG", 1_000, 1_000).await;
    app.seed_product(None, "BOOM", 1_000, 1_000).await;
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    let buyer = app
        .user_with_role("ann@example.com", Role::Customer, None)
        .await;
    (admin, buyer)
}

async fn a_failing_binding_opens_its_breaker_and_probes_close_it(backend: Backend) {
    let app = spawn(backend).await;
    let (admin, buyer) = cast(&app).await;
    bind_trapper(&app, &admin, "fallback").await;

    // Closed: the component runs, traps, and the built-in answers each order.
    for n in 1..=4 {
        let hook = accepted(&app, &buyer, &admin, "BOOM").await;
        assert_eq!(hook["servedBy"], "fallback", "order {n}: {hook}");
        assert_eq!(hook["fault"]["kind"], "Trap", "order {n}: {hook}");
        assert_eq!(hook["component"], "validation-standard@1.0.0");
    }
    // The fourth failure in four calls opened it.
    let open = validation_breaker(&app, &admin).await;
    assert_eq!(open["state"], "open", "{open}");
    assert_eq!(open["component"], "trap-some-skus@1.0.0");
    assert_eq!(open["onError"], "fallback");
    assert_eq!(
        (
            open["windowCalls"].as_u64(),
            open["windowFailures"].as_u64()
        ),
        (Some(4), Some(4))
    );
    assert_eq!(open["timesOpened"], 1);
    assert_eq!(open["lastFault"]["kind"], "Trap");
    assert!(open["probesAt"].is_string(), "{open}");

    // Open: even an order the component would accept is answered by the built-in, and
    // the component is not called (its window does not move).
    for sku in ["MUG", "BOOM", "MUG"] {
        let hook = accepted(&app, &buyer, &admin, sku).await;
        assert_eq!(hook["servedBy"], "breaker-open", "{hook}");
        assert_eq!(hook["fault"]["kind"], "BreakerOpen", "{hook}");
        assert_eq!(hook["component"], "validation-standard@1.0.0");
    }
    let still = validation_breaker(&app, &admin).await;
    assert_eq!(still["state"], "open");
    assert_eq!(
        (
            still["windowCalls"].as_u64(),
            still["windowFailures"].as_u64()
        ),
        (Some(4), Some(4))
    );

    // After the cool-down it probes: two successful probes close it.
    app.advance(OPEN_MS - 1);
    assert_eq!(validation_breaker(&app, &admin).await["state"], "open");
    app.advance(1);
    assert_eq!(validation_breaker(&app, &admin).await["state"], "half-open");
    let probe = accepted(&app, &buyer, &admin, "MUG").await;
    assert_eq!(probe["servedBy"], "stable", "{probe}");
    assert_eq!(probe["component"], "trap-some-skus@1.0.0");
    let half = validation_breaker(&app, &admin).await;
    assert_eq!(half["state"], "half-open");
    assert_eq!(half["probeSuccesses"], 1);
    accepted(&app, &buyer, &admin, "MUG").await;
    let closed = validation_breaker(&app, &admin).await;
    assert_eq!(closed["state"], "closed", "{closed}");
    // A closed breaker starts from an empty window.
    assert_eq!(
        (
            closed["windowCalls"].as_u64(),
            closed["windowFailures"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(closed["timesOpened"], 1);
    let hook = accepted(&app, &buyer, &admin, "MUG").await;
    assert_eq!(hook["servedBy"], "stable");

    // Failing again opens it again (1 success + 3 failures: 75 % of 4 calls) …
    for _ in 0..3 {
        assert_eq!(
            accepted(&app, &buyer, &admin, "BOOM").await["servedBy"],
            "fallback"
        );
    }
    assert_eq!(validation_breaker(&app, &admin).await["state"], "open");
    // … and a failed probe re-opens it for another cool-down.
    app.advance(OPEN_MS);
    let probe = accepted(&app, &buyer, &admin, "BOOM").await;
    assert_eq!(
        probe["servedBy"], "fallback",
        "the probe ran and trapped: {probe}"
    );
    assert_eq!(probe["fault"]["kind"], "Trap");
    let reopened = validation_breaker(&app, &admin).await;
    assert_eq!(reopened["state"], "open", "{reopened}");
    assert_eq!(reopened["timesOpened"], 3);
    let hook = accepted(&app, &buyer, &admin, "MUG").await;
    assert_eq!(hook["servedBy"], "breaker-open");

    // The state is also in the metrics (2 = open).
    let metrics = send(new_client().get(app.url("/metrics")))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("orderhost_breaker_state{")
                && l.contains("component=\"trap-some-skus@1.0.0\"")),
        "no breaker gauge in the metrics"
    );
    assert!(metrics.contains("orderhost_breaker_transitions_total{"));
}

async fn a_rejecting_binding_answers_503_at_once_while_open(backend: Backend) {
    let app = spawn(backend).await;
    let (admin, buyer) = cast(&app).await;
    bind_trapper(&app, &admin, "reject").await;

    for _ in 0..4 {
        let refused = assert_error(
            order(&app, &buyer, "BOOM").await,
            StatusCode::SERVICE_UNAVAILABLE,
            "POLICY_UNAVAILABLE",
        )
        .await;
        assert_eq!(refused["error"]["details"]["kind"], "Trap");
    }
    // Open: refused without calling the component, whatever the order.
    let refused = assert_error(
        order(&app, &buyer, "MUG").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "POLICY_UNAVAILABLE",
    )
    .await;
    assert_eq!(refused["error"]["details"]["kind"], "BreakerOpen");
    assert_eq!(
        refused["error"]["details"]["component"],
        "trap-some-skus@1.0.0"
    );
    assert_eq!(refused["error"]["details"]["hook"], "validation");
    // The evaluation tool goes through the same breaker.
    let evaluated = send(
        new_client()
            .post(app.url("/admin/policy/evaluate"))
            .bearer_auth(&admin)
            .json(&json!({
                "customer": { "id": "c1", "vip": false, "tags": [], "orderCount": 0, "accountAgeDays": 1 },
                "lines": [{ "productId": "p", "stockId": "s", "sku": "MUG", "quantity": 1,
                            "unitPrice": 100, "currency": "EUR", "available": 10 }],
            })),
    )
    .await;
    let refused = assert_error(
        evaluated,
        StatusCode::SERVICE_UNAVAILABLE,
        "POLICY_UNAVAILABLE",
    )
    .await;
    assert_eq!(refused["error"]["details"]["kind"], "BreakerOpen");
    let open = validation_breaker(&app, &admin).await;
    assert_eq!(open["state"], "open");
    assert_eq!(open["onError"], "reject");
    assert_eq!(open["windowCalls"], 4);

    // After the cool-down, the probes run the component again and close it.
    app.advance(OPEN_MS);
    for _ in 0..2 {
        let placed = json_ok(order(&app, &buyer, "MUG").await, StatusCode::ACCEPTED).await;
        let validation = placed["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["hook"] == "validation")
            .cloned()
            .unwrap();
        assert_eq!(validation["component"], "trap-some-skus@1.0.0");
    }
    assert_eq!(validation_breaker(&app, &admin).await["state"], "closed");
}

async fn breakers_are_listed_per_tenant_for_its_admins_and_operators(backend: Backend) {
    let app = spawn(backend).await;
    app.tenant("beta").await;
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    let beta_admin = app
        .user_with_role("boss@beta.example", Role::Admin, Some("beta"))
        .await;
    let operator = app
        .user_with_role("ops@example.com", Role::Operator, Some("beta"))
        .await;
    let buyer = app
        .user_with_role("ann@example.com", Role::Customer, None)
        .await;

    // Nothing called yet: every hook's built-in, closed, with the settings.
    let view = json_ok(breakers(&app, &admin, "default").await, StatusCode::OK).await;
    assert_eq!(view["tenant"], "default");
    assert!(view["replica"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(
        view["settings"],
        json!({ "windowMs": 10_000, "minCalls": 4, "failureRatioPercent": 50,
                "openMs": 5_000, "probes": 2 })
    );
    let hooks: Vec<(&str, &str, &str)> = view["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["hook"].as_str().unwrap(),
                b["component"].as_str().unwrap(),
                b["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hooks,
        [
            ("validation", "validation-standard@1.0.0", "closed"),
            ("pricing", "pricing-standard@1.0.0", "closed"),
            ("prioritization", "priority-vip@1.0.0", "closed"),
        ]
    );

    // Operators see any tenant; an admin only its own; customers none.
    let theirs = json_ok(breakers(&app, &operator, "default").await, StatusCode::OK).await;
    assert_eq!(theirs["tenant"], "default");
    json_ok(breakers(&app, &beta_admin, "beta").await, StatusCode::OK).await;
    assert_eq!(
        breakers(&app, &beta_admin, "default").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        breakers(&app, &buyer, "default").await.status(),
        StatusCode::FORBIDDEN
    );
    let anonymous = send(new_client().get(app.url("/admin/tenants/default/breakers"))).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}
