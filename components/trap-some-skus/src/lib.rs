//! Test component: a validator that traps (panics, which aborts the instance on
//! wasm32-wasip2) when an order has a line whose SKU its config lists, and accepts
//! every other order. Its failure depends on the input, so one binding can fail and
//! then recover: the breaker tests send the listed SKU to open the breaker and another
//! one to let its probes succeed.
//!
//! Config: `skus` (comma-separated; default none, so it never traps).

wit_bindgen::generate!({ world: "validator", path: "../../wit/1.0.0" });

use exports::ordering::policy::validation::Guest;
use ordering::policy::host::config;
use ordering::policy::types::{OrderContext, Violation};

struct TrapSomeSkus;

impl Guest for TrapSomeSkus {
    fn validate(ctx: OrderContext) -> Vec<Violation> {
        let skus = config("skus").unwrap_or_default();
        let listed: Vec<&str> = skus
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(line) = ctx.lines.iter().find(|l| listed.contains(&l.sku.as_str())) {
            panic!("trap-some-skus: deliberate panic on SKU {}", line.sku);
        }
        Vec::new()
    }
}

export!(TrapSomeSkus);
