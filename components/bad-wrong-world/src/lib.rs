//! Misbehaving test component: exports only `prioritization`, for binding
//! where a validator is expected. Upload validation must refuse it.

wit_bindgen::generate!({ world: "prioritizer", path: "../../wit/1.0.0" });

use exports::ordering::policy::prioritization::Guest;
use ordering::policy::types::OrderContext;

struct WrongWorld;

impl Guest for WrongWorld {
    fn priority(_ctx: OrderContext) -> u32 {
        1
    }
}

export!(WrongWorld);
