//! The `orderhost` binary: everything lives in the library; this only runs the CLI.

// mimalloc instead of the system allocator: under load glibc malloc/free were ~20 % of
// the server's CPU time (perf on the order benchmark), much of it arena locking between
// the runtime's threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    orderhost::cli::run().await
}
