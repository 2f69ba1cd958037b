//! Builds the guest components in `components/` for `wasm32-wasip2` into a target
//! directory of their own (`<target>/wasm-components`), so the host can embed the
//! built-ins with `include_bytes!` and the tests can load the others. The guests are a
//! separate cargo workspace: another target, another profile (size-optimised, LTO) and
//! no `unsafe_code` lint (the code wit-bindgen generates is unsafe glue).
//!
//! First of all it makes sure the `wasm32-wasip2` standard library is installed for the
//! toolchain that builds the host: machines come with the pinned toolchain but without the
//! target (and rustup's auto-install may be off), and the guest build would otherwise fail
//! with "can't find crate for `core`". When it is missing and `rustup` is on the PATH, it
//! is added to the active toolchain (with a cargo warning); without rustup the build stops
//! here with the command to run.
//!
//! When this runs: cargo compiles and runs a build script when its job queue gets to it,
//! and it starts first the crates many others wait for; this script, which nothing but
//! the host waits for, comes near the end of a cold build (measured in a fresh clone on
//! the 2-core machine: compiled at 24 min of 26). So that is when a missing target is
//! installed or reported; no stable cargo setting moves it earlier, and a separate tiny
//! crate that only the host depends on would be scheduled by the same rule. The README says to run the command
//! beforehand to find out in the first second.

use std::{
    env,
    ffi::OsString,
    fs, io,
    path::{Path, PathBuf},
    process::Command,
};

/// The target the guest components are built for.
const GUEST_TARGET: &str = "wasm32-wasip2";

fn main() {
    // Before anything else: without the target nothing below can work.
    ensure_guest_target();

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
    let out = target_dir.join(GUEST_TARGET).join("release");
    println!("cargo:rustc-env=ORDERHOST_COMPONENTS_DIR={}", out.display());
}

fn build_guests(components: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--release")
        .arg("--locked")
        .args(["--target", GUEST_TARGET])
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
        panic!("building the guest components failed:\n{stderr}");
    }
}

/// Makes sure the standard library for [`GUEST_TARGET`] is in the sysroot of the rustc
/// cargo builds with; adds it through rustup when it is not, or stops the build with the
/// command to run when rustup is not there.
fn ensure_guest_target() {
    // Set by rustup's proxies for cargo and so for this script: another toolchain, another
    // sysroot to check.
    println!("cargo:rerun-if-env-changed=RUSTUP_TOOLCHAIN");
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let libdir = target_libdir(&rustc);
    // The guests are built against this standard library; watching it also makes a build
    // on a warm target dir run this script again when the target was removed since (a
    // missing path is always "changed"), so the target is installed again there too.
    println!("cargo:rerun-if-changed={}", libdir.display());
    if has_core(&libdir) {
        return;
    }
    let Some(toolchain) = rustup_toolchain() else {
        panic!(
            "the {GUEST_TARGET} target is not installed for this toolchain (no {GUEST_TARGET} \
             standard library in {}) and rustup is not on the PATH to add it. Run, in this \
             checkout:\n\n    rustup target add {GUEST_TARGET}\n\n(or install the \
             {GUEST_TARGET} standard library of this Rust release by other means) and build \
             again.",
            libdir.display()
        );
    };
    println!(
        "cargo:warning=the {GUEST_TARGET} target is not installed for toolchain {toolchain}; \
         installing it: rustup target add --toolchain {toolchain} {GUEST_TARGET}"
    );
    let output = Command::new("rustup")
        .args(["target", "add", "--toolchain", &toolchain, GUEST_TARGET])
        .output()
        .expect("rustup answered a moment ago");
    if !output.status.success() {
        panic!(
            "`rustup target add --toolchain {toolchain} {GUEST_TARGET}` failed; run it by \
             hand and build again:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    if !has_core(&libdir) {
        panic!(
            "rustup installed {GUEST_TARGET} for toolchain {toolchain}, but the rustc this \
             build uses ({}) still has no {GUEST_TARGET} standard library in {}: is that rustc \
             from another installation than rustup's?",
            rustc.to_string_lossy(),
            libdir.display()
        );
    }
}

/// `<sysroot>/lib/rustlib/<GUEST_TARGET>/lib` of `rustc`, whether it exists or not.
fn target_libdir(rustc: &OsString) -> PathBuf {
    let output = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", GUEST_TARGET])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", rustc.to_string_lossy()));
    assert!(
        output.status.success(),
        "`{} --print target-libdir --target {GUEST_TARGET}` failed:\n{}",
        rustc.to_string_lossy(),
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// Whether `libdir` holds the target's `core` (what the guest build needs first).
fn has_core(libdir: &Path) -> bool {
    let entries = match fs::read_dir(libdir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return false,
        Err(e) => panic!("cannot read {}: {e}", libdir.display()),
    };
    entries.filter_map(Result::ok).any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        name.starts_with("libcore-") && name.ends_with(".rlib")
    })
}

/// The toolchain to add the target to, when rustup is on the PATH: the one rustup's proxy
/// ran cargo with (`RUSTUP_TOOLCHAIN`), else the one rustup resolves for this checkout
/// (`rust-toolchain.toml`). `None` without rustup.
fn rustup_toolchain() -> Option<String> {
    let version = Command::new("rustup").arg("--version").output();
    match version {
        Ok(output) if output.status.success() => {}
        _ => return None,
    }
    if let Some(toolchain) = env::var("RUSTUP_TOOLCHAIN").ok().filter(|t| !t.is_empty()) {
        return Some(toolchain);
    }
    let output = Command::new("rustup")
        .args(["show", "active-toolchain"])
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    // "1.95.0-x86_64-unknown-linux-gnu (overridden by '…/rust-toolchain.toml')"
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .map(str::to_owned)
}
