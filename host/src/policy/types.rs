//! The policy runtime's domain types: what the host hands a component and what it gets
//! back. Only `bindings.rs` converts between these and the generated WIT types. Money is
//! integer minor units throughout.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The versions of the `ordering:policy` WIT package the host serves, one directory
/// each under `wit/`. A released version is frozen: a richer contract comes as a new
/// version beside it, and a component built against an older one keeps running
/// (`bindings.rs` has one bindings module per version).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum WitVersion {
    /// `ordering:policy@1.0.0`: the first contract.
    #[serde(rename = "1.0.0")]
    V1_0,
    /// `ordering:policy@1.1.0`: adds discount codes, attributes, customer tags and
    /// history, product tags/vendor/category and per-SKU recent units, code rejections.
    #[serde(rename = "1.1.0")]
    V1_1,
}

impl WitVersion {
    /// Every version served, oldest first.
    pub const ALL: [WitVersion; 2] = [WitVersion::V1_0, WitVersion::V1_1];
    /// The newest version: what the built-ins target and new components should.
    pub const LATEST: WitVersion = WitVersion::V1_1;

    /// The semver string, as in `package ordering:policy@<version>;`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1_0 => "1.0.0",
            Self::V1_1 => "1.1.0",
        }
    }

    /// Reads a semver string of a served version.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// `ordering:policy/<interface>@<version>`.
    pub fn interface(self, interface: &str) -> String {
        format!("ordering:policy/{interface}@{}", self.as_str())
    }
}

impl std::fmt::Display for WitVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The newest version of the `ordering:policy` WIT package this host implements
/// (`wit/1.1.0/`). Not the built-in components' own version
/// (`registry::BUILTIN_VERSION`).
pub const WIT_VERSION: &str = "1.1.0";

/// Largest config of one binding, bytes: every key and value together (a JSON table,
/// such as a price list of a few thousand SKUs, is counted by its JSON text).
pub const MAX_CONFIG_TOTAL_BYTES: usize = 256 << 10;

/// The text a component reads through `config(key)` for a structured value (a table or
/// an array): its compact JSON. Money is integer minor units, so a number that is not an
/// integer is refused wherever it sits; `null` is refused too (leave the key out).
pub fn structured_config_text(value: &serde_json::Value) -> Result<String, String> {
    fn check(value: &serde_json::Value, path: &mut String) -> Result<(), String> {
        match value {
            serde_json::Value::Null => Err(format!("{path}: null is not allowed")),
            serde_json::Value::Number(n) if !(n.is_i64() || n.is_u64()) => Err(format!(
                "{path}: {n} is not an integer (money is integer minor units)"
            )),
            serde_json::Value::Array(items) => items.iter().enumerate().try_for_each(|(i, v)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let r = check(v, path);
                path.truncate(len);
                r
            }),
            serde_json::Value::Object(map) => map.iter().try_for_each(|(k, v)| {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                let r = check(v, path);
                path.truncate(len);
                r
            }),
            _ => Ok(()),
        }
    }
    check(value, &mut String::from("value"))?;
    serde_json::to_string(value).map_err(|e| e.to_string())
}

/// The total size [`MAX_CONFIG_TOTAL_BYTES`] bounds.
pub fn config_bytes(config: &std::collections::BTreeMap<String, String>) -> usize {
    config.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// The hooks a tenant binds components to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// `validation.validate`: reasons to reject an order.
    Validation,
    /// `pricing.quote`: what the customer pays.
    Pricing,
    /// `prioritization.priority`: how soon the order is processed.
    Prioritization,
}

impl Hook {
    /// Every hook, in evaluation order.
    pub const ALL: [Hook; 3] = [Hook::Validation, Hook::Pricing, Hook::Prioritization];

    /// The hook's name as in manifests and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validation => "validation",
            Self::Pricing => "pricing",
            Self::Prioritization => "prioritization",
        }
    }

    /// The fully qualified interface a component of the newest WIT version exports for
    /// this hook.
    pub fn export(self) -> &'static str {
        self.export_in(WitVersion::LATEST)
    }

    /// The fully qualified interface a component of WIT `version` exports for this hook.
    pub fn export_in(self, version: WitVersion) -> &'static str {
        match (version, self) {
            (WitVersion::V1_0, Self::Validation) => "ordering:policy/validation@1.0.0",
            (WitVersion::V1_0, Self::Pricing) => "ordering:policy/pricing@1.0.0",
            (WitVersion::V1_0, Self::Prioritization) => "ordering:policy/prioritization@1.0.0",
            (WitVersion::V1_1, Self::Validation) => "ordering:policy/validation@1.1.0",
            (WitVersion::V1_1, Self::Pricing) => "ordering:policy/pricing@1.1.0",
            (WitVersion::V1_1, Self::Prioritization) => "ordering:policy/prioritization@1.1.0",
        }
    }
}

/// The worlds of the `ordering:policy` package (`wit/worlds.wit`) with the hooks each
/// exports: a component targets a world exactly when it exports that set of hooks.
pub const WORLDS: &[(&str, &[Hook])] = &[
    ("validator", &[Hook::Validation]),
    ("pricer", &[Hook::Pricing]),
    ("prioritizer", &[Hook::Prioritization]),
    (
        "order-policy",
        &[Hook::Validation, Hook::Pricing, Hook::Prioritization],
    ),
];

/// The world a component exporting exactly `hooks` (in `Hook::ALL` order) targets.
pub fn world_exporting(hooks: &[Hook]) -> Option<&'static str> {
    WORLDS
        .iter()
        .find(|(_, exported)| *exported == hooks)
        .map(|(name, _)| *name)
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The customer placing an order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Customer {
    /// Customer id.
    pub id: String,
    /// VIP customer.
    #[serde(default)]
    pub vip: bool,
    /// Free-form tags (e.g. `wholesale`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Orders placed before this one.
    #[serde(default)]
    pub order_count: u32,
    /// Account age in whole days.
    #[serde(default)]
    pub account_age_days: u32,
    /// Orders of this customer that reached CONFIRMED before this one (WIT 1.1).
    #[serde(default)]
    pub lifetime_orders: u32,
    /// What those orders cost, one entry per currency, sorted by currency (WIT 1.1).
    #[serde(default)]
    pub lifetime_spend: Vec<Money>,
}

/// An amount in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Money {
    /// Minor units.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
}

/// A key/value pair the client sent with the order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Attribute {
    /// Key, lower-case.
    pub key: String,
    /// Value.
    pub value: String,
}

/// One order line as resolved from the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderLine {
    /// Product id.
    pub product_id: String,
    /// Stock item id.
    pub stock_id: String,
    /// Merchant SKU.
    pub sku: String,
    /// Requested quantity.
    pub quantity: u32,
    /// Catalog unit price in minor units.
    pub unit_price: i64,
    /// ISO 4217 currency code.
    pub currency: String,
    /// Units available now (informational).
    #[serde(default)]
    pub available: i64,
    /// The product's tags, lower-case, sorted (WIT 1.1).
    #[serde(default)]
    pub tags: Vec<String>,
    /// The product's vendor (WIT 1.1).
    #[serde(default)]
    pub vendor: Option<String>,
    /// The product's category (WIT 1.1).
    #[serde(default)]
    pub category: Option<String>,
    /// Units of this SKU in the customer's confirmed (in whole clock hours) and pending
    /// orders of the last 24 hours (WIT 1.1).
    #[serde(default)]
    pub units_last24h: u32,
    /// Likewise for the 30 days before the order time (WIT 1.1).
    #[serde(default)]
    pub units_last30d: u32,
}

/// Everything a hook decides on. The host supplies the order time: components never see
/// a real clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderContext {
    /// Tenant slug.
    pub tenant: String,
    /// The customer.
    pub customer: Customer,
    /// The lines, in the client's order.
    pub lines: Vec<OrderLine>,
    /// The total the client expects to pay, if it sent one.
    #[serde(default)]
    pub expected_total: Option<i64>,
    /// Order time, unix epoch milliseconds.
    pub order_time_ms: i64,
    /// Discount codes the client sent: trimmed, upper-cased, unique, ≤ 10 (WIT 1.1).
    #[serde(default)]
    pub discount_codes: Vec<String>,
    /// Attributes the client sent, sorted by key, ≤ 20 (WIT 1.1).
    #[serde(default)]
    pub attributes: Vec<Attribute>,
}

/// A reason to reject an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    /// Stable code, e.g. `QUANTITY_TOO_LARGE`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Index of the line it applies to.
    pub line: Option<u32>,
}

/// The price of one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinePrice {
    /// Index into the context's lines.
    pub line: u32,
    /// Unit price charged, minor units.
    pub unit_price: i64,
    /// Quantity priced.
    pub quantity: u32,
    /// `unit_price × quantity`, before discounts.
    pub subtotal: i64,
}

/// A discount and its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Discount {
    /// Stable code, e.g. `VIP`.
    pub code: String,
    /// Reason shown to the customer.
    pub reason: String,
    /// Amount taken off, minor units (positive).
    pub amount: i64,
    /// The line it applies to; order-wide when absent.
    pub line: Option<u32>,
    /// The discount code it redeems; absent for an automatic discount (WIT 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_code: Option<String>,
}

/// A discount code the client sent that the quote does not apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CodeRejection {
    /// The code, as normalised in the context.
    pub discount_code: String,
    /// Stable reason, e.g. `CODE_UNKNOWN`, `MIN_SPEND_NOT_MET`.
    pub reason: String,
    /// Human-readable explanation.
    pub message: String,
}

/// A priced order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quote {
    /// One price per line.
    pub lines: Vec<LinePrice>,
    /// Discounts applied.
    pub discounts: Vec<Discount>,
    /// What the customer pays, minor units.
    pub total: i64,
    /// Currency of every amount.
    pub currency: String,
    /// The context's discount codes the quote does not apply, each with its reason
    /// (WIT 1.1; the host adds `CODE_UNKNOWN` for a code the component left out).
    #[serde(default)]
    pub rejected_codes: Vec<CodeRejection>,
}

/// A pricing component's own refusal (a result, not a fault).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", tag = "kind", content = "message")]
pub enum PricingRefusal {
    /// The context cannot be priced (mixed currencies, overflow, …).
    InvalidInput(String),
    /// The component does not handle this kind of order.
    Unsupported(String),
    /// The component failed on its own terms (e.g. bad configuration).
    Internal(String),
}

/// What a hook returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutput {
    /// Validation: the violations (empty = accept).
    Violations(Vec<Violation>),
    /// Pricing: a quote or the component's refusal.
    Quote(Result<Quote, PricingRefusal>),
    /// Prioritization: higher is sooner.
    Priority(u32),
}

/// Log levels a component may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GuestLogLevel {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

impl Quote {
    /// Accounts for every discount code of `ctx`: a code the quote neither applied nor
    /// rejected (a 1.0 component never sees codes; a 1.1 one may ignore them) is added to
    /// `rejected_codes` as `CODE_UNKNOWN`, so the client learns what happened to each.
    /// Rejections keep the context's order of codes.
    pub fn account_for_codes(&mut self, ctx: &OrderContext) {
        if ctx.discount_codes.is_empty() {
            return;
        }
        let mut rejected = Vec::with_capacity(ctx.discount_codes.len());
        for code in &ctx.discount_codes {
            if self
                .discounts
                .iter()
                .any(|d| d.discount_code.as_ref() == Some(code))
            {
                continue;
            }
            let own = self
                .rejected_codes
                .iter()
                .position(|r| &r.discount_code == code);
            rejected.push(match own {
                Some(i) => self.rejected_codes.swap_remove(i),
                None => CodeRejection {
                    discount_code: code.clone(),
                    reason: "CODE_UNKNOWN".into(),
                    message: "this shop's pricing does not recognise this code".into(),
                },
            });
        }
        self.rejected_codes = rejected;
    }

    /// Checks what the host relies on in a quote: line indexes in range and each line
    /// priced once, non-negative amounts, subtotals that multiply out, discounts that add
    /// up to the difference with the total, one currency. Returns what is wrong.
    pub fn check_against(&self, ctx: &OrderContext) -> Result<(), String> {
        let n = ctx.lines.len();
        if self.lines.len() != n {
            return Err(format!("{} line prices for {n} lines", self.lines.len()));
        }
        let mut seen = vec![false; n];
        let mut gross: i128 = 0;
        for lp in &self.lines {
            let i = lp.line as usize;
            if i >= n {
                return Err(format!("line price for line {} of {n}", lp.line));
            }
            if std::mem::replace(&mut seen[i], true) {
                return Err(format!("line {i} priced twice"));
            }
            if lp.unit_price < 0 || lp.subtotal < 0 {
                return Err(format!("negative price on line {i}"));
            }
            if lp.quantity != ctx.lines[i].quantity {
                return Err(format!(
                    "line {i} priced for {} units, ordered {}",
                    lp.quantity, ctx.lines[i].quantity
                ));
            }
            if i128::from(lp.unit_price) * i128::from(lp.quantity) != i128::from(lp.subtotal) {
                return Err(format!("line {i} subtotal is not unit price × quantity"));
            }
            gross += i128::from(lp.subtotal);
        }
        let mut discounted: i128 = 0;
        for d in &self.discounts {
            if d.amount < 0 {
                return Err(format!("negative discount {}", d.code));
            }
            if d.line.is_some_and(|l| l as usize >= n) {
                return Err(format!("discount {} names a line out of range", d.code));
            }
            if let Some(code) = &d.discount_code
                && !ctx.discount_codes.contains(code)
            {
                return Err(format!(
                    "discount {} redeems {code:?}, which the order did not send",
                    d.code
                ));
            }
            discounted += i128::from(d.amount);
        }
        for rejection in &self.rejected_codes {
            if !ctx.discount_codes.contains(&rejection.discount_code) {
                return Err(format!(
                    "rejects code {:?}, which the order did not send",
                    rejection.discount_code
                ));
            }
            if self
                .discounts
                .iter()
                .any(|d| d.discount_code.as_ref() == Some(&rejection.discount_code))
            {
                return Err(format!(
                    "code {:?} both applied and rejected",
                    rejection.discount_code
                ));
            }
            if rejection.reason.is_empty() || rejection.reason.len() > 64 {
                return Err(format!(
                    "rejection of {:?} has no short reason code",
                    rejection.discount_code
                ));
            }
        }
        if self.total < 0 {
            return Err(format!("negative total {}", self.total));
        }
        if i128::from(self.total) != gross - discounted {
            return Err(format!(
                "total {} is not the subtotals {gross} minus the discounts {discounted}",
                self.total
            ));
        }
        if let Some(line) = ctx.lines.iter().find(|l| l.currency != self.currency) {
            return Err(format!(
                "quote in {}, line in {}",
                self.currency, line.currency
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Hook, WIT_VERSION, WORLDS, WitVersion};

    /// The worlds file of each served version, as `bindgen!` reads it.
    const WORLDS_FILES: [(WitVersion, &str); 2] = [
        (
            WitVersion::V1_0,
            include_str!("../../../wit/1.0.0/worlds.wit"),
        ),
        (
            WitVersion::V1_1,
            include_str!("../../../wit/1.1.0/worlds.wit"),
        ),
    ];

    /// `bindgen!` reads `wit/<version>/` while the host's strings use `WitVersion`: they
    /// must agree, and `WIT_VERSION` is the newest.
    #[test]
    fn wit_versions_are_the_versions_of_the_wit_packages() {
        for (version, worlds) in WORLDS_FILES {
            assert!(
                worlds.starts_with(&format!("package ordering:policy@{version};")),
                "wit/{version}/worlds.wit declares another version"
            );
            for hook in Hook::ALL {
                assert_eq!(
                    hook.export_in(version),
                    version.interface(hook.as_str()),
                    "{hook} in {version}"
                );
            }
        }
        assert_eq!(WIT_VERSION, WitVersion::LATEST.as_str());
        assert_eq!(WitVersion::ALL.last(), Some(&WitVersion::LATEST));
    }

    /// Upload validation names worlds from `WORLDS`: it must say what every version of
    /// `wit/` says.
    #[test]
    fn worlds_are_the_worlds_of_the_wit_packages() {
        for (version, text) in WORLDS_FILES {
            let mut declared = Vec::new();
            for block in text.split("world ").skip(1) {
                let name = block.split_whitespace().next().unwrap_or_default();
                let body = &block[..block.find('}').unwrap_or(block.len())];
                let exports: Vec<&str> = body
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("export "))
                    .map(|e| e.trim_end_matches(';'))
                    .collect();
                declared.push((name.to_owned(), exports));
            }
            let ours: Vec<(String, Vec<&str>)> = WORLDS
                .iter()
                .map(|(name, hooks)| {
                    let exports = hooks.iter().map(|h| h.as_str()).collect();
                    ((*name).to_owned(), exports)
                })
                .collect();
            assert_eq!(ours, declared, "worlds of {version}");
        }
    }
}

/// A line a component wrote with `host.log` during one call (capped in count and length
/// like the service's own log of it), kept for the order's decision log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, ToSchema)]
pub struct GuestLogLine {
    /// Level.
    pub level: GuestLogLevel,
    /// The message.
    pub message: String,
}
