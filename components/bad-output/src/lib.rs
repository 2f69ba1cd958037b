//! Misbehaving test component: a pricer whose quote is well-typed but wrong,
//! with a negative total and a line index past the end of the order. The host
//! must reject it as invalid output.

wit_bindgen::generate!({ world: "pricer", path: "../../wit/1.0.0" });

use exports::ordering::policy::pricing::Guest;
use ordering::policy::types::{LinePrice, OrderContext, PolicyError, Quote};

struct BadOutput;

impl Guest for BadOutput {
    fn quote(ctx: OrderContext) -> Result<Quote, PolicyError> {
        let past_end = u32::try_from(ctx.lines.len())
            .unwrap_or(u32::MAX)
            .saturating_add(7);
        Ok(Quote {
            lines: vec![LinePrice {
                line: past_end,
                unit_price: 100,
                quantity: 1,
                subtotal: 100,
            }],
            discounts: Vec::new(),
            total: -1,
            currency: ctx
                .lines
                .first()
                .map(|l| l.currency.clone())
                .unwrap_or_else(|| "USD".into()),
        })
    }
}

export!(BadOutput);
