//! A sticky canary on a real binding: set, ramp up and down, promote, roll back — each
//! order records which version served its hooks and why, and a customer stays on one
//! version while the share moves.

use orderhost::{auth::Role, policy::runtime::canary_bucket};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    backend_tests,
    helpers::{Backend, TestApp, assert_error, json_ok, new_client, spawn_app},
};

backend_tests!(
    a_sticky_canary_ramps_promotes_and_rolls_back,
    a_failing_canary_is_rolled_back_by_itself
);

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let request = new_client()
        .request(method, app.url(path))
        .bearer_auth(token);
    match body {
        Some(body) => request.json(&body),
        None => request,
    }
    .send()
    .await
    .unwrap()
}

const BINDING: &str = "/admin/tenants/default/bindings/prioritization";

async fn patch(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    send(app, reqwest::Method::PATCH, BINDING, token, Some(body)).await
}

/// Places one order of one unit of `stock`.
async fn place(app: &TestApp, token: &str, stock: &str) -> Value {
    json_ok(
        send(
            app,
            reqwest::Method::POST,
            "/order",
            token,
            Some(json!({ "lines": [{ "stockId": stock, "quantity": 1 }] })),
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await
}

/// Why `hook` was served as it was, from an order's `components`.
fn served_by(order: &Value, hook: &str) -> String {
    order["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["hook"] == hook)
        .unwrap()["servedBy"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Places one order for each customer; returns (priority, servedBy of prioritization).
async fn order_all(
    app: &TestApp,
    customers: &[(String, String)],
    stock: &str,
) -> Vec<(i64, String)> {
    let mut seen = Vec::new();
    for (token, _) in customers {
        let order = place(app, token, stock).await;
        seen.push((
            order["priority"].as_i64().unwrap(),
            served_by(&order, "prioritization"),
        ));
    }
    seen
}

async fn a_sticky_canary_ramps_promotes_and_rolls_back(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, stock) = app.seed_product(None, "TEA", 300, 10_000).await;
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    // Customers and their sticky buckets (computed by the same public function the
    // service uses; the split itself is tested over 10 000 ids in the unit tests).
    let mut customers = Vec::new();
    for i in 0..24 {
        let token = app
            .user_with_role(&format!("c{i}@example.com"), Role::Customer, None)
            .await;
        let profile = json_ok(
            send(&app, reqwest::Method::GET, "/auth/profile", &token, None).await,
            StatusCode::OK,
        )
        .await;
        customers.push((token, profile["id"].as_str().unwrap().to_owned()));
    }
    let in_canary = |permille: u16| -> Vec<bool> {
        customers
            .iter()
            .map(|(_, id)| canary_bucket("default", id) < permille)
            .collect()
    };
    let expect = |permille: u16| -> Vec<(i64, String)> {
        in_canary(permille)
            .into_iter()
            .map(|canary| {
                if canary {
                    (50, "canary".to_owned())
                } else {
                    (10, "stable".to_owned())
                }
            })
            .collect()
    };
    assert!(
        in_canary(500).contains(&true) && in_canary(500).contains(&false),
        "the customers fall on both sides"
    );

    // No database binding yet: nothing to roll out beside.
    let none = patch(
        &app,
        &admin,
        json!({ "canary": { "component": "priority-vip@1.0.0", "percent": 10 } }),
    )
    .await;
    assert_error(none, StatusCode::CONFLICT, "NO_DATABASE_BINDING").await;
    let stable = send(
        &app,
        reqwest::Method::PUT,
        BINDING,
        &admin,
        Some(json!({ "component": "priority-vip@1.0.0", "config": { "regular-weight": "10" } })),
    )
    .await;
    json_ok(stable, StatusCode::OK).await;
    assert_error(
        patch(&app, &admin, json!({ "canary": { "percent": 10 } })).await,
        StatusCode::CONFLICT,
        "NO_CANARY",
    )
    .await;
    assert_error(
        patch(
            &app,
            &admin,
            json!({ "canary": { "component": "priority-vip@1.0.0", "percent": 12.34 } }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_error(
        patch(
            &app,
            &customers[0].0,
            json!({ "canary": { "percent": 10 } }),
        )
        .await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;

    // The candidate: the same prioritizer weighing regular customers 50.
    let set = json_ok(
        patch(
            &app,
            &admin,
            json!({
                "canary": { "component": "priority-vip@1.0.0", "config": { "regular-weight": "50" }, "percent": 30 },
                "reason": "try heavier regulars",
            }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(set["change"]["action"], "canary");
    assert_eq!(set["change"]["canary"]["percent"], 30.0);
    assert_eq!(set["change"]["component"], "priority-vip@1.0.0");
    let shown = json_ok(
        send(
            &app,
            reqwest::Method::GET,
            "/admin/tenants/default/bindings",
            &admin,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let prioritization = shown["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["hook"] == "prioritization")
        .unwrap()
        .clone();
    assert_eq!(prioritization["config"], json!({ "regular-weight": "10" }));
    assert_eq!(
        prioritization["canary"]["config"],
        json!({ "regular-weight": "50" })
    );
    assert_eq!(prioritization["canary"]["percent"], 30.0);

    let at_30 = order_all(&app, &customers, &stock).await;
    assert_eq!(at_30, expect(300));
    // Ramp down to 10 %, then back to 30 %: each customer is where its bucket says, so
    // nobody flips back and forth.
    let ramp = json_ok(
        patch(&app, &admin, json!({ "canary": { "percent": 10 } })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        ramp["change"]["canary"]["config"],
        json!({ "regular-weight": "50" })
    );
    let at_10 = order_all(&app, &customers, &stock).await;
    assert_eq!(at_10, expect(100));
    for (low, high) in at_10.iter().zip(&at_30) {
        if low.1 == "canary" {
            assert_eq!(high.1, "canary", "a 10 % customer is a 30 % customer");
        }
    }
    json_ok(
        patch(&app, &admin, json!({ "canary": { "percent": 30 } })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(order_all(&app, &customers, &stock).await, at_30);

    // The decision log says why, per hook.
    let last = json_ok(
        send(
            &app,
            reqwest::Method::GET,
            "/order?perPage=1",
            &customers[0].0,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let id = last["items"][0]["id"].as_str().unwrap();
    let decision = json_ok(
        send(
            &app,
            reqwest::Method::GET,
            &format!("/order/{id}/decision"),
            &admin,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(decision["hooks"][2]["servedBy"], at_30[0].1.as_str());

    // Promote: the candidate (with its config) is stable for everyone, the canary ends.
    let promoted = json_ok(
        send(
            &app,
            reqwest::Method::POST,
            &format!("{BINDING}/promote"),
            &admin,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(promoted["change"]["action"], "promote");
    assert_eq!(
        promoted["change"]["config"],
        json!({ "regular-weight": "50" })
    );
    assert!(promoted["change"].get("canary").is_none(), "{promoted}");
    let after = order_all(&app, &customers, &stock).await;
    assert!(
        after.iter().all(|s| *s == (50, "stable".to_owned())),
        "{after:?}"
    );
    assert_error(
        send(
            &app,
            reqwest::Method::POST,
            &format!("{BINDING}/promote"),
            &admin,
            None,
        )
        .await,
        StatusCode::CONFLICT,
        "NO_CANARY",
    )
    .await;

    // Rolling the promotion back restores the canary at 30 %.
    let back = json_ok(
        send(
            &app,
            reqwest::Method::POST,
            &format!("{BINDING}/rollback"),
            &admin,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(back["change"]["canary"]["percent"], 30.0);
    assert_eq!(order_all(&app, &customers, &stock).await, at_30);

    // Every step is in the history, newest first.
    let history = json_ok(
        send(
            &app,
            reqwest::Method::GET,
            "/admin/tenants/default/bindings/history",
            &admin,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let actions: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["rollback", "promote", "canary", "canary", "canary", "bind"]
    );
}

/// The candidate starts failing (it traps on the SKU everyone buys): once it has enough
/// calls, the guard takes the canary to 0 % by itself — orders kept being served by the
/// fallback meanwhile — and an audited `auto-rollback` revision says why.
async fn a_failing_canary_is_rolled_back_by_itself(backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, |c| {
        c.canary.min_calls = 5;
        // The breaker stays out of it: this is about the canary.
        c.breaker.min_calls = 10_000;
    })
    .await;
    let (_, stock) = app.seed_product(None, "TEA", 300, 10_000).await;
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    let buyer = app
        .user_with_role("cy@example.com", Role::Customer, None)
        .await;
    let bytes = std::fs::read(
        std::path::Path::new(orderhost::policy::registry::BUILD_DIR).join("trap_some_skus.wasm"),
    )
    .expect("trap_some_skus.wasm built");
    let uploaded = new_client()
        .post(app.url("/admin/components?name=trap-some-skus&version=1.0.0"))
        .bearer_auth(&admin)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .unwrap();
    json_ok(uploaded, StatusCode::CREATED).await;
    let validation = "/admin/tenants/default/bindings/validation";
    json_ok(
        send(
            &app,
            reqwest::Method::PUT,
            validation,
            &admin,
            Some(json!({ "component": "validation-standard@1.0.0", "onError": "fallback" })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    json_ok(
        send(
            &app,
            reqwest::Method::PATCH,
            validation,
            &admin,
            Some(json!({ "canary": {
                "component": "trap-some-skus@1.0.0",
                "config": { "skus": "TEA" },
                "percent": 100,
            } })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let order = |n: usize| {
        let (app, buyer, stock) = (&app, &buyer, &stock);
        async move {
            let mut served = Vec::new();
            for _ in 0..n {
                served.push(served_by(&place(app, buyer, stock).await, "validation"));
            }
            served
        }
    };
    // Every order is accepted: the candidate traps, the built-in answers.
    assert_eq!(order(5).await, ["fallback"; 5]);
    // The fifth failure rolled it back here at once, and durably soon after.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let entry = loop {
        let history = json_ok(
            send(
                &app,
                reqwest::Method::GET,
                "/admin/tenants/default/bindings/history?hook=validation",
                &admin,
                None,
            )
            .await,
            StatusCode::OK,
        )
        .await;
        let newest = history["items"][0].clone();
        if newest["action"] == "auto-rollback" {
            break newest;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no auto-rollback: {history}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(entry["by"], "system");
    assert_eq!(entry["canary"]["percent"], 0.0);
    assert_eq!(entry["canary"]["component"], "trap-some-skus@1.0.0");
    assert_eq!(entry["component"], "validation-standard@1.0.0");
    let reason = entry["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("automatic:") && reason.contains("100.0 %"),
        "{reason}"
    );
    // From now on the stable binding serves everyone.
    assert_eq!(order(3).await, ["stable"; 3]);
}
