//! The operator console: its pages and state endpoint over plain HTTP on both backends,
//! and the page itself in a real headless Chromium driven through ChromeDriver on the
//! production backend (PostgreSQL + Redis): sign in, see a dead letter, retry it and see
//! it leave, roll a binding back and see the revision change. Screenshots of each panel
//! go to `target/console-screenshots/`.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use orderhost::{auth::Role, orders::process::run_once};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::{
    backend_tests,
    dead_letters::{customer, fault, let_them_die, place},
    helpers::{Backend, PASSWORD, TestApp, assert_error, json_ok, new_client},
};

backend_tests!(the_console_is_for_admins_and_operators_and_its_state_is_scoped);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_an_admin_retries_a_dead_letter_and_rolls_a_binding_back() {
    browser_scenario(Backend::Postgres).await;
}

async fn get(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    new_client()
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn send(app: &TestApp, token: &str, method: reqwest::Method, path: &str, body: Value) {
    let response = new_client()
        .request(method, app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    json_ok(response, StatusCode::OK).await;
}

/// Revisions 1 and 2 of the default tenant's validation (the built-in standard rule, then
/// the flash sale), 3 and 4 its pricing, with a canary and a shadow beside it.
async fn seed_bindings(app: &TestApp, token: &str) {
    let put = reqwest::Method::PUT;
    send(
        app,
        token,
        put.clone(),
        "/admin/tenants/default/bindings/validation",
        json!({ "component": "validation-standard@1.0.0", "reason": "the standard rule" }),
    )
    .await;
    send(
        app,
        token,
        put.clone(),
        "/admin/tenants/default/bindings/validation",
        json!({ "component": "flash-sale@1.0.0", "config": { "skus": "CAP", "max-units": "5" },
                "reason": "flash sale on caps" }),
    )
    .await;
    send(
        app,
        token,
        put,
        "/admin/tenants/default/bindings/pricing",
        json!({ "component": "pricing-standard@1.0.0", "reason": "explicit pricing" }),
    )
    .await;
    send(
        app,
        token,
        reqwest::Method::PATCH,
        "/admin/tenants/default/bindings/pricing",
        json!({ "canary": { "component": "pricing-standard@1.0.0", "percent": 10 },
                "shadow": { "component": "pricing-standard@1.0.0", "percent": 50 },
                "reason": "A/A canary and shadow" }),
    )
    .await;
}

async fn the_console_is_for_admins_and_operators_and_its_state_is_scoped(backend: Backend) {
    // Arrange
    let app = crate::dead_letters::app(backend).await;
    app.tenant("acme").await;
    let (_, mug) = app.seed_product(None, "MUG", 1200, 10).await;
    let ann = customer(&app, "ann@example.com", None).await;
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
    let dead = place(&app, &ann, &mug, 1).await;
    app.advance(1_500);
    let_them_die(&app, 1).await;
    seed_bindings(&app, &admin).await;

    // No session: the page sends the browser to the login page, the state is 401.
    let response = new_client()
        .get(app.url("/admin/console"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/admin/console/login");
    assert_error(
        new_client()
            .get(app.url("/admin/console/state"))
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;
    // The login page, the console and their files carry the policy; no inline script.
    for (path, token, kind) in [
        ("/admin/console/login", None, "text/html"),
        ("/admin/console", Some(&admin), "text/html"),
        ("/admin/console/assets/console.js", None, "text/javascript"),
        ("/admin/console/assets/login.js", None, "text/javascript"),
        ("/admin/console/assets/console.css", None, "text/css"),
    ] {
        let mut request = new_client().get(app.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(
            response.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
        let body = response.text().await.unwrap();
        if kind == "text/html" {
            assert!(!body.contains("<script>"), "{path}: inline script");
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{path}"
            );
        }
    }

    // The state endpoint is documented; the page and its files are not API.
    let doc = json_ok(app.get("/api/openapi.json").await, StatusCode::OK).await;
    let state_op = &doc["paths"]["/admin/console/state"]["get"];
    assert_eq!(state_op["tags"], json!(["console"]), "{state_op}");
    assert!(doc["paths"].get("/admin/console").is_none());

    // Customers: 403 for the page and the state.
    assert_error(
        get(&app, &ann, "/admin/console").await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    assert_error(
        get(&app, &ann, "/admin/console/state").await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;

    // An admin: its own tenant, everything the page shows.
    let state = json_ok(
        get(&app, &admin, "/admin/console/state").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(state["viewer"]["role"], "admin");
    assert_eq!(state["viewer"]["email"], "admin@example.com");
    assert_eq!(state["tenant"], "default");
    assert_eq!(state["tenants"], json!(["default"]));
    let queue = &state["queue"];
    assert_eq!(queue["deadLetters"], 1, "{queue}");
    assert_eq!(queue["inFlight"], 0, "{queue}");
    assert_eq!(queue["failed"], 1, "{queue}");
    assert_eq!(queue["confirmed"], 0, "{queue}");
    assert_eq!(queue["timeToFinalMs"]["max"], 1_500, "{queue}");
    assert_eq!(queue["sampled"], false);
    assert_eq!(queue["recentFailures"][0]["orderId"], dead.as_str());
    assert_eq!(queue["recentFailures"][0]["reason"], "RETRIES_EXHAUSTED");
    assert_eq!(state["deadLetters"]["total"], 1);
    assert_eq!(state["deadLetters"]["items"][0]["orderId"], dead.as_str());
    let tenants = state["bindings"].as_array().unwrap();
    assert_eq!(tenants.len(), 1);
    assert_eq!(tenants[0]["tenant"], "default");
    assert_eq!(tenants[0]["revision"], 4);
    let pricing = &tenants[0]["bindings"][1];
    assert_eq!(pricing["hook"], "pricing");
    assert_eq!(pricing["canary"]["percent"], 10.0, "{pricing}");
    assert_eq!(pricing["shadow"]["percent"], 50.0, "{pricing}");
    assert_eq!(tenants[0]["breakers"][0]["state"], "closed");
    assert_eq!(tenants[0]["history"].as_array().unwrap().len(), 4);
    assert_eq!(state["replica"], state["replicas"]["this"]);
    for replica in state["replicas"]["replicas"].as_array().unwrap() {
        let slugs: Vec<&String> = replica["tenants"].as_object().unwrap().keys().collect();
        assert!(slugs.iter().all(|s| *s == "default"), "{replica}");
    }
    // Another tenant's admin sees none of it, and may not name the default tenant.
    let theirs = json_ok(
        get(&app, &acme_admin, "/admin/console/state").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(theirs["deadLetters"]["total"], 0);
    assert_eq!(theirs["queue"]["recentFailures"], json!([]));
    assert_eq!(theirs["bindings"][0]["tenant"], "acme");
    assert_error(
        get(&app, &acme_admin, "/admin/console/state?tenant=default").await,
        StatusCode::NOT_FOUND,
        "TENANT_NOT_FOUND",
    )
    .await;

    // An operator: every tenant, or one.
    let all = json_ok(
        get(&app, &operator, "/admin/console/state").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(all["viewer"]["role"], "operator");
    assert!(all["tenant"].is_null());
    assert_eq!(all["bindings"].as_array().unwrap().len(), 2);
    assert_eq!(all["tenantsNotShown"], 0);
    assert_eq!(all["deadLetters"]["total"], 1);
    let acme = json_ok(
        get(&app, &operator, "/admin/console/state?tenant=acme").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(acme["tenant"], "acme");
    assert_eq!(acme["deadLetters"]["total"], 0);
    let mut pickable: Vec<&str> = acme["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    pickable.sort_unstable();
    assert_eq!(pickable, ["acme", "default"]);
    assert_error(
        get(&app, &operator, "/admin/console/state?tenant=nowhere").await,
        StatusCode::NOT_FOUND,
        "TENANT_NOT_FOUND",
    )
    .await;
}

/// A ChromeDriver started for one test on a free loopback port; dropping it asks it to
/// shut down (which ends the browsers it started) and ends it by its own id if it has not
/// exited within 5 s.
struct ChromeDriver {
    child: Child,
    port: u16,
    url: String,
    profile: tempfile::TempDir,
}

impl ChromeDriver {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts (Debian's `chromedriver`; `.ci/run` installs it)");
        let driver = Self {
            child,
            port,
            url: format!("http://127.0.0.1:{port}"),
            profile: tempfile::tempdir().expect("temp dir"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = new_client()
                .get(format!("{}/status", driver.url))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success());
            if ready.is_some() {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new headless Chromium session.
    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new",
                    // CI runs as root, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    // Nothing but the app on loopback: no name lookups, every other
                    // address through a proxy that is not there, and none of Chromium's
                    // own background traffic (updates, sync, metrics, first-run pages).
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                    "--proxy-server=http://127.0.0.1:9",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-domain-reliability",
                    "--disable-client-side-phishing-detection",
                    "--disable-sync",
                    "--disable-default-apps",
                    "--disable-breakpad",
                    "--no-pings",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--metrics-recording-only",
                    "--window-size=1400,1800",
                    format!("--user-data-dir={}", self.profile.path().display()),
                ],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        use std::io::{Read as _, Write as _};
        // ChromeDriver's own shutdown command: it quits the browsers it started, then
        // itself. A blocking request: this runs in `drop`.
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.write_all(
                b"GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            );
            let _ = stream.read(&mut [0; 512]);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where screenshots go: `target/console-screenshots/` of the workspace.
fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// Saves a screenshot of the element `css`, scrolled to the top of the viewport first
/// (an element screenshot shows only what is in view).
async fn save_screenshot(browser: &Client, css: &str, name: &str) {
    let element = browser.find(Locator::Css(css)).await.expect(css);
    let arg = serde_json::to_value(&element).expect("element reference");
    browser
        .execute("arguments[0].scrollIntoView(true)", vec![arg])
        .await
        .expect("scroll");
    let png = element.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).expect("write png");
}

/// Runs `script` (which returns a value) until it returns `want`, for at most 30 s (the
/// page polls every 2 s; the margin is for a loaded CI machine).
async fn wait_until(browser: &Client, what: &str, script: &str, want: Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = browser.execute(script, vec![]).await.expect(script);
        if got == want {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {got} after 30 s (wanted {want})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn browser_scenario(backend: Backend) {
    // Arrange: a dead letter whose cause is then healed, a binding with two revisions.
    let app = crate::dead_letters::app(backend).await;
    let (_, mug) = app.seed_product(None, "MUG", 1200, 10).await;
    let ann = customer(&app, "ann@example.com", None).await;
    let admin = app
        .user_with_role("admin@example.com", Role::Admin, None)
        .await;
    let (install, heal) = fault(backend);
    app.exec(install).await;
    let dead = place(&app, &ann, &mug, 2).await;
    app.advance(1_500);
    let_them_die(&app, 1).await;
    app.exec(heal).await;
    seed_bindings(&app, &admin).await;
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;

    // Act 1: the console sends an unauthenticated browser to the login page.
    browser.goto(&app.url("/admin/console")).await.unwrap();
    let url = browser.current_url().await.unwrap();
    assert_eq!(url.path(), "/admin/console/login");
    browser
        .find(Locator::Id("email"))
        .await
        .unwrap()
        .send_keys("admin@example.com")
        .await
        .unwrap();
    // A wrong password: the form shows the API's code and message.
    let password = browser.find(Locator::Id("password")).await.unwrap();
    password.send_keys("not the password").await.unwrap();
    browser
        .find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until(
        &browser,
        "the login error",
        "const e = document.getElementById('login-error'); \
         return e.hidden ? '' : e.textContent.split(':')[0]",
        json!("INVALID_CREDENTIALS"),
    )
    .await;
    password.clear().await.unwrap();
    password.send_keys(PASSWORD).await.unwrap();
    save_screenshot(&browser, "main.login-box", "login").await;
    browser
        .find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Assert 1: signed in, the dead letter is listed (the page polls the state).
    let row = format!("#dead-body tr[data-order='{dead}']");
    wait_until(
        &browser,
        "the dead letter in the page",
        &format!("return document.querySelectorAll(\"{row}\").length"),
        json!(1),
    )
    .await;
    assert_eq!(
        browser.current_url().await.unwrap().path(),
        "/admin/console"
    );
    let viewer = browser.find(Locator::Id("viewer")).await.unwrap();
    assert!(
        viewer.text().await.unwrap().contains("admin@example.com"),
        "the viewer is named"
    );
    let stamp = browser.find(Locator::Id("updated")).await.unwrap();
    assert!(stamp.text().await.unwrap().starts_with("updated at"));
    let validation = "#bindings-body tr[data-tenant='default'][data-hook='validation']";
    let revision = format!("return document.querySelector(\"{validation} .revision\").textContent");
    wait_until(&browser, "validation at revision 2", &revision, json!("2")).await;
    let component =
        format!("return document.querySelector(\"{validation} .component\").textContent");
    wait_until(
        &browser,
        "flash-sale bound",
        &component,
        json!("flash-sale@1.0.0"),
    )
    .await;
    for (css, name) in [
        ("#queues", "queues"),
        ("#dead-letters", "dead-letters"),
        ("#bindings", "bindings"),
        ("#replicas", "replicas"),
    ] {
        save_screenshot(&browser, css, name).await;
    }

    // Act 2: retry the dead letter from the page.
    browser
        .find(Locator::Css(&format!("{row} button.retry")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Assert 2: the row leaves, the notice says so, and the order is confirmed by the
    // next worker pass.
    wait_until(
        &browser,
        "the retried dead letter gone",
        &format!("return document.querySelectorAll(\"{row}\").length"),
        json!(0),
    )
    .await;
    let notice = browser.find(Locator::Id("notice")).await.unwrap();
    let text = notice.text().await.unwrap();
    assert!(text.contains(&dead) && text.contains("PENDING"), "{text}");
    app.outbox_drained().await;
    let report = run_once(&app.state, "w").await.unwrap();
    assert_eq!((report.claimed, report.confirmed), (1, 1), "{report:?}");
    let order = json_ok(
        get(&app, &ann, &format!("/order/{dead}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(order["status"], "CONFIRMED");
    save_screenshot(&browser, "#dead-letters", "dead-letters-after-retry").await;

    // Act 3: roll the validation binding back from the page.
    browser
        .find(Locator::Css(&format!("{validation} button.rollback")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Assert 3: the page shows revision 5 (restoring 1) serving the standard rule again;
    // the API agrees.
    wait_until(&browser, "validation at revision 5", &revision, json!("5")).await;
    wait_until(
        &browser,
        "the standard rule back",
        &component,
        json!("validation-standard@1.0.0"),
    )
    .await;
    let bindings = json_ok(
        get(&app, &admin, "/admin/tenants/default/bindings").await,
        StatusCode::OK,
    )
    .await;
    let served = &bindings["bindings"][0];
    assert_eq!(served["hook"], "validation");
    assert_eq!(served["revision"], 5, "{served}");
    assert_eq!(served["component"], "validation-standard@1.0.0");
    let history = json_ok(
        get(&app, &admin, "/admin/tenants/default/bindings/history").await,
        StatusCode::OK,
    )
    .await;
    let latest = &history["items"][0];
    assert_eq!(
        (
            latest["action"].as_str(),
            latest["restoresRevision"].as_i64()
        ),
        (Some("rollback"), Some(1)),
        "{latest}"
    );
    assert_eq!(latest["byEmail"], "admin@example.com");
    save_screenshot(&browser, "#bindings", "bindings-after-rollback").await;
    // A refusal is shown with its code and message, and the stamp turns stale: an admin
    // naming another tenant gets 404.
    browser
        .goto(&app.url("/admin/console?tenant=nowhere"))
        .await
        .unwrap();
    wait_until(
        &browser,
        "the refusal shown",
        "const n = document.getElementById('notice'); \
         return n.hidden ? '' : n.className + ' ' + n.textContent.split(':')[0]",
        json!("notice error TENANT_NOT_FOUND"),
    )
    .await;
    wait_until(
        &browser,
        "the stale stamp",
        "return document.getElementById('updated').className",
        json!("stamp stale"),
    )
    .await;
    browser.goto(&app.url("/admin/console")).await.unwrap();
    wait_until(
        &browser,
        "the console back",
        &format!("return document.querySelectorAll(\"{validation}\").length"),
        json!(1),
    )
    .await;

    // The whole page as a browser window shows it.
    browser
        .execute("window.scrollTo(0, 0)", vec![])
        .await
        .unwrap();
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join("console.png"), png).expect("write png");

    browser.close().await.unwrap();
    drop(driver);
}
