//! Built-in pricer: catalog unit price × quantity per line, then bulk tiers
//! per line, then the VIP discount on what remains.
//!
//! Config (all optional):
//! - `vip-discount-bps`: VIP discount in basis points, 0..=10000 (default 500 = 5%).
//! - `bulk-tiers`: `"min_qty:bps,..."`, e.g. `"10:200,50:500"` = from 10 units
//!   on one line 2% off that line, from 50 units 5% (default: none).
//!
//! Discounts are rounded down to whole minor units. A bad config value is a
//! `policy-error::internal`; mixed currencies, a negative price or an
//! arithmetic overflow are `policy-error::invalid-input`.

wit_bindgen::generate!({ world: "pricer", path: "../../wit/1.1.0" });

use exports::ordering::policy::pricing::Guest;
use ordering::policy::host::config;
use ordering::policy::types::{Discount, LinePrice, OrderContext, PolicyError, Quote};

struct Standard;

const FULL_BPS: u32 = 10_000;

fn parse_bps(key: &str, raw: &str) -> Result<u32, PolicyError> {
    match raw.trim().parse::<u32>() {
        Ok(bps) if bps <= FULL_BPS => Ok(bps),
        _ => Err(PolicyError::Internal(format!(
            "config `{key}`: {raw:?} is not basis points in 0..=10000"
        ))),
    }
}

/// Parses `bulk-tiers` into `(min_quantity, bps)` pairs.
fn parse_tiers(raw: &str) -> Result<Vec<(u32, u32)>, PolicyError> {
    let mut tiers = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || PolicyError::Internal(format!("config `bulk-tiers`: bad entry {entry:?}"));
        let (qty, bps) = entry.split_once(':').ok_or_else(bad)?;
        let qty = qty.trim().parse::<u32>().map_err(|_| bad())?;
        tiers.push((qty, parse_bps("bulk-tiers", bps)?));
    }
    Ok(tiers)
}

/// `amount * bps / 10000`, rounded down; `amount` is never negative here.
fn share(amount: i64, bps: u32) -> i64 {
    let part = i128::from(amount) * i128::from(bps) / i128::from(FULL_BPS);
    // bps <= 10000, so the share never exceeds `amount`.
    i64::try_from(part).unwrap_or(amount)
}

fn overflow() -> PolicyError {
    PolicyError::InvalidInput("amount overflows 64-bit minor units".into())
}

impl Guest for Standard {
    fn quote(ctx: OrderContext) -> Result<Quote, PolicyError> {
        let vip_bps = match config("vip-discount-bps") {
            Some(raw) => parse_bps("vip-discount-bps", &raw)?,
            None => 500,
        };
        let tiers = match config("bulk-tiers") {
            Some(raw) => parse_tiers(&raw)?,
            None => Vec::new(),
        };

        let first = ctx
            .lines
            .first()
            .ok_or_else(|| PolicyError::InvalidInput("the order has no lines".into()))?;
        let currency = first.currency.clone();
        let mut lines = Vec::with_capacity(ctx.lines.len());
        let mut discounts = Vec::new();
        let mut net: i64 = 0;
        for (i, line) in ctx.lines.iter().enumerate() {
            let index = u32::try_from(i).map_err(|_| overflow())?;
            if line.currency != currency {
                return Err(PolicyError::InvalidInput(format!(
                    "line {i} is in {}, the order in {currency}",
                    line.currency
                )));
            }
            if line.unit_price < 0 {
                return Err(PolicyError::InvalidInput(format!(
                    "line {i} has a negative price"
                )));
            }
            let subtotal = line
                .unit_price
                .checked_mul(i64::from(line.quantity))
                .ok_or_else(overflow)?;
            lines.push(LinePrice {
                line: index,
                unit_price: line.unit_price,
                quantity: line.quantity,
                subtotal,
            });

            let tier = tiers
                .iter()
                .filter(|(min, _)| line.quantity >= *min)
                .max_by_key(|(min, _)| *min);
            let bulk = tier.map_or(0, |&(_, bps)| share(subtotal, bps));
            if let (Some(&(min, bps)), true) = (tier, bulk > 0) {
                discounts.push(Discount {
                    code: "BULK_DISCOUNT".into(),
                    reason: format!("{bps} bps off for {min} or more units"),
                    amount: bulk,
                    line: Some(index),
                    discount_code: None,
                });
            }
            net = net.checked_add(subtotal - bulk).ok_or_else(overflow)?;
        }

        let vip = if ctx.customer.vip {
            share(net, vip_bps)
        } else {
            0
        };
        if vip > 0 {
            discounts.push(Discount {
                code: "VIP_DISCOUNT".into(),
                reason: format!("{vip_bps} bps VIP discount"),
                amount: vip,
                line: None,
                discount_code: None,
            });
        }
        Ok(Quote {
            lines,
            discounts,
            total: net - vip,
            currency,
            // Codes are not this component's business: the host reports each code it
            // leaves out as CODE_UNKNOWN.
            rejected_codes: Vec::new(),
        })
    }
}

export!(Standard);
