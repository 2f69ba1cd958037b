//! The rules merchants write (issue 15): both WIT versions served side by side, what a
//! 1.1 component is given (read back through the real `context-echo` component), discount
//! codes and attributes from the request to the quote and the order, structured config.

use std::path::Path;

use orderhost::{auth::Role, policy::registry::BUILD_DIR};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    backend_tests,
    helpers::{Backend, TestApp, assert_error, json_ok, new_client, spawn_app, spawn_app_with},
};

backend_tests!(
    both_wit_versions_are_served_side_by_side,
    discount_codes_and_attributes_are_normalised_and_accounted_for,
    a_1_1_component_sees_the_request_history_and_structured_config,
    structured_config_is_bounded_and_integer_only,
    a_context_above_the_input_limit_is_refused_not_truncated,
    a_pending_order_counts_in_the_recent_units_once,
);

/// `PATCH {path}` with a JSON body as `token`, expecting 200.
pub(crate) async fn patch(app: &TestApp, token: &str, path: &str, body: &Value) -> Value {
    let response = new_client()
        .patch(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request");
    json_ok(response, StatusCode::OK).await
}

/// A component as the build produced it.
pub(crate) fn built(file: &str) -> Vec<u8> {
    std::fs::read(Path::new(BUILD_DIR).join(file)).unwrap_or_else(|e| panic!("{file} built: {e}"))
}

/// Uploads `file` as `name@version` (as `token`); the registry's view of it.
pub(crate) async fn upload(
    app: &TestApp,
    token: &str,
    name: &str,
    version: &str,
    file: &str,
) -> Value {
    let response = new_client()
        .post(app.url(&format!("/admin/components?name={name}&version={version}")))
        .bearer_auth(token)
        .header("content-type", "application/wasm")
        .body(built(file))
        .send()
        .await
        .expect("request");
    json_ok(response, StatusCode::CREATED).await
}

/// `PUT /admin/tenants/{tenant}/bindings/{hook}`; the response.
pub(crate) async fn bind(
    app: &TestApp,
    token: &str,
    tenant: &str,
    hook: &str,
    body: Value,
) -> reqwest::Response {
    new_client()
        .put(app.url(&format!("/admin/tenants/{tenant}/bindings/{hook}")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// `POST {path}` with a JSON body as `token`.
pub(crate) async fn post(
    app: &TestApp,
    token: &str,
    path: &str,
    body: &Value,
) -> reqwest::Response {
    new_client()
        .post(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request")
}

/// `GET {path}` as `token`, expecting 200.
pub(crate) async fn get(app: &TestApp, token: &str, path: &str) -> Value {
    let response = new_client()
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    json_ok(response, StatusCode::OK).await
}

/// Polls an order until it is final (the app's own workers settle it).
pub(crate) async fn settled(app: &TestApp, token: &str, id: &str) -> Value {
    for _ in 0..400 {
        let order = get(app, token, &format!("/order/{id}")).await;
        if order["status"] != "PENDING" {
            return order;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("order {id} stayed PENDING");
}

/// The violations of a 422 `ORDER_REJECTED`.
async fn violations(response: reqwest::Response) -> Vec<Value> {
    let body = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "ORDER_REJECTED").await;
    body["error"]["details"]["violations"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("violations in {body}"))
}

/// The message of the violation `code` among `violations`.
fn message<'v>(violations: &'v [Value], code: &str) -> &'v str {
    violations
        .iter()
        .find(|v| v["code"] == code)
        .and_then(|v| v["message"].as_str())
        .unwrap_or_else(|| panic!("no {code} in {violations:?}"))
}

async fn both_wit_versions_are_served_side_by_side(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_product(None, "MUG", 1_200, 1_000).await;
    let operator = app
        .user_with_role("ops@example.com", Role::Operator, None)
        .await;
    let buyer = app
        .user_with_role("buyer@example.com", Role::Customer, None)
        .await;

    // The registry reads each component's version from its world.
    let old = upload(&app, &operator, "sale-rule", "0.1.0", "flash_sale.wasm").await;
    assert_eq!(old["witVersion"], "1.0.0", "{old}");
    assert_eq!(old["world"], "validator");
    assert!(
        old["exports"]
            .as_array()
            .unwrap()
            .contains(&json!("ordering:policy/validation@1.0.0")),
        "{old}"
    );
    let new = upload(&app, &operator, "echo", "0.1.0", "context_echo.wasm").await;
    assert_eq!(new["witVersion"], "1.1.0", "{new}");
    let builtin = upload(
        &app,
        &operator,
        "std-pricing",
        "0.1.0",
        "pricing_standard.wasm",
    )
    .await;
    assert_eq!(
        builtin["witVersion"], "1.1.0",
        "the built-ins target 1.1: {builtin}"
    );

    // A 1.0 validator beside the 1.1 built-in pricer and prioritizer, unchanged.
    let response = bind(
        &app,
        &operator,
        "default",
        "validation",
        json!({ "component": "sale-rule@0.1.0", "config": { "skus": "MUG", "max-units": 2 } }),
    )
    .await;
    json_ok(response, StatusCode::OK).await;
    let order = json!({ "lines": [{ "sku": "MUG", "quantity": 3 }], "discountCodes": ["SAVE10"] });
    let refused = violations(post(&app, &buyer, "/order", &order).await).await;
    assert_eq!(refused[0]["code"], "FLASH_SALE_LIMIT", "{refused:?}");
    let order = json!({ "lines": [{ "sku": "MUG", "quantity": 2 }], "discountCodes": ["SAVE10"] });
    let placed = json_ok(
        post(&app, &buyer, "/order", &order).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let done = settled(&app, &buyer, placed["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "CONFIRMED", "{done}");
    assert_eq!(done["total"], 2_400);
    assert_eq!(
        done["rejectedCodes"],
        json!([{ "discountCode": "SAVE10", "reason": "CODE_UNKNOWN",
                 "message": "this shop's pricing does not recognise this code" }])
    );

    // The same hook swapped to a 1.1 component: it sees 1.1's context.
    json_ok(
        bind(
            &app,
            &operator,
            "default",
            "validation",
            json!({ "component": "echo@0.1.0" }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let echoed = violations(post(&app, &buyer, "/order/quote", &order).await).await;
    assert!(
        message(&echoed, "CONTEXT_ECHO").contains(r#"discount-codes: ["SAVE10"]"#),
        "{echoed:?}"
    );
}

async fn discount_codes_and_attributes_are_normalised_and_accounted_for(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_product(None, "MUG", 1_200, 1_000).await;
    let buyer = app
        .user_with_role("buyer@example.com", Role::Customer, None)
        .await;
    let lines = json!([{ "sku": "MUG", "quantity": 1 }]);

    // Trimmed, upper-cased, duplicates dropped, the client's order kept; the built-in
    // pricer knows no codes, so the host reports each as CODE_UNKNOWN.
    let body = json!({ "lines": lines, "discountCodes": [" save10 ", "SAVE10", "Vip-2026"] });
    let quote = json_ok(
        post(&app, &buyer, "/order/quote", &body).await,
        StatusCode::OK,
    )
    .await;
    let reasons: Vec<(&str, &str)> = quote["quote"]["rejectedCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["discountCode"].as_str().unwrap(),
                r["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [("SAVE10", "CODE_UNKNOWN"), ("VIP-2026", "CODE_UNKNOWN")]
    );
    assert_eq!(quote["quote"]["total"], 1_200);
    // Without codes there is nothing to report.
    let plain = json_ok(
        post(&app, &buyer, "/order/quote", &json!({ "lines": lines })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(plain["quote"]["rejectedCodes"], json!([]));

    // Bounds, each with its field.
    let eleven: Vec<String> = (0..11).map(|i| format!("C{i}")).collect();
    for (body, field) in [
        (
            json!({ "lines": lines, "discountCodes": eleven }),
            "discountCodes",
        ),
        (
            json!({ "lines": lines, "discountCodes": ["ok", "  "] }),
            "discountCodes[1]",
        ),
        (
            json!({ "lines": lines, "discountCodes": ["x".repeat(65)] }),
            "discountCodes[0]",
        ),
        (
            json!({ "lines": lines, "discountCodes": ["SPACE IN"] }),
            "discountCodes[0]",
        ),
        (
            json!({ "lines": lines, "attributes": { "bad key": "x" } }),
            "attributes.bad key",
        ),
        (
            json!({ "lines": lines, "attributes": { "note": "y".repeat(257) } }),
            "attributes.note",
        ),
        (
            json!({ "lines": lines, "attributes": { "line": "a\nb" } }),
            "attributes.line",
        ),
        (
            json!({ "lines": lines, "attributes": { "Channel": "a", "channel": "b" } }),
            "attributes.",
        ),
        (
            json!({ "lines": lines, "attributes": (0..21).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>() }),
            "attributes",
        ),
    ] {
        for path in ["/order/quote", "/order"] {
            let refused = assert_error(
                post(&app, &buyer, path, &body).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_FAILED",
            )
            .await;
            let text = refused["error"]["message"].as_str().unwrap_or_default();
            assert!(text.starts_with(field), "{path} {body}: {refused}");
        }
    }
    let orders = get(&app, &buyer, "/order").await;
    assert_eq!(
        orders["items"].as_array().map(Vec::len),
        Some(0),
        "nothing written: {orders}"
    );

    // The order records the codes' outcome and its context keeps what the hooks saw.
    let body =
        json!({ "lines": lines, "discountCodes": ["spring"], "attributes": { "Channel": "pos" } });
    let placed = json_ok(
        post(&app, &buyer, "/order", &body).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(
        placed["rejectedCodes"][0]["discountCode"], "SPRING",
        "{placed}"
    );
    let id = placed["id"].as_str().unwrap();
    let done = settled(&app, &buyer, id).await;
    assert_eq!(done["rejectedCodes"][0]["reason"], "CODE_UNKNOWN", "{done}");
    let context: String = orderhost::with_pool!(&app.state.store, pool => {
        sqlx::query_scalar("select context from orders where id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .expect("order row")
    });
    let context: Value = serde_json::from_str(&context).expect("JSON context");
    assert_eq!(context["discountCodes"], json!(["SPRING"]));
    assert_eq!(
        context["attributes"],
        json!([{ "key": "channel", "value": "pos" }])
    );
}

async fn a_1_1_component_sees_the_request_history_and_structured_config(backend: Backend) {
    let app = spawn_app(backend).await;
    let (mug, _) = app.seed_product(None, "MUG", 1_200, 1_000).await;
    app.seed_product(None, "CUP", 500, 10).await;
    // The operator binds later, signed in again then.
    app.user_with_role("ops@example.com", Role::Operator, None)
        .await;
    let buyer = app
        .user_with_role("buyer@example.com", Role::Customer, None)
        .await;
    // What the tenant's admin says about the customer and the product.
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    patch(
        &app,
        &admin,
        "/users/buyer@example.com",
        &json!({ "tags": ["Wholesale", "b2b"] }),
    )
    .await;
    patch(
        &app,
        &admin,
        &format!("/products/{mug}"),
        &json!({ "tags": ["sale", "kitchen"], "vendor": "Acme Ceramics", "category": "mugs" }),
    )
    .await;

    // History: two confirmed orders (3 MUG + 1 CUP; 2 MUG), one failed (out of stock).
    for lines in [
        json!([{ "sku": "MUG", "quantity": 3 }, { "sku": "CUP", "quantity": 1 }]),
        json!([{ "sku": "MUG", "quantity": 2 }]),
        json!([{ "sku": "CUP", "quantity": 50 }]),
    ] {
        let placed = json_ok(
            post(&app, &buyer, "/order", &json!({ "lines": lines })).await,
            StatusCode::ACCEPTED,
        )
        .await;
        settled(&app, &buyer, placed["id"].as_str().unwrap()).await;
    }
    // Two days later, one more MUG: inside 30 days, outside 24 hours.
    app.advance(2 * 86_400_000);
    // Signed in again: the access tokens of two days ago have expired.
    let buyer = app.login_as("buyer@example.com", None).await.1;
    let operator = app.login_as("ops@example.com", None).await.1;
    let placed = json_ok(
        post(
            &app,
            &buyer,
            "/order",
            &json!({ "lines": [{ "sku": "MUG", "quantity": 1 }] }),
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await;
    settled(&app, &buyer, placed["id"].as_str().unwrap()).await;

    upload(&app, &operator, "echo", "0.1.0", "context_echo.wasm").await;
    let price_list = json!({ "wholesale": { "MUG": 900, "CUP": 400 }, "gold": [1, 2, 3] });
    json_ok(
        bind(
            &app,
            &operator,
            "default",
            "validation",
            json!({ "component": "echo@0.1.0",
                    "config": { "echo-key": "price-lists", "price-lists": price_list } }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let body = json!({
        "lines": [{ "sku": "MUG", "quantity": 1 }, { "sku": "CUP", "quantity": 2 }],
        "discountCodes": ["welcome"],
        "attributes": { "country": "DE", "channel": "pos" },
    });
    let echoed = violations(post(&app, &buyer, "/order/quote", &body).await).await;
    let ctx = message(&echoed, "CONTEXT_ECHO");
    for expected in [
        r#"discount-codes: ["WELCOME"]"#,
        r#"attributes: [Attribute { key: "channel", value: "pos" }, Attribute { key: "country", value: "DE" }]"#,
        r#"vip: false, tags: ["b2b", "wholesale"], order-count"#,
        r#"tags: ["kitchen", "sale"], vendor: Some("Acme Ceramics"), category: Some("mugs")"#,
        "tags: [], vendor: None, category: None",
        "order-count: 4",
        "lifetime-orders: 3",
        r#"lifetime-spend: [Money { amount: 7700, currency: "EUR" }]"#,
        // MUG: 1 in the last day (2 days after the first two orders), 6 in 30 days.
        r#"sku: "MUG", quantity: 1, unit-price: 1200, currency: "EUR", available: 994"#,
        "units-last24h: 1, units-last30d: 6",
        // CUP: the failed order's 50 do not count.
        "units-last24h: 0, units-last30d: 1",
    ] {
        assert!(ctx.contains(expected), "{expected} in {ctx}");
    }
    let config = message(&echoed, "CONFIG_ECHO");
    let config: Value = serde_json::from_str(config).expect("JSON text");
    assert_eq!(config, price_list);

    // Cancelling the last order takes it out of the figures.
    let last = placed["id"].as_str().unwrap();
    let response = post(&app, &buyer, &format!("/order/{last}/cancel"), &json!({})).await;
    json_ok(response, StatusCode::OK).await;
    let echoed = violations(post(&app, &buyer, "/order/quote", &body).await).await;
    let ctx = message(&echoed, "CONTEXT_ECHO");
    for expected in [
        "lifetime-orders: 2",
        r#"lifetime-spend: [Money { amount: 6500, currency: "EUR" }]"#,
        "units-last24h: 0, units-last30d: 5",
    ] {
        assert!(ctx.contains(expected), "{expected} in {ctx}");
    }

    // 31 days on, the 30-day window is empty too.
    app.advance(31 * 86_400_000);
    let buyer = app.login_as("buyer@example.com", None).await.1;
    let echoed = violations(post(&app, &buyer, "/order/quote", &body).await).await;
    let ctx = message(&echoed, "CONTEXT_ECHO");
    assert!(!ctx.contains("units-last30d: 6"), "{ctx}");
    assert_eq!(
        ctx.matches("units-last24h: 0, units-last30d: 0").count(),
        2,
        "{ctx}"
    );
    assert!(ctx.contains("lifetime-orders: 2"), "lifetime stays: {ctx}");
    // The buckets no window reaches any more are swept by the workers' housekeeping.
    let buckets = "select count(*) from customer_sku_hours";
    assert!(app.scalar(buckets).await > 0);
    let now = app.state.clock.now_ms();
    let swept = orderhost::orders::sweep_old_sku_hours(&app.state.store, now)
        .await
        .expect("sweep");
    assert!(swept > 0);
    // The last order's bucket is 31 days old: kept one more day.
    assert_eq!(app.scalar(buckets).await, 1);
    app.advance(86_400_000);
    let now = app.state.clock.now_ms();
    orderhost::orders::sweep_old_sku_hours(&app.state.store, now)
        .await
        .expect("sweep");
    assert_eq!(app.scalar(buckets).await, 0);
}

async fn structured_config_is_bounded_and_integer_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let operator = app
        .user_with_role("ops@example.com", Role::Operator, None)
        .await;
    upload(&app, &operator, "echo", "0.1.0", "context_echo.wasm").await;
    // A price list of 5 000 SKUs fits (about 100 KB of JSON).
    let list: serde_json::Map<String, Value> = (0..5_000)
        .map(|i| (format!("SKU-{i:05}"), json!(1_000 + i)))
        .collect();
    json_ok(
        bind(
            &app,
            &operator,
            "default",
            "validation",
            json!({ "component": "echo@0.1.0", "config": { "prices": list } }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    for (config, problem) in [
        (json!({ "prices": { "MUG": 9.5 } }), "not an integer"),
        (json!({ "prices": [1, null] }), "null"),
        (
            json!({ "prices": (0..30_000).map(|i| (format!("SKU-{i:05}"), json!(i))).collect::<serde_json::Map<_, _>>() }),
            "at most 262144",
        ),
    ] {
        let refused = assert_error(
            bind(
                &app,
                &operator,
                "default",
                "validation",
                json!({ "component": "echo@0.1.0", "config": config }),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "CONFIG_INVALID",
        )
        .await;
        assert!(
            refused.to_string().contains(problem),
            "{problem}: {refused}"
        );
    }
}

async fn a_context_above_the_input_limit_is_refused_not_truncated(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    let buyer = app
        .user_with_role("buyer@example.com", Role::Customer, None)
        .await;
    // 70 products with 32 tags of 64 characters each: about 2.2 KB of tags per line.
    let tags: Vec<String> = (0..32)
        .map(|i| format!("{i:02}-{}", "t".repeat(61)))
        .collect();
    let mut lines = Vec::new();
    for i in 0..70 {
        let sku = format!("BIG-{i:02}");
        let (product, _) = app.seed_product(None, &sku, 100, 1_000).await;
        patch(
            &app,
            &admin,
            &format!("/products/{product}"),
            &json!({ "tags": tags }),
        )
        .await;
        lines.push(json!({ "sku": sku, "quantity": 1 }));
    }
    let body = json!({ "lines": lines });
    for path in ["/order/quote", "/order"] {
        let refused = assert_error(
            post(&app, &buyer, path, &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "CONTEXT_TOO_LARGE",
        )
        .await;
        let details = &refused["error"]["details"];
        assert_eq!(details["limit"], 131_072, "{refused}");
        assert!(details["bytes"].as_u64().unwrap() > 131_072, "{refused}");
    }
    let orders = get(&app, &buyer, "/order").await;
    assert_eq!(
        orders["items"].as_array().map(Vec::len),
        Some(0),
        "nothing written: {orders}"
    );
    // Half of it fits.
    let body = json!({ "lines": lines[..35] });
    json_ok(
        post(&app, &buyer, "/order", &body).await,
        StatusCode::ACCEPTED,
    )
    .await;
}

async fn a_pending_order_counts_in_the_recent_units_once(backend: Backend) {
    // No workers: the first order stays PENDING until the test settles it.
    let app = spawn_app_with(backend, |c| c.workers = 0).await;
    app.seed_product(None, "LAMP", 7_900, 100).await;
    let operator = app
        .user_with_role("ops@example.com", Role::Operator, None)
        .await;
    let buyer = app
        .user_with_role("buyer@example.com", Role::Customer, None)
        .await;
    upload(&app, &operator, "echo", "0.1.0", "context_echo.wasm").await;
    let order = json!({ "lines": [{ "sku": "LAMP", "quantity": 2 }] });
    let placed = json_ok(
        post(&app, &buyer, "/order", &order).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(placed["status"], "PENDING");
    json_ok(
        bind(
            &app,
            &operator,
            "default",
            "validation",
            json!({ "component": "echo@0.1.0" }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let units = |echoed: &[Value]| {
        let ctx = message(echoed, "CONTEXT_ECHO").to_owned();
        ctx.split("units-last24h: ")
            .nth(1)
            .map(|s| s[..s.find('}').unwrap_or(s.len())].to_owned())
    };
    // Pending: a second order right after the first (a double click) sees its 2 units.
    let echoed = violations(post(&app, &buyer, "/order/quote", &order).await).await;
    assert_eq!(
        units(&echoed).as_deref(),
        Some("2, units-last30d: 2 "),
        "{echoed:?}"
    );
    // Confirmed: counted from the buckets now, not twice.
    orderhost::orders::process::run_once(&app.state, "w")
        .await
        .expect("settles");
    let echoed = violations(post(&app, &buyer, "/order/quote", &order).await).await;
    assert_eq!(
        units(&echoed).as_deref(),
        Some("2, units-last30d: 2 "),
        "{echoed:?}"
    );
}
