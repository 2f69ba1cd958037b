//! Example tenant pricer (WIT 1.1, world `pricer`): redeems the discount codes the
//! client sent against a table of coupons in the binding's config.
//!
//! # Config
//!
//! - `codes` (default: none, so every code is rejected as `CODE_UNKNOWN`): a JSON
//!   object mapping a code to its coupon:
//!
//!   ```json
//!   { "SAVE10":  { "percent-bps": 1000, "min-spend": 5000 },
//!     "WELCOME": { "amount": 500, "starts-at-ms": 1767225600000, "ends-at-ms": 1769904000000 },
//!     "CLUB":    { "percent-bps": 1500, "customer-tag": "club" } }
//!   ```
//!
//!   Per coupon, exactly one of
//!   - `percent-bps`: integer 1..=10000, basis points of the order subtotal, or
//!   - `amount`: integer > 0, a fixed amount in minor units of the order's currency;
//!
//!   and optionally
//!   - `min-spend`: integer >= 0 in minor units (default 0): the order subtotal must be
//!     at least this;
//!   - `starts-at-ms` / `ends-at-ms`: Unix epoch milliseconds; the coupon is valid in
//!     `[starts-at-ms, ends-at-ms)` of the host-supplied `order-time-ms` (an unset bound
//!     is open; both set need `starts-at-ms < ends-at-ms`);
//!   - `customer-tag`: non-empty string; only customers with this tag may redeem it.
//!
//!   Codes are matched case-insensitively (the host upper-cases the client's codes;
//!   the config's are trimmed and upper-cased here, so two config codes that differ only
//!   in case are a config error); `customer-tag` is compared lower-cased, as the host
//!   lower-cases customer tags.
//! - `max-codes` (default 1): integer >= 1, how many codes one order may redeem.
//!
//! A missing key takes its default. A value that is not the JSON above (unknown field,
//! wrong type, `percent-bps` and `amount` both or neither, a bound out of range, an empty
//! window, ...) fails the quote with `policy-error::internal("config `key`: ...")`;
//! it never panics.
//!
//! # Behaviour
//!
//! Every line is priced at its catalog `unit-price`; subtotal = `unit-price × quantity`
//! (checked). The order subtotal is the sum of the line subtotals. No lines, mixed
//! currencies, a negative price or an overflow → `policy-error::invalid-input`.
//!
//! Then each code of `ctx.discount-codes`, in the client's order, is checked; the first
//! failing check rejects it (it goes to `rejected-codes` with that reason):
//!
//! 1. not in `codes` → `CODE_UNKNOWN`;
//! 2. `order-time-ms < starts-at-ms` → `CODE_NOT_YET_VALID`; `order-time-ms >=
//!    ends-at-ms` → `CODE_EXPIRED` (messages give the bound as UTC date and time);
//! 3. the customer lacks `customer-tag` → `CODE_NOT_ELIGIBLE`;
//! 4. order subtotal < `min-spend` → `MIN_SPEND_NOT_MET` (message states the minimum and
//!    the subtotal, in minor units);
//! 5. `max-codes` codes are already applied → `CODE_NOT_COMBINABLE`;
//! 6. the discount would be 0 (a percentage that rounds down to 0, or nothing left to
//!    pay) → `CODE_NO_EFFECT`; such a code does not use up one of the `max-codes`.
//!
//! Eligibility (3) is checked before the minimum spend (4), so a customer who may never
//! use a code is not told to spend more.
//!
//! An applied code gives one order-wide discount (`line: none`) with `code: "COUPON"`,
//! `discount-code: some(<the code as the client sent it>)` and a reason naming the code.
//! Its amount is `subtotal × percent-bps / 10000` rounded down, or the fixed `amount`;
//! either is capped at what is left of the total after the codes applied before it. Two
//! percentage codes each take their share of the *subtotal* (they do not compound).
//! So the total = subtotal − the applied discounts, never below 0.
//!
//! Codes this component emits: discount `COUPON`; rejections `CODE_UNKNOWN`,
//! `CODE_NOT_YET_VALID`, `CODE_EXPIRED`, `CODE_NOT_ELIGIBLE`, `MIN_SPEND_NOT_MET`,
//! `CODE_NOT_COMBINABLE`, `CODE_NO_EFFECT`.

wit_bindgen::generate!({ world: "pricer", path: "../../wit/1.1.0" });

#[path = "../../shared/price_lines.rs"]
mod price_lines;
use price_lines::price_lines;

use std::collections::BTreeMap;

use exports::ordering::policy::pricing::Guest;
use ordering::policy::host::config;
use ordering::policy::types::{CodeRejection, Discount, OrderContext, PolicyError, Quote};
use serde::Deserialize;

struct CouponCodes;

const FULL_BPS: u32 = 10_000;

/// One coupon as written in the `codes` JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct CouponSpec {
    percent_bps: Option<u32>,
    amount: Option<i64>,
    min_spend: Option<i64>,
    starts_at_ms: Option<i64>,
    ends_at_ms: Option<i64>,
    customer_tag: Option<String>,
}

/// What a coupon takes off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    /// Basis points of the order subtotal, 1..=10000.
    Percent(u32),
    /// A fixed amount in minor units, > 0.
    Amount(i64),
}

/// A checked coupon.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Coupon {
    value: Value,
    min_spend: i64,
    starts_at_ms: Option<i64>,
    ends_at_ms: Option<i64>,
    customer_tag: Option<String>,
}

/// The whole config of this component, checked.
#[derive(Debug, Default)]
struct Settings {
    /// Upper-cased code → coupon.
    codes: BTreeMap<String, Coupon>,
    max_codes: u32,
}

impl Settings {
    /// Reads every key through `get` (the host's `config` in the component).
    fn load(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let codes = match get("codes") {
            Some(raw) => parse_codes(&raw).map_err(|e| format!("config `codes`: {e}"))?,
            None => BTreeMap::new(),
        };
        let max_codes = match get("max-codes") {
            Some(raw) => match raw.trim().parse::<u32>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Err(format!(
                        "config `max-codes`: {raw:?} is not an integer >= 1"
                    ));
                }
            },
            None => 1,
        };
        Ok(Settings { codes, max_codes })
    }
}

/// Parses and checks the `codes` JSON object.
fn parse_codes(raw: &str) -> Result<BTreeMap<String, Coupon>, String> {
    let specs: BTreeMap<String, CouponSpec> = serde_json::from_str(raw).map_err(|e| {
        format!("not a JSON object of code → {{\"percent-bps\" | \"amount\", ...}}: {e}")
    })?;
    let mut codes = BTreeMap::new();
    for (name, spec) in specs {
        let key = name.trim().to_uppercase();
        if key.is_empty() {
            return Err("a code is empty".into());
        }
        let coupon = check_coupon(spec).map_err(|e| format!("code {name:?}: {e}"))?;
        if codes.insert(key, coupon).is_some() {
            return Err(format!(
                "code {name:?} is given twice (codes are matched case-insensitively)"
            ));
        }
    }
    Ok(codes)
}

fn check_coupon(spec: CouponSpec) -> Result<Coupon, String> {
    let value = match (spec.percent_bps, spec.amount) {
        (Some(bps), None) if (1..=FULL_BPS).contains(&bps) => Value::Percent(bps),
        (Some(bps), None) => return Err(format!("`percent-bps` {bps} is not in 1..=10000")),
        (None, Some(amount)) if amount > 0 => Value::Amount(amount),
        (None, Some(amount)) => return Err(format!("`amount` {amount} is not > 0")),
        (Some(_), Some(_)) => return Err("give `percent-bps` or `amount`, not both".into()),
        (None, None) => return Err("give one of `percent-bps` or `amount`".into()),
    };
    let min_spend = spec.min_spend.unwrap_or(0);
    if min_spend < 0 {
        return Err(format!("`min-spend` {min_spend} is negative"));
    }
    if let (Some(start), Some(end)) = (spec.starts_at_ms, spec.ends_at_ms)
        && start >= end
    {
        return Err(format!(
            "`starts-at-ms` {start} is not before `ends-at-ms` {end}: the window is empty"
        ));
    }
    let customer_tag = match spec.customer_tag {
        Some(tag) if tag.trim().is_empty() => return Err("`customer-tag` is empty".into()),
        Some(tag) => Some(tag.trim().to_lowercase()),
        None => None,
    };
    Ok(Coupon {
        value,
        min_spend,
        starts_at_ms: spec.starts_at_ms,
        ends_at_ms: spec.ends_at_ms,
        customer_tag,
    })
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

/// Unix epoch milliseconds as UTC `YYYY-MM-DDTHH:MM:SSZ` (with `.mmm` when not on a
/// whole second), for messages.
fn utc_text(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Civil date from days since 1970-01-01 (proleptic Gregorian, 400-year eras).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (secs, millis) = (in_day / 1000, in_day % 1000);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if millis == 0 {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
    }
}

fn reject(code: &str, reason: &str, message: String) -> CodeRejection {
    CodeRejection {
        discount_code: code.to_string(),
        reason: reason.to_string(),
        message,
    }
}

/// Prices `ctx` with the coupons of `settings`.
fn quote(ctx: &OrderContext, settings: &Settings) -> Result<Quote, PolicyError> {
    let (lines, gross, currency) = price_lines(&ctx.lines)?;
    let mut left = gross;
    let mut applied: u32 = 0;
    let mut discounts = Vec::new();
    let mut rejected_codes = Vec::new();

    for code in &ctx.discount_codes {
        let Some(coupon) = settings.codes.get(&code.trim().to_uppercase()) else {
            rejected_codes.push(reject(
                code,
                "CODE_UNKNOWN",
                format!("{code} is not a discount code of this shop"),
            ));
            continue;
        };
        if let Some(start) = coupon.starts_at_ms.filter(|s| ctx.order_time_ms < *s) {
            rejected_codes.push(reject(
                code,
                "CODE_NOT_YET_VALID",
                format!("{code} is valid from {}", utc_text(start)),
            ));
            continue;
        }
        if let Some(end) = coupon.ends_at_ms.filter(|e| ctx.order_time_ms >= *e) {
            rejected_codes.push(reject(
                code,
                "CODE_EXPIRED",
                format!("{code} expired at {}", utc_text(end)),
            ));
            continue;
        }
        if let Some(tag) = &coupon.customer_tag
            && !ctx.customer.tags.iter().any(|t| t.to_lowercase() == *tag)
        {
            rejected_codes.push(reject(
                code,
                "CODE_NOT_ELIGIBLE",
                format!("{code} is only for customers tagged {tag:?}"),
            ));
            continue;
        }
        if gross < coupon.min_spend {
            rejected_codes.push(reject(
                code,
                "MIN_SPEND_NOT_MET",
                format!(
                    "{code} needs a minimum spend of {} {currency} minor units; the subtotal is {gross}",
                    coupon.min_spend
                ),
            ));
            continue;
        }
        if applied >= settings.max_codes {
            let limit = settings.max_codes;
            let noun = if limit == 1 { "code" } else { "codes" };
            rejected_codes.push(reject(
                code,
                "CODE_NOT_COMBINABLE",
                format!("at most {limit} discount {noun} per order; {code} was not applied"),
            ));
            continue;
        }
        let (wanted, what) = match coupon.value {
            Value::Percent(bps) => (
                share(gross, bps),
                format!("{} off the subtotal", percent_text(bps)),
            ),
            Value::Amount(amount) => (amount, format!("{amount} {currency} minor units off")),
        };
        let amount = wanted.min(left);
        if amount <= 0 {
            rejected_codes.push(reject(
                code,
                "CODE_NO_EFFECT",
                format!("{code} would take nothing off this order"),
            ));
            continue;
        }
        let capped = if amount < wanted {
            ", capped at what was left to pay"
        } else {
            ""
        };
        discounts.push(Discount {
            code: "COUPON".into(),
            reason: format!("discount code {code}: {what}{capped}"),
            amount,
            line: None,
            discount_code: Some(code.clone()),
        });
        left -= amount;
        applied += 1;
    }

    Ok(Quote {
        lines,
        discounts,
        total: left,
        currency,
        rejected_codes,
    })
}

impl Guest for CouponCodes {
    fn quote(ctx: OrderContext) -> Result<Quote, PolicyError> {
        let settings = Settings::load(config).map_err(PolicyError::Internal)?;
        quote(&ctx, &settings)
    }
}

export!(CouponCodes);

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

    fn ctx(lines: Vec<OrderLine>, codes: &[&str], tags: &[&str], time: i64) -> OrderContext {
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
            order_time_ms: time,
            discount_codes: codes.iter().map(|c| c.to_string()).collect(),
            attributes: Vec::new(),
        }
    }

    fn settings(codes: &str, max: Option<&str>) -> Result<Settings, String> {
        let (codes, max) = (codes.to_string(), max.map(str::to_string));
        Settings::load(move |k| match k {
            "codes" => Some(codes.clone()),
            "max-codes" => max.clone(),
            _ => None,
        })
    }

    fn reasons(q: &Quote) -> Vec<(&str, &str)> {
        q.rejected_codes
            .iter()
            .map(|r| (r.discount_code.as_str(), r.reason.as_str()))
            .collect()
    }

    const CODES: &str = r#"{
        "save10": {"percent-bps": 1000},
        "FIVE": {"amount": 500, "min-spend": 2000},
        "WINDOW": {"amount": 100, "starts-at-ms": 1000, "ends-at-ms": 2000},
        "CLUB": {"percent-bps": 2500, "customer-tag": "Club"}
    }"#;

    #[test]
    fn percent_code_applies_case_insensitively() {
        let s = settings(CODES, None).unwrap();
        let q = quote(&ctx(vec![line("A", 3, 1005)], &["SAVE10"], &[], 0), &s).unwrap();
        assert_eq!(q.discounts.len(), 1);
        let d = &q.discounts[0];
        assert_eq!(d.code, "COUPON");
        assert_eq!(d.amount, 301); // 10 % of 3015, rounded down
        assert_eq!(d.line, None);
        assert_eq!(d.discount_code.as_deref(), Some("SAVE10"));
        assert!(d.reason.contains("SAVE10") && d.reason.contains("10 %"));
        assert_eq!(q.total, 3015 - 301);
        assert!(q.rejected_codes.is_empty());
    }

    #[test]
    fn each_rejection_reason() {
        let s = settings(CODES, None).unwrap();
        let c = ctx(
            vec![line("A", 1, 1000)],
            &["NOPE", "WINDOW", "CLUB", "FIVE"],
            &[],
            5000,
        );
        let q = quote(&c, &s).unwrap();
        assert!(q.discounts.is_empty());
        assert_eq!(
            reasons(&q),
            [
                ("NOPE", "CODE_UNKNOWN"),
                ("WINDOW", "CODE_EXPIRED"),
                ("CLUB", "CODE_NOT_ELIGIBLE"),
                ("FIVE", "MIN_SPEND_NOT_MET"),
            ]
        );
        let min = &q.rejected_codes[3].message;
        assert!(min.contains("2000") && min.contains("1000"), "{min}");
        assert_eq!(q.total, 1000);

        let early = quote(&ctx(vec![line("A", 1, 1000)], &["WINDOW"], &[], 999), &s).unwrap();
        assert_eq!(reasons(&early), [("WINDOW", "CODE_NOT_YET_VALID")]);
        let inside = quote(&ctx(vec![line("A", 1, 1000)], &["WINDOW"], &[], 1000), &s).unwrap();
        assert_eq!(inside.total, 900);
        let at_end = quote(&ctx(vec![line("A", 1, 1000)], &["WINDOW"], &[], 2000), &s).unwrap();
        assert_eq!(reasons(&at_end), [("WINDOW", "CODE_EXPIRED")]);
    }

    #[test]
    fn tag_and_max_codes() {
        let s = settings(CODES, None).unwrap();
        let c = ctx(vec![line("A", 2, 1500)], &["CLUB", "SAVE10"], &["club"], 0);
        let q = quote(&c, &s).unwrap();
        assert_eq!(q.discounts.len(), 1);
        assert_eq!(q.discounts[0].amount, 750);
        assert_eq!(reasons(&q), [("SAVE10", "CODE_NOT_COMBINABLE")]);

        let two = settings(CODES, Some("2")).unwrap();
        let q = quote(&c, &two).unwrap();
        assert_eq!(q.discounts.len(), 2);
        assert_eq!(q.discounts[1].amount, 300); // 10 % of the subtotal, not compounded
        assert_eq!(q.total, 3000 - 750 - 300);
    }

    #[test]
    fn fixed_amount_is_capped_and_zero_is_no_effect() {
        let s = settings(
            r#"{"BIG": {"amount": 5000}, "TINY": {"percent-bps": 1}}"#,
            Some("3"),
        )
        .unwrap();
        let q = quote(&ctx(vec![line("A", 1, 1200)], &["BIG", "TINY"], &[], 0), &s).unwrap();
        assert_eq!(q.discounts.len(), 1);
        assert_eq!(q.discounts[0].amount, 1200);
        assert!(q.discounts[0].reason.contains("capped"));
        assert_eq!(q.total, 0);
        assert_eq!(reasons(&q), [("TINY", "CODE_NO_EFFECT")]);
    }

    #[test]
    fn bad_config_is_an_error() {
        for bad in [
            "not json",
            "[]",
            r#"{"A": {}}"#,
            r#"{"A": {"percent-bps": 10, "amount": 5}}"#,
            r#"{"A": {"percent-bps": 0}}"#,
            r#"{"A": {"percent-bps": 10001}}"#,
            r#"{"A": {"amount": 0}}"#,
            r#"{"A": {"amount": 5, "min-spend": -1}}"#,
            r#"{"A": {"amount": 5, "starts-at-ms": 5, "ends-at-ms": 5}}"#,
            r#"{"A": {"amount": 5, "customer-tag": " "}}"#,
            r#"{"A": {"amount": 5, "colour": "red"}}"#,
            r#"{"a": {"amount": 5}, "A": {"amount": 6}}"#,
            r#"{" ": {"amount": 5}}"#,
        ] {
            let e = settings(bad, None).unwrap_err();
            assert!(e.starts_with("config `codes`: "), "{bad}: {e}");
        }
        for bad in ["0", "-1", "x"] {
            let e = settings("{}", Some(bad)).unwrap_err();
            assert!(e.starts_with("config `max-codes`: "), "{e}");
        }
    }

    #[test]
    fn no_config_rejects_every_code() {
        let s = Settings::load(|_| None).unwrap();
        let q = quote(&ctx(vec![line("A", 1, 10)], &["X"], &[], 0), &s).unwrap();
        assert_eq!(reasons(&q), [("X", "CODE_UNKNOWN")]);
        assert_eq!(q.total, 10);
    }

    #[test]
    fn bad_orders_are_invalid_input() {
        let s = Settings::load(|_| None).unwrap();
        let mut usd = line("B", 1, 10);
        usd.currency = "USD".into();
        for lines in [
            vec![],
            vec![line("A", 1, 10), usd],
            vec![line("A", 1, -1)],
            vec![line("A", 2, i64::MAX)],
        ] {
            assert!(matches!(
                quote(&ctx(lines, &[], &[], 0), &s),
                Err(PolicyError::InvalidInput(_))
            ));
        }
    }

    #[test]
    fn texts() {
        assert_eq!(percent_text(1000), "10 %");
        assert_eq!(percent_text(250), "2.5 %");
        assert_eq!(percent_text(125), "1.25 %");
        assert_eq!(percent_text(1), "0.01 %");
        assert_eq!(utc_text(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_text(1_767_225_600_000), "2026-01-01T00:00:00Z");
        assert_eq!(utc_text(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(utc_text(-1), "1969-12-31T23:59:59.999Z");
        // The extremes format without overflow.
        utc_text(i64::MIN);
        utc_text(i64::MAX);
    }
}
