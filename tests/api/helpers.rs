//! `spawn_app()`: a real orderhost on a loopback port 0, with a fresh database per test —
//! a new SQLite file, or a new PostgreSQL database created on the server `DATABASE_URL`
//! points at and dropped afterwards — and typed helpers to drive it.

use std::{sync::Arc, time::Duration};

use orderhost::{
    App, AppState, Config,
    auth::Role,
    clock::ManualClock,
    config::{Environment, StoreConfig},
    store::Store,
    users::Email,
};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

/// The backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file, no Redis.
    Sqlite,
    /// A fresh database on the PostgreSQL server of `DATABASE_URL`, plus the Redis server
    /// of `REDIS_URL`.
    Postgres,
}

/// Generates one `#[tokio::test]` per backend for each listed `async fn name(Backend)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )*
        }
    };
}

/// The PostgreSQL server URL the tests create their databases on.
pub fn postgres_server_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => url,
        _ => panic!(
            "DATABASE_URL must point at a PostgreSQL server for the postgres tests \
             (e.g. postgres://orderhost:orderhost@127.0.0.1:5432/orderhost); `bash .ci/run` \
             starts one and sets it"
        ),
    }
}

/// The Redis URL for the postgres/redis variant.
pub fn redis_url() -> String {
    match std::env::var("REDIS_URL") {
        Ok(url) if url.starts_with("redis") => url,
        _ => panic!(
            "REDIS_URL must point at a Redis server (e.g. redis://127.0.0.1:6379); \
             `bash .ci/run` starts one and sets it"
        ),
    }
}

/// A PostgreSQL database created for one test and dropped when it ends (even on panic).
pub struct PgDatabase {
    server: String,
    name: String,
}

impl PgDatabase {
    /// Creates a fresh database on the server of `DATABASE_URL`; returns it with its URL.
    pub async fn create() -> (Self, String) {
        let server = postgres_server_url();
        let name = format!("orderhost_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::postgres::PgConnection::connect_with(
            &server
                .parse::<sqlx::postgres::PgConnectOptions>()
                .expect("DATABASE_URL parses"),
        )
        .await
        .expect("PostgreSQL at DATABASE_URL answers");
        sqlx::Executor::execute(&mut conn, format!("create database {name}").as_str())
            .await
            .expect("the test role may create databases");
        let mut url = url::Url::parse(&server).expect("DATABASE_URL is a URL");
        url.set_path(&name);
        (Self { server, name }, url.to_string())
    }
}

use sqlx::Connection as _;

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime: do the async clean-up on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&server).await {
                    let _ = sqlx::Executor::execute(
                        &mut conn,
                        format!("drop database if exists {name} with (force)").as_str(),
                    )
                    .await;
                }
            });
        })
        .join();
    }
}

/// A running orderhost and a cookie-keeping client pointed at it.
pub struct TestApp {
    /// `http://127.0.0.1:port`.
    pub address: String,
    /// A client with a cookie jar, that does not follow redirects.
    pub client: reqwest::Client,
    /// The application state (store, config).
    pub state: AppState,
    /// The clock the application reads; advance it to expire tokens.
    pub clock: ManualClock,
    _pg: Option<PgDatabase>,
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Starts an app on `backend` with the default test configuration.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts an app on `backend` after letting `customize` change the configuration.
pub async fn spawn_app_with(backend: Backend, customize: impl FnOnce(&mut Config)) -> TestApp {
    init_test_log();
    let dir = tempfile::tempdir().expect("temp dir");
    let (pg, database_url) = match backend {
        Backend::Sqlite => (
            None,
            format!("sqlite://{}", dir.path().join("orderhost.db").display()),
        ),
        Backend::Postgres => {
            let (db, url) = PgDatabase::create().await;
            (Some(db), url)
        }
    };
    let mut config = Config {
        store: StoreConfig {
            database_url,
            db_max_connections: 8,
            ..StoreConfig::default()
        },
        environment: Environment::Development,
        bind: "127.0.0.1:0".parse().expect("address"),
        redis_url: match backend {
            Backend::Sqlite => String::new(),
            Backend::Postgres => redis_url(),
        },
        // Keys and channels of their own: concurrent tests never hear each other.
        redis_prefix: format!("orderhost-test-{}", uuid::Uuid::new_v4().simple()),
        // An empty policies folder: the built-ins, whatever the working directory holds.
        policies_dir: dir.path().join("policies"),
        ..Config::default()
    };
    customize(&mut config);
    start(config, pg, dir).await
}

/// Starts another replica of `first`: same database, same Redis and key prefix (after
/// `customize`), its own process state, port and policies folder.
pub async fn spawn_second_app(first: &TestApp, customize: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config::clone(&first.state.config);
    let dir = tempfile::tempdir().expect("temp dir");
    config.policies_dir = dir.path().join("policies");
    customize(&mut config);
    start(config, None, dir).await
}

async fn start(config: Config, pg: Option<PgDatabase>, dir: tempfile::TempDir) -> TestApp {
    let clock = ManualClock::new();
    let app = App::build_with_clock(config, Arc::new(clock.clone()))
        .await
        .expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let server = tokio::spawn(async move {
        let _ = app.run_until_stopped(std::future::pending()).await;
    });
    TestApp {
        address,
        client: new_client(),
        state,
        clock,
        _pg: pg,
        _dir: dir,
        server,
    }
}

/// A fresh client with its own cookie jar.
pub fn new_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

fn init_test_log() {
    // Logs only when asked: TEST_LOG=1 cargo test …
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = orderhost::observability::init(&orderhost::config::LogConfig {
            log_dir: String::new(),
            log_level: "debug".into(),
            ..Default::default()
        });
    }
}

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery";

impl TestApp {
    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// The app's own origin, as a browser on it would send.
    pub fn origin(&self) -> String {
        self.address.clone()
    }

    /// `POST path` with a JSON body using the app's client.
    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// `GET path` using the app's client.
    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// Registers `email` in the default tenant (or `tenant`).
    pub async fn register(&self, email: &str, tenant: Option<&str>) -> Response {
        let mut body = json!({ "email": email, "password": PASSWORD });
        if let Some(t) = tenant {
            body["tenant"] = json!(t);
        }
        self.post("/auth/register", &body).await
    }

    /// Logs in with a fresh client; returns that client (holding the cookies) and the
    /// access token.
    pub async fn login_as(&self, email: &str, tenant: Option<&str>) -> (reqwest::Client, String) {
        let client = new_client();
        let mut body = json!({ "email": email, "password": PASSWORD });
        if let Some(t) = tenant {
            body["tenant"] = json!(t);
        }
        let response = client
            .post(self.url("/auth/login"))
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK, "login of {email}");
        let body: Value = response.json().await.expect("json");
        let token = body["accessToken"]
            .as_str()
            .expect("access token")
            .to_owned();
        (client, token)
    }

    /// Creates a user with `role` directly in the store (like `orderhost user create`)
    /// and returns its access token.
    pub async fn user_with_role(&self, email: &str, role: Role, tenant: Option<&str>) -> String {
        let store: &Store = &self.state.store;
        let tenant_id = orderhost::tenants::resolve(store, tenant)
            .await
            .expect("tenant");
        let hash = orderhost::auth::password::hash(PASSWORD.to_owned())
            .await
            .expect("hash");
        orderhost::users::create(
            store,
            &tenant_id,
            &Email::parse(email).expect("email"),
            None,
            &hash,
            role,
            self.clock_now(),
        )
        .await
        .expect("user created");
        self.login_as(email, tenant).await.1
    }

    /// Creates a tenant directly in the store.
    pub async fn tenant(&self, slug: &str) {
        orderhost::tenants::create(&self.state.store, slug, slug, self.clock_now())
            .await
            .expect("db")
            .expect("new tenant");
    }

    /// Puts a product with `stock` units in the catalog of `tenant` (default tenant when
    /// `None`) straight through the store; returns (product id, stock id).
    pub async fn seed_product(
        &self,
        tenant: Option<&str>,
        sku: &str,
        unit_price: i64,
        stock: i64,
    ) -> (String, String) {
        let tenant_id = orderhost::tenants::resolve(&self.state.store, tenant)
            .await
            .expect("tenant");
        let (product_id, stock_id) = (
            uuid::Uuid::now_v7().to_string(),
            uuid::Uuid::now_v7().to_string(),
        );
        let now = self.clock_now();
        orderhost::with_pool!(&self.state.store, pool => {
            sqlx::query(
                "insert into products (id, tenant_id, sku, name, unit_price, currency, created_at, updated_at) \
                 values ($1, $2, $3, $4, $5, 'EUR', $6, $6)",
            )
            .bind(&product_id)
            .bind(&tenant_id)
            .bind(sku)
            .bind(format!("Product {sku}"))
            .bind(unit_price)
            .bind(now)
            .execute(pool)
            .await
            .expect("product");
            sqlx::query(
                "insert into stock_items (id, tenant_id, product_id, available, received, created_at, updated_at) \
                 values ($1, $2, $3, $4, $4, $5, $5)",
            )
            .bind(&stock_id)
            .bind(&tenant_id)
            .bind(&product_id)
            .bind(stock)
            .bind(now)
            .execute(pool)
            .await
            .expect("stock");
        });
        (product_id, stock_id)
    }

    /// (available, reserved, received) of a stock item.
    pub async fn stock(&self, stock_id: &str) -> (i64, i64, i64) {
        orderhost::with_pool!(&self.state.store, pool => sqlx::query_as::<_, (i64, i64, i64)>(
            "select available, reserved, received from stock_items where id = $1",
        )
        .bind(stock_id)
        .fetch_one(pool)
        .await
        .expect("stock row"))
    }

    /// Runs SQL on the app's database (fault injection, checks).
    pub async fn exec(&self, sql: &str) {
        orderhost::with_pool!(&self.state.store, pool => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Waits until the outbox is empty (Redis mode: the relay pushed every accepted
    /// order's job; always at once on the database queue). Panics after 15 s.
    pub async fn outbox_drained(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while self.scalar("select count(*) from outbox").await > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the outbox relay did not push within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A scalar query on the app's database.
    pub async fn scalar(&self, sql: &str) -> i64 {
        orderhost::with_pool!(&self.state.store, pool => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Moves the app's clock.
    pub fn advance(&self, ms: i64) {
        self.clock.advance_ms(ms);
    }

    fn clock_now(&self) -> i64 {
        orderhost::clock::Clock::now_ms(&self.clock)
    }
}

/// Asserts the error envelope with `status` and `code`; returns the body.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> Value {
    let actual = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "status for {code}; body: {text}");
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("error body is not JSON: {text}"));
    assert_eq!(body["error"]["code"], code, "body: {text}");
    assert!(body["error"]["message"].is_string(), "message in {text}");
    body
}

/// Reads a JSON body after asserting the status.
pub async fn json_ok(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}
