//! Builds the guest components in `components/` for `wasm32-wasip2` into a target
//! directory of their own (`<target>/wasm-components`), so the host can embed the
//! built-ins with `include_bytes!` and the tests can load the others. The guests are a
//! separate cargo workspace: another target, another profile (size-optimised, LTO) and
//! no `unsafe_code` lint (the code wit-bindgen generates is unsafe glue).

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("host/ sits in the workspace root");
    let components = root.join("components");
    let wit = root.join("wit");
    // Directories are scanned recursively by cargo for changes.
    for watched in [&components, &wit] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let target_root = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_relative() { root.join(p) } else { p })
        .unwrap_or_else(|| root.join("target"));
    let target_dir = target_root.join("wasm-components");
    build_guests(&components, &target_dir);
    let out = target_dir.join("wasm32-wasip2").join("release");
    println!("cargo:rustc-env=ORDERHOST_COMPONENTS_DIR={}", out.display());
}

fn build_guests(components: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--release")
        .arg("--locked")
        .args(["--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(components.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    // Settings of the outer build that must not leak into the guest build: flags for the
    // host target, clippy's wrapper, a forced target or target dir.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        command.env_remove(var);
    }
    let output = command
        .output()
        .expect("cargo can be run from the build script");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        for line in stderr.lines() {
            println!("cargo:warning={line}");
        }
        panic!(
            "building the guest components failed (is the wasm32-wasip2 target installed? \
             `rustup target add wasm32-wasip2`):\n{stderr}"
        );
    }
}
