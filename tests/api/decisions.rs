//! `GET /order/{id}/decision`: what decided an order, hook by hook, with the real built-in
//! components (one bound over the API with a configuration it complains about, so it
//! writes a log line), per role, and its retention.

use orderhost::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    backend_tests,
    helpers::{Backend, TestApp, assert_error, json_ok, new_client, spawn_app},
};

backend_tests!(
    a_decision_log_explains_an_order_per_role,
    decision_logs_past_retention_are_deleted
);

async fn get(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    new_client()
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn place(app: &TestApp, token: &str, stock: &str) -> String {
    let response = new_client()
        .post(app.url("/order"))
        .bearer_auth(token)
        .json(&json!({ "lines": [{ "stockId": stock, "quantity": 2 }] }))
        .send()
        .await
        .unwrap();
    json_ok(response, StatusCode::ACCEPTED).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn a_decision_log_explains_an_order_per_role(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, stock) = app.seed_product(None, "MUG", 1_000, 10).await;
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    let buyer = app
        .user_with_role("ann@example.com", Role::Customer, None)
        .await;
    let other = app
        .user_with_role("bob@example.com", Role::Customer, None)
        .await;
    app.tenant("elsewhere").await;
    // An operator whose own tenant is another one: operators see every tenant's orders.
    let operator = app
        .user_with_role("ops@example.com", Role::Operator, Some("elsewhere"))
        .await;
    let foreign_admin = app
        .user_with_role("them@example.com", Role::Admin, Some("elsewhere"))
        .await;
    // The tenant's prioritizer, bound over the API with a weight it cannot read: it logs
    // a warning and uses its default.
    let bound = new_client()
        .put(app.url("/admin/tenants/default/bindings/prioritization"))
        .bearer_auth(&admin)
        .json(&json!({
            "component": "priority-vip@1.0.0",
            "config": { "regular-weight": "lots" },
        }))
        .send()
        .await
        .unwrap();
    let bound = json_ok(bound, StatusCode::OK).await;
    let revision = bound["change"]["revision"].as_i64().unwrap();

    let order = place(&app, &buyer, &stock).await;
    let path = format!("/order/{order}/decision");

    // The tenant's admin sees everything.
    let full = json_ok(get(&app, &admin, &path).await, StatusCode::OK).await;
    assert_eq!(full["orderId"], order.as_str());
    let hooks = full["hooks"].as_array().unwrap();
    let names: Vec<&str> = hooks.iter().map(|h| h["hook"].as_str().unwrap()).collect();
    assert_eq!(names, ["validation", "pricing", "prioritization"]);
    for hook in hooks {
        assert_eq!(hook["servedBy"], "stable", "{hook}");
        assert_eq!(hook["sha256"].as_str().unwrap().len(), 64);
        assert_eq!(hook["configSha256"].as_str().unwrap().len(), 64);
        assert!(hook["fuelUsed"].as_u64().unwrap() > 0, "{hook}");
        assert!(hook["latencyUs"].as_u64().is_some());
    }
    let prioritizer = &hooks[2];
    assert_eq!(prioritizer["component"], "priority-vip@1.0.0");
    assert_eq!(prioritizer["revision"], revision);
    assert_eq!(prioritizer["config"], json!({ "regular-weight": "lots" }));
    assert_ne!(prioritizer["configSha256"], hooks[0]["configSha256"]);
    let logs = prioritizer["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1, "{prioritizer}");
    assert_eq!(logs[0]["level"], "warn");
    assert!(
        logs[0]["message"]
            .as_str()
            .unwrap()
            .contains("regular-weight"),
        "{logs:?}"
    );
    assert_eq!(full["priority"], 10, "the default after the bad value");
    assert_eq!(full["quote"]["total"], 2_000);
    assert_eq!(full["violations"], json!([]));
    // The stored order agrees with its decision.
    let shown = json_ok(
        get(&app, &buyer, &format!("/order/{order}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(shown["total"], full["quote"]["total"]);
    assert_eq!(shown["priority"], full["priority"]);

    // Operators see any tenant's.
    let by_operator = json_ok(get(&app, &operator, &path).await, StatusCode::OK).await;
    assert_eq!(by_operator["hooks"], full["hooks"]);

    // The customer sees the redacted form: hooks and the quote, nothing of the rules.
    let redacted = json_ok(get(&app, &buyer, &path).await, StatusCode::OK).await;
    assert_eq!(redacted["quote"], full["quote"]);
    assert_eq!(
        redacted["hooks"],
        json!([
            { "hook": "validation", "fellBack": false },
            { "hook": "pricing", "fellBack": false },
            { "hook": "prioritization", "fellBack": false },
        ])
    );
    for hidden in ["priority", "generation", "violations"] {
        assert!(redacted.get(hidden).is_none(), "{hidden}: {redacted}");
    }
    let text = redacted.to_string();
    for secret in ["lots", "regular-weight", "priority-vip", "sha256", "fuel"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }

    // Another customer, another tenant's admin: as if it did not exist.
    assert_error(
        get(&app, &other, &path).await,
        StatusCode::NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    .await;
    assert_error(
        get(&app, &foreign_admin, &path).await,
        StatusCode::NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    .await;
    assert_error(
        get(
            &app,
            &admin,
            "/order/00000000-0000-0000-0000-000000000000/decision",
        )
        .await,
        StatusCode::NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    .await;
}

async fn decision_logs_past_retention_are_deleted(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, stock) = app.seed_product(None, "CUP", 500, 10).await;
    app.user_with_role("boss@example.com", Role::Admin, None)
        .await;
    let buyer = app
        .user_with_role("cy@example.com", Role::Customer, None)
        .await;
    let old = place(&app, &buyer, &stock).await;
    let retention = app.state.config.decision_retention_ms();
    app.advance(retention - 1_000);
    // (Tokens expired meanwhile.)
    let buyer = app.login_as("cy@example.com", None).await.1;
    let admin = app.login_as("boss@example.com", None).await.1;
    let recent = place(&app, &buyer, &stock).await;
    app.advance(2_000);
    let now = orderhost::clock::Clock::now_ms(&app.clock);
    let swept = orderhost::orders::decision::sweep_expired(&app.state.store, now, retention)
        .await
        .unwrap();
    assert_eq!(swept, 1);
    let expired: Value = json_ok(
        get(&app, &admin, &format!("/order/{old}/decision")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(expired["error"]["code"], "DECISION_EXPIRED");
    json_ok(
        get(&app, &admin, &format!("/order/{recent}/decision")).await,
        StatusCode::OK,
    )
    .await;
    // The order itself stays.
    json_ok(
        get(&app, &buyer, &format!("/order/{old}")).await,
        StatusCode::OK,
    )
    .await;
}
