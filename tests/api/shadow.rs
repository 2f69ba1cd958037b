//! Shadow mode with real components: an A/A shadow agrees on every order, a deeper pricer
//! shows its price deltas, a trapping validator shadow is counted as candidate errors and
//! never touches an order.

use orderhost::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    backend_tests,
    helpers::{Backend, TestApp, assert_error, json_ok, new_client, spawn_app},
};

backend_tests!(shadows_run_beside_live_orders_and_report_disagreements);

async fn send(
    app: &TestApp,
    method: Method,
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

async fn upload(app: &TestApp, token: &str, file: &str, name: &str) {
    let bytes =
        std::fs::read(std::path::Path::new(orderhost::policy::registry::BUILD_DIR).join(file))
            .expect("component built");
    let uploaded = new_client()
        .post(app.url(&format!("/admin/components?name={name}&version=1.0.0")))
        .bearer_auth(token)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .unwrap();
    json_ok(uploaded, StatusCode::CREATED).await;
}

/// Waits until the hook's shadow report counts `runs` runs; returns it.
async fn report(app: &TestApp, token: &str, hook: &str, runs: u64) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let path = format!("/admin/tenants/default/bindings/{hook}/shadow");
        let report = json_ok(
            send(app, Method::GET, &path, token, None).await,
            StatusCode::OK,
        )
        .await;
        if report["runs"].as_u64() == Some(runs) {
            return report;
        }
        assert!(std::time::Instant::now() < deadline, "{report}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn shadows_run_beside_live_orders_and_report_disagreements(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, stock) = app.seed_product(None, "TEA", 1_000, 10_000).await;
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    let buyer = app
        .user_with_role("cy@example.com", Role::Customer, None)
        .await;
    upload(&app, &admin, "pricing_deeper.wasm", "pricing-deeper").await;
    upload(&app, &admin, "trap_some_skus.wasm", "trap-some-skus").await;
    for (hook, component) in [
        ("pricing", "pricing-standard@1.0.0"),
        ("validation", "validation-standard@1.0.0"),
    ] {
        let path = format!("/admin/tenants/default/bindings/{hook}");
        let body = json!({ "component": component });
        json_ok(
            send(&app, Method::PUT, &path, &admin, Some(body)).await,
            StatusCode::OK,
        )
        .await;
    }
    let pricing = "/admin/tenants/default/bindings/pricing";
    let validation = "/admin/tenants/default/bindings/validation";
    assert_error(
        send(
            &app,
            Method::GET,
            &format!("{pricing}/shadow"),
            &admin,
            None,
        )
        .await,
        StatusCode::CONFLICT,
        "NO_SHADOW",
    )
    .await;
    let place = |n: usize| {
        let (app, buyer, stock) = (&app, &buyer, &stock);
        async move {
            let mut totals = Vec::new();
            for _ in 0..n {
                let order = json_ok(
                    send(
                        app,
                        Method::POST,
                        "/order",
                        buyer,
                        Some(json!({ "lines": [{ "stockId": stock, "quantity": 2 }] })),
                    )
                    .await,
                    StatusCode::ACCEPTED,
                )
                .await;
                for component in order["components"].as_array().unwrap() {
                    assert_eq!(component["servedBy"], "stable", "{order}");
                }
                totals.push(order["total"].as_i64().unwrap());
            }
            totals
        }
    };

    // A/A: the stable pricer as its own shadow disagrees on nothing.
    let aa = json!({ "shadow": { "component": "pricing-standard@1.0.0", "percent": 100 } });
    let set = json_ok(
        send(&app, Method::PATCH, pricing, &admin, Some(aa)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(set["change"]["action"], "shadow");
    assert_eq!(set["change"]["shadow"]["percent"], 100.0);
    assert_eq!(place(8).await, [2_000; 8]);
    let aa = report(&app, &admin, "pricing", 8).await;
    assert_eq!(aa["agreements"], 8, "{aa}");
    assert_eq!(aa["disagreements"], json!({}), "{aa}");

    // 10 % deeper: every order would have cost 1 800 instead of 2 000.
    let deeper = json!({ "shadow": { "component": "pricing-deeper@1.0.0", "percent": 100 } });
    json_ok(
        send(&app, Method::PATCH, pricing, &admin, Some(deeper)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        place(5).await,
        [2_000; 5],
        "the shadow never prices an order"
    );
    let deltas = report(&app, &admin, "pricing", 5).await;
    assert_eq!(deltas["candidate"], "pricing-deeper@1.0.0");
    assert_eq!(
        deltas["disagreements"],
        json!({ "priceDelta": 5 }),
        "{deltas}"
    );
    assert_eq!(deltas["rates"]["priceDelta"], 100.0);
    let example = &deltas["examples"]["priceDelta"][0];
    assert_eq!(example["actual"], "2000 EUR");
    assert_eq!(example["candidate"], "1800 EUR (delta -200)");

    // A validator shadow that traps on TEA: counted, and the orders go through untouched.
    let trap = json!({ "shadow": {
        "component": "trap-some-skus@1.0.0", "config": { "skus": "TEA" }, "percent": 100,
    } });
    json_ok(
        send(&app, Method::PATCH, validation, &admin, Some(trap)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(place(4).await, [1_800 + 200; 4]);
    let errors = report(&app, &admin, "validation", 4).await;
    assert_eq!(
        errors["disagreements"],
        json!({ "candidateError": 4 }),
        "{errors}"
    );
    assert!(
        errors["examples"]["candidateError"][0]["candidate"]
            .as_str()
            .unwrap()
            .starts_with("Trap"),
        "{errors}"
    );

    // 0 % stops it; a customer cannot read the report.
    let off = json!({ "shadow": { "percent": 0 } });
    json_ok(
        send(&app, Method::PATCH, validation, &admin, Some(off)).await,
        StatusCode::OK,
    )
    .await;
    place(3).await;
    let after = report(&app, &admin, "validation", 0).await;
    assert_eq!(after["candidate"], "trap-some-skus@1.0.0");
    assert_error(
        send(
            &app,
            Method::GET,
            &format!("{validation}/shadow"),
            &buyer,
            None,
        )
        .await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
}
