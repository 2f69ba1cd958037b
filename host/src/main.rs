//! The `orderhost` binary: everything lives in the library; this only runs the CLI.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match orderhost::cli::main().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Logging may not be set up (a bad configuration stops before it): say it
            // on stderr as well, with the whole cause chain.
            eprintln!("orderhost: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
