//! The database as a dependency (issue 13, item 5): start-up retries an unreachable
//! database for a bounded time and then exits non-zero naming it (never its password);
//! a database that drops while the service runs turns requests into 503
//! `DEPENDENCY_UNAVAILABLE` (no hang, no 500), `/health` keeps answering with the database
//! down and `/health/ready` says 503; when it is back everything recovers by itself.
//!
//! The shared PostgreSQL server is never stopped: the service talks to it through a TCP
//! proxy of this module that a test cuts (every connection closed, new ones refused: the
//! port is not listened on) and restores (the same port listened on again).

use std::{
    io::BufRead as _,
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use orderhost::queue::QueueKind;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::{net::TcpStream, task::JoinHandle};

use crate::helpers::{
    Backend, PgDatabase, TestApp, assert_error, json_ok, new_client, postgres_server_url,
    spawn_app_with,
};

const BIN: &str = env!("CARGO_BIN_EXE_orderhost-under-test");

/// A TCP proxy on a loopback port in front of the real PostgreSQL server.
struct DbProxy {
    port: u16,
    upstream: SocketAddr,
    accept: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl DbProxy {
    /// A proxy on a free port, listening.
    async fn start() -> Self {
        let port = free_port();
        let mut proxy = Self::stopped_on(port);
        proxy.restore().await;
        proxy
    }

    /// A proxy for `port` that does not listen yet (connections are refused).
    fn stopped_on(port: u16) -> Self {
        let server = url::Url::parse(&postgres_server_url()).expect("DATABASE_URL is a URL");
        let host = server.host_str().expect("DATABASE_URL has a host");
        let host = if host == "localhost" {
            "127.0.0.1"
        } else {
            host
        };
        let upstream = format!("{host}:{}", server.port().unwrap_or(5432))
            .parse()
            .expect("DATABASE_URL names an IP address and port");
        Self {
            port,
            upstream,
            accept: None,
            connections: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// `url` (a database on the PostgreSQL server) with the proxy's port instead.
    fn url_for(&self, url: &str) -> String {
        let mut url = url::Url::parse(url).expect("URL");
        url.set_host(Some("127.0.0.1")).expect("host");
        url.set_port(Some(self.port)).expect("port");
        url.to_string()
    }

    /// Listens again on the same port and forwards new connections.
    async fn restore(&mut self) {
        assert!(self.accept.is_none(), "the proxy already listens");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        let address: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match socket.bind(address) {
                Ok(()) => break,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot listen on {address} again: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        let listener = socket.listen(128).expect("listen");
        let (upstream, connections) = (self.upstream, self.connections.clone());
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let forward = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                connections.lock().unwrap().push(forward);
            }
        }));
    }

    /// Closes every forwarded connection and stops listening: new connections are refused.
    fn cut(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// A loopback port nothing listens on (bound by the kernel, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free loopback port")
        .local_addr()
        .expect("address")
        .port()
}

/// The service on PostgreSQL through a proxy, with a short acquire timeout so a request
/// waits at most 2 s for a connection the database cannot give.
async fn spawn_behind_proxy(queue: QueueKind) -> (TestApp, DbProxy) {
    let proxy = DbProxy::start().await;
    let app = spawn_app_with(Backend::Postgres, |config| {
        config.store.database_url = proxy.url_for(&config.store.database_url);
        config.store.db_acquire_timeout_ms = 2_000;
        if queue == QueueKind::Database {
            config.redis_url = String::new();
        }
    })
    .await;
    assert_eq!(app.state.queue.kind(), queue);
    (app, proxy)
}

/// Sends `request` and asserts it is answered within `limit`.
async fn within(limit: Duration, request: reqwest::RequestBuilder) -> reqwest::Response {
    let started = Instant::now();
    let response = tokio::time::timeout(limit, request.send())
        .await
        .unwrap_or_else(|_| panic!("no answer within {limit:?}"))
        .expect("the service answers");
    let took = started.elapsed();
    assert!(took <= limit);
    eprintln!("answered {} in {took:?}", response.status());
    response
}

/// Places an order for one unit of `sku`, retrying 503s (with the same idempotency key)
/// until `deadline`; returns the order.
async fn place_until_accepted(app: &TestApp, token: &str, sku: &str, deadline: Instant) -> Value {
    let key = uuid::Uuid::new_v4().to_string();
    loop {
        let response = new_client()
            .post(app.url("/order"))
            .bearer_auth(token)
            .header("idempotency-key", &key)
            .json(&json!({ "lines": [{ "sku": sku, "quantity": 1 }] }))
            .send()
            .await
            .expect("request");
        if response.status() == StatusCode::ACCEPTED {
            return response.json().await.expect("json");
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("DEPENDENCY_UNAVAILABLE"), "{body}");
        assert!(
            Instant::now() < deadline,
            "no order accepted before the deadline: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls the order until it is CONFIRMED (panics on another final status or at `deadline`).
async fn confirmed(app: &TestApp, token: &str, id: &str, deadline: Instant) {
    loop {
        let response = new_client()
            .get(app.url(&format!("/order/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        if response.status() == StatusCode::OK {
            let order: Value = response.json().await.expect("json");
            match order["status"].as_str() {
                Some("CONFIRMED") => return,
                Some("PENDING") => {}
                other => panic!("order {id} ended {other:?}: {order}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "order {id} not CONFIRMED before the deadline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn outage_and_recovery(queue: QueueKind) {
    // Arrange: a customer, a product, and an order confirmed before anything breaks.
    let (app, mut proxy) = spawn_behind_proxy(queue).await;
    app.seed_product(None, "OUT-1", 1_000, 100).await;
    assert_eq!(app.register("ann@example.com", None).await.status(), 201);
    let (_, token) = app.login_as("ann@example.com", None).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = place_until_accepted(&app, &token, "OUT-1", deadline).await;
    confirmed(&app, &token, before["id"].as_str().unwrap(), deadline).await;

    // Act: the database goes away.
    proxy.cut();

    // Requests are answered 503 DEPENDENCY_UNAVAILABLE, in bounded time.
    let limit = Duration::from_secs(8);
    let client = new_client();
    let list = within(limit, client.get(app.url("/order")).bearer_auth(&token)).await;
    assert_error(
        list,
        StatusCode::SERVICE_UNAVAILABLE,
        "DEPENDENCY_UNAVAILABLE",
    )
    .await;
    let order = within(
        limit,
        client
            .post(app.url("/order"))
            .bearer_auth(&token)
            .json(&json!({ "lines": [{ "sku": "OUT-1", "quantity": 1 }] })),
    )
    .await;
    assert_eq!(order.headers()["retry-after"], "1");
    assert_error(
        order,
        StatusCode::SERVICE_UNAVAILABLE,
        "DEPENDENCY_UNAVAILABLE",
    )
    .await;
    // More requests at once than the pool has connections: those that find no broken
    // pooled connection to fail on wait for a new one, which the database refuses, for
    // the 2 s acquire timeout — and get the same answer.
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (client, url, token) = (client.clone(), app.url("/order"), token.clone());
        burst.spawn(async move {
            let started = Instant::now();
            let response = within(limit, client.get(url).bearer_auth(token)).await;
            assert_error(
                response,
                StatusCode::SERVICE_UNAVAILABLE,
                "DEPENDENCY_UNAVAILABLE",
            )
            .await;
            started.elapsed()
        });
    }
    let slowest = burst.join_all().await.into_iter().max().unwrap();
    assert!(
        slowest >= Duration::from_millis(1_500),
        "no request waited for a new connection ({slowest:?})"
    );
    // /health still answers, with the database down; /health/ready does not.
    let health = json_ok(
        within(limit, client.get(app.url("/health"))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["checks"]["database"]["status"], "down", "{health}");
    assert!(
        health["checks"]["database"]["error"].is_string(),
        "{health}"
    );
    assert!(
        !health.to_string().contains(PASSWORD_OF_THE_SERVER),
        "{health}"
    );
    let ready = json_ok(
        within(limit, client.get(app.url("/health/ready"))).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(ready["checks"]["database"]["status"], "down", "{ready}");

    // The database comes back: everything recovers by itself, nothing restarted.
    proxy.restore().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = client
            .get(app.url("/order"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        if response.status() == StatusCode::OK {
            break;
        }
        assert_error(
            response,
            StatusCode::SERVICE_UNAVAILABLE,
            "DEPENDENCY_UNAVAILABLE",
        )
        .await;
        assert!(Instant::now() < deadline, "GET /order did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = place_until_accepted(&app, &token, "OUT-1", deadline).await;
    confirmed(&app, &token, after["id"].as_str().unwrap(), deadline).await;
    loop {
        let response = client.get(app.url("/health/ready")).send().await.unwrap();
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "/health/ready did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The order the outage refused was never written: two orders, both confirmed.
    assert_eq!(app.scalar("select count(*) from orders").await, 2);
    assert_eq!(
        app.scalar("select count(*) from orders where status = 'CONFIRMED'")
            .await,
        2
    );
}

/// The password of the shared server's URL, which no report may show.
const PASSWORD_OF_THE_SERVER: &str = "orderhost:orderhost@";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_503_and_recovers_on_the_database_queue() {
    outage_and_recovery(QueueKind::Database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_503_and_recovers_in_redis_mode() {
    outage_and_recovery(QueueKind::Redis).await;
}

/// `orderhost <args>` in a fresh temporary folder, with only what the test gives it.
fn orderhost(dir: &tempfile::TempDir, database_url: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("ORDERHOST_BIND", "127.0.0.1:0")
        .env("ORDERHOST_LOG_DIR", "")
        .env("ORDERHOST_ENV", "production")
        .env(
            "ORDERHOST_JWT_SECRET",
            "a-production-secret-of-at-least-32-bytes!",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Waits for `child` to exit within `limit`; kills it (by its PID) and panics otherwise.
fn wait_exit(mut child: Child, limit: Duration) -> (std::process::Output, Duration) {
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return (child.wait_with_output().expect("output"), started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "still running after {limit:?}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn start_up_gives_up_on_an_unreachable_database_naming_it_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("postgres://shop:s3cret-Pa55@127.0.0.1:{port}/shop");
    for command in ["serve", "worker", "migrate"] {
        let child = orderhost(&dir, &url)
            .env("ORDERHOST_DB_STARTUP_TIMEOUT_SECS", "3")
            .arg(command)
            .spawn()
            .unwrap();
        let (output, took) = wait_exit(child, Duration::from_secs(30));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{command}: {stderr}");
        assert!(
            took >= Duration::from_secs(3),
            "{command} gave up after {took:?}"
        );
        // One line on stderr naming the database and the timeout.
        let error: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(error.len(), 1, "{command}: {stderr}");
        assert!(
            error[0].contains(&format!("127.0.0.1:{port}/shop"))
                && error[0].contains("did not answer within 3 s"),
            "{command}: {stderr}"
        );
        // One WARN per attempt, with the error.
        let warnings = stdout
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("database not reachable yet"))
            .count();
        assert!(warnings >= 2, "{command}: {stdout}");
        assert!(stdout.contains("refused"), "{command}: {stdout}");
        assert!(
            !stdout.contains("s3cret-Pa55") && !stderr.contains("s3cret-Pa55"),
            "{command} shows the password: {stdout}{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_waits_for_a_database_that_comes_up_late() {
    // Arrange: a database, and a proxy to it that listens only some time after start-up.
    let (_db, url) = PgDatabase::create().await;
    let mut proxy = DbProxy::stopped_on(free_port());
    let dir = tempfile::tempdir().unwrap();
    let mut child = orderhost(&dir, &proxy.url_for(&url))
        .env("ORDERHOST_DB_STARTUP_TIMEOUT_SECS", "60")
        .env("ORDERHOST_WORKERS", "0")
        .args(["serve", "--log-format", "json"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    let child = KillOnDrop(child);
    let logged = |message: &str| {
        lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["fields"]["message"] == message)
            .collect::<Vec<_>>()
    };
    // The service retries while the database refuses...
    let deadline = Instant::now() + Duration::from_secs(60);
    while logged("database not reachable yet; retrying").len() < 2 {
        assert!(Instant::now() < deadline, "no retry logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and serves once it is there.
    proxy.restore().await;
    let port = loop {
        if let Some(port) = logged("orderhost listening")
            .first()
            .and_then(|v| v["fields"]["port"].as_u64())
        {
            break port;
        }
        assert!(Instant::now() < deadline, "serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ready = new_client()
        .get(format!("http://127.0.0.1:{port}/health/ready"))
        .send()
        .await
        .unwrap();
    let ready = json_ok(ready, StatusCode::OK).await;
    assert_eq!(ready["checks"]["database"]["status"], "up");
    assert!(
        !lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("orderhost:orderhost@")),
        "a log line shows the database password"
    );
    drop(child);
}

/// A child process killed (by its PID) and reaped when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
