//! Example tenant rule: during a flash sale, at most `max-units` of each
//! listed SKU per order line.
//!
//! Config: `skus` (comma-separated; default none, so the rule does nothing),
//! `max-units` (default 2), `starts-at-ms` / `ends-at-ms` (Unix epoch ms; the
//! window is `[start, end)`, an unset bound is open). The time compared is the
//! host-supplied `order-time-ms`. A bad value yields `INVALID_CONFIG`.

wit_bindgen::generate!({ world: "validator", path: "../../wit/1.0.0" });

use std::str::FromStr;

use exports::ordering::policy::validation::Guest;
use ordering::policy::host::config;
use ordering::policy::types::{OrderContext, Violation};

struct FlashSale;

fn setting<T: FromStr>(key: &str, default: T) -> Result<T, Violation> {
    match config(key) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|_| Violation {
            code: "INVALID_CONFIG".into(),
            message: format!("config `{key}` = {raw:?} is not a number"),
            line: None,
        }),
    }
}

impl Guest for FlashSale {
    fn validate(ctx: OrderContext) -> Vec<Violation> {
        let (max_units, start, end) = match (
            setting("max-units", 2u32),
            setting("starts-at-ms", i64::MIN),
            setting("ends-at-ms", i64::MAX),
        ) {
            (Ok(m), Ok(s), Ok(e)) => (m, s, e),
            (m, s, e) => return [m.err(), s.err(), e.err()].into_iter().flatten().collect(),
        };
        if !(start..end).contains(&ctx.order_time_ms) {
            return Vec::new();
        }
        let skus = config("skus").unwrap_or_default();
        let listed: Vec<&str> = skus
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();

        ctx.lines
            .iter()
            .enumerate()
            .filter(|(_, line)| listed.contains(&line.sku.as_str()) && line.quantity > max_units)
            .map(|(i, line)| Violation {
                code: "FLASH_SALE_LIMIT".into(),
                message: format!(
                    "flash sale: at most {max_units} of {} per order, got {}",
                    line.sku, line.quantity
                ),
                line: Some(u32::try_from(i).unwrap_or(u32::MAX)),
            })
            .collect()
    }
}

export!(FlashSale);
