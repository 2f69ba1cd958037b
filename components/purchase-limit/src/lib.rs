//! Example tenant validator (WIT 1.1, world `validator`): caps how many units of a SKU
//! one customer buys within a rolling window of 24 hours or 30 days.
//!
//! # Config
//!
//! - `limits` (default: none): a JSON object mapping a SKU (matched exactly) to its limit:
//!
//!   ```json
//!   { "GPU-4090": { "max-units": 2, "window": "24h" },
//!     "TEE-RED-M": { "max-units": 20, "window": "30d" } }
//!   ```
//!
//!   `max-units`: integer 0..=4294967295 (0 = the SKU may not be bought at all);
//!   `window`: `"24h"` or `"30d"`. Both fields are required.
//! - `default` (default: none): one limit of the same shape, e.g.
//!   `{ "max-units": 10, "window": "30d" }`, for every SKU that `limits` does not list.
//!
//! With neither key set the component accepts every order. A value that is not the JSON
//! above (unknown field, a window other than the two, an empty SKU, ...) yields one
//! `INVALID_CONFIG` violation per bad key (with `line: none`) and no other decision:
//! judging orders against a guessed limit would be worse than rejecting them visibly.
//! It never panics.
//!
//! # Behaviour
//!
//! Lines are grouped by SKU. For a SKU with a limit, the units the customer already
//! bought are the line's `units-last24h` or `units-last30d` (per the limit's window; the
//! host gives every line of one SKU the same figure, and should they differ the largest
//! is used). Walking the SKU's lines in order and adding up their quantities, the first
//! line at which `already + units so far > max-units` gets one violation
//! `PURCHASE_LIMIT_EXCEEDED` (`line: some(<that line's index>)`) with the message
//! `"at most N of SKU per 24 hours; you bought A, this order asks for Q"` (`30 days` for
//! the other window), where Q is the SKU's quantity over the whole order. At most one
//! violation per SKU; other SKUs are judged independently. Sums are done in 64 bits, so
//! they cannot overflow.
//!
//! Codes this component emits: `PURCHASE_LIMIT_EXCEEDED`, `INVALID_CONFIG`.

wit_bindgen::generate!({ world: "validator", path: "../../wit/1.1.0" });

use std::collections::BTreeMap;

use exports::ordering::policy::validation::Guest;
use ordering::policy::host::config;
use ordering::policy::types::{OrderContext, OrderLine, Violation};
use serde::Deserialize;

struct PurchaseLimit;

/// The rolling window a limit counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum Window {
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "30d")]
    Month,
}

impl Window {
    fn text(self) -> &'static str {
        match self {
            Window::Day => "24 hours",
            Window::Month => "30 days",
        }
    }

    /// Units of the line's SKU the customer bought in this window before the order.
    fn already(self, line: &OrderLine) -> u32 {
        match self {
            Window::Day => line.units_last24h,
            Window::Month => line.units_last30d,
        }
    }
}

/// One limit as written in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Limit {
    max_units: u32,
    window: Window,
}

/// The whole config, checked.
#[derive(Debug, Default)]
struct Settings {
    limits: BTreeMap<String, Limit>,
    default: Option<Limit>,
}

impl Settings {
    /// Reads every key through `get` (the host's `config` in the component); the error
    /// is one message per bad key.
    fn load(get: impl Fn(&str) -> Option<String>) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let limits = match get("limits").map(|raw| parse_limits(&raw)) {
            None => BTreeMap::new(),
            Some(Ok(limits)) => limits,
            Some(Err(e)) => {
                errors.push(format!("config `limits`: {e}"));
                BTreeMap::new()
            }
        };
        let default = match get("default").map(|raw| serde_json::from_str::<Limit>(&raw)) {
            None => None,
            Some(Ok(limit)) => Some(limit),
            Some(Err(e)) => {
                errors.push(format!(
                    "config `default`: not a JSON object {{\"max-units\": N, \"window\": \"24h\" | \"30d\"}}: {e}"
                ));
                None
            }
        };
        if errors.is_empty() {
            Ok(Settings { limits, default })
        } else {
            Err(errors)
        }
    }

    fn limit_for(&self, sku: &str) -> Option<Limit> {
        self.limits.get(sku).copied().or(self.default)
    }
}

/// Parses and checks the `limits` JSON object.
fn parse_limits(raw: &str) -> Result<BTreeMap<String, Limit>, String> {
    let limits: BTreeMap<String, Limit> = serde_json::from_str(raw).map_err(|e| {
        format!(
            "not a JSON object of SKU → {{\"max-units\": N, \"window\": \"24h\" | \"30d\"}}: {e}"
        )
    })?;
    if limits.contains_key("") {
        return Err("a SKU is empty".into());
    }
    Ok(limits)
}

fn violation(code: &str, message: String, line: Option<usize>) -> Violation {
    Violation {
        code: code.to_string(),
        message,
        line: line.map(|i| u32::try_from(i).unwrap_or(u32::MAX)),
    }
}

/// Judges `ctx` against `settings`.
fn validate(ctx: &OrderContext, settings: &Settings) -> Vec<Violation> {
    // SKU → indexes of its lines, in order.
    let mut by_sku: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, line) in ctx.lines.iter().enumerate() {
        by_sku.entry(line.sku.as_str()).or_default().push(i);
    }
    let mut found: Vec<(usize, Violation)> = Vec::new();
    for (sku, indexes) in by_sku {
        let Some(limit) = settings.limit_for(sku) else {
            continue;
        };
        let lines = indexes.iter().filter_map(|&i| ctx.lines.get(i));
        let already = lines
            .clone()
            .map(|l| limit.window.already(l))
            .max()
            .unwrap_or(0);
        let asked: u64 = lines.map(|l| u64::from(l.quantity)).sum();
        let mut so_far = u64::from(already);
        for &i in &indexes {
            so_far += ctx.lines.get(i).map_or(0, |l| u64::from(l.quantity));
            if so_far > u64::from(limit.max_units) {
                let message = format!(
                    "at most {} of {sku} per {}; you bought {already}, this order asks for {asked}",
                    limit.max_units,
                    limit.window.text()
                );
                found.push((i, violation("PURCHASE_LIMIT_EXCEEDED", message, Some(i))));
                break;
            }
        }
    }
    // Report in line order, not SKU order.
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, v)| v).collect()
}

impl Guest for PurchaseLimit {
    fn validate(ctx: OrderContext) -> Vec<Violation> {
        match Settings::load(config) {
            Ok(settings) => validate(&ctx, &settings),
            Err(errors) => errors
                .into_iter()
                .map(|e| violation("INVALID_CONFIG", e, None))
                .collect(),
        }
    }
}

export!(PurchaseLimit);

#[cfg(test)]
mod tests {
    use super::*;
    use ordering::policy::types::Customer;

    fn line(sku: &str, quantity: u32, day: u32, month: u32) -> OrderLine {
        OrderLine {
            product_id: format!("p-{sku}"),
            stock_id: format!("s-{sku}"),
            sku: sku.into(),
            quantity,
            unit_price: 100,
            currency: "EUR".into(),
            available: 100,
            tags: Vec::new(),
            vendor: None,
            category: None,
            units_last24h: day,
            units_last30d: month,
        }
    }

    fn ctx(lines: Vec<OrderLine>) -> OrderContext {
        OrderContext {
            tenant: "t".into(),
            customer: Customer {
                id: "c".into(),
                vip: false,
                tags: Vec::new(),
                order_count: 0,
                account_age_days: 0,
                lifetime_orders: 0,
                lifetime_spend: Vec::new(),
            },
            lines,
            expected_total: None,
            order_time_ms: 0,
            discount_codes: Vec::new(),
            attributes: Vec::new(),
        }
    }

    fn settings(limits: Option<&str>, default: Option<&str>) -> Result<Settings, Vec<String>> {
        let (limits, default) = (limits.map(str::to_string), default.map(str::to_string));
        Settings::load(move |k| match k {
            "limits" => limits.clone(),
            "default" => default.clone(),
            _ => None,
        })
    }

    fn summary(v: &[Violation]) -> Vec<(&str, Option<u32>)> {
        v.iter().map(|v| (v.code.as_str(), v.line)).collect()
    }

    const LIMITS: &str = r#"{"GPU": {"max-units": 2, "window": "24h"},
                             "TEE": {"max-units": 10, "window": "30d"}}"#;

    #[test]
    fn history_plus_quantity_over_limit() {
        let s = settings(Some(LIMITS), None).unwrap();
        assert!(validate(&ctx(vec![line("GPU", 1, 1, 50)]), &s).is_empty());
        let v = validate(&ctx(vec![line("GPU", 2, 1, 0)]), &s);
        assert_eq!(summary(&v), [("PURCHASE_LIMIT_EXCEEDED", Some(0))]);
        assert_eq!(
            v[0].message,
            "at most 2 of GPU per 24 hours; you bought 1, this order asks for 2"
        );
        let v = validate(&ctx(vec![line("X", 9, 0, 0), line("TEE", 3, 0, 8)]), &s);
        assert_eq!(summary(&v), [("PURCHASE_LIMIT_EXCEEDED", Some(1))]);
        assert!(v[0].message.contains("per 30 days; you bought 8"));
    }

    #[test]
    fn lines_of_one_sku_add_up() {
        let s = settings(Some(LIMITS), None).unwrap();
        let c = ctx(vec![
            line("TEE", 4, 0, 2),
            line("GPU", 1, 0, 0),
            line("TEE", 4, 0, 2),
            line("TEE", 4, 0, 2),
        ]);
        // 2 + 4 + 4 = 10 is still allowed; the third TEE line goes over.
        let v = validate(&c, &s);
        assert_eq!(summary(&v), [("PURCHASE_LIMIT_EXCEEDED", Some(3))]);
        assert!(
            v[0].message
                .ends_with("you bought 2, this order asks for 12")
        );
    }

    #[test]
    fn default_applies_to_unlisted_skus() {
        let s = settings(Some(LIMITS), Some(r#"{"max-units": 0, "window": "24h"}"#)).unwrap();
        let v = validate(
            &ctx(vec![
                line("OTHER", 1, 0, 0),
                line("GPU", 2, 0, 0),
                line("TEE", 11, 0, 0),
            ]),
            &s,
        );
        assert_eq!(
            summary(&v),
            [
                ("PURCHASE_LIMIT_EXCEEDED", Some(0)),
                ("PURCHASE_LIMIT_EXCEEDED", Some(2))
            ]
        );
        let none = settings(None, None).unwrap();
        assert!(validate(&ctx(vec![line("GPU", u32::MAX, u32::MAX, 0)]), &none).is_empty());
    }

    #[test]
    fn no_overflow_at_the_extremes() {
        let s = settings(
            Some(r#"{"GPU": {"max-units": 4294967295, "window": "24h"}}"#),
            None,
        )
        .unwrap();
        let v = validate(&ctx(vec![line("GPU", u32::MAX, u32::MAX, 0); 3]), &s);
        assert_eq!(summary(&v), [("PURCHASE_LIMIT_EXCEEDED", Some(0))]);
    }

    #[test]
    fn bad_config_is_reported_per_key() {
        for bad in [
            "x",
            "[]",
            r#"{"GPU": {"max-units": 2}}"#,
            r#"{"GPU": {"max-units": 2, "window": "7d"}}"#,
            r#"{"GPU": {"max-units": -1, "window": "24h"}}"#,
            r#"{"GPU": {"max-units": 2, "window": "24h", "per": "order"}}"#,
            r#"{"": {"max-units": 2, "window": "24h"}}"#,
        ] {
            let e = settings(Some(bad), None).unwrap_err();
            assert_eq!(e.len(), 1);
            assert!(e[0].starts_with("config `limits`: "), "{bad}: {e:?}");
        }
        let e = settings(Some("x"), Some(r#"{"max-units": 1}"#)).unwrap_err();
        assert_eq!(e.len(), 2);
        assert!(e[1].starts_with("config `default`: "));
    }
}
