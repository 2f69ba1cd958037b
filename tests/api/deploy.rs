//! The deployment topology of `compose.yaml`, run natively: a fresh PostgreSQL database and
//! the real Redis, two real `orderhost serve` processes in production mode on loopback
//! ports, and Debian's nginx with the repository's `deploy/nginx/orderhost.conf.template`
//! (only its upstream list and listen address filled in) in front of them. Everything goes
//! through nginx: users, products, a component upload and binding swap, 200 concurrent
//! orders. Then: both replicas served orders (nginx's access log says which replica served
//! each request id, and that replica's own log has the id, the other's not); the swap
//! reached both replicas (each serves the new revision and every later order records the
//! new component); client request ids come back and missing or unusable ones are made by
//! nginx; an order's server-sent events pass through unbuffered; a body over the limit is
//! nginx's 413 and one at the limit reaches a replica; every order became final and the
//! stock adds up. The commands are the README's native path ("Deploy").

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead as _, Write as _},
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use orderhost::policy::registry::BUILD_DIR;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection as _;
use tokio::{task::JoinSet, time::Instant};

use crate::helpers::{PASSWORD, PgDatabase, json_ok, redis_url};

const BIN: &str = env!("CARGO_BIN_EXE_orderhost-under-test");
/// The nginx configuration both deployments use.
const NGINX_TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/nginx/orderhost.conf.template"
);
/// The replicas' default `ORDERHOST_BODY_LIMIT_BYTES`, which nginx's `client_max_body_size`
/// must equal.
const BODY_LIMIT: usize = 64 * 1024;
/// Orders placed before and after the binding swap.
const ORDERS_PER_PHASE: usize = 100;
/// Units of the product the orders compete for (fewer than the orders: some must fail).
const STOCK: i64 = 150;

/// Processes this test started, stopped by PID when it ends — also when it fails.
#[derive(Default)]
struct Processes(Vec<(&'static str, Child)>);

impl Processes {
    fn push(&mut self, name: &'static str, child: Child) {
        self.0.push((name, child));
    }

    /// Panics when one of the processes already exited (the reason is in its log).
    fn assert_running(&mut self, logs: &Path) {
        for (name, child) in &mut self.0 {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{name} exited ({status}); its logs are in {}",
                    logs.display()
                );
            }
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        // Last started first: nginx, then the replicas. SIGTERM lets nginx's master stop its
        // workers (a SIGKILLed master would leave them listening) and the replicas shut
        // down cleanly; SIGKILL after 10 s.
        for (_, child) in self.0.iter_mut().rev() {
            if !matches!(child.try_wait(), Ok(None)) {
                continue;
            }
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One `orderhost serve` replica: its port and the log lines it printed.
struct Replica {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Replica {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Whether one of its log lines names `request_id`.
    fn logged(&self, request_id: &str) -> bool {
        let needle = format!("\"{request_id}\"");
        self.lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&needle))
    }
}

/// The environment every orderhost command of the deployment shares.
fn orderhost(dir: &Path, database_url: &str, redis_prefix: &str, jwt_secret: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ORDERHOST_ENV", "production")
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", redis_url())
        .env("ORDERHOST_REDIS_PREFIX", redis_prefix)
        .env("ORDERHOST_JWT_SECRET", jwt_secret)
        .env("ORDERHOST_TRUST_FORWARDED_FOR", "true")
        .env("ORDERHOST_POLICIES_DIR", dir.join("policies"))
        .env("ORDERHOST_LOG_FORMAT", "json")
        .env("ORDERHOST_LOG_DIR", "")
        .stdin(Stdio::null());
    command
}

/// Runs a one-shot command to success.
fn run(mut command: Command, what: &str) {
    let output = command.output().expect("the binary runs");
    assert!(
        output.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts `serve` on a free loopback port; returns once it logged its port.
fn start_replica(
    processes: &mut Processes,
    name: &'static str,
    mut command: Command,
    logs: &Path,
) -> Replica {
    let stderr = std::fs::File::create(logs.join(format!("{name}.stderr"))).unwrap();
    let mut child = command
        .args(["serve"])
        .env("ORDERHOST_BIND", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("serve starts");
    let stdout = child.stdout.take().unwrap();
    processes.push(name, child);
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let mut copy = std::fs::File::create(logs.join(format!("{name}.log"))).unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(copy, "{line}");
            sink.lock().unwrap().push(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let port = lines.lock().unwrap().iter().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["fields"]["message"] == "orderhost listening")
                .then(|| v["fields"]["port"].as_u64())?
        });
        if let Some(port) = port {
            return Replica {
                port: u16::try_from(port).unwrap(),
                lines,
            };
        }
        processes.assert_running(logs);
        assert!(
            std::time::Instant::now() < deadline,
            "{name} did not start within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn nginx_binary() -> PathBuf {
    let debian = PathBuf::from("/usr/sbin/nginx");
    if debian.exists() {
        debian
    } else {
        PathBuf::from("nginx")
    }
}

/// Writes the main configuration around the repository's file (rendered with the two
/// placeholders filled) into `dir`; returns the path of the main file.
fn nginx_config(dir: &Path, upstreams: &[u16], port: u16) -> PathBuf {
    let template = std::fs::read_to_string(NGINX_TEMPLATE).expect("the nginx template");
    assert!(
        template.contains("${ORDERHOST_UPSTREAMS}") && template.contains("${ORDERHOST_LISTEN}"),
        "the template has both placeholders"
    );
    let servers: String = upstreams
        .iter()
        .map(|p| format!("server 127.0.0.1:{p} max_fails=3 fail_timeout=10s; "))
        .collect();
    let rendered = template
        .replace("${ORDERHOST_UPSTREAMS}", servers.trim_end())
        .replace("${ORDERHOST_LISTEN}", &format!("127.0.0.1:{port}"));
    std::fs::write(dir.join("orderhost.conf"), rendered).unwrap();
    // Run as root (as CI does), nginx's master switches its workers to an unprivileged
    // user, which then must reach the temp folders under `dir`; as anyone else the workers
    // stay that user and the `user` directive must not be there.
    let root = std::fs::metadata(dir).unwrap().uid() == 0;
    let user = if root {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        "user www-data www-data;\n"
    } else {
        ""
    };
    let d = dir.display();
    let main = format!(
        "{user}worker_processes 2;\n\
         error_log {d}/nginx-error.log info;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
             client_body_temp_path {d}/client_body;\n\
             proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n\
             include {d}/orderhost.conf;\n\
         }}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, main).unwrap();
    path
}

/// `nginx -p dir -c conf` with the settings that must not be in the file.
fn nginx(dir: &Path, conf: &Path) -> Command {
    let mut command = Command::new(nginx_binary());
    command
        .arg("-e")
        .arg(dir.join("nginx-error.log"))
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(conf)
        .arg("-g")
        .arg(format!("daemon off; pid {}/nginx.pid;", dir.display()))
        .stdin(Stdio::null());
    command
}

/// A client without cookies (Bearer tokens only) and with a bounded wait.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Polls `url` until it answers 200.
async fn wait_ready(url: &str, processes: &mut Processes, logs: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client().get(url).send().await
            && r.status() == StatusCode::OK
        {
            return;
        }
        processes.assert_running(logs);
        assert!(Instant::now() < deadline, "{url} not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn login(base: &str, email: &str) -> String {
    let body = json_ok(
        client()
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

/// The access log: one JSON object per request nginx answered.
fn access_log(logs: &Path) -> Vec<Value> {
    std::fs::read_to_string(logs.join("nginx-access.log"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect()
}

/// The access-log line of `request_id`.
fn logged_request<'a>(log: &'a [Value], request_id: &str) -> &'a Value {
    let lines: Vec<&Value> = log
        .iter()
        .filter(|l| l["requestId"] == request_id)
        .collect();
    assert_eq!(lines.len(), 1, "one access-log line for {request_id}");
    lines[0]
}

/// Places `count` orders of one unit of `stock_id` through nginx, 16 at a time, each with
/// the request id `<prefix>-<n>`; returns (request id, status, body) per order.
async fn place_orders(
    base: &str,
    tokens: &[String],
    stock_id: &str,
    prefix: &str,
    count: usize,
) -> Vec<(String, StatusCode, Value)> {
    let permits = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = JoinSet::new();
    for n in 0..count {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (url, token) = (format!("{base}/order"), tokens[n % tokens.len()].clone());
        let (stock_id, request_id) = (stock_id.to_owned(), format!("{prefix}-{n:04}"));
        tasks.spawn(async move {
            let response = client()
                .post(url)
                .bearer_auth(token)
                .header("x-request-id", &request_id)
                .json(&json!({ "lines": [{ "stockId": stock_id, "quantity": 1 }] }))
                .send()
                .await
                .expect("nginx answers");
            drop(permit);
            let echoed = response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned();
            assert_eq!(echoed, request_id, "the client's request id comes back");
            let status = response.status();
            (request_id, status, response.json::<Value>().await.unwrap())
        });
    }
    tasks.join_all().await
}

/// The validation component an accepted order recorded.
fn validation_component(order: &Value) -> String {
    order["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["hook"] == "validation")
        .expect("validation recorded")["component"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Which replica (by port) served each request id, for the given ids.
fn served_by(log: &[Value], ids: &[String]) -> BTreeMap<String, u16> {
    ids.iter()
        .map(|id| {
            let line = logged_request(log, id);
            let upstream = line["upstream"].as_str().unwrap();
            let port = upstream
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("{id} reached no replica: {line}"));
            (id.clone(), port)
        })
        .collect()
}

/// A JSON order of one `stock_id` unit padded with spaces to exactly `size` bytes.
fn padded_order(stock_id: &str, size: usize) -> Vec<u8> {
    let mut body = json!({ "lines": [{ "stockId": stock_id, "quantity": 1 }] })
        .to_string()
        .into_bytes();
    let close = body.pop().unwrap();
    body.resize(size - 1, b' ');
    body.push(close);
    body
}

/// The `data:` payloads of the complete events in `buffer`.
fn sse_events(buffer: &str) -> Vec<Value> {
    buffer
        .split("\n\n")
        .filter(|frame| frame.lines().any(|l| l == "event: status"))
        .filter_map(|frame| frame.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behind_nginx_serve_orders_and_converge_on_a_swap() {
    // Arrange: the database, the replicas and nginx — the README's native commands.
    let (_database, database_url) = PgDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let prefix = format!("orderhost-deploy-{}", uuid::Uuid::new_v4().simple());
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let command = || orderhost(logs, &database_url, &prefix, &secret);
    let mut processes = Processes::default();

    run(
        {
            let mut c = command();
            c.arg("migrate");
            c
        },
        "orderhost migrate",
    );
    for (email, role) in [
        ("ops@example.com", "operator"),
        ("boss@example.com", "admin"),
    ] {
        let mut c = command();
        c.args(["user", "create", "--email", email, "--role", role])
            .env("ORDERHOST_USER_PASSWORD", PASSWORD);
        run(c, "orderhost user create");
    }
    let replicas = [
        start_replica(&mut processes, "replica-a", command(), logs),
        start_replica(&mut processes, "replica-b", command(), logs),
    ];
    for replica in &replicas {
        wait_ready(&replica.url("/health/ready"), &mut processes, logs).await;
    }
    let nginx_port = free_port();
    let conf = nginx_config(
        dir.path(),
        &[replicas[0].port, replicas[1].port],
        nginx_port,
    );
    let check = nginx(dir.path(), &conf).arg("-t").output().unwrap();
    assert!(
        check.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let access = std::fs::File::create(logs.join("nginx-access.log")).unwrap();
    let stderr = std::fs::File::create(logs.join("nginx.stderr")).unwrap();
    processes.push(
        "nginx",
        nginx(dir.path(), &conf)
            .stdout(access)
            .stderr(stderr)
            .spawn()
            .expect("nginx starts"),
    );
    let base = format!("http://127.0.0.1:{nginx_port}");
    wait_ready(&format!("{base}/health/ready"), &mut processes, logs).await;

    // Users, a product and customers, all through nginx.
    let operator = login(&base, "ops@example.com").await;
    let admin = login(&base, "boss@example.com").await;
    let product = |sku: &str, stock: i64| {
        client()
            .post(format!("{base}/products"))
            .bearer_auth(&admin)
            .json(
                &json!({ "sku": sku, "name": sku, "unitPrice": 1200, "currency": "EUR",
                            "initialStock": stock }),
            )
            .send()
    };
    let mug = json_ok(product("MUG", STOCK).await.unwrap(), StatusCode::CREATED).await;
    let mug_stock = mug["stockId"].as_str().unwrap().to_owned();
    let mut customers = Vec::new();
    for n in 0..10 {
        let email = format!("buyer{n}@example.com");
        let registered = client()
            .post(format!("{base}/auth/register"))
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), StatusCode::CREATED);
        customers.push(login(&base, &email).await);
    }

    // Act 1: orders before the swap.
    let before = place_orders(&base, &customers, &mug_stock, "deploy-a", ORDERS_PER_PHASE).await;

    // Act 2: upload a component and bind it through nginx, then wait for both replicas.
    let wasm = std::fs::read(Path::new(BUILD_DIR).join("flash_sale.wasm")).expect("built");
    let upload = client()
        .post(format!(
            "{base}/admin/components?name=flash-sale&version=0.1.0"
        ))
        .bearer_auth(&operator)
        .header("content-type", "application/wasm")
        .body(wasm)
        .send()
        .await
        .unwrap();
    json_ok(upload, StatusCode::CREATED).await;
    let bound = client()
        .put(format!("{base}/admin/tenants/default/bindings/validation"))
        .bearer_auth(&operator)
        .json(&json!({
            "component": "flash-sale@0.1.0",
            // A limit on another sku: the mugs keep selling.
            "config": { "skus": "OTHER", "max-units": 1 },
            "reason": "deployment test",
        }))
        .send()
        .await
        .unwrap();
    let revision = json_ok(bound, StatusCode::OK).await["change"]["revision"]
        .as_i64()
        .unwrap();
    let started = Instant::now();
    for replica in &replicas {
        loop {
            let view = json_ok(
                client()
                    .get(replica.url("/admin/tenants/default/bindings"))
                    .bearer_auth(&operator)
                    .send()
                    .await
                    .unwrap(),
                StatusCode::OK,
            )
            .await;
            let validation = view["bindings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["hook"] == "validation")
                .unwrap()
                .clone();
            if validation["revision"].as_i64() >= Some(revision) {
                assert_eq!(validation["component"], "flash-sale@0.1.0", "{validation}");
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "replica on port {} still not serving revision {revision}: {validation}",
                replica.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // The operators' view through nginx: two replicas, each on the new revision.
    let replicas_view = loop {
        let view = json_ok(
            client()
                .get(format!("{base}/admin/replicas"))
                .bearer_auth(&operator)
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        let list = view["replicas"].as_array().unwrap();
        if list.len() == 2
            && list
                .iter()
                .all(|r| r["tenants"]["default"].as_i64() >= Some(revision))
        {
            break view;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the heartbeats do not show both replicas on revision {revision}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(replicas_view["source"], "redis");

    // Act 3: orders after the swap.
    let after = place_orders(&base, &customers, &mug_stock, "deploy-b", ORDERS_PER_PHASE).await;

    // Request ids: none sent, or one the service would not keep → nginx makes one.
    let mut generated = Vec::new();
    for sent in [None, Some("not a usable id")] {
        let mut request = client()
            .get(format!("{base}/auth/profile"))
            .bearer_auth(&admin);
        if let Some(id) = sent {
            request = request.header("x-request-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "nginx's $request_id, got {id:?} for {sent:?}"
        );
        generated.push(id);
    }

    // The body limit: one byte over is nginx's 413 (the envelope, the request id), exactly
    // the limit reaches a replica and is an order like the others.
    let over = client()
        .post(format!("{base}/order"))
        .bearer_auth(&customers[0])
        .header("x-request-id", "deploy-over-limit")
        .header("content-type", "application/json")
        .body(padded_order(&mug_stock, BODY_LIMIT + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(over.headers()["x-request-id"], "deploy-over-limit");
    let envelope: Value = over.json().await.unwrap();
    assert_eq!(envelope["error"]["code"], "PAYLOAD_TOO_LARGE", "{envelope}");
    let at_limit = client()
        .post(format!("{base}/order"))
        .bearer_auth(&customers[0])
        .header("x-request-id", "deploy-at-limit")
        .header("content-type", "application/json")
        .body(padded_order(&mug_stock, BODY_LIMIT))
        .send()
        .await
        .unwrap();
    assert_eq!(at_limit.status(), StatusCode::ACCEPTED);

    // Metrics are scraped per replica, never through the public port.
    let scrape = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), StatusCode::NOT_FOUND);
    let envelope: Value = scrape.json().await.unwrap();
    assert_eq!(envelope["error"]["code"], "NOT_FOUND", "{envelope}");

    // Server-sent events through nginx: an order held PENDING (its stock row locked in a
    // transaction of the test's, so the worker waits) streams its PENDING event while the
    // stream is open; the stream ends after CONFIRMED once the lock goes.
    let slow = json_ok(product("SLOW", 1).await.unwrap(), StatusCode::CREATED).await;
    let slow_stock = slow["stockId"].as_str().unwrap().to_owned();
    let mut lock = sqlx::postgres::PgConnection::connect(&database_url)
        .await
        .unwrap();
    sqlx::Executor::execute(&mut lock, "begin").await.unwrap();
    sqlx::query("select id from stock_items where id = $1 for update")
        .bind(&slow_stock)
        .execute(&mut lock)
        .await
        .unwrap();
    let held = json_ok(
        client()
            .post(format!("{base}/order"))
            .bearer_auth(&customers[1])
            .json(&json!({ "lines": [{ "stockId": slow_stock, "quantity": 1 }] }))
            .send()
            .await
            .unwrap(),
        StatusCode::ACCEPTED,
    )
    .await;
    let held_id = held["id"].as_str().unwrap().to_owned();
    let mut stream = client()
        .get(format!("{base}/order/{held_id}/events"))
        .bearer_auth(&customers[1])
        .header("x-request-id", "deploy-sse")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut buffer = String::new();
    let first = tokio::time::timeout(Duration::from_secs(5), async {
        while sse_events(&buffer).is_empty() {
            let chunk = stream.chunk().await.unwrap().expect("the stream is open");
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await;
    assert!(
        first.is_ok(),
        "no event within 5 s while the order is PENDING: nginx buffers the stream ({buffer:?})"
    );
    assert_eq!(sse_events(&buffer)[0]["status"], "PENDING");
    let still = json_ok(
        client()
            .get(format!("{base}/order/{held_id}"))
            .bearer_auth(&customers[1])
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        still["status"], "PENDING",
        "the event came while the stream had to stay open"
    );
    sqlx::Executor::execute(&mut lock, "rollback")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await
    .expect("the stream ends once the order is settled");
    let statuses: Vec<Value> = sse_events(&buffer)
        .iter()
        .map(|e| e["status"].clone())
        .collect();
    assert_eq!(statuses, [json!("PENDING"), json!("CONFIRMED")], "{buffer}");

    // Every order becomes final.
    let mut db = sqlx::postgres::PgConnection::connect(&database_url)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending: i64 =
            sqlx::query_scalar("select count(*) from orders where status = 'PENDING'")
                .fetch_one(&mut db)
                .await
                .unwrap();
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} orders still PENDING after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    processes.assert_running(logs);

    // Assert: every order was accepted; the swap shows in the orders placed after it.
    for (id, status, body) in before.iter().chain(&after) {
        assert_eq!(*status, StatusCode::ACCEPTED, "{id}: {body}");
    }
    for (id, _, body) in &after {
        assert_eq!(validation_component(body), "flash-sale@0.1.0", "{id}");
    }

    // Both replicas served orders, in both phases; each one's log has the ids nginx says
    // it served, and the other's log has none of them.
    let log = access_log(logs);
    for (phase, orders) in [("before", &before), ("after", &after)] {
        let ids: Vec<String> = orders.iter().map(|(id, _, _)| id.clone()).collect();
        let served = served_by(&log, &ids);
        let ports: BTreeSet<u16> = served.values().copied().collect();
        assert_eq!(
            ports,
            BTreeSet::from([replicas[0].port, replicas[1].port]),
            "both replicas served orders {phase} the swap"
        );
        for (id, port) in &served {
            let (this, other) = if *port == replicas[0].port {
                (&replicas[0], &replicas[1])
            } else {
                (&replicas[1], &replicas[0])
            };
            assert!(this.logged(id), "replica {port} did not log {id}");
            assert!(!other.logged(id), "replica {} logged {id}", other.port);
        }
    }
    let counts: BTreeMap<u16, usize> = served_by(
        &log,
        &before
            .iter()
            .chain(&after)
            .map(|(id, _, _)| id.clone())
            .collect::<Vec<_>>(),
    )
    .values()
    .fold(BTreeMap::new(), |mut m, p| {
        *m.entry(*p).or_default() += 1;
        m
    });
    eprintln!("orders per replica (port → orders): {counts:?}");
    // nginx answered the oversized body itself; the one at the limit reached a replica;
    // generated ids are in the access log and the serving replica's log.
    let over_line = logged_request(&log, "deploy-over-limit");
    assert_eq!(over_line["status"], 413);
    assert!(
        matches!(over_line["upstream"].as_str(), Some("" | "-")),
        "{over_line}"
    );
    assert!(
        replicas.iter().all(|r| !r.logged("deploy-over-limit")),
        "the oversized body reached no replica"
    );
    assert_eq!(served_by(&log, &["deploy-at-limit".into()]).len(), 1);
    for id in &generated {
        let port = served_by(&log, std::slice::from_ref(id))[id];
        let replica = replicas.iter().find(|r| r.port == port).unwrap();
        assert!(replica.logged(id), "replica {port} did not log {id}");
    }
    let sse_line = logged_request(&log, "deploy-sse");
    assert_eq!(sse_line["status"], 200, "{sse_line}");

    // The stock adds up: 150 mugs, 201 orders of one → 150 confirmed, 51 out of stock.
    let by_status: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "select o.status, o.reason, count(*) from orders o \
         join order_lines l on l.order_id = o.id where l.stock_id = $1 \
         group by o.status, o.reason order by o.status",
    )
    .bind(&mug_stock)
    .fetch_all(&mut db)
    .await
    .unwrap();
    let accepted = i64::try_from(2 * ORDERS_PER_PHASE + 1).unwrap();
    assert_eq!(
        by_status,
        [
            ("CONFIRMED".to_owned(), None, STOCK),
            (
                "FAILED".to_owned(),
                Some("OUT_OF_STOCK".to_owned()),
                accepted - STOCK
            ),
        ],
        "every mug order final: confirmed while stock lasted, then out of stock"
    );
    let (available, reserved, received): (i64, i64, i64) =
        sqlx::query_as("select available, reserved, received from stock_items where id = $1")
            .bind(&mug_stock)
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!((available, reserved, received), (0, STOCK, STOCK));
    let orders: i64 = sqlx::query_scalar("select count(*) from orders")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(orders, accepted + 1, "the mug orders and the SSE order");

    drop(processes);
}
