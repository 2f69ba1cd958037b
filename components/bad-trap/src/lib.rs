//! Misbehaving test component: a validator that panics, which traps the
//! instance (wasm32-wasip2 aborts on panic).

wit_bindgen::generate!({ world: "validator", path: "../../wit/1.0.0" });

use exports::ordering::policy::validation::Guest;
use ordering::policy::types::{OrderContext, Violation};

struct BadTrap;

impl Guest for BadTrap {
    fn validate(ctx: OrderContext) -> Vec<Violation> {
        panic!("bad-trap: deliberate panic for tenant {}", ctx.tenant);
    }
}

export!(BadTrap);
