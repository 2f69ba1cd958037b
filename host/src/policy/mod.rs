//! The policy runtime: merchant rules (validation, pricing, prioritization) run as
//! WebAssembly components behind the WIT package in `wit/`.
//!
//! - `engine`: the process-wide wasmtime half: engine, linker, epoch ticker, compile
//!   cache, and running a call in a fresh store with fuel and an epoch deadline.
//! - `sandbox`: what one call's store holds: WASI context (grants nothing), memory
//!   limiter, pinned clocks, capped stdout/stderr, guest log/config, the random seed.
//! - `bindings`: every `bindgen!` and the conversions to the domain types in `types`;
//!   private to the crate, so no generated type leaves it.
//! - `types`: the host's own types (context, outputs, hooks) and `WIT_VERSION`.
//! - `registry`: built-in and dropped-in components, compiled and pre-linked once.
//! - `manifest`: the strict TOML binding files in `policies/`.
//! - `runtime`: the active binding set (swapped atomically) and evaluation.
//! - `breaker`: a circuit breaker per binding (per process) and
//!   `GET /admin/tenants/{tenant}/breakers`.
//! - `routes`: `POST /admin/policy/evaluate`.

pub(crate) mod bindings;
pub mod breaker;
pub mod canary;
pub mod engine;
pub mod manifest;
pub mod registry;
mod routes;
pub mod runtime;
mod sandbox;
pub mod shadow;
pub mod types;

pub use engine::{FaultKind, Limits, PolicyFault};
pub use routes::{router, unavailable};
pub use runtime::{
    Binding, BindingLayer, BindingUse, DatabaseBindings, EvalMode, Evaluation, HookMap, Override,
    PolicyRuntime,
};
