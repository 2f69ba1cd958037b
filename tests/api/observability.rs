//! Metrics and logs: every documented series is scraped after a flow that touches the
//! whole service, `/metrics` is protected as configured, and the real binary's logs and
//! answers hold no password, secret, token or password hash.

use std::{
    collections::BTreeSet,
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use orderhost::{auth::Role, policy::registry::BUILD_DIR};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::{
    backend_tests,
    helpers::{Backend, TestApp, assert_error, json_ok, new_client, spawn_app_with},
};

/// Every series the README's "Metrics" section documents (histograms by base name).
const SERIES: &[&str] = &[
    "orderhost_http_requests_total",
    "orderhost_http_request_duration_seconds",
    "orderhost_orders_accepted_total",
    "orderhost_orders_settled_total",
    "orderhost_order_time_to_final_seconds",
    "orderhost_order_write_group_size",
    "orderhost_queue_waiting",
    "orderhost_queue_in_flight",
    "orderhost_queue_dead_letters",
    "orderhost_queue_retries_total",
    "orderhost_queue_dead_total",
    "orderhost_dead_letters_total",
    "orderhost_outbox_unsent",
    "orderhost_outbox_lag_seconds",
    "orderhost_outbox_pushed_total",
    "orderhost_outbox_push_failures_total",
    "orderhost_policy_calls_total",
    "orderhost_policy_errors_total",
    "orderhost_policy_fuel_used",
    "orderhost_policy_call_seconds",
    "orderhost_breaker_state",
    "orderhost_breaker_transitions_total",
    "orderhost_canary_auto_rollbacks_total",
    "orderhost_shadow_disagreements_total",
    "orderhost_db_pool_connections",
    "orderhost_db_pool_idle_connections",
    "orderhost_db_pool_in_use_connections",
    "orderhost_db_pool_max_connections",
];

const METRICS_TOKEN: &str = "metrics-token-for-the-scraper-0123";

/// The sample lines of `name` in a scrape (a histogram's `_bucket`, `_sum`, `_count`).
fn samples<'a>(scrape: &'a str, name: &str) -> Vec<&'a str> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name).is_some_and(|rest| {
                rest.starts_with(['{', ' '])
                    || rest.starts_with("_bucket{")
                    || rest.starts_with("_sum")
                    || rest.starts_with("_count")
            })
        })
        .collect()
}

/// The value of the sample whose line starts with `prefix` (name and labels).
fn value(scrape: &str, prefix: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in the scrape"))
}

async fn scrape(app: &TestApp, token: Option<&str>) -> Response {
    let mut request = new_client().get(app.url("/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request")
}

async fn order(app: &TestApp, token: &str, sku: &str, quantity: i64) -> Value {
    let placed = new_client()
        .post(app.url("/order"))
        .bearer_auth(token)
        .json(&json!({ "lines": [{ "sku": sku, "quantity": quantity }] }))
        .send()
        .await
        .expect("request");
    json_ok(placed, StatusCode::ACCEPTED).await
}

/// Polls the order until a worker settled it (bounded).
async fn settled(app: &TestApp, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view = json_ok(
            new_client()
                .get(app.url(&format!("/order/{id}")))
                .bearer_auth(token)
                .send()
                .await
                .expect("request"),
            StatusCode::OK,
        )
        .await;
        if view["status"] != "PENDING" {
            return view;
        }
        assert!(Instant::now() < deadline, "order {id} still pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Uploads `trap-some-skus` and binds it to the default tenant's validation with a
/// fallback, trapping on BOOM: policy errors and a breaker that opens.
async fn bind_trapper(app: &TestApp, admin: &str) {
    let bytes = std::fs::read(Path::new(BUILD_DIR).join("trap_some_skus.wasm"))
        .expect("trap_some_skus.wasm built");
    let uploaded = new_client()
        .post(app.url("/admin/components?name=trap-some-skus&version=1.0.0"))
        .bearer_auth(admin)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .expect("request");
    json_ok(uploaded, StatusCode::CREATED).await;
    let bound = new_client()
        .put(app.url("/admin/tenants/default/bindings/validation"))
        .bearer_auth(admin)
        .json(&json!({
            "component": "trap-some-skus@1.0.0",
            "config": { "skus": "BOOM" },
            "onError": "fallback",
        }))
        .send()
        .await
        .expect("request");
    json_ok(bound, StatusCode::OK).await;
}

async fn every_documented_series_is_scraped_behind_the_token(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.metrics.metrics_token = METRICS_TOKEN.into();
        c.breaker.min_calls = 2;
        c.breaker.failure_ratio = 50;
    })
    .await;

    // Without the token, or with another one: 401, and nothing of the metrics.
    for token in [None, Some("not-the-token")] {
        let refused = scrape(&app, token).await;
        assert_eq!(refused.headers()["www-authenticate"], "Bearer", "{token:?}");
        let body = assert_error(refused, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
        assert!(!body.to_string().contains("orderhost_"), "{body}");
    }

    // A flow through every part: accounts, catalog, orders (one out of stock), a policy
    // evaluation, a failing component that opens its breaker.
    app.seed_product(None, "MUG", 1_000, 100).await;
    app.seed_product(None, "LAST", 500, 1).await;
    app.seed_product(None, "BOOM", 700, 100).await;
    let admin = app
        .user_with_role("boss@example.com", Role::Admin, None)
        .await;
    json_ok(
        app.register("ann@example.com", None).await,
        StatusCode::CREATED,
    )
    .await;
    let (_, ann) = app.login_as("ann@example.com", None).await;
    let confirmed = order(&app, &ann, "MUG", 1).await;
    let first = order(&app, &ann, "LAST", 1).await;
    let second = order(&app, &ann, "LAST", 1).await;
    assert_eq!(
        settled(&app, &ann, confirmed["id"].as_str().unwrap()).await["status"],
        "CONFIRMED"
    );
    let outcomes: BTreeSet<String> = [&first, &second]
        .into_iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    let mut reasons = Vec::new();
    for id in &outcomes {
        let view = settled(&app, &ann, id).await;
        reasons.push(view["reason"].as_str().unwrap_or("none").to_owned());
    }
    reasons.sort();
    assert_eq!(reasons, ["OUT_OF_STOCK", "none"]);
    let evaluated = new_client()
        .post(app.url("/admin/policy/evaluate"))
        .bearer_auth(&admin)
        .json(&json!({
            "customer": { "id": "c1", "vip": true },
            "lines": [{ "productId": "p1", "stockId": "s1", "sku": "MUG", "quantity": 1,
                        "unitPrice": 1000, "currency": "EUR" }]
        }))
        .send()
        .await
        .expect("request");
    json_ok(evaluated, StatusCode::OK).await;
    bind_trapper(&app, &admin).await;
    for _ in 0..3 {
        order(&app, &ann, "BOOM", 1).await;
    }

    let response = scrape(&app, Some(METRICS_TOKEN)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
    );
    let scrape = response.text().await.unwrap();
    let missing: Vec<&str> = SERIES
        .iter()
        .copied()
        .filter(|name| samples(&scrape, name).is_empty())
        .collect();
    assert!(
        missing.is_empty(),
        "missing series {missing:?} in\n{scrape}"
    );
    // Every series has its help text.
    for name in SERIES {
        assert!(
            scrape.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
    }
    // Routes are templates, never raw paths: no order id in any label.
    assert!(
        scrape.contains(
            r#"orderhost_http_requests_total{method="GET",route="/order/{id}",status="200"}"#
        ),
        "{scrape}"
    );
    for id in &outcomes {
        assert!(
            !scrape.contains(id.as_str()),
            "raw path with {id} in a label"
        );
    }
    // What this test caused is counted (the recorder is shared by the whole test
    // binary: at least, not exactly).
    assert!(
        value(
            &scrape,
            r#"orderhost_orders_settled_total{class="regular",status="FAILED",reason="OUT_OF_STOCK"}"#
        ) >= 1.0
    );
    assert!(
        value(
            &scrape,
            r#"orderhost_orders_settled_total{class="regular",status="CONFIRMED",reason="none"}"#
        ) >= 2.0
    );
    assert!(
        value(
            &scrape,
            r#"orderhost_order_time_to_final_seconds_count{class="regular",status="CONFIRMED"}"#
        ) >= 2.0
    );
    assert!(
        samples(&scrape, "orderhost_policy_errors_total")
            .iter()
            .any(|l| l.contains(r#"component="trap-some-skus@1.0.0""#)
                && l.contains(r#"kind="Trap""#)),
        "{scrape}"
    );
    assert!(
        samples(&scrape, "orderhost_breaker_transitions_total")
            .iter()
            .any(
                |l| l.contains(r#"component="trap-some-skus@1.0.0""#) && l.contains(r#"to="open""#)
            ),
        "{scrape}"
    );
    for class in ["vip", "regular"] {
        assert_eq!(
            samples(&scrape, "orderhost_queue_waiting")
                .iter()
                .filter(|l| l.contains(&format!(r#"class="{class}""#)))
                .count(),
            1,
            "{class}"
        );
    }
    assert!(value(&scrape, "orderhost_db_pool_max_connections") >= 1.0);
}

backend_tests!(every_documented_series_is_scraped_behind_the_token);

/// Builds and serves an app on a fresh SQLite file with `customize`; returns the API and
/// metrics ports, and the server task (abort it) with the folder.
async fn serve_sqlite(
    customize: impl FnOnce(&mut orderhost::Config),
) -> anyhow::Result<(
    u16,
    Option<u16>,
    tokio::task::JoinHandle<()>,
    tempfile::TempDir,
)> {
    let dir = tempfile::tempdir()?;
    let mut config = orderhost::Config {
        store: orderhost::config::StoreConfig {
            database_url: format!("sqlite://{}", dir.path().join("m.db").display()),
            db_max_connections: 4,
            ..Default::default()
        },
        bind: "127.0.0.1:0".parse()?,
        policies_dir: dir.path().join("policies"),
        ..Default::default()
    };
    customize(&mut config);
    let app = orderhost::App::build(config).await?;
    let (port, metrics_port) = (app.port(), app.metrics_port());
    let server = tokio::spawn(async move {
        let _ = app.run_until_stopped(std::future::pending()).await;
    });
    Ok((port, metrics_port, server, dir))
}

async fn get(port: u16, path: &str, token: Option<&str>) -> Response {
    let mut request = new_client().get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_to_their_own_address_and_production_never_serves_them_openly() {
    const SECRET: &str = "a-production-secret-of-at-least-32-bytes";

    // A separate address: /metrics there, 404 on the API port.
    let (port, metrics_port, server, _dir) = serve_sqlite(|c| {
        c.metrics.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
    .unwrap();
    let metrics_port = metrics_port.expect("a metrics listener");
    assert_ne!(metrics_port, port);
    assert_error(
        get(port, "/metrics", None).await,
        StatusCode::NOT_FOUND,
        "ROUTE_NOT_FOUND",
    )
    .await;
    let scraped = get(metrics_port, "/metrics", None).await;
    assert_eq!(scraped.status(), StatusCode::OK);
    assert!(
        scraped
            .text()
            .await
            .unwrap()
            .contains("orderhost_db_pool_max_connections")
    );
    // Only /metrics lives there: the API does not.
    assert_error(
        get(metrics_port, "/health", None).await,
        StatusCode::NOT_FOUND,
        "ROUTE_NOT_FOUND",
    )
    .await;
    server.abort();

    // Production with neither a token nor an address: no metrics on the API port.
    let (port, metrics_port, server, _dir) = serve_sqlite(|c| {
        c.environment = orderhost::config::Environment::Production;
        c.jwt_secret = SECRET.into();
    })
    .await
    .unwrap();
    assert_eq!(metrics_port, None);
    assert_error(
        get(port, "/metrics", None).await,
        StatusCode::NOT_FOUND,
        "ROUTE_NOT_FOUND",
    )
    .await;
    assert_eq!(get(port, "/health", None).await.status(), StatusCode::OK);
    server.abort();

    // Production with a token: on the API port behind it; both behind it elsewhere.
    let (port, metrics_port, server, _dir) = serve_sqlite(|c| {
        c.environment = orderhost::config::Environment::Production;
        c.jwt_secret = SECRET.into();
        c.metrics.metrics_token = METRICS_TOKEN.into();
        c.metrics.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
    .unwrap();
    let metrics_port = metrics_port.unwrap();
    assert_error(
        get(metrics_port, "/metrics", None).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;
    assert_eq!(
        get(metrics_port, "/metrics", Some(METRICS_TOKEN))
            .await
            .status(),
        StatusCode::OK
    );
    assert_error(
        get(port, "/metrics", Some(METRICS_TOKEN)).await,
        StatusCode::NOT_FOUND,
        "ROUTE_NOT_FOUND",
    )
    .await;
    server.abort();

    // Production refuses a short token, without echoing it.
    let Err(error) = serve_sqlite(|c| {
        c.environment = orderhost::config::Environment::Production;
        c.jwt_secret = SECRET.into();
        c.metrics.metrics_token = "short-token".into();
    })
    .await
    else {
        panic!("a short metrics token must be refused in production");
    };
    let message = format!("{error:#}");
    assert!(message.contains("ORDERHOST_METRICS_TOKEN"), "{message}");
    assert!(!message.contains("short-token"), "{message}");
}

// ---------------------------------------------------------------------------------------
// Logs

const BIN: &str = env!("CARGO_BIN_EXE_orderhost-under-test");

/// Everything the service must never write to a log, and what an answer must not carry.
struct Secrets {
    /// Never in a log line nor in an answer.
    everywhere: Vec<String>,
    /// Never in a log line (answers carry the tokens they issue).
    in_logs: Vec<String>,
}

/// The binary in production mode (JSON logs by default) at debug level into `dir/logs`.
fn production(dir: &Path, jwt_secret: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ORDERHOST_ENV", "production")
        .env("ORDERHOST_JWT_SECRET", jwt_secret)
        .env("ORDERHOST_METRICS_TOKEN", METRICS_TOKEN)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("prod.db").display()),
        )
        .env("ORDERHOST_BIND", "127.0.0.1:0")
        .env("ORDERHOST_LOG", "debug")
        .env("ORDERHOST_LOG_DIR", dir.join("logs"))
        .env("ORDERHOST_POLICIES_DIR", dir.join("policies"))
        .stdin(Stdio::null());
    command
}

/// A response's status, headers and body, as text to search.
async fn record(answers: &Mutex<Vec<String>>, response: Response) -> (StatusCode, String) {
    let status = response.status();
    let mut text = format!("{status}\n");
    for (name, value) in response.headers() {
        text.push_str(&format!(
            "{name}: {}\n",
            value.to_str().unwrap_or("<binary>")
        ));
    }
    let body = response.text().await.expect("body");
    text.push_str(&body);
    answers.lock().unwrap().push(text);
    (status, body)
}

/// The value of the `name` cookie a response sets.
fn set_cookie(answer: &str, name: &str) -> Option<String> {
    answer.lines().find_map(|l| {
        let cookie = l.strip_prefix("set-cookie: ")?;
        let (pair, _) = cookie.split_once(';').unwrap_or((cookie, ""));
        let (key, value) = pair.split_once('=')?;
        (key == name && !value.is_empty()).then(|| value.to_owned())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_line_or_an_answer() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let jwt_secret = format!("jwt-{}-{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let admin_password = format!("admin pass {}", uuid::Uuid::new_v4().simple());
    let ann_password = format!("ann pass {}", uuid::Uuid::new_v4().simple());
    let wrong_password = format!("wrong pass {}", uuid::Uuid::new_v4().simple());
    let bad_request_password = format!("bad body pass {}", uuid::Uuid::new_v4().simple());
    let mut secrets = Secrets {
        everywhere: vec![
            jwt_secret.clone(),
            METRICS_TOKEN.to_owned(),
            admin_password.clone(),
            ann_password.clone(),
            wrong_password.clone(),
            bad_request_password.clone(),
            "$argon2".to_owned(),
        ],
        in_logs: Vec::new(),
    };

    // The operator bootstrap, through the CLI like an installation does it.
    let created = production(dir.path(), &jwt_secret)
        .args([
            "user",
            "create",
            "--email",
            "boss@example.com",
            "--role",
            "admin",
        ])
        .env("ORDERHOST_USER_PASSWORD", &admin_password)
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let mut cli_output = String::from_utf8_lossy(&created.stdout).into_owned();
    cli_output.push_str(&String::from_utf8_lossy(&created.stderr));

    // The server, its standard output read line by line.
    let mut child = production(dir.path(), &jwt_secret)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let stdout = child.stdout.take().unwrap();
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    let stderr = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let port = loop {
        let port = lines.lock().unwrap().iter().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["fields"]["message"] == "orderhost listening")
                .then(|| v["fields"]["port"].as_u64())?
        });
        if let Some(port) = port {
            break u16::try_from(port).unwrap();
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve did not start: {:?}", lines.lock().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let base = format!("http://127.0.0.1:{port}");
    let answers = Mutex::new(Vec::<String>::new());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let post = |path: &str, request_id: &str| {
        client
            .post(format!("{base}{path}"))
            .header("x-request-id", request_id)
    };

    // The auth flow.
    let (status, _) = record(
        &answers,
        post("/auth/register", "rq-register")
            .json(&json!({ "email": "ann@example.com", "password": ann_password }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let login = |email: &'static str, password: String, request_id: &'static str| {
        post("/auth/login", request_id)
            .json(&json!({ "email": email, "password": password }))
            .send()
    };
    let (status, body) = record(
        &answers,
        login("ann@example.com", ann_password.clone(), "rq-login")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ann_access = serde_json::from_str::<Value>(&body).unwrap()["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let ann_refresh = set_cookie(answers.lock().unwrap().last().unwrap(), "refresh_token")
        .expect("a refresh cookie");
    secrets
        .in_logs
        .extend([ann_access.clone(), ann_refresh.clone()]);

    // A failed login, and bad requests that carry a password.
    let (status, _) = record(
        &answers,
        login("ann@example.com", wrong_password.clone(), "rq-wrong")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for (path, body) in [
        (
            "/auth/register",
            json!({ "email": "not an email", "password": bad_request_password }).to_string(),
        ),
        (
            "/auth/login",
            json!({ "email": "ann@example.com", "password": bad_request_password, "extra": 1 })
                .to_string(),
        ),
        (
            "/auth/register",
            format!(r#"{{"email": "x@example.com", "password": "{bad_request_password}""#),
        ),
        (
            "/auth/register",
            json!({ "email": "short@example.com", "password": &bad_request_password[..6] })
                .to_string(),
        ),
    ] {
        let (status, body) = record(
            &answers,
            post(path, "rq-bad")
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(status.is_client_error(), "{status} {body}");
    }

    // Refresh with the cookie (sent by hand: production cookies are `Secure`, and this is
    // plain HTTP), from the same origin.
    let (status, body) = record(
        &answers,
        post("/auth/refresh", "rq-refresh")
            .header("cookie", format!("refresh_token={ann_refresh}"))
            .header("origin", &base)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refreshed = serde_json::from_str::<Value>(&body).unwrap()["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let next_refresh = set_cookie(answers.lock().unwrap().last().unwrap(), "refresh_token")
        .expect("a rotated refresh cookie");
    secrets
        .in_logs
        .extend([refreshed.clone(), next_refresh.clone()]);

    // The order flow: a product by the admin, an order confirmed, one out of stock.
    let (status, body) = record(
        &answers,
        login("boss@example.com", admin_password.clone(), "rq-admin-login")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let admin = serde_json::from_str::<Value>(&body).unwrap()["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    secrets.in_logs.push(admin.clone());
    if let Some(refresh) = set_cookie(answers.lock().unwrap().last().unwrap(), "refresh_token") {
        secrets.in_logs.push(refresh);
    }
    let (status, body) = record(
        &answers,
        post("/products", "rq-product")
            .bearer_auth(&admin)
            .json(&json!({ "sku": "LOG-1", "name": "Log", "unitPrice": 100, "currency": "EUR", "initialStock": 1 }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut orders = Vec::new();
    for request_id in ["rq-order-1", "rq-order-2"] {
        let (status, body) = record(
            &answers,
            post("/order", request_id)
                .bearer_auth(&refreshed)
                .json(&json!({ "lines": [{ "sku": "LOG-1", "quantity": 1 }] }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        orders.push(
            serde_json::from_str::<Value>(&body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut finals = Vec::new();
    for id in &orders {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = record(
                &answers,
                client
                    .get(format!("{base}/order/{id}"))
                    .header("x-request-id", "rq-poll")
                    .bearer_auth(&refreshed)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let view: Value = serde_json::from_str(&body).unwrap();
            if view["status"] != "PENDING" {
                finals.push(view["status"].as_str().unwrap().to_owned());
                break;
            }
            assert!(Instant::now() < deadline, "order {id} still pending");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    assert_eq!(finals, ["CONFIRMED", "FAILED"]);

    // The metrics, behind their token; then sign out.
    let (status, _) = record(
        &answers,
        client
            .get(format!("{base}/metrics"))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = record(
        &answers,
        post("/auth/logout", "rq-logout")
            .header("cookie", format!("refresh_token={next_refresh}"))
            .header("origin", &base)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // The password hashes as stored.
    let hashes: Vec<String> = {
        let url = format!("sqlite://{}", dir.path().join("prod.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let hashes = sqlx::query_scalar::<_, String>("select password_hash from users")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        hashes
    };
    assert_eq!(hashes.len(), 2);
    assert!(hashes.iter().all(|h| h.starts_with("$argon2")));
    secrets.everywhere.extend(hashes);

    // Stop the server (SIGTERM, by its id) and gather every line it wrote.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    let stderr = stderr_reader.join().unwrap();
    let stdout_lines = lines.lock().unwrap().clone();
    let mut file_lines = Vec::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("logs")).unwrap() {
        let path = entry.unwrap().path();
        files.push(path.file_name().unwrap().to_string_lossy().into_owned());
        let text = std::fs::read_to_string(&path).unwrap();
        file_lines.extend(text.lines().map(str::to_owned));
    }
    assert!(
        files.iter().any(|f| f.starts_with("combined."))
            && files.iter().any(|f| f.starts_with("error.")),
        "{files:?}"
    );
    assert!(file_lines.len() >= stdout_lines.len() / 2, "{files:?}");
    assert!(
        stdout_lines.len() > 20,
        "too few lines to mean much: {stdout_lines:?}"
    );

    // Nothing secret in any line, nor in the CLI's output, nor in an answer.
    let logs = stdout_lines
        .iter()
        .chain(&file_lines)
        .map(String::as_str)
        .chain(cli_output.lines())
        .chain(stderr.lines());
    for line in logs {
        for secret in secrets.everywhere.iter().chain(&secrets.in_logs) {
            assert!(
                !line.contains(secret.as_str()),
                "a secret ({}…) in the log line {line}",
                &secret[..secret.len().min(8)]
            );
        }
    }
    let answers = answers.into_inner().unwrap();
    assert!(answers.len() > 10);
    for answer in &answers {
        for secret in &secrets.everywhere {
            assert!(
                !answer.contains(secret.as_str()),
                "a secret ({}…) in the answer {answer}",
                &secret[..secret.len().min(8)]
            );
        }
    }

    // Every line is JSON (production's default format); every line logged inside a
    // request carries its request id and, once the caller is authenticated, its tenant
    // and user.
    let parsed: Vec<Value> = stdout_lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let request_span = |line: &Value| -> Option<Value> {
        line["spans"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "request")
            .cloned()
    };
    let mut seen = BTreeSet::new();
    for line in &parsed {
        let target = line["target"].as_str().unwrap_or_default();
        let in_handler = ["orderhost::auth", "orderhost::catalog", "orderhost::http"]
            .iter()
            .any(|t| target.starts_with(t))
            || target == "orderhost::orders::place"
            || line["fields"]["message"] == "request finished";
        let Some(span) = request_span(line) else {
            assert!(
                !in_handler,
                "a request's line without its request span: {line}"
            );
            continue;
        };
        let id = span["request_id"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "no request id: {line}");
        seen.insert(id.to_owned());
        let signed_in = line["fields"]["message"] == "request finished"
            && ["rq-register", "rq-login", "rq-admin-login"].contains(&id);
        if id.starts_with("rq-order") || id == "rq-poll" || id == "rq-product" || signed_in {
            assert!(
                span["user"].as_str().is_some_and(|u| !u.is_empty())
                    && span["tenant"].as_str().is_some_and(|t| !t.is_empty()),
                "an authenticated request's line without its user and tenant: {line}"
            );
        }
    }
    for id in [
        "rq-register",
        "rq-login",
        "rq-wrong",
        "rq-bad",
        "rq-refresh",
        "rq-product",
        "rq-order-1",
        "rq-order-2",
        "rq-poll",
        "rq-logout",
    ] {
        assert!(seen.contains(id), "no line of {id}");
    }
    // The order's own lines name the order's caller.
    let written = parsed
        .iter()
        .find(|l| {
            l["fields"]["message"] == "order written"
                && request_span(l).is_some_and(|s| s["request_id"] == "rq-order-1")
        })
        .expect("the order's line");
    assert_eq!(written["fields"]["order"], orders[0].as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_serves_its_settlements_on_the_metrics_address() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("w.db").display());
    // The API without workers, in this process; the orders are settled by the worker.
    let config = orderhost::Config {
        store: orderhost::config::StoreConfig {
            database_url: database_url.clone(),
            db_max_connections: 4,
            ..Default::default()
        },
        bind: "127.0.0.1:0".parse().unwrap(),
        policies_dir: dir.path().join("policies"),
        workers: 0,
        ..Default::default()
    };
    let app = orderhost::App::build(config).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let store = app.state().store.clone();
    let server = tokio::spawn(app.run_until_stopped(std::future::pending()));

    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", &database_url)
        .env("ORDERHOST_METRICS_ADDR", "127.0.0.1:0")
        .env("ORDERHOST_METRICS_TOKEN", METRICS_TOKEN)
        .env("ORDERHOST_LOG_DIR", "")
        .args(["worker", "--log-format", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let (stdout, sink) = (child.stdout.take().unwrap(), lines.clone());
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics_url = loop {
        let addr = lines.lock().unwrap().iter().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["fields"]["message"] == "metrics served at /metrics on their own listener")
                .then(|| v["fields"]["addr"].as_str().map(str::to_owned))?
        });
        if let Some(addr) = addr {
            break format!("http://{addr}/metrics");
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the worker did not serve metrics: {:?}",
                lines.lock().unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // An order placed through the API, settled by the worker process.
    let client = new_client();
    json_ok(
        client
            .post(format!("{base}/auth/register"))
            .json(&json!({ "email": "ann@example.com", "password": crate::helpers::PASSWORD }))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let login = json_ok(
        client
            .post(format!("{base}/auth/login"))
            .json(&json!({ "email": "ann@example.com", "password": crate::helpers::PASSWORD }))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let token = login["accessToken"].as_str().unwrap().to_owned();
    let tenant = orderhost::tenants::resolve(&store, None).await.unwrap();
    orderhost::with_pool!(&store, pool => {
        sqlx::query(
            "insert into products (id, tenant_id, sku, name, unit_price, currency, created_at, updated_at) \
             values ('p1', $1, 'W-1', 'W', 100, 'EUR', 0, 0)",
        )
        .bind(&tenant)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "insert into stock_items (id, tenant_id, product_id, available, received, created_at, updated_at) \
             values ('s1', $1, 'p1', 5, 5, 0, 0)",
        )
        .bind(&tenant)
        .execute(pool)
        .await
        .unwrap();
    });
    let placed = json_ok(
        client
            .post(format!("{base}/order"))
            .bearer_auth(&token)
            .json(&json!({ "lines": [{ "sku": "W-1", "quantity": 1 }] }))
            .send()
            .await
            .unwrap(),
        StatusCode::ACCEPTED,
    )
    .await;
    let id = placed["id"].as_str().unwrap().to_owned();

    // The worker's scrape: behind the token, and its settlement counted there.
    let refused = client.get(&metrics_url).send().await.unwrap();
    assert_error(refused, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    let confirmed =
        r#"orderhost_orders_settled_total{class="regular",status="CONFIRMED",reason="none"}"#;
    let deadline = Instant::now() + Duration::from_secs(20);
    let scrape = loop {
        let scrape = client
            .get(&metrics_url)
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if samples(&scrape, "orderhost_orders_settled_total")
            .iter()
            .any(|l| l.starts_with(confirmed) && !l.ends_with(" 0"))
        {
            break scrape;
        }
        assert!(
            Instant::now() < deadline,
            "the worker's metrics never counted the order:\n{scrape}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(value(&scrape, confirmed), 1.0);
    assert_eq!(
        value(
            &scrape,
            r#"orderhost_order_time_to_final_seconds_count{class="regular",status="CONFIRMED"}"#
        ),
        1.0
    );
    for name in [
        "orderhost_queue_waiting",
        "orderhost_queue_in_flight",
        "orderhost_queue_dead_letters",
        "orderhost_db_pool_max_connections",
    ] {
        assert!(!samples(&scrape, name).is_empty(), "{name} missing");
    }
    let view = json_ok(
        client
            .get(format!("{base}/order/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(view["status"], "CONFIRMED");

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());
    server.abort();
}
