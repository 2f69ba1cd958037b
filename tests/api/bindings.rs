//! Tenant bindings over HTTP with real components: a tenant admin uploads flash-sale,
//! binds it for its own validation hook, orders of that tenant get the rule and another
//! tenant's do not, rollbacks (previous or any revision) and the history; permissions;
//! every refusal, which stores and publishes nothing; and swaps while orders are in
//! flight, which fail no request and never mix bindings within an order.

use std::{collections::HashMap, path::Path};

use orderhost::{auth::Role, policy::registry::BUILD_DIR};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::{
    backend_tests,
    helpers::{Backend, TestApp, assert_error, json_ok, new_client, spawn_app, spawn_app_with},
};

backend_tests!(
    a_tenant_binds_its_own_rule_and_rolls_it_back,
    rollback_restores_any_revision_and_history_tells_every_step,
    only_operators_and_the_tenants_admins_bind,
    refused_bindings_store_and_publish_nothing,
    swaps_under_concurrent_orders_fail_nothing_and_never_mix,
    operators_cap_the_limits_a_tenant_may_bind,
);

fn flash_sale() -> Vec<u8> {
    std::fs::read(Path::new(BUILD_DIR).join("flash_sale.wasm")).expect("flash_sale.wasm built")
}

/// Tenants `acme` and `beta` with a MUG in each; an operator, an admin and a customer of
/// each.
struct Cast {
    operator: String,
    acme: String,
    beta: String,
    acme_buyer: String,
    beta_buyer: String,
}

async fn cast(app: &TestApp) -> Cast {
    app.tenant("acme").await;
    app.tenant("beta").await;
    app.seed_product(Some("acme"), "MUG", 1_200, 100_000).await;
    app.seed_product(Some("beta"), "MUG", 1_200, 100_000).await;
    Cast {
        operator: app
            .user_with_role("ops@example.com", Role::Operator, None)
            .await,
        acme: app
            .user_with_role("boss@acme.example", Role::Admin, Some("acme"))
            .await,
        beta: app
            .user_with_role("boss@beta.example", Role::Admin, Some("beta"))
            .await,
        acme_buyer: app
            .user_with_role("buyer@acme.example", Role::Customer, Some("acme"))
            .await,
        beta_buyer: app
            .user_with_role("buyer@beta.example", Role::Customer, Some("beta"))
            .await,
    }
}

async fn upload(app: &TestApp, token: &str, name: &str, version: &str) {
    let response = new_client()
        .post(app.url(&format!("/admin/components?name={name}&version={version}")))
        .bearer_auth(token)
        .header("content-type", "application/wasm")
        .body(flash_sale())
        .send()
        .await
        .expect("request");
    json_ok(response, StatusCode::CREATED).await;
}

async fn put_binding(
    app: &TestApp,
    token: &str,
    tenant: &str,
    hook: &str,
    body: Value,
) -> Response {
    new_client()
        .put(app.url(&format!("/admin/tenants/{tenant}/bindings/{hook}")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn bound(app: &TestApp, token: &str, tenant: &str, hook: &str, body: Value) -> Value {
    json_ok(
        put_binding(app, token, tenant, hook, body).await,
        StatusCode::OK,
    )
    .await
}

async fn rollback(app: &TestApp, token: &str, tenant: &str, body: Option<Value>) -> Response {
    let request = new_client()
        .post(app.url(&format!(
            "/admin/tenants/{tenant}/bindings/validation/rollback"
        )))
        .bearer_auth(token);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    request.send().await.expect("request")
}

async fn get(app: &TestApp, token: &str, path: &str) -> Response {
    new_client()
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

async fn get_ok(app: &TestApp, token: &str, path: &str) -> Value {
    json_ok(get(app, token, path).await, StatusCode::OK).await
}

/// The effective binding of `hook` in `GET …/bindings`.
async fn effective(app: &TestApp, token: &str, tenant: &str, hook: &str) -> Value {
    let view = get_ok(app, token, &format!("/admin/tenants/{tenant}/bindings")).await;
    view["bindings"]
        .as_array()
        .expect("bindings")
        .iter()
        .find(|b| b["hook"] == hook)
        .cloned()
        .expect("hook listed")
}

async fn order(app: &TestApp, token: &str, quantity: u32) -> Response {
    new_client()
        .post(app.url("/order"))
        .bearer_auth(token)
        .json(&json!({ "lines": [{ "sku": "MUG", "quantity": quantity }] }))
        .send()
        .await
        .expect("request")
}

/// The validation component (and revision) an accepted order records.
fn validation_of(order: &Value) -> (String, Option<i64>) {
    let hook = order["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["hook"] == "validation")
        .expect("validation recorded");
    (
        hook["component"].as_str().unwrap().to_owned(),
        hook["revision"].as_i64(),
    )
}

fn sale(max_units: u32, reason: &str) -> Value {
    json!({
        "component": "flash-sale@0.1.0",
        "config": { "skus": "MUG", "max-units": max_units },
        "reason": reason,
    })
}

async fn a_tenant_binds_its_own_rule_and_rolls_it_back(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = cast(&app).await;
    upload(&app, &who.acme, "flash-sale", "0.1.0").await;
    let before = effective(&app, &who.acme, "acme", "validation").await;
    assert_eq!(before["source"], "built-in");
    assert_eq!(before["component"], "validation-standard@1.0.0");

    let change = bound(
        &app,
        &who.acme,
        "acme",
        "validation",
        sale(2, "Black Friday"),
    )
    .await;
    assert_eq!(change["change"]["revision"], 1);
    assert_eq!(change["change"]["component"], "flash-sale@0.1.0");
    assert_eq!(change["change"]["config"]["max-units"], "2");
    assert_eq!(change["change"]["fromRevision"], Value::Null);

    let now = effective(&app, &who.acme, "acme", "validation").await;
    assert_eq!(now["source"], "database");
    assert_eq!(now["revision"], 1);
    assert_eq!(now["component"], "flash-sale@0.1.0");
    assert_eq!(
        effective(&app, &who.acme, "acme", "pricing").await["source"],
        "built-in"
    );
    assert_eq!(
        effective(&app, &who.beta, "beta", "validation").await["source"],
        "built-in"
    );

    // acme's orders get the rule; beta's do not.
    let refused = assert_error(
        order(&app, &who.acme_buyer, 3).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "ORDER_REJECTED",
    )
    .await;
    assert_eq!(
        refused["error"]["details"]["violations"][0]["code"],
        "FLASH_SALE_LIMIT"
    );
    let small = json_ok(order(&app, &who.acme_buyer, 2).await, StatusCode::ACCEPTED).await;
    assert_eq!(
        validation_of(&small),
        ("flash-sale@0.1.0".to_owned(), Some(1))
    );
    let other = json_ok(order(&app, &who.beta_buyer, 3).await, StatusCode::ACCEPTED).await;
    assert_eq!(
        validation_of(&other),
        ("validation-standard@1.0.0".to_owned(), None)
    );

    // Rolling back the first binding hands the hook back to the built-in.
    let back = json_ok(
        rollback(
            &app,
            &who.acme,
            "acme",
            Some(json!({ "reason": "customers complain" })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(back["change"]["revision"], 2);
    assert_eq!(back["change"]["action"], "rollback");
    assert_eq!(back["change"]["component"], Value::Null);
    assert_eq!(back["change"]["fromRevision"], 1);
    assert_eq!(
        effective(&app, &who.acme, "acme", "validation").await["source"],
        "built-in"
    );
    let passes = json_ok(order(&app, &who.acme_buyer, 3).await, StatusCode::ACCEPTED).await;
    assert_eq!(validation_of(&passes).0, "validation-standard@1.0.0");
    // Nothing left to roll back.
    assert_error(
        rollback(&app, &who.acme, "acme", None).await,
        StatusCode::CONFLICT,
        "NO_PREVIOUS_REVISION",
    )
    .await;

    let history = get_ok(&app, &who.acme, "/admin/tenants/acme/bindings/history").await;
    assert_eq!(history["total"], 2);
    let items = history["items"].as_array().unwrap();
    assert_eq!(items[0]["revision"], 2);
    assert_eq!(items[0]["byEmail"], "boss@acme.example");
    assert_eq!(items[0]["reason"], "customers complain");
    assert_eq!(items[1]["revision"], 1);
    assert_eq!(items[1]["action"], "bind");
    assert_eq!(items[1]["reason"], "Black Friday");
    assert_eq!(items[1]["sha256"].as_str().unwrap().len(), 64);
    assert!(items[1]["at"].is_string());
    // The component is bound no more: it can be deleted.
    let deleted = new_client()
        .delete(app.url("/admin/components/flash-sale/0.1.0"))
        .bearer_auth(&who.acme)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
}

async fn rollback_restores_any_revision_and_history_tells_every_step(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = cast(&app).await;
    upload(&app, &who.operator, "flash-sale", "0.1.0").await;
    for (max, reason) in [(2, "two"), (5, "five"), (10, "ten")] {
        bound(&app, &who.operator, "acme", "validation", sale(max, reason)).await;
    }
    // A bound component cannot be deleted while a database binding uses it.
    let in_use = new_client()
        .delete(app.url("/admin/components/flash-sale/0.1.0"))
        .bearer_auth(&who.operator)
        .send()
        .await
        .unwrap();
    assert_error(in_use, StatusCode::CONFLICT, "COMPONENT_IN_USE").await;
    json_ok(order(&app, &who.acme_buyer, 6).await, StatusCode::ACCEPTED).await;

    let to_one = json_ok(
        rollback(
            &app,
            &who.acme,
            "acme",
            Some(json!({ "revision": 1, "reason": "back to two" })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(to_one["change"]["revision"], 4);
    assert_eq!(to_one["change"]["restoresRevision"], 1);
    assert_eq!(to_one["change"]["fromRevision"], 3);
    assert_eq!(to_one["change"]["config"]["max-units"], "2");
    assert_error(
        order(&app, &who.acme_buyer, 3).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "ORDER_REJECTED",
    )
    .await;

    // No revision: what served before the active one (revision 3).
    let previous = json_ok(
        rollback(&app, &who.acme, "acme", None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(previous["change"]["revision"], 5);
    assert_eq!(previous["change"]["restoresRevision"], 3);
    assert_eq!(previous["change"]["config"]["max-units"], "10");
    let placed = json_ok(order(&app, &who.acme_buyer, 6).await, StatusCode::ACCEPTED).await;
    assert_eq!(
        validation_of(&placed),
        ("flash-sale@0.1.0".to_owned(), Some(5))
    );

    for missing in [99, 0, -1] {
        assert_error(
            rollback(
                &app,
                &who.acme,
                "acme",
                Some(json!({ "revision": missing })),
            )
            .await,
            StatusCode::NOT_FOUND,
            "REVISION_NOT_FOUND",
        )
        .await;
    }
    // beta's revisions are not acme's.
    bound(&app, &who.beta, "beta", "validation", sale(7, "beta's own")).await;
    assert_eq!(
        effective(&app, &who.beta, "beta", "validation").await["revision"],
        1
    );
    assert_error(
        rollback(&app, &who.beta, "beta", Some(json!({ "revision": 3 }))).await,
        StatusCode::NOT_FOUND,
        "REVISION_NOT_FOUND",
    )
    .await;

    let history = get_ok(
        &app,
        &who.acme,
        "/admin/tenants/acme/bindings/history?hook=validation",
    )
    .await;
    assert_eq!(history["total"], 5);
    let steps: Vec<(i64, String, String, String)> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["revision"].as_i64().unwrap(),
                e["action"].as_str().unwrap().to_owned(),
                e["byEmail"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let step =
        |r: i64, a: &str, by: &str, why: &str| (r, a.to_owned(), by.to_owned(), why.to_owned());
    assert_eq!(
        steps,
        vec![
            step(5, "rollback", "boss@acme.example", ""),
            step(4, "rollback", "boss@acme.example", "back to two"),
            step(3, "bind", "ops@example.com", "ten"),
            step(2, "bind", "ops@example.com", "five"),
            step(1, "bind", "ops@example.com", "two"),
        ]
    );
    let pricing = get_ok(
        &app,
        &who.acme,
        "/admin/tenants/acme/bindings/history?hook=pricing",
    )
    .await;
    assert_eq!(pricing["total"], 0);

    // Re-reading the TOML files (what SIGHUP does) keeps the database layer above them.
    app.state.policy.reload().expect("reload");
    assert_eq!(
        effective(&app, &who.acme, "acme", "validation").await["revision"],
        5
    );
    // A process that starts on this database serves the stored bindings.
    let url = app.state.config.store.database_url.clone();
    let restarted = spawn_app_with(backend, |c| c.store.database_url = url).await;
    let (_, admin) = restarted.login_as("boss@acme.example", Some("acme")).await;
    let (_, buyer) = restarted.login_as("buyer@acme.example", Some("acme")).await;
    let view = effective(&restarted, &admin, "acme", "validation").await;
    assert_eq!(view["source"], "database");
    assert_eq!(view["revision"], 5);
    assert_eq!(view["config"]["max-units"], "10");
    assert_error(
        order(&restarted, &buyer, 11).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "ORDER_REJECTED",
    )
    .await;
}

async fn only_operators_and_the_tenants_admins_bind(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = cast(&app).await;
    upload(&app, &who.beta, "beta-sale", "0.1.0").await;
    let body = json!({ "component": "flash-sale@1.0.0" });

    for response in [
        get(&app, &who.acme_buyer, "/admin/tenants/acme/bindings").await,
        put_binding(&app, &who.acme_buyer, "acme", "validation", body.clone()).await,
        rollback(&app, &who.acme_buyer, "acme", None).await,
        get(
            &app,
            &who.acme_buyer,
            "/admin/tenants/acme/bindings/history",
        )
        .await,
    ] {
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    for response in [
        get(&app, &who.beta, "/admin/tenants/acme/bindings").await,
        put_binding(&app, &who.beta, "acme", "validation", body.clone()).await,
        rollback(&app, &who.beta, "acme", None).await,
        get(&app, &who.beta, "/admin/tenants/acme/bindings/history").await,
        get(&app, &who.operator, "/admin/tenants/nowhere/bindings").await,
    ] {
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    // beta's own component is invisible to acme, even through an operator.
    for token in [&who.acme, &who.operator] {
        assert_error(
            put_binding(
                &app,
                token,
                "acme",
                "validation",
                json!({ "component": "beta-sale@0.1.0" }),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "COMPONENT_NOT_FOUND",
        )
        .await;
    }
    // A built-in by exact version; an operator binds for any tenant.
    let change = bound(
        &app,
        &who.operator,
        "beta",
        "validation",
        json!({ "component": "beta-sale@^0.1", "config": { "skus": "MUG", "max-units": 1 } }),
    )
    .await;
    assert_eq!(change["change"]["component"], "beta-sale@0.1.0");
    bound(&app, &who.acme, "acme", "validation", body).await;
    assert_eq!(
        effective(&app, &who.acme, "acme", "validation").await["component"],
        "flash-sale@1.0.0"
    );
    assert_error(
        order(&app, &who.beta_buyer, 2).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "ORDER_REJECTED",
    )
    .await;
}

async fn refused_bindings_store_and_publish_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = cast(&app).await;
    upload(&app, &who.acme, "flash-sale", "0.1.0").await;
    upload(&app, &who.acme, "flash-sale", "0.2.0").await;
    let generation = app.state.policy.snapshot().generation;
    let refusals = [
        (
            "validation",
            json!({ "component": "nope@1.0.0" }),
            "COMPONENT_NOT_FOUND",
        ),
        (
            "validation",
            json!({ "component": "flash-sale@^9" }),
            "COMPONENT_NOT_FOUND",
        ),
        (
            "validation",
            json!({ "component": "not a component" }),
            "COMPONENT_NOT_FOUND",
        ),
        (
            "pricing",
            json!({ "component": "flash-sale@0.1.0" }),
            "HOOK_NOT_EXPORTED",
        ),
        (
            "prioritization",
            json!({ "component": "pricing-standard@1.0.0" }),
            "HOOK_NOT_EXPORTED",
        ),
        (
            "validation",
            json!({ "component": "flash-sale@0.1.0", "limits": { "fuel": 10_000_000_001u64 } }),
            "LIMITS_OUT_OF_RANGE",
        ),
        (
            "validation",
            json!({ "component": "flash-sale@0.1.0", "limits": { "memoryBytes": 1024 } }),
            "LIMITS_OUT_OF_RANGE",
        ),
        (
            "validation",
            json!({ "component": "flash-sale@0.1.0", "limits": { "timeoutMs": 0 } }),
            "LIMITS_OUT_OF_RANGE",
        ),
        (
            "validation",
            json!({ "component": "flash-sale@0.1.0", "config": { "max-units": 2.5 } }),
            "CONFIG_INVALID",
        ),
        (
            "validation",
            // Tables and arrays are config values now (their JSON text), but only of
            // integers, strings and booleans: no float, no null, anywhere.
            json!({ "component": "flash-sale@0.1.0", "config": { "skus": ["MUG", 2.5] } }),
            "CONFIG_INVALID",
        ),
        (
            "validation",
            json!({ "component": "flash-sale@0.1.0", "config": { "skus": { "MUG": null } } }),
            "CONFIG_INVALID",
        ),
        (
            "validation",
            json!({ "component": "flash-sale@0.1.0", "config": { "skus": "x".repeat(1025) } }),
            "CONFIG_INVALID",
        ),
        (
            "validation",
            json!({ "component": "flash-sale@0.1.0", "config": { "bad key": "1" } }),
            "CONFIG_INVALID",
        ),
        (
            "validation",
            json!({ "component": "flash-sale@0.1.0", "reason": "x".repeat(501) }),
            "VALIDATION_FAILED",
        ),
        // The new config makes the component refuse: its smoke call reports INVALID_CONFIG.
        (
            "validation",
            json!({ "component": "flash-sale@0.1.0", "config": { "max-units": "lots" } }),
            "SMOKE_CALL_FAILED",
        ),
        // The new limits cannot run it: the smoke call runs out of fuel.
        (
            "validation",
            json!({ "component": "flash-sale@0.1.0", "limits": { "fuel": 1000 } }),
            "SMOKE_CALL_FAILED",
        ),
        (
            "pricing",
            json!({ "component": "pricing-standard@1.0.0", "config": { "vip-discount-bps": "many" } }),
            "SMOKE_CALL_FAILED",
        ),
    ];
    for (hook, body, code) in refusals {
        let response = put_binding(&app, &who.acme, "acme", hook, body.clone()).await;
        let error = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, code).await;
        if code == "SMOKE_CALL_FAILED" {
            assert_eq!(error["error"]["details"]["hook"], hook, "{body}");
            assert!(error["error"]["details"]["kind"].is_string());
        }
    }
    let fuel = assert_error(
        put_binding(
            &app,
            &who.acme,
            "acme",
            "validation",
            json!({ "component": "flash-sale@0.1.0", "limits": { "fuel": 1000 } }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "SMOKE_CALL_FAILED",
    )
    .await;
    assert_eq!(fuel["error"]["details"]["kind"], "InstructionLimitExceeded");
    assert_error(
        put_binding(
            &app,
            &who.acme,
            "acme",
            "shipping",
            json!({ "component": "flash-sale@0.1.0" }),
        )
        .await,
        StatusCode::NOT_FOUND,
        "HOOK_NOT_FOUND",
    )
    .await;
    let unknown_field = put_binding(
        &app,
        &who.acme,
        "acme",
        "validation",
        json!({ "component": "flash-sale@0.1.0", "limit": {} }),
    )
    .await;
    assert_eq!(unknown_field.status(), StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(app.state.policy.snapshot().generation, generation);
    assert_eq!(app.scalar("select count(*) from binding_history").await, 0);
    assert_eq!(
        effective(&app, &who.acme, "acme", "validation").await["source"],
        "built-in"
    );
    // A range resolves to the highest matching version at bind time.
    let change = bound(
        &app,
        &who.acme,
        "acme",
        "validation",
        json!({ "component": "flash-sale@>=0.1, <0.3" }),
    )
    .await;
    assert_eq!(change["change"]["component"], "flash-sale@0.2.0");
}

async fn swaps_under_concurrent_orders_fail_nothing_and_never_mix(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = cast(&app).await;
    upload(&app, &who.acme, "flash-sale", "0.1.0").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..4 {
        let (url, token, stop) = (app.address.clone(), who.acme_buyer.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let client = new_client();
            let mut orders = Vec::new();
            let mut failures = Vec::new();
            // Bounded: stops when the flips are done, or after 2 000 requests.
            for n in 0..2_000 {
                if stop.load(std::sync::atomic::Ordering::Acquire) {
                    break;
                }
                let path = if (i + n) % 2 == 0 {
                    "/order"
                } else {
                    "/order/quote"
                };
                let response = client
                    .post(format!("{url}{path}"))
                    .bearer_auth(&token)
                    .json(&json!({ "lines": [{ "sku": "MUG", "quantity": 3 }] }))
                    .send()
                    .await
                    .expect("request");
                let status = response.status();
                let body: Value = response.json().await.unwrap_or_default();
                match (path, status) {
                    ("/order", StatusCode::ACCEPTED) => orders.push(body),
                    ("/order/quote", StatusCode::OK) => {}
                    _ => failures.push(format!("{path} {status} {body}")),
                }
            }
            (orders, failures)
        }));
    }
    // Flip between flash-sale (config that lets these orders through) and the built-in.
    for flip in 0..12 {
        let body = if flip % 2 == 0 {
            json!({ "component": "flash-sale@0.1.0", "config": { "skus": "MUG", "max-units": 5 }, "reason": format!("flip {flip}") })
        } else {
            json!({ "component": "validation-standard@1.0.0", "reason": format!("flip {flip}") })
        };
        bound(&app, &who.acme, "acme", "validation", body).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let mut orders = Vec::new();
    for client in clients {
        let (o, failures) = client.await.expect("client task");
        assert!(failures.is_empty(), "failed requests: {failures:?}");
        orders.extend(o);
    }
    assert!(!orders.is_empty(), "some orders were placed");
    let seen: std::collections::HashSet<Option<i64>> =
        orders.iter().map(|o| validation_of(o).1).collect();
    assert!(seen.len() >= 2, "orders ran across swaps: {seen:?}");

    // Every order names one published revision and exactly the component it bound.
    let history = get_ok(
        &app,
        &who.acme,
        "/admin/tenants/acme/bindings/history?limit=100",
    )
    .await;
    let published: HashMap<i64, String> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["revision"].as_i64().unwrap(),
                e["component"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(published.len(), 12);
    for order in &orders {
        let (component, revision) = validation_of(order);
        match revision {
            Some(r) => assert_eq!(published.get(&r), Some(&component), "{order}"),
            // Placed before the first flip was published.
            None => assert_eq!(component, "validation-standard@1.0.0", "{order}"),
        }
        let others: Vec<&str> = order["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["hook"] != "validation")
            .map(|c| c["component"].as_str().unwrap())
            .collect();
        assert!(
            others
                .iter()
                .all(|c| c.ends_with("@1.0.0") && c.contains("standard")
                    || c.starts_with("priority-vip")),
            "{others:?}"
        );
    }
    // The last flip is what serves now.
    assert_eq!(
        effective(&app, &who.acme, "acme", "validation").await["revision"],
        12
    );
}

async fn operators_cap_the_limits_a_tenant_may_bind(backend: Backend) {
    let app = spawn_app(backend).await;
    let cast = cast(&app).await;
    let ceilings = |token: &str, body: Value| {
        new_client()
            .put(app.url("/admin/tenants/acme/limit-ceilings"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    // Only operators set them; a ceiling of zero or above the engine's maximum is refused.
    let by_admin = ceilings(&cast.acme, json!({ "fuel": 1 })).await.unwrap();
    assert_error(by_admin, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let zero = ceilings(&cast.operator, json!({ "timeoutMs": 0 }))
        .await
        .unwrap();
    assert_error(zero, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let set = ceilings(
        &cast.operator,
        json!({ "fuel": 50_000_000, "timeoutMs": 20 }),
    )
    .await
    .unwrap();
    let set = json_ok(set, StatusCode::OK).await;
    assert_eq!(
        set,
        json!({ "fuel": 50_000_000, "memoryBytes": null, "timeoutMs": 20 })
    );
    // The tenant's admin reads them; another tenant's admin does not see them.
    let read = get(&app, &cast.acme, "/admin/tenants/acme/limit-ceilings").await;
    assert_eq!(json_ok(read, StatusCode::OK).await["timeoutMs"], 20);
    let foreign = get(&app, &cast.beta, "/admin/tenants/acme/limit-ceilings").await;
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    // Over the ceiling → refused, nothing stored; within it → bound. Beta is not capped.
    let over = json!({ "component": "validation-standard@1.0.0", "reason": "try",
                       "limits": { "timeoutMs": 50 } });
    let refused = put_binding(&app, &cast.acme, "acme", "validation", over.clone()).await;
    let body = assert_error(
        refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "LIMITS_OUT_OF_RANGE",
    )
    .await;
    assert!(body.to_string().contains("ceiling 20"), "{body}");
    assert_eq!(app.scalar("select count(*) from binding_history").await, 0);
    let within = json!({ "component": "validation-standard@1.0.0", "reason": "ok",
                         "limits": { "timeoutMs": 20, "fuel": 10_000_000 } });
    bound(&app, &cast.acme, "acme", "validation", within).await;
    bound(&app, &cast.beta, "beta", "validation", over).await;
}
