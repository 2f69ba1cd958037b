//! The component registry over HTTP with the real components built from `components/`:
//! uploads and their idempotency, every refusal code with a real bad file, quotas,
//! permissions between tenants, list filters, and deleting only what nothing binds.

use std::path::Path;

use orderhost::{auth::Role, policy::registry::BUILD_DIR};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::{
    backend_tests,
    helpers::{Backend, TestApp, assert_error, json_ok, new_client, spawn_app, spawn_app_with},
};

backend_tests!(
    uploads_are_validated_stored_and_idempotent,
    every_refusal_has_its_code_and_stores_nothing,
    an_upload_over_the_size_limit_is_too_large,
    quotas_limit_tenant_uploads_not_the_platform,
    concurrent_uploads_cannot_overrun_a_quota,
    tenants_see_their_own_and_the_platform_components,
    lists_filter_and_paginate,
    a_bound_component_cannot_be_deleted,
);

/// A component as the build produced it.
fn built(file: &str) -> Vec<u8> {
    std::fs::read(Path::new(BUILD_DIR).join(file)).unwrap_or_else(|e| panic!("{file} built: {e}"))
}

fn flash_sale() -> Vec<u8> {
    built("flash_sale.wasm")
}

/// `POST /admin/components?name=…&version=…` with a raw wasm body.
async fn upload(app: &TestApp, token: &str, name: &str, version: &str, bytes: Vec<u8>) -> Response {
    new_client()
        .post(app.url(&format!("/admin/components?name={name}&version={version}")))
        .bearer_auth(token)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .expect("request")
}

/// An upload answered 201; its body.
async fn created(app: &TestApp, token: &str, name: &str, version: &str, bytes: Vec<u8>) -> Value {
    json_ok(
        upload(app, token, name, version, bytes).await,
        StatusCode::CREATED,
    )
    .await
}

/// An upload answered 200 (these bytes were stored already); its body.
async fn stored_again(
    app: &TestApp,
    token: &str,
    name: &str,
    version: &str,
    bytes: Vec<u8>,
) -> Value {
    json_ok(
        upload(app, token, name, version, bytes).await,
        StatusCode::OK,
    )
    .await
}

/// `GET path` answered 200; its body.
async fn get_ok(app: &TestApp, token: &str, path: &str) -> Value {
    json_ok(get(app, token, path).await, StatusCode::OK).await
}

/// An upload of `chunks` × `size` zero bytes sent chunked (no `Content-Length`) over a
/// raw connection; returns the raw response.
async fn chunked_upload(app: &TestApp, token: &str, chunks: usize, size: usize) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let host = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST /admin/components?name=big&version=1.0.0 HTTP/1.1\r\nhost: {host}\r\n\
         authorization: Bearer {token}\r\ncontent-type: application/wasm\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..chunks {
        // The server may answer and close before every chunk is sent.
        if stream
            .write_all(format!("{size:x}\r\n").as_bytes())
            .await
            .is_err()
            || stream.write_all(&vec![0u8; size]).await.is_err()
            || stream.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

async fn get(app: &TestApp, token: &str, path: &str) -> Response {
    new_client()
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

async fn delete(app: &TestApp, token: &str, path: &str) -> Response {
    new_client()
        .delete(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

/// Tenants `acme` and `beta`, an operator (default tenant), an admin of each and a
/// customer of acme.
struct Cast {
    operator: String,
    acme: String,
    beta: String,
    customer: String,
}

async fn cast(app: &TestApp) -> Cast {
    app.tenant("acme").await;
    app.tenant("beta").await;
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
        customer: app
            .user_with_role("buyer@acme.example", Role::Customer, Some("acme"))
            .await,
    }
}

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| format!("{}@{}:{}", c["name"], c["version"], c["owner"]).replace('"', ""))
        .collect()
}

async fn uploads_are_validated_stored_and_idempotent(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = cast(&app).await;
    let bytes = flash_sale();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));

    let first = created(&app, &who.acme, "my-sale", "0.1.0", bytes.clone()).await;
    assert_eq!(first["name"], "my-sale");
    assert_eq!(first["version"], "0.1.0");
    assert_eq!(first["owner"], "acme");
    assert_eq!(first["world"], "validator");
    assert_eq!(first["hooks"], json!(["validation"]));
    assert_eq!(first["witVersion"], "1.0.0");
    assert_eq!(first["sha256"], sha.as_str());
    assert_eq!(first["sizeBytes"], bytes.len());
    assert_eq!(
        first["exports"],
        json!(["ordering:policy/validation@1.0.0"])
    );
    let imports: Vec<&str> = first["imports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        imports.contains(&"ordering:policy/host@1.0.0"),
        "{imports:?}"
    );
    assert!(imports.iter().all(|i| !i.starts_with("wasi:sockets")));
    let stored = orderhost::registry::load_bytes(&app.state.store, &sha)
        .await
        .unwrap()
        .expect("bytes stored by hash");
    assert_eq!(stored, bytes);

    // The same bytes again: the stored record, not a second one.
    let again = stored_again(&app, &who.acme, "my-sale", "0.1.0", bytes.clone()).await;
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["createdAt"], first["createdAt"]);
    // Other bytes under the same name@version.
    let other = assert_error(
        upload(
            &app,
            &who.acme,
            "my-sale",
            "0.1.0",
            built("priority_vip.wasm"),
        )
        .await,
        StatusCode::CONFLICT,
        "VERSION_EXISTS",
    )
    .await;
    assert_eq!(other["error"]["details"]["component"], "my-sale@0.1.0");
    assert_eq!(app.scalar("select count(*) from components").await, 1);
    // A built-in's name@version cannot be shadowed.
    assert_error(
        upload(&app, &who.operator, "flash-sale", "1.0.0", bytes.clone()).await,
        StatusCode::CONFLICT,
        "VERSION_EXISTS",
    )
    .await;

    // Name and version in headers; a 94 KB component passes the 64 KiB global body limit.
    let sandbox = built("bad_sandbox.wasm");
    assert!(sandbox.len() > 64 * 1024, "{}", sandbox.len());
    let by_headers = new_client()
        .post(app.url("/admin/components"))
        .bearer_auth(&who.operator)
        .header("content-type", "application/wasm")
        .header("x-component-name", "probe")
        .header("x-component-version", "2.0.0-rc.1")
        .body(sandbox)
        .send()
        .await
        .unwrap();
    let probe = json_ok(by_headers, StatusCode::CREATED).await;
    assert_eq!(probe["owner"], "platform");
    assert_eq!(probe["version"], "2.0.0-rc.1");

    // Bad requests around the body.
    assert_error(
        upload(&app, &who.acme, "My Sale", "0.1.0", bytes.clone()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_error(
        upload(&app, &who.acme, "my-sale", "1.0", bytes.clone()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let no_version = new_client()
        .post(app.url("/admin/components?name=x"))
        .bearer_auth(&who.acme)
        .header("content-type", "application/wasm")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_error(
        no_version,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let as_json = new_client()
        .post(app.url("/admin/components?name=x&version=1.0.0"))
        .bearer_auth(&who.acme)
        .json(&json!({ "wasm": "no" }))
        .send()
        .await
        .unwrap();
    assert_error(
        as_json,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
}

async fn every_refusal_has_its_code_and_stores_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = cast(&app).await;
    let flash = flash_sale();
    let truncated = flash[..flash.len() / 2].to_vec();
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("random bytes", random, "NOT_A_COMPONENT"),
        ("core module", b"\0asm\x01\0\0\0".to_vec(), "CORE_MODULE"),
        (
            "foreign package",
            built("bad_unknown_world.wasm"),
            "UNKNOWN_WORLD",
        ),
        (
            "std::net",
            built("bad_forbidden_import.wasm"),
            "FORBIDDEN_IMPORT",
        ),
        ("truncated", truncated, "COMPILE_FAILED"),
        ("trap", built("bad_trap.wasm"), "SMOKE_CALL_FAILED"),
        ("loop", built("bad_loop.wasm"), "SMOKE_CALL_FAILED"),
        ("memory", built("bad_memory.wasm"), "SMOKE_CALL_FAILED"),
        ("output", built("bad_output.wasm"), "SMOKE_CALL_FAILED"),
    ];
    let mut details = std::collections::BTreeMap::new();
    for (what, bytes, code) in cases {
        let body = assert_error(
            upload(&app, &who.acme, "bad", "1.0.0", bytes).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
        )
        .await;
        details.insert(what, body["error"]["details"].clone());
    }
    assert!(
        details["core module"]["hint"]
            .as_str()
            .unwrap()
            .contains("wasm32-wasip2"),
        "{}",
        details["core module"]
    );
    assert_eq!(
        details["foreign package"]["exports"],
        json!(["acme:rules/check@1.0.0"])
    );
    assert!(
        details["std::net"]["import"]
            .as_str()
            .unwrap()
            .starts_with("wasi:sockets/"),
        "{}",
        details["std::net"]
    );
    assert!(details["truncated"]["problem"].is_string());
    for (what, hook, kind) in [
        ("trap", "validation", "Trap"),
        ("memory", "validation", "MemoryLimitExceeded"),
        ("output", "pricing", "InvalidOutput"),
    ] {
        assert_eq!(details[what]["hook"], hook, "{what}");
        assert_eq!(details[what]["kind"], kind, "{what}: {}", details[what]);
    }
    let looped = details["loop"]["kind"].as_str().unwrap();
    assert!(
        ["InstructionLimitExceeded", "Timeout"].contains(&looped),
        "{looped}"
    );
    assert_eq!(app.scalar("select count(*) from components").await, 0);

    // A refused upload does not hold the name: good bytes under it are accepted.
    created(&app, &who.acme, "bad", "1.0.0", flash).await;
}

async fn an_upload_over_the_size_limit_is_too_large(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.component_max_bytes = 50_000).await;
    let who = cast(&app).await;
    let flash = flash_sale();
    assert!(flash.len() > 50_000);
    let body = assert_error(
        upload(&app, &who.acme, "big", "1.0.0", flash).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "TOO_LARGE",
    )
    .await;
    assert_eq!(body["error"]["details"]["maxBytes"], 50_000);
    // Streamed without a length: refused once the limit is crossed.
    let streamed = chunked_upload(&app, &who.acme, 8, 8192).await;
    assert!(
        streamed.starts_with("HTTP/1.1 422") && streamed.contains("TOO_LARGE"),
        "{streamed}"
    );
    // Within the limit: validated as usual.
    created(
        &app,
        &who.acme,
        "small",
        "1.0.0",
        built("bad_wrong_world.wasm"),
    )
    .await;
    // Other routes keep the global body limit.
    let big_json = new_client()
        .post(app.url("/admin/policy/evaluate"))
        .bearer_auth(&who.acme)
        .header("content-type", "application/json")
        .body(format!("{{\"pad\":\"{}\"}}", "x".repeat(70_000)))
        .send()
        .await
        .unwrap();
    assert_error(big_json, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
    assert_eq!(app.scalar("select count(*) from components").await, 1);
}

async fn quotas_limit_tenant_uploads_not_the_platform(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = cast(&app).await;
    let flash = flash_sale();
    let put_quota = |token: String, body: Value| {
        let url = app.url("/admin/tenants/acme/component-quota");
        async move {
            new_client()
                .put(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    // Defaults until an operator sets one.
    let initial = get_ok(&app, &who.acme, "/admin/tenants/acme/component-quota").await;
    assert_eq!(initial["maxCount"], 20);
    assert_eq!(initial["custom"], false);
    assert_error(
        put_quota(who.acme.clone(), json!({ "maxCount": 100, "maxBytes": 1 })).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    assert_error(
        get(&app, &who.customer, "/admin/tenants/acme/component-quota").await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    assert_error(
        get(&app, &who.beta, "/admin/tenants/acme/component-quota").await,
        StatusCode::NOT_FOUND,
        "TENANT_NOT_FOUND",
    )
    .await;
    assert_error(
        put_quota(
            who.operator.clone(),
            json!({ "maxCount": -1, "maxBytes": 1 }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;

    // Count: one component.
    let set = json_ok(
        put_quota(
            who.operator.clone(),
            json!({ "maxCount": 1, "maxBytes": 10_000_000 }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(set["custom"], true);
    created(&app, &who.acme, "one", "1.0.0", flash.clone()).await;
    // The same bytes again are no new component: still 200.
    stored_again(&app, &who.acme, "one", "1.0.0", flash.clone()).await;
    let over = assert_error(
        upload(&app, &who.acme, "two", "1.0.0", flash.clone()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "QUOTA_EXCEEDED",
    )
    .await;
    assert_eq!(over["error"]["details"]["usedCount"], 1);
    assert_eq!(over["error"]["details"]["maxCount"], 1);

    // Bytes: room for the count, not for the size.
    let max_bytes = flash.len() + 1_000;
    json_ok(
        put_quota(
            who.operator.clone(),
            json!({ "maxCount": 5, "maxBytes": max_bytes }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let over = assert_error(
        upload(&app, &who.acme, "two", "1.0.0", flash.clone()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "QUOTA_EXCEEDED",
    )
    .await;
    assert_eq!(over["error"]["details"]["usedBytes"], flash.len());
    // Another tenant and the platform are not affected.
    created(&app, &who.beta, "two", "1.0.0", flash.clone()).await;
    created(&app, &who.operator, "two", "1.0.0", flash.clone()).await;
    let usage = get_ok(&app, &who.operator, "/admin/tenants/acme/component-quota").await;
    assert_eq!(usage["usedCount"], 1);
    assert_eq!(usage["maxBytes"], max_bytes);
}

async fn concurrent_uploads_cannot_overrun_a_quota(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = cast(&app).await;
    let quota = new_client()
        .put(app.url("/admin/tenants/acme/component-quota"))
        .bearer_auth(&who.operator)
        .json(&json!({ "maxCount": 1, "maxBytes": 10_000_000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(quota.status(), StatusCode::OK);
    let flash = flash_sale();
    // Four uploads pass the early check together; the insert's check lets one through.
    let (a, b, c, d) = tokio::join!(
        upload(&app, &who.acme, "race-a", "1.0.0", flash.clone()),
        upload(&app, &who.acme, "race-b", "1.0.0", flash.clone()),
        upload(&app, &who.acme, "race-c", "1.0.0", flash.clone()),
        upload(&app, &who.acme, "race-d", "1.0.0", flash.clone()),
    );
    let mut statuses: Vec<u16> = [a, b, c, d].iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses, [201, 422, 422, 422]);
    assert_eq!(app.scalar("select count(*) from components").await, 1);
}

async fn tenants_see_their_own_and_the_platform_components(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = cast(&app).await;
    let flash = flash_sale();
    created(&app, &who.acme, "acme-rule", "1.0.0", flash.clone()).await;
    created(
        &app,
        &who.operator,
        "shared",
        "1.0.0",
        built("priority_vip.wasm"),
    )
    .await;
    // Customers: 403 everywhere.
    assert_error(
        upload(&app, &who.customer, "x", "1.0.0", flash.clone()).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    assert_error(
        get(&app, &who.customer, "/admin/components").await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    assert_error(
        get(&app, &who.customer, "/admin/components/acme-rule/1.0.0").await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    // The admin of beta: acme's component does not exist for it.
    assert_error(
        get(&app, &who.beta, "/admin/components/acme-rule/1.0.0").await,
        StatusCode::NOT_FOUND,
        "COMPONENT_NOT_FOUND",
    )
    .await;
    assert_error(
        delete(&app, &who.beta, "/admin/components/acme-rule/1.0.0").await,
        StatusCode::NOT_FOUND,
        "COMPONENT_NOT_FOUND",
    )
    .await;
    assert_error(
        get(&app, &who.beta, "/admin/components?owner=acme").await,
        StatusCode::NOT_FOUND,
        "TENANT_NOT_FOUND",
    )
    .await;
    let beta_list = get_ok(&app, &who.beta, "/admin/components").await;
    assert_eq!(names(&beta_list), ["shared@1.0.0:platform"]);
    // It may use the platform's but not delete it.
    get_ok(&app, &who.beta, "/admin/components/shared/1.0.0").await;
    assert_error(
        delete(&app, &who.beta, "/admin/components/shared/1.0.0").await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    // Beta's own component of the same name is its own; acme's stays acme's.
    created(
        &app,
        &who.beta,
        "acme-rule",
        "1.0.0",
        built("validation_standard.wasm"),
    )
    .await;
    let beta_view = get_ok(&app, &who.beta, "/admin/components/acme-rule/1.0.0").await;
    assert_eq!(beta_view["owner"], "beta");
    let acme_view = get_ok(&app, &who.acme, "/admin/components/acme-rule/1.0.0").await;
    assert_eq!(acme_view["owner"], "acme");
    assert_ne!(acme_view["sha256"], beta_view["sha256"]);
    // The operator sees all three, and picks an owner's.
    let all = get_ok(&app, &who.operator, "/admin/components").await;
    let mut seen = names(&all);
    seen.sort();
    assert_eq!(
        seen,
        [
            "acme-rule@1.0.0:acme",
            "acme-rule@1.0.0:beta",
            "shared@1.0.0:platform"
        ]
    );
    assert_eq!(all["total"], 3);
    let beta_by_operator = get_ok(
        &app,
        &who.operator,
        "/admin/components/acme-rule/1.0.0?owner=beta",
    )
    .await;
    assert_eq!(beta_by_operator["owner"], "beta");
    // An admin deletes its own: gone for it, the other tenant's stays.
    let deleted = delete(&app, &who.acme, "/admin/components/acme-rule/1.0.0").await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_error(
        get(&app, &who.acme, "/admin/components/acme-rule/1.0.0").await,
        StatusCode::NOT_FOUND,
        "COMPONENT_NOT_FOUND",
    )
    .await;
    get_ok(&app, &who.beta, "/admin/components/acme-rule/1.0.0").await;
    // Unparseable path parts are plain 404s.
    assert_error(
        get(&app, &who.acme, "/admin/components/Not%20A%20Name/1.0.0").await,
        StatusCode::NOT_FOUND,
        "COMPONENT_NOT_FOUND",
    )
    .await;
    assert_error(
        get(&app, &who.acme, "/admin/components/shared/one").await,
        StatusCode::NOT_FOUND,
        "COMPONENT_NOT_FOUND",
    )
    .await;
}

async fn lists_filter_and_paginate(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = cast(&app).await;
    for (token, name, version, file) in [
        (&who.acme, "sale", "1.0.0", "flash_sale.wasm"),
        (&who.acme, "sale", "1.1.0", "validation_standard.wasm"),
        (&who.acme, "prio", "1.0.0", "priority_vip.wasm"),
        (&who.operator, "price", "1.0.0", "pricing_standard.wasm"),
    ] {
        created(&app, token, name, version, built(file)).await;
    }
    let list = |token: &str, query: &str| {
        let (token, path) = (token.to_owned(), format!("/admin/components{query}"));
        let app = &app;
        async move { get_ok(app, &token, &path).await }
    };
    let by_name = list(&who.acme, "?name=sale").await;
    assert_eq!(names(&by_name), ["sale@1.1.0:acme", "sale@1.0.0:acme"]);
    let by_world = list(&who.acme, "?world=prioritizer").await;
    assert_eq!(names(&by_world), ["prio@1.0.0:acme"]);
    let pricers = list(&who.operator, "?world=pricer").await;
    assert_eq!(names(&pricers), ["price@1.0.0:platform"]);
    let platform = list(&who.acme, "?owner=platform").await;
    assert_eq!(names(&platform), ["price@1.0.0:platform"]);
    let acme_only = list(&who.operator, "?owner=acme").await;
    assert_eq!(acme_only["total"], 3);
    let page2 = list(&who.acme, "?perPage=2&page=2").await;
    assert_eq!(page2["total"], 4);
    assert_eq!(page2["perPage"], 2);
    assert_eq!(names(&page2), ["sale@1.1.0:acme", "sale@1.0.0:acme"]);
    let none = list(&who.acme, "?name=nothing").await;
    assert_eq!(none["total"], 0);
    assert_error(
        get(&app, &who.acme, "/admin/components?owner=nobody").await,
        StatusCode::NOT_FOUND,
        "TENANT_NOT_FOUND",
    )
    .await;
}

async fn a_bound_component_cannot_be_deleted(backend: Backend) {
    // What binds today: the TOML manifests. `my-sale@0.1.0` is bound by acme's manifest,
    // `house-rule@1.0.0` by default.toml (every tenant without its own binding).
    let policies = tempfile::tempdir().unwrap();
    let dir = policies.path().to_owned();
    std::fs::create_dir_all(dir.join("components")).unwrap();
    std::fs::create_dir_all(dir.join("tenants")).unwrap();
    let flash = flash_sale();
    let prio = built("priority_vip.wasm");
    std::fs::write(dir.join("components/my-sale@0.1.0.wasm"), &flash).unwrap();
    std::fs::write(dir.join("components/house-rule@1.0.0.wasm"), &prio).unwrap();
    std::fs::write(
        dir.join("tenants/acme.toml"),
        "[validation]\ncomponent = \"my-sale@0.1.0\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("default.toml"),
        "[prioritization]\ncomponent = \"house-rule@1.0.0\"\n",
    )
    .unwrap();
    let app = spawn_app_with(backend, |c| c.policies_dir = dir).await;
    let who = cast(&app).await;

    created(&app, &who.acme, "my-sale", "0.1.0", flash.clone()).await;
    created(&app, &who.operator, "house-rule", "1.0.0", prio).await;
    created(&app, &who.acme, "unbound", "1.0.0", flash).await;

    let view = get_ok(&app, &who.acme, "/admin/components/my-sale/0.1.0").await;
    assert_eq!(view["boundBy"][0]["tenant"], "acme");
    assert_eq!(view["boundBy"][0]["hook"], "validation");
    assert!(
        view["boundBy"][0]["source"]
            .as_str()
            .unwrap()
            .ends_with("acme.toml")
    );
    let refused = assert_error(
        delete(&app, &who.acme, "/admin/components/my-sale/0.1.0").await,
        StatusCode::CONFLICT,
        "COMPONENT_IN_USE",
    )
    .await;
    assert_eq!(refused["error"]["details"]["boundBy"][0]["tenant"], "acme");

    let house = get_ok(&app, &who.beta, "/admin/components/house-rule/1.0.0").await;
    assert_eq!(house["boundBy"][0]["tenant"], Value::Null);
    assert_eq!(house["boundBy"][0]["hook"], "prioritization");
    assert_error(
        delete(&app, &who.operator, "/admin/components/house-rule/1.0.0").await,
        StatusCode::CONFLICT,
        "COMPONENT_IN_USE",
    )
    .await;

    let unbound = get_ok(&app, &who.acme, "/admin/components/unbound/1.0.0").await;
    assert_eq!(unbound["boundBy"], json!([]));
    let deleted = delete(&app, &who.acme, "/admin/components/unbound/1.0.0").await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_error(
        get(&app, &who.acme, "/admin/components/unbound/1.0.0").await,
        StatusCode::NOT_FOUND,
        "COMPONENT_NOT_FOUND",
    )
    .await;
    assert_eq!(app.scalar("select count(*) from components").await, 2);
}
