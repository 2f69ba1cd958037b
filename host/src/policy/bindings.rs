//! Every `bindgen!` of the host, and the conversions between the generated WIT types and
//! the domain types in `types.rs`. Nothing outside this file names a generated type: the
//! generated modules are `pub(crate)` and the rest of the policy module sees only
//! [`HookPre`] (wrapping the generated `*Indices` types), [`WitContext`],
//! `add_host_to_linker`, and the host types of `types.rs`.
//!
//! One bindings module per served WIT version (`v1_0` from `wit/1.0.0/`, `v1_1` from
//! `wit/1.1.0/`), each with one module per world; within a version the
//! `ordering:policy/types` and `ordering:policy/host` interfaces are generated once (with
//! the validator world) and shared by the others via `with`, so each version has one
//! `Host` trait and one set of types. [`HookPre`] is the one enum over the versions: a
//! component's version is read from the interfaces it exports when it is loaded
//! (`engine.rs`), and its calls go through that version's bindings. The domain types
//! are the newest version's; a 1.0 component gets the context without 1.1's fields and
//! its quote reads as one without discount codes.

#![allow(missing_docs)]

use std::cell::OnceCell;

use super::types::{
    Attribute, CodeRejection, Customer, Discount, GuestLogLevel, HookOutput, LinePrice, Money,
    OrderContext, OrderLine, PricingRefusal, Quote, Violation, WitVersion,
};

/// The three one-hook worlds of one WIT version.
macro_rules! worlds {
    ($path:tt) => {
        /// Bindings of the `validator` world (and the shared `types`/`host` interfaces).
        pub(crate) mod validator {
            wasmtime::component::bindgen!({
                world: "validator",
                path: $path,
            });
        }

        /// Bindings of the `pricer` world.
        pub(crate) mod pricer {
            wasmtime::component::bindgen!({
                world: "pricer",
                path: $path,
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
                path: $path,
                with: {
                    "ordering:policy/types": super::validator::ordering::policy::types,
                    "ordering:policy/host": super::validator::ordering::policy::host,
                },
            });
        }

        pub(crate) use validator::ordering::policy::types as wit;
    };
}

/// `ordering:policy@1.0.0`, frozen.
pub(crate) mod v1_0 {
    worlds!("../wit/1.0.0");
}

/// `ordering:policy@1.1.0`.
pub(crate) mod v1_1 {
    worlds!("../wit/1.1.0");
}

use wasmtime::{
    Store,
    component::{HasSelf, Instance, InstancePre, Linker},
};

use super::{
    sandbox::CallState,
    types::{Hook, OrderContext as Ctx},
};

/// Where one hook's export sits in a pre-linked component: its index, found and
/// type-checked once when the component is loaded, in the bindings of the component's
/// WIT version. The host's handle on the generated `*Indices` types, so `engine.rs`
/// never names them. It calls into an [`Instance`] made from the component's one
/// `InstancePre`, so one instance can serve every hook the component exports.
pub(crate) enum HookPre {
    /// Serves `validation@1.0.0`.
    Validation1_0(v1_0::validator::ValidatorIndices),
    /// Serves `pricing@1.0.0`.
    Pricing1_0(v1_0::pricer::PricerIndices),
    /// Serves `prioritization@1.0.0`.
    Prioritization1_0(v1_0::prioritizer::PrioritizerIndices),
    /// Serves `validation@1.1.0`.
    Validation1_1(v1_1::validator::ValidatorIndices),
    /// Serves `pricing@1.1.0`.
    Pricing1_1(v1_1::pricer::PricerIndices),
    /// Serves `prioritization@1.1.0`.
    Prioritization1_1(v1_1::prioritizer::PrioritizerIndices),
}

/// An order context converted into a guest's types, once per version, for every call on
/// it (the first call of each version converts).
pub(crate) struct WitContext<'a> {
    ctx: &'a Ctx,
    v1_0: OnceCell<v1_0::wit::OrderContext>,
    v1_1: OnceCell<v1_1::wit::OrderContext>,
}

impl<'a> WitContext<'a> {
    /// The context, not converted yet.
    pub(crate) fn new(ctx: &'a Ctx) -> Self {
        Self {
            ctx,
            v1_0: OnceCell::new(),
            v1_1: OnceCell::new(),
        }
    }

    fn v1_0(&self) -> &v1_0::wit::OrderContext {
        self.v1_0.get_or_init(|| self.ctx.into())
    }

    fn v1_1(&self) -> &v1_1::wit::OrderContext {
        self.v1_1.get_or_init(|| self.ctx.into())
    }
}

/// Loads the indices' exports from `instance` and calls the hook's function on the
/// context of the indices' version: the same few lines for every (version, hook).
macro_rules! call_hook {
    ($store:ident, $instance:ident, $indices:ident, $interface:ident, $func:ident, $ctx:expr) => {
        $indices
            .load(&mut *$store, $instance)?
            .$interface()
            .$func(&mut *$store, $ctx)?
    };
}

impl HookPre {
    /// Checks that the pre-linked component exports `hook`'s interface of `version` and
    /// keeps its index.
    pub(crate) fn new(
        hook: Hook,
        version: WitVersion,
        pre: &InstancePre<CallState>,
    ) -> wasmtime::Result<Self> {
        Ok(match (version, hook) {
            (WitVersion::V1_0, Hook::Validation) => {
                Self::Validation1_0(v1_0::validator::ValidatorIndices::new(pre)?)
            }
            (WitVersion::V1_0, Hook::Pricing) => {
                Self::Pricing1_0(v1_0::pricer::PricerIndices::new(pre)?)
            }
            (WitVersion::V1_0, Hook::Prioritization) => {
                Self::Prioritization1_0(v1_0::prioritizer::PrioritizerIndices::new(pre)?)
            }
            (WitVersion::V1_1, Hook::Validation) => {
                Self::Validation1_1(v1_1::validator::ValidatorIndices::new(pre)?)
            }
            (WitVersion::V1_1, Hook::Pricing) => {
                Self::Pricing1_1(v1_1::pricer::PricerIndices::new(pre)?)
            }
            (WitVersion::V1_1, Hook::Prioritization) => {
                Self::Prioritization1_1(v1_1::prioritizer::PrioritizerIndices::new(pre)?)
            }
        })
    }

    /// Calls the hook on `instance` (made from the component's `InstancePre` in `store`).
    pub(crate) fn call(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
        ctx: &WitContext<'_>,
    ) -> wasmtime::Result<HookOutput> {
        Ok(match self {
            Self::Validation1_0(i) => {
                let violations = call_hook!(
                    store,
                    instance,
                    i,
                    ordering_policy_validation,
                    call_validate,
                    ctx.v1_0()
                );
                HookOutput::Violations(violations.into_iter().map(Into::into).collect())
            }
            Self::Validation1_1(i) => {
                let violations = call_hook!(
                    store,
                    instance,
                    i,
                    ordering_policy_validation,
                    call_validate,
                    ctx.v1_1()
                );
                HookOutput::Violations(violations.into_iter().map(Into::into).collect())
            }
            Self::Pricing1_0(i) => {
                let quote = call_hook!(
                    store,
                    instance,
                    i,
                    ordering_policy_pricing,
                    call_quote,
                    ctx.v1_0()
                );
                HookOutput::Quote(quote.map(Into::into).map_err(Into::into))
            }
            Self::Pricing1_1(i) => {
                let quote = call_hook!(
                    store,
                    instance,
                    i,
                    ordering_policy_pricing,
                    call_quote,
                    ctx.v1_1()
                );
                HookOutput::Quote(quote.map(Into::into).map_err(Into::into))
            }
            Self::Prioritization1_0(i) => HookOutput::Priority(call_hook!(
                store,
                instance,
                i,
                ordering_policy_prioritization,
                call_priority,
                ctx.v1_0()
            )),
            Self::Prioritization1_1(i) => HookOutput::Priority(call_hook!(
                store,
                instance,
                i,
                ordering_policy_prioritization,
                call_priority,
                ctx.v1_1()
            )),
        })
    }
}

/// Adds `ordering:policy/host` (and the type-only `types` instance) of every served
/// version to the linker: each version's imports resolve to their exact version.
pub(crate) fn add_host_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    v1_0::validator::Validator::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    v1_1::validator::Validator::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)
}

/// What is the same in every version: the host interface and the types 1.1 left as they
/// were (violation, policy error, log level).
macro_rules! common {
    ($v:ident) => {
        impl $v::wit::Host for CallState {}

        impl $v::validator::ordering::policy::host::Host for CallState {
            fn log(&mut self, level: $v::wit::LogLevel, message: String) {
                self.guest_log(level.into(), &message);
            }

            fn config(&mut self, key: String) -> Option<String> {
                self.config_value(&key)
            }
        }

        impl From<$v::wit::Violation> for Violation {
            fn from(v: $v::wit::Violation) -> Self {
                Self {
                    code: v.code,
                    message: v.message,
                    line: v.line,
                }
            }
        }

        impl From<$v::wit::PolicyError> for PricingRefusal {
            fn from(e: $v::wit::PolicyError) -> Self {
                match e {
                    $v::wit::PolicyError::InvalidInput(m) => Self::InvalidInput(m),
                    $v::wit::PolicyError::Unsupported(m) => Self::Unsupported(m),
                    $v::wit::PolicyError::Internal(m) => Self::Internal(m),
                }
            }
        }

        impl From<$v::wit::LogLevel> for GuestLogLevel {
            fn from(l: $v::wit::LogLevel) -> Self {
                match l {
                    $v::wit::LogLevel::Trace => Self::Trace,
                    $v::wit::LogLevel::Debug => Self::Debug,
                    $v::wit::LogLevel::Info => Self::Info,
                    $v::wit::LogLevel::Warn => Self::Warn,
                    $v::wit::LogLevel::Error => Self::Error,
                }
            }
        }

        impl From<$v::wit::LinePrice> for LinePrice {
            fn from(l: $v::wit::LinePrice) -> Self {
                Self {
                    line: l.line,
                    unit_price: l.unit_price,
                    quantity: l.quantity,
                    subtotal: l.subtotal,
                }
            }
        }
    };
}

common!(v1_0);
common!(v1_1);

// 1.0: the context without 1.1's fields; a quote without codes.

impl From<&Customer> for v1_0::wit::Customer {
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

impl From<&OrderLine> for v1_0::wit::OrderLine {
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

impl From<&OrderContext> for v1_0::wit::OrderContext {
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

impl From<v1_0::wit::Quote> for Quote {
    fn from(q: v1_0::wit::Quote) -> Self {
        Self {
            lines: q.lines.into_iter().map(Into::into).collect(),
            discounts: q
                .discounts
                .into_iter()
                .map(|d| Discount {
                    code: d.code,
                    reason: d.reason,
                    amount: d.amount,
                    line: d.line,
                    discount_code: None,
                })
                .collect(),
            total: q.total,
            currency: q.currency,
            rejected_codes: Vec::new(),
        }
    }
}

// 1.1: everything.

impl From<&Customer> for v1_1::wit::Customer {
    fn from(c: &Customer) -> Self {
        Self {
            id: c.id.clone(),
            vip: c.vip,
            tags: c.tags.clone(),
            order_count: c.order_count,
            account_age_days: c.account_age_days,
            lifetime_orders: c.lifetime_orders,
            lifetime_spend: c
                .lifetime_spend
                .iter()
                .map(|m: &Money| v1_1::wit::Money {
                    amount: m.amount,
                    currency: m.currency.clone(),
                })
                .collect(),
        }
    }
}

impl From<&OrderLine> for v1_1::wit::OrderLine {
    fn from(l: &OrderLine) -> Self {
        Self {
            product_id: l.product_id.clone(),
            stock_id: l.stock_id.clone(),
            sku: l.sku.clone(),
            quantity: l.quantity,
            unit_price: l.unit_price,
            currency: l.currency.clone(),
            available: l.available,
            tags: l.tags.clone(),
            vendor: l.vendor.clone(),
            category: l.category.clone(),
            units_last24h: l.units_last24h,
            units_last30d: l.units_last30d,
        }
    }
}

impl From<&OrderContext> for v1_1::wit::OrderContext {
    fn from(ctx: &OrderContext) -> Self {
        Self {
            tenant: ctx.tenant.clone(),
            customer: (&ctx.customer).into(),
            lines: ctx.lines.iter().map(Into::into).collect(),
            expected_total: ctx.expected_total,
            order_time_ms: ctx.order_time_ms,
            discount_codes: ctx.discount_codes.clone(),
            attributes: ctx
                .attributes
                .iter()
                .map(|a: &Attribute| v1_1::wit::Attribute {
                    key: a.key.clone(),
                    value: a.value.clone(),
                })
                .collect(),
        }
    }
}

impl From<v1_1::wit::Quote> for Quote {
    fn from(q: v1_1::wit::Quote) -> Self {
        Self {
            lines: q.lines.into_iter().map(Into::into).collect(),
            discounts: q
                .discounts
                .into_iter()
                .map(|d| Discount {
                    code: d.code,
                    reason: d.reason,
                    amount: d.amount,
                    line: d.line,
                    discount_code: d.discount_code,
                })
                .collect(),
            total: q.total,
            currency: q.currency,
            rejected_codes: q
                .rejected_codes
                .into_iter()
                .map(|r| CodeRejection {
                    discount_code: r.discount_code,
                    reason: r.reason,
                    message: r.message,
                })
                .collect(),
        }
    }
}
