//! The catalog pricing the example pricers start from, compiled into each of them with
//! `#[path = "../../shared/price_lines.rs"] mod price_lines;` (as `order-policy-standard`
//! compiles the built-ins): one source, while each example stays one crate. It names the
//! WIT types through `crate::`, which every crate's `generate!` of
//! `ordering:policy@1.1.0` provides alike.

use crate::ordering::policy::types::{LinePrice, OrderLine, PolicyError};

/// An arithmetic overflow, as the pricers report it.
pub(crate) fn overflow() -> PolicyError {
    PolicyError::InvalidInput("amount overflows 64-bit minor units".into())
}

/// Catalog prices of `lines`: the line prices, their sum and their one currency.
pub(crate) fn price_lines(
    lines: &[OrderLine],
) -> Result<(Vec<LinePrice>, i64, String), PolicyError> {
    let first = lines
        .first()
        .ok_or_else(|| PolicyError::InvalidInput("the order has no lines".into()))?;
    let currency = first.currency.clone();
    let mut prices = Vec::with_capacity(lines.len());
    let mut gross: i64 = 0;
    for (i, line) in lines.iter().enumerate() {
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
        gross = gross.checked_add(subtotal).ok_or_else(overflow)?;
        prices.push(LinePrice {
            line: u32::try_from(i).map_err(|_| overflow())?,
            unit_price: line.unit_price,
            quantity: line.quantity,
            subtotal,
        });
    }
    Ok((prices, gross, currency))
}
