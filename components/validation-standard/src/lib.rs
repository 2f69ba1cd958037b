//! Built-in validator: quantity bounds per line, line count, duplicate stock
//! lines, a single currency and a non-negative expected total.
//!
//! Config (all optional): `min-quantity` (default 1), `max-quantity`
//! (default 100), `max-lines` (default 50). A value that does not parse as an
//! unsigned integer, or `min-quantity > max-quantity`, yields an
//! `INVALID_CONFIG` violation instead of a decision.

wit_bindgen::generate!({ world: "validator", path: "../../wit/1.1.0" });

use std::collections::BTreeMap;

use exports::ordering::policy::validation::Guest;
use ordering::policy::host::config;
use ordering::policy::types::{OrderContext, Violation};

struct Standard;

fn violation(code: &str, message: String, line: Option<usize>) -> Violation {
    Violation {
        code: code.to_string(),
        message,
        line: line.map(|i| u32::try_from(i).unwrap_or(u32::MAX)),
    }
}

/// Reads an unsigned setting, recording an `INVALID_CONFIG` violation if it
/// does not parse.
fn setting(key: &str, default: u32, errors: &mut Vec<Violation>) -> u32 {
    match config(key) {
        None => default,
        Some(raw) => raw.trim().parse().unwrap_or_else(|_| {
            errors.push(violation(
                "INVALID_CONFIG",
                format!("config `{key}` = {raw:?} is not an unsigned integer"),
                None,
            ));
            default
        }),
    }
}

impl Guest for Standard {
    fn validate(ctx: OrderContext) -> Vec<Violation> {
        let mut errors = Vec::new();
        let min = setting("min-quantity", 1, &mut errors);
        let max = setting("max-quantity", 100, &mut errors);
        let max_lines = setting("max-lines", 50, &mut errors);
        if min > max {
            errors.push(violation(
                "INVALID_CONFIG",
                format!("min-quantity {min} is greater than max-quantity {max}"),
                None,
            ));
        }
        // A misconfigured binding decides nothing: judging the order against
        // guessed limits would be worse than rejecting it visibly.
        if !errors.is_empty() {
            return errors;
        }

        let mut out = Vec::new();
        if ctx.lines.is_empty() {
            out.push(violation("NO_LINES", "the order has no lines".into(), None));
        }
        if ctx.lines.len() > max_lines as usize {
            out.push(violation(
                "TOO_MANY_LINES",
                format!("{} lines, at most {max_lines} allowed", ctx.lines.len()),
                Some(max_lines as usize),
            ));
        }
        if let Some(total) = ctx.expected_total.filter(|t| *t < 0) {
            out.push(violation(
                "INVALID_EXPECTED_TOTAL",
                format!("expected total {total} is negative"),
                None,
            ));
        }

        let currency = ctx.lines.first().map(|l| l.currency.as_str());
        let mut first_seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, line) in ctx.lines.iter().enumerate() {
            if line.quantity < min {
                out.push(violation(
                    "QUANTITY_TOO_SMALL",
                    format!("quantity {} of {} is below {min}", line.quantity, line.sku),
                    Some(i),
                ));
            }
            if line.quantity > max {
                out.push(violation(
                    "QUANTITY_TOO_LARGE",
                    format!("quantity {} of {} is above {max}", line.quantity, line.sku),
                    Some(i),
                ));
            }
            if let Some(&first) = first_seen.get(line.stock_id.as_str()) {
                out.push(violation(
                    "DUPLICATE_LINE",
                    format!("stock {} already ordered on line {first}", line.stock_id),
                    Some(i),
                ));
            } else {
                first_seen.insert(&line.stock_id, i);
            }
            if Some(line.currency.as_str()) != currency {
                out.push(violation(
                    "MIXED_CURRENCY",
                    format!(
                        "line currency {} differs from {}",
                        line.currency,
                        currency.unwrap_or_default()
                    ),
                    Some(i),
                ));
            }
        }
        out
    }
}

export!(Standard);
