//! The `orderhost` binary: everything lives in the library; this only runs the CLI.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    orderhost::cli::run().await
}
