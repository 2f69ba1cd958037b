//! Durability: what a commit promises on each backend (SQLite `synchronous = FULL` by
//! default, the relaxed setting refused in production unless acknowledged; PostgreSQL
//! sessions at `synchronous_commit = on`), and `orderhost backup` / `orderhost restore` on
//! the embedded database, run as the real binary against a live service.
//!
//! A crash of the machine itself (unflushed writes dropped) cannot be staged portably in
//! CI; `scripts/crash-test.sh` does it by hand (README, "Operations: durability and
//! backup").

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{ConnectOptions as _, sqlite::SqliteConnectOptions};

use crate::{
    backend_tests,
    helpers::{
        Backend, TestApp, json_ok, new_client, postgres_server_url, spawn_app, spawn_app_with,
    },
};

const BIN: &str = env!("CARGO_BIN_EXE_orderhost-under-test");

backend_tests!(every_pooled_connection_commits_durably);

/// The binary with a clean environment and `DATABASE_URL`.
fn orderhost(database_url: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("ORDERHOST_LOG_DIR", "")
        .stdin(Stdio::null());
    command
}

/// Runs the binary off the async threads and returns its output.
async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
        .await
        .expect("join")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts a refusal: exit code ≠ 0, `needle` in stderr, no panic.
fn assert_refused(output: &Output, needle: &str) {
    let err = stderr(output);
    assert!(!output.status.success(), "must fail; stderr: {err}");
    assert!(
        err.contains(needle),
        "stderr should mention {needle:?}: {err}"
    );
    assert!(!err.contains("panicked"), "no panic: {err}");
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

async fn customer(app: &TestApp, email: &str) -> String {
    app.register(email, None).await;
    app.login_as(email, None).await.1
}

async fn place(app: &TestApp, token: &str, stock_id: &str) -> String {
    let response = new_client()
        .post(app.url("/order"))
        .bearer_auth(token)
        .json(&json!({ "lines": [{ "stockId": stock_id, "quantity": 1 }] }))
        .send()
        .await
        .expect("request");
    let order = json_ok(response, StatusCode::ACCEPTED).await;
    order["id"].as_str().expect("order id").to_owned()
}

/// The order ids in the SQLite file at `path`, after checking its integrity.
async fn orders_in(path: &Path) -> Vec<String> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .expect("the file opens as SQLite");
    let check: String = sqlx::query_scalar("pragma integrity_check")
        .fetch_one(&mut conn)
        .await
        .expect("integrity check runs");
    assert_eq!(check, "ok");
    sqlx::query_scalar("select id from orders")
        .fetch_all(&mut conn)
        .await
        .expect("orders table")
}

async fn every_pooled_connection_commits_durably(backend: Backend) {
    let app = spawn_app(backend).await;
    let expected = match backend {
        Backend::Sqlite => "full",
        Backend::Postgres => "on",
    };
    assert_eq!(app.state.store.commit_durability().await.unwrap(), expected);
    // Hold several connections at once so the check covers more than one session.
    orderhost::with_pool!(&app.state.store, pool => {
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(pool.acquire().await.expect("connection"));
        }
        for conn in &mut held {
            let setting: String = match backend {
                Backend::Sqlite => {
                    let level: i64 = sqlx::query_scalar("pragma synchronous")
                        .fetch_one(&mut **conn)
                        .await
                        .unwrap();
                    assert_eq!(level, 2, "2 is FULL");
                    "full".to_owned()
                }
                Backend::Postgres => sqlx::query_scalar("show synchronous_commit")
                    .fetch_one(&mut **conn)
                    .await
                    .unwrap(),
            };
            assert_eq!(setting, expected);
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_sqlite_durability_is_refused_in_production_unless_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let production = |ack: bool| orderhost::Config {
        store: orderhost::config::StoreConfig {
            database_url: sqlite_url(&dir.path().join("prod.db")),
            sqlite_synchronous: orderhost::config::SqliteSynchronous::Normal,
            sqlite_accept_data_loss: ack,
            ..Default::default()
        },
        environment: orderhost::config::Environment::Production,
        jwt_secret: "a-production-secret-of-at-least-32-bytes".into(),
        bind: "127.0.0.1:0".parse().unwrap(),
        policies_dir: dir.path().join("policies"),
        ..Default::default()
    };
    let Err(err) = orderhost::App::build(production(false)).await else {
        panic!("production with synchronous=normal must be refused");
    };
    let message = format!("{err:#}");
    assert!(
        message.contains("ORDERHOST_SQLITE_SYNCHRONOUS"),
        "{message}"
    );
    assert!(
        message.contains("ORDERHOST_SQLITE_ACCEPT_DATA_LOSS"),
        "{message}"
    );

    let app = orderhost::App::build(production(true)).await.unwrap();
    assert_eq!(
        app.state().store.commit_durability().await.unwrap(),
        "normal"
    );
    app.state().store.close().await;

    // Development accepts it (with a warning); the setting reaches every connection.
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.store.sqlite_synchronous = orderhost::config::SqliteSynchronous::Normal;
    })
    .await;
    assert_eq!(app.state.store.commit_durability().await.unwrap(), "normal");

    // The binary: production refuses through the environment variables too, and a value
    // out of range gets clap's error naming the allowed ones.
    let url = sqlite_url(&dir.path().join("bin.db"));
    let mut command = orderhost(&url);
    command
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("ORDERHOST_ENV", "production")
        .env(
            "ORDERHOST_JWT_SECRET",
            "a-production-secret-of-at-least-32-bytes",
        )
        .env("ORDERHOST_SQLITE_SYNCHRONOUS", "normal");
    let output = run(command).await;
    assert_refused(&output, "ORDERHOST_SQLITE_ACCEPT_DATA_LOSS");
    let mut command = orderhost(&url);
    command.args(["migrate", "--sqlite-synchronous", "sometimes"]);
    let output = run(command).await;
    assert_refused(&output, "[possible values: full, normal]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_holds_every_order_answered_before_it_and_restores() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_, stock) = app.seed_product(None, "BAK", 500, 1_000_000).await;
    let token = customer(&app, "bak@example.com").await;
    let mut answered = Vec::new();
    for _ in 0..10 {
        answered.push(place(&app, &token, &stock).await);
    }
    let live_url = app.state.config.store.database_url.clone();

    // A writer keeps placing orders before, during and after the backup.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = {
        let (stop, written, token, stock) =
            (stop.clone(), written.clone(), token.clone(), stock.clone());
        let url = app.url("/order");
        tokio::spawn(async move {
            let client = new_client();
            while !stop.load(Ordering::Relaxed) {
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "lines": [{ "stockId": stock, "quantity": 1 }] }))
                    .send()
                    .await
                    .expect("request");
                let order = json_ok(response, StatusCode::ACCEPTED).await;
                let id = order["id"].as_str().unwrap().to_owned();
                written.lock().unwrap().push(id);
            }
        })
    };
    while written.lock().unwrap().len() < 5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backups").join("orderhost.backup.db");
    // Every order answered 202 before the backup began must be in it.
    answered.extend(written.lock().unwrap().iter().cloned());
    let mut command = orderhost(&live_url);
    command.arg("backup").arg(&backup);
    let output = run(command).await;
    let during = written.lock().unwrap().len();
    // Keep writing a little after it ended, so the writes surely overlapped it.
    while written.lock().unwrap().len() < during + 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert!(
        output.status.success(),
        "backup failed: {}",
        stderr(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("backup written to"), "{stdout}");

    let in_backup = orders_in(&backup).await;
    for id in &answered {
        assert!(
            in_backup.contains(id),
            "order {id} answered 202 before the backup is missing"
        );
    }
    let total = app.scalar("select count(*) from orders").await;
    assert!(in_backup.len() as i64 <= total);
    // No partial file is left behind.
    let left: Vec<_> = std::fs::read_dir(backup.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "only the backup: {left:?}");

    // A second backup never overwrites the first.
    let mut command = orderhost(&live_url);
    command.arg("backup").arg(&backup);
    assert_refused(&run(command).await, "exists already");

    // Restore into a fresh data path, then start a service on it: same orders, same users.
    let fresh = dir.path().join("fresh").join("orderhost.db");
    let fresh_url = sqlite_url(&fresh);
    let mut command = orderhost(&fresh_url);
    command.arg("restore").arg(&backup);
    let output = run(command).await;
    assert!(
        output.status.success(),
        "restore failed: {}",
        stderr(&output)
    );
    let restored = spawn_app_with(Backend::Sqlite, |c| {
        c.store.database_url = fresh_url.clone()
    })
    .await;
    let (client, _) = restored.login_as("bak@example.com", None).await;
    for id in &in_backup {
        let order: Value = json_ok(
            client
                .get(restored.url(&format!("/order/{id}")))
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(order["id"], id.as_str());
    }
    assert_eq!(
        restored.scalar("select count(*) from orders").await,
        in_backup.len() as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_refuse_bad_input_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");

    // Backing up a database that does not exist (and creating none).
    let mut command = orderhost(&sqlite_url(&dir.path().join("none.db")));
    command.arg("backup").arg(dir.path().join("b.db"));
    assert_refused(&run(command).await, "no database to back up");
    assert!(!dir.path().join("none.db").exists());

    let target = dir.path().join("target.db");
    let target_url = sqlite_url(&target);
    // A missing backup file.
    let mut command = orderhost(&target_url);
    command.arg("restore").arg(&missing);
    assert_refused(&run(command).await, "no backup file");

    // A file that is not SQLite.
    let junk = dir.path().join("junk.db");
    std::fs::write(
        &junk,
        "this is not a database, just some text. ".repeat(200),
    )
    .unwrap();
    let mut command = orderhost(&target_url);
    command.arg("restore").arg(&junk);
    assert_refused(&run(command).await, "is not a SQLite database");

    // A SQLite database that is not an orderhost one.
    let other = dir.path().join("other.db");
    let mut conn = SqliteConnectOptions::new()
        .filename(&other)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql("create table notes (body text); insert into notes values ('hi')")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let mut command = orderhost(&target_url);
    command.arg("restore").arg(&other);
    assert_refused(&run(command).await, "not an orderhost one");
    assert!(!target.exists(), "nothing was written on refusal");

    // A running service's database: a good backup, then refusals to replace it.
    let app = spawn_app(Backend::Sqlite).await;
    let (_, stock) = app.seed_product(None, "REF", 500, 100).await;
    let token = customer(&app, "ref@example.com").await;
    let id = place(&app, &token, &stock).await;
    let live_url = app.state.config.store.database_url.clone();
    let backup = dir.path().join("good.db");
    let mut command = orderhost(&live_url);
    command.arg("backup").arg(&backup);
    let output = run(command).await;
    assert!(output.status.success(), "{}", stderr(&output));

    let mut command = orderhost(&live_url);
    command.arg("restore").arg(&backup);
    assert_refused(&run(command).await, "--force");
    let mut command = orderhost(&live_url);
    command.args(["restore", "--force"]).arg(&backup);
    assert_refused(&run(command).await, "in use");
    // The live database is untouched and keeps serving.
    let id2 = place(&app, &token, &stock).await;
    assert_ne!(id, id2);
    assert_eq!(app.scalar("select count(*) from orders").await, 2);

    // PostgreSQL: its own tools, named.
    let pg = postgres_server_url();
    let mut command = orderhost(&pg);
    command.arg("backup").arg(dir.path().join("pg.db"));
    assert_refused(&run(command).await, "pg_dump");
    let mut command = orderhost(&pg);
    command.arg("restore").arg(&backup);
    assert_refused(&run(command).await, "pg_restore");
    // And a path-less URL.
    let mut command = orderhost("sqlite::memory:");
    command.arg("backup").arg(dir.path().join("mem.db"));
    assert_refused(&run(command).await, "does not name a SQLite database file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_with_force_replaces_a_stopped_database_and_its_stale_log() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_, stock) = app.seed_product(None, "OLD", 500, 100).await;
    let token = customer(&app, "old@example.com").await;
    let kept = place(&app, &token, &stock).await;
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("snap.db");
    let mut command = orderhost(&app.state.config.store.database_url);
    command.arg("backup").arg(&backup);
    assert!(run(command).await.status.success());

    // A target database with later writes, left with its write-ahead log as a stopped
    // service may leave it (copied while the app holds it open: WAL and all).
    place(&app, &token, &stock).await;
    let live = orderhost::store::sqlite_path(&app.state.config.store.database_url).unwrap();
    let target = dir.path().join("target.db");
    for suffix in ["", "-wal"] {
        let mut from = live.clone().into_os_string();
        from.push(suffix);
        let mut to = target.clone().into_os_string();
        to.push(suffix);
        if Path::new(&from).exists() {
            std::fs::copy(&from, &to).unwrap();
        }
    }

    let target_url = sqlite_url(&target);
    let mut command = orderhost(&target_url);
    command.args(["restore", "--force"]).arg(&backup);
    let output = run(command).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 orders"));
    let mut wal = target.clone().into_os_string();
    wal.push("-wal");
    assert!(!Path::new(&wal).exists(), "the old log is gone");
    assert_eq!(orders_in(&target).await, vec![kept]);
}
