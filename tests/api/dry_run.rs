//! `POST /admin/tenants/{tenant}/dry-run`: a candidate replayed on a tenant's stored
//! orders beside the active binding, against a hand-checked fixture of real orders (one
//! CONFIRMED, one FAILED OUT_OF_STOCK, one CANCELLED, one PENDING, a VIP's), with the real
//! built-ins and `pricing-deeper` (pricing-standard, then 10 % more off).

use std::{path::Path, time::Duration};

use orderhost::{auth::Role, orders::process::run_once, policy::registry::BUILD_DIR};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    backend_tests,
    helpers::{Backend, TestApp, assert_error, json_ok, new_client, spawn_app_with},
};

backend_tests!(
    a_deeper_pricer_is_reported_against_hand_checked_orders,
    a_stricter_validator_is_labelled_with_what_happened,
    replaying_the_active_binding_reproduces_every_decision,
    only_the_tenants_admins_and_operators_dry_run,
    bad_requests_are_refused_with_stable_codes,
);

async fn spawn(backend: Backend) -> TestApp {
    // No background workers: the test settles orders itself, so each ends as planned.
    spawn_app_with(backend, |c| c.workers = 0).await
}

async fn place(app: &TestApp, token: &str, stock: &str, quantity: u32) -> Value {
    let response = new_client()
        .post(app.url("/order"))
        .bearer_auth(token)
        .json(&json!({ "lines": [{ "stockId": stock, "quantity": quantity }] }))
        .send()
        .await
        .unwrap();
    let order = json_ok(response, StatusCode::ACCEPTED).await;
    // Orders a second apart: "newest first" is unambiguous.
    app.advance(1_000);
    order
}

async fn settle(app: &TestApp) {
    app.outbox_drained().await;
    while run_once(&app.state, "w").await.unwrap().claimed > 0 {}
}

async fn post_run(app: &TestApp, token: &str, tenant: &str, body: Value) -> reqwest::Response {
    new_client()
        .post(app.url(&format!("/admin/tenants/{tenant}/dry-run")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Starts a run and polls it until it is done; returns the report.
async fn dry_run(app: &TestApp, token: &str, body: Value) -> Value {
    let started = json_ok(
        post_run(app, token, "default", body).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(started["status"], "running", "{started}");
    assert_eq!(started["processed"], 0, "{started}");
    let id = started["id"].as_str().unwrap();
    for _ in 0..500 {
        let response = new_client()
            .get(app.url(&format!("/admin/tenants/default/dry-run/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let run = json_ok(response, StatusCode::OK).await;
        match run["status"].as_str().unwrap() {
            "running" => {
                assert!(run["processed"].as_i64() <= run["total"].as_i64(), "{run}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            "done" => {
                assert_eq!(run["processed"], run["total"], "{run}");
                return run["report"].clone();
            }
            other => panic!("run {other}: {run}"),
        }
    }
    panic!("the dry run did not finish in 10 s");
}

/// The orders table as a fingerprint: rows, statuses, updates, events.
async fn orders_fingerprint(app: &TestApp) -> (i64, i64, i64, i64) {
    (
        app.scalar("select count(*) from orders").await,
        app.scalar("select coalesce(max(updated_at), 0) from orders")
            .await,
        app.scalar("select count(*) from order_events").await,
        app.scalar("select count(*) from order_decisions").await,
    )
}

struct Fixture {
    admin: String,
    /// Oldest first: ann MUG×2, vic MUG×1, ann TEA×3, ann MUG×1, vic TEA×1.
    orders: Vec<String>,
}

/// Five orders of the default tenant, each with its real fate:
///
/// | # | who | lines      | stored total              | fate                   |
/// |---|-----|------------|---------------------------|------------------------|
/// | 1 | ann | MUG×2      | 2 000                     | CONFIRMED              |
/// | 2 | vic | MUG×1      | 1 000 − 5 % = 950         | CONFIRMED              |
/// | 3 | ann | TEA×3      | 750                       | FAILED OUT_OF_STOCK (2)|
/// | 4 | ann | MUG×1      | 1 000                     | CANCELLED              |
/// | 5 | vic | TEA×1      | 250 − 12 (5 %, down) = 238 | PENDING                |
async fn fixture(app: &TestApp) -> Fixture {
    let (_, mug) = app.seed_product(None, "MUG", 1_000, 100).await;
    let (_, tea) = app.seed_product(None, "TEA", 250, 2).await;
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    let ann = app
        .user_with_role("ann@example.com", Role::Customer, None)
        .await;
    app.user_with_role("vic@example.com", Role::Customer, None)
        .await;
    let promoted = new_client()
        .post(app.url("/users/vic@example.com/promote-vip"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    json_ok(promoted, StatusCode::OK).await;
    let (_, vic) = app.login_as("vic@example.com", None).await;

    let mut orders = Vec::new();
    let o1 = place(app, &ann, &mug, 2).await;
    assert_eq!(o1["total"], 2_000);
    let o2 = place(app, &vic, &mug, 1).await;
    assert_eq!(o2["total"], 950);
    let o3 = place(app, &ann, &tea, 3).await;
    assert_eq!(o3["total"], 750);
    let o4 = place(app, &ann, &mug, 1).await;
    assert_eq!(o4["total"], 1_000);
    settle(app).await;
    let id = |o: &Value| o["id"].as_str().unwrap().to_owned();
    let cancelled = new_client()
        .post(app.url(&format!("/order/{}/cancel", id(&o4))))
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap();
    json_ok(cancelled, StatusCode::OK).await;
    let o5 = place(app, &vic, &tea, 1).await;
    assert_eq!(o5["total"], 238);
    for (o, status) in [
        (&o1, "CONFIRMED"),
        (&o2, "CONFIRMED"),
        (&o3, "FAILED"),
        (&o4, "CANCELLED"),
        (&o5, "PENDING"),
    ] {
        let response = new_client()
            .get(app.url(&format!("/order/{}", id(o))))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        let now = json_ok(response, StatusCode::OK).await;
        assert_eq!(now["status"], status, "{now}");
        if status == "FAILED" {
            assert_eq!(now["reason"], "OUT_OF_STOCK", "{now}");
        }
    }
    orders.extend([&o1, &o2, &o3, &o4, &o5].map(id));
    Fixture { admin, orders }
}

async fn upload_deeper(app: &TestApp, token: &str) {
    let bytes = std::fs::read(Path::new(BUILD_DIR).join("pricing_deeper.wasm"))
        .expect("pricing_deeper.wasm built");
    let response = new_client()
        .post(app.url("/admin/components?name=pricing-deeper&version=1.0.0"))
        .bearer_auth(token)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .unwrap();
    json_ok(response, StatusCode::CREATED).await;
}

async fn a_deeper_pricer_is_reported_against_hand_checked_orders(backend: Backend) {
    let app = spawn(backend).await;
    let f = fixture(&app).await;
    upload_deeper(&app, &f.admin).await;
    let before = orders_fingerprint(&app).await;

    let report = dry_run(
        &app,
        &f.admin,
        json!({ "hook": "pricing", "candidate": "pricing-deeper@1.0.0" }),
    )
    .await;

    // By hand, 10 % of the standard total, rounded down, comes off each order:
    // 2000 → 1800 (−200), 950 → 855 (−95), 750 → 675 (−75), 1000 → 900 (−100),
    // 238 → 215 (−23).
    assert_eq!(report["hook"], "pricing");
    assert_eq!(report["active"]["component"], "pricing-standard@1.0.0");
    assert_eq!(report["candidate"]["component"], "pricing-deeper@1.0.0");
    assert_eq!(report["requested"], 1_000);
    assert_eq!(report["total"], 5);
    assert_eq!(report["processed"], 5);
    assert_eq!(report["exact"], 5);
    assert_eq!(report["inexact"], 0);
    assert_eq!(report["truncated"], false);
    assert_eq!(report["changed"], 5);
    assert_eq!(report["activeMismatches"]["count"], 0, "{report}");
    assert_eq!(report["acceptToReject"]["count"], 0);
    assert_eq!(report["rejectToAccept"]["count"], 0);
    assert_eq!(report["priorityChanges"]["count"], 0);
    let changes = &report["priceChanges"];
    assert_eq!(changes["count"], 5);
    let deltas = &report["priceDeltas"];
    assert_eq!(deltas["sum"], -200 - 95 - 75 - 100 - 23);
    assert_eq!(deltas["decreased"], 5);
    assert_eq!(deltas["increased"], 0);
    assert_eq!(deltas["maxDecrease"], -200);
    assert_eq!(deltas["maxIncrease"], 0);
    assert_eq!(deltas["maxAbs"], 200);
    let bucket = |from: i64| {
        deltas["histogram"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["from"] == from)
            .unwrap()["count"]
            .clone()
    };
    assert_eq!(bucket(-999), 2, "−200 and −100");
    assert_eq!(bucket(-99), 3, "−95, −75 and −23");
    // Labelled with what really happened, with the money involved.
    let by = &changes["byOutcome"];
    assert_eq!(
        by["CONFIRMED"],
        json!({ "orders": 2, "total": 2_000 + 950, "delta": -200 - 95 })
    );
    assert_eq!(
        by["FAILED:OUT_OF_STOCK"],
        json!({ "orders": 1, "total": 750, "delta": -75 })
    );
    assert_eq!(
        by["CANCELLED"],
        json!({ "orders": 1, "total": 1_000, "delta": -100 })
    );
    assert_eq!(
        by["PENDING"],
        json!({ "orders": 1, "total": 238, "delta": -23 })
    );
    // Examples newest first, with the order ids.
    let examples = changes["examples"].as_array().unwrap();
    let ids: Vec<&str> = examples
        .iter()
        .map(|e| e["orderId"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = f.orders.iter().rev().map(String::as_str).collect();
    assert_eq!(ids, newest_first);
    assert_eq!(examples[0]["delta"], -23);
    assert_eq!(examples[0]["status"], "PENDING");
    assert_eq!(examples[0]["active"], "total 238 EUR");
    assert_eq!(examples[0]["candidate"], "total 215 EUR");
    assert_eq!(examples[2]["status"], "FAILED");
    assert_eq!(examples[2]["reason"], "OUT_OF_STOCK");
    // Both sides ran every order, without a failure.
    assert_eq!(report["errors"], json!({ "active": {}, "candidate": {} }));
    for side in ["active", "candidate"] {
        let perf = &report["performance"][side];
        assert!(perf["fuel"]["p50"].as_u64().unwrap() > 0, "{perf}");
        assert!(
            perf["fuel"]["p99"].as_u64() >= perf["fuel"]["p50"].as_u64(),
            "{perf}"
        );
        assert!(perf["latencyUs"]["p99"].as_u64().unwrap() > 0, "{perf}");
    }

    // Only the newest two.
    let report = dry_run(
        &app,
        &f.admin,
        json!({ "hook": "pricing", "candidate": "pricing-deeper@1.0.0", "orders": 2 }),
    )
    .await;
    assert_eq!(report["processed"], 2);
    assert_eq!(report["priceDeltas"]["sum"], -100 - 23);

    // The same through the CLI: a table, or the server's JSON.
    let args = [
        "dry-run",
        "--tenant",
        "default",
        "--hook",
        "pricing",
        "--candidate",
        "pricing-deeper@1.0.0",
    ];
    let table = crate::ops_cli::ok(&app, &f.admin, &args).await;
    assert!(table.contains("sum -493"), "{table}");
    assert!(table.contains("FAILED:OUT_OF_STOCK"), "{table}");
    assert!(table.contains(&f.orders[4]), "{table}");
    let json_args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
    let run: Value =
        serde_json::from_str(&crate::ops_cli::ok(&app, &f.admin, &json_args).await).unwrap();
    assert_eq!(run["report"]["priceDeltas"]["sum"], -493);
    let too_many: Vec<&str> = args.iter().copied().chain(["--orders", "100001"]).collect();
    let refused = crate::ops_cli::fails(&app, &f.admin, &too_many).await;
    assert!(refused.contains("ORDERS_OUT_OF_RANGE"), "{refused}");

    // Nothing was written to the orders.
    assert_eq!(orders_fingerprint(&app).await, before);
}

async fn a_stricter_validator_is_labelled_with_what_happened(backend: Backend) {
    let app = spawn(backend).await;
    let f = fixture(&app).await;

    // At most one unit per line: orders 1 (MUG×2) and 3 (TEA×3) would have been refused.
    let report = dry_run(
        &app,
        &f.admin,
        json!({
            "hook": "validation",
            "candidate": "validation-standard@1.0.0",
            "config": { "max-quantity": 1 },
        }),
    )
    .await;
    assert_eq!(
        report["candidate"]["config"],
        json!({ "max-quantity": "1" })
    );
    assert_eq!(report["processed"], 5);
    assert_eq!(report["changed"], 2);
    let kind = &report["acceptToReject"];
    assert_eq!(kind["count"], 2, "{report}");
    assert_eq!(
        kind["byOutcome"],
        json!({
            "CONFIRMED": { "orders": 1, "total": 2_000, "delta": 0 },
            "FAILED:OUT_OF_STOCK": { "orders": 1, "total": 750, "delta": 0 },
        })
    );
    let examples = kind["examples"].as_array().unwrap();
    assert_eq!(examples[0]["orderId"], f.orders[2].as_str());
    assert_eq!(examples[1]["orderId"], f.orders[0].as_str());
    assert_eq!(examples[0]["active"], "accepted");
    assert!(
        examples[0]["candidate"]
            .as_str()
            .unwrap()
            .starts_with("rejected: "),
        "{}",
        examples[0]
    );
    // Only accepted orders are stored: nothing can go the other way.
    assert_eq!(report["rejectToAccept"]["count"], 0);
    assert_eq!(report["activeMismatches"]["count"], 0);

    // A candidate that fails on every order: counted by kind, and (the binding rejects
    // on error) every order would have been refused.
    let report = dry_run(
        &app,
        &f.admin,
        json!({
            "hook": "validation",
            "candidate": "validation-standard@1.0.0",
            "limits": { "fuel": 1 },
        }),
    )
    .await;
    assert_eq!(
        report["errors"]["candidate"],
        json!({ "InstructionLimitExceeded": 5 })
    );
    assert_eq!(report["errors"]["active"], json!({}));
    assert_eq!(report["acceptToReject"]["count"], 5);
}

async fn replaying_the_active_binding_reproduces_every_decision(backend: Backend) {
    let app = spawn(backend).await;
    let (_, mug) = app.seed_product(None, "MUG", 1_000, 100).await;
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    app.user_with_role("vic@example.com", Role::Customer, None)
        .await;
    let promoted = new_client()
        .post(app.url("/users/vic@example.com/promote-vip"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    json_ok(promoted, StatusCode::OK).await;
    let (_, vic) = app.login_as("vic@example.com", None).await;
    let bind = |bps: u32| {
        let (app, admin) = (&app, &admin);
        async move {
            let response = new_client()
                .put(app.url("/admin/tenants/default/bindings/pricing"))
                .bearer_auth(admin)
                .json(&json!({
                    "component": "pricing-standard@1.0.0",
                    "config": { "vip-discount-bps": bps },
                }))
                .send()
                .await
                .unwrap();
            json_ok(response, StatusCode::OK).await;
        }
    };
    // The built-in's 5 %, then 10 % over the API; the binding now says 20 %.
    let first = place(&app, &vic, &mug, 2).await;
    assert_eq!(first["total"], 2_000 - 100);
    bind(1_000).await;
    let second = place(&app, &vic, &mug, 2).await;
    assert_eq!(second["total"], 2_000 - 200);
    bind(2_000).await;
    settle(&app).await;

    // Each hook replayed through its active binding, as candidate: nothing changes, every
    // replay matches the stored decision (price from orders.quote, priority from
    // orders.priority, validation "accepted") — with the config each order really read.
    for (hook, candidate) in [
        ("validation", "validation-standard@1.0.0"),
        ("pricing", "pricing-standard@1.0.0"),
        ("prioritization", "priority-vip@1.0.0"),
    ] {
        let report = dry_run(
            &app,
            &admin,
            json!({ "hook": hook, "candidate": candidate }),
        )
        .await;
        assert_eq!(report["processed"], 2, "{hook}: {report}");
        assert_eq!(report["exact"], 2, "{hook}: {report}");
        assert_eq!(report["changed"], 0, "{hook}: {report}");
        assert_eq!(report["activeMismatches"]["count"], 0, "{hook}: {report}");
        assert_eq!(report["errors"], json!({ "active": {}, "candidate": {} }));
    }

    // Past retention: the first order has no decision record any more. Replayed with the
    // binding's current 20 %, it is inexact and no longer matches what was charged.
    let first_id = first["id"].as_str().unwrap();
    app.exec(&format!(
        "delete from order_decisions where order_id = '{first_id}'"
    ))
    .await;
    let report = dry_run(
        &app,
        &admin,
        json!({ "hook": "pricing", "candidate": "pricing-standard@1.0.0" }),
    )
    .await;
    assert_eq!(
        (report["exact"].as_u64(), report["inexact"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(report["changed"], 0);
    let mismatches = &report["activeMismatches"];
    assert_eq!(mismatches["count"], 1, "{report}");
    assert_eq!(mismatches["examples"][0]["orderId"], first_id);
    assert_eq!(mismatches["examples"][0]["active"], "total 1900 EUR");
    assert_eq!(mismatches["examples"][0]["candidate"], "total 1600 EUR");
}

async fn only_the_tenants_admins_and_operators_dry_run(backend: Backend) {
    let app = spawn(backend).await;
    let f = fixture(&app).await;
    app.tenant("elsewhere").await;
    let customer = app
        .user_with_role("cy@example.com", Role::Customer, None)
        .await;
    let foreign_admin = app
        .user_with_role("them@example.com", Role::Admin, Some("elsewhere"))
        .await;
    let operator = app
        .user_with_role("ops@example.com", Role::Operator, Some("elsewhere"))
        .await;
    let body = json!({ "hook": "prioritization", "candidate": "priority-vip@1.0.0" });

    assert_error(
        post_run(&app, &customer, "default", body.clone()).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    // Another tenant's admin: the tenant does not exist for it.
    let refused = post_run(&app, &foreign_admin, "default", body.clone()).await;
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    // An operator, any tenant.
    let report = dry_run(&app, &operator, body.clone()).await;
    assert_eq!(report["processed"], 5);
    // The admin's own run is not visible from the other tenant.
    let run = json_ok(
        post_run(&app, &f.admin, "default", body.clone()).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let id = run["id"].as_str().unwrap();
    let elsewhere = new_client()
        .get(app.url(&format!("/admin/tenants/elsewhere/dry-run/{id}")))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_error(elsewhere, StatusCode::NOT_FOUND, "DRY_RUN_NOT_FOUND").await;
    let foreign = new_client()
        .get(app.url(&format!("/admin/tenants/default/dry-run/{id}")))
        .bearer_auth(&foreign_admin)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
}

async fn bad_requests_are_refused_with_stable_codes(backend: Backend) {
    let app = spawn(backend).await;
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    let cases = [
        (
            json!({ "hook": "shipping", "candidate": "pricing-standard@1.0.0" }),
            "HOOK_NOT_FOUND",
        ),
        (
            json!({ "hook": "pricing", "candidate": "nope@1.0.0" }),
            "COMPONENT_NOT_FOUND",
        ),
        (
            json!({ "hook": "pricing", "candidate": "priority-vip@1.0.0" }),
            "HOOK_NOT_EXPORTED",
        ),
        (
            json!({ "hook": "pricing", "candidate": "pricing-standard@1.0.0", "orders": 100_001 }),
            "ORDERS_OUT_OF_RANGE",
        ),
        (
            json!({ "hook": "pricing", "candidate": "pricing-standard@1.0.0", "orders": 0 }),
            "ORDERS_OUT_OF_RANGE",
        ),
        (
            json!({ "hook": "pricing", "candidate": "pricing-standard@1.0.0", "budgetMs": 600_001 }),
            "BUDGET_OUT_OF_RANGE",
        ),
        (
            json!({ "hook": "pricing", "candidate": "pricing-standard@1.0.0", "limits": { "fuel": u64::MAX } }),
            "LIMITS_OUT_OF_RANGE",
        ),
        (
            json!({ "hook": "pricing", "candidate": "pricing-standard@1.0.0", "config": { "bad key": "1" } }),
            "CONFIG_INVALID",
        ),
        (
            json!({ "hook": "pricing", "candidate": "pricing-standard@1.0.0", "since": "yesterday" }),
            "VALIDATION_FAILED",
        ),
    ];
    for (body, code) in cases {
        assert_error(
            post_run(&app, &admin, "default", body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
        )
        .await;
    }
    let unknown = new_client()
        .get(app.url("/admin/tenants/default/dry-run/nope"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_error(unknown, StatusCode::NOT_FOUND, "DRY_RUN_NOT_FOUND").await;
    // No orders: a run that replays nothing, done at once.
    let report = dry_run(
        &app,
        &admin,
        json!({ "hook": "pricing", "candidate": "pricing-standard@1.0.0", "since": "2020-01-01T00:00:00Z" }),
    )
    .await;
    assert_eq!(report["total"], 0);
    assert_eq!(report["processed"], 0);
    assert_eq!(app.scalar("select count(*) from dry_runs").await, 1);
}
