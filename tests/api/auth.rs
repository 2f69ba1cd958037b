//! Registration, login, cookies, refresh rotation and reuse detection, logout, expiry,
//! CSRF origin checks and throttling.

use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::{
    backend_tests,
    helpers::{
        Backend, PASSWORD, TestApp, assert_error, json_ok, new_client, spawn_app, spawn_app_with,
    },
};

backend_tests!(
    register_login_profile_with_cookies_and_bearer,
    register_rejects_bad_input,
    refresh_rotates_and_reuse_revokes_the_family,
    logout_revokes_the_refresh_family,
    access_token_expires_on_the_clock,
    cookie_writes_need_an_allowed_origin,
    login_is_throttled_per_account_and_recovers,
    register_into_a_tenant_and_login_is_tenant_scoped,
);

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect()
}

async fn refresh(app: &TestApp, client: &reqwest::Client) -> reqwest::Response {
    client
        .post(app.url("/auth/refresh"))
        .header(header::ORIGIN, app.origin())
        .send()
        .await
        .expect("request")
}

async fn register_login_profile_with_cookies_and_bearer(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = json_ok(
        app.register("Ann@Example.com", None).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(user["email"], "ann@example.com");
    assert_eq!(user["role"], "customer");
    assert_eq!(user["tenant"], "default");
    assert_eq!(user["vip"], false);
    assert!(user.get("passwordHash").is_none() && user.get("password").is_none());

    let client = new_client();
    let response = client
        .post(app.url("/auth/login"))
        .json(&json!({ "email": "ann@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookies = set_cookies(&response);
    let text = response.text().await.unwrap();
    assert!(
        !text.contains(PASSWORD) && !text.contains("$argon2"),
        "no secret in {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    let token = body["accessToken"].as_str().unwrap();
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["expiresIn"], 900);

    // Cookie attributes: HttpOnly, SameSite=Lax, no Secure in development.
    let access = cookies
        .iter()
        .find(|c| c.starts_with("access_token="))
        .expect("access cookie");
    let refresh = cookies
        .iter()
        .find(|c| c.starts_with("refresh_token="))
        .expect("refresh cookie");
    for c in [access, refresh] {
        assert!(c.contains("HttpOnly"), "{c}");
        assert!(c.contains("SameSite=Lax"), "{c}");
        assert!(
            !c.contains("Secure"),
            "development cookies are not Secure: {c}"
        );
    }
    assert!(
        access.contains("Path=/;") || access.ends_with("Path=/"),
        "{access}"
    );
    assert!(refresh.contains("Path=/auth"), "{refresh}");
    assert!(access.contains("Max-Age=900"), "{access}");
    assert!(
        !refresh.contains(token),
        "refresh cookie is not the access token"
    );

    // Profile with the cookie...
    let profile = json_ok(
        client.get(app.url("/auth/profile")).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(profile["email"], "ann@example.com");
    // ...and with the Bearer header from a client that has no cookies.
    let bearer = new_client()
        .get(app.url("/auth/profile"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(json_ok(bearer, StatusCode::OK).await["id"], user["id"]);
    // No credentials, and garbage credentials.
    assert_error(
        new_client()
            .get(app.url("/auth/profile"))
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;
    let forged = new_client()
        .get(app.url("/auth/profile"))
        .bearer_auth("a.b.c")
        .send()
        .await
        .unwrap();
    assert_error(forged, StatusCode::UNAUTHORIZED, "INVALID_TOKEN").await;
    // Wrong password and unknown account answer alike.
    let wrong = app
        .post(
            "/auth/login",
            &json!({ "email": "ann@example.com", "password": "nope-nope-nope" }),
        )
        .await;
    assert_error(wrong, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
    let unknown = app
        .post(
            "/auth/login",
            &json!({ "email": "who@example.com", "password": PASSWORD }),
        )
        .await;
    assert_error(unknown, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
}

async fn register_rejects_bad_input(backend: Backend) {
    let app = spawn_app(backend).await;
    let bad_email = app
        .post(
            "/auth/register",
            &json!({ "email": "not-an-email", "password": PASSWORD }),
        )
        .await;
    let body = assert_error(
        bad_email,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "email");
    let short = app
        .post(
            "/auth/register",
            &json!({ "email": "a@example.com", "password": "short" }),
        )
        .await;
    let body = assert_error(short, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(body["error"]["details"]["field"], "password");
    let long = app
        .post(
            "/auth/register",
            &json!({ "email": "a@example.com", "password": "x".repeat(129) }),
        )
        .await;
    assert_error(long, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    json_ok(
        app.register("a@example.com", None).await,
        StatusCode::CREATED,
    )
    .await;
    assert_error(
        app.register("A@example.com", None).await,
        StatusCode::CONFLICT,
        "EMAIL_TAKEN",
    )
    .await;
    let unknown = app.register("b@example.com", Some("no-such-shop")).await;
    assert_error(unknown, StatusCode::NOT_FOUND, "TENANT_NOT_FOUND").await;
}

async fn refresh_rotates_and_reuse_revokes_the_family(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("bob@example.com", None).await;
    let (client, first_access) = app.login_as("bob@example.com", None).await;
    // Keep a copy of the first refresh token, as a thief would.
    let stolen = new_client();
    let login = stolen
        .post(app.url("/auth/login"))
        .json(&json!({ "email": "bob@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let stolen_cookie = set_cookies(&login)
        .into_iter()
        .find(|c| c.starts_with("refresh_token="))
        .unwrap();
    let stolen_value = stolen_cookie.split(';').next().unwrap().to_owned();

    // The second session rotates: a new refresh token and a new access token.
    let rotated = stolen
        .post(app.url("/auth/refresh"))
        .header(header::ORIGIN, app.origin())
        .send()
        .await
        .unwrap();
    let new_refresh = set_cookies(&rotated)
        .into_iter()
        .find(|c| c.starts_with("refresh_token="))
        .unwrap();
    assert_ne!(new_refresh.split(';').next().unwrap(), stolen_value);
    let body = json_ok(rotated, StatusCode::OK).await;
    let rotated_access = body["accessToken"].as_str().unwrap().to_owned();

    // Replaying the rotated token (from a cookie-less client) after the grace window
    // for concurrent refreshes: reuse → family revoked.
    app.advance(orderhost::auth::ROTATION_GRACE_MS + 1_000);
    let replay = new_client()
        .post(app.url("/auth/refresh"))
        .header(header::COOKIE, &stolen_value)
        .header(header::ORIGIN, app.origin())
        .send()
        .await
        .unwrap();
    assert_error(replay, StatusCode::UNAUTHORIZED, "REFRESH_TOKEN_REUSED").await;
    // The legitimate holder of the newest token of that family is out too.
    let after = stolen
        .post(app.url("/auth/refresh"))
        .header(header::ORIGIN, app.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    // Another family (the first login) is untouched.
    json_ok(refresh(&app, &client).await, StatusCode::OK).await;
    // Access tokens already issued stay valid until they expire (stateless JWT).
    let profile = new_client()
        .get(app.url("/auth/profile"))
        .bearer_auth(&rotated_access)
        .send()
        .await
        .unwrap();
    assert_eq!(profile.status(), StatusCode::OK);
    let _ = first_access;
}

async fn logout_revokes_the_refresh_family(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("cat@example.com", None).await;
    let (client, _) = app.login_as("cat@example.com", None).await;
    json_ok(refresh(&app, &client).await, StatusCode::OK).await;
    // Capture the current refresh cookie, then log out.
    let response = refresh(&app, &client).await;
    let current = set_cookies(&response)
        .into_iter()
        .find(|c| c.starts_with("refresh_token="))
        .unwrap();
    let current = current.split(';').next().unwrap().to_owned();
    let logout = client
        .post(app.url("/auth/logout"))
        .header(header::ORIGIN, app.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let cleared = set_cookies(&logout);
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("access_token=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("refresh_token=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    // The revoked token no longer refreshes, even when replayed.
    let replay = new_client()
        .post(app.url("/auth/refresh"))
        .header(header::COOKIE, &current)
        .header(header::ORIGIN, app.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    // The cleared jar has no session left.
    assert_eq!(
        client
            .get(app.url("/auth/profile"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn access_token_expires_on_the_clock(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.access_token_ttl_secs = 60).await;
    app.register("dan@example.com", None).await;
    let (_, token) = app.login_as("dan@example.com", None).await;
    let ok = new_client()
        .get(app.url("/auth/profile"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    app.clock.advance_ms(61_000);
    let expired = new_client()
        .get(app.url("/auth/profile"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_error(expired, StatusCode::UNAUTHORIZED, "TOKEN_EXPIRED").await;
}

async fn cookie_writes_need_an_allowed_origin(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.cors_origins = vec!["https://shop.example.com".into()]
    })
    .await;
    app.register("eve@example.com", None).await;
    let (client, token) = app.login_as("eve@example.com", None).await;
    // No Origin at all: refused.
    let none = client.post(app.url("/auth/refresh")).send().await.unwrap();
    assert_error(none, StatusCode::FORBIDDEN, "CSRF_ORIGIN_MISMATCH").await;
    // A foreign origin: refused.
    let evil = client
        .post(app.url("/auth/refresh"))
        .header(header::ORIGIN, "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_error(evil, StatusCode::FORBIDDEN, "CSRF_ORIGIN_MISMATCH").await;
    // The allowlisted origin and our own origin: accepted.
    let listed = client
        .post(app.url("/auth/refresh"))
        .header(header::ORIGIN, "https://shop.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    assert_eq!(refresh(&app, &client).await.status(), StatusCode::OK);
    // Bearer-authenticated writes carry no ambient credential: no origin needed.
    let bearer = new_client()
        .post(app.url("/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::NO_CONTENT);
    // Safe methods pass with cookies from anywhere.
    let get = client
        .get(app.url("/auth/profile"))
        .header(header::ORIGIN, "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::OK);
    // CORS: the allowlisted origin gets credentials, a foreign one gets no grant.
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, app.url("/auth/login"))
        .header(header::ORIGIN, "https://shop.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    assert_eq!(
        preflight.headers()["access-control-allow-credentials"],
        "true"
    );
    let foreign = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, app.url("/auth/login"))
        .header(header::ORIGIN, "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

async fn login_is_throttled_per_account_and_recovers(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.login_max_failures = 3;
        c.login_window_secs = 600;
    })
    .await;
    app.register("fay@example.com", None).await;
    let wrong = json!({ "email": "fay@example.com", "password": "wrong-password" });
    for _ in 0..3 {
        assert_error(
            app.post("/auth/login", &wrong).await,
            StatusCode::UNAUTHORIZED,
            "INVALID_CREDENTIALS",
        )
        .await;
    }
    // Even the right password is refused while throttled, with a Retry-After.
    let right = json!({ "email": "fay@example.com", "password": PASSWORD });
    let throttled = app.post("/auth/login", &right).await;
    let retry: u64 = throttled.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry), "retry-after {retry}");
    assert_error(
        throttled,
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_ATTEMPTS",
    )
    .await;
    // Another account from the same IP is not throttled (IP limit is higher).
    app.register("gus@example.com", None).await;
    app.login_as("gus@example.com", None).await;
    // After the window the account signs in again.
    app.clock.advance_ms(601_000);
    assert_eq!(
        app.post("/auth/login", &right).await.status(),
        StatusCode::OK
    );
}

async fn register_into_a_tenant_and_login_is_tenant_scoped(backend: Backend) {
    let app = spawn_app(backend).await;
    app.tenant("acme").await;
    let user = json_ok(
        app.register("hal@example.com", Some("acme")).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(user["tenant"], "acme");
    // The same email may exist in another tenant: they are separate accounts.
    json_ok(
        app.register("hal@example.com", None).await,
        StatusCode::CREATED,
    )
    .await;
    let (acme_client, _) = app.login_as("hal@example.com", Some("acme")).await;
    let profile = json_ok(
        acme_client
            .get(app.url("/auth/profile"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(profile["tenant"], "acme");
    assert_eq!(profile["id"], user["id"]);
    let (default_client, _) = app.login_as("hal@example.com", None).await;
    let profile = json_ok(
        default_client
            .get(app.url("/auth/profile"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(profile["tenant"], "default");
    assert_ne!(profile["id"], user["id"]);
}

#[tokio::test]
async fn production_cookies_are_secure() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.environment = orderhost::config::Environment::Production;
        c.jwt_secret = "0123456789abcdef0123456789abcdef-long-enough".into();
    })
    .await;
    app.register("ivy@example.com", None).await;
    let response = app
        .post(
            "/auth/login",
            &json!({ "email": "ivy@example.com", "password": PASSWORD }),
        )
        .await;
    let cookies = set_cookies(&response);
    assert_eq!(cookies.len(), 2);
    assert!(
        cookies
            .iter()
            .all(|c| c.contains("Secure") && c.contains("HttpOnly")),
        "{cookies:?}"
    );
}
