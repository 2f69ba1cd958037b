//! The `order-policy` built-in (`order-policy-standard`: one component exporting the
//! three hooks) against the three separate built-ins it is made of, and the one instance
//! per order the host gives it when it serves all three hooks with one config and limits:
//! counted instantiations, a kept instance dropped after a trap, and the example binding
//! in `policies/examples/order-policy.toml`.

use orderhost::policy::{
    EvalMode, Evaluation, FaultKind, PolicyRuntime,
    runtime::ServedBy,
    types::{Customer, Hook, OrderContext, OrderLine},
};
use serde_json::{Value, json};

const ORDER_TIME: i64 = 1_700_000_000_321;
const SHARED: &str = "order-policy-standard@1.0.0";

/// The example binding, as shipped.
const EXAMPLE: &str = include_str!("../../policies/examples/order-policy.toml");

fn line(sku: &str, quantity: u32, unit_price: i64) -> OrderLine {
    OrderLine {
        product_id: format!("p-{sku}"),
        stock_id: format!("s-{sku}"),
        sku: sku.to_owned(),
        quantity,
        unit_price,
        currency: "EUR".into(),
        available: 1_000,
        ..OrderLine::default()
    }
}

fn ctx(vip: bool, tags: &[&str], lines: Vec<OrderLine>) -> OrderContext {
    OrderContext {
        tenant: String::new(),
        customer: Customer {
            id: "cust-7".into(),
            vip,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            order_count: 4,
            account_age_days: 90,
            ..Customer::default()
        },
        lines,
        expected_total: None,
        order_time_ms: ORDER_TIME,
        ..OrderContext::default()
    }
}

fn for_tenant(ctx: &OrderContext, tenant: &str) -> OrderContext {
    OrderContext {
        tenant: tenant.to_owned(),
        ..ctx.clone()
    }
}

/// A manifest binding `components` (validation, pricing, prioritization) with `config`
/// written the same in each section, `fuel` and the pricing hook's `on-error`.
fn manifest(components: [&str; 3], config: &str, fuel: u64, pricing_on_error: &str) -> String {
    let mut text = String::new();
    for (hook, component) in ["validation", "pricing", "prioritization"]
        .into_iter()
        .zip(components)
    {
        let on_error = if hook == "pricing" {
            pricing_on_error
        } else {
            "fallback"
        };
        text.push_str(&format!(
            "[{hook}]\ncomponent = \"{component}\"\non-error = \"{on_error}\"\n\
             [{hook}.config]\n{config}\n[{hook}.limits]\nfuel = {fuel}\n\n"
        ));
    }
    text
}

/// A policies folder with `tenants/<slug>.toml` for each `(slug, manifest)`.
fn runtime(tenants: &[(&str, String)]) -> (tempfile::TempDir, PolicyRuntime) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
    for (slug, text) in tenants {
        std::fs::write(dir.path().join(format!("tenants/{slug}.toml")), text).unwrap();
    }
    let runtime = PolicyRuntime::load(dir.path()).unwrap_or_else(|e| panic!("loads: {e}"));
    (dir, runtime)
}

fn evaluate(runtime: &PolicyRuntime, ctx: &OrderContext, mode: EvalMode) -> Evaluation {
    runtime
        .evaluate(&runtime.snapshot(), ctx, mode)
        .unwrap_or_else(|f| panic!("{} evaluates: {f}", ctx.tenant))
}

/// What the three hooks decided, without the reports (which name the components).
fn decisions(e: &Evaluation) -> Value {
    json!({
        "violations": e.violations,
        "quote": e.quote,
        "pricingRefusal": e.pricing_refusal,
        "priority": e.priority,
    })
}

/// Per hook: the component that answered and why.
fn served(e: &Evaluation) -> Vec<(&str, ServedBy)> {
    e.hooks
        .iter()
        .map(|h| (h.component.as_str(), h.served_by))
        .collect()
}

fn instantiations(runtime: &PolicyRuntime, name: &str) -> u64 {
    runtime
        .registry()
        .get(name, "1.0.0")
        .unwrap_or_else(|| panic!("{name} registered"))
        .instantiations()
}

fn three_lines() -> Vec<OrderLine> {
    vec![line("A", 2, 1_250), line("B", 1, 9_900), line("C", 12, 300)]
}

/// Every key of the three standard built-ins, away from their defaults.
const CUSTOM: &str = "min-quantity = 2\nmax-quantity = 40\nmax-lines = 4\n\
    vip-discount-bps = 750\nbulk-tiers = \"10:200,30:500\"\n\
    vip-weight = 70\nregular-weight = 5\ntag-weights = \"wholesale:50,new:3\"";

#[test]
fn order_policy_standard_decides_as_the_three_standard_builtins() {
    let builtins = [
        "validation-standard@1.0.0",
        "pricing-standard@1.0.0",
        "priority-vip@1.0.0",
    ];
    let (_dir, runtime) = runtime(&[
        ("shared", EXAMPLE.to_owned()),
        (
            "shared-custom",
            manifest([SHARED; 3], CUSTOM, 50_000_000, "reject"),
        ),
        (
            "separate-custom",
            manifest(builtins, CUSTOM, 50_000_000, "reject"),
        ),
    ]);
    let mixed = {
        let mut l = line("M", 3, 500);
        l.currency = "USD".into();
        l
    };
    let cases: Vec<(&str, OrderContext)> = vec![
        ("regular, three lines", ctx(false, &[], three_lines())),
        ("vip, three lines", ctx(true, &[], three_lines())),
        (
            "vip wholesale, bulk lines",
            ctx(
                true,
                &["wholesale"],
                vec![line("A", 35, 1_000), line("B", 12, 250)],
            ),
        ),
        (
            "regular new, one line",
            ctx(false, &["new", "other"], vec![line("A", 3, 99)]),
        ),
        (
            "violations: zero, too many, mixed currency",
            ctx(
                false,
                &[],
                vec![line("A", 0, 100), line("B", 101, 100), mixed],
            ),
        ),
        ("no lines", ctx(true, &[], vec![])),
        ("negative price", ctx(false, &[], vec![line("A", 1, -5)])),
        (
            "five lines",
            ctx(
                false,
                &["wholesale"],
                (0..5)
                    .map(|i| line(&format!("L{i}"), 10 + i, 100))
                    .collect(),
            ),
        ),
    ];
    for (case, context) in &cases {
        // The example's config is the built-ins' defaults, so it must decide as the
        // defaults do; the custom config as the three built-ins each given its keys.
        for (shared, separate) in [("shared", "default"), ("shared-custom", "separate-custom")] {
            let one = evaluate(&runtime, &for_tenant(context, shared), EvalMode::All);
            let three = evaluate(&runtime, &for_tenant(context, separate), EvalMode::All);
            assert_eq!(
                decisions(&one),
                decisions(&three),
                "{case}: {shared} vs {separate}"
            );
            assert_eq!(
                served(&one),
                vec![(SHARED, ServedBy::Stable); 3],
                "{case}: {shared}"
            );
            let names: Vec<&str> = three.hooks.iter().map(|h| h.component.as_str()).collect();
            assert_eq!(names, builtins, "{case}: {separate}");
        }
    }
    // The table is not vacuous: it holds acceptances, violations, refusals and discounts.
    let custom = |i: usize| {
        evaluate(
            &runtime,
            &for_tenant(&cases[i].1, "shared-custom"),
            EvalMode::All,
        )
    };
    assert!(custom(3).violations.is_empty() && custom(3).quote.is_some());
    assert_eq!(custom(3).priority, Some(8));
    assert!(!custom(4).violations.is_empty());
    assert!(custom(6).pricing_refusal.is_some());
    let bulk = custom(2).quote.unwrap();
    let codes: Vec<&str> = bulk.discounts.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(codes, ["BULK_DISCOUNT", "BULK_DISCOUNT", "VIP_DISCOUNT"]);
}

#[test]
fn one_instance_per_order_when_one_component_serves_the_three_hooks_alike() {
    let other_limits = {
        // The same component and config; prioritization with other limits.
        let text = manifest([SHARED; 3], "", 50_000_000, "reject");
        let split = text.rfind("fuel = 50000000").unwrap();
        format!("{}fuel = 40000000\n", &text[..split])
    };
    let (_dir, runtime) = runtime(&[
        ("shared", EXAMPLE.to_owned()),
        ("split", other_limits),
        (
            "other-config",
            // Pricing reads the same keys, but its table differs: its own instance.
            manifest([SHARED; 3], "vip-weight = 100", 50_000_000, "reject").replacen(
                "[pricing.config]\nvip-weight = 100",
                "[pricing.config]\nvip-weight = 101",
                1,
            ),
        ),
    ]);
    let accepted = ctx(true, &[], three_lines());
    let refused = ctx(false, &[], vec![line("A", 0, 100)]);
    let orders = 7;
    let count = |runtime: &PolicyRuntime| instantiations(runtime, "order-policy-standard");

    // Arrange/Act/Assert per binding: N orders through all three hooks.
    let before = count(&runtime);
    for _ in 0..orders {
        let e = evaluate(&runtime, &for_tenant(&accepted, "shared"), EvalMode::Order);
        assert_eq!(e.hooks.len(), 3);
        assert!(
            e.hooks
                .iter()
                .all(|h| h.component == SHARED && !h.fell_back)
        );
    }
    assert_eq!(
        count(&runtime) - before,
        orders,
        "one instance per order, not per hook"
    );

    // An order refused by validation instantiates once and calls nothing else.
    let before = count(&runtime);
    let e = evaluate(&runtime, &for_tenant(&refused, "shared"), EvalMode::Order);
    assert_eq!(e.hooks.len(), 1);
    assert_eq!(count(&runtime) - before, 1);

    // Other limits on one hook: that hook gets its own instance (validation and pricing
    // share one).
    let before = count(&runtime);
    for _ in 0..orders {
        evaluate(&runtime, &for_tenant(&accepted, "split"), EvalMode::Order);
    }
    assert_eq!(count(&runtime) - before, 2 * orders);

    // Another config on the middle hook: nothing is shared (validation's instance does
    // not fit pricing and is dropped before pricing's is made).
    let before = count(&runtime);
    for _ in 0..orders {
        evaluate(
            &runtime,
            &for_tenant(&accepted, "other-config"),
            EvalMode::Order,
        );
    }
    assert_eq!(count(&runtime) - before, 3 * orders);

    // The three separate built-ins: one instance per hook, as always.
    let separate = ["validation-standard", "pricing-standard", "priority-vip"];
    let before: Vec<u64> = separate
        .iter()
        .map(|n| instantiations(&runtime, n))
        .collect();
    for _ in 0..orders {
        evaluate(&runtime, &for_tenant(&accepted, "default"), EvalMode::Order);
    }
    for (name, before) in separate.iter().zip(before) {
        assert_eq!(instantiations(&runtime, name) - before, orders, "{name}");
    }
}

#[test]
fn a_trap_drops_the_shared_instance_and_does_not_poison_later_hooks_or_orders() {
    // Pricing made expensive by its config (a long tier list, read per line); validation
    // and prioritization do not read it. Measured first with room to spare.
    let tiers: Vec<String> = (1..=400).map(|i| format!("{i}:{}", i % 100)).collect();
    let config = format!("max-lines = 200\nbulk-tiers = \"{}\"", tiers.join(","));
    let lines = (0..120).map(|i| line(&format!("S{i}"), 1 + i % 90, 100));
    let big = ctx(false, &[], lines.collect());
    let small = ctx(true, &[], three_lines());
    let (_dir, roomy) = runtime(&[(
        "t",
        manifest([SHARED; 3], &config, 1_000_000_000, "fallback"),
    )]);
    let measured = evaluate(&roomy, &for_tenant(&big, "t"), EvalMode::Order);
    let fuel: Vec<u64> = measured.hooks.iter().map(|h| h.fuel_used).collect();
    let (validation, pricing) = (fuel[0], fuel[1]);
    // Validation's fuel includes the instantiation a fresh prioritization also pays.
    let limit = pricing / 2;
    assert!(
        limit > 2 * validation && measured.hooks.iter().all(|h| !h.fell_back),
        "fuel per hook {fuel:?}: pricing must cost well over the others"
    );
    let small_measured = evaluate(&roomy, &for_tenant(&small, "t"), EvalMode::Order);
    assert!(
        small_measured.hooks.iter().all(|h| h.fuel_used < limit / 2),
        "the small order must fit: {:?} with a limit of {limit}",
        small_measured
            .hooks
            .iter()
            .map(|h| h.fuel_used)
            .collect::<Vec<_>>()
    );
    let expected_small = decisions(&small_measured);

    let (_dir, runtime) = runtime(&[("t", manifest([SHARED; 3], &config, limit, "fallback"))]);
    let before = instantiations(&runtime, "order-policy-standard");

    // Pricing runs out of fuel on the kept instance: the built-in answers pricing, and
    // prioritization runs on a fresh instance of the shared component (a trapped
    // instance cannot be entered again: reusing it would fail prioritization too).
    let e = evaluate(&runtime, &for_tenant(&big, "t"), EvalMode::Order);
    assert_eq!(
        served(&e),
        [
            (SHARED, ServedBy::Stable),
            ("pricing-standard@1.0.0", ServedBy::Fallback),
            (SHARED, ServedBy::Stable),
        ]
    );
    let fault = e.hooks[1].fault.as_ref().unwrap();
    assert_eq!(fault.kind, FaultKind::InstructionLimitExceeded);
    assert_eq!(e.priority, measured.priority);
    assert_eq!(
        instantiations(&runtime, "order-policy-standard") - before,
        2
    );

    // The next orders: one fresh instance each, the three hooks on it, same decisions as
    // with room to spare.
    for _ in 0..3 {
        let e = evaluate(&runtime, &for_tenant(&small, "t"), EvalMode::Order);
        assert!(
            e.hooks
                .iter()
                .all(|h| h.component == SHARED && h.served_by == ServedBy::Stable)
        );
        assert_eq!(decisions(&e), expected_small);
    }
    assert_eq!(
        instantiations(&runtime, "order-policy-standard") - before,
        5
    );
}

#[test]
fn the_example_binding_names_the_order_policy_builtin_for_every_hook() {
    let (_dir, runtime) = runtime(&[("shared", EXAMPLE.to_owned())]);
    let set = runtime.snapshot();
    for hook in Hook::ALL {
        let binding = set.binding("shared", hook);
        assert_eq!(binding.component.id(), SHARED, "{hook}");
        assert_eq!(binding.component.hooks(), Hook::ALL.to_vec());
    }
    let config = |hook| set.binding("shared", hook).config.clone();
    assert_eq!(config(Hook::Validation), config(Hook::Pricing));
    assert_eq!(config(Hook::Pricing), config(Hook::Prioritization));
}
