//! Every `bindgen!` of the host, and the conversions between the generated WIT types and
//! the domain types in `types.rs`. Nothing outside this file names a generated type: the
//! generated modules are `pub(crate)` and the rest of the policy module sees only
//! [`HookPre`] (wrapping the generated `*Indices` types), [`WitContext`],
//! `add_host_to_linker`, and the host types of `types.rs`.
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
    component::{HasSelf, Instance, InstancePre, Linker},
};

use super::{
    sandbox::CallState,
    types::{Hook, OrderContext as Ctx},
};

/// Where one hook's export sits in a pre-linked component: its index, found and
/// type-checked once when the component is loaded. The host's handle on the generated
/// `*Indices` types, so `engine.rs` never names them. It calls into an [`Instance`] made
/// from the component's one `InstancePre`, so one instance can serve every hook the
/// component exports.
pub(crate) enum HookPre {
    /// Serves `validation`.
    Validation(validator::ValidatorIndices),
    /// Serves `pricing`.
    Pricing(pricer::PricerIndices),
    /// Serves `prioritization`.
    Prioritization(prioritizer::PrioritizerIndices),
}

/// An order context converted once into the guest's type, for every call on it.
pub(crate) struct WitContext(wit::OrderContext);

impl From<&Ctx> for WitContext {
    fn from(ctx: &Ctx) -> Self {
        Self(ctx.into())
    }
}

impl HookPre {
    /// Checks that the pre-linked component exports `hook`'s interface and keeps its index.
    pub(crate) fn new(hook: Hook, pre: &InstancePre<CallState>) -> wasmtime::Result<Self> {
        Ok(match hook {
            Hook::Validation => Self::Validation(validator::ValidatorIndices::new(pre)?),
            Hook::Pricing => Self::Pricing(pricer::PricerIndices::new(pre)?),
            Hook::Prioritization => {
                Self::Prioritization(prioritizer::PrioritizerIndices::new(pre)?)
            }
        })
    }

    /// Calls the hook on `instance` (made from the component's `InstancePre` in `store`).
    pub(crate) fn call(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
        ctx: &WitContext,
    ) -> wasmtime::Result<HookOutput> {
        let wit_ctx = &ctx.0;
        Ok(match self {
            Self::Validation(indices) => {
                let violations = indices
                    .load(&mut *store, instance)?
                    .ordering_policy_validation()
                    .call_validate(&mut *store, wit_ctx)?;
                HookOutput::Violations(violations.into_iter().map(Into::into).collect())
            }
            Self::Pricing(indices) => {
                let quote = indices
                    .load(&mut *store, instance)?
                    .ordering_policy_pricing()
                    .call_quote(&mut *store, wit_ctx)?;
                HookOutput::Quote(quote.map(Into::into).map_err(Into::into))
            }
            Self::Prioritization(indices) => HookOutput::Priority(
                indices
                    .load(&mut *store, instance)?
                    .ordering_policy_prioritization()
                    .call_priority(&mut *store, wit_ctx)?,
            ),
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
