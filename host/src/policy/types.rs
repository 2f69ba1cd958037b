//! The policy runtime's domain types: what the host hands a component and what it gets
//! back. Only `bindings.rs` converts between these and the generated WIT types. Money is
//! integer minor units throughout.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The version of the `ordering:policy` WIT package, as a literal for `concat!`. The one
/// place it is written in the host; a test checks it against `wit/`.
macro_rules! wit_version {
    () => {
        "1.0.0"
    };
}

/// `ordering:policy/<interface>@<WIT_VERSION>`, as a `&'static str`.
macro_rules! wit_interface {
    ($interface:literal) => {
        concat!(
            "ordering:policy/",
            $interface,
            "@",
            $crate::policy::types::wit_version!()
        )
    };
}
pub(crate) use {wit_interface, wit_version};

/// The version of the `ordering:policy` WIT package this host implements (`wit/`): the
/// contract with components. Not the built-in components' own version
/// (`registry::BUILTIN_VERSION`), which only happens to be the same number today.
pub const WIT_VERSION: &str = wit_version!();

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

    /// The fully qualified interface the component must export.
    pub fn export(self) -> &'static str {
        match self {
            Self::Validation => wit_interface!("validation"),
            Self::Pricing => wit_interface!("pricing"),
            Self::Prioritization => wit_interface!("prioritization"),
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
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
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
}

/// One order line as resolved from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
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
}

/// Everything a hook decides on. The host supplies the order time: components never see
/// a real clock.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
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
            discounted += i128::from(d.amount);
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
    use super::{WIT_VERSION, WORLDS};

    /// `bindgen!` reads `wit/` while the host's strings use `WIT_VERSION`: they must agree.
    #[test]
    fn wit_version_is_the_version_of_the_wit_package() {
        let worlds = include_str!("../../../wit/worlds.wit");
        assert!(
            worlds.starts_with(&format!("package ordering:policy@{WIT_VERSION};")),
            "wit/worlds.wit declares another version than WIT_VERSION {WIT_VERSION}"
        );
    }

    /// Upload validation names worlds from `WORLDS`: it must say what `wit/` says.
    #[test]
    fn worlds_are_the_worlds_of_the_wit_package() {
        let text = include_str!("../../../wit/worlds.wit");
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
                let exports = hooks
                    .iter()
                    .map(|h| match h {
                        super::Hook::Validation => "validation",
                        super::Hook::Pricing => "pricing",
                        super::Hook::Prioritization => "prioritization",
                    })
                    .collect();
                ((*name).to_owned(), exports)
            })
            .collect();
        assert_eq!(ours, declared);
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
