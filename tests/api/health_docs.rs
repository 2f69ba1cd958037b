//! `/health`, `/health/ready`, the OpenAPI document and the self-contained docs page.

use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    backend_tests,
    helpers::{Backend, json_ok, spawn_app, spawn_app_with},
};

backend_tests!(
    health_reports_every_dependency,
    openapi_document_describes_the_api
);

async fn health_reports_every_dependency(backend: Backend) {
    let app = spawn_app(backend).await;
    let health = json_ok(app.get("/health").await, StatusCode::OK).await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["checks"]["database"]["status"], "up");
    let expected_backend = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(health["databaseBackend"], expected_backend);
    match backend {
        Backend::Postgres => assert_eq!(health["checks"]["redis"]["status"], "up", "{health}"),
        Backend::Sqlite => assert!(health["checks"].get("redis").is_none()),
    }
    assert_eq!(health["policy"]["generation"], 1);
    assert_eq!(health["queueDepth"], 0);
    // The queue: which one runs, waiting per priority, in flight, dead letters, and in
    // Redis mode the outbox.
    assert_eq!(
        health["queue"]["waiting"],
        serde_json::json!({}),
        "{health}"
    );
    assert_eq!(health["queue"]["inFlight"], 0);
    assert_eq!(health["queue"]["deadLetters"], 0);
    match backend {
        Backend::Postgres => {
            assert_eq!(health["queue"]["backend"], "redis");
            assert_eq!(health["queue"]["outbox"]["unsent"], 0);
            assert_eq!(health["queue"]["outbox"]["lagMs"], 0);
        }
        Backend::Sqlite => {
            assert_eq!(health["queue"]["backend"], "database");
            assert!(health["queue"].get("outbox").is_none(), "{health}");
        }
    }
    assert!(
        health["policy"]["components"].as_u64().unwrap() >= 4,
        "{health}"
    );
    json_ok(app.get("/health/ready").await, StatusCode::OK).await;

    // A Redis that does not answer: still alive, reported down, not ready — and the
    // connection string never appears in the report.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let degraded = spawn_app_with(backend, |c| {
        c.redis_url = format!("redis://:s3cret@127.0.0.1:{port}")
    })
    .await;
    let health = json_ok(degraded.get("/health").await, StatusCode::OK).await;
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["checks"]["redis"]["status"], "down");
    assert!(!health.to_string().contains("s3cret"), "{health}");
    // The Redis queue cannot be read; the outbox still can.
    assert_eq!(health["queue"]["backend"], "redis");
    assert!(health["queue"]["waiting"].is_null(), "{health}");
    assert_eq!(health["queue"]["outbox"]["unsent"], 0);
    let ready = json_ok(
        degraded.get("/health/ready").await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(ready["checks"]["database"]["status"], "up");
}

async fn openapi_document_describes_the_api(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = json_ok(app.get("/api/openapi.json").await, StatusCode::OK).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/auth/register", "post"),
        ("/auth/login", "post"),
        ("/auth/logout", "post"),
        ("/auth/refresh", "post"),
        ("/auth/profile", "get"),
        ("/users", "get"),
        ("/users/{email}", "patch"),
        ("/users/{email}/promote-vip", "post"),
        ("/users/{email}/demote-vip", "post"),
        ("/tenants", "post"),
        ("/health", "get"),
        ("/health/ready", "get"),
        ("/admin/policy/evaluate", "post"),
    ] {
        let op = &paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} documented"))[method];
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path}"
        );
    }
    // Every schema reference resolves.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("odd ref {r}"));
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push(v.as_str().unwrap().to_owned());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// The docs page and everything it loads come from the binary: no outside host.
#[tokio::test]
async fn docs_page_references_no_external_host() {
    let app = spawn_app(Backend::Sqlite).await;
    let redirect = app.get("/api/docs").await;
    assert!(redirect.status().is_redirection() || redirect.status() == StatusCode::OK);
    let page = app.get("/api/docs/").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    let mut assets = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for chunk in html.split(attr).skip(1) {
            let target = chunk.split('"').next().unwrap();
            assert!(
                !target.starts_with("http:")
                    && !target.starts_with("https:")
                    && !target.starts_with("//"),
                "external asset {target}"
            );
            assets.push(target.trim_start_matches("./").to_owned());
        }
    }
    assert!(!assets.is_empty());
    for asset in assets {
        let response = app.get(&format!("/api/docs/{asset}")).await;
        assert_eq!(response.status(), StatusCode::OK, "asset {asset} served");
        if asset.ends_with("initializer.js") {
            let js = response.text().await.unwrap();
            assert!(js.contains("/api/openapi.json"), "{js}");
            assert!(
                !js.contains("https://") && !js.contains("http://"),
                "initializer calls out: {js}"
            );
        }
    }
}
