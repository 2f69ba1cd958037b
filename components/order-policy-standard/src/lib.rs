//! Built-in `order-policy` component: `validation-standard`, `pricing-standard` and
//! `priority-vip` in one component, so the host can instantiate it once per order and
//! make the three hook calls on that one instance.
//!
//! The three built-ins' sources are compiled here as modules, unchanged: each brings its
//! own `generate!` of its one-hook world and its own `export!`, and the component linker
//! merges the three worlds into one that imports `host` and exports `validation`,
//! `pricing` and `prioritization` — the `order-policy` world of `wit/worlds.wit`. The
//! behaviour is therefore theirs by construction, not a copy that could drift.
//!
//! Config: the union of the three (`min-quantity`, `max-quantity`, `max-lines`;
//! `vip-discount-bps`, `bulk-tiers`; `vip-weight`, `regular-weight`, `tag-weights`).
//! One binding serves all three hooks, so one config table holds them all; no key is
//! read by two of them.

#[path = "../../validation-standard/src/lib.rs"]
mod validation;

#[path = "../../pricing-standard/src/lib.rs"]
mod pricing;

#[path = "../../priority-vip/src/lib.rs"]
mod prioritization;
