//! Hostile and old clients: one test per class of defect found by probing the running
//! service black-box — control characters, the original service's request shapes, price
//! ceilings, lying and stalled bodies, idempotency after edge rejections, lookalike
//! identifiers, stale roles, client request ids, refresh races, and the small ones.

use std::time::{Duration, Instant};

use orderhost::auth::Role;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{
    backend_tests,
    helpers::{
        Backend, PASSWORD, TestApp, assert_error, json_ok, new_client, spawn_app, spawn_app_with,
    },
};

backend_tests!(
    control_characters_never_reach_the_database,
    original_clients_register_and_order_unchanged,
    a_client_price_is_a_ceiling,
    lying_and_stalled_bodies_get_4xx_at_once,
    idempotency_keys_are_taken_only_past_the_edge,
    lookalike_emails_and_skus_are_the_same_identifier,
    a_demoted_admin_loses_its_rights_at_once,
    client_request_ids_are_kept_only_when_safe,
    concurrent_refreshes_share_one_successor_and_logout_is_not_reuse,
    event_ids_last_admin_and_docs_paths,
);

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> reqwest::Response {
    let mut request = new_client().request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_owned());
    }
    request.send().await.expect("request")
}

/// `POST /order` with a raw JSON body.
async fn post_order(app: &TestApp, token: &str, body: &str) -> reqwest::Response {
    send(app, Method::POST, "/order", Some(token), Some(body)).await
}

/// `method path` as the holder of `token`, with an optional JSON body.
async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut request = new_client()
        .request(method, app.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.expect("request")
}

/// Asserts a 4xx with the error envelope (never a 5xx, never a bare body).
async fn assert_refused(response: reqwest::Response, what: &str) -> Value {
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_client_error(), "{what}: {status} {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: {text}"));
    assert!(body["error"]["code"].is_string(), "{what}: {text}");
    body
}

async fn control_characters_never_reach_the_database(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    let operator = app
        .user_with_role("ops@example.com", Role::Operator, None)
        .await;
    let (product, _) = app.seed_product(None, "MUG", 1_000, 5).await;
    // JSON bodies: the escaped NUL (and other controls) anywhere is refused at the edge.
    let bodies = [
        (
            "/auth/register",
            None,
            r#"{"email":"a\u0000@x.io","password":"correct horse"}"#,
        ),
        (
            "/auth/register",
            None,
            r#"{"email":"a@x.io","password":"correct\u0000horse"}"#,
        ),
        (
            "/auth/register",
            None,
            r#"{"email":"a@x.io","password":"correct horse","name":"\u001b[31mred"}"#,
        ),
        (
            "/auth/register",
            None,
            r#"{"email":"a@x.io","password":"correct horse","tenant":"de\u0000fault"}"#,
        ),
        (
            "/auth/login",
            None,
            r#"{"email":"a\u0000@x.io","password":"correct horse"}"#,
        ),
        (
            "/products",
            Some(&admin),
            r#"{"sku":"N1","name":"nul\u0000name","unitPrice":1,"currency":"EUR"}"#,
        ),
        (
            "/products",
            Some(&admin),
            r#"{"sku":"N2","name":"ok","description":"bell\u0007","unitPrice":1,"currency":"EUR"}"#,
        ),
        (
            "/tenants",
            Some(&operator),
            r#"{"slug":"acme","name":"A\u0000"}"#,
        ),
        (
            "/admin/policy/evaluate",
            Some(&admin),
            r#"{"customer":{"id":"c\u0000","vip":false},"lines":[]}"#,
        ),
    ];
    for (path, token, body) in bodies {
        let body = assert_refused(
            send(
                &app,
                Method::POST,
                path,
                token.map(String::as_str),
                Some(body),
            )
            .await,
            path,
        )
        .await;
        assert_eq!(body["error"]["code"], "INVALID_CHARACTER", "{path}: {body}");
    }
    let receive = format!("/products/{product}/stock/adjust");
    let body = assert_refused(
        send(
            &app,
            Method::POST,
            &receive,
            Some(&admin),
            Some(r#"{"delta":1,"reason":"r\u0000"}"#),
        )
        .await,
        "reason",
    )
    .await;
    assert_eq!(body["error"]["code"], "INVALID_CHARACTER");
    // Terminal escapes sent raw (not escaped) are refused too, and single-line fields
    // refuse even a line feed.
    let raw_escape =
        "{\"sku\":\"N3\",\"name\":\"x\u{1b}[2J\",\"unitPrice\":1,\"currency\":\"EUR\"}";
    assert_refused(
        send(
            &app,
            Method::POST,
            "/products",
            Some(&admin),
            Some(raw_escape),
        )
        .await,
        "raw",
    )
    .await;
    let newline_name = r#"{"sku":"N4","name":"two\nlines","unitPrice":1,"currency":"EUR"}"#;
    let body = assert_refused(
        send(
            &app,
            Method::POST,
            "/products",
            Some(&admin),
            Some(newline_name),
        )
        .await,
        "newline name",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "name");
    // A description may have lines and tabs.
    let multi = r#"{"sku":"N5","name":"ok","description":"line one\nline\ttwo","unitPrice":1,"currency":"EUR"}"#;
    let created = send(&app, Method::POST, "/products", Some(&admin), Some(multi)).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    // Paths and queries.
    for path in [
        "/order/%00",
        "/stock/products-with-stock/%00",
        "/users/%00",
        "/products/a%1Bb",
        "/users?tenant=%00",
        "/stock/products-with-stock?tenant=x%00",
    ] {
        let token = if path.starts_with("/order") {
            None
        } else {
            Some(admin.as_str())
        };
        let body = assert_refused(send(&app, Method::GET, path, token, None).await, path).await;
        let code = body["error"]["code"].as_str().unwrap().to_owned();
        assert!(
            code == "INVALID_PATH" || code == "INVALID_QUERY",
            "{path}: {body}"
        );
    }
    // Nothing with a control character was stored, on either backend.
    assert_eq!(
        app.scalar("select count(*) from users where email like 'a%@x.io'")
            .await,
        0
    );
    assert_eq!(
        app.scalar("select count(*) from products where sku in ('N1', 'N2', 'N3', 'N4')")
            .await,
        0
    );
    assert_eq!(
        app.scalar("select count(*) from tenants where slug = 'acme'")
            .await,
        0
    );
}

async fn original_clients_register_and_order_unchanged(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, stock) = app.seed_product(None, "PHONE", 99_999, 10).await;
    // The original's register body, with a display name.
    let registered = app
        .post(
            "/auth/register",
            &json!({ "name": "Ann Original", "email": "ann@example.com", "password": PASSWORD }),
        )
        .await;
    let user = json_ok(registered, StatusCode::CREATED).await;
    assert_eq!(user["name"], "Ann Original");
    let (client, token) = app.login_as("ann@example.com", None).await;
    let profile = json_ok(
        client.get(app.url("/auth/profile")).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(profile["name"], "Ann Original");
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    let listed = json_ok(
        call(&app, Method::GET, "/users/ann@example.com", &admin, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed["name"], "Ann Original");
    let too_long = app
        .post(
            "/auth/register",
            &json!({ "name": "n".repeat(101), "email": "long@example.com", "password": PASSWORD }),
        )
        .await;
    assert_error(
        too_long,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;

    // The original README's order, byte for byte: a decimal price in major units.
    let raw = format!(r#"{{"stockId":"{stock}","quantity":2,"priceAtPurchase":999.99}}"#);
    let order = json_ok(post_order(&app, &token, &raw).await, StatusCode::ACCEPTED).await;
    assert_eq!(order["total"], 199_998);
    assert_eq!(order["expectedTotal"], 199_998);
    // As a string, and with trailing zeros; one cent too precise is refused by name.
    let as_string = format!(r#"{{"stockId":"{stock}","quantity":1,"priceAtPurchase":"999.990"}}"#);
    json_ok(
        post_order(&app, &token, &as_string).await,
        StatusCode::ACCEPTED,
    )
    .await;
    for (price, problem) in [
        ("999.999", "EUR has 2 decimal(s)"),
        ("-1", "must not be negative"),
        ("true", "a decimal number such as 999.99"),
    ] {
        let raw = format!(r#"{{"stockId":"{stock}","quantity":1,"priceAtPurchase":{price}}}"#);
        let body = assert_error(
            post_order(&app, &token, &raw).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(
            body["error"]["details"]["field"], "priceAtPurchase",
            "{price}: {body}"
        );
        assert_eq!(body["error"]["details"]["problem"], problem, "{price}");
    }
    // A negative expectedTotal names the field the client sent.
    let body = assert_error(
        send(
            &app,
            reqwest::Method::POST,
            "/order",
            Some(&token),
            Some(&format!(
                r#"{{"lines":[{{"stockId":"{stock}","quantity":1}}],"expectedTotal":-5}}"#
            )),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "expectedTotal");
}

async fn a_client_price_is_a_ceiling(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, stock) = app.seed_product(None, "HOT", 1_250, 10).await;
    app.register("vip@example.com", None).await;
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    json_ok(
        call(
            &app,
            Method::POST,
            "/users/vip@example.com/promote-vip",
            &admin,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let (_, vip) = app.login_as("vip@example.com", None).await;
    // The showcase price (12.50) is the most the VIP agreed to: charged 5 % less.
    let order = json_ok(
        send(
            &app,
            reqwest::Method::POST,
            "/order",
            Some(&vip),
            Some(&format!(
                r#"{{"stockId":"{stock}","quantity":1,"priceAtPurchase":12.50}}"#
            )),
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(
        (order["total"].as_i64(), order["expectedTotal"].as_i64()),
        (Some(1_188), Some(1_250))
    );
    // expectedTotal above the price: charged the price; below: refused, nothing written.
    let lines = json!([{ "stockId": stock, "quantity": 2 }]);
    let above = post_order(
        &app,
        &vip,
        &json!({ "lines": lines, "expectedTotal": 5_000 }).to_string(),
    )
    .await;
    assert_eq!(json_ok(above, StatusCode::ACCEPTED).await["total"], 2_375);
    let before = app.scalar("select count(*) from orders").await;
    let below = post_order(
        &app,
        &vip,
        &json!({ "lines": lines, "expectedTotal": 2_374 }).to_string(),
    )
    .await;
    let body = assert_error(below, StatusCode::UNPROCESSABLE_ENTITY, "ORDER_REJECTED").await;
    assert_eq!(
        body["error"]["details"]["violations"][0]["code"],
        "PRICE_MISMATCH"
    );
    assert_eq!(body["error"]["details"]["total"], 2_375);
    assert_eq!(app.scalar("select count(*) from orders").await, before);
    // A signed-in customer sees its own price through the quote, before ordering.
    let quote = json_ok(
        send(
            &app,
            reqwest::Method::POST,
            "/order/quote",
            Some(&vip),
            Some(&json!({ "lines": lines }).to_string()),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(quote["quote"]["total"], 2_375);
}

/// Sends raw bytes on a fresh connection and returns the response head and when it came.
async fn raw_exchange(app: &TestApp, request: &str, hold: Duration) -> (String, Duration) {
    let address = app.address.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let started = Instant::now();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let read = tokio::time::timeout(hold, socket.read(&mut buffer))
        .await
        .expect("an answer before the deadline")
        .unwrap();
    (
        String::from_utf8_lossy(&buffer[..read]).into_owned(),
        started.elapsed(),
    )
}

async fn lying_and_stalled_bodies_get_4xx_at_once(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.request_timeout_ms = 700).await;
    let (_, token) = {
        app.register("liar@example.com", None).await;
        app.login_as("liar@example.com", None).await
    };
    // 100 MB announced, 2 bytes sent: 413 without waiting for the rest.
    let lying = format!(
        "POST /order HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: 100000000\r\n\r\n{{}}"
    );
    let (head, took) = raw_exchange(&app, &lying, Duration::from_secs(5)).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("PAYLOAD_TOO_LARGE"), "{head}");
    assert!(took < Duration::from_millis(600), "413 took {took:?}");
    // 10 bytes announced, 2 sent, then silence: 408, no invitation to retry.
    let stalled = format!(
        "POST /order HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: 10\r\n\r\n{{}}"
    );
    let (head, _) = raw_exchange(&app, &stalled, Duration::from_secs(5)).await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(head.contains("BODY_TIMEOUT"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("retry-after"), "{head}");
    // A chunked body that grows past the limit is 413 as well.
    let size = app.state.config.body_limit_bytes + 10;
    let chunked = format!(
        "POST /auth/register HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n\r\n{size:x}\r\n{}\r\n0\r\n\r\n",
        "x".repeat(size)
    );
    let (head, _) = raw_exchange(&app, &chunked, Duration::from_secs(5)).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
}

async fn idempotency_keys_are_taken_only_past_the_edge(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, stock) = app.seed_product(None, "A", 100, 10).await;
    app.register("ida@example.com", None).await;
    let (_, token) = app.login_as("ida@example.com", None).await;
    let post = |key: &'static str, body: String| {
        new_client()
            .post(app.url("/order"))
            .bearer_auth(&token)
            .header("idempotency-key", key)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
    };
    // Refused at the edge (malformed, invalid): nothing done, the key stays unused.
    assert_error(
        post("k1", "{".into()).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "MALFORMED_JSON",
    )
    .await;
    let invalid = json!({ "lines": [{ "stockId": stock, "quantity": 0 }] }).to_string();
    assert_error(
        post("k1", invalid).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(app.scalar("select count(*) from idempotency_keys").await, 0);
    let valid = json!({ "lines": [{ "stockId": stock, "quantity": 1 }] }).to_string();
    let first = json_ok(
        post("k1", valid.clone()).await.unwrap(),
        StatusCode::ACCEPTED,
    )
    .await;
    let again = json_ok(post("k1", valid).await.unwrap(), StatusCode::ACCEPTED).await;
    assert_eq!(first["id"], again["id"]);
    assert_eq!(app.scalar("select count(*) from orders").await, 1);
    // A decision (the shop's rules refused it) is remembered under its key.
    let too_cheap =
        json!({ "lines": [{ "stockId": stock, "quantity": 1 }], "expectedTotal": 1 }).to_string();
    assert_error(
        post("k2", too_cheap.clone()).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "ORDER_REJECTED",
    )
    .await;
    app.exec("update products set unit_price = 1").await;
    assert_error(
        post("k2", too_cheap).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "ORDER_REJECTED",
    )
    .await;
    assert_eq!(app.scalar("select count(*) from orders").await, 1);
}

async fn lookalike_emails_and_skus_are_the_same_identifier(backend: Backend) {
    let app = spawn_app(backend).await;
    json_ok(app.register("dup@x.io", None).await, StatusCode::CREATED).await;
    // Fullwidth letters are the same account; an invisible character is refused.
    assert_error(
        app.register("\u{ff44}\u{ff55}\u{ff50}@x.io", None).await,
        StatusCode::CONFLICT,
        "EMAIL_TAKEN",
    )
    .await;
    let zero_width = assert_error(
        app.register("dup@x.io\u{200b}", None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(zero_width["error"]["details"]["field"], "email");
    let login = app
        .post(
            "/auth/login",
            &json!({ "email": "ＤＵＰ@x.io", "password": PASSWORD }),
        )
        .await;
    assert_eq!(
        json_ok(login, StatusCode::OK).await["user"]["email"],
        "dup@x.io"
    );
    assert_eq!(app.scalar("select count(*) from users").await, 1);

    let admin = app.user_with_role("boss@x.io", Role::Admin, None).await;
    let create = |sku: &str| {
        new_client()
            .post(app.url("/products"))
            .bearer_auth(&admin)
            .json(&json!({ "sku": sku, "name": "Mug", "unitPrice": 500, "currency": "EUR", "initialStock": 3 }))
            .send()
    };
    json_ok(create("MUG-1").await.unwrap(), StatusCode::CREATED).await;
    assert_error(
        create("ＭＵＧ－１").await.unwrap(),
        StatusCode::CONFLICT,
        "SKU_TAKEN",
    )
    .await;
    let invisible = assert_error(
        create("MUG\u{200b}-1").await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(invisible["error"]["details"]["field"], "sku");
    // An order naming the fullwidth sku gets the real product.
    let (_, token) = app.login_as("dup@x.io", None).await;
    let order = json_ok(
        call(
            &app,
            Method::POST,
            "/order",
            &token,
            Some(&json!({ "lines": [{ "sku": "ＭＵＧ－１", "quantity": 1 }] })),
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(order["lines"][0]["sku"], "MUG-1");
}

async fn a_demoted_admin_loses_its_rights_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app
        .user_with_role("first@example.com", Role::Admin, None)
        .await;
    let second = app
        .user_with_role("second@example.com", Role::Admin, None)
        .await;
    let users = |token: &str| {
        new_client()
            .get(app.url("/users"))
            .bearer_auth(token)
            .send()
    };
    json_ok(users(&second).await.unwrap(), StatusCode::OK).await;
    let demote = call(
        &app,
        Method::PATCH,
        "/users/second@example.com",
        &first,
        Some(&json!({ "role": "customer" })),
    )
    .await;
    json_ok(demote, StatusCode::OK).await;
    // The same, still unexpired access token: the row's role decides, not the token's.
    assert_error(
        users(&second).await.unwrap(),
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    let evaluate = call(
        &app,
        Method::POST,
        "/admin/policy/evaluate",
        &second,
        Some(&json!({ "customer": { "id": "c", "vip": false }, "lines": [] })),
    )
    .await;
    assert_error(evaluate, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    // A deleted account's token opens nothing.
    let delete = call(
        &app,
        Method::DELETE,
        "/users/second@example.com",
        &first,
        None,
    )
    .await;
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
    assert_error(
        users(&second).await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;
}

async fn client_request_ids_are_kept_only_when_safe(backend: Backend) {
    let app = spawn_app(backend).await;
    let with_id = |id: String| {
        new_client()
            .get(app.url("/health"))
            .header("x-request-id", id)
            .send()
    };
    let kept = with_id("req-42.retry:1".into()).await.unwrap();
    assert_eq!(kept.headers()["x-request-id"], "req-42.retry:1");
    for hostile in [
        "x".repeat(5_000),
        r#"{"forged":"line"}"#.into(),
        "a b".into(),
    ] {
        let response = with_id(hostile.clone()).await.unwrap();
        let echoed = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_ne!(echoed, hostile);
        assert!(
            uuid::Uuid::parse_str(&echoed).is_ok(),
            "a generated id: {echoed}"
        );
    }
}

fn refresh_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("refresh_token="))
        .expect("a refresh cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

async fn refresh_with(app: &TestApp, cookie: &str) -> reqwest::Response {
    new_client()
        .post(app.url("/auth/refresh"))
        .header(header::COOKIE, cookie)
        .header(header::ORIGIN, app.origin())
        .send()
        .await
        .unwrap()
}

async fn concurrent_refreshes_share_one_successor_and_logout_is_not_reuse(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("tabs@example.com", None).await;
    let login = app
        .post(
            "/auth/login",
            &json!({ "email": "tabs@example.com", "password": PASSWORD }),
        )
        .await;
    let first = refresh_cookie(&login);
    // Two tabs refresh the same token at once: both stay signed in, with one successor.
    let (a, b) = tokio::join!(refresh_with(&app, &first), refresh_with(&app, &first));
    let (a_cookie, b_cookie) = (refresh_cookie(&a), refresh_cookie(&b));
    assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    assert_eq!(a_cookie, b_cookie);
    assert_ne!(a_cookie, first);
    // A late retry of the old token within the window gets the same successor too.
    app.advance(10_000);
    let late = refresh_with(&app, &first).await;
    assert_eq!(late.status(), StatusCode::OK);
    assert_eq!(refresh_cookie(&late), a_cookie);
    // The successor works, and the family is one session: two live tokens never exist.
    let next = refresh_with(&app, &a_cookie).await;
    assert_eq!(next.status(), StatusCode::OK);
    let current = refresh_cookie(&next);
    assert_eq!(
        app.scalar(
            "select count(*) from refresh_tokens where rotated_at is null and revoked_at is null"
        )
        .await,
        1
    );
    // Sign out, then refresh: reported as the ended session it is, not as theft.
    let logout = new_client()
        .post(app.url("/auth/logout"))
        .header(header::COOKIE, &current)
        .header(header::ORIGIN, app.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert_error(
        refresh_with(&app, &current).await,
        StatusCode::UNAUTHORIZED,
        "SESSION_ENDED",
    )
    .await;
    assert_error(
        refresh_with(&app, &first).await,
        StatusCode::UNAUTHORIZED,
        "SESSION_ENDED",
    )
    .await;
}

async fn event_ids_last_admin_and_docs_paths(backend: Backend) {
    // No workers: the orders stay PENDING until this test cancels one.
    let app = spawn_app_with(backend, |c| c.workers = 0).await;
    let (_, stock) = app.seed_product(None, "A", 100, 10).await;
    app.register("eva@example.com", None).await;
    let (_, token) = app.login_as("eva@example.com", None).await;
    // Event ids are numbered per order: the tenth order's stream starts at 1 too.
    let mut last = Value::Null;
    for _ in 0..10 {
        last = json_ok(
            call(
                &app,
                Method::POST,
                "/order",
                &token,
                Some(&json!({ "lines": [{ "stockId": stock, "quantity": 1 }] })),
            )
            .await,
            StatusCode::ACCEPTED,
        )
        .await;
    }
    let id = last["id"].as_str().unwrap();
    let cancel = call(
        &app,
        Method::POST,
        &format!("/order/{id}/cancel"),
        &token,
        None,
    )
    .await;
    json_ok(cancel, StatusCode::OK).await;
    let stream = call(
        &app,
        Method::GET,
        &format!("/order/{id}/events"),
        &token,
        None,
    )
    .await;
    let text = tokio::time::timeout(Duration::from_secs(10), stream.text())
        .await
        .expect("the stream ends")
        .unwrap();
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    assert_eq!(ids, ["1", "2"], "{text}");
    let seqs: Vec<i64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [1, 2]);

    // The tenant's last admin cannot be demoted or deleted by anyone.
    let admin = app
        .user_with_role("only@example.com", Role::Admin, None)
        .await;
    let operator = app
        .user_with_role("ops@example.com", Role::Operator, None)
        .await;
    for token in [&admin, &operator] {
        let demote = call(
            &app,
            Method::PATCH,
            "/users/only@example.com",
            token,
            Some(&json!({ "role": "customer" })),
        )
        .await;
        assert_error(demote, StatusCode::CONFLICT, "LAST_ADMIN").await;
    }
    let delete = call(
        &app,
        Method::DELETE,
        "/users/only@example.com",
        &operator,
        None,
    )
    .await;
    assert_error(delete, StatusCode::CONFLICT, "LAST_ADMIN").await;
    // With a second admin, the first may step down.
    app.user_with_role("two@example.com", Role::Admin, None)
        .await;
    let demote = call(
        &app,
        Method::PATCH,
        "/users/only@example.com",
        &admin,
        Some(&json!({ "role": "customer" })),
    )
    .await;
    assert_eq!(json_ok(demote, StatusCode::OK).await["role"], "customer");

    // Paths the docs UI's file server does not know get the envelope, not a bare 404.
    for path in ["/api/docs/../../x", "/api/docs/nope.js"] {
        let response = new_client().get(app.url(path)).send().await.unwrap();
        assert_error(response, StatusCode::NOT_FOUND, "ROUTE_NOT_FOUND").await;
    }
}
