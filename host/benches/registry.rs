//! Registry bench: the time of `POST /admin/components` for a component of about 100 KB —
//! reading the body, parsing, compiling with cranelift, the import and world checks, the
//! smoke call and the database insert — against a real `orderhost` on SQLite.
//!
//! `cargo bench -p orderhost --bench registry` prints min/p50/p90/max over
//! `REGISTRY_BENCH_UPLOADS` uploads (default 20). Each upload has distinct bytes (the
//! `bad-sandbox` component, ~95 KB, padded to 100 KB with a custom section holding the
//! iteration number), so every upload compiles: no compile-cache hits.

use std::time::{Duration, Instant};

use orderhost::{
    App, Config, auth::Role, config::StoreConfig, policy::registry::BUILD_DIR, users::Email,
};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";
const TARGET_BYTES: usize = 100 * 1024;

/// `base` plus a custom section (id 0) named `bench` holding `i`, padded to `TARGET_BYTES`
/// (a custom section may follow anything in a component and changes nothing it does).
fn padded(base: &[u8], i: u32) -> Vec<u8> {
    let name = b"bench";
    let overhead = 1 + 5 + 1 + name.len();
    let payload_len = TARGET_BYTES.saturating_sub(base.len() + overhead).max(4);
    let mut payload = i.to_le_bytes().to_vec();
    payload.resize(payload_len, 0);
    let section_len = 1 + name.len() + payload.len();
    let mut out = base.to_vec();
    out.push(0);
    // The section size as a fixed 5-byte LEB128, so the overhead is known in advance.
    let mut n = section_len as u32;
    for k in 0..5 {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        out.push(if k < 4 { byte | 0x80 } else { byte });
    }
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

fn main() {
    let uploads: u32 = std::env::var("REGISTRY_BENCH_UPLOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let base = std::fs::read(std::path::Path::new(BUILD_DIR).join("bad_sandbox.wasm"))
        .expect("bad_sandbox.wasm is built by host/build.rs");
    let dir = std::env::temp_dir().join(format!("orderhost-registry-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let times = rt.block_on(async {
        let config = Config {
            store: StoreConfig {
                database_url: format!("sqlite://{}", dir.join("orderhost.db").display()),
                ..StoreConfig::default()
            },
            bind: "127.0.0.1:0".parse().expect("address"),
            policies_dir: dir.join("no-policies"),
            ..Config::default()
        };
        let app = App::build(config).await.expect("orderhost starts");
        let base_url = format!("http://127.0.0.1:{}", app.port());
        let store = app.state().store.clone();
        let hash = orderhost::auth::password::hash(PASSWORD.to_owned())
            .await
            .expect("hash");
        orderhost::users::create(
            &store,
            orderhost::store::DEFAULT_TENANT_ID,
            &Email::parse("operator@bench.test").expect("email"),
            None,
            &hash,
            Role::Operator,
            0,
        )
        .await
        .expect("operator");
        tokio::spawn(async move {
            let _ = app.run_until_stopped(std::future::pending()).await;
        });
        let client = reqwest::Client::new();
        let login: Value = client
            .post(format!("{base_url}/auth/login"))
            .json(&json!({ "email": "operator@bench.test", "password": PASSWORD }))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        let token = login["accessToken"].as_str().expect("token").to_owned();
        let mut times = Vec::new();
        for i in 0..uploads {
            let bytes = padded(&base, i);
            let started = Instant::now();
            let response = client
                .post(format!(
                    "{base_url}/admin/components?name=bench&version=1.0.{i}"
                ))
                .bearer_auth(&token)
                .header("content-type", "application/wasm")
                .body(bytes.clone())
                .send()
                .await
                .expect("upload");
            let elapsed = started.elapsed();
            let status = response.status();
            assert_eq!(status, 201, "{}", response.text().await.unwrap_or_default());
            if i == 0 {
                println!("component: {} bytes", bytes.len());
            }
            times.push(elapsed);
        }
        times
    });
    let _ = std::fs::remove_dir_all(&dir);
    let mut sorted = times.clone();
    sorted.sort();
    let at = |p: f64| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "upload + validate + compile + store, {} uploads: min {:.1} ms, p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        sorted.len(),
        ms(sorted[0]),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(sorted[sorted.len() - 1]),
    );
}
