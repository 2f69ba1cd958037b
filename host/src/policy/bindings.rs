//! Every `bindgen!` of the host, and the conversions between the generated WIT types and
//! the domain types in `types.rs`. Nothing outside this file names a generated type: the
//! generated modules are `pub(crate)` and the rest of the policy module sees only
//! [`HookPre`] (wrapping the generated `*Pre` types), `add_host_to_linker`, and the host
//! types of `types.rs`.
//!
//! One module per world; the `ordering:policy/types` and `ordering:policy/host`
//! interfaces are generated once (with the validator world) and shared by the others via
//! `with`, so there is one `Host` trait and one set of types.

#![allow(missing_docs)]

use super::types::{
    Customer, Discount, GuestLogLevel, HookOutput, LinePrice, OrderContext, OrderLine,
    PricingRefusal, Quote, Violation,
};

/// Bindings of the `validator` world (and the shared `types`/`host` interfaces).
pub(crate) mod validator {
    wasmtime::component::bindgen!({
        world: "validator",
        path: "../wit",
    });
}

/// Bindings of the `pricer` world.
pub(crate) mod pricer {
    wasmtime::component::bindgen!({
        world: "pricer",
        path: "../wit",
        with: {
            "ordering:policy/types": super::validator::ordering::policy::types,
            "ordering:policy/host": super::validator::ordering::policy::host,
        },
    });
}

/// Bindings of the `prioritizer` world.
pub(crate) mod prioritizer {
    wasmtime::component::bindgen!({
        world: "prioritizer",
        path: "../wit",
        with: {
            "ordering:policy/types": super::validator::ordering::policy::types,
            "ordering:policy/host": super::validator::ordering::policy::host,
        },
    });
}

use validator::ordering::policy::types as wit;
use wasmtime::{
    Store,
    component::{HasSelf, InstancePre, Linker},
};

use super::{
    sandbox::CallState,
    types::{Hook, OrderContext as Ctx},
};

/// A component pre-linked for one hook: instantiating it is the only per-call work left.
/// The host's handle on the generated `*Pre` types, so `engine.rs` never names them.
pub(crate) enum HookPre {
    /// Serves `validation`.
    Validation(validator::ValidatorPre<CallState>),
    /// Serves `pricing`.
    Pricing(pricer::PricerPre<CallState>),
    /// Serves `prioritization`.
    Prioritization(prioritizer::PrioritizerPre<CallState>),
}

impl HookPre {
    /// Checks that the pre-linked component exports `hook`'s interface and keeps it ready.
    pub(crate) fn new(hook: Hook, pre: InstancePre<CallState>) -> wasmtime::Result<Self> {
        Ok(match hook {
            Hook::Validation => Self::Validation(validator::ValidatorPre::new(pre)?),
            Hook::Pricing => Self::Pricing(pricer::PricerPre::new(pre)?),
            Hook::Prioritization => Self::Prioritization(prioritizer::PrioritizerPre::new(pre)?),
        })
    }

    /// Instantiates the component in `store` and calls the hook.
    pub(crate) fn call(
        &self,
        store: &mut Store<CallState>,
        ctx: &Ctx,
    ) -> wasmtime::Result<HookOutput> {
        let wit_ctx = wit::OrderContext::from(ctx);
        Ok(match self {
            Self::Validation(pre) => {
                let instance = pre.instantiate(&mut *store)?;
                let violations = instance
                    .ordering_policy_validation()
                    .call_validate(&mut *store, &wit_ctx)?;
                HookOutput::Violations(violations.into_iter().map(Into::into).collect())
            }
            Self::Pricing(pre) => {
                let instance = pre.instantiate(&mut *store)?;
                let quote = instance
                    .ordering_policy_pricing()
                    .call_quote(&mut *store, &wit_ctx)?;
                HookOutput::Quote(quote.map(Into::into).map_err(Into::into))
            }
            Self::Prioritization(pre) => {
                let instance = pre.instantiate(&mut *store)?;
                HookOutput::Priority(
                    instance
                        .ordering_policy_prioritization()
                        .call_priority(&mut *store, &wit_ctx)?,
                )
            }
        })
    }
}

/// Adds `ordering:policy/host` (and the type-only `types` instance) to the linker.
pub(crate) fn add_host_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    validator::Validator::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)
}

impl validator::ordering::policy::types::Host for CallState {}

impl validator::ordering::policy::host::Host for CallState {
    fn log(&mut self, level: wit::LogLevel, message: String) {
        self.guest_log(level.into(), &message);
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config_value(&key)
    }
}

impl From<&Customer> for wit::Customer {
    fn from(c: &Customer) -> Self {
        Self {
            id: c.id.clone(),
            vip: c.vip,
            tags: c.tags.clone(),
            order_count: c.order_count,
            account_age_days: c.account_age_days,
        }
    }
}

impl From<&OrderLine> for wit::OrderLine {
    fn from(l: &OrderLine) -> Self {
        Self {
            product_id: l.product_id.clone(),
            stock_id: l.stock_id.clone(),
            sku: l.sku.clone(),
            quantity: l.quantity,
            unit_price: l.unit_price,
            currency: l.currency.clone(),
            available: l.available,
        }
    }
}

impl From<&OrderContext> for wit::OrderContext {
    fn from(ctx: &OrderContext) -> Self {
        Self {
            tenant: ctx.tenant.clone(),
            customer: (&ctx.customer).into(),
            lines: ctx.lines.iter().map(Into::into).collect(),
            expected_total: ctx.expected_total,
            order_time_ms: ctx.order_time_ms,
        }
    }
}

impl From<wit::Violation> for Violation {
    fn from(v: wit::Violation) -> Self {
        Self {
            code: v.code,
            message: v.message,
            line: v.line,
        }
    }
}

impl From<wit::Quote> for Quote {
    fn from(q: wit::Quote) -> Self {
        Self {
            lines: q
                .lines
                .into_iter()
                .map(|l| LinePrice {
                    line: l.line,
                    unit_price: l.unit_price,
                    quantity: l.quantity,
                    subtotal: l.subtotal,
                })
                .collect(),
            discounts: q
                .discounts
                .into_iter()
                .map(|d| Discount {
                    code: d.code,
                    reason: d.reason,
                    amount: d.amount,
                    line: d.line,
                })
                .collect(),
            total: q.total,
            currency: q.currency,
        }
    }
}

impl From<wit::PolicyError> for PricingRefusal {
    fn from(e: wit::PolicyError) -> Self {
        match e {
            wit::PolicyError::InvalidInput(m) => Self::InvalidInput(m),
            wit::PolicyError::Unsupported(m) => Self::Unsupported(m),
            wit::PolicyError::Internal(m) => Self::Internal(m),
        }
    }
}

impl From<wit::LogLevel> for GuestLogLevel {
    fn from(l: wit::LogLevel) -> Self {
        match l {
            wit::LogLevel::Trace => Self::Trace,
            wit::LogLevel::Debug => Self::Debug,
            wit::LogLevel::Info => Self::Info,
            wit::LogLevel::Warn => Self::Warn,
            wit::LogLevel::Error => Self::Error,
        }
    }
}
