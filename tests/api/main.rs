//! The one integration test binary: black-box tests against a real orderhost on a
//! loopback port, each on a fresh SQLite file and on a fresh PostgreSQL database (with
//! the real Redis). Set `TEST_LOG=1` to see the service's logs.

mod helpers;

mod auth;
mod bindings;
mod breaker;
mod canary;
mod catalog;
mod cli;
mod console;
mod dead_letters;
mod decisions;
mod demo;
mod dependency;
mod deploy;
mod dry_run;
mod durability;
mod examples;
mod hardening;
mod health_docs;
mod http_edge;
mod observability;
mod ops_cli;
mod order_policy;
mod orders;
mod r#override;
mod plans;
mod policy;
mod queue;
mod redis_faults;
mod registry;
mod replicas;
mod rules;
mod shadow;
mod users;
