//! The order lifecycle on the database queue, on SQLite and on PostgreSQL: placement with
//! server-side prices, rejections, idempotency, processing, VIP first, cancellation, the
//! event stream, and the invariants under concurrency and faults.

use std::time::Duration;

use orderhost::orders::{
    process::{process_claimed, run_once},
    sweep_expired_keys,
};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::{
    backend_tests,
    helpers::{Backend, TestApp, assert_error, json_ok, new_client, spawn_app, spawn_app_with},
};

backend_tests!(
    an_order_is_priced_by_the_server_queued_and_confirmed,
    bad_orders_are_refused_with_reasons,
    idempotency_keys_make_retries_safe,
    idempotency_keys_expire_and_are_swept,
    cancellation_releases_exactly_what_was_reserved,
    the_event_stream_follows_an_order_to_its_end,
    vip_orders_jump_the_queue,
    a_hot_sku_under_concurrency_keeps_every_invariant,
    a_dead_workers_job_is_redelivered_once,
    a_job_whose_burial_was_lost_is_buried_when_it_comes_back,
    a_database_fault_is_retried_then_the_order_fails_holding_nothing,
);

async fn customer(app: &TestApp, email: &str, vip: bool) -> String {
    app.register(email, None).await;
    if vip {
        let tenant = orderhost::store::DEFAULT_TENANT_ID;
        orderhost::users::update(
            &app.state.store,
            tenant,
            email,
            &orderhost::users::UserUpdate {
                role: orderhost::auth::Role::Customer,
                vip: true,
                name: None,
                tags: None,
            },
            0,
        )
        .await
        .unwrap();
    }
    app.login_as(email, None).await.1
}

async fn place(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    new_client()
        .post(app.url("/order"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn get(app: &TestApp, token: &str, path: &str) -> Value {
    json_ok(
        new_client()
            .get(app.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await
}

/// Polls an order until it is no longer PENDING (workers run inside the app).
async fn settled(app: &TestApp, token: &str, id: &str) -> Value {
    for _ in 0..400 {
        let order = get(app, token, &format!("/order/{id}")).await;
        if order["status"] != "PENDING" {
            return order;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("order {id} stayed PENDING");
}

async fn an_order_is_priced_by_the_server_queued_and_confirmed(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, hot) = app.seed_product(None, "HOT", 1_250, 10).await;
    app.seed_product(None, "MUG", 800, 5).await;
    let token = customer(&app, "ann@example.com", false).await;
    let response = place(
        &app,
        &token,
        &json!({
            "lines": [{ "stockId": hot, "quantity": 2 }, { "sku": "MUG", "quantity": 3 }],
            "expectedTotal": 4_900
        }),
    )
    .await;
    let location = response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let order = json_ok(response, StatusCode::ACCEPTED).await;
    assert_eq!(order["status"], "PENDING");
    assert_eq!(
        location,
        format!("/order/{}", order["id"].as_str().unwrap())
    );
    assert_eq!(order["total"], 4_900);
    assert_eq!(order["lines"][1]["sku"], "MUG");
    assert_eq!(order["lines"][1]["subtotal"], 2_400);
    let hooks: Vec<&str> = order["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["component"].as_str().unwrap())
        .collect();
    assert_eq!(
        hooks,
        [
            "validation-standard@1.0.0",
            "pricing-standard@1.0.0",
            "priority-vip@1.0.0"
        ]
    );
    assert_eq!(order["priority"], 10);

    let done = settled(&app, &token, order["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "CONFIRMED", "{done}");
    assert_eq!(app.stock(&hot).await, (8, 2, 10));
    let mine = get(&app, &token, "/order").await;
    assert_eq!(mine["total"], 1);
    assert_eq!(mine["items"][0]["id"], order["id"]);

    // The seed's single-line shape: the client's price is only an expectation.
    let vip = customer(&app, "vip@example.com", true).await;
    let cheap = place(
        &app,
        &vip,
        &json!({ "stockId": hot, "quantity": 1, "priceAtPurchase": 1 }),
    )
    .await;
    let body = assert_error(cheap, StatusCode::UNPROCESSABLE_ENTITY, "ORDER_REJECTED").await;
    assert_eq!(
        body["error"]["details"]["violations"][0]["code"],
        "PRICE_MISMATCH"
    );
    assert_eq!(
        body["error"]["details"]["total"], 1_188,
        "5 % VIP discount, rounded down"
    );
    let ok = place(&app, &vip, &json!({ "stockId": hot, "quantity": 1 })).await;
    let ok = json_ok(ok, StatusCode::ACCEPTED).await;
    assert_eq!(
        (ok["total"].as_i64(), ok["priority"].as_i64()),
        (Some(1_188), Some(100))
    );
    assert_eq!(ok["discounts"][0]["code"], "VIP_DISCOUNT");
    // Another customer cannot see it.
    let other = customer(&app, "eve@example.com", false).await;
    let peek = new_client()
        .get(app.url(&format!("/order/{}", ok["id"].as_str().unwrap())))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_error(peek, StatusCode::NOT_FOUND, "ORDER_NOT_FOUND").await;
    // The quote endpoint prices without writing.
    let quote = new_client()
        .post(app.url("/order/quote"))
        .bearer_auth(&vip)
        .json(&json!({ "lines": [{ "sku": "MUG", "quantity": 2 }] }))
        .send()
        .await
        .unwrap();
    let quote = json_ok(quote, StatusCode::OK).await;
    assert_eq!(quote["quote"]["total"], 1_520);
    assert_eq!(app.scalar("select count(*) from orders").await, 2);
}

async fn bad_orders_are_refused_with_reasons(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, a) = app.seed_product(None, "A", 100, 10).await;
    let (_, off) = app.seed_product(None, "OFF", 100, 10).await;
    app.exec("update products set active = false where sku = 'OFF'")
        .await;
    app.tenant("other").await;
    let (_, foreign) = app.seed_product(Some("other"), "A", 100, 10).await;
    let token = customer(&app, "bob@example.com", false).await;
    let cases = [
        (
            json!({ "lines": [{ "stockId": a, "quantity": 0 }] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        ),
        (
            json!({ "lines": [{ "stockId": a, "quantity": 10_000_000 }] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        ),
        (
            json!({ "lines": [{ "stockId": a, "sku": "A", "quantity": 1 }] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        ),
        (
            json!({ "lines": [] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        ),
        (
            json!({ "lines": [{ "stockId": a, "quantity": -3 }] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        ),
        (
            json!({ "lines": [{ "stockId": a, "quantity": "two" }] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_BODY",
        ),
        (
            json!({ "lines": [{ "stockId": a, "quantity": 1 }], "price": 1 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_BODY",
        ),
        (
            json!({ "lines": [{ "sku": "NOPE", "quantity": 1 }] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "ORDER_REJECTED",
        ),
        (
            json!({ "lines": [{ "stockId": foreign, "quantity": 1 }] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "ORDER_REJECTED",
        ),
        (
            json!({ "lines": [{ "stockId": off, "quantity": 1 }] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "ORDER_REJECTED",
        ),
        (
            json!({ "lines": [{ "stockId": a, "quantity": 101 }] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "ORDER_REJECTED",
        ),
        (
            json!({ "lines": [{ "stockId": a, "quantity": 1 }, { "sku": "A", "quantity": 1 }] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "ORDER_REJECTED",
        ),
    ];
    let mut codes = Vec::new();
    for (body, status, code) in cases {
        let response = place(&app, &token, &body).await;
        let error = assert_error(response, status, code).await;
        if code == "ORDER_REJECTED" {
            codes.push(
                error["error"]["details"]["violations"][0]["code"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    assert_eq!(
        codes,
        [
            "UNKNOWN_ITEM",
            "UNKNOWN_ITEM",
            "PRODUCT_INACTIVE",
            "QUANTITY_TOO_LARGE",
            "DUPLICATE_LINE"
        ]
    );
    let anonymous = new_client()
        .post(app.url("/order"))
        .json(&json!({ "lines": [{ "stockId": a, "quantity": 1 }] }))
        .send()
        .await
        .unwrap();
    assert_error(anonymous, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    assert_eq!(
        app.scalar("select count(*) from orders").await,
        0,
        "nothing was written"
    );
}

async fn idempotency_keys_make_retries_safe(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.workers = 0).await;
    let (_, a) = app.seed_product(None, "A", 500, 100).await;
    let token = customer(&app, "cat@example.com", false).await;
    let send = |key: &'static str, quantity: i64| {
        let (url, token, a) = (app.url("/order"), token.clone(), a.clone());
        async move {
            new_client()
                .post(url)
                .bearer_auth(token)
                .header("idempotency-key", key)
                .json(&json!({ "lines": [{ "stockId": a, "quantity": quantity }] }))
                .send()
                .await
                .unwrap()
        }
    };
    let first = send("k-1", 2).await;
    let location = first.headers()[header::LOCATION].clone();
    let first = json_ok(first, StatusCode::ACCEPTED).await;
    let again = send("k-1", 2).await;
    assert_eq!(again.headers()[header::LOCATION], location);
    assert_eq!(
        json_ok(again, StatusCode::ACCEPTED).await["id"],
        first["id"]
    );
    assert_error(
        send("k-1", 3).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    // A rejected request is remembered as rejected.
    assert_error(
        send("k-2", 500).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "ORDER_REJECTED",
    )
    .await;
    assert_error(
        send("k-2", 500).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "ORDER_REJECTED",
    )
    .await;
    // Concurrent duplicates: one order, every answer is that order or "in flight".
    let racers: Vec<_> = (0..8).map(|_| tokio::spawn(send("k-3", 1))).collect();
    let mut ids = std::collections::HashSet::new();
    for racer in racers {
        let response = racer.await.unwrap();
        match response.status() {
            StatusCode::ACCEPTED => {
                ids.insert(
                    response.json::<Value>().await.unwrap()["id"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            StatusCode::CONFLICT => {
                assert_error(response, StatusCode::CONFLICT, "IDEMPOTENCY_IN_FLIGHT").await;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(app.scalar("select count(*) from orders").await, 2);
    // A key left in flight by a request that died: refused while fresh, taken over once stale.
    app.exec("update idempotency_keys set state = 'in_flight', response_status = null, response_body = null where key = 'k-1'").await;
    assert_error(
        send("k-1", 2).await,
        StatusCode::CONFLICT,
        "IDEMPOTENCY_IN_FLIGHT",
    )
    .await;
    app.advance(61_000);
    let retried = json_ok(send("k-1", 2).await, StatusCode::ACCEPTED).await;
    assert_ne!(
        retried["id"], first["id"],
        "taking the key over runs the request again"
    );
    assert_eq!(
        json_ok(send("k-1", 2).await, StatusCode::ACCEPTED).await["id"],
        retried["id"]
    );
}

async fn idempotency_keys_expire_and_are_swept(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.workers = 0;
        c.idempotency_ttl_secs = 3_600;
        // The customer's access token must outlive the clock jumps below.
        c.access_token_ttl_secs = 86_400;
    })
    .await;
    let (_, a) = app.seed_product(None, "A", 500, 100).await;
    let token = customer(&app, "eve@example.com", false).await;
    let send = |quantity: i64| {
        let (url, token, a) = (app.url("/order"), token.clone(), a.clone());
        async move {
            new_client()
                .post(url)
                .bearer_auth(token)
                .header("idempotency-key", "k-day")
                .json(&json!({ "lines": [{ "stockId": a, "quantity": quantity }] }))
                .send()
                .await
                .unwrap()
        }
    };
    let first = json_ok(send(2).await, StatusCode::ACCEPTED).await;
    // Within its lifetime the key stays bound to its first body.
    app.advance(3_599_000);
    assert_error(
        send(3).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    // Past it, the key is free again (even before a sweep removed it): a new order.
    app.advance(2_000);
    let second = json_ok(send(3).await, StatusCode::ACCEPTED).await;
    assert_ne!(second["id"], first["id"]);
    assert_eq!(
        json_ok(send(3).await, StatusCode::ACCEPTED).await["id"],
        second["id"],
        "the renewed key replays its new first response"
    );
    // The sweep removes keys past their lifetime and nothing younger.
    assert_eq!(sweep_expired_keys(&app.state).await.unwrap(), 0);
    app.advance(3_601_000);
    assert_eq!(sweep_expired_keys(&app.state).await.unwrap(), 1);
    assert_eq!(app.scalar("select count(*) from idempotency_keys").await, 0);
    assert_eq!(app.scalar("select count(*) from orders").await, 2);
}

async fn cancellation_releases_exactly_what_was_reserved(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.workers = 0).await;
    let (_, a) = app.seed_product(None, "A", 100, 10).await;
    let token = customer(&app, "dan@example.com", false).await;
    let order = |q: i64| {
        let body = json!({ "lines": [{ "stockId": a, "quantity": q }] });
        let (app, token) = (&app, &token);
        async move { place(app, token, &body).await }
    };
    let pending = json_ok(order(2).await, StatusCode::ACCEPTED).await;
    let confirmed = json_ok(order(3).await, StatusCode::ACCEPTED).await;
    let cancel = |id: &Value| {
        let url = app.url(&format!("/order/{}/cancel", id.as_str().unwrap()));
        let token = token.clone();
        async move {
            new_client()
                .post(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    // Both jobs are queued (in Redis mode the relay pushes after its linger).
    app.outbox_drained().await;
    // Cancel the first while PENDING: no stock was held, none moves; its job is over.
    let cancelled = json_ok(cancel(&pending["id"]).await, StatusCode::OK).await;
    assert_eq!(cancelled["status"], "CANCELLED");
    app.outbox_drained().await;
    let report = run_once(&app.state, "w").await.unwrap();
    assert_eq!((report.claimed, report.confirmed), (1, 1));
    assert_eq!(app.stock(&a).await, (7, 3, 10));
    // Cancel the confirmed one: exactly its 3 units come back, once.
    assert_eq!(
        json_ok(cancel(&confirmed["id"]).await, StatusCode::OK).await["status"],
        "CANCELLED"
    );
    assert_eq!(app.stock(&a).await, (10, 0, 10));
    assert_eq!(
        json_ok(cancel(&confirmed["id"]).await, StatusCode::OK).await["status"],
        "CANCELLED"
    );
    assert_eq!(app.stock(&a).await, (10, 0, 10), "idempotent");
    // A failed order has nothing to cancel; someone else's order is not there.
    let too_many = json_ok(order(11).await, StatusCode::ACCEPTED).await;
    app.outbox_drained().await;
    run_once(&app.state, "w").await.unwrap();
    assert_eq!(
        get(
            &app,
            &token,
            &format!("/order/{}", too_many["id"].as_str().unwrap())
        )
        .await["reason"],
        "OUT_OF_STOCK"
    );
    assert_error(
        cancel(&too_many["id"]).await,
        StatusCode::CONFLICT,
        "ORDER_NOT_CANCELLABLE",
    )
    .await;
    let stranger = customer(&app, "eve@example.com", false).await;
    let peek = new_client()
        .post(app.url(&format!(
            "/order/{}/cancel",
            confirmed["id"].as_str().unwrap()
        )))
        .bearer_auth(&stranger)
        .send()
        .await
        .unwrap();
    assert_error(peek, StatusCode::NOT_FOUND, "ORDER_NOT_FOUND").await;
    let movements = app
        .scalar("select count(*) from stock_movements where kind = 'release'")
        .await;
    assert_eq!(movements, 1);
}

async fn the_event_stream_follows_an_order_to_its_end(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.workers = 0).await;
    let (_, a) = app.seed_product(None, "A", 100, 10).await;
    let token = customer(&app, "fay@example.com", false).await;
    let order = json_ok(
        place(
            &app,
            &token,
            &json!({ "lines": [{ "stockId": a, "quantity": 1 }] }),
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await;
    let id = order["id"].as_str().unwrap().to_owned();
    let stream = new_client()
        .get(app.url(&format!("/order/{id}/events")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()[header::CONTENT_TYPE], "text/event-stream");
    let reader = tokio::spawn(async move { stream.text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.outbox_drained().await;
    run_once(&app.state, "w").await.unwrap();
    let text = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the stream ends")
        .unwrap();
    let statuses: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(statuses, ["PENDING", "CONFIRMED"], "{text}");
}

async fn vip_orders_jump_the_queue(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.workers = 0).await;
    let (_, hot) = app.seed_product(None, "HOT", 100, 1).await;
    let regular = customer(&app, "reg@example.com", false).await;
    let vip = customer(&app, "vip@example.com", true).await;
    let body = json!({ "lines": [{ "stockId": hot, "quantity": 1 }] });
    let mut regular_ids = Vec::new();
    for _ in 0..5 {
        regular_ids.push(
            json_ok(place(&app, &regular, &body).await, StatusCode::ACCEPTED).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let vip_order = json_ok(place(&app, &vip, &body).await, StatusCode::ACCEPTED).await;
    app.outbox_drained().await;
    let report = run_once(&app.state, "w").await.unwrap();
    assert_eq!((report.claimed, report.confirmed, report.failed), (6, 1, 5));
    assert_eq!(
        get(
            &app,
            &vip,
            &format!("/order/{}", vip_order["id"].as_str().unwrap())
        )
        .await["status"],
        "CONFIRMED"
    );
    for id in &regular_ids {
        assert_eq!(
            get(&app, &regular, &format!("/order/{id}")).await["reason"],
            "OUT_OF_STOCK"
        );
    }
    // The settle order is visible in the event log: the VIP's came first.
    let vip_seq = app
        .scalar(&format!(
            "select seq from order_events where order_id = '{}' and status <> 'PENDING'",
            vip_order["id"].as_str().unwrap()
        ))
        .await;
    let first_regular = app
        .scalar(&format!(
            "select min(seq) from order_events where status <> 'PENDING' and order_id <> '{}'",
            vip_order["id"].as_str().unwrap()
        ))
        .await;
    assert!(vip_seq < first_regular);
}

async fn a_hot_sku_under_concurrency_keeps_every_invariant(backend: Backend) {
    const ORDERS: usize = 512;
    const CLIENTS: usize = 32;
    const HOT_STOCK: i64 = 200;
    let app = spawn_app_with(backend, |c| {
        c.workers = 3;
        c.queue.batch_size = 32;
        c.store.db_max_connections = 16;
    })
    .await;
    let (_, hot) = app.seed_product(None, "HOT", 999, HOT_STOCK).await;
    let (_, calm) = app.seed_product(None, "CALM", 100, 10_000).await;
    let mut tokens = Vec::new();
    for i in 0..CLIENTS {
        tokens.push(customer(&app, &format!("c{i}@example.com"), i % 10 == 0).await);
    }
    let clients: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| {
            let (url, hot, calm) = (app.url("/order"), hot.clone(), calm.clone());
            tokio::spawn(async move {
                let client = new_client();
                let mut ids = Vec::new();
                for n in 0..ORDERS / CLIENTS {
                    let lines = if (i + n) % 4 == 0 {
                        json!([{ "stockId": hot, "quantity": 1 }, { "stockId": calm, "quantity": 2 }])
                    } else {
                        json!([{ "stockId": hot, "quantity": 1 }])
                    };
                    // The client claims a price of 1 cent: it must not matter.
                    let response = client.post(&url).bearer_auth(&token).json(&json!({ "lines": lines })).send().await.unwrap();
                    assert_eq!(response.status(), StatusCode::ACCEPTED);
                    ids.push(response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for client in clients {
        ids.extend(client.await.unwrap());
    }
    assert_eq!(ids.len(), ORDERS);
    // Every order reaches a final state.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while app
        .scalar("select count(*) from orders where status = 'PENDING'")
        .await
        > 0
    {
        assert!(std::time::Instant::now() < deadline, "orders stuck PENDING");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let confirmed = app
        .scalar("select count(*) from orders where status = 'CONFIRMED'")
        .await;
    let out_of_stock = app
        .scalar("select count(*) from orders where status = 'FAILED' and reason = 'OUT_OF_STOCK'")
        .await;
    let other = app.scalar("select count(*) from orders where status not in ('CONFIRMED') and coalesce(reason, '') <> 'OUT_OF_STOCK'").await;
    // Stock could serve exactly HOT_STOCK orders: no order lost to contention.
    assert_eq!(confirmed, HOT_STOCK, "confirmed");
    assert_eq!(out_of_stock, ORDERS as i64 - HOT_STOCK);
    assert_eq!(other, 0);
    let (available, reserved, received) = app.stock(&hot).await;
    assert_eq!(
        (available, reserved, received),
        (0, HOT_STOCK, HOT_STOCK),
        "never negative, all accounted"
    );
    let confirmed_units = app.scalar(&format!(
        "select cast(coalesce(sum(l.quantity), 0) as bigint) from order_lines l join orders o on o.id = l.order_id \
         where o.status = 'CONFIRMED' and l.stock_id = '{hot}'"
    ))
    .await;
    assert_eq!(confirmed_units, reserved);
    assert!(confirmed_units <= received);
    let (calm_available, calm_reserved, _) = app.stock(&calm).await;
    assert_eq!(calm_available + calm_reserved, 10_000);
    // No order confirmed twice; every job finished (a settled job is deleted).
    assert_eq!(app.scalar("select count(*) from (select order_id from order_events where status = 'CONFIRMED' group by order_id having count(*) > 1) t").await, 0);
    let depth = app.state.queue.depth().await.unwrap();
    assert_eq!((depth.total(), depth.dead), (0, 0), "{depth:?}");
    // Charged totals are the pricing component's (VIPs got 5 % off).
    assert_eq!(
        app.scalar("select count(*) from orders where total not in (999, 950, 1199, 1140)")
            .await,
        0
    );
}

async fn a_dead_workers_job_is_redelivered_once(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.workers = 0).await;
    let (_, a) = app.seed_product(None, "A", 100, 10).await;
    let token = customer(&app, "gus@example.com", false).await;
    let order = json_ok(
        place(
            &app,
            &token,
            &json!({ "lines": [{ "stockId": a, "quantity": 4 }] }),
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await;
    // A worker claims the job and dies before settling it.
    app.outbox_drained().await;
    let now = orderhost::clock::Clock::now_ms(&app.clock);
    let claimed = app.state.queue.claim("doomed", now, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    // While its lease runs, nobody else takes the job.
    assert_eq!(run_once(&app.state, "alive").await.unwrap().claimed, 0);
    app.advance(app.state.config.queue.lease_ms + 1);
    app.outbox_drained().await;
    let report = run_once(&app.state, "alive").await.unwrap();
    assert_eq!((report.claimed, report.confirmed), (1, 1));
    assert_eq!(
        get(
            &app,
            &token,
            &format!("/order/{}", order["id"].as_str().unwrap())
        )
        .await["status"],
        "CONFIRMED"
    );
    assert_eq!(app.stock(&a).await, (6, 4, 10));
    // Nothing is left to deliver, and the first worker waking up late to settle what it
    // claimed changes nothing.
    app.advance(app.state.config.queue.lease_ms + 1);
    app.outbox_drained().await;
    assert_eq!(run_once(&app.state, "alive").await.unwrap().claimed, 0);
    let late = process_claimed(&app.state, "doomed", &claimed)
        .await
        .unwrap();
    assert_eq!((late.confirmed, late.failed), (0, 0));
    assert_eq!(app.stock(&a).await, (6, 4, 10), "never reserved twice");
    assert_eq!(
        app.scalar("select count(*) from order_events where status = 'CONFIRMED'")
            .await,
        1
    );
}

/// The worker that failed an order `RETRIES_EXHAUSTED` died (or lost Redis) before
/// burying its job: when the lease ends the job comes back, and it is buried then, so the
/// dead-letter queue lists every order that ran out of attempts.
async fn a_job_whose_burial_was_lost_is_buried_when_it_comes_back(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.workers = 0).await;
    let (_, a) = app.seed_product(None, "A", 100, 10).await;
    let token = customer(&app, "hal@example.com", false).await;
    let order = json_ok(
        place(
            &app,
            &token,
            &json!({ "lines": [{ "stockId": a, "quantity": 2 }] }),
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await;
    let id = order["id"].as_str().unwrap().to_owned();
    app.outbox_drained().await;
    let now = orderhost::clock::Clock::now_ms(&app.clock);
    assert_eq!(
        app.state
            .queue
            .claim("doomed", now, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // The doomed worker's last step before dying: the order failed, the job not buried.
    app.exec(&format!(
        "update orders set status = 'FAILED', reason = 'RETRIES_EXHAUSTED' where id = '{id}'"
    ))
    .await;
    assert_eq!(app.state.queue.dead(None, 10, 0).await.unwrap().1, 0);
    app.advance(app.state.config.queue.lease_ms + 1);
    let report = run_once(&app.state, "alive").await.unwrap();
    assert_eq!((report.claimed, report.confirmed, report.failed), (1, 0, 0));
    let (dead, total) = app.state.queue.dead(None, 10, 0).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(dead[0].order_id, id);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("RETRIES_EXHAUSTED"),
        "{dead:?}"
    );
    let depth = app.state.queue.depth().await.unwrap();
    assert_eq!((depth.total(), depth.dead), (0, 1), "{depth:?}");
    assert_eq!(app.stock(&a).await, (10, 0, 10), "holds no stock");
    // Nothing comes back again.
    app.advance(app.state.config.queue.lease_ms + 1);
    assert_eq!(run_once(&app.state, "alive").await.unwrap().claimed, 0);
}

async fn a_database_fault_is_retried_then_the_order_fails_holding_nothing(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.workers = 0;
        c.queue.max_attempts = 3;
    })
    .await;
    let (_, a) = app.seed_product(None, "A", 100, 10).await;
    let token = customer(&app, "hal@example.com", false).await;
    // A real database error on every stock update, raised by the database itself.
    let (install, remove) = match backend {
        Backend::Sqlite => (
            "create trigger injected_fault before update on stock_items begin select raise(abort, 'injected fault'); end;",
            "drop trigger injected_fault;",
        ),
        Backend::Postgres => (
            "create function injected_fault() returns trigger language plpgsql as $$ begin raise exception 'injected fault'; end $$; \
             create trigger injected_fault before update on stock_items for each row execute function injected_fault();",
            "drop trigger injected_fault on stock_items; drop function injected_fault();",
        ),
    };
    app.exec(install).await;
    let order = json_ok(
        place(
            &app,
            &token,
            &json!({ "lines": [{ "stockId": a, "quantity": 2 }] }),
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await;
    let id = order["id"].as_str().unwrap().to_owned();
    for attempt in 1..=3 {
        app.outbox_drained().await;
        let report = run_once(&app.state, "w").await.unwrap();
        assert_eq!(report.claimed, 1, "attempt {attempt}");
        let status = get(&app, &token, &format!("/order/{id}")).await;
        if attempt < 3 {
            assert_eq!(report.retried, 1);
            assert_eq!(status["status"], "PENDING");
            // Not before its backoff.
            app.outbox_drained().await;
            assert_eq!(run_once(&app.state, "w").await.unwrap().claimed, 0);
            app.advance(60_000);
        } else {
            assert_eq!(report.failed, 1);
            assert_eq!(
                (status["status"].as_str(), status["reason"].as_str()),
                (Some("FAILED"), Some("RETRIES_EXHAUSTED"))
            );
        }
    }
    assert_eq!(app.state.queue.depth().await.unwrap().dead, 1);
    assert_eq!(app.stock(&a).await, (10, 0, 10), "holds no stock");
    // Once the database is healthy, orders go through again.
    app.exec(remove).await;
    let next = json_ok(
        place(
            &app,
            &token,
            &json!({ "lines": [{ "stockId": a, "quantity": 2 }] }),
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await;
    app.outbox_drained().await;
    run_once(&app.state, "w").await.unwrap();
    assert_eq!(
        get(
            &app,
            &token,
            &format!("/order/{}", next["id"].as_str().unwrap())
        )
        .await["status"],
        "CONFIRMED"
    );
}

/// `orderhost worker` processes share one PostgreSQL database with the API process and
/// with each other: every order is settled once, then SIGTERM stops them cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_worker_processes_share_one_database() {
    let app = spawn_app_with(Backend::Postgres, |c| c.workers = 0).await;
    let (_, hot) = app.seed_product(None, "HOT", 100, 30).await;
    let token = customer(&app, "ivy@example.com", false).await;
    let database_url = match &app.state.store {
        orderhost::store::Store::Postgres(pool) => {
            let mut url = url::Url::parse(&crate::helpers::postgres_server_url()).unwrap();
            url.set_path(pool.connect_options().get_database().unwrap_or_default());
            url.to_string()
        }
        orderhost::store::Store::Sqlite(_) => unreachable!("a PostgreSQL app"),
    };
    let spawn_worker = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_orderhost-under-test"))
            .env_clear()
            .env("DATABASE_URL", &database_url)
            // The same Redis queue as the app: its relay and theirs share the outbox.
            .env("REDIS_URL", &app.state.config.redis_url)
            .env("ORDERHOST_REDIS_PREFIX", &app.state.config.redis_prefix)
            .env("ORDERHOST_WORKERS", "2")
            .env("ORDERHOST_LOG_DIR", "")
            .env("ORDERHOST_POLICIES_DIR", "/nonexistent-policies")
            .arg("worker")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let workers = [spawn_worker(), spawn_worker()];
    let mut ids = Vec::new();
    for _ in 0..40 {
        let order = json_ok(
            place(
                &app,
                &token,
                &json!({ "lines": [{ "stockId": hot, "quantity": 1 }] }),
            )
            .await,
            StatusCode::ACCEPTED,
        )
        .await;
        ids.push(order["id"].as_str().unwrap().to_owned());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while app
        .scalar("select count(*) from orders where status = 'PENDING'")
        .await
        > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker processes did not settle the orders"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.scalar("select count(*) from orders where status = 'CONFIRMED'")
            .await,
        30
    );
    assert_eq!(
        app.scalar("select count(*) from orders where reason = 'OUT_OF_STOCK'")
            .await,
        10
    );
    assert_eq!(app.stock(&hot).await, (0, 30, 30));
    for mut worker in workers {
        // Stop it only once it runs (it may still be starting while the other settled
        // everything): wait for its start-up log line, bounded in time.
        let stdout = worker.stdout.take().unwrap();
        let started = std::thread::spawn(move || {
            use std::io::BufRead as _;
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .any(|line| line.contains("order worker started"))
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !started.is_finished() {
            assert!(std::time::Instant::now() < deadline, "worker never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(started.join().unwrap());
        let pid = worker.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = worker.wait().unwrap();
        assert!(status.success(), "worker {pid} exited with {status}");
    }
}
