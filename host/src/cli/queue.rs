//! `orderhost queue …`: the order queue from the command line.
//!
//! `queue resync` works on the database directly (like `migrate`): it needs the same
//! `DATABASE_URL`, `REDIS_URL` and `ORDERHOST_QUEUE` as the service, and no running server.
//! `queue dead list|retry|discard` is the opposite: an HTTP client of a *running* server's
//! dead-letter API (`/admin/dead-letters`, see `queue::dead_letters`), like the operator
//! plane in [`super::ops`], with no database configuration.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use super::ops::{
    self, Client, OpsError, PageArgs, Server, items, key_values, page_footer, table, text,
};
use crate::{
    clock::{Clock as _, SystemClock},
    config::Config,
    queue::outbox,
    store::Store,
};

/// `orderhost queue …`.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Queue every PENDING order again: in Redis mode an outbox row per order, which the
    /// relays of the running services push (jobs Redis still holds are left alone); on the
    /// database queue a job for every PENDING order that has none. For when Redis lost its
    /// keys (flushed, evicted, replaced) or the queue backend was switched with orders in
    /// flight. Safe to run at any time.
    Resync(Box<Config>),
    /// Dead letters (jobs that used up their attempts) on a running server (`--url`,
    /// `--token`): list, retry, discard. A tenant admin's token reaches its own tenant's,
    /// an operator's every tenant's.
    #[command(subcommand)]
    Dead(DeadCommand),
}

/// `orderhost queue dead …`.
#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// List dead letters, most recently dead first: order, tenant, status and reason,
    /// attempts, first and last attempt, last error.
    List(DeadListArgs),
    /// Queue a dead letter's order again (PENDING, with a RETRIED event); the workers
    /// settle it.
    Retry(DeadOrderArgs),
    /// Give up on a dead letter: its order stays FAILED with reason DISCARDED, any stock
    /// it holds is released, and the dead job goes.
    Discard(DeadOrderArgs),
}

/// Arguments of `queue dead list`.
#[derive(Debug, Args)]
pub struct DeadListArgs {
    /// Server, token, output.
    #[command(flatten)]
    pub server: Server,
    /// Only this tenant's (slug). Operators see every tenant's without it; an admin sees
    /// its own tenant's either way.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Page and page size.
    #[command(flatten)]
    pub page: PageArgs,
}

/// Arguments of `queue dead retry` and `queue dead discard`.
#[derive(Debug, Args)]
pub struct DeadOrderArgs {
    /// Server, token, output.
    #[command(flatten)]
    pub server: Server,
    /// The dead letter's order id.
    pub order_id: String,
}

/// Runs a `queue` command.
pub async fn run(command: QueueCommand) -> anyhow::Result<()> {
    match command {
        QueueCommand::Dead(command) => Ok(dead(command).await?),
        QueueCommand::Resync(config) => {
            let kind = config
                .queue
                .kind(&config.redis_url)
                .map_err(|e| anyhow::anyhow!(e))?;
            let store = Store::open(&config.store, std::time::Duration::ZERO).await?;
            let max_attempts = i32::try_from(config.queue.max_attempts).unwrap_or(5);
            // One statement: its size is unknown until it ends, so a spinner.
            let spinner = super::progress::spinner("queueing PENDING orders again");
            let written = outbox::resync(&store, kind, max_attempts, SystemClock.now_ms()).await;
            spinner.finish_and_clear();
            let written = written?;
            store.close().await;
            match kind {
                crate::queue::QueueKind::Redis => println!(
                    "{written} PENDING orders written to the outbox; the running services' relays push them to Redis"
                ),
                crate::queue::QueueKind::Database => {
                    println!("{written} PENDING orders without a job queued again")
                }
            }
            Ok(())
        }
    }
}

/// Runs `queue dead …`: one request to the server's dead-letter API.
pub async fn dead(command: DeadCommand) -> Result<(), OpsError> {
    match command {
        DeadCommand::List(args) => {
            let client = Client::new(&args.server)?;
            let url = client.url(
                &["admin", "dead-letters"],
                &[
                    ("tenant", args.tenant),
                    ("page", args.page.page.map(|p| p.to_string())),
                    ("perPage", args.page.per_page.map(|p| p.to_string())),
                ],
            );
            let (_, value) = client.send(Method::GET, url, None).await?;
            ops::print(&args.server, &value, |v| {
                if items(v).is_empty() {
                    return format!("no dead letters (total {})", text(&v["total"]));
                }
                let rows = items(v)
                    .iter()
                    .map(|d| {
                        vec![
                            text(&d["orderId"]),
                            text(&d["tenant"]),
                            format!("{} {}", text(&d["status"]), text(&d["reason"])),
                            text(&d["priority"]),
                            text(&d["attempts"]),
                            text(&d["firstAttemptAt"]),
                            text(&d["lastAttemptAt"]),
                            text(&d["lastError"]),
                        ]
                    })
                    .collect();
                let headers = [
                    "ORDER",
                    "TENANT",
                    "STATUS",
                    "PRIORITY",
                    "ATTEMPTS",
                    "FIRST ATTEMPT",
                    "LAST ATTEMPT",
                    "LAST ERROR",
                ];
                table(&headers, rows) + &page_footer(v)
            });
        }
        DeadCommand::Retry(args) => {
            let client = Client::new(&args.server)?;
            let url = client.url(&["admin", "dead-letters", &args.order_id, "retry"], &[]);
            let (_, value) = client.send(Method::POST, url, None).await?;
            ops::print(&args.server, &value, |v| {
                format!("queued again; a worker settles it\n{}", order_lines(v))
            });
        }
        DeadCommand::Discard(args) => {
            let client = Client::new(&args.server)?;
            let url = client.url(&["admin", "dead-letters", &args.order_id, "discard"], &[]);
            let (_, value) = client.send(Method::POST, url, None).await?;
            ops::print(&args.server, &value, |v| {
                format!("discarded\n{}", order_lines(v))
            });
        }
    }
    Ok(())
}

/// `key: value` lines of an order.
fn order_lines(order: &Value) -> String {
    key_values(&[
        ("order", text(&order["id"])),
        ("status", text(&order["status"])),
        ("reason", text(&order["reason"])),
        (
            "total",
            format!("{} {}", text(&order["total"]), text(&order["currency"])),
        ),
        ("updated at", text(&order["updatedAt"])),
    ])
}
