//! Cost flat in history (issue 14): on a PostgreSQL database that already holds a history
//! of settled orders, the order path — register, sign in, quote, place (with and without
//! an idempotency key, and its replay), settle, read, list, follow the events, read the
//! decision, cancel — reads no table that grows with orders by a sequential scan, on the
//! database queue and on the Redis queue with its outbox relay. Every connection runs with
//! `plan_cache_mode = force_generic_plan`, so what is checked is the plan a prepared
//! statement keeps, not one made for this test's parameter values.
//!
//! Two checks: `pg_stat_user_tables.seq_scan` of each history table before and after each
//! run (covers every statement, including those whose text is built in code this test
//! cannot name), and EXPLAIN of the hot statements whose text is static (a plan change
//! shows here with its plan). The live-work tables (`jobs`, `outbox`: a settled job and
//! a pushed outbox row are deleted) are empty at rest, and a sequential scan of an empty
//! table is the planner's right choice; their statements are EXPLAINed against a backlog
//! of 20 000 rows instead (written in a transaction that is rolled back), and their
//! counters are printed. PostgreSQL only: SQLite has no such counters and its own planner.

use std::{collections::BTreeMap, time::Duration};

use orderhost::{
    App, Config,
    config::{Environment, StoreConfig},
    orders::{
        LINE_COLUMNS, ORDER_COLUMNS,
        history::{GROWING_TABLES, HISTORY_TABLES, LIVE_WORK_TABLES, Preload, preload},
    },
    queue::{QueueBackend, QueueConfig},
    store::Store,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection as _, Executor as _, PgConnection};

use crate::helpers::{PASSWORD, PgDatabase, json_ok, new_client, redis_url};

/// Enough history that a sequential scan is never the cheap plan because a table is tiny
/// (30 000 orders: ~50 000 lines, ~65 000 events), small enough to preload in seconds.
const HISTORY_ORDERS: u64 = 30_000;

/// A run's queue.
#[derive(Debug, Clone, Copy)]
enum Queue {
    Database,
    Redis,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_path_scans_no_growing_table_with_history_and_generic_plans() {
    let (db, url) = PgDatabase::create().await;
    let name = url::Url::parse(&url)
        .expect("url")
        .path()
        .trim_start_matches('/')
        .to_owned();

    // Arrange: the schema, the history (ANALYZEd by the preload), generic plans for every
    // connection opened from now on — the server's pool connects only after this.
    let store = Store::open(
        &StoreConfig {
            database_url: url.clone(),
            db_max_connections: 2,
            ..StoreConfig::default()
        },
        Duration::from_secs(10),
    )
    .await
    .expect("the database opens and migrates");
    let report = preload(&store, &Preload::new(HISTORY_ORDERS, now_ms()), |_| {})
        .await
        .expect("history preloads");
    assert_eq!(report.orders, HISTORY_ORDERS);
    let stock_ids: Vec<String> = orderhost::with_pool!(&store, pool => sqlx::query_scalar(
        "select s.id from stock_items s join products p on p.id = s.product_id order by p.sku limit 3",
    )
    .fetch_all(pool)
    .await)
    .expect("stock rows");
    // Closed and dropped: a connection still being returned when `close` runs can stay
    // open in the closed pool until the pool itself goes.
    store.close().await;
    drop(store);
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    conn.execute(
        format!("alter database {name} set plan_cache_mode = force_generic_plan").as_str(),
    )
    .await
    .expect("the test's role owns its database");
    conn.close().await.expect("close");

    // The static statements on the history tables first: their generic plans.
    explain(&url, &history_statements(), None).await;

    for queue in [Queue::Database, Queue::Redis] {
        let before = seq_scans(&url).await;
        // Act
        run_order_path(&url, queue, &stock_ids).await;
        // Assert: the server is stopped, its backends have flushed their counters.
        let after = seq_scans(&url).await;
        let delta =
            |t: &str| after.get(t).copied().unwrap_or(0) - before.get(t).copied().unwrap_or(0);
        eprintln!(
            "{queue:?} queue: sequential scans of the live-work tables (empty at rest): {}",
            LIVE_WORK_TABLES
                .iter()
                .map(|t| format!("{t} {}", delta(t)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let grew: Vec<String> = HISTORY_TABLES
            .iter()
            .filter_map(|t| {
                let (b, a) = (
                    before.get(*t).copied().unwrap_or(0),
                    after.get(*t).copied().unwrap_or(0),
                );
                (a > b).then(|| format!("{t}: {} sequential scans", a - b))
            })
            .collect();
        assert!(
            grew.is_empty(),
            "{queue:?} queue: the order path read a table that grows with orders by a sequential \
             scan ({}). Find the statement (log_min_duration_statement = 0, or auto_explain) and \
             run EXPLAIN on it under `set plan_cache_mode = force_generic_plan`: it needs an \
             index (a new migration) or a statement that can use one",
            grew.join(", ")
        );
    }
    // The queue's statements against a backlog (rolled back afterwards).
    explain(&url, &live_work_statements(), Some(BACKLOG)).await;
    drop(db);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `seq_scan` of every user table of the database at `url`, once no other client backend
/// is connected to it (autovacuum counts no sequential scan): a backend flushes its counters at exit (and at most every few seconds
/// while idle), so only then are they complete. Read on a fresh connection, after
/// clearing any cached snapshot.
async fn seq_scans(url: &str) -> BTreeMap<String, i64> {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let others: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where datname = current_database() \
             and pid <> pg_backend_pid() and backend_type = 'client backend'",
        )
        .fetch_one(&mut conn)
        .await
        .expect("pg_stat_activity");
        if others == 0 {
            break;
        }
        if std::time::Instant::now() > deadline {
            let who: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
                "select application_name, state, query from pg_stat_activity \
                 where datname = current_database() and pid <> pg_backend_pid() \
                 and backend_type = 'client backend'",
            )
            .fetch_all(&mut conn)
            .await
            .expect("pg_stat_activity");
            panic!(
                "{others} client backends still connected 20 s after the server stopped: {who:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sqlx::query("select pg_stat_clear_snapshot()")
        .execute(&mut conn)
        .await
        .expect("clear snapshot");
    let rows: Vec<(String, i64)> =
        sqlx::query_as("select relname::text, seq_scan from pg_stat_user_tables")
            .fetch_all(&mut conn)
            .await
            .expect("pg_stat_user_tables");
    conn.close().await.expect("close");
    rows.into_iter().collect()
}

/// One real server on the database at `url` with `queue`, driven over HTTP through the
/// whole order path, then stopped (which closes its pool).
async fn run_order_path(url: &str, queue: Queue, stock_ids: &[String]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = format!("orderhost-test-{}", uuid::Uuid::new_v4().simple());
    let config = Config {
        store: StoreConfig {
            database_url: url.to_owned(),
            db_max_connections: 8,
            ..StoreConfig::default()
        },
        environment: Environment::Development,
        bind: "127.0.0.1:0".parse().expect("address"),
        redis_url: redis_url(),
        redis_prefix: prefix.clone(),
        queue: QueueConfig {
            backend: match queue {
                Queue::Database => QueueBackend::Database,
                Queue::Redis => QueueBackend::Redis,
            },
            ..QueueConfig::default()
        },
        policies_dir: dir.path().join("policies"),
        ..Config::default()
    };
    let app = App::build(config).await.expect("the app builds");
    let store = app.state().store.clone();
    // The server's connections run with generic plans (the database's setting, and the
    // store's own), and refuse sequential scans where an index serves, without JIT or
    // parallel workers: a
    // generic plan kept from when `jobs` was empty must not scan a backlog (see
    // `Store::connect`).
    let (mode, seqscan, jit, parallel): (String, String, String, String) =
        orderhost::with_pool!(&store, pool => sqlx::query_as(
        "select current_setting('plan_cache_mode'), current_setting('enable_seqscan'), \
         current_setting('jit'), current_setting('max_parallel_workers_per_gather')",
    )
    .fetch_one(pool)
    .await)
        .expect("settings");
    assert_eq!(
        (
            mode.as_str(),
            seqscan.as_str(),
            jit.as_str(),
            parallel.as_str()
        ),
        ("force_generic_plan", "off", "off", "0")
    );
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let client = new_client();
    let email = format!("plans-{}@example.com", uuid::Uuid::new_v4().simple());
    let registered = client
        .post(format!("{base}/auth/register"))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .expect("register");
    assert!(
        registered.status().is_success(),
        "register: {}",
        registered.status()
    );
    let login = json_ok(
        client
            .post(format!("{base}/auth/login"))
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .expect("login"),
        StatusCode::OK,
    )
    .await;
    let token = login["accessToken"].as_str().expect("token").to_owned();
    let body = |n: usize| {
        json!({ "lines": [
            { "stockId": stock_ids[n % stock_ids.len()], "quantity": 1 },
            { "stockId": stock_ids[(n + 1) % stock_ids.len()], "quantity": 2 },
        ] })
    };
    let place = |n: usize, key: Option<String>| {
        let (client, base, token, body) = (client.clone(), base.clone(), token.clone(), body(n));
        async move {
            let mut request = client
                .post(format!("{base}/order"))
                .bearer_auth(token)
                .json(&body);
            if let Some(key) = key {
                request = request.header("idempotency-key", key);
            }
            json_ok(request.send().await.expect("place"), StatusCode::ACCEPTED).await
        }
    };

    // A quote, orders without and with a key, the key's replay.
    json_ok(
        client
            .post(format!("{base}/order/quote"))
            .bearer_auth(&token)
            .json(&body(0))
            .send()
            .await
            .expect("quote"),
        StatusCode::OK,
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(place(n, None).await["id"].as_str().expect("id").to_owned());
    }
    let key = format!("plans-{}", uuid::Uuid::new_v4().simple());
    let keyed = place(4, Some(key.clone())).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let replayed = place(4, Some(key)).await;
    assert_eq!(
        replayed["id"],
        keyed.as_str(),
        "the replay answers the first order"
    );
    ids.push(keyed);

    // The workers settle them (on the Redis queue after the relay pushed them).
    for id in &ids {
        let order = settled(&client, &base, &token, id).await;
        assert_eq!(order["status"], "CONFIRMED", "{order}");
    }
    // Read: the events (the stream ends once the order is final), the list, the decision.
    let events = tokio::time::timeout(
        Duration::from_secs(10),
        client
            .get(format!("{base}/order/{}/events", ids[0]))
            .bearer_auth(&token)
            .send(),
    )
    .await
    .expect("events answer")
    .expect("events");
    let text = tokio::time::timeout(Duration::from_secs(10), events.text())
        .await
        .expect("the event stream of a final order ends")
        .expect("events body");
    assert!(text.contains("CONFIRMED"), "{text}");
    let list = json_ok(
        client
            .get(format!("{base}/order"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("list"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(ids.len()),
        "{list}"
    );
    json_ok(
        client
            .get(format!("{base}/order/{}/decision", ids[1]))
            .bearer_auth(&token)
            .send()
            .await
            .expect("decision"),
        StatusCode::OK,
    )
    .await;
    // Cancel a confirmed order (its stock is released), and one still being placed.
    let cancelled = client
        .post(format!("{base}/order/{}/cancel", ids[2]))
        .bearer_auth(&token)
        .send()
        .await
        .expect("cancel");
    assert!(
        cancelled.status().is_success(),
        "cancel: {}",
        cancelled.status()
    );
    let late = place(5, None).await["id"].as_str().expect("id").to_owned();
    let _ = client
        .post(format!("{base}/order/{late}/cancel"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("cancel");
    let order = settled(&client, &base, &token, &late).await;
    assert_ne!(order["status"], "PENDING");

    // Stop: the workers and the relay stop, the pool closes.
    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(30), server).await {
        Ok(Ok(Ok(()))) => {}
        other => panic!("the server did not stop cleanly: {other:?}"),
    }
    store.close().await;
    drop(store);
    // Both runs use Redis (the replicas' fan-out, and the Redis queue).
    delete_redis_prefix(&prefix).await;
}

/// Polls `GET /order/{id}` (an index lookup, like any client's) until it is final.
async fn settled(client: &reqwest::Client, base: &str, token: &str, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let order = json_ok(
            client
                .get(format!("{base}/order/{id}"))
                .bearer_auth(token)
                .send()
                .await
                .expect("get order"),
            StatusCode::OK,
        )
        .await;
        if order["status"] != "PENDING" {
            return order;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "order {id} still PENDING after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deletes this run's Redis keys (SCAN + DEL: the server is shared, never FLUSHALL).
async fn delete_redis_prefix(prefix: &str) {
    let client = redis::Client::open(redis_url()).expect("REDIS_URL");
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let mut cursor: u64 = 0;
    for _ in 0..10_000 {
        let Ok((next, keys)) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1_000)
            .query_async::<(u64, Vec<String>)>(&mut conn)
            .await
        else {
            return;
        };
        if !keys.is_empty() {
            let _ = redis::cmd("DEL")
                .arg(&keys)
                .query_async::<u64>(&mut conn)
                .await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// A hot statement: a name for PREPARE, its text, arguments for EXECUTE.
type Statement = (&'static str, String, &'static str);

/// The hot statements on the history tables whose text does not depend on the data, as
/// the host runs them (`orders/routes.rs`, `orders/decision.rs`, `orders/process.rs`,
/// `idempotency`), with arguments for `EXECUTE`. Texts built around the host's column
/// lists use its constants, so a changed column list is followed here; the rest are
/// copies, and the seq_scan counters above catch what a copy misses.
fn history_statements() -> Vec<Statement> {
    vec![
        (
            "order_by_id",
            format!("select {ORDER_COLUMNS} from orders where id = $1 and tenant_id = $2"),
            "'x', 't'",
        ),
        (
            "lines_of_order",
            format!("select {LINE_COLUMNS} from order_lines where order_id = $1 order by line_no"),
            "'x'",
        ),
        (
            "customer_orders",
            format!(
                "select {ORDER_COLUMNS} from orders where tenant_id = $1 and user_id = $2 \
                 order by created_at desc, id desc limit $3 offset $4"
            ),
            "'t', 'u', 20, 0",
        ),
        (
            "customer_order_count",
            "select count(*) from orders where tenant_id = $1 and user_id = $2".to_owned(),
            "'t', 'u'",
        ),
        (
            "order_events",
            "select seq, status, reason, created_at from order_events where order_id = $1 order by seq"
                .to_owned(),
            "'x'",
        ),
        (
            "order_decision",
            "select o.tenant_id, o.user_id, d.decision from orders o \
             left join order_decisions d on d.order_id = o.id where o.id = $1"
                .to_owned(),
            "'x'",
        ),
        (
            "cancel_lock",
            "select status from orders where id = $1 for update".to_owned(),
            "'x'",
        ),
        (
            "idempotency_key",
            "select request_hash, state, response_status, response_body, created_at, updated_at \
             from idempotency_keys where tenant_id = $1 and user_id = $2 and key = $3"
                .to_owned(),
            "'t', 'u', 'k'",
        ),
        (
            "idempotency_done",
            "update idempotency_keys set state = 'done', response_status = 202, response_body = $1, \
             updated_at = $2 where tenant_id = $3 and user_id = $4 and key = $5"
                .to_owned(),
            "'{}', 1, 't', 'u', 'k'",
        ),
        (
            "settle_read",
            "select o.id as order_id, o.status, o.reason, l.stock_id, l.quantity from orders o \
             left join order_lines l on l.order_id = o.id and o.status = 'PENDING' \
             where o.id = any($1) order by o.id, l.line_no for update of o"
                .to_owned(),
            "'{a,b}'",
        ),
        (
            "settle_update",
            "update orders set status = v.c1, reason = v.c2, updated_at = $1, final_at = $2 from \
             (select * from unnest($3::text[], $4::text[], $5::text[]) as r(c0, c1, c2)) as v \
             where orders.id = v.c0 and orders.status = 'PENDING'"
                .to_owned(),
            "1, 1, '{a}', '{CONFIRMED}', '{NULL}'",
        ),
    ]
}

/// Jobs and outbox rows written for the backlog EXPLAIN runs against.
const BACKLOG: i64 = 20_000;

/// The queue's hot statements (the claims are the queue modules' own constants). The
/// claims once joined the claimed rows back by `in (subquery … limit $n)`: with a
/// parameter for the limit the generic plan expected 10 % of the due rows, hashed them and
/// scanned the whole backlog for the outer update or delete (21 ms per claim of 64 at
/// 50 000 jobs waiting); `= any(array(subquery …))` is a primary-key probe.
fn live_work_statements() -> Vec<Statement> {
    vec![
        (
            "job_expired_probe",
            "select 1 from jobs where status = 'leased' and lease_until <= $1 limit 1".to_owned(),
            "1",
        ),
        (
            "job_claim",
            orderhost::queue::db::CLAIM_POSTGRES.to_owned(),
            "1, 'w', 1, 256",
        ),
        (
            "job_acknowledge",
            "delete from jobs where order_id = any($1)".to_owned(),
            "'{a}'",
        ),
        (
            "outbox_claim",
            orderhost::queue::outbox::CLAIM_POSTGRES.to_owned(),
            "1, 256",
        ),
    ]
}

/// PREPAREs each of `statements` on a connection with generic plans and asserts that
/// `EXPLAIN EXECUTE` shows no sequential scan of a growing table. With `backlog`, first
/// writes that many jobs (10 % of them leased) and outbox rows and ANALYZEs them, in a
/// transaction rolled back at the end.
async fn explain(url: &str, statements: &[Statement], backlog: Option<i64>) {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let mode: String = sqlx::query_scalar("show plan_cache_mode")
        .fetch_one(&mut conn)
        .await
        .expect("show");
    assert_eq!(mode, "force_generic_plan", "the database's setting applies");
    if let Some(rows) = backlog {
        sqlx::raw_sql(&format!(
            "begin; \
             insert into jobs (id, tenant_id, order_id, priority, status, attempts, max_attempts, run_at, \
                lease_until, leased_by, created_at, updated_at) \
             select 'backlog-' || id, tenant_id, id, priority, \
                case when n % 10 = 0 then 'leased' else 'queued' end, 0, 5, created_at, \
                case when n % 10 = 0 then created_at + 30000 end, case when n % 10 = 0 then 'w' end, \
                created_at, created_at \
             from (select o.*, row_number() over (order by id) as n from orders o order by id limit {rows}) b; \
             insert into outbox (id, order_id, tenant_id, priority, max_attempts, next_try_at, created_at) \
             select 'backlog-' || id, id, tenant_id, priority, 5, created_at, created_at \
             from orders order by id limit {rows}; \
             analyze jobs, outbox;"
        ))
        .execute(&mut conn)
        .await
        .expect("a backlog");
    }
    let mut found = Vec::new();
    for (name, sql, args) in statements {
        sqlx::raw_sql(&format!("prepare {name} as {sql}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("prepare {name}: {e}\n{sql}"));
        let plan: Vec<String> = sqlx::query_scalar(&format!("explain execute {name}({args})"))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("explain {name}: {e}"));
        let plan = plan.join("\n");
        for table in GROWING_TABLES {
            let scanned = plan.lines().any(|line| {
                line.split("Seq Scan on ")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    == Some(table)
            });
            if scanned {
                found.push(format!(
                    "{name}: Seq Scan on {table} in its generic plan\n{sql}\n{plan}"
                ));
            }
        }
    }
    if backlog.is_some() {
        sqlx::raw_sql("rollback")
            .execute(&mut conn)
            .await
            .expect("rollback");
    }
    conn.close().await.expect("close");
    assert!(
        found.is_empty(),
        "hot statements would read a growing table by a sequential scan (EXPLAIN under \
         plan_cache_mode = force_generic_plan); add an index in a migration or change the \
         statement:\n\n{}",
        found.join("\n\n")
    );
}
