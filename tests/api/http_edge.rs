//! Bad input at the HTTP edge: every rejection is the error envelope with a stable code,
//! never a bare framework body and never a 500.

use reqwest::{StatusCode, header};
use serde_json::json;

use crate::{
    backend_tests,
    helpers::{Backend, assert_error, spawn_app, spawn_app_with},
};

backend_tests!(bad_bodies_get_the_envelope, routing_errors_and_request_ids);

async fn bad_bodies_get_the_envelope(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.body_limit_bytes = 1024).await;
    let url = app.url("/auth/register");
    let post = |body: &'static str, content_type: &'static str| {
        app.client
            .post(&url)
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
    };
    let malformed = post("{\"email\": ", "application/json").await.unwrap();
    assert_error(malformed, StatusCode::BAD_REQUEST, "MALFORMED_JSON").await;
    let wrong_type = post("email=a", "application/x-www-form-urlencoded")
        .await
        .unwrap();
    assert_error(
        wrong_type,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
    let no_type = app.client.post(&url).body("{}").send().await.unwrap();
    assert_error(
        no_type,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
    let unknown = app
        .post(
            "/auth/register",
            &json!({ "email": "a@b.co", "password": "longenough", "admin": true }),
        )
        .await;
    let body = assert_error(unknown, StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY").await;
    assert!(
        body["error"]["details"]["problem"]
            .as_str()
            .unwrap()
            .contains("admin"),
        "{body}"
    );
    let missing = app
        .post("/auth/register", &json!({ "email": "a@b.co" }))
        .await;
    let body = assert_error(missing, StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY").await;
    assert!(
        body["error"]["details"]["problem"]
            .as_str()
            .unwrap()
            .contains("password"),
        "{body}"
    );
    let wrong_types = app
        .post("/auth/register", &json!({ "email": 7, "password": ["x"] }))
        .await;
    assert_error(
        wrong_types,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_BODY",
    )
    .await;
    let not_object = app.post("/auth/register", &json!([1, 2, 3])).await;
    assert_error(not_object, StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY").await;
    let huge = json!({ "email": "a@b.co", "password": "x".repeat(4096) });
    assert_error(
        app.post("/auth/register", &huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    )
    .await;
    // The service still answers normally afterwards.
    assert_eq!(
        app.register("ok@example.com", None).await.status(),
        StatusCode::CREATED
    );
}

async fn routing_errors_and_request_ids(backend: Backend) {
    let app = spawn_app(backend).await;
    let missing = app.get("/no/such/route").await;
    assert!(missing.headers().contains_key("x-request-id"));
    assert_error(missing, StatusCode::NOT_FOUND, "ROUTE_NOT_FOUND").await;
    let wrong_method = app
        .client
        .delete(app.url("/auth/login"))
        .send()
        .await
        .unwrap();
    assert_error(
        wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    )
    .await;
    // A client-supplied request id is echoed back; otherwise one is generated.
    let echoed = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-123");
    let generated = app.get("/health").await;
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    // A bad query parameter is an envelope too.
    let admin = app
        .user_with_role("root@example.com", orderhost::auth::Role::Admin, None)
        .await;
    let bad_query = app
        .client
        .get(app.url("/users?page=minus-one"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_error(bad_query, StatusCode::BAD_REQUEST, "INVALID_QUERY").await;
}
