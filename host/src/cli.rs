//! The command line: `serve` (`--demo`), `worker`, `migrate`, `demo`, `user create`,
//! `user tag`, `tenant create`, `catalog import`, `backup`, `restore`, `queue resync`,
//! `history preload` (in [`history`]), and the operator plane against a running server
//! (`component`, `bind`, `rollback`, `bindings` in [`ops`]; `queue dead` in [`queue`]).
//! Every option of the local commands has an environment variable and a default, so
//! `orderhost serve` needs nothing. Long local work shows its progress on a terminal
//! ([`progress`]).

pub mod dryrun;
pub mod history;
pub mod ops;
pub mod progress;
pub mod queue;

use std::{io::BufRead as _, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::{
    app::{App, shutdown_signal},
    auth::{Role, check_password_shape, password},
    clock::{Clock, SystemClock},
    config::{Config, Environment, LogConfig, StoreConfig},
    store::Store,
    tags::Tags,
    tenants, users,
};

/// orderhost: an ordering service whose merchant rules run as WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "orderhost", version, about)]
pub struct Cli {
    /// Logging settings (apply to every command).
    #[command(flatten)]
    pub log: LogConfig,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API (migrations run first).
    Serve(Box<ServeArgs>),
    /// Run order workers only (no HTTP); any number of these share one database.
    Worker(Box<Config>),
    /// Apply database migrations and exit.
    Migrate(MigrateArgs),
    /// Seed the demo shop (catalog and users with published passwords, in the default
    /// tenant) into the configured database and exit; refused in production.
    Demo(MigrateArgs),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage the catalog.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Write a consistent copy of the embedded SQLite database to FILE while the service
    /// runs (PostgreSQL: use pg_dump or base backups).
    Backup(BackupArgs),
    /// Replace the embedded SQLite database by a backup, after checking it; stop every
    /// orderhost using the database first.
    Restore(RestoreArgs),
    /// Manage components in the registry of a running server (`--url`, `--token`).
    #[command(subcommand)]
    Component(ops::ComponentCommand),
    /// Bind a component to one hook of a tenant on a running server.
    Bind(ops::BindArgs),
    /// Roll a tenant's hook back to its previous (or a given) binding revision.
    Rollback(ops::RollbackArgs),
    /// Show a tenant's effective bindings or their history on a running server.
    #[command(subcommand)]
    Bindings(ops::BindingsCommand),
    /// Replay a tenant's stored orders through a hook's active binding and a candidate on
    /// a running server, and print what would have changed.
    DryRun(dryrun::DryRunArgs),
    /// The order queue: resync PENDING orders into it; list, retry and discard dead
    /// letters on a running server.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Order history for benchmarks and plan checks: preload settled orders into a
    /// tenant (refused in production).
    #[command(subcommand)]
    History(history::HistoryCommand),
}

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The service's settings.
    #[command(flatten)]
    pub config: Config,
    /// Seed the demo shop (see `orderhost demo`) when it is missing, print its users and
    /// passwords, then serve; refused in production.
    #[arg(long, env = "ORDERHOST_DEMO", default_value_t = false)]
    pub demo: bool,
}

/// Arguments of `migrate` and `demo`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Database settings.
    #[command(flatten)]
    pub store: StoreConfig,
    /// `development` or `production` (how long start-up waits for the database; `demo`
    /// is refused in production).
    #[arg(long = "env", env = "ORDERHOST_ENV", value_enum, default_value_t = Environment::Development)]
    pub environment: Environment,
}

/// Arguments of `backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Database settings (the database to copy).
    #[command(flatten)]
    pub store: StoreConfig,
    /// The backup file to write; it must not exist.
    pub file: std::path::PathBuf,
}

/// Arguments of `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Database settings (the database to replace).
    #[command(flatten)]
    pub store: StoreConfig,
    /// The backup file, as written by `orderhost backup`.
    pub file: std::path::PathBuf,
    /// Replace an existing database (refused anyway while a process has it open).
    #[arg(long, env = "ORDERHOST_RESTORE_FORCE", default_value_t = false)]
    pub force: bool,
}

/// Catalog commands.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Load products from a CSV or JSON file; idempotent by sku.
    Import(crate::catalog::import::ImportArgs),
}

/// User commands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user, e.g. the first operator. The password is read from
    /// `ORDERHOST_USER_PASSWORD` or, when that is unset, from the first line of stdin.
    Create(CreateUser),
    /// Set, add or remove a user's customer tags (what the tenant's rules read), or clear
    /// them; prints the tags the user has afterwards.
    Tag(TagUser),
}

/// Arguments of `user create`.
#[derive(Debug, Args)]
pub struct CreateUser {
    /// Database settings.
    #[command(flatten)]
    pub store: StoreConfig,
    /// Email of the new user.
    #[arg(long, env = "ORDERHOST_USER_EMAIL")]
    pub email: String,
    /// Role: customer, admin or operator.
    #[arg(long, env = "ORDERHOST_USER_ROLE", default_value = "customer", value_parser = parse_role)]
    pub role: Role,
    /// Tenant slug.
    #[arg(long, env = "ORDERHOST_USER_TENANT", default_value = crate::store::DEFAULT_TENANT_SLUG)]
    pub tenant: String,
    /// Make the user a VIP.
    #[arg(long, env = "ORDERHOST_USER_VIP", default_value_t = false)]
    pub vip: bool,
}

/// Arguments of `user tag`: `--set` or `--clear`, or any of `--add` and `--remove`
/// (removals apply after additions). Tags follow the API's rule: trimmed, lower-cased,
/// 1–64 characters of `a-z 0-9 - _ . :`, at most 32 distinct.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("change")
        .required(true)
        .multiple(true)
        .args(["set", "add", "remove", "clear"])
))]
pub struct TagUser {
    /// Database settings.
    #[command(flatten)]
    pub store: StoreConfig,
    /// Email of the user.
    pub email: String,
    /// Tenant slug.
    #[arg(long, env = "ORDERHOST_USER_TENANT", default_value = crate::store::DEFAULT_TENANT_SLUG)]
    pub tenant: String,
    /// Replace the user's tags by these (comma-separated: `--set wholesale,b2b-gold`).
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["add", "remove", "clear"])]
    pub set: Option<Vec<String>>,
    /// Add these tags (comma-separated, or the flag repeated).
    #[arg(long, value_delimiter = ',')]
    pub add: Vec<String>,
    /// Remove these tags (comma-separated, or the flag repeated).
    #[arg(long, value_delimiter = ',')]
    pub remove: Vec<String>,
    /// Remove every tag.
    #[arg(long, default_value_t = false, conflicts_with_all = ["add", "remove"])]
    pub clear: bool,
}

/// Tenant commands.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create(CreateTenant),
}

/// Arguments of `tenant create`.
#[derive(Debug, Args)]
pub struct CreateTenant {
    /// Database settings.
    #[command(flatten)]
    pub store: StoreConfig,
    /// URL-safe unique name.
    #[arg(long)]
    pub slug: String,
    /// Display name (defaults to the slug).
    #[arg(long, default_value = "")]
    pub name: String,
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("{s:?} is not a role: use customer, admin or operator"))
}

/// Runs the command line and turns the outcome into the process exit code. Errors go to
/// stderr as well as the log: a bad configuration stops before logging is set up.
pub async fn run() -> ExitCode {
    match main().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("orderhost: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the command line and runs it.
pub async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The operator-plane commands are HTTP clients: no logging set-up, no database.
    let cli = match cli.command {
        Command::Component(command) => return Ok(ops::component(command).await?),
        Command::Bind(args) => return Ok(ops::bind(args).await?),
        Command::Rollback(args) => return Ok(ops::rollback(args).await?),
        Command::Bindings(command) => return Ok(ops::bindings(command).await?),
        Command::DryRun(args) => return Ok(dryrun::run(args).await?),
        Command::Queue(queue::QueueCommand::Dead(command)) => {
            return Ok(queue::dead(command).await?);
        }
        command => Cli { command, ..cli },
    };
    let _guards = crate::observability::init(&cli.log)?;
    match cli.command {
        Command::Serve(args) => {
            let ServeArgs { config, demo } = *args;
            if demo {
                crate::demo::check_environment(config.environment)?;
            }
            let environment = config.environment;
            // Installed before start-up: a SIGTERM meanwhile still ends in a clean shutdown.
            let shutdown = shutdown_signal();
            let app = App::build(config).await?;
            if demo {
                let report = crate::demo::seed(&app.state().store, environment).await?;
                println!("{}", crate::demo::summary(report));
            }
            app.run_until_stopped(shutdown).await
        }
        Command::Worker(config) => {
            let shutdown = shutdown_signal();
            let count = config.workers.max(1);
            let state =
                crate::state::build_worker_context(*config, std::sync::Arc::new(SystemClock))
                    .await?;
            // Served on ORDERHOST_METRICS_ADDR when set; stopped when this command ends.
            let _metrics = crate::app::worker_metrics(&state).await?;
            let (stop, workers) = crate::orders::process::spawn_workers(&state, count);
            shutdown.await;
            let _ = stop.send(true);
            for worker in workers {
                let _ = worker.await;
            }
            state.store.close().await;
            Ok(())
        }
        Command::Queue(command) => queue::run(command).await,
        Command::History(command) => history::run(command).await,
        Command::Migrate(args) => {
            let wait = args.store.startup_timeout(args.environment);
            let store = Store::open(&args.store, wait).await?;
            tracing::info!(backend = store.backend(), "migrations applied");
            store.close().await;
            Ok(())
        }
        Command::Demo(args) => {
            crate::demo::check_environment(args.environment)?;
            let wait = args.store.startup_timeout(args.environment);
            let store = Store::open(&args.store, wait).await?;
            let report = crate::demo::seed(&store, args.environment).await;
            store.close().await;
            println!("{}", crate::demo::summary(report?));
            Ok(())
        }
        Command::Backup(args) => {
            let summary = crate::store::backup::backup(&args.store, &args.file).await?;
            println!(
                "backup written to {}: {} orders, schema version {}, {} bytes",
                args.file.display(),
                summary.orders,
                summary.schema_version,
                summary.bytes
            );
            Ok(())
        }
        Command::Restore(args) => {
            let summary =
                crate::store::backup::restore(&args.store, &args.file, args.force).await?;
            println!(
                "restored {} into {}: {} orders, schema version {}",
                args.file.display(),
                args.store.database_url,
                summary.orders,
                summary.schema_version
            );
            Ok(())
        }
        Command::User(UserCommand::Create(args)) => create_user(args).await,
        Command::User(UserCommand::Tag(args)) => tag_user(args).await,
        Command::Catalog(CatalogCommand::Import(args)) => crate::catalog::import::run(args).await,
        Command::Component(_)
        | Command::Bind(_)
        | Command::Rollback(_)
        | Command::Bindings(_)
        | Command::DryRun(_) => {
            unreachable!("handled before logging is set up")
        }
        Command::Tenant(TenantCommand::Create(args)) => {
            let store = Store::open(&args.store, std::time::Duration::ZERO).await?;
            let slug = tenants::parse_slug(&args.slug)?;
            let name = tenants::parse_name(Some(&args.name), &slug)?;
            tenants::create(&store, &slug, &name, SystemClock.now_ms())
                .await?
                .with_context(|| format!("a tenant named {slug:?} exists"))?;
            println!("tenant {slug} created");
            Ok(())
        }
    }
}

async fn create_user(args: CreateUser) -> anyhow::Result<()> {
    let password = match std::env::var("ORDERHOST_USER_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    check_password_shape(&password)?;
    let email = users::Email::parse(&args.email)?;
    let store = Store::open(&args.store, std::time::Duration::ZERO).await?;
    let tenant_id = tenants::resolve(&store, Some(&args.tenant)).await?;
    let hash = password::hash(password).await?;
    let now = SystemClock.now_ms();
    let user = users::create(&store, &tenant_id, &email, None, &hash, args.role, now).await?;
    if args.vip {
        let change = users::UserUpdate {
            role: args.role,
            vip: true,
            name: None,
            tags: None,
        };
        users::update(&store, &tenant_id, email.as_str(), &change, now).await?;
    }
    println!(
        "user {} created in tenant {} with role {}",
        user.email,
        user.tenant_slug,
        args.role.as_str()
    );
    Ok(())
}

async fn tag_user(args: TagUser) -> anyhow::Result<()> {
    // Every tag is checked before the database is opened.
    let set = args
        .set
        .as_deref()
        .map(|raw| Tags::parse("--set", raw))
        .transpose()?;
    let add = Tags::parse("--add", &args.add)?;
    let remove = Tags::parse("--remove", &args.remove)?;
    let email = users::Email::parse(&args.email)?;
    let store = Store::open(&args.store, std::time::Duration::ZERO).await?;
    let tenant_id = tenants::resolve(&store, Some(&args.tenant)).await?;
    let clear = args.clear;
    let edit = move |current: Tags| match set {
        Some(tags) => Ok(tags),
        None if clear => Ok(Tags::default()),
        None => Ok(current.with("--add", &add)?.without(&remove)),
    };
    let tagged = users::retag(
        &store,
        &tenant_id,
        email.as_str(),
        edit,
        SystemClock.now_ms(),
    )
    .await;
    store.close().await;
    let tags = match tagged {
        Ok(tags) => tags,
        Err(users::RetagError::NotFound) => {
            anyhow::bail!("no user {} in tenant {}", email.as_str(), args.tenant)
        }
        Err(err) => return Err(err.into()),
    };
    if tags.as_slice().is_empty() {
        println!("user {} in tenant {}: no tags", email.as_str(), args.tenant);
    } else {
        println!(
            "user {} in tenant {}: tags {}",
            email.as_str(),
            args.tenant,
            tags.as_slice().join(", ")
        );
    }
    Ok(())
}
