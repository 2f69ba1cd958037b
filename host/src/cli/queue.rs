//! `orderhost queue …`: the order queue from the command line.
//!
//! `queue resync` works on the database directly (like `migrate`): it needs the same
//! `DATABASE_URL`, `REDIS_URL` and `ORDERHOST_QUEUE` as the service, and no running server.

use clap::Subcommand;

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
}

/// Runs a `queue` command.
pub async fn run(command: QueueCommand) -> anyhow::Result<()> {
    match command {
        QueueCommand::Resync(config) => {
            let kind = config
                .queue
                .kind(&config.redis_url)
                .map_err(|e| anyhow::anyhow!(e))?;
            let store = Store::connect(&config.store).await?;
            store.migrate().await?;
            let max_attempts = i32::try_from(config.queue.max_attempts).unwrap_or(5);
            let written = outbox::resync(&store, kind, max_attempts, SystemClock.now_ms()).await?;
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
