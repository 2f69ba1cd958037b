//! `X-Policy-Override` (issue 10, item 5): an operator tries a candidate component on real
//! catalog data with `POST /order/quote` and `POST /admin/policy/evaluate` before binding
//! it. The override serves one request only: nothing is stored or published, real orders
//! of the tenant stay on their bindings, `POST /order` refuses the header, and anyone but
//! an operator gets 403.

use std::path::Path;

use orderhost::{auth::Role, policy::registry::BUILD_DIR};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::{
    backend_tests,
    helpers::{Backend, TestApp, assert_error, json_ok, new_client, spawn_app},
};

backend_tests!(
    an_operator_tries_a_rule_on_a_quote_and_real_orders_are_unaffected,
    an_operator_tries_a_pricing_candidate_and_a_tenants_own_component,
    only_operators_may_override,
    bad_overrides_are_refused_with_their_codes,
);

const HEADER: &str = "X-Policy-Override";
/// flash-sale on MUG, at most 2 per line.
const SALE: &str = "validation=flash-sale@0.1.0?skus=MUG&max-units=2";

fn wasm(file: &str) -> Vec<u8> {
    std::fs::read(Path::new(BUILD_DIR).join(file)).expect("component built")
}

async fn upload(app: &TestApp, token: &str, file: &str, name: &str, version: &str) {
    let response = new_client()
        .post(app.url(&format!("/admin/components?name={name}&version={version}")))
        .bearer_auth(token)
        .header("content-type", "application/wasm")
        .body(wasm(file))
        .send()
        .await
        .expect("request");
    json_ok(response, StatusCode::CREATED).await;
}

async fn send(
    app: &TestApp,
    token: &str,
    path: &str,
    header: Option<&str>,
    body: &Value,
) -> Response {
    let request = new_client()
        .post(app.url(path))
        .bearer_auth(token)
        .json(body);
    let request = match header {
        Some(value) => request.header(HEADER, value),
        None => request,
    };
    request.send().await.expect("request")
}

fn mugs(quantity: u32) -> Value {
    json!({ "lines": [{ "sku": "MUG", "quantity": quantity }] })
}

fn hook<'a>(report: &'a Value, key: &str, hook: &str) -> &'a Value {
    report[key]
        .as_array()
        .expect("per-hook report")
        .iter()
        .find(|h| h["hook"] == hook)
        .expect("hook reported")
}

async fn orders(app: &TestApp) -> i64 {
    app.scalar("select count(*) from orders").await
}

async fn an_operator_tries_a_rule_on_a_quote_and_real_orders_are_unaffected(backend: Backend) {
    // Arrange: the default tenant's catalog, its operator and a customer.
    let app = spawn_app(backend).await;
    app.seed_product(None, "MUG", 1_200, 100_000).await;
    let operator = app
        .user_with_role("ops@example.com", Role::Operator, None)
        .await;
    let buyer = app
        .user_with_role("buyer@example.com", Role::Customer, None)
        .await;
    upload(&app, &operator, "flash_sale.wasm", "flash-sale", "0.1.0").await;
    let revision = app
        .scalar("select revision from bindings_revision where id = 1")
        .await;

    // Act + Assert: the candidate rejects 3 mugs on the quote…
    let tried = send(&app, &operator, "/order/quote", Some(SALE), &mugs(3)).await;
    let body = assert_error(tried, StatusCode::UNPROCESSABLE_ENTITY, "ORDER_REJECTED").await;
    assert_eq!(
        body["error"]["details"]["violations"][0]["code"],
        "FLASH_SALE_LIMIT"
    );
    // …accepts 2 and names itself in the report…
    let quote = json_ok(
        send(&app, &operator, "/order/quote", Some(SALE), &mugs(2)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(quote["quote"]["total"], 2_400);
    let validation = hook(&quote, "components", "validation");
    assert_eq!(validation["component"], "flash-sale@0.1.0", "{quote}");
    assert_eq!(validation["overridden"], true);
    assert!(hook(&quote, "components", "pricing")["overridden"].is_null());
    // …while the same quote without the header, and real orders, keep the binding.
    let plain = json_ok(
        send(&app, &operator, "/order/quote", None, &mugs(3)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        hook(&plain, "components", "validation")["component"],
        "validation-standard@1.0.0"
    );
    let order = json_ok(
        send(&app, &buyer, "/order", None, &mugs(3)).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(
        hook(&order, "components", "validation")["component"],
        "validation-standard@1.0.0"
    );
    // POST /order never honours the header, not even an operator's: refused, nothing
    // written.
    let before = orders(&app).await;
    for token in [&operator, &buyer] {
        let refused = send(&app, token, "/order", Some(SALE), &mugs(3)).await;
        assert_error(refused, StatusCode::FORBIDDEN, "OVERRIDE_FORBIDDEN").await;
    }
    assert_eq!(orders(&app).await, before);
    // Nothing was stored or published.
    assert_eq!(app.scalar("select count(*) from binding_history").await, 0);
    assert_eq!(
        app.scalar("select revision from bindings_revision where id = 1")
            .await,
        revision
    );
    let bindings = json_ok(
        new_client()
            .get(app.url("/admin/tenants/default/bindings"))
            .bearer_auth(&operator)
            .send()
            .await
            .expect("request"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        hook(&bindings, "bindings", "validation")["component"],
        "validation-standard@1.0.0"
    );
}

async fn an_operator_tries_a_pricing_candidate_and_a_tenants_own_component(backend: Backend) {
    let app = spawn_app(backend).await;
    app.tenant("acme").await;
    app.seed_product(None, "MUG", 1_200, 100_000).await;
    let operator = app
        .user_with_role("ops@example.com", Role::Operator, None)
        .await;
    let acme = app
        .user_with_role("boss@acme.example", Role::Admin, Some("acme"))
        .await;
    // A second pricing component on the platform, and a rule private to acme.
    upload(
        &app,
        &operator,
        "pricing_standard.wasm",
        "pricing-candidate",
        "1.0.0",
    )
    .await;
    upload(&app, &acme, "flash_sale.wasm", "acme-sale", "0.1.0").await;

    // The pricing candidate prices the quote and is named in the report.
    let quote = json_ok(
        send(
            &app,
            &operator,
            "/order/quote",
            Some("pricing=pricing-candidate@1.0.0"),
            &mugs(2),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let pricing = hook(&quote, "components", "pricing");
    assert_eq!(pricing["component"], "pricing-candidate@1.0.0", "{quote}");
    assert_eq!(pricing["overridden"], true);
    assert_eq!(quote["quote"]["total"], 2_400);

    // On the evaluation tool, for acme, with acme's own component and two hooks at once
    // (a semver range resolves like a binding's).
    let context = json!({
        "tenant": "acme",
        "customer": { "id": "c1", "vip": false },
        "lines": [{ "productId": "p1", "stockId": "s1", "sku": "MUG", "quantity": 5, "unitPrice": 1000, "currency": "EUR" }],
    });
    let evaluation = json_ok(
        send(
            &app,
            &operator,
            "/admin/policy/evaluate",
            Some("validation=acme-sale@^0.1?skus=MUG&max-units=1, pricing=pricing-candidate@1.0.0"),
            &context,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(evaluation["violations"][0]["code"], "FLASH_SALE_LIMIT");
    assert_eq!(
        hook(&evaluation, "hooks", "validation")["component"],
        "acme-sale@0.1.0"
    );
    assert_eq!(hook(&evaluation, "hooks", "validation")["overridden"], true);
    assert_eq!(
        hook(&evaluation, "hooks", "pricing")["component"],
        "pricing-candidate@1.0.0"
    );
    assert!(hook(&evaluation, "hooks", "prioritization")["overridden"].is_null());

    // acme's component is invisible from another tenant (the operator's quote runs for
    // the default tenant).
    let hidden = send(
        &app,
        &operator,
        "/order/quote",
        Some("validation=acme-sale@0.1.0"),
        &mugs(1),
    )
    .await;
    assert_error(
        hidden,
        StatusCode::UNPROCESSABLE_ENTITY,
        "COMPONENT_NOT_FOUND",
    )
    .await;
}

async fn only_operators_may_override(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_product(None, "MUG", 1_200, 100_000).await;
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    let buyer = app
        .user_with_role("buyer@example.com", Role::Customer, None)
        .await;
    let header = Some("pricing=pricing-standard@1.0.0");
    for token in [&admin, &buyer] {
        let quote = send(&app, token, "/order/quote", header, &mugs(1)).await;
        assert_error(quote, StatusCode::FORBIDDEN, "OVERRIDE_FORBIDDEN").await;
    }
    let context = json!({
        "customer": { "id": "c1", "vip": false },
        "lines": [{ "productId": "p1", "stockId": "s1", "sku": "MUG", "quantity": 1, "unitPrice": 1000, "currency": "EUR" }],
    });
    let evaluation = send(&app, &admin, "/admin/policy/evaluate", header, &context).await;
    assert_error(evaluation, StatusCode::FORBIDDEN, "OVERRIDE_FORBIDDEN").await;
    // Even a malformed header is a 403 for them: the role is checked first.
    let quote = send(&app, &buyer, "/order/quote", Some("nonsense"), &mugs(1)).await;
    assert_error(quote, StatusCode::FORBIDDEN, "OVERRIDE_FORBIDDEN").await;
    // Without the header they quote as before.
    json_ok(
        send(&app, &buyer, "/order/quote", None, &mugs(1)).await,
        StatusCode::OK,
    )
    .await;
}

async fn bad_overrides_are_refused_with_their_codes(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_product(None, "MUG", 1_200, 100_000).await;
    let operator = app
        .user_with_role("ops@example.com", Role::Operator, None)
        .await;
    for (header, status, code) in [
        ("pricing", StatusCode::BAD_REQUEST, "OVERRIDE_INVALID"),
        ("", StatusCode::BAD_REQUEST, "OVERRIDE_INVALID"),
        (
            "shipping=pricing-standard@1.0.0",
            StatusCode::BAD_REQUEST,
            "OVERRIDE_INVALID",
        ),
        (
            "pricing=pricing-standard",
            StatusCode::BAD_REQUEST,
            "OVERRIDE_INVALID",
        ),
        (
            "pricing=pricing-standard@1.0.0,pricing=pricing-standard@1.0.0",
            StatusCode::BAD_REQUEST,
            "OVERRIDE_INVALID",
        ),
        (
            "pricing=nope@1.0.0",
            StatusCode::UNPROCESSABLE_ENTITY,
            "COMPONENT_NOT_FOUND",
        ),
        (
            "pricing=pricing-standard@9.9.9",
            StatusCode::UNPROCESSABLE_ENTITY,
            "COMPONENT_NOT_FOUND",
        ),
        (
            "validation=pricing-standard@1.0.0",
            StatusCode::UNPROCESSABLE_ENTITY,
            "HOOK_NOT_EXPORTED",
        ),
        (
            "validation=validation-standard@1.0.0?bad%20key=1",
            StatusCode::UNPROCESSABLE_ENTITY,
            "CONFIG_INVALID",
        ),
    ] {
        let response = send(&app, &operator, "/order/quote", Some(header), &mugs(1)).await;
        let body = assert_error(response, status, code).await;
        assert!(body["error"]["message"].is_string(), "{header}: {body}");
    }
    assert_eq!(orders(&app).await, 0);
}
