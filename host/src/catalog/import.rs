//! `orderhost catalog import FILE`: bulk load products from CSV or JSON, idempotent by sku.

use clap::Args;

use crate::config::StoreConfig;

/// Arguments of `catalog import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Database settings.
    #[command(flatten)]
    pub store: StoreConfig,
    /// The file: `.csv` or `.json`.
    pub file: std::path::PathBuf,
    /// Tenant slug.
    #[arg(long, env = "ORDERHOST_IMPORT_TENANT", default_value = crate::store::DEFAULT_TENANT_SLUG)]
    pub tenant: String,
}

/// Runs the import.
pub async fn run(_args: ImportArgs) -> anyhow::Result<()> {
    anyhow::bail!("catalog import is not implemented yet")
}
