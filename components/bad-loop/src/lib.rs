//! Misbehaving test component: a validator that never returns. The host must
//! stop it with fuel or the epoch deadline.

wit_bindgen::generate!({ world: "validator", path: "../../wit/1.0.0" });

use exports::ordering::policy::validation::Guest;
use ordering::policy::types::{OrderContext, Violation};

struct BadLoop;

impl Guest for BadLoop {
    fn validate(_ctx: OrderContext) -> Vec<Violation> {
        let mut spins: u64 = 0;
        loop {
            // black_box keeps the optimizer from proving the loop pointless.
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
    }
}

export!(BadLoop);
