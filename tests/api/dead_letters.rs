//! The dead-letter API and `orderhost queue dead …`, on the database queue (SQLite) and on
//! the Redis queue (PostgreSQL + Redis), plus the database queue on PostgreSQL. Jobs die
//! for real: a trigger makes the database refuse every stock update, the workers retry
//! until the attempts run out, and the orders end FAILED `RETRIES_EXHAUSTED`.

use orderhost::{auth::Role, clock::Clock as _, orders::process::run_once, queue::QueueBackend};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::{
    backend_tests,
    helpers::{Backend, TestApp, assert_error, json_ok, new_client, spawn_app_with},
    ops_cli::{fails, ok},
};

backend_tests!(
    dead_letters_are_listed_to_admins_for_their_tenant_and_to_operators_for_all,
    a_retried_dead_letter_is_queued_again_and_confirmed_once,
    a_discarded_dead_letter_stays_failed_and_leaves_the_queue,
    a_queue_that_does_not_answer_is_a_503,
    the_cli_lists_retries_and_discards_dead_letters,
);

/// Attempts a job gets in these tests.
const MAX_ATTEMPTS: u32 = 2;

pub(crate) async fn app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |c| {
        c.workers = 0;
        c.queue.max_attempts = MAX_ATTEMPTS;
        c.queue.backoff_base_ms = 0;
    })
    .await
}

/// SQL that makes every stock update fail (raised by the database itself), and SQL that
/// heals it.
pub(crate) fn fault(backend: Backend) -> (&'static str, &'static str) {
    match backend {
        Backend::Sqlite => (
            "create trigger injected_fault before update on stock_items begin select raise(abort, 'injected fault'); end;",
            "drop trigger injected_fault;",
        ),
        Backend::Postgres => (
            "create function injected_fault() returns trigger language plpgsql as $$ begin raise exception 'injected fault'; end $$; \
             create trigger injected_fault before update on stock_items for each row execute function injected_fault();",
            "drop trigger injected_fault on stock_items; drop function injected_fault();",
        ),
    }
}

/// A customer of `tenant` (default when `None`); its token.
pub(crate) async fn customer(app: &TestApp, email: &str, tenant: Option<&str>) -> String {
    app.register(email, tenant).await;
    app.login_as(email, tenant).await.1
}

/// Places an order of `quantity` × `stock_id`; its id.
pub(crate) async fn place(app: &TestApp, token: &str, stock_id: &str, quantity: i64) -> String {
    let order = json_ok(
        new_client()
            .post(app.url("/order"))
            .bearer_auth(token)
            .json(&json!({ "lines": [{ "stockId": stock_id, "quantity": quantity }] }))
            .send()
            .await
            .unwrap(),
        StatusCode::ACCEPTED,
    )
    .await;
    order["id"].as_str().unwrap().to_owned()
}

/// Worker passes (the fault in place) until the `orders` queued jobs are dead.
pub(crate) async fn let_them_die(app: &TestApp, orders: usize) {
    for attempt in 1..=MAX_ATTEMPTS {
        // Redis mode: the relay pushes accepted orders asynchronously.
        app.outbox_drained().await;
        let report = run_once(&app.state, "w").await.unwrap();
        assert_eq!(report.claimed, orders, "attempt {attempt}: {report:?}");
    }
    assert_eq!(
        app.state.queue.depth().await.unwrap().dead,
        orders as i64,
        "every job dead"
    );
}

async fn get(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    new_client()
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn post(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    new_client()
        .post(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn order(app: &TestApp, token: &str, id: &str) -> Value {
    json_ok(
        get(app, token, &format!("/order/{id}")).await,
        StatusCode::OK,
    )
    .await
}

/// (status, reason) of every event of an order, oldest first.
async fn events(app: &TestApp, id: &str) -> Vec<(String, Option<String>)> {
    orderhost::with_pool!(&app.state.store, pool => sqlx::query_as::<_, (String, Option<String>)>(
        "select status, reason from order_events where order_id = $1 order by seq",
    )
    .bind(id)
    .fetch_all(pool)
    .await)
    .unwrap()
}

fn event(status: &str, reason: Option<&str>) -> (String, Option<String>) {
    (status.to_owned(), reason.map(str::to_owned))
}

fn order_ids(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["orderId"].as_str().unwrap())
        .collect()
}

async fn dead_letters_are_listed_to_admins_for_their_tenant_and_to_operators_for_all(
    backend: Backend,
) {
    // Arrange: one dead order in the default tenant, one in acme.
    let app = app(backend).await;
    app.tenant("acme").await;
    let (_, mug) = app.seed_product(None, "MUG", 100, 10).await;
    let (_, cap) = app.seed_product(Some("acme"), "CAP", 250, 10).await;
    let ann = customer(&app, "ann@example.com", None).await;
    let bob = customer(&app, "bob@acme.example", Some("acme")).await;
    let admin = app
        .user_with_role("admin@example.com", Role::Admin, None)
        .await;
    let acme_admin = app
        .user_with_role("boss@acme.example", Role::Admin, Some("acme"))
        .await;
    let operator = app
        .user_with_role("ops@example.com", Role::Operator, None)
        .await;
    app.exec(fault(backend).0).await;
    let ours = place(&app, &ann, &mug, 2).await;
    let theirs = place(&app, &bob, &cap, 3).await;
    let_them_die(&app, 2).await;
    let died_at = orderhost::clock::rfc3339(app.clock.now_ms());

    // Act + Assert: an admin sees its own tenant's, with every field.
    let page = json_ok(
        get(&app, &admin, "/admin/dead-letters").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (page["total"].as_i64(), page["page"].as_i64()),
        (Some(1), Some(1)),
        "{page}"
    );
    assert_eq!(page["perPage"], 20);
    let entry = &page["items"][0];
    assert_eq!(entry["orderId"], ours.as_str(), "{entry}");
    assert_eq!(entry["tenant"], "default");
    assert_eq!(entry["status"], "FAILED");
    assert_eq!(entry["reason"], "RETRIES_EXHAUSTED");
    assert_eq!(entry["attempts"], MAX_ATTEMPTS);
    assert_eq!(entry["priority"], 10);
    assert_eq!(
        (entry["total"].as_i64(), entry["currency"].as_str()),
        (Some(200), Some("EUR"))
    );
    assert!(
        entry["lastError"]
            .as_str()
            .unwrap()
            .contains("injected fault"),
        "{entry}"
    );
    // The clock stood still while the job lived: both attempts at the same instant.
    assert_eq!(entry["firstAttemptAt"], died_at.as_str(), "{entry}");
    assert_eq!(entry["lastAttemptAt"], died_at.as_str(), "{entry}");

    let page = json_ok(
        get(&app, &acme_admin, "/admin/dead-letters").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(order_ids(&page), [theirs.as_str()], "{page}");
    assert_eq!(page["items"][0]["tenant"], "acme");
    assert_eq!(page["items"][0]["total"], 750);
    // An admin naming another tenant: 404 like a missing tenant.
    assert_error(
        get(&app, &acme_admin, "/admin/dead-letters?tenant=default").await,
        StatusCode::NOT_FOUND,
        "TENANT_NOT_FOUND",
    )
    .await;

    // An operator: every tenant's (most recently dead first: both died at once, so only
    // the set is checked), one tenant's with ?tenant=, paginated.
    let page = json_ok(
        get(&app, &operator, "/admin/dead-letters").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["total"], 2);
    let mut all = order_ids(&page);
    all.sort_unstable();
    let mut expected = [ours.as_str(), theirs.as_str()];
    expected.sort_unstable();
    assert_eq!(all, expected);
    let page = json_ok(
        get(&app, &operator, "/admin/dead-letters?tenant=acme").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (order_ids(&page), page["total"].as_i64()),
        (vec![theirs.as_str()], Some(1))
    );
    let first = json_ok(
        get(&app, &operator, "/admin/dead-letters?perPage=1").await,
        StatusCode::OK,
    )
    .await;
    let second = json_ok(
        get(&app, &operator, "/admin/dead-letters?perPage=1&page=2").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (first["total"].as_i64(), first["perPage"].as_i64()),
        (Some(2), Some(1))
    );
    let mut paged = [order_ids(&first), order_ids(&second)].concat();
    paged.sort_unstable();
    assert_eq!(paged, expected, "two pages, each entry once");
    assert_error(
        get(&app, &operator, "/admin/dead-letters?tenant=nope").await,
        StatusCode::NOT_FOUND,
        "TENANT_NOT_FOUND",
    )
    .await;

    // Customers and strangers are refused.
    assert_error(
        get(&app, &ann, "/admin/dead-letters").await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    assert_error(
        app.get("/admin/dead-letters").await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;

    // The three routes are in the API description.
    let doc = json_ok(app.get("/api/openapi.json").await, StatusCode::OK).await;
    for (path, method) in [
        ("/admin/dead-letters", "get"),
        ("/admin/dead-letters/{orderId}/retry", "post"),
        ("/admin/dead-letters/{orderId}/discard", "post"),
    ] {
        assert!(
            doc["paths"][path][method]["responses"].is_object(),
            "{method} {path} documented"
        );
    }
}

async fn a_retried_dead_letter_is_queued_again_and_confirmed_once(backend: Backend) {
    // Arrange: a dead order, then the database heals.
    let app = app(backend).await;
    app.tenant("acme").await;
    let (_, mug) = app.seed_product(None, "MUG", 100, 10).await;
    let ann = customer(&app, "ann@example.com", None).await;
    let admin = app
        .user_with_role("admin@example.com", Role::Admin, None)
        .await;
    let acme_admin = app
        .user_with_role("boss@acme.example", Role::Admin, Some("acme"))
        .await;
    let (install, heal) = fault(backend);
    app.exec(install).await;
    let id = place(&app, &ann, &mug, 2).await;
    let_them_die(&app, 1).await;
    app.exec(heal).await;
    let retry = format!("/admin/dead-letters/{id}/retry");

    // Another tenant's admin, a customer, a missing order: nothing changes.
    assert_error(
        post(&app, &acme_admin, &retry).await,
        StatusCode::NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    .await;
    assert_error(
        post(&app, &ann, &retry).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    assert_error(
        post(&app, &admin, "/admin/dead-letters/no-such-order/retry").await,
        StatusCode::NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    .await;
    assert_eq!(order(&app, &ann, &id).await["reason"], "RETRIES_EXHAUSTED");

    // Act
    let retried = json_ok(post(&app, &admin, &retry).await, StatusCode::ACCEPTED).await;

    // Assert: PENDING again with a RETRIED event, off the dead-letter list, then confirmed
    // by one worker pass, its stock reserved once.
    assert_eq!(
        (retried["id"].as_str(), retried["status"].as_str()),
        (Some(id.as_str()), Some("PENDING"))
    );
    assert!(retried["reason"].is_null(), "{retried}");
    assert_eq!(
        events(&app, &id).await,
        [
            event("PENDING", None),
            event("FAILED", Some("RETRIES_EXHAUSTED")),
            event("PENDING", Some("RETRIED")),
        ]
    );
    app.outbox_drained().await;
    let page = json_ok(
        get(&app, &admin, "/admin/dead-letters").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["total"], 0, "{page}");
    assert_eq!(app.state.queue.depth().await.unwrap().dead, 0);
    let report = run_once(&app.state, "w").await.unwrap();
    assert_eq!((report.claimed, report.confirmed), (1, 1), "{report:?}");
    assert_eq!(order(&app, &ann, &id).await["status"], "CONFIRMED");
    assert_eq!(app.stock(&mug).await, (8, 2, 10));
    app.outbox_drained().await;
    assert_eq!(
        run_once(&app.state, "w").await.unwrap().claimed,
        0,
        "nothing left"
    );
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from stock_movements where order_id = '{id}' and kind = 'reserve'"
        ))
        .await,
        1
    );

    // A retry of an order that is not dead is refused, naming its status.
    let refused = assert_error(
        post(&app, &admin, &retry).await,
        StatusCode::CONFLICT,
        "NOT_DEAD",
    )
    .await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CONFIRMED"),
        "{refused}"
    );
    assert_eq!(app.stock(&mug).await, (8, 2, 10));
}

async fn a_discarded_dead_letter_stays_failed_and_leaves_the_queue(backend: Backend) {
    // Arrange: three dead orders; the database heals.
    let app = app(backend).await;
    app.tenant("acme").await;
    let (_, mug) = app.seed_product(None, "MUG", 100, 10).await;
    let ann = customer(&app, "ann@example.com", None).await;
    let admin = app
        .user_with_role("admin@example.com", Role::Admin, None)
        .await;
    let acme_admin = app
        .user_with_role("boss@acme.example", Role::Admin, Some("acme"))
        .await;
    let operator = app
        .user_with_role("ops@example.com", Role::Operator, Some("acme"))
        .await;
    let (install, heal) = fault(backend);
    app.exec(install).await;
    let plain = place(&app, &ann, &mug, 2).await;
    let holding = place(&app, &ann, &mug, 3).await;
    let left_behind = place(&app, &ann, &mug, 1).await;
    let_them_die(&app, 3).await;
    app.exec(heal).await;
    assert_eq!(app.stock(&mug).await, (10, 0, 10));
    let discard = |id: &str| format!("/admin/dead-letters/{id}/discard");

    // Another tenant's admin: 404 like a missing order, nothing changes.
    assert_error(
        post(&app, &acme_admin, &discard(&plain)).await,
        StatusCode::NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    .await;
    assert_eq!(
        order(&app, &ann, &plain).await["reason"],
        "RETRIES_EXHAUSTED"
    );

    // Act
    let discarded = json_ok(post(&app, &admin, &discard(&plain)).await, StatusCode::OK).await;

    // Assert: FAILED DISCARDED with its event, off the list, no stock moved.
    assert_eq!(
        (discarded["status"].as_str(), discarded["reason"].as_str()),
        (Some("FAILED"), Some("DISCARDED"))
    );
    assert_eq!(
        events(&app, &plain).await.last(),
        Some(&event("FAILED", Some("DISCARDED")))
    );
    assert_eq!(
        app.stock(&mug).await,
        (10, 0, 10),
        "held nothing, released nothing"
    );
    let page = json_ok(
        get(&app, &admin, "/admin/dead-letters").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["total"], 2);
    assert!(!order_ids(&page).contains(&plain.as_str()), "{page}");
    // Twice: nothing left to discard; and a discarded order cannot be retried.
    assert_error(
        post(&app, &admin, &discard(&plain)).await,
        StatusCode::NOT_FOUND,
        "NOT_DEAD",
    )
    .await;
    assert_error(
        post(&app, &admin, &format!("/admin/dead-letters/{plain}/retry")).await,
        StatusCode::CONFLICT,
        "NOT_DEAD",
    )
    .await;
    assert_eq!(
        events(&app, &plain).await.len(),
        3,
        "PENDING, RETRIES_EXHAUSTED, DISCARDED"
    );

    // A dead order holds no stock by design, but discard releases what its movements say
    // it holds rather than assuming it: a reservation made by hand is given back.
    app.exec(&format!(
        "update stock_items set available = available - 3, reserved = reserved + 3 where id = '{mug}'; \
         insert into stock_movements (id, tenant_id, stock_id, kind, quantity, reason, order_id, created_at, updated_at) \
         values ('by-hand', '{tenant}', '{mug}', 'reserve', -3, 'by hand', '{holding}', 0, 0);",
        tenant = orderhost::store::DEFAULT_TENANT_ID
    ))
    .await;
    assert_eq!(app.stock(&mug).await, (7, 3, 10));
    // An operator of another tenant reaches every tenant's dead letters.
    let discarded = json_ok(
        post(&app, &operator, &discard(&holding)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(discarded["reason"], "DISCARDED");
    assert_eq!(app.stock(&mug).await, (10, 0, 10));
    assert_eq!(
        app.scalar(&format!(
            "select quantity from stock_movements where order_id = '{holding}' and kind = 'release'"
        ))
        .await,
        3
    );

    // An order discarded whose queue entry survived (the queue failed after the commit):
    // discarding again removes the entry, and changes nothing else.
    app.exec(&format!(
        "update orders set reason = 'DISCARDED' where id = '{left_behind}'"
    ))
    .await;
    let events_before = events(&app, &left_behind).await;
    let again = json_ok(
        post(&app, &admin, &discard(&left_behind)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["reason"], "DISCARDED");
    assert_eq!(events(&app, &left_behind).await, events_before);
    let page = json_ok(
        get(&app, &admin, "/admin/dead-letters").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["total"], 0, "{page}");
    assert_eq!(app.state.queue.depth().await.unwrap().dead, 0);
    assert_error(
        post(&app, &admin, &discard(&left_behind)).await,
        StatusCode::NOT_FOUND,
        "NOT_DEAD",
    )
    .await;
}

async fn a_queue_that_does_not_answer_is_a_503(backend: Backend) {
    // A Redis queue whose server is gone.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let app = spawn_app_with(backend, |c| {
        c.redis_url = format!("redis://127.0.0.1:{port}");
        c.queue.backend = QueueBackend::Redis;
    })
    .await;
    let operator = app
        .user_with_role("ops@example.com", Role::Operator, None)
        .await;

    let response = get(&app, &operator, "/admin/dead-letters").await;

    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    assert_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "QUEUE_UNAVAILABLE",
    )
    .await;
}

async fn the_cli_lists_retries_and_discards_dead_letters(backend: Backend) {
    // Arrange: two dead orders, the database healed.
    let app = app(backend).await;
    let (_, mug) = app.seed_product(None, "MUG", 100, 10).await;
    let ann = customer(&app, "ann@example.com", None).await;
    let admin = app
        .user_with_role("admin@example.com", Role::Admin, None)
        .await;
    let (install, heal) = fault(backend);
    app.exec(install).await;
    let first = place(&app, &ann, &mug, 2).await;
    let second = place(&app, &ann, &mug, 1).await;
    let_them_die(&app, 2).await;
    app.exec(heal).await;

    // List: a table with a row per dead letter; --json is the server's page.
    let out = ok(&app, &admin, &["queue", "dead", "list"]).await;
    let mut lines = out.lines();
    let head = lines.next().unwrap();
    assert!(
        head.starts_with("ORDER") && head.contains("LAST ERROR"),
        "{out}"
    );
    let row = lines
        .find(|l| l.starts_with(&first))
        .unwrap_or_else(|| panic!("{first} listed:\n{out}"));
    assert!(
        row.contains("FAILED RETRIES_EXHAUSTED") && row.contains("injected fault"),
        "{row}"
    );
    assert_eq!(
        head.find("TENANT"),
        row.find("default"),
        "columns aligned:\n{out}"
    );
    assert!(out.contains(&second), "{out}");
    let page: Value = serde_json::from_str(
        &ok(
            &app,
            &admin,
            &["queue", "dead", "list", "--json", "--per-page", "1"],
        )
        .await,
    )
    .unwrap();
    assert_eq!(
        (
            page["total"].as_i64(),
            page["items"].as_array().map(Vec::len)
        ),
        (Some(2), Some(1))
    );

    // Retry one, discard the other; a second discard fails with the server's code.
    let out = ok(&app, &admin, &["queue", "dead", "retry", &first]).await;
    assert!(
        out.contains("queued again") && out.contains("PENDING"),
        "{out}"
    );
    let out = ok(&app, &admin, &["queue", "dead", "discard", &second]).await;
    assert!(out.contains("DISCARDED"), "{out}");
    let err = fails(&app, &admin, &["queue", "dead", "discard", &second]).await;
    assert!(err.contains("NOT_DEAD"), "{err}");
    let out = ok(&app, &admin, &["queue", "dead", "list"]).await;
    assert!(out.starts_with("no dead letters"), "{out}");

    // The retried order goes through.
    app.outbox_drained().await;
    run_once(&app.state, "w").await.unwrap();
    assert_eq!(order(&app, &ann, &first).await["status"], "CONFIRMED");
}

/// The database queue on PostgreSQL (whose write chain is one statement): a retry replaces
/// the dead `jobs` row, and the order goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_queue_on_postgres_retries_and_discards_too() {
    let app = spawn_app_with(Backend::Postgres, |c| {
        c.workers = 0;
        c.queue.max_attempts = MAX_ATTEMPTS;
        c.queue.backoff_base_ms = 0;
        c.queue.backend = QueueBackend::Database;
    })
    .await;
    assert_eq!(
        app.state.queue.kind(),
        orderhost::queue::QueueKind::Database
    );
    let (_, mug) = app.seed_product(None, "MUG", 100, 10).await;
    let ann = customer(&app, "ann@example.com", None).await;
    let admin = app
        .user_with_role("admin@example.com", Role::Admin, None)
        .await;
    let (install, heal) = fault(Backend::Postgres);
    app.exec(install).await;
    let retried = place(&app, &ann, &mug, 2).await;
    let discarded = place(&app, &ann, &mug, 1).await;
    let_them_die(&app, 2).await;
    app.exec(heal).await;

    json_ok(
        post(
            &app,
            &admin,
            &format!("/admin/dead-letters/{retried}/retry"),
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await;
    json_ok(
        post(
            &app,
            &admin,
            &format!("/admin/dead-letters/{discarded}/discard"),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    assert_eq!(
        app.scalar("select count(*) from jobs").await,
        1,
        "the retried order's fresh job"
    );
    let report = run_once(&app.state, "w").await.unwrap();
    assert_eq!((report.claimed, report.confirmed), (1, 1), "{report:?}");
    assert_eq!(order(&app, &ann, &retried).await["status"], "CONFIRMED");
    assert_eq!(order(&app, &ann, &discarded).await["reason"], "DISCARDED");
    assert_eq!(app.stock(&mug).await, (8, 2, 10));
    assert_eq!(app.scalar("select count(*) from jobs").await, 0);
}
