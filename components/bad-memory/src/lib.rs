//! Misbehaving test component: a validator that allocates and touches 1 MiB
//! blocks until memory growth is refused and the allocator aborts.

wit_bindgen::generate!({ world: "validator", path: "../../wit/1.0.0" });

use std::hint::black_box;

use exports::ordering::policy::validation::Guest;
use ordering::policy::types::{OrderContext, Violation};

struct BadMemory;

const BLOCK: usize = 1 << 20;
const PAGE: usize = 4096;

impl Guest for BadMemory {
    fn validate(_ctx: OrderContext) -> Vec<Violation> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut block = vec![0u8; BLOCK];
            // Write one byte per page so the memory is really used.
            for byte in block.iter_mut().step_by(PAGE) {
                *byte = black_box(1);
            }
            hoard.push(black_box(block));
        }
    }
}

export!(BadMemory);
