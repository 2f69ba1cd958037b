//! Redis mode under faults (issue 12, items 4 and 5), on PostgreSQL and a real
//! `redis-server`: Redis stopped while orders are placed, a worker killed mid-batch, a
//! relay dying between its push and its delete, a poison job through the dead-letter set
//! and back, Redis losing every key (`orderhost queue resync`), and the start-up checks of
//! the Redis server. Tests that stop Redis or misconfigure it start a `redis-server` of
//! their own (killed by its PID when the test ends, however it ends); the others use the
//! shared one under a key prefix of their own.
//!
//! Every test checks the order invariants, not only that calls succeed: every order final,
//! none confirmed twice, stock `available + reserved = received` with `reserved` equal to
//! what confirmed orders hold, and nothing left in the queue.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use orderhost::{
    auth::Role,
    clock::{Clock as _, ManualClock},
    config::Environment,
    orders::process::{process_claimed, run_once},
    queue::outbox,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_error, json_ok, new_client, spawn_app_with};

/// A `redis-server` this test started: a child process on a loopback port of its own, with
/// an append-only file in a temporary folder, so a restart on the same port and folder
/// finds the data again. Killed by its PID when dropped (a failed assertion included).
struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server with `extra` arguments and waits until it answers.
    async fn start(extra: &[&str]) -> Self {
        // A free port: bound by the kernel, then released for redis-server to take.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free loopback port")
            .local_addr()
            .expect("address")
            .port();
        let mut server = Self {
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
        };
        server.spawn().await;
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "redis-server already runs");
        let dir: &Path = self.dir.path();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "yes", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is on PATH");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).expect("URL");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("redis-server exited with {status}: {}", self.log());
            }
            let ping = tokio::time::timeout(Duration::from_millis(500), async {
                let mut conn = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<String>(&mut conn).await
            })
            .await;
            if let Ok(Ok(_)) = ping {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer within 10 s: {}",
                self.port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM by PID (Redis writes its append-only file and exits), then waits for the
    /// exit; SIGKILL if it did not exit within 10 s.
    async fn stop(&mut self) {
        let mut child = self.child.take().expect("redis-server runs");
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill runs")
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-server {pid} ignored SIGTERM for 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts it again on the same port and folder.
    async fn restart(&mut self) {
        self.spawn().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn customer(app: &TestApp, email: &str) -> String {
    let response = app.register(email, None).await;
    assert!(response.status().is_success(), "register {email}");
    app.login_as(email, None).await.1
}

async fn place(app: &TestApp, token: &str, stock: &str, quantity: i64) -> String {
    let response = new_client()
        .post(app.url("/order"))
        .bearer_auth(token)
        .json(&json!({ "lines": [{ "stockId": stock, "quantity": quantity }] }))
        .send()
        .await
        .expect("request");
    json_ok(response, StatusCode::ACCEPTED).await["id"]
        .as_str()
        .expect("order id")
        .to_owned()
}

async fn status(app: &TestApp, id: &str) -> (String, Option<String>) {
    orderhost::with_pool!(&app.state.store, pool => sqlx::query_as::<_, (String, Option<String>)>(
        "select status, reason from orders where id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("order row"))
}

/// Waits until no order is PENDING. With `nudge`, moves the app's frozen clock past the
/// relay's backoff and lease while the outbox holds rows (real time would).
async fn all_final(app: &TestApp, within: Duration, nudge: bool) {
    let deadline = Instant::now() + within;
    while app
        .scalar("select count(*) from orders where status = 'PENDING'")
        .await
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "orders still PENDING after {within:?}; outbox: {} rows, last error {:?}",
            app.scalar("select count(*) from outbox").await,
            last_outbox_error(app).await
        );
        if nudge && app.scalar("select count(*) from outbox").await > 0 {
            app.advance(outbox::RELAY_LEASE_MS);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn last_outbox_error(app: &TestApp) -> Option<String> {
    orderhost::with_pool!(&app.state.store, pool => sqlx::query_scalar::<_, Option<String>>(
        "select max(last_error) from outbox",
    )
    .fetch_one(pool)
    .await
    .expect("outbox"))
}

/// The invariants after every fault: every order final, `confirmed` of them CONFIRMED,
/// none confirmed twice, `stock` fully accounted for (what confirmed orders hold is what
/// it reserved), nothing left waiting or in flight in the queue, the outbox empty.
async fn assert_invariants(app: &TestApp, stock: &str, confirmed: i64) {
    assert_eq!(
        app.scalar("select count(*) from orders where status = 'PENDING'")
            .await,
        0,
        "every order is final"
    );
    assert_eq!(
        app.scalar("select count(*) from orders where status = 'CONFIRMED'")
            .await,
        confirmed
    );
    assert_eq!(
        app.scalar(
            "select count(*) from (select order_id from order_events where status = 'CONFIRMED' \
             group by order_id having count(*) > 1) t"
        )
        .await,
        0,
        "no order confirmed twice"
    );
    assert_eq!(
        app.scalar(
            "select count(*) from orders o where o.status = 'CONFIRMED' and not exists \
             (select 1 from order_events e where e.order_id = o.id and e.status = 'CONFIRMED')"
        )
        .await,
        0,
        "every confirmation recorded once"
    );
    let (available, reserved, received) = app.stock(stock).await;
    assert!(available >= 0, "never negative: {available}");
    assert_eq!(available + reserved, received, "stock accounted for");
    let held = app
        .scalar(&format!(
            "select cast(coalesce(sum(l.quantity), 0) as bigint) from order_lines l \
             join orders o on o.id = l.order_id where o.status = 'CONFIRMED' and l.stock_id = '{stock}'"
        ))
        .await;
    assert_eq!(
        held, reserved,
        "reserved exactly what confirmed orders hold"
    );
    assert_eq!(app.scalar("select count(*) from outbox").await, 0);
    let depth = app.state.queue.depth().await.expect("depth");
    assert_eq!(depth.total(), 0, "nothing waiting or in flight: {depth:?}");
}

/// The URL of the app's own PostgreSQL database (for processes the test spawns).
fn database_url(app: &TestApp) -> String {
    match &app.state.store {
        orderhost::store::Store::Postgres(pool) => {
            let mut url = url::Url::parse(&crate::helpers::postgres_server_url()).expect("URL");
            url.set_path(pool.connect_options().get_database().unwrap_or_default());
            url.to_string()
        }
        orderhost::store::Store::Sqlite(_) => unreachable!("a PostgreSQL app"),
    }
}

/// Redis stops while customers order: placement keeps answering 202 (the orders wait in
/// the outbox), readiness reports Redis down, and once Redis is back every order is
/// settled, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_placed_while_redis_is_down_are_settled_once_it_is_back() {
    let mut redis = RedisServer::start(&[]).await;
    let app = spawn_app_with(Backend::Postgres, |c| {
        c.redis_url = redis.url();
        c.workers = 2;
    })
    .await;
    let (_, stock) = app.seed_product(None, "A", 100, 100).await;
    let token = customer(&app, "ann@example.com").await;
    let mut before = Vec::new();
    for _ in 0..4 {
        before.push(place(&app, &token, &stock, 2).await);
    }
    all_final(&app, Duration::from_secs(15), false).await;
    for id in &before {
        assert_eq!(status(&app, id).await.0, "CONFIRMED");
    }

    redis.stop().await;
    let mut during = Vec::new();
    for _ in 0..5 {
        during.push(place(&app, &token, &stock, 3).await);
    }
    // Accepted, and kept in the outbox: nothing can reach Redis.
    for id in &during {
        assert_eq!(status(&app, id).await.0, "PENDING");
        assert_eq!(
            app.scalar(&format!(
                "select count(*) from outbox where order_id = '{id}'"
            ))
            .await,
            1,
            "order {id} waits in the outbox"
        );
    }
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let report: Value = ready.json().await.expect("health JSON");
    assert_eq!(report["checks"]["redis"]["status"], "down", "{report}");

    redis.restart().await;
    all_final(&app, Duration::from_secs(25), true).await;
    for id in before.iter().chain(&during) {
        assert_eq!(status(&app, id).await.0, "CONFIRMED", "order {id}");
    }
    assert_invariants(&app, &stock, 9).await;
    assert_eq!(app.stock(&stock).await, (100 - 8 - 15, 23, 100));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let code = app.get("/health/ready").await.status();
        if code == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "still not ready: {code}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A worker claims a batch and dies: once its lease runs out another worker settles the
/// batch, and the first waking up late to settle it changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_a_dead_worker_is_settled_once_by_another() {
    let app = spawn_app_with(Backend::Postgres, |c| c.workers = 0).await;
    let (_, stock) = app.seed_product(None, "A", 100, 10).await;
    let token = customer(&app, "bob@example.com").await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(place(&app, &token, &stock, 2).await);
    }
    app.outbox_drained().await;
    let now = app.clock.now_ms();
    let doomed = app.state.queue.claim("doomed", now, 64).await.unwrap();
    assert_eq!(doomed.len(), 4);
    assert_eq!(app.state.queue.depth().await.unwrap().in_flight, 4);
    // While the lease runs nobody else takes the batch.
    assert_eq!(run_once(&app.state, "alive").await.unwrap().claimed, 0);

    app.advance(app.state.config.queue.lease_ms + 1);
    let report = run_once(&app.state, "alive").await.unwrap();
    assert_eq!((report.claimed, report.confirmed, report.failed), (4, 4, 0));
    assert!(
        each_order_settled_once(&app).await,
        "one final event per order"
    );
    for id in &ids {
        assert_eq!(status(&app, id).await.0, "CONFIRMED");
    }
    assert_eq!(app.stock(&stock).await, (2, 8, 10));

    // The dead worker wakes up: its settle is a no-op, and its lease-guarded calls refuse.
    let late = process_claimed(&app.state, "doomed", &doomed)
        .await
        .unwrap();
    assert_eq!((late.confirmed, late.failed, late.retried), (0, 0, 0));
    let now = app.clock.now_ms();
    assert!(
        !app.state
            .queue
            .bury("doomed", &doomed[0], "late", now)
            .await
            .unwrap()
    );
    assert!(
        !app.state
            .queue
            .retry_later("doomed", &doomed[1], now, "late", now)
            .await
            .unwrap()
    );
    app.advance(app.state.config.queue.lease_ms + 1);
    assert_eq!(run_once(&app.state, "alive").await.unwrap().claimed, 0);
    assert_eq!(app.stock(&stock).await, (2, 8, 10), "reserved once");
    assert_eq!(app.state.queue.depth().await.unwrap().dead, 0);
    assert_invariants(&app, &stock, 4).await;
}

/// Every order has exactly one final (non-PENDING) event.
async fn each_order_settled_once(app: &TestApp) -> bool {
    app.scalar(
        "select count(*) from (select order_id from order_events where status <> 'PENDING' \
         group by order_id having count(*) <> 1) t",
    )
    .await
        == 0
}

/// The relay pushes a batch and dies before deleting its rows: another pass pushes the
/// same rows again once their lease ends, and Redis holds each job once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_dying_between_push_and_delete_pushes_twice_and_nothing_doubles() {
    let mut redis = RedisServer::start(&[]).await;
    let app = spawn_app_with(Backend::Postgres, |c| {
        c.redis_url = redis.url();
        c.workers = 0;
    })
    .await;
    let (_, stock) = app.seed_product(None, "A", 100, 10).await;
    let token = customer(&app, "cat@example.com").await;
    let relay = app.state.relay.clone().expect("Redis mode runs a relay");

    // With Redis down the running relay postpones every row (on the app's clock, which
    // does not move by itself): the rows stay, and stay out of its reach.
    redis.stop().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(place(&app, &token, &stock, 1).await);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while app
        .scalar("select count(*) from outbox where last_error is not null")
        .await
        < 3
    {
        assert!(Instant::now() < deadline, "the relay did not try the rows");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis.restart().await;

    // This test is now the relay: it claims the due rows and pushes them ...
    let now = app.clock.now_ms() + outbox::RELAY_LEASE_MS;
    let rows = outbox::claim(&app.state.store, now, 100).await.unwrap();
    assert_eq!(rows.len(), 3);
    let mut added = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while added.is_none() {
        match relay.queue.push(&rows).await {
            Ok(n) => added = Some(n),
            // The connection may still report the outage once before it reconnects.
            Err(error) => {
                assert!(Instant::now() < deadline, "push keeps failing: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(added, Some(3));
    // ... and dies before deleting them. A second push of the same rows adds nothing.
    assert_eq!(relay.queue.push(&rows).await.unwrap(), 0);
    assert_eq!(app.scalar("select count(*) from outbox").await, 3);
    // Once its lease ends the running relay takes the rows over and pushes them again.
    app.advance(2 * outbox::RELAY_LEASE_MS + 1);
    app.outbox_drained().await;
    let depth = app.state.queue.depth().await.unwrap();
    assert_eq!(
        depth.waiting.values().sum::<i64>(),
        3,
        "each job once: {depth:?}"
    );

    let report = run_once(&app.state, "w").await.unwrap();
    assert_eq!((report.claimed, report.confirmed), (3, 3));
    assert_eq!(run_once(&app.state, "w").await.unwrap().claimed, 0);
    for id in &ids {
        assert_eq!(status(&app, id).await.0, "CONFIRMED");
    }
    assert_eq!(app.stock(&stock).await, (7, 3, 10));
    assert_invariants(&app, &stock, 3).await;
}

/// An order's job fails on every attempt (a database fault raised by a trigger): after
/// its last attempt it is dead and its order FAILED holding nothing; once the fault is
/// gone, a dead-letter retry (`POST /admin/dead-letters/{orderId}/retry`) queues it
/// again and it is confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_job_dies_and_a_retry_confirms_it_once_the_fault_is_gone() {
    let app = spawn_app_with(Backend::Postgres, |c| {
        c.workers = 0;
        c.queue.max_attempts = 3;
    })
    .await;
    let (_, stock) = app.seed_product(None, "A", 100, 10).await;
    let token = customer(&app, "dan@example.com").await;
    app.exec(
        "create function injected_fault() returns trigger language plpgsql as $$ \
         begin raise exception 'injected fault'; end $$; \
         create trigger injected_fault before update on stock_items \
         for each row execute function injected_fault();",
    )
    .await;
    let id = place(&app, &token, &stock, 2).await;
    for attempt in 1..=3 {
        app.outbox_drained().await;
        let report = run_once(&app.state, "w").await.unwrap();
        assert_eq!(report.claimed, 1, "attempt {attempt}");
        if attempt < 3 {
            assert_eq!(report.retried, 1, "attempt {attempt}");
            assert_eq!(status(&app, &id).await.0, "PENDING");
            // Past the longest backoff of a third attempt.
            app.advance(60_000);
        } else {
            assert_eq!(report.failed, 1);
        }
    }
    assert_eq!(
        status(&app, &id).await,
        ("FAILED".to_owned(), Some("RETRIES_EXHAUSTED".to_owned()))
    );
    assert_eq!(app.stock(&stock).await, (10, 0, 10), "holds no stock");
    let (dead, total) = app.state.queue.dead(None, 10, 0).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(dead[0].order_id, id);
    assert_eq!(dead[0].attempts, 3);
    let error = dead[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("injected fault"), "last error: {error}");
    let depth = app.state.queue.depth().await.unwrap();
    assert_eq!((depth.total(), depth.dead), (0, 1));
    // A dead job is not claimed again by itself.
    app.advance(60_000);
    assert_eq!(run_once(&app.state, "w").await.unwrap().claimed, 0);

    app.exec("drop trigger injected_fault on stock_items; drop function injected_fault();")
        .await;
    let admin = app
        .user_with_role("admin@example.com", Role::Admin, None)
        .await;
    let retry = || {
        new_client()
            .post(app.url(&format!("/admin/dead-letters/{id}/retry")))
            .bearer_auth(&admin)
            .send()
    };
    let order = json_ok(retry().await.expect("request"), StatusCode::ACCEPTED).await;
    assert_eq!(order["status"], "PENDING", "{order}");
    // Only a dead letter's order can be put back.
    assert_error(
        retry().await.expect("request"),
        StatusCode::CONFLICT,
        "NOT_DEAD",
    )
    .await;
    app.outbox_drained().await;
    let depth = app.state.queue.depth().await.unwrap();
    assert_eq!((depth.total(), depth.dead), (1, 0), "revived: {depth:?}");
    let report = run_once(&app.state, "w").await.unwrap();
    assert_eq!((report.claimed, report.confirmed), (1, 1));
    assert_eq!(status(&app, &id).await, ("CONFIRMED".to_owned(), None));
    assert_eq!(app.stock(&stock).await, (8, 2, 10));
    assert_eq!(app.state.queue.dead(None, 10, 0).await.unwrap().1, 0);
    assert_invariants(&app, &stock, 1).await;
}

/// Redis loses every key of the deployment (flushed, evicted, a new server): the PENDING
/// orders are gone from the queue, `orderhost queue resync` writes them to the outbox
/// again, and each is confirmed once — running it again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_lost_its_keys_queue_resync_brings_every_order_back_once() {
    let app = spawn_app_with(Backend::Postgres, |c| c.workers = 0).await;
    let (_, stock) = app.seed_product(None, "A", 100, 20).await;
    let token = customer(&app, "eve@example.com").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(place(&app, &token, &stock, 2).await);
    }
    app.outbox_drained().await;
    let queue = &app.state.relay.as_ref().expect("Redis mode").queue;
    assert_eq!(app.state.queue.depth().await.unwrap().total(), 5);
    assert!(queue.delete_all_keys().await.unwrap() > 0);
    assert_eq!(app.state.queue.depth().await.unwrap().total(), 0);
    assert_eq!(run_once(&app.state, "w").await.unwrap().claimed, 0);

    let resync = || {
        let output = Command::new(env!("CARGO_BIN_EXE_orderhost-under-test"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url(&app))
            .env("REDIS_URL", &app.state.config.redis_url)
            .env("ORDERHOST_REDIS_PREFIX", &app.state.config.redis_prefix)
            .env("ORDERHOST_LOG_DIR", "")
            .args(["queue", "resync"])
            .stdin(Stdio::null())
            .output()
            .expect("the binary runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "resync exited with {}: {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let stdout = resync();
    assert!(
        stdout.contains("5 PENDING orders written to the outbox"),
        "{stdout}"
    );
    assert_eq!(app.scalar("select count(*) from outbox").await, 5);
    // The CLI stamps its rows with the wall clock, ahead of the app's frozen one.
    app.advance(60_000);
    app.outbox_drained().await;
    assert_eq!(app.state.queue.depth().await.unwrap().total(), 5);
    // Safe at any time: with the jobs back in Redis, a second resync pushes nothing new.
    let stdout = resync();
    assert!(
        stdout.contains("5 PENDING orders written to the outbox"),
        "{stdout}"
    );
    app.advance(60_000);
    app.outbox_drained().await;
    assert_eq!(app.state.queue.depth().await.unwrap().total(), 5);

    let report = run_once(&app.state, "w").await.unwrap();
    assert_eq!((report.claimed, report.confirmed), (5, 5));
    assert_eq!(run_once(&app.state, "w").await.unwrap().claimed, 0);
    for id in &ids {
        assert_eq!(status(&app, id).await.0, "CONFIRMED");
    }
    assert_eq!(app.stock(&stock).await, (10, 10, 20));
    assert_invariants(&app, &stock, 5).await;
    let stdout = resync();
    assert!(
        stdout.contains("0 PENDING orders written to the outbox"),
        "{stdout}"
    );
    assert_eq!(app.scalar("select count(*) from outbox").await, 0);
}

/// Start-up safety: a production start refuses a Redis that may evict queue keys and a
/// Redis that does not answer; development starts with a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_refuses_an_evicting_or_unreachable_redis() {
    let redis = RedisServer::start(&["--maxmemory-policy", "allkeys-lru"]).await;
    // The database (already migrated) of a running app; the starts below share it.
    let app = spawn_app_with(Backend::Postgres, |c| c.workers = 0).await;
    let config = |environment: Environment, redis_url: String| {
        let mut config = orderhost::Config::clone(&app.state.config);
        config.environment = environment;
        config.jwt_secret = "a-production-secret-of-more-than-32-bytes".to_owned();
        config.redis_url = redis_url;
        config.redis_prefix = format!("orderhost-test-{}", uuid::Uuid::new_v4().simple());
        config.workers = 0;
        config
    };
    let build = |config: orderhost::Config| async move {
        tokio::time::timeout(
            Duration::from_secs(15),
            orderhost::App::build_with_clock(config, Arc::new(ManualClock::new())),
        )
        .await
        .expect("start-up answers within 15 s")
    };

    let error = match build(config(Environment::Production, redis.url())).await {
        Ok(_) => panic!("production started on a Redis with maxmemory-policy allkeys-lru"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("maxmemory-policy"), "{error}");
    assert!(error.contains("noeviction"), "{error}");
    assert!(error.contains("allkeys-lru"), "{error}");

    let development = build(config(Environment::Development, redis.url())).await;
    assert!(
        development.is_ok(),
        "development starts with a warning: {:#}",
        development.err().unwrap()
    );
    drop(development);

    // Fixed the way the error says: production starts.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let production = build(config(Environment::Production, redis.url())).await;
    assert!(
        production.is_ok(),
        "production on a noeviction Redis: {:#}",
        production.err().unwrap()
    );
    drop(production);

    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("redis://127.0.0.1:{port}");
    let error = match build(config(Environment::Production, unreachable.clone())).await {
        Ok(_) => panic!("production started without Redis"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("does not answer"), "{error}");
    assert!(error.contains("REDIS_URL"), "{error}");
    let development = build(config(Environment::Development, unreachable)).await;
    assert!(
        development.is_ok(),
        "development waits for Redis with the orders in the outbox: {:#}",
        development.err().unwrap()
    );
}
