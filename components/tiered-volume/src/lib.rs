//! Example tenant pricer (WIT 1.1, world `pricer`): volume tiers per order line,
//! optionally only for lines of some categories.
//!
//! # Config
//!
//! - `tiers` (default: none, so every line keeps its catalog price): a JSON array of
//!   tiers, in any order (they are sorted here):
//!
//!   ```json
//!   [ { "min-units": 10, "percent-bps": 500 },
//!     { "min-units": 50, "percent-bps": 1000 } ]
//!   ```
//!
//!   `min-units`: integer >= 1, no two tiers with the same value; `percent-bps`: integer
//!   1..=10000 (basis points: 500 = 5 %).
//! - `categories` (default: absent = the tiers apply to every line): a non-empty JSON
//!   array of category names, e.g. `["apparel", "accessories"]`; the tiers then apply
//!   only to lines whose catalog `category` is one of them (compared case-insensitively,
//!   surrounding spaces ignored); a line without a category gets no tier.
//!
//! A value that is not the JSON above (unknown field, wrong type, a bound out of range,
//! duplicate `min-units`, an empty `categories` array or name) fails the quote with
//! `policy-error::internal("config `key`: ...")`; it never panics.
//!
//! # Behaviour
//!
//! Every line is priced at its catalog `unit-price`; subtotal = `unit-price × quantity`
//! (checked). No lines, mixed currencies, a negative price or an overflow →
//! `policy-error::invalid-input`.
//!
//! For each line the tiers apply to, the tier with the highest `min-units` that is
//! `<= quantity` gives one discount `code: "VOLUME_TIER"`, `line: some(<index>)`,
//! `discount-code: none`, amount = `subtotal × percent-bps / 10000` rounded down, reason
//! `"N+ units: X % off"` (e.g. `"10+ units: 5 % off"`, `"25+ units: 7.5 % off"`). The
//! quantity is the line's own: two lines of one SKU are not added up. A discount that
//! rounds down to 0 is left out. Total = sum of subtotals − the discounts, never below 0
//! (a discount is at most its line's subtotal).
//!
//! Discount codes are not this component's business: `rejected-codes` is always empty
//! and the host reports every code the client sent as `CODE_UNKNOWN`.
//!
//! Codes this component emits: discount `VOLUME_TIER`.

wit_bindgen::generate!({ world: "pricer", path: "../../wit/1.1.0" });

#[path = "../../shared/price_lines.rs"]
mod price_lines;
use price_lines::price_lines;

use exports::ordering::policy::pricing::Guest;
use ordering::policy::host::config;
use ordering::policy::types::{Discount, OrderContext, OrderLine, PolicyError, Quote};
use serde::Deserialize;

struct TieredVolume;

const FULL_BPS: u32 = 10_000;

/// One tier as written in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Tier {
    min_units: u32,
    percent_bps: u32,
}

/// The whole config, checked.
#[derive(Debug, Default)]
struct Settings {
    /// Sorted by `min_units`, ascending, no duplicates.
    tiers: Vec<Tier>,
    /// Lower-cased, trimmed category names; `None` = every line.
    categories: Option<Vec<String>>,
}

impl Settings {
    /// Reads every key through `get` (the host's `config` in the component).
    fn load(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let tiers = match get("tiers") {
            Some(raw) => parse_tiers(&raw).map_err(|e| format!("config `tiers`: {e}"))?,
            None => Vec::new(),
        };
        let categories = match get("categories") {
            Some(raw) => {
                Some(parse_categories(&raw).map_err(|e| format!("config `categories`: {e}"))?)
            }
            None => None,
        };
        Ok(Settings { tiers, categories })
    }

    /// The tier for `line`, if any.
    fn tier_for(&self, line: &OrderLine) -> Option<Tier> {
        if let Some(categories) = &self.categories {
            let category = line.category.as_deref()?.trim().to_lowercase();
            if !categories.contains(&category) {
                return None;
            }
        }
        self.tiers
            .iter()
            .rev()
            .find(|t| t.min_units <= line.quantity)
            .copied()
    }
}

/// Parses, checks and sorts the `tiers` JSON array.
fn parse_tiers(raw: &str) -> Result<Vec<Tier>, String> {
    let mut tiers: Vec<Tier> = serde_json::from_str(raw).map_err(|e| {
        format!("not a JSON array of {{\"min-units\": N, \"percent-bps\": BPS}}: {e}")
    })?;
    for tier in &tiers {
        if tier.min_units == 0 {
            return Err("`min-units` 0 is not >= 1".into());
        }
        if !(1..=FULL_BPS).contains(&tier.percent_bps) {
            return Err(format!(
                "`percent-bps` {} is not in 1..=10000",
                tier.percent_bps
            ));
        }
    }
    tiers.sort_by_key(|t| t.min_units);
    if let Some(pair) = tiers.windows(2).find(|w| w[0].min_units == w[1].min_units) {
        return Err(format!("two tiers start at {} units", pair[0].min_units));
    }
    Ok(tiers)
}

/// Parses and checks the `categories` JSON array.
fn parse_categories(raw: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = serde_json::from_str(raw)
        .map_err(|e| format!("not a JSON array of category names: {e}"))?;
    if names.is_empty() {
        return Err(
            "the list is empty (leave the key out to apply the tiers to every line)".into(),
        );
    }
    names
        .into_iter()
        .map(|n| match n.trim().to_lowercase() {
            name if name.is_empty() => Err("a category name is empty".to_string()),
            name => Ok(name),
        })
        .collect()
}

/// `amount × bps / 10000`, rounded down; `amount >= 0` and `bps <= 10000`, so the
/// share never exceeds `amount`.
fn share(amount: i64, bps: u32) -> i64 {
    let part = i128::from(amount) * i128::from(bps) / i128::from(FULL_BPS);
    i64::try_from(part).unwrap_or(amount)
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

/// Prices `ctx` with the tiers of `settings`.
fn quote(ctx: &OrderContext, settings: &Settings) -> Result<Quote, PolicyError> {
    let (lines, gross, currency) = price_lines(&ctx.lines)?;
    let mut discounts = Vec::new();
    let mut total = gross;
    for (price, line) in lines.iter().zip(&ctx.lines) {
        let Some(tier) = settings.tier_for(line) else {
            continue;
        };
        let amount = share(price.subtotal, tier.percent_bps);
        if amount == 0 {
            continue;
        }
        discounts.push(Discount {
            code: "VOLUME_TIER".into(),
            reason: format!(
                "{}+ units: {} off",
                tier.min_units,
                percent_text(tier.percent_bps)
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

impl Guest for TieredVolume {
    fn quote(ctx: OrderContext) -> Result<Quote, PolicyError> {
        let settings = Settings::load(config).map_err(PolicyError::Internal)?;
        quote(&ctx, &settings)
    }
}

export!(TieredVolume);

#[cfg(test)]
mod tests {
    use super::*;
    use ordering::policy::types::Customer;

    fn line(quantity: u32, unit_price: i64, category: Option<&str>) -> OrderLine {
        OrderLine {
            product_id: "p".into(),
            stock_id: "s".into(),
            sku: "SKU".into(),
            quantity,
            unit_price,
            currency: "EUR".into(),
            available: 100,
            tags: Vec::new(),
            vendor: None,
            category: category.map(str::to_string),
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

    fn settings(tiers: Option<&str>, categories: Option<&str>) -> Result<Settings, String> {
        let (tiers, categories) = (tiers.map(str::to_string), categories.map(str::to_string));
        Settings::load(move |k| match k {
            "tiers" => tiers.clone(),
            "categories" => categories.clone(),
            _ => None,
        })
    }

    const TIERS: &str = r#"[{"min-units": 50, "percent-bps": 1000},
                            {"min-units": 10, "percent-bps": 500},
                            {"min-units": 25, "percent-bps": 750}]"#;

    #[test]
    fn highest_reached_tier_applies() {
        let s = settings(Some(TIERS), None).unwrap();
        let q = quote(
            &ctx(vec![
                line(9, 100, None),
                line(10, 333, None),
                line(30, 100, Some("x")),
                line(50, 100, None),
            ]),
            &s,
        )
        .unwrap();
        let got: Vec<_> = q
            .discounts
            .iter()
            .map(|d| (d.line, d.amount, d.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Some(1), 166, "10+ units: 5 % off"), // 3330 × 5 % = 166.5, rounded down
                (Some(2), 225, "25+ units: 7.5 % off"),
                (Some(3), 500, "50+ units: 10 % off"),
            ]
        );
        assert!(q.discounts.iter().all(|d| d.code == "VOLUME_TIER"));
        assert_eq!(q.total, 900 + 3330 + 3000 + 5000 - 166 - 225 - 500);
    }

    #[test]
    fn categories_restrict_the_tiers() {
        let s = settings(Some(TIERS), Some(r#"["Apparel", " toys "]"#)).unwrap();
        let q = quote(
            &ctx(vec![
                line(10, 100, Some("apparel")),
                line(10, 100, Some("Food")),
                line(10, 100, None),
                line(10, 100, Some("TOYS")),
            ]),
            &s,
        )
        .unwrap();
        let lines: Vec<_> = q.discounts.iter().map(|d| d.line).collect();
        assert_eq!(lines, [Some(0), Some(3)]);
    }

    #[test]
    fn zero_discounts_are_left_out() {
        let s = settings(Some(r#"[{"min-units": 1, "percent-bps": 1}]"#), None).unwrap();
        let q = quote(&ctx(vec![line(1, 50, None), line(1, 0, None)]), &s).unwrap();
        assert!(q.discounts.is_empty());
        assert_eq!(q.total, 50);
        let q = quote(&ctx(vec![line(1, 50, None)]), &Settings::default()).unwrap();
        assert!(q.discounts.is_empty());
    }

    #[test]
    fn bad_config_is_an_error() {
        for bad in [
            "x",
            "{}",
            r#"[{"min-units": 0, "percent-bps": 100}]"#,
            r#"[{"min-units": 5, "percent-bps": 0}]"#,
            r#"[{"min-units": 5, "percent-bps": 10001}]"#,
            r#"[{"min-units": 5}]"#,
            r#"[{"min-units": 5, "percent-bps": 100, "sku": "A"}]"#,
            r#"[{"min-units": 5, "percent-bps": 100}, {"min-units": 5, "percent-bps": 200}]"#,
        ] {
            let e = settings(Some(bad), None).unwrap_err();
            assert!(e.starts_with("config `tiers`: "), "{bad}: {e}");
        }
        for bad in ["x", "[]", r#"[""]"#, r#"[1]"#, r#""apparel""#] {
            let e = settings(None, Some(bad)).unwrap_err();
            assert!(e.starts_with("config `categories`: "), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_orders_are_invalid_input() {
        let s = settings(Some(TIERS), None).unwrap();
        let mut usd = line(1, 10, None);
        usd.currency = "USD".into();
        for lines in [
            vec![],
            vec![line(1, 10, None), usd],
            vec![line(2, i64::MAX, None)],
            vec![line(1, -5, None)],
        ] {
            assert!(matches!(
                quote(&ctx(lines), &s),
                Err(PolicyError::InvalidInput(_))
            ));
        }
    }
}
