//! orderhost: an e-commerce ordering service. The host owns HTTP, storage and queues;
//! the rules that differ between merchants run as WebAssembly components behind WIT.
//!
//! One module per concern; each owns its types, SQL and routes.

pub mod app;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod demo;
pub mod http;
pub mod idempotency;
pub mod observability;
pub mod orders;
pub mod policy;
pub mod queue;
pub mod registry;
pub mod state;
pub mod store;
pub mod tags;
pub mod tenants;
pub mod text;
pub mod users;

pub use app::App;
pub use config::Config;
pub use state::AppState;
