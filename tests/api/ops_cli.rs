//! The operator-plane CLI (`component`, `bind`, `rollback`, `bindings`) as a separate
//! process talking HTTP to a running orderhost: human output, `--json`, and the error
//! envelope's code on stderr with exit code 1.

use std::{
    path::Path,
    process::{Command, Output, Stdio},
};

use orderhost::{auth::Role, policy::registry::BUILD_DIR};
use serde_json::Value;

use crate::{
    backend_tests,
    helpers::{Backend, TestApp, spawn_app},
};

backend_tests!(the_cli_uploads_binds_rolls_back_and_deletes);

const BIN: &str = env!("CARGO_BIN_EXE_orderhost-under-test");

/// Runs `orderhost ARGS` against `app` with `token`, off the runtime's worker threads (the
/// server answering it runs on them).
async fn orderhost(app: &TestApp, token: &str, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ORDERHOST_URL", &app.address)
        .env("ORDERHOST_TOKEN", token)
        .args(args)
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
        .await
        .unwrap()
}

/// Runs a command that must succeed; its stdout.
pub(crate) async fn ok(app: &TestApp, token: &str, args: &[&str]) -> String {
    let output = orderhost(app, token, args).await;
    assert!(
        output.status.success(),
        "{args:?}: {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Runs a command that must fail with exit code 1; its stderr.
pub(crate) async fn fails(app: &TestApp, token: &str, args: &[&str]) -> String {
    let output = orderhost(app, token, args).await;
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
    stderr
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

async fn the_cli_uploads_binds_rolls_back_and_deletes(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let token = app
        .user_with_role("ops@example.com", Role::Operator, None)
        .await;
    let wasm = Path::new(BUILD_DIR).join("flash_sale.wasm");
    let wasm = wasm.to_str().unwrap();

    // Upload, then the same bytes again.
    let out = ok(
        &app,
        &token,
        &[
            "component",
            "upload",
            wasm,
            "--name",
            "my-sale",
            "--version",
            "0.1.0",
        ],
    )
    .await;
    assert!(out.starts_with("stored\n"), "{out}");
    assert!(out.contains("name:") && out.contains("my-sale"), "{out}");
    assert!(out.contains("validator"), "{out}");
    assert!(out.contains("owner:") && out.contains("platform"), "{out}");
    let again = ok(
        &app,
        &token,
        &[
            "component",
            "upload",
            wasm,
            "--name",
            "my-sale",
            "--version",
            "0.1.0",
            "--json",
        ],
    )
    .await;
    let record = json(&again);
    assert_eq!(record["name"], "my-sale");
    let sha256 = record["sha256"].as_str().unwrap().to_owned();

    // List: an aligned table, and the server's JSON.
    let out = ok(&app, &token, &["component", "list", "--world", "validator"]).await;
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("NAME"), "{out}");
    let row = lines.find(|l| l.starts_with("my-sale")).expect("listed");
    assert_eq!(
        header.find("OWNER"),
        row.find("platform"),
        "columns aligned:\n{out}"
    );
    assert!(row.contains(&sha256[..12]), "{out}");
    let page = json(
        &ok(
            &app,
            &token,
            &["component", "list", "--name", "my-sale", "--json"],
        )
        .await,
    );
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["items"][0]["version"], "0.1.0");

    // Inspect.
    let out = ok(&app, &token, &["component", "inspect", "my-sale", "0.1.0"]).await;
    assert!(out.contains("sha256:") && out.contains(&sha256), "{out}");
    assert!(out.contains("bound by:"), "{out}");

    // Bind it for the default tenant with config.
    let out = ok(
        &app,
        &token,
        &[
            "bind",
            "--tenant",
            "default",
            "--hook",
            "validation",
            "--component",
            "my-sale@0.1.0",
            "--config",
            "skus=MUG",
            "--config",
            "max-units=2",
            "--timeout-ms",
            "100",
            "--reason",
            "Black Friday",
        ],
    )
    .await;
    assert!(out.contains("my-sale@0.1.0"), "{out}");
    assert!(out.contains("max-units=2 skus=MUG"), "{out}");
    let out = ok(&app, &token, &["bindings", "show", "--tenant", "default"]).await;
    let row = out
        .lines()
        .find(|l| l.starts_with("validation"))
        .expect("validation row");
    assert!(
        row.contains("my-sale@0.1.0") && row.contains("database"),
        "{out}"
    );

    // The history shows it, with who and why.
    let out = ok(
        &app,
        &token,
        &["bindings", "history", "--tenant", "default"],
    )
    .await;
    assert!(out.starts_with("REV"), "{out}");
    assert!(
        out.contains("Black Friday") && out.contains("ops@example.com"),
        "{out}"
    );
    let history = json(
        &ok(
            &app,
            &token,
            &["bindings", "history", "--tenant", "default", "--json"],
        )
        .await,
    );
    assert_eq!(
        history["items"][0]["component"], "my-sale@0.1.0",
        "{history}"
    );
    assert_eq!(history["items"][0]["reason"], "Black Friday");

    // Deleting is refused while bound: the code on stderr, exit code 1.
    let stderr = fails(&app, &token, &["component", "delete", "my-sale", "0.1.0"]).await;
    assert!(stderr.contains("COMPONENT_IN_USE"), "{stderr}");

    // Roll back: the hook leaves the database binding.
    let rolled = json(
        &ok(
            &app,
            &token,
            &[
                "rollback",
                "--tenant",
                "default",
                "--hook",
                "validation",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(rolled["change"]["action"], "rollback", "{rolled}");
    let out = ok(&app, &token, &["bindings", "show", "--tenant", "default"]).await;
    assert!(!out.contains("my-sale"), "{out}");
    let out = ok(
        &app,
        &token,
        &["bindings", "history", "--tenant", "default"],
    )
    .await;
    assert!(out.contains("rollback"), "{out}");

    // Now nothing binds it.
    let out = ok(&app, &token, &["component", "delete", "my-sale", "0.1.0"]).await;
    assert_eq!(out.trim(), "deleted my-sale@0.1.0");
    let stderr = fails(&app, &token, &["component", "inspect", "my-sale", "0.1.0"]).await;
    assert!(stderr.contains("404"), "{stderr}");

    // A bad token: the envelope's code, exit code 1.
    let stderr = fails(&app, "not-a-token", &["component", "list"]).await;
    assert!(stderr.contains("INVALID_TOKEN"), "{stderr}");

    // Usage errors stay clap's (exit code 2).
    let output = orderhost(&app, &token, &["bind", "--tenant", "default"]).await;
    assert_eq!(output.status.code(), Some(2));
}
