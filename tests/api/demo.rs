//! First run (issue 13, item 6): `orderhost demo` seeds a documented demo shop (twice
//! changes nothing), `serve` on it lets the demo customer order a demo product that gets
//! CONFIRMED, production refuses it; and long CLI work stays quiet in a pipe (a catalog
//! import of 100 000 rows: no progress on stderr, the summary on stdout).

use std::{
    io::BufRead as _,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use orderhost::{config::StoreConfig, store::Store};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, PgDatabase, json_ok, new_client, redis_url};

const BIN: &str = env!("CARGO_BIN_EXE_orderhost-under-test");

/// A database for the binary: a SQLite file in `dir`, or a fresh PostgreSQL database.
async fn database(backend: Backend, dir: &tempfile::TempDir) -> (Option<PgDatabase>, String) {
    match backend {
        Backend::Sqlite => (
            None,
            format!("sqlite://{}", dir.path().join("demo.db").display()),
        ),
        Backend::Postgres => {
            let (db, url) = PgDatabase::create().await;
            (Some(db), url)
        }
    }
}

/// `orderhost` in `dir` on `database_url` (and, on PostgreSQL, Redis under a prefix of its
/// own), with nothing else from the test's environment.
fn orderhost(dir: &tempfile::TempDir, backend: Backend, database_url: &str) -> Command {
    let mut command = Command::new(BIN);
    configure(&mut command, dir, backend, database_url);
    command
}

/// Gives `command` the folder, environment and standard input [`orderhost`] uses.
fn configure(command: &mut Command, dir: &tempfile::TempDir, backend: Backend, database_url: &str) {
    command
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("ORDERHOST_BIND", "127.0.0.1:0")
        .env("ORDERHOST_LOG_DIR", "")
        .stdin(Stdio::null());
    if backend == Backend::Postgres {
        command.env("REDIS_URL", redis_url()).env(
            "ORDERHOST_REDIS_PREFIX",
            format!("orderhost-test-{}", uuid::Uuid::new_v4().simple()),
        );
    }
}

/// What the demo seeding could change: products, their stock and last update, users and
/// theirs.
async fn snapshot(database_url: &str) -> (i64, i64, i64, i64, i64) {
    let store = Store::connect(&StoreConfig {
        database_url: database_url.to_owned(),
        db_max_connections: 1,
        ..StoreConfig::default()
    })
    .await
    .expect("the database opens");
    let row = orderhost::with_pool!(&store, pool => sqlx::query_as::<_, (i64, i64, i64, i64, i64)>(
        "select (select count(*) from products), \
                (select cast(coalesce(sum(available), 0) as bigint) from stock_items), \
                (select coalesce(max(updated_at), 0) from products), \
                (select count(*) from users), \
                (select coalesce(max(updated_at), 0) from users)",
    )
    .fetch_one(pool)
    .await
    .expect("snapshot"));
    store.close().await;
    row
}

/// A child process killed (by its PID) and reaped when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn demo_shop_seeds_once_and_takes_an_order(backend: Backend) {
    // Arrange: `orderhost demo` twice on a fresh database.
    let dir = tempfile::tempdir().unwrap();
    let (_db, url) = database(backend, &dir).await;
    let first = orderhost(&dir, backend, &url).arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // It prints the tenant, the users with their passwords and the catalog.
    for expected in [
        "tenant \"default\"",
        "7 products and 4 users created now",
        "demo-customer@orderhost.local",
        "demo-customer-pass",
        "demo-vip@orderhost.local",
        "demo-admin@orderhost.local",
        "DEMO-MUG",
        "DEMO-LAMP",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in {stdout}");
    }
    let seeded = snapshot(&url).await;
    assert_eq!((seeded.0, seeded.1, seeded.3), (7, 763, 4), "{seeded:?}");
    let second = orderhost(&dir, backend, &url).arg("demo").output().unwrap();
    assert!(second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("0 products and 0 users created now"),
        "{}",
        String::from_utf8_lossy(&second.stdout)
    );
    assert_eq!(
        snapshot(&url).await,
        seeded,
        "a second run changed something"
    );

    // Act: serve it, sign in as the demo customer, order a demo product by sku.
    let mut child = orderhost(&dir, backend, &url)
        .args(["serve", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = KillOnDrop(child);
    let port = Arc::new(Mutex::new(None::<u64>));
    let found = port.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["fields"]["message"] == "orderhost listening"
            {
                *found.lock().unwrap() = v["fields"]["port"].as_u64();
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let port = loop {
        if let Some(port) = *port.lock().unwrap() {
            break port;
        }
        assert!(Instant::now() < deadline, "serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let base = format!("http://127.0.0.1:{port}");
    let client = new_client();
    let login = client
        .post(format!("{base}/auth/login"))
        .json(
            &json!({ "email": "demo-customer@orderhost.local", "password": "demo-customer-pass" }),
        )
        .send()
        .await
        .unwrap();
    let token = json_ok(login, StatusCode::OK).await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    // The showcase lists the demo catalog, the low-stock lamp with its 3 units.
    let products = client
        .get(format!("{base}/stock/products-with-stock"))
        .send()
        .await
        .unwrap();
    let products = json_ok(products, StatusCode::OK).await;
    let lamp = products["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items in {products}"))
        .iter()
        .find(|p| p["sku"] == "DEMO-LAMP")
        .unwrap_or_else(|| panic!("DEMO-LAMP in {products}"));
    assert_eq!(lamp["available"], 3, "{lamp}");
    let order = client
        .post(format!("{base}/order"))
        .bearer_auth(&token)
        .json(&json!({ "lines": [{ "sku": "DEMO-MUG", "quantity": 2 }] }))
        .send()
        .await
        .unwrap();
    let order = json_ok(order, StatusCode::ACCEPTED).await;
    assert_eq!(order["total"], 2_500, "{order}");

    // Assert: it is CONFIRMED.
    let id = order["id"].as_str().unwrap();
    loop {
        let current = client
            .get(format!("{base}/order/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let current = json_ok(current, StatusCode::OK).await;
        match current["status"].as_str() {
            Some("CONFIRMED") => break,
            Some("PENDING") => {}
            other => panic!("order ended {other:?}: {current}"),
        }
        assert!(Instant::now() < deadline, "order not CONFIRMED in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(child);
}

async fn production_refuses_the_demo_shop(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (_db, url) = database(backend, &dir).await;
    for args in [&["demo"][..], &["serve", "--demo"][..]] {
        let output = orderhost(&dir, backend, &url)
            .env("ORDERHOST_ENV", "production")
            .env(
                "ORDERHOST_JWT_SECRET",
                "a-production-secret-of-at-least-32-bytes!",
            )
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains("refused in production"),
            "{args:?}: {stderr}"
        );
    }
    // Nothing was seeded: the database was not even opened (no file, no tables).
    if backend == Backend::Postgres {
        let store = Store::connect(&StoreConfig {
            database_url: url.clone(),
            db_max_connections: 1,
            ..StoreConfig::default()
        })
        .await
        .unwrap();
        let tables = orderhost::with_pool!(&store, pool => sqlx::query_scalar::<_, i64>(
            "select count(*) from information_schema.tables where table_name = 'users'",
        )
        .fetch_one(pool)
        .await
        .unwrap());
        store.close().await;
        assert_eq!(tables, 0);
    } else {
        assert!(!dir.path().join("demo.db").exists());
    }
}

/// A catalog import of 100 000 rows through the real binary, its stdout and stderr
/// piped: stderr carries no progress output, stdout the usual summary.
async fn a_large_import_is_quiet_in_a_pipe(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (_db, url) = database(backend, &dir).await;
    let file = dir.path().join("catalog.csv");
    let mut csv = String::from("sku,name,unit_price,currency,stock\n");
    for n in 0..100_000 {
        csv.push_str(&format!(
            "BULK-{n:06},Bulk item {n},{},EUR,{}\n",
            100 + n % 900,
            n % 50
        ));
    }
    std::fs::write(&file, csv).unwrap();
    let started = Instant::now();
    let output = orderhost(&dir, backend, &url)
        // A terminal type that draws, so only the pipe keeps the progress away.
        .env("TERM", "xterm-256color")
        .env("ORDERHOST_LOG", "warn")
        .args(["catalog", "import"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stderr, "", "stderr of a piped import");
    assert_eq!(
        stdout.trim(),
        format!(
            "{} → tenant default: 100000 created, 0 updated",
            file.display()
        ),
        "{stdout}"
    );
    eprintln!("catalog import of 100 000 rows on {backend:?}: {took:?}");
    assert_eq!(snapshot(&url).await.0, 100_000);
}

/// The same import on a terminal (a pseudo-terminal from util-linux's `script`): stderr
/// draws the bar, stdout still ends with the summary.
async fn an_import_draws_its_progress_on_a_terminal(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (_db, url) = database(backend, &dir).await;
    let file = dir.path().join("catalog.csv");
    let mut csv = String::from("sku,name,unit_price,currency,stock\n");
    for n in 0..5_000 {
        csv.push_str(&format!("TERM-{n:05},Item {n},250,EUR,5\n"));
    }
    std::fs::write(&file, csv).unwrap();
    let command = format!("{BIN} catalog import {}", file.display());
    let mut script = Command::new("script");
    configure(&mut script, &dir, backend, &url);
    let output = script
        .env("TERM", "xterm")
        .env("ORDERHOST_LOG", "warn")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .output()
        .expect("script (util-linux) runs");
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{screen}");
    assert!(screen.contains("importing ["), "no progress bar: {screen}");
    assert!(screen.contains("/5,000 ("), "no count of rows: {screen}");
    assert!(
        screen.contains("tenant default: 5000 created, 0 updated"),
        "{screen}"
    );
}

crate::backend_tests!(
    demo_shop_seeds_once_and_takes_an_order,
    production_refuses_the_demo_shop,
    a_large_import_is_quiet_in_a_pipe,
    an_import_draws_its_progress_on_a_terminal,
);
