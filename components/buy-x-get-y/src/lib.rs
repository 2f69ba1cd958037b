//! Example tenant pricer (WIT 1.1, world `pricer`): "buy X units of one SKU, get Y
//! units of another (or the same) SKU free or reduced".
//!
//! # Config
//!
//! - `offers` (default: none, so every line keeps its catalog price): a JSON array of
//!   offers, applied in this order:
//!
//!   ```json
//!   [ { "buy-sku": "TEE", "buy-quantity": 2, "get-sku": "TEE", "get-quantity": 1 },
//!     { "buy-sku": "CAMERA", "buy-quantity": 1, "get-sku": "SD-CARD", "get-quantity": 1,
//!       "percent-bps": 5000, "max-applications": 1 } ]
//!   ```
//!
//!   - `buy-sku`, `get-sku`: non-empty SKUs, matched exactly (may be equal);
//!   - `buy-quantity`, `get-quantity`: integers >= 1;
//!   - `percent-bps` (default 10000 = free): integer 1..=10000, basis points off each
//!     discounted unit;
//!   - `max-applications` (default: unlimited): integer >= 1, how often the offer may
//!     apply in one order.
//!
//! A value that is not the JSON above (unknown field, missing field, wrong type, a bound
//! out of range) fails the quote with `policy-error::internal("config `offers`: ...")`;
//! it never panics.
//!
//! # Behaviour
//!
//! Every line is priced at its catalog `unit-price`; subtotal = `unit-price × quantity`
//! (checked). No lines, mixed currencies, a negative price or an overflow →
//! `policy-error::invalid-input`.
//!
//! For each offer, in config order, units are counted over the whole order (all lines
//! of a SKU added up):
//!
//! - `buy-sku` ≠ `get-sku`: applications = ⌊units of `buy-sku` / `buy-quantity`⌋;
//! - `buy-sku` = `get-sku`: units counted as bought cannot also be discounted, so
//!   applications = ⌊units / (`buy-quantity` + `get-quantity`)⌋ (buy 2 get 1 with 5
//!   units: 1 application; with 6: 2);
//!
//! capped by `max-applications`. Discounted units = min(applications × `get-quantity`,
//! units of `get-sku` not yet discounted by an earlier offer): one unit is discounted
//! by at most one offer (the first in the array). Units needed only to qualify (the
//! "buy" side) are not used up, so one unit of `buy-sku` may qualify for several offers.
//!
//! The discounted units are taken from the lines of `get-sku` in order: all from the
//! first such line while it has units left, then from the next. Each line touched gets
//! one discount `code: "BUY_X_GET_Y"`, `line: some(<index>)`, `discount-code: none`,
//! amount = `units taken from that line × its unit-price × percent-bps / 10000` rounded
//! down, reason like `"buy 2 × TEE, get 1 × TEE free (1 unit)"` or
//! `"buy 1 × CAMERA, get 1 × SD-CARD at 50 % off (1 unit)"`. A discount that rounds
//! down to 0 is left out. A discount is never more than its line's subtotal, so the
//! total = sum of subtotals − the discounts is never below 0.
//!
//! Discount codes are not this component's business: `rejected-codes` is always empty
//! and the host reports every code the client sent as `CODE_UNKNOWN`.
//!
//! Codes this component emits: discount `BUY_X_GET_Y`.

wit_bindgen::generate!({ world: "pricer", path: "../../wit/1.1.0" });

#[path = "../../shared/price_lines.rs"]
mod price_lines;
use price_lines::{overflow, price_lines};

use exports::ordering::policy::pricing::Guest;
use ordering::policy::host::config;
use ordering::policy::types::{Discount, OrderContext, OrderLine, PolicyError, Quote};
use serde::Deserialize;

struct BuyXGetY;

const FULL_BPS: u32 = 10_000;

/// One offer as written in the config (and, once checked, as used).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Offer {
    buy_sku: String,
    buy_quantity: u32,
    get_sku: String,
    get_quantity: u32,
    #[serde(default = "full")]
    percent_bps: u32,
    max_applications: Option<u32>,
}

fn full() -> u32 {
    FULL_BPS
}

/// Reads the config through `get` (the host's `config` in the component).
fn load(get: impl Fn(&str) -> Option<String>) -> Result<Vec<Offer>, String> {
    match get("offers") {
        Some(raw) => parse_offers(&raw).map_err(|e| format!("config `offers`: {e}")),
        None => Ok(Vec::new()),
    }
}

/// Parses and checks the `offers` JSON array.
fn parse_offers(raw: &str) -> Result<Vec<Offer>, String> {
    let offers: Vec<Offer> = serde_json::from_str(raw).map_err(|e| {
        format!(
            "not a JSON array of {{\"buy-sku\", \"buy-quantity\", \"get-sku\", \"get-quantity\", ...}}: {e}"
        )
    })?;
    for (i, offer) in offers.iter().enumerate() {
        let problem = if offer.buy_sku.is_empty() || offer.get_sku.is_empty() {
            Some("`buy-sku` and `get-sku` must not be empty".to_string())
        } else if offer.buy_quantity == 0 || offer.get_quantity == 0 {
            Some("`buy-quantity` and `get-quantity` must be >= 1".to_string())
        } else if !(1..=FULL_BPS).contains(&offer.percent_bps) {
            Some(format!(
                "`percent-bps` {} is not in 1..=10000",
                offer.percent_bps
            ))
        } else if offer.max_applications == Some(0) {
            Some("`max-applications` must be >= 1 (leave it out for no cap)".to_string())
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(format!("offer {i}: {problem}"));
        }
    }
    Ok(offers)
}

/// `1000` → `"10 %"`, `250` → `"2.5 %"`, `125` → `"1.25 %"`.
fn percent_text(bps: u32) -> String {
    let (whole, frac) = (bps / 100, bps % 100);
    if frac == 0 {
        format!("{whole} %")
    } else if frac % 10 == 0 {
        format!("{whole}.{} %", frac / 10)
    } else {
        format!("{whole}.{frac:02} %")
    }
}

/// How many units of `offer.get_sku` the offer discounts, before looking at which units
/// are still available.
fn discountable_units(offer: &Offer, lines: &[OrderLine]) -> u64 {
    let bought: u64 = lines
        .iter()
        .filter(|l| l.sku == offer.buy_sku)
        .map(|l| u64::from(l.quantity))
        .sum();
    let per_application = if offer.buy_sku == offer.get_sku {
        u64::from(offer.buy_quantity) + u64::from(offer.get_quantity)
    } else {
        u64::from(offer.buy_quantity)
    };
    let mut applications = bought / per_application.max(1);
    if let Some(max) = offer.max_applications {
        applications = applications.min(u64::from(max));
    }
    applications.saturating_mul(u64::from(offer.get_quantity))
}

/// Prices `ctx` with `offers`.
fn quote(ctx: &OrderContext, offers: &[Offer]) -> Result<Quote, PolicyError> {
    let (lines, gross, currency) = price_lines(&ctx.lines)?;
    // Units per line not yet discounted by an offer.
    let mut undiscounted: Vec<u64> = ctx.lines.iter().map(|l| u64::from(l.quantity)).collect();
    let mut discounts = Vec::new();
    let mut total = gross;
    for offer in offers {
        let mut wanted = discountable_units(offer, &ctx.lines);
        let what = if offer.percent_bps == FULL_BPS {
            "free".to_string()
        } else {
            format!("at {} off", percent_text(offer.percent_bps))
        };
        for ((line, left), price) in ctx.lines.iter().zip(&mut undiscounted).zip(&lines) {
            if wanted == 0 {
                break;
            }
            if line.sku != offer.get_sku || *left == 0 {
                continue;
            }
            let units = wanted.min(*left);
            wanted -= units;
            *left -= units;
            // units <= quantity, so units × unit price <= the line's subtotal, and the
            // share is at most that.
            let amount =
                i128::from(line.unit_price) * i128::from(units) * i128::from(offer.percent_bps)
                    / i128::from(FULL_BPS);
            let amount = i64::try_from(amount).map_err(|_| overflow())?;
            if amount == 0 {
                continue;
            }
            let noun = if units == 1 { "unit" } else { "units" };
            discounts.push(Discount {
                code: "BUY_X_GET_Y".into(),
                reason: format!(
                    "buy {} × {}, get {} × {} {what} ({units} {noun})",
                    offer.buy_quantity, offer.buy_sku, offer.get_quantity, offer.get_sku
                ),
                amount,
                line: Some(price.line),
                discount_code: None,
            });
            total = total.checked_sub(amount).ok_or_else(overflow)?;
        }
    }
    Ok(Quote {
        lines,
        discounts,
        total,
        currency,
        // Codes are not this component's business: the host reports each one as
        // CODE_UNKNOWN.
        rejected_codes: Vec::new(),
    })
}

impl Guest for BuyXGetY {
    fn quote(ctx: OrderContext) -> Result<Quote, PolicyError> {
        let offers = load(config).map_err(PolicyError::Internal)?;
        quote(&ctx, &offers)
    }
}

export!(BuyXGetY);

#[cfg(test)]
mod tests {
    use super::*;
    use ordering::policy::types::Customer;

    fn line(sku: &str, quantity: u32, unit_price: i64) -> OrderLine {
        OrderLine {
            product_id: format!("p-{sku}"),
            stock_id: format!("s-{sku}"),
            sku: sku.into(),
            quantity,
            unit_price,
            currency: "EUR".into(),
            available: 100,
            tags: Vec::new(),
            vendor: None,
            category: None,
            units_last24h: 0,
            units_last30d: 0,
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

    fn offers(raw: &str) -> Result<Vec<Offer>, String> {
        let raw = raw.to_string();
        load(move |k| (k == "offers").then(|| raw.clone()))
    }

    fn summary(q: &Quote) -> Vec<(Option<u32>, i64)> {
        q.discounts.iter().map(|d| (d.line, d.amount)).collect()
    }

    #[test]
    fn same_sku_counts_bought_units_once() {
        let o = offers(
            r#"[{"buy-sku": "TEE", "buy-quantity": 2, "get-sku": "TEE", "get-quantity": 1}]"#,
        )
        .unwrap();
        for (units, free) in [(2, 0), (3, 1), (5, 1), (6, 2), (9, 3)] {
            let q = quote(&ctx(vec![line("TEE", units, 1000)]), &o).unwrap();
            let expected: Vec<_> = (free > 0)
                .then_some((Some(0), free * 1000))
                .into_iter()
                .collect();
            assert_eq!(summary(&q), expected, "{units} units");
            assert_eq!(q.total, i64::from(units) * 1000 - free * 1000);
        }
        let q = quote(&ctx(vec![line("TEE", 3, 1000)]), &o).unwrap();
        assert_eq!(q.discounts[0].code, "BUY_X_GET_Y");
        assert_eq!(
            q.discounts[0].reason,
            "buy 2 × TEE, get 1 × TEE free (1 unit)"
        );
    }

    #[test]
    fn other_sku_limited_by_units_ordered_and_cap() {
        let o = offers(
            r#"[{"buy-sku": "CAM", "buy-quantity": 1, "get-sku": "SD", "get-quantity": 2,
                 "percent-bps": 5000, "max-applications": 2}]"#,
        )
        .unwrap();
        // 3 cameras → 3 applications, capped at 2 → 4 units; only 3 SD ordered.
        let q = quote(&ctx(vec![line("SD", 3, 999), line("CAM", 3, 50_000)]), &o).unwrap();
        assert_eq!(summary(&q), [(Some(0), 1498)]); // 3 × 999 × 50 % = 1498.5, rounded down
        assert!(q.discounts[0].reason.ends_with("at 50 % off (3 units)"));
        // No camera, no discount.
        let q = quote(&ctx(vec![line("SD", 3, 999)]), &o).unwrap();
        assert!(q.discounts.is_empty());
    }

    #[test]
    fn units_spill_to_later_lines_and_are_discounted_once() {
        let o = offers(
            r#"[{"buy-sku": "A", "buy-quantity": 1, "get-sku": "B", "get-quantity": 1},
                {"buy-sku": "C", "buy-quantity": 1, "get-sku": "B", "get-quantity": 5}]"#,
        )
        .unwrap();
        let q = quote(
            &ctx(vec![
                line("B", 1, 100),
                line("A", 2, 10),
                line("B", 3, 100),
                line("C", 1, 10),
            ]),
            &o,
        )
        .unwrap();
        // Offer 1: 2 units → line 0 (1), line 2 (1). Offer 2: 5 wanted, 2 left on line 2.
        assert_eq!(
            summary(&q),
            [(Some(0), 100), (Some(2), 100), (Some(2), 200)]
        );
        assert_eq!(q.total, 100 + 20 + 300 + 10 - 400);
    }

    #[test]
    fn no_offers_prices_at_catalog() {
        let q = quote(&ctx(vec![line("A", 2, 10)]), &offers("[]").unwrap()).unwrap();
        assert!(q.discounts.is_empty());
        assert_eq!(q.total, 20);
        assert!(load(|_| None).unwrap().is_empty());
    }

    #[test]
    fn bad_config_is_an_error() {
        for bad in [
            "x",
            "{}",
            r#"[{"buy-sku": "A", "buy-quantity": 1, "get-sku": "B"}]"#,
            r#"[{"buy-sku": "", "buy-quantity": 1, "get-sku": "B", "get-quantity": 1}]"#,
            r#"[{"buy-sku": "A", "buy-quantity": 0, "get-sku": "B", "get-quantity": 1}]"#,
            r#"[{"buy-sku": "A", "buy-quantity": 1, "get-sku": "B", "get-quantity": 0}]"#,
            r#"[{"buy-sku": "A", "buy-quantity": 1, "get-sku": "B", "get-quantity": 1, "percent-bps": 0}]"#,
            r#"[{"buy-sku": "A", "buy-quantity": 1, "get-sku": "B", "get-quantity": 1, "percent-bps": 10001}]"#,
            r#"[{"buy-sku": "A", "buy-quantity": 1, "get-sku": "B", "get-quantity": 1, "max-applications": 0}]"#,
            r#"[{"buy-sku": "A", "buy-quantity": 1, "get-sku": "B", "get-quantity": 1, "free": true}]"#,
        ] {
            let e = offers(bad).unwrap_err();
            assert!(e.starts_with("config `offers`: "), "{bad}: {e}");
        }
    }

    #[test]
    fn extremes_do_not_overflow() {
        let o = offers(
            r#"[{"buy-sku": "A", "buy-quantity": 1, "get-sku": "A", "get-quantity": 4294967295}]"#,
        )
        .unwrap();
        let q = quote(&ctx(vec![line("A", u32::MAX, 2); 2]), &o).unwrap();
        assert_eq!(summary(&q), [(Some(0), 2 * i64::from(u32::MAX))]);
        let mut usd = line("B", 1, 10);
        usd.currency = "USD".into();
        for lines in [
            vec![],
            vec![line("A", 1, 10), usd],
            vec![line("A", 2, i64::MAX)],
        ] {
            assert!(matches!(
                quote(&ctx(lines), &o),
                Err(PolicyError::InvalidInput(_))
            ));
        }
    }
}
