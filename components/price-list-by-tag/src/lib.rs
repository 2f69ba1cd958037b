//! Example tenant pricer (WIT 1.1, world `pricer`): B2B price lists chosen by the
//! customer's tags.
//!
//! # Config
//!
//! - `price-lists` (default: none, so every line keeps its catalog price): a JSON object
//!   mapping a customer tag to a price list, itself an object mapping a SKU to a unit
//!   price (integer >= 0, minor units of the order's currency):
//!
//!   ```json
//!   { "wholesale": { "TEE-RED-M": 800, "MUG-01": 450 },
//!     "reseller":  { "TEE-RED-M": 850 } }
//!   ```
//!
//!   Tags are matched case-insensitively (customer tags are lower-case; the config's are
//!   trimmed and lower-cased here, so two tags differing only in case are a config
//!   error); SKUs exactly. A tag or a SKU that is empty is a config error.
//!
//! A value that is not the JSON above (wrong type, unknown shape, a negative price) fails
//! the quote with `policy-error::internal("config `price-lists`: ...")`; it never panics.
//! The list prices are taken to be in the order's currency: there is no currency check.
//!
//! # Behaviour
//!
//! Every line is priced at its catalog `unit-price`: `line-price.unit-price` is always
//! the catalog price and subtotal = `unit-price × quantity` (checked). No lines, mixed
//! currencies, a negative catalog price or an overflow → `policy-error::invalid-input`.
//!
//! For each line, the lists of the customer's tags that name the line's SKU are looked
//! up; the lowest of their prices is the list price (on a tie, the tag first in the
//! customer's sorted tags names the discount). When the list price is below the catalog
//! price, the line gets one discount `code: "PRICE_LIST"`, `line: some(<index>)`,
//! `discount-code: none`, amount = `(catalog price − list price) × quantity`, reason
//! naming the tag and both unit prices. A list price equal to or above the catalog
//! price is ignored: a price list only ever lowers a price, it never surcharges. Lines
//! of a SKU on several lines each get their own discount. A customer with no listed
//! tag, or a line whose SKU no list names, pays the catalog price.
//!
//! Total = sum of subtotals − the discounts; each discount is at most its line's
//! subtotal, so the total is never below 0.
//!
//! Discount codes are not this component's business: `rejected-codes` is always empty
//! and the host reports every code the client sent as `CODE_UNKNOWN`.
//!
//! Codes this component emits: discount `PRICE_LIST`.

wit_bindgen::generate!({ world: "pricer", path: "../../wit/1.1.0" });

#[path = "../../shared/price_lines.rs"]
mod price_lines;
use price_lines::{overflow, price_lines};

use std::collections::BTreeMap;

use exports::ordering::policy::pricing::Guest;
use ordering::policy::host::config;
use ordering::policy::types::{Discount, OrderContext, PolicyError, Quote};

struct PriceListByTag;

/// Lower-cased tag → SKU → unit price in minor units.
type PriceLists = BTreeMap<String, BTreeMap<String, i64>>;

/// Reads the config through `get` (the host's `config` in the component).
fn load(get: impl Fn(&str) -> Option<String>) -> Result<PriceLists, String> {
    match get("price-lists") {
        Some(raw) => parse_price_lists(&raw).map_err(|e| format!("config `price-lists`: {e}")),
        None => Ok(PriceLists::new()),
    }
}

/// Parses and checks the `price-lists` JSON object.
fn parse_price_lists(raw: &str) -> Result<PriceLists, String> {
    let parsed: PriceLists = serde_json::from_str(raw).map_err(|e| {
        format!("not a JSON object of tag → {{SKU → unit price in minor units}}: {e}")
    })?;
    let mut lists = PriceLists::new();
    for (tag, list) in parsed {
        let key = tag.trim().to_lowercase();
        if key.is_empty() {
            return Err("a tag is empty".into());
        }
        for (sku, price) in &list {
            if sku.is_empty() {
                return Err(format!("tag {tag:?}: a SKU is empty"));
            }
            if *price < 0 {
                return Err(format!(
                    "tag {tag:?}: SKU {sku:?} has a negative price {price}"
                ));
            }
        }
        if lists.insert(key, list).is_some() {
            return Err(format!(
                "tag {tag:?} is given twice (tags are matched case-insensitively)"
            ));
        }
    }
    Ok(lists)
}

/// The lowest list price of `sku` among the lists of `tags`, with the tag whose list
/// gives it (the first such tag in `tags` on a tie).
fn best_price<'a>(lists: &'a PriceLists, tags: &[String], sku: &str) -> Option<(&'a str, i64)> {
    let mut best: Option<(&str, i64)> = None;
    for tag in tags {
        let Some((name, list)) = lists.get_key_value(tag.to_lowercase().as_str()) else {
            continue;
        };
        if let Some(&price) = list.get(sku)
            && best.is_none_or(|(_, p)| price < p)
        {
            best = Some((name.as_str(), price));
        }
    }
    best
}

/// Prices `ctx` with the price lists of `lists`.
fn quote(ctx: &OrderContext, lists: &PriceLists) -> Result<Quote, PolicyError> {
    let (lines, gross, currency) = price_lines(&ctx.lines)?;
    let mut discounts = Vec::new();
    let mut total = gross;
    for (price, line) in lines.iter().zip(&ctx.lines) {
        let Some((tag, list_price)) = best_price(lists, &ctx.customer.tags, &line.sku) else {
            continue;
        };
        if list_price >= line.unit_price {
            continue;
        }
        // 0 <= list price < catalog price, so the saving fits and is at most the subtotal.
        let amount = (line.unit_price - list_price)
            .checked_mul(i64::from(line.quantity))
            .ok_or_else(overflow)?;
        if amount == 0 {
            continue;
        }
        discounts.push(Discount {
            code: "PRICE_LIST".into(),
            reason: format!(
                "price list {tag:?}: {list_price} instead of {} per unit",
                line.unit_price
            ),
            amount,
            line: Some(price.line),
            discount_code: None,
        });
        total -= amount;
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

impl Guest for PriceListByTag {
    fn quote(ctx: OrderContext) -> Result<Quote, PolicyError> {
        let lists = load(config).map_err(PolicyError::Internal)?;
        quote(&ctx, &lists)
    }
}

export!(PriceListByTag);

#[cfg(test)]
mod tests {
    use super::*;
    use ordering::policy::types::{Customer, OrderLine};

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

    fn ctx(lines: Vec<OrderLine>, tags: &[&str]) -> OrderContext {
        OrderContext {
            tenant: "t".into(),
            customer: Customer {
                id: "c".into(),
                vip: false,
                tags: tags.iter().map(|t| t.to_string()).collect(),
                order_count: 0,
                account_age_days: 0,
                lifetime_orders: 0,
                lifetime_spend: Vec::new(),
            },
            lines,
            expected_total: None,
            order_time_ms: 0,
            discount_codes: vec!["IGNORED".into()],
            attributes: Vec::new(),
        }
    }

    fn lists(raw: &str) -> Result<PriceLists, String> {
        let raw = raw.to_string();
        load(move |k| (k == "price-lists").then(|| raw.clone()))
    }

    const LISTS: &str = r#"{
        "Wholesale": {"TEE": 800, "MUG": 450, "CAP": 2000},
        "reseller": {"TEE": 700, "MUG": 500}
    }"#;

    #[test]
    fn lowest_list_price_wins_per_line() {
        let l = lists(LISTS).unwrap();
        let c = ctx(
            vec![
                line("TEE", 2, 1000),
                line("MUG", 3, 600),
                line("CAP", 1, 1500),
                line("X", 1, 99),
            ],
            &["reseller", "wholesale"],
        );
        let q = quote(&c, &l).unwrap();
        assert_eq!(
            q.lines[0].unit_price, 1000,
            "line prices stay the catalog price"
        );
        let got: Vec<_> = q
            .discounts
            .iter()
            .map(|d| (d.code.as_str(), d.line, d.amount, d.discount_code.is_none()))
            .collect();
        assert_eq!(
            got,
            [
                ("PRICE_LIST", Some(0), 600, true),
                ("PRICE_LIST", Some(1), 450, true)
            ]
        );
        assert!(q.discounts[0].reason.contains("reseller"));
        assert!(q.discounts[1].reason.contains("wholesale"));
        assert_eq!(q.total, 2000 + 1800 + 1500 + 99 - 600 - 450);
        assert!(q.rejected_codes.is_empty());
    }

    #[test]
    fn untagged_customer_pays_catalog() {
        let l = lists(LISTS).unwrap();
        let q = quote(&ctx(vec![line("TEE", 2, 1000)], &["other"]), &l).unwrap();
        assert!(q.discounts.is_empty());
        assert_eq!(q.total, 2000);
        let none = load(|_| None).unwrap();
        let q = quote(&ctx(vec![line("TEE", 2, 1000)], &["wholesale"]), &none).unwrap();
        assert_eq!(q.total, 2000);
    }

    #[test]
    fn free_list_price_discounts_whole_line() {
        let l = lists(r#"{"staff": {"TEE": 0}}"#).unwrap();
        let q = quote(&ctx(vec![line("TEE", 3, 1000)], &["staff"]), &l).unwrap();
        assert_eq!(q.discounts[0].amount, 3000);
        assert_eq!(q.total, 0);
    }

    #[test]
    fn bad_config_is_an_error() {
        for bad in [
            "x",
            "[]",
            r#"{"a": []}"#,
            r#"{"a": {"TEE": -1}}"#,
            r#"{"a": {"TEE": "10"}}"#,
            r#"{"a": {"": 10}}"#,
            r#"{" ": {"TEE": 10}}"#,
            r#"{"a": {"TEE": 10}, "A": {"TEE": 11}}"#,
        ] {
            let e = lists(bad).unwrap_err();
            assert!(e.starts_with("config `price-lists`: "), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_orders_are_invalid_input() {
        let l = lists(LISTS).unwrap();
        let mut usd = line("B", 1, 10);
        usd.currency = "USD".into();
        for lines in [
            vec![],
            vec![line("A", 1, 10), usd],
            vec![line("A", 2, i64::MAX)],
        ] {
            assert!(matches!(
                quote(&ctx(lines, &[]), &l),
                Err(PolicyError::InvalidInput(_))
            ));
        }
    }
}
