//! Catalog tests (products and their tags, vendor and category, stock, showcase, import,
//! the order path's read of the catalog).

use std::process::Stdio;

use orderhost::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    backend_tests,
    helpers::{Backend, TestApp, assert_error, json_ok, new_client, spawn_app},
};

backend_tests!(
    admin_creates_and_reads_products,
    bad_product_input_is_refused,
    patch_and_deactivate_products,
    stock_receive_and_adjust_keep_an_audit_trail,
    concurrent_adjustments_never_drive_stock_negative,
    customers_are_forbidden_and_anonymous_callers_unauthenticated,
    tenants_never_see_each_other,
    showcase_filters_paginates_and_formats_prices,
    catalog_import_is_idempotent_by_sku,
    catalog_import_of_a_bad_file_writes_nothing,
    products_carry_tags_vendor_and_category,
    bad_product_attributes_are_refused_with_their_field,
    catalog_import_reads_tags_vendor_and_category_and_old_files,
    the_order_read_carries_customer_tags_and_product_attributes,
);

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = new_client()
        .request(method, app.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

/// An admin of the default tenant (or of `tenant`).
async fn admin(app: &TestApp, tenant: Option<&str>) -> String {
    let email = format!("admin@{}.example", tenant.unwrap_or("default"));
    app.user_with_role(&email, Role::Admin, tenant).await
}

/// Creates a product as `token`; returns its view.
async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    json_ok(
        call(app, Method::POST, "/products", token, Some(body)).await,
        StatusCode::CREATED,
    )
    .await
}

fn product(sku: &str, unit_price: i64, currency: &str, initial_stock: i64) -> Value {
    json!({ "sku": sku, "name": format!("Product {sku}"), "unitPrice": unit_price,
            "currency": currency, "initialStock": initial_stock })
}

/// `GET` on the public showcase, with an optional `X-Tenant`.
async fn showcase(app: &TestApp, path: &str, tenant: Option<&str>) -> reqwest::Response {
    let mut request = new_client().get(app.url(path));
    if let Some(tenant) = tenant {
        request = request.header("x-tenant", tenant);
    }
    request.send().await.expect("request")
}

fn skus(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["sku"].as_str().expect("sku"))
        .collect()
}

async fn admin_creates_and_reads_products(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let token = admin(&app, None).await;

    // Act
    let response = call(
        &app,
        Method::POST,
        "/products",
        &token,
        Some(json!({
            "sku": "MUG-1", "name": "  Blue mug ", "description": "Stoneware",
            "images": ["https://img.example/mug.png"], "unitPrice": 1250,
            "currency": "EUR", "initialStock": 5
        })),
    )
    .await;

    // Assert
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created = json_ok(response, StatusCode::CREATED).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(location, format!("/products/{id}"));
    assert_eq!(created["sku"], "MUG-1");
    assert_eq!(created["name"], "Blue mug");
    assert_eq!(created["description"], "Stoneware");
    assert_eq!(created["images"], json!(["https://img.example/mug.png"]));
    assert_eq!(created["unitPrice"], 1250);
    assert_eq!(created["price"], "12.50");
    assert_eq!(created["currency"], "EUR");
    assert_eq!(created["active"], true);
    assert_eq!(
        (
            &created["available"],
            &created["received"],
            &created["reserved"]
        ),
        (&json!(5), &json!(5), &json!(0))
    );
    assert!(created["stockId"].is_string());

    let got = json_ok(
        call(&app, Method::GET, &location, &token, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got, created);
    // The initial stock is the first movement, attributed to the admin.
    let movements = json_ok(
        call(
            &app,
            Method::GET,
            &format!("{location}/stock/movements"),
            &token,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(movements["total"], 1);
    let first = &movements["items"][0];
    assert_eq!(
        (&first["kind"], &first["quantity"]),
        (&json!("receive"), &json!(5))
    );
    assert!(first["actorId"].is_string());
    assert_eq!(first["stockId"], created["stockId"]);

    // No stock, no movement; defaults apply.
    let bare = create(
        &app,
        &token,
        json!({ "sku": "PLATE", "name": "Plate", "unitPrice": 0, "currency": "JPY" }),
    )
    .await;
    assert_eq!(
        (
            &bare["available"],
            &bare["price"],
            &bare["description"],
            &bare["images"]
        ),
        (&json!(0), &json!("0"), &json!(""), &json!([]))
    );
    let none = json_ok(
        call(
            &app,
            Method::GET,
            &format!("/products/{}/stock/movements", bare["id"].as_str().unwrap()),
            &token,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(none["total"], 0);

    // The admin list holds inactive products too, paginated oldest first.
    create(
        &app,
        &token,
        json!({ "sku": "OLD", "name": "Old", "unitPrice": 1, "currency": "EUR", "active": false }),
    )
    .await;
    let page = json_ok(
        call(&app, Method::GET, "/products?perPage=2", &token, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (&page["total"], skus(&page)),
        (&json!(3), vec!["MUG-1", "PLATE"])
    );
    let page2 = json_ok(
        call(
            &app,
            Method::GET,
            "/products?perPage=2&page=2",
            &token,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(skus(&page2), ["OLD"]);
    assert_eq!(page2["items"][0]["active"], false);

    let missing = call(
        &app,
        Method::GET,
        "/products/00000000-0000-0000-0000-00000000dead",
        &token,
        None,
    )
    .await;
    assert_error(missing, StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND").await;
}

async fn bad_product_input_is_refused(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let token = admin(&app, None).await;
    create(&app, &token, product("SKU-1", 100, "EUR", 0)).await;

    // Act + Assert: the same sku again is a conflict.
    let dup = call(
        &app,
        Method::POST,
        "/products",
        &token,
        Some(product("SKU-1", 200, "USD", 1)),
    )
    .await;
    let body = assert_error(dup, StatusCode::CONFLICT, "SKU_TAKEN").await;
    assert_eq!(body["error"]["details"]["sku"], "SKU-1");

    // Field by field: 422 VALIDATION_FAILED naming the field.
    let base = product("NEW", 100, "EUR", 0);
    for (field, value, expected) in [
        ("currency", json!("eur"), "currency"),
        ("currency", json!("EURO"), "currency"),
        ("unitPrice", json!(-1), "unitPrice"),
        ("initialStock", json!(-5), "initialStock"),
        ("sku", json!("has space"), "sku"),
        ("sku", json!(""), "sku"),
        ("name", json!("   "), "name"),
        ("images", json!(["not a url"]), "images"),
        ("images", json!(["ftp://files.example/a.png"]), "images"),
        ("description", json!("x".repeat(5001)), "description"),
    ] {
        let mut body = base.clone();
        body[field] = value;
        let response = call(&app, Method::POST, "/products", &token, Some(body)).await;
        let error = assert_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(error["error"]["details"]["field"], expected);
    }
    // Shape errors: floats for money, unknown or missing fields.
    for body in [
        json!({ "sku": "F", "name": "F", "unitPrice": 12.5, "currency": "EUR" }),
        json!({ "sku": "F", "name": "F", "unitPrice": 1, "currency": "EUR", "colour": "red" }),
        json!({ "sku": "F", "name": "F", "currency": "EUR" }),
    ] {
        let response = call(&app, Method::POST, "/products", &token, Some(body)).await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY").await;
    }
    // Nothing of the refused requests was written.
    let page = json_ok(
        call(&app, Method::GET, "/products", &token, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(skus(&page), ["SKU-1"]);
    assert_eq!(page["items"][0]["unitPrice"], 100);
}

async fn patch_and_deactivate_products(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let token = admin(&app, None).await;
    let created = create(&app, &token, product("CUP", 1999, "EUR", 3)).await;
    let path = format!("/products/{}", created["id"].as_str().unwrap());

    // Act
    let patched = call(
        &app,
        Method::PATCH,
        &path,
        &token,
        Some(
            json!({ "name": "Tea cup", "unitPrice": 1500, "currency": "JPY",
                     "images": ["http://img.example/cup.jpg"], "description": "Porcelain" }),
        ),
    )
    .await;

    // Assert
    let patched = json_ok(patched, StatusCode::OK).await;
    assert_eq!(patched["name"], "Tea cup");
    assert_eq!(
        (&patched["unitPrice"], &patched["price"]),
        (&json!(1500), &json!("1500"))
    );
    assert_eq!(patched["images"], json!(["http://img.example/cup.jpg"]));
    assert_eq!(patched["description"], "Porcelain");
    // Untouched: sku, stock, active.
    assert_eq!(
        (&patched["sku"], &patched["available"], &patched["active"]),
        (&json!("CUP"), &json!(3), &json!(true))
    );
    let bad = call(
        &app,
        Method::PATCH,
        &path,
        &token,
        Some(json!({ "currency": "yen" })),
    )
    .await;
    assert_error(bad, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let sku_change = call(
        &app,
        Method::PATCH,
        &path,
        &token,
        Some(json!({ "sku": "X" })),
    )
    .await;
    assert_error(sku_change, StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY").await;

    // Deactivation is idempotent and takes the product off the showcase.
    let public = format!(
        "/stock/products-with-stock/{}",
        created["id"].as_str().unwrap()
    );
    json_ok(showcase(&app, &public, None).await, StatusCode::OK).await;
    let off = json_ok(
        call(
            &app,
            Method::POST,
            &format!("{path}/deactivate"),
            &token,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(off["active"], false);
    app.clock.advance_ms(5_000);
    let again = json_ok(
        call(
            &app,
            Method::POST,
            &format!("{path}/deactivate"),
            &token,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["active"], false);
    assert_eq!(
        again["updatedAt"], off["updatedAt"],
        "a no-op changes nothing"
    );
    assert_error(
        showcase(&app, &public, None).await,
        StatusCode::NOT_FOUND,
        "PRODUCT_NOT_FOUND",
    )
    .await;
    // Reactivation goes through PATCH.
    let on = json_ok(
        call(
            &app,
            Method::PATCH,
            &path,
            &token,
            Some(json!({ "active": true })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(on["active"], true);
    json_ok(showcase(&app, &public, None).await, StatusCode::OK).await;

    let missing = call(
        &app,
        Method::PATCH,
        "/products/nope",
        &token,
        Some(json!({ "name": "x" })),
    )
    .await;
    assert_error(missing, StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND").await;
    let missing = call(
        &app,
        Method::POST,
        "/products/nope/deactivate",
        &token,
        None,
    )
    .await;
    assert_error(missing, StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND").await;
}

async fn stock_receive_and_adjust_keep_an_audit_trail(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let token = admin(&app, None).await;
    let created = create(&app, &token, product("BOX", 500, "EUR", 5)).await;
    let path = format!("/products/{}", created["id"].as_str().unwrap());
    let receive = format!("{path}/stock/receive");
    let adjust = format!("{path}/stock/adjust");

    // Act + Assert: receiving adds to available and received and bumps the version.
    app.clock.advance_ms(1);
    let received = json_ok(
        call(
            &app,
            Method::POST,
            &receive,
            &token,
            Some(json!({ "quantity": 10, "reason": "delivery 42" })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (
            &received["available"],
            &received["received"],
            &received["version"]
        ),
        (&json!(15), &json!(15), &json!(1))
    );
    assert_eq!(received["stockId"], created["stockId"]);
    assert_eq!(received["productId"], created["id"]);

    app.clock.advance_ms(1);
    let adjusted = json_ok(
        call(
            &app,
            Method::POST,
            &adjust,
            &token,
            Some(json!({ "delta": -3, "reason": "broken in the warehouse" })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (
            &adjusted["available"],
            &adjusted["received"],
            &adjusted["version"]
        ),
        (&json!(12), &json!(12), &json!(2))
    );

    // More than available: refused, nothing changes.
    let too_much = call(
        &app,
        Method::POST,
        &adjust,
        &token,
        Some(json!({ "delta": -13, "reason": "count" })),
    )
    .await;
    let error = assert_error(too_much, StatusCode::CONFLICT, "INSUFFICIENT_STOCK").await;
    assert_eq!(error["error"]["details"]["available"], 12);
    // Invalid changes.
    for (url, body, code) in [
        (&receive, json!({ "quantity": 0 }), "VALIDATION_FAILED"),
        (&receive, json!({ "quantity": -4 }), "VALIDATION_FAILED"),
        (
            &adjust,
            json!({ "delta": 0, "reason": "x" }),
            "VALIDATION_FAILED",
        ),
        (
            &adjust,
            json!({ "delta": 2, "reason": "  " }),
            "VALIDATION_FAILED",
        ),
        (
            &adjust,
            json!({ "delta": 2, "reason": "r".repeat(501) }),
            "VALIDATION_FAILED",
        ),
        (&adjust, json!({ "delta": 2 }), "INVALID_BODY"),
        (&receive, json!({ "quantity": 1.5 }), "INVALID_BODY"),
    ] {
        let response = call(&app, Method::POST, url, &token, Some(body)).await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, code).await;
    }
    let unknown = call(
        &app,
        Method::POST,
        "/products/nope/stock/receive",
        &token,
        Some(json!({ "quantity": 1 })),
    )
    .await;
    assert_error(unknown, StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND").await;
    let unknown = call(
        &app,
        Method::POST,
        "/products/nope/stock/adjust",
        &token,
        Some(json!({ "delta": -1, "reason": "x" })),
    )
    .await;
    assert_error(unknown, StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND").await;

    let after = json_ok(
        call(&app, Method::GET, &path, &token, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (&after["available"], &after["stockVersion"]),
        (&json!(12), &json!(2))
    );

    // The audit trail, newest first, paginated.
    let movements = json_ok(
        call(
            &app,
            Method::GET,
            &format!("{path}/stock/movements?perPage=2"),
            &token,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(movements["total"], 3);
    let items = movements["items"].as_array().unwrap();
    assert_eq!(
        (
            &items[0]["kind"],
            &items[0]["quantity"],
            &items[0]["reason"]
        ),
        (
            &json!("adjust"),
            &json!(-3),
            &json!("broken in the warehouse")
        )
    );
    assert_eq!(
        (
            &items[1]["kind"],
            &items[1]["quantity"],
            &items[1]["reason"]
        ),
        (&json!("receive"), &json!(10), &json!("delivery 42"))
    );
    let older = json_ok(
        call(
            &app,
            Method::GET,
            &format!("{path}/stock/movements?perPage=2&page=2"),
            &token,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(older["items"][0]["quantity"], 5);
    assert_eq!(older["items"][0]["reason"], "initial stock");
    let missing = call(
        &app,
        Method::GET,
        "/products/nope/stock/movements",
        &token,
        None,
    )
    .await;
    assert_error(missing, StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND").await;
}

async fn concurrent_adjustments_never_drive_stock_negative(backend: Backend) {
    // Arrange: 5 units, 12 concurrent removals of one unit each.
    let app = spawn_app(backend).await;
    let token = admin(&app, None).await;
    let created = create(&app, &token, product("HOT", 100, "EUR", 5)).await;
    let path = format!("/products/{}", created["id"].as_str().unwrap());
    let adjust = format!("{path}/stock/adjust");

    // Act
    let client = new_client();
    let attempts: Vec<_> = (0..12)
        .map(|_| {
            let request = client
                .post(app.url(&adjust))
                .bearer_auth(&token)
                .json(&json!({ "delta": -1, "reason": "flash sale" }));
            tokio::spawn(async move { request.send().await.expect("request").status() })
        })
        .collect();
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.expect("task"));
    }

    // Assert: exactly five succeed; the stock ends at zero, never below.
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((ok, refused), (5, 7), "{statuses:?}");
    let after = json_ok(
        call(&app, Method::GET, &path, &token, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (
            &after["available"],
            &after["received"],
            &after["stockVersion"]
        ),
        (&json!(0), &json!(0), &json!(5))
    );
    let movements = json_ok(
        call(
            &app,
            Method::GET,
            &format!("{path}/stock/movements"),
            &token,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(movements["total"], 6);
}

async fn customers_are_forbidden_and_anonymous_callers_unauthenticated(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let token = admin(&app, None).await;
    let created = create(&app, &token, product("P", 1, "EUR", 1)).await;
    let id = created["id"].as_str().unwrap();
    app.register("buyer@example.com", None).await;
    let (_, customer) = app.login_as("buyer@example.com", None).await;
    let routes = [
        (
            Method::POST,
            "/products".to_owned(),
            Some(product("Q", 1, "EUR", 0)),
        ),
        (Method::GET, "/products".to_owned(), None),
        (Method::GET, format!("/products/{id}"), None),
        (
            Method::PATCH,
            format!("/products/{id}"),
            Some(json!({ "name": "x" })),
        ),
        (Method::POST, format!("/products/{id}/deactivate"), None),
        (
            Method::POST,
            format!("/products/{id}/stock/receive"),
            Some(json!({ "quantity": 1 })),
        ),
        (
            Method::POST,
            format!("/products/{id}/stock/adjust"),
            Some(json!({ "delta": -1, "reason": "x" })),
        ),
        (Method::GET, format!("/products/{id}/stock/movements"), None),
    ];

    for (method, path, body) in routes {
        // Act + Assert
        let response = call(&app, method.clone(), &path, &customer, body.clone()).await;
        assert_error(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
        let mut anonymous = new_client().request(method, app.url(&path));
        if let Some(body) = body {
            anonymous = anonymous.json(&body);
        }
        let response = anonymous.send().await.unwrap();
        assert_error(response, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    }
    // Nothing changed.
    let after = json_ok(
        call(&app, Method::GET, &format!("/products/{id}"), &token, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (&after["name"], &after["available"], &after["active"]),
        (&created["name"], &json!(1), &json!(true))
    );
}

async fn tenants_never_see_each_other(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    app.tenant("north").await;
    app.tenant("south").await;
    let north = admin(&app, Some("north")).await;
    let south = admin(&app, Some("south")).await;
    let operator = app
        .user_with_role("ops@example.com", Role::Operator, None)
        .await;
    let created = create(&app, &north, product("SHARED-SKU", 100, "EUR", 4)).await;
    let id = created["id"].as_str().unwrap();

    // Act + Assert: for south, north's product does not exist.
    for (method, path, body) in [
        (Method::GET, format!("/products/{id}"), None),
        (
            Method::PATCH,
            format!("/products/{id}"),
            Some(json!({ "name": "mine" })),
        ),
        (Method::POST, format!("/products/{id}/deactivate"), None),
        (
            Method::POST,
            format!("/products/{id}/stock/receive"),
            Some(json!({ "quantity": 1 })),
        ),
        (
            Method::POST,
            format!("/products/{id}/stock/adjust"),
            Some(json!({ "delta": -4, "reason": "steal" })),
        ),
        (Method::GET, format!("/products/{id}/stock/movements"), None),
    ] {
        let response = call(&app, method, &path, &south, body).await;
        assert_error(response, StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND").await;
    }
    // Naming north explicitly is a 404 for a south admin.
    let named = call(&app, Method::GET, "/products?tenant=north", &south, None).await;
    assert_error(named, StatusCode::NOT_FOUND, "TENANT_NOT_FOUND").await;
    // Skus are unique per tenant only.
    create(&app, &south, product("SHARED-SKU", 999, "USD", 0)).await;
    let south_page = json_ok(
        call(&app, Method::GET, "/products", &south, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (&south_page["total"], &south_page["items"][0]["unitPrice"]),
        (&json!(1), &json!(999))
    );

    // Operators act on any tenant with ?tenant=.
    let as_operator = json_ok(
        call(
            &app,
            Method::POST,
            &format!("/products/{id}/stock/receive?tenant=north"),
            &operator,
            Some(json!({ "quantity": 2 })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(as_operator["available"], 6);
    let operator_created = json_ok(
        call(
            &app,
            Method::POST,
            "/products?tenant=north",
            &operator,
            Some(product("OPS", 1, "EUR", 0)),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    // Without ?tenant=, the operator's own (default) tenant holds nothing of north's.
    let own = json_ok(
        call(&app, Method::GET, "/products", &operator, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(own["total"], 0);
    let unknown = call(
        &app,
        Method::GET,
        "/products?tenant=nowhere",
        &operator,
        None,
    )
    .await;
    assert_error(unknown, StatusCode::NOT_FOUND, "TENANT_NOT_FOUND").await;

    // The showcase follows X-Tenant.
    let north_page = json_ok(
        showcase(&app, "/stock/products-with-stock", Some("north")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(skus(&north_page), ["SHARED-SKU", "OPS"]);
    assert_eq!(north_page["items"][0]["available"], 6);
    assert_eq!(north_page["items"][1]["id"], operator_created["id"]);
    let south_page = json_ok(
        showcase(&app, "/stock/products-with-stock", Some("SOUTH")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(south_page["items"][0]["unitPrice"], 999);
    let default_page = json_ok(
        showcase(&app, "/stock/products-with-stock", None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(default_page["total"], 0);
    let public = format!("/stock/products-with-stock/{id}");
    json_ok(showcase(&app, &public, Some("north")).await, StatusCode::OK).await;
    assert_error(
        showcase(&app, &public, Some("south")).await,
        StatusCode::NOT_FOUND,
        "PRODUCT_NOT_FOUND",
    )
    .await;
    assert_error(
        showcase(&app, &public, None).await,
        StatusCode::NOT_FOUND,
        "PRODUCT_NOT_FOUND",
    )
    .await;
    assert_error(
        showcase(&app, "/stock/products-with-stock", Some("nowhere")).await,
        StatusCode::NOT_FOUND,
        "TENANT_NOT_FOUND",
    )
    .await;
    // North's product is intact.
    let intact = json_ok(
        call(&app, Method::GET, &format!("/products/{id}"), &north, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (&intact["name"], &intact["active"], &intact["available"]),
        (&created["name"], &json!(true), &json!(6))
    );
}

async fn showcase_filters_paginates_and_formats_prices(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let token = admin(&app, None).await;
    let eur = create(&app, &token, product("EUR-1", 1250, "EUR", 3)).await;
    create(&app, &token, product("JPY-0", 1250, "JPY", 0)).await;
    create(&app, &token, product("KWD-1", 1250, "KWD", 7)).await;
    let off = create(&app, &token, product("OFF", 5, "USD", 9)).await;
    call(
        &app,
        Method::POST,
        &format!("/products/{}/deactivate", off["id"].as_str().unwrap()),
        &token,
        None,
    )
    .await;

    // Act
    let default = json_ok(
        showcase(&app, "/stock/products-with-stock", None).await,
        StatusCode::OK,
    )
    .await;

    // Assert: active products only, out-of-stock ones included, prices as decimals.
    assert_eq!(skus(&default), ["EUR-1", "JPY-0", "KWD-1"]);
    assert_eq!(default["total"], 3);
    let prices: Vec<&str> = default["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["price"].as_str().unwrap())
        .collect();
    assert_eq!(prices, ["12.50", "1250", "1.250"]);
    let item = default["items"][0].as_object().unwrap();
    let mut keys: Vec<&str> = item.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "active",
            "available",
            "currency",
            "description",
            "id",
            "images",
            "name",
            "price",
            "reserved",
            "sku",
            "stockId",
            "unitPrice"
        ]
    );
    assert_eq!(
        (
            &item["id"],
            &item["stockId"],
            &item["available"],
            &item["reserved"]
        ),
        (&eur["id"], &eur["stockId"], &json!(3), &json!(0))
    );

    let in_stock = json_ok(
        showcase(&app, "/stock/products-with-stock?inStock=true", None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(skus(&in_stock), ["EUR-1", "KWD-1"]);
    let everything = json_ok(
        showcase(&app, "/stock/products-with-stock?active=false", None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(skus(&everything), ["EUR-1", "JPY-0", "KWD-1", "OFF"]);
    let both = json_ok(
        showcase(
            &app,
            "/stock/products-with-stock?active=false&inStock=true&perPage=2&page=2",
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (&both["total"], &both["page"], &both["perPage"], skus(&both)),
        (&json!(3), &json!(2), &json!(2), vec!["OFF"])
    );

    let one = json_ok(
        showcase(
            &app,
            &format!("/stock/products-with-stock/{}", eur["id"].as_str().unwrap()),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(one, default["items"][0]);
    assert_error(
        showcase(&app, "/stock/products-with-stock/unknown-id", None).await,
        StatusCode::NOT_FOUND,
        "PRODUCT_NOT_FOUND",
    )
    .await;
    assert_error(
        showcase(&app, "/stock/products-with-stock?inStock=maybe", None).await,
        StatusCode::BAD_REQUEST,
        "INVALID_QUERY",
    )
    .await;
}

const BIN: &str = env!("CARGO_BIN_EXE_orderhost-under-test");

/// Runs `orderhost catalog import <file> [args]` on the app's database.
async fn import(app: &TestApp, file: &std::path::Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.state.config.store.database_url)
        .env("ORDERHOST_LOG_DIR", "")
        .env("ORDERHOST_LOG", "warn")
        .args(["catalog", "import"])
        .arg(file)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("the binary runs")
}

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn all_products(app: &TestApp, tenant: Option<&str>) -> Value {
    json_ok(
        showcase(app, "/stock/products-with-stock?active=false", tenant).await,
        StatusCode::OK,
    )
    .await
}

async fn catalog_import_is_idempotent_by_sku(backend: Backend) {
    // Arrange: a running app whose database the command writes to.
    let app = spawn_app(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("products.csv");
    std::fs::write(
        &csv,
        "sku,name,unit_price,currency,stock,description,active\n\
         MUG,Mug,1250,EUR,10,\"Blue, large\",true\n\
         CUP,Cup,300,JPY,4,,false\n",
    )
    .unwrap();

    // Act
    let first = stdout(&import(&app, &csv, &[]).await);

    // Assert
    assert!(first.contains("2 created, 0 updated"), "{first}");
    let page = all_products(&app, None).await;
    assert_eq!(skus(&page), ["MUG", "CUP"]);
    let mug = &page["items"][0];
    assert_eq!(
        (
            &mug["available"],
            &mug["price"],
            &mug["description"],
            &mug["active"]
        ),
        (
            &json!(10),
            &json!("12.50"),
            &json!("Blue, large"),
            &json!(true)
        )
    );
    assert_eq!(
        (&page["items"][1]["available"], &page["items"][1]["active"]),
        (&json!(4), &json!(false))
    );

    // Act: the same skus again with new prices and stock, plus a new one; the optional
    // columns left out of this file keep their values.
    std::fs::write(
        &csv,
        "currency,sku,unit_price,name,stock\n\
         EUR,MUG,1400,Mug XL,99\n\
         JPY,CUP,350,Cup,99\n\
         USD,NEW,100,New thing,2\n",
    )
    .unwrap();
    let second = stdout(&import(&app, &csv, &[]).await);

    // Assert: updated, not restocked.
    assert!(second.contains("1 created, 2 updated"), "{second}");
    let page = all_products(&app, None).await;
    assert_eq!(skus(&page), ["MUG", "CUP", "NEW"]);
    let mug = &page["items"][0];
    assert_eq!(
        (
            &mug["name"],
            &mug["unitPrice"],
            &mug["available"],
            &mug["description"]
        ),
        (
            &json!("Mug XL"),
            &json!(1400),
            &json!(10),
            &json!("Blue, large")
        )
    );
    assert_eq!(
        (
            &page["items"][1]["unitPrice"],
            &page["items"][1]["available"],
            &page["items"][1]["active"]
        ),
        (&json!(350), &json!(4), &json!(false))
    );
    assert_eq!(page["items"][2]["available"], 2);

    // JSON, into another tenant, twice.
    app.tenant("shop").await;
    let json_file = dir.path().join("shop.JSON");
    std::fs::write(
        &json_file,
        r#"[{"sku": "MUG", "name": "Shop mug", "unitPrice": 990, "currency": "KWD", "stock": 3},
            {"sku": "TEA", "name": "Tea", "unitPrice": 5, "currency": "EUR", "description": "Green", "active": true}]"#,
    )
    .unwrap();
    let third = stdout(&import(&app, &json_file, &["--tenant", "shop"]).await);
    assert!(third.contains("2 created, 0 updated"), "{third}");
    let again = stdout(&import(&app, &json_file, &["--tenant", "shop"]).await);
    assert!(again.contains("0 created, 2 updated"), "{again}");
    let shop = all_products(&app, Some("shop")).await;
    assert_eq!(skus(&shop), ["MUG", "TEA"]);
    assert_eq!(
        (&shop["items"][0]["price"], &shop["items"][0]["available"]),
        (&json!("0.990"), &json!(3))
    );
    // The default tenant's MUG is untouched by the shop's import.
    assert_eq!(
        all_products(&app, None).await["items"][0]["unitPrice"],
        1400
    );

    // An unknown tenant is refused.
    let unknown = import(&app, &json_file, &["--tenant", "nowhere"]).await;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nowhere"));
}

async fn catalog_import_of_a_bad_file_writes_nothing(backend: Backend) {
    // Arrange: the first record is valid, the second is not.
    let app = spawn_app(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bad.csv");
    std::fs::write(
        &csv,
        "sku,name,unit_price,currency\nGOOD,Good,100,EUR\nBAD,Bad,12.50,EUR\n",
    )
    .unwrap();

    // Act
    let output = import(&app, &csv, &[]).await;

    // Assert
    assert_ne!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.csv"), "{stderr}");
    assert!(stderr.contains("line 3, field unit_price"), "{stderr}");
    assert!(stderr.contains("nothing imported"), "{stderr}");
    assert_eq!(all_products(&app, None).await["total"], 0);

    // The same for JSON: record 2 misses its name.
    let json_file = dir.path().join("bad.json");
    std::fs::write(
        &json_file,
        r#"[{"sku": "A", "name": "A", "unitPrice": 1, "currency": "EUR"},
            {"sku": "B", "unitPrice": 1, "currency": "EUR"}]"#,
    )
    .unwrap();
    let output = import(&app, &json_file, &[]).await;
    assert_ne!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.json"), "{stderr}");
    assert!(
        stderr.contains("record 2, field name: required"),
        "{stderr}"
    );
    assert_eq!(all_products(&app, None).await["total"], 0);

    // Neither CSV nor JSON.
    let other = dir.path().join("products.txt");
    std::fs::write(&other, "sku\n").unwrap();
    let output = import(&app, &other, &[]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains(".csv or .json"));
}

/// The tenant's products as its admin lists them (attributes included), by sku.
async fn admin_products(app: &TestApp, token: &str) -> std::collections::BTreeMap<String, Value> {
    let page = json_ok(
        call(app, Method::GET, "/products?perPage=100", token, None).await,
        StatusCode::OK,
    )
    .await;
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| (p["sku"].as_str().expect("sku").to_owned(), p.clone()))
        .collect()
}

/// (tags, vendor, category) of a product view.
fn attributes(view: &Value) -> (Value, Value, Value) {
    (
        view["tags"].clone(),
        view["vendor"].clone(),
        view["category"].clone(),
    )
}

async fn products_carry_tags_vendor_and_category(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let token = admin(&app, None).await;

    // Act: one product with attributes (as a client might write them), one without.
    let mut body = product("MUG", 1250, "EUR", 5);
    body["tags"] = json!(["Sale", " new ", "sale", "eu:de"]);
    body["vendor"] = json!("  Acme Ceramics ");
    body["category"] = json!("Kitchen / Mugs");
    let mug = create(&app, &token, body).await;
    let plain = create(&app, &token, product("PLAIN", 100, "EUR", 0)).await;

    // Assert: normalized tags, trimmed vendor and category; none on the other.
    assert_eq!(
        attributes(&mug),
        (
            json!(["eu:de", "new", "sale"]),
            json!("Acme Ceramics"),
            json!("Kitchen / Mugs")
        )
    );
    assert_eq!(attributes(&plain), (json!([]), Value::Null, Value::Null));
    let path = format!("/products/{}", mug["id"].as_str().unwrap());
    let got = json_ok(
        call(&app, Method::GET, &path, &token, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(attributes(&got), attributes(&mug));
    let listed = admin_products(&app, &token).await;
    assert_eq!(attributes(&listed["MUG"]), attributes(&mug));
    assert_eq!(attributes(&listed["PLAIN"]), attributes(&plain));

    // Act + Assert: PATCH replaces the tags and leaves what it does not name.
    let patched = json_ok(
        call(
            &app,
            Method::PATCH,
            &path,
            &token,
            Some(json!({ "tags": ["Clearance"], "vendor": "Acme" })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        attributes(&patched),
        (json!(["clearance"]), json!("Acme"), json!("Kitchen / Mugs"))
    );
    // Other changes keep the attributes.
    let priced = json_ok(
        call(
            &app,
            Method::PATCH,
            &path,
            &token,
            Some(json!({ "unitPrice": 1300 })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(attributes(&priced), attributes(&patched));
    // `[]` and `""` remove them.
    let cleared = json_ok(
        call(
            &app,
            Method::PATCH,
            &path,
            &token,
            Some(json!({ "tags": [], "vendor": "", "category": "  " })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(attributes(&cleared), (json!([]), Value::Null, Value::Null));
    // And set them again from nothing, at the limits.
    let most: Vec<String> = (0..32).map(|i| format!("t{i:02}")).collect();
    let full = json_ok(
        call(
            &app,
            Method::PATCH,
            &path,
            &token,
            Some(json!({ "tags": most, "vendor": "v".repeat(128), "category": "Tea" })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        attributes(&full),
        (json!(most), json!("v".repeat(128)), json!("Tea"))
    );
}

async fn bad_product_attributes_are_refused_with_their_field(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let token = admin(&app, None).await;
    let mut body = product("KEPT", 100, "EUR", 0);
    body["tags"] = json!(["kept"]);
    body["vendor"] = json!("Kept vendor");
    let kept = create(&app, &token, body).await;
    let path = format!("/products/{}", kept["id"].as_str().unwrap());

    // Act + Assert: on create and on update, 422 VALIDATION_FAILED naming the field.
    let too_many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
    for (field, value, problem) in [
        ("tags", json!(too_many), "33 distinct tags; at most 32"),
        ("tags", json!(["x".repeat(65)]), "tag 1 has 65 characters"),
        (
            "tags",
            json!(["ok", "big sale"]),
            "tag 2 (\"big sale\") holds ' '",
        ),
        ("tags", json!(["50%"]), "holds '%'"),
        ("tags", json!([""]), "tag 1 has 0 characters"),
        ("vendor", json!("v".repeat(129)), "1-128 characters"),
        ("category", json!("c".repeat(129)), "1-128 characters"),
        ("category", json!("two\nlines"), "control character"),
        ("vendor", json!("tab\there"), "control character"),
    ] {
        let mut create_body = product("NEW", 100, "EUR", 0);
        create_body[field] = value.clone();
        let patch_body = json!({ field: value });
        for (method, path, body) in [
            (Method::POST, "/products", create_body),
            (Method::PATCH, path.as_str(), patch_body),
        ] {
            let response = call(&app, method.clone(), path, &token, Some(body)).await;
            let error = assert_error(
                response,
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_FAILED",
            )
            .await;
            assert_eq!(
                error["error"]["details"]["field"], field,
                "{method} {error}"
            );
            let said = error["error"]["details"]["problem"].as_str().unwrap();
            assert!(
                said.contains(problem),
                "{method}: {problem:?} not in {said:?}"
            );
        }
    }
    // Wrong shapes are the body's error.
    for (field, value) in [
        ("tags", json!("sale")),
        ("tags", json!([7])),
        ("vendor", json!(["Acme"])),
        ("category", json!(3)),
    ] {
        let mut create_body = product("NEW", 100, "EUR", 0);
        create_body[field] = value.clone();
        let response = call(&app, Method::POST, "/products", &token, Some(create_body)).await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY").await;
        let response = call(
            &app,
            Method::PATCH,
            &path,
            &token,
            Some(json!({ field: value })),
        )
        .await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY").await;
    }

    // Nothing of the refused requests was written.
    let listed = admin_products(&app, &token).await;
    assert_eq!(listed.keys().collect::<Vec<_>>(), ["KEPT"]);
    assert_eq!(
        attributes(&listed["KEPT"]),
        (json!(["kept"]), json!("Kept vendor"), Value::Null)
    );
}

async fn catalog_import_reads_tags_vendor_and_category_and_old_files(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let token = admin(&app, None).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("products.csv");
    std::fs::write(
        &csv,
        "sku,name,unit_price,currency,stock,tags,vendor,category\n\
         MUG,Mug,1250,EUR,10,Sale|New| sale ,Acme Ceramics,Kitchen\n\
         CUP,Cup,300,EUR,4,,,\n\
         \"PLATE\",Plate,500,EUR,1,\"b2b|eu:de\",\"Plates, Inc.\",\n",
    )
    .unwrap();

    // Act
    let first = stdout(&import(&app, &csv, &[]).await);

    // Assert
    assert!(first.contains("3 created, 0 updated"), "{first}");
    let listed = admin_products(&app, &token).await;
    assert_eq!(
        attributes(&listed["MUG"]),
        (
            json!(["new", "sale"]),
            json!("Acme Ceramics"),
            json!("Kitchen")
        )
    );
    assert_eq!(
        attributes(&listed["CUP"]),
        (json!([]), Value::Null, Value::Null)
    );
    assert_eq!(
        attributes(&listed["PLATE"]),
        (json!(["b2b", "eu:de"]), json!("Plates, Inc."), Value::Null)
    );

    // Act: an old-format file (no attribute columns) updates the same skus and adds one.
    std::fs::write(
        &csv,
        "sku,name,unit_price,currency,stock,description,active\n\
         MUG,Mug XL,1400,EUR,99,,\n\
         OLD,Old style,100,EUR,2,,true\n",
    )
    .unwrap();
    let second = stdout(&import(&app, &csv, &[]).await);

    // Assert: the attributes it does not name are kept; the new sku has none.
    assert!(second.contains("1 created, 1 updated"), "{second}");
    let listed = admin_products(&app, &token).await;
    assert_eq!(listed["MUG"]["name"], "Mug XL");
    assert_eq!(
        attributes(&listed["MUG"]),
        (
            json!(["new", "sale"]),
            json!("Acme Ceramics"),
            json!("Kitchen")
        )
    );
    assert_eq!(
        attributes(&listed["OLD"]),
        (json!([]), Value::Null, Value::Null)
    );

    // Act: JSON replaces the tags, removes a vendor with "", keeps a category on null.
    let json_file = dir.path().join("products.json");
    std::fs::write(
        &json_file,
        r#"[{"sku": "MUG", "name": "Mug", "unitPrice": 1250, "currency": "EUR",
             "tags": ["Clearance"], "vendor": "", "category": null},
            {"sku": "TEA", "name": "Tea", "unitPrice": 5, "currency": "EUR",
             "tags": ["b2b"], "vendor": "Leaf & Co", "category": "Tea"}]"#,
    )
    .unwrap();
    let third = stdout(&import(&app, &json_file, &[]).await);

    // Assert
    assert!(third.contains("1 created, 1 updated"), "{third}");
    let listed = admin_products(&app, &token).await;
    assert_eq!(
        attributes(&listed["MUG"]),
        (json!(["clearance"]), Value::Null, json!("Kitchen"))
    );
    assert_eq!(
        attributes(&listed["TEA"]),
        (json!(["b2b"]), json!("Leaf & Co"), json!("Tea"))
    );

    // A bad tag, too many tags or too long a vendor stop the whole file.
    let many = (0..33)
        .map(|i| format!("t{i}"))
        .collect::<Vec<_>>()
        .join("|");
    std::fs::write(
        &csv,
        format!(
            "sku,name,unit_price,currency,tags,vendor\n\
             GOOD,Good,100,EUR,fine,\n\
             BAD1,Bad,100,EUR,big sale,\n\
             BAD2,Bad,100,EUR,{many},\n\
             BAD3,Bad,100,EUR,,{}\n",
            "v".repeat(129)
        ),
    )
    .unwrap();
    let output = import(&app, &csv, &[]).await;
    assert_ne!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("3 problem(s), nothing imported"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 3, field tags: tag 1 (\"big sale\") holds ' '"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 4, field tags: 33 distinct tags; at most 32"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 5, field vendor: 1-128 characters"),
        "{stderr}"
    );
    assert!(!admin_products(&app, &token).await.contains_key("GOOD"));
}

async fn the_order_read_carries_customer_tags_and_product_attributes(backend: Backend) {
    use orderhost::{
        catalog::lookup::LineRef, orders::reader::ReadRequest, store::DEFAULT_TENANT_ID,
    };

    // Arrange: a tagged customer and an untagged one; a product with attributes, and one
    // written as rows were before the attributes existed.
    let app = spawn_app(backend).await;
    let token = admin(&app, None).await;
    let mut body = product("MUG", 1250, "EUR", 5);
    body["tags"] = json!(["sale", "b2b"]);
    body["vendor"] = json!("Acme");
    body["category"] = json!("Kitchen");
    create(&app, &token, body).await;
    let (_, plain_stock) = app.seed_product(None, "PLAIN", 100, 5).await;
    let tagged = json_ok(
        app.register("vip@example.com", None).await,
        StatusCode::CREATED,
    )
    .await;
    let untagged = json_ok(
        app.register("new@example.com", None).await,
        StatusCode::CREATED,
    )
    .await;
    json_ok(
        call(
            &app,
            Method::PATCH,
            "/users/vip@example.com",
            &token,
            Some(json!({ "tags": ["Wholesale", "b2b-gold"] })),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    // Act: both customers' reads at once, as the order path makes them.
    let read = |user: &Value| ReadRequest {
        user_id: user["id"].as_str().unwrap().to_owned(),
        tenant_id: DEFAULT_TENANT_ID.to_owned(),
        refs: vec![
            LineRef::Sku("MUG".to_owned()),
            LineRef::Stock(plain_stock.clone()),
        ],
        now_ms: 1_800_000_000_000,
    };
    let reader = &app.state.order_reader;
    let (first, second) = tokio::join!(reader.read(read(&tagged)), reader.read(read(&untagged)));
    let (customer, lines) = first.expect("the tagged customer's read");
    let (other, other_lines) = second.expect("the untagged customer's read");

    // Assert
    assert_eq!(customer.tags, ["b2b-gold", "wholesale"]);
    assert!(other.tags.is_empty());
    let mug = lines[0].as_ref().expect("MUG is found");
    assert_eq!(
        (&mug.tags, mug.vendor.as_deref(), mug.category.as_deref()),
        (
            &vec!["b2b".to_owned(), "sale".to_owned()],
            Some("Acme"),
            Some("Kitchen")
        )
    );
    let plain = lines[1].as_ref().expect("PLAIN is found");
    assert_eq!(
        (&plain.tags, &plain.vendor, &plain.category),
        (&Vec::<String>::new(), &None, &None)
    );
    assert_eq!(other_lines, lines);

    // The order path itself still accepts and confirms an order of them.
    let (client, _) = app.login_as("vip@example.com", None).await;
    let order = client
        .post(app.url("/order"))
        .header(reqwest::header::ORIGIN, app.origin())
        .json(&json!({ "lines": [{ "sku": "MUG", "quantity": 1 },
                                 { "stockId": plain_stock, "quantity": 1 }] }))
        .send()
        .await
        .unwrap();
    let order = json_ok(order, StatusCode::ACCEPTED).await;
    assert_eq!(order["total"], 1350);
}
