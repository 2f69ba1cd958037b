//! The catalog: products (per tenant, unique sku, price in minor units) and their stock
//! items (`available`, `reserved`, `received`, `version`), the admin API, the public
//! showcase and bulk import.

pub mod import;
pub mod lookup;
mod routes;

pub use routes::router;
