//! The binary itself: production start-up refusals, the `user create` bootstrap and
//! `user tag`.

use std::{
    io::Write as _,
    process::{Command, Stdio},
};

use orderhost::auth::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::{
    backend_tests,
    helpers::{Backend, PASSWORD, TestApp, json_ok, new_client, spawn_app},
};

backend_tests!(user_tag_sets_adds_removes_and_clears_tags);

const BIN: &str = env!("CARGO_BIN_EXE_orderhost-under-test");

fn orderhost(dir: &tempfile::TempDir) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("cli.db").display()),
        )
        .env("ORDERHOST_BIND", "127.0.0.1:0")
        .env("ORDERHOST_LOG_DIR", "")
        .stdin(Stdio::null());
    command
}

/// Sends SIGTERM to `child` (a process this test started) and collects its output.
fn terminate(child: std::process::Child) -> std::process::Output {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    child.wait_with_output().unwrap()
}

#[test]
fn production_refuses_a_missing_or_weak_jwt_secret() {
    let dir = tempfile::tempdir().unwrap();
    for secret in [None, Some("short-secret")] {
        let mut command = orderhost(&dir);
        command.args(["serve", "--env", "production"]);
        if let Some(secret) = secret {
            command.env("ORDERHOST_JWT_SECRET", secret);
        }
        let output = command.output().expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "must refuse, got {:?}",
            output.status
        );
        assert_ne!(output.status.code(), Some(0));
        assert!(stderr.contains("ORDERHOST_JWT_SECRET"), "{stderr}");
        assert!(stderr.contains("32 bytes"), "{stderr}");
        if let Some(secret) = secret {
            assert!(
                !stderr.contains(secret),
                "the secret is not echoed: {stderr}"
            );
        }
    }
    // The environment variable works as well as the flag.
    let output = orderhost(&dir)
        .env("ORDERHOST_ENV", "production")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!output.status.success());
}

#[test]
fn a_bad_database_url_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = orderhost(&dir)
        .env("DATABASE_URL", "mysql://x@y/z")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not supported"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_create_bootstraps_an_operator_with_a_stdin_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = orderhost(&dir)
        .args([
            "user",
            "create",
            "--email",
            "root@example.com",
            "--role",
            "operator",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("root@example.com") && stdout.contains("operator"),
        "{stdout}"
    );
    assert!(!stdout.contains(PASSWORD));

    // A too-short password from the environment is refused.
    let weak = orderhost(&dir)
        .args(["user", "create", "--email", "weak@example.com"])
        .env("ORDERHOST_USER_PASSWORD", "short")
        .output()
        .unwrap();
    assert!(!weak.status.success());

    // The service started on that database lets the operator in.
    let config = orderhost::Config {
        store: orderhost::config::StoreConfig {
            database_url: format!("sqlite://{}", dir.path().join("cli.db").display()),
            db_max_connections: 4,
            ..Default::default()
        },
        bind: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let app = orderhost::App::build(config).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let server = tokio::spawn(app.run_until_stopped(std::future::pending()));
    let client = new_client();
    let login = client
        .post(format!("{base}/auth/login"))
        .json(&json!({ "email": "root@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let body = json_ok(login, StatusCode::OK).await;
    assert_eq!(body["user"]["role"], "operator");
    server.abort();
}

#[test]
fn serve_starts_with_no_configuration_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // Only the bind address differs from a bare `orderhost serve` (port 8000 may be busy).
    let child = Command::new(BIN)
        .current_dir(dir.path())
        .env_clear()
        .env("ORDERHOST_BIND", "127.0.0.1:0")
        .args(["serve", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it logs that it listens.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !dir.path().join("logs").exists() || !dir.path().join("data/orderhost.db").exists() {
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let output = terminate(child);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("orderhost listening"), "{stdout}");
    assert!(stdout.contains("shutdown signal received"), "{stdout}");
    // The JSON log lines parse, and the log files exist like the original's.
    for line in stdout.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|_| panic!("not JSON: {line}"));
    }
    let logs: Vec<String> = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(logs.iter().any(|f| f.starts_with("combined")), "{logs:?}");
    assert!(logs.iter().any(|f| f.starts_with("error")), "{logs:?}");
}

#[test]
fn worker_starts_in_production_without_a_jwt_secret() {
    let dir = tempfile::tempdir().unwrap();
    // Workers sign nothing: no secret, no CORS list, no warning about either.
    let child = orderhost(&dir)
        .args(["worker", "--env", "production", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !dir.path().join("cli.db").exists() {
        assert!(std::time::Instant::now() < deadline, "worker did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let output = terminate(child);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}{stdout}");
    assert!(stdout.contains("order worker started"), "{stdout}");
    assert!(stdout.contains("order worker stopped"), "{stdout}");
    assert!(!stdout.contains("JWT"), "{stdout}");
}

#[test]
fn out_of_range_queue_options_are_refused_not_clamped() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value, range) in [
        ("--queue-batch", "0", "1..=1000"),
        ("--queue-lease-ms", "5", "1000..=3600000"),
        ("--queue-max-attempts", "0", "1..=100"),
        ("--idempotency-ttl-secs", "10", "60.."),
    ] {
        let output = orderhost(&dir)
            .args(["serve", flag, value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains(flag) && stderr.contains(range), "{stderr}");
    }
    // The environment variable is checked the same way.
    let output = orderhost(&dir)
        .env("ORDERHOST_QUEUE_BATCH", "5000")
        .arg("worker")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// Starts `serve` on a free port with JSON logs; returns the child, its port and the
/// stdout lines read so far (a thread keeps reading them).
// The caller waits for the child it gets back; clippy cannot follow it there.
#[allow(clippy::zombie_processes)]
fn serve_with_json_logs(
    dir: &tempfile::TempDir,
) -> (
    std::process::Child,
    u16,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::io::BufRead as _;
    let mut child = orderhost(dir)
        .args(["serve", "--log-format", "json"])
        .env("ORDERHOST_LOG", "orderhost=debug,info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve did not start");
        }
        let port = lines.lock().unwrap().iter().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["fields"]["message"] == "orderhost listening")
                .then(|| v["fields"]["port"].as_u64())?
        });
        if let Some(port) = port {
            return (child, u16::try_from(port).unwrap(), lines);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_orders_log_lines_carry_its_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let status = orderhost(&dir)
        .args([
            "user",
            "create",
            "--email",
            "boss@example.com",
            "--role",
            "admin",
        ])
        .env("ORDERHOST_USER_PASSWORD", PASSWORD)
        .status()
        .unwrap();
    assert!(status.success());
    let (child, port, lines) = serve_with_json_logs(&dir);
    let base = format!("http://127.0.0.1:{port}");
    let login = |email: &'static str| {
        let base = base.clone();
        async move {
            let body = json_ok(
                new_client()
                    .post(format!("{base}/auth/login"))
                    .json(&json!({ "email": email, "password": PASSWORD }))
                    .send()
                    .await
                    .unwrap(),
                StatusCode::OK,
            )
            .await;
            body["accessToken"].as_str().unwrap().to_owned()
        }
    };
    let admin = login("boss@example.com").await;
    let product = json_ok(
        new_client()
            .post(format!("{base}/products"))
            .bearer_auth(&admin)
            .json(&json!({ "sku": "LOG-1", "name": "Log", "unitPrice": 100, "currency": "EUR", "initialStock": 5 }))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let stock = product["stockId"].as_str().unwrap().to_owned();
    new_client()
        .post(format!("{base}/auth/register"))
        .json(&json!({ "email": "ann@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let ann = login("ann@example.com").await;
    let order = new_client()
        .post(format!("{base}/order"))
        .bearer_auth(&ann)
        .header("x-request-id", "trace-me-42")
        .json(&json!({ "lines": [{ "stockId": stock, "quantity": 1 }] }))
        .send()
        .await
        .unwrap();
    let order = json_ok(order, StatusCode::ACCEPTED).await;
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(terminate(child).status.success());
    let lines = lines.lock().unwrap().clone();
    let of_request: Vec<serde_json::Value> = lines
        .iter()
        .filter(|l| l.contains("trace-me-42"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let messages: Vec<&str> = of_request
        .iter()
        .filter_map(|v| v["fields"]["message"].as_str())
        .collect();
    for expected in [
        "hook evaluated",
        "order written",
        "order decision",
        "request finished",
    ] {
        assert!(
            messages.contains(&expected),
            "{expected:?} not among {messages:?}"
        );
    }
    // Each of them names the caller too, through the request span.
    let user = of_request
        .iter()
        .find(|v| v["fields"]["message"] == "order written")
        .unwrap();
    let request_span = user["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "request")
        .unwrap();
    assert_eq!(request_span["request_id"], "trace-me-42");
    assert!(request_span["user"].is_string() && request_span["tenant"].is_string());
    assert_eq!(user["fields"]["order"], order["id"]);
    // The decision log goes to the stream too, with the request id: the same JSON
    // `GET /order/{id}/decision` serves.
    let decision = of_request
        .iter()
        .find(|v| v["fields"]["message"] == "order decision")
        .unwrap();
    assert_eq!(decision["target"], "orderhost::decision");
    assert_eq!(decision["fields"]["order"], order["id"]);
    let logged: serde_json::Value =
        serde_json::from_str(decision["fields"]["decision"].as_str().unwrap()).unwrap();
    assert_eq!(logged["orderId"], order["id"]);
    assert_eq!(logged["hooks"].as_array().unwrap().len(), 3);
    assert_eq!(logged["quote"]["total"], order["total"]);
}

/// Runs `orderhost user tag <args>` on the database of the running `app`.
async fn user_tag(app: &TestApp, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.state.config.store.database_url)
        .env("ORDERHOST_LOG_DIR", "")
        .env("ORDERHOST_LOG", "warn")
        .args(["user", "tag"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("the binary runs")
}

/// The stdout of a successful run.
fn succeeded(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "user tag failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The stderr of a refused run, which must exit with `code`.
fn refused(output: &std::process::Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    stderr
}

async fn user_tag_sets_adds_removes_and_clears_tags(backend: Backend) {
    // Arrange: ann in the shop tenant, and another ann in the default tenant.
    let app = spawn_app(backend).await;
    app.tenant("shop").await;
    let admin = app
        .user_with_role("boss@shop.example", Role::Admin, Some("shop"))
        .await;
    let default_admin = app
        .user_with_role("boss@default.example", Role::Admin, None)
        .await;
    app.register("ann@example.com", Some("shop")).await;
    app.register("ann@example.com", None).await;
    let api_tags = |token: String| {
        let url = app.url("/users/ann@example.com");
        async move {
            let view = json_ok(
                new_client()
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap(),
                StatusCode::OK,
            )
            .await;
            view["tags"].clone()
        }
    };

    // Act + Assert: --set replaces, normalized like the API does.
    let set = succeeded(
        &user_tag(
            &app,
            &[
                "ANN@example.com",
                "--tenant",
                "shop",
                "--set",
                " Wholesale,b2b-gold,wholesale",
            ],
        )
        .await,
    );
    assert_eq!(
        set.trim(),
        "user ann@example.com in tenant shop: tags b2b-gold, wholesale"
    );
    assert_eq!(
        api_tags(admin.clone()).await,
        json!(["b2b-gold", "wholesale"])
    );
    assert_eq!(api_tags(default_admin.clone()).await, json!([]));

    // --add and --remove together (comma lists or repeated flags); removals apply last.
    let edited = succeeded(
        &user_tag(
            &app,
            &[
                "ann@example.com",
                "--tenant",
                "shop",
                "--add",
                "vip-2024,eu:de",
                "--add",
                "Gone",
                "--remove",
                "b2b-gold,gone",
            ],
        )
        .await,
    );
    assert!(
        edited.contains("tags eu:de, vip-2024, wholesale"),
        "{edited}"
    );
    assert_eq!(
        api_tags(admin.clone()).await,
        json!(["eu:de", "vip-2024", "wholesale"])
    );

    // Refusals change nothing: a bad tag, too many tags, an unknown user or tenant.
    let bad = refused(
        &user_tag(
            &app,
            &["ann@example.com", "--tenant", "shop", "--set", "ok,bad tag"],
        )
        .await,
        1,
    );
    assert!(
        bad.contains("--set: tag 2 (\"bad tag\") holds ' '"),
        "{bad}"
    );
    let many: Vec<String> = (0..30).map(|i| format!("t{i}")).collect();
    let too_many = refused(
        &user_tag(
            &app,
            &[
                "ann@example.com",
                "--tenant",
                "shop",
                "--add",
                &many.join(","),
            ],
        )
        .await,
        1,
    );
    assert!(
        too_many.contains("--add: 33 distinct tags; at most 32"),
        "{too_many}"
    );
    let nobody = refused(
        &user_tag(
            &app,
            &["nobody@example.com", "--tenant", "shop", "--set", "x"],
        )
        .await,
        1,
    );
    assert!(
        nobody.contains("no user nobody@example.com in tenant shop"),
        "{nobody}"
    );
    let nowhere = refused(
        &user_tag(&app, &["ann@example.com", "--tenant", "nowhere", "--clear"]).await,
        1,
    );
    assert!(nowhere.contains("nowhere"), "{nowhere}");
    assert_eq!(
        api_tags(admin.clone()).await,
        json!(["eu:de", "vip-2024", "wholesale"])
    );
    // Usage errors (clap, exit 2): no change named, or --set beside --add.
    refused(&user_tag(&app, &["ann@example.com"]).await, 2);
    refused(
        &user_tag(&app, &["ann@example.com", "--set", "a", "--add", "b"]).await,
        2,
    );
    refused(
        &user_tag(&app, &["ann@example.com", "--clear", "--remove", "b"]).await,
        2,
    );

    // --clear removes them all; the default tenant's ann was never touched.
    let cleared =
        succeeded(&user_tag(&app, &["ann@example.com", "--tenant", "shop", "--clear"]).await);
    assert_eq!(
        cleared.trim(),
        "user ann@example.com in tenant shop: no tags"
    );
    assert_eq!(api_tags(admin.clone()).await, json!([]));
    assert_eq!(api_tags(default_admin).await, json!([]));
}
