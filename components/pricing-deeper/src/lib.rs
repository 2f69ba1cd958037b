//! Example pricer for dry runs and canaries: exactly `pricing-standard` (catalog price,
//! bulk tiers, VIP discount, same config), then 10 % more off what remains
//! (`DEEPER_DISCOUNT`, rounded down to whole minor units). E.g. 2 × 10.00 for a regular
//! customer: 20.00 − 2.00 = 18.00; for a VIP with the default 5 %: 20.00 − 1.00 = 19.00,
//! then − 1.90 = 17.10.
//!
//! Config: as `pricing-standard` (`vip-discount-bps`, `bulk-tiers`).

wit_bindgen::generate!({ world: "pricer", path: "../../wit/1.0.0" });

use exports::ordering::policy::pricing::Guest;
use ordering::policy::host::config;
use ordering::policy::types::{Discount, LinePrice, OrderContext, PolicyError, Quote};

struct Deeper;

const FULL_BPS: u32 = 10_000;
/// The extra discount, basis points.
const DEEPER_BPS: u32 = 1_000;

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

impl Guest for Deeper {
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
            });
        }
        let after_vip = net - vip;
        let deeper = share(after_vip, DEEPER_BPS);
        if deeper > 0 {
            discounts.push(Discount {
                code: "DEEPER_DISCOUNT".into(),
                reason: format!("{DEEPER_BPS} bps off everything"),
                amount: deeper,
                line: None,
            });
        }
        Ok(Quote {
            lines,
            discounts,
            total: after_vip - deeper,
            currency,
        })
    }
}

export!(Deeper);
