//! `orderhost history preload`: writes a tenant's order history (settled orders, see
//! [`crate::orders::history`]) into the configured database, so a benchmark or a plan
//! check runs against tables of a realistic size. Refused in production: the orders are
//! made up.

use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::{
    clock::{Clock as _, SystemClock},
    config::{Environment, StoreConfig},
    orders::history::{DAY_MS, Preload, preload},
    store::Store,
};

/// `orderhost history …`.
#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// Write N settled orders (with lines, events, stock movements, decision logs and
    /// idempotency keys) spread over the past days of a tenant, creating customers and
    /// products when it has too few; VACUUM (ANALYZE) afterwards on PostgreSQL.
    Preload(PreloadArgs),
}

/// Arguments of `history preload`.
#[derive(Debug, Args)]
pub struct PreloadArgs {
    /// Database settings.
    #[command(flatten)]
    pub store: StoreConfig,
    /// `development` or `production` (refused: history orders are made up).
    #[arg(long = "env", env = "ORDERHOST_ENV", value_enum, default_value_t = Environment::Development)]
    pub environment: Environment,
    /// Settled orders to write.
    #[arg(long, env = "ORDERHOST_HISTORY_ORDERS", default_value_t = 100_000)]
    pub orders: u64,
    /// Tenant slug.
    #[arg(long, env = "ORDERHOST_HISTORY_TENANT", default_value = crate::store::DEFAULT_TENANT_SLUG)]
    pub tenant: String,
    /// How many days back the history reaches.
    #[arg(long, env = "ORDERHOST_HISTORY_DAYS", default_value_t = 90,
          value_parser = clap::value_parser!(u32).range(1..=3_650))]
    pub days: u32,
    /// Orders written per transaction.
    #[arg(long, env = "ORDERHOST_HISTORY_CHUNK", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub chunk: u64,
}

/// Runs `history preload`: prints progress on a terminal, then what was written and how
/// long it took.
pub async fn run(command: HistoryCommand) -> anyhow::Result<()> {
    let HistoryCommand::Preload(args) = command;
    anyhow::ensure!(
        args.environment != Environment::Production,
        "history preload writes made-up orders: refused in production"
    );
    let store = Store::open(&args.store, args.store.startup_timeout(args.environment)).await?;
    let plan = Preload {
        tenant: Some(args.tenant.clone()),
        span_ms: i64::from(args.days) * DAY_MS,
        chunk: args.chunk,
        ..Preload::new(args.orders, SystemClock.now_ms())
    };
    let bar = super::progress::bar(args.orders, "preloading history");
    let started = Instant::now();
    let report = preload(&store, &plan, |done| bar.set_position(done)).await;
    bar.finish_and_clear();
    store.close().await;
    let report = report.with_context(|| format!("preloading history into {}", args.tenant))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "history preloaded into tenant {} ({}): {} orders, {} lines, {} events, {} stock movements, \
         {} decision logs, {} idempotency keys; {} customers and {} products created; \
         {secs:.1} s ({:.0} orders/s)",
        args.tenant,
        store.backend(),
        report.orders,
        report.lines,
        report.events,
        report.movements,
        report.decisions,
        report.keys,
        report.customers_created,
        report.products_created,
        report.orders as f64 / secs.max(1e-3),
    );
    Ok(())
}
