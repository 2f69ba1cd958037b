//! The `orderhost` binary, built inside the test package so the black-box tests can spawn
//! it (`CARGO_BIN_EXE_*` is only set for binaries of the test's own package). It is the
//! same two lines as `host/src/main.rs`: all behaviour lives in `orderhost::cli`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    orderhost::cli::run().await
}
