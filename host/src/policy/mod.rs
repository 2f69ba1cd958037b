//! The policy runtime: merchant rules (validation, pricing, prioritization) run as
//! WebAssembly components behind the WIT package in `wit/`.
//!
//! - `engine`: the only module that touches wasmtime (engine, linker, per-call store).
//! - `bindings`: every `bindgen!` and the conversions to the domain types in `types`.
//! - `registry`: built-in and dropped-in components, compiled and pre-linked once.
//! - `manifest`: the strict TOML binding files in `policies/`.
//! - `runtime`: the active binding set (swapped atomically) and evaluation.
//! - `routes`: `POST /admin/policy/evaluate`.

pub mod bindings;
pub mod engine;
pub mod manifest;
pub mod registry;
mod routes;
pub mod runtime;
pub mod types;

pub use engine::{FaultKind, Limits, PolicyFault};
pub use routes::{router, unavailable};
pub use runtime::{EvalMode, Evaluation, PolicyRuntime};
