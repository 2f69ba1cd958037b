//! The policy runtime against the real components compiled from `components/`: built-in
//! behaviour against its configuration, determinism, misbehaving components and their
//! typed errors, isolation between tenants, fallback and reject, limits at their exact
//! numbers, strict manifests, the sandbox, atomic swaps, and the evaluation API.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use orderhost::policy::{
    EvalMode, FaultKind, Limits, PolicyRuntime,
    engine::{CallSpec, PolicyEngine},
    registry::{BUILD_DIR, ComponentRegistry},
    types::{Customer, Hook, HookOutput, OrderContext, OrderLine, PricingRefusal},
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    backend_tests,
    helpers::{Backend, assert_error, json_ok, new_client, spawn_app_with},
};

const ORDER_TIME: i64 = 1_700_000_000_123;

/// Expected violations: code and line.
type Expected = Vec<(&'static str, Option<u32>)>;
/// A table row: case name, binding config, context, expected outcome.
type Case<T> = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    OrderContext,
    T,
);

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

fn ctx(tenant: &str, vip: bool, lines: Vec<OrderLine>) -> OrderContext {
    OrderContext {
        tenant: tenant.to_owned(),
        customer: Customer {
            id: "cust-1".into(),
            vip,
            tags: vec![],
            order_count: 3,
            account_age_days: 40,
            ..Customer::default()
        },
        lines,
        expected_total: None,
        order_time_ms: ORDER_TIME,
        ..OrderContext::default()
    }
}

fn three_lines() -> Vec<OrderLine> {
    vec![line("A", 2, 1_250), line("B", 1, 9_900), line("C", 12, 300)]
}

/// The misbehaving and example components as the build produced them.
fn built(file: &str) -> Vec<u8> {
    std::fs::read(Path::new(BUILD_DIR).join(file)).unwrap_or_else(|e| panic!("{file} built: {e}"))
}

fn registry() -> (Arc<PolicyEngine>, ComponentRegistry) {
    let engine = PolicyEngine::shared().unwrap();
    let mut registry = ComponentRegistry::with_builtins(&engine).unwrap();
    for (name, file) in BAD {
        registry
            .insert(&engine, name, "1.0.0", &built(file), file)
            .unwrap();
    }
    (engine, registry)
}

const BAD: [(&str, &str); 6] = [
    ("bad-loop", "bad_loop.wasm"),
    ("bad-trap", "bad_trap.wasm"),
    ("bad-memory", "bad_memory.wasm"),
    ("bad-wrong-world", "bad_wrong_world.wasm"),
    ("bad-output", "bad_output.wasm"),
    ("bad-sandbox", "bad_sandbox.wasm"),
];

/// Calls one hook of a registered component directly through the engine.
fn call(
    name: &str,
    hook: Hook,
    config: &[(&str, &str)],
    limits: Limits,
    ctx: &OrderContext,
) -> Result<orderhost::policy::engine::CallOutcome, orderhost::policy::PolicyFault> {
    let (engine, registry) = registry();
    let component = registry.get(name, "1.0.0").unwrap();
    let spec = CallSpec {
        tenant: &ctx.tenant,
        hook,
        component: &component,
        config: Arc::new(
            config
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        limits,
    };
    engine.call(&spec, ctx)
}

fn violations(output: HookOutput) -> Vec<(String, Option<u32>)> {
    match output {
        HookOutput::Violations(v) => v.into_iter().map(|v| (v.code, v.line)).collect(),
        other => panic!("not violations: {other:?}"),
    }
}

/// A policies folder: manifests by relative path, plus every misbehaving component in
/// `components/` under `<name>@1.0.0.wasm`.
pub struct PolicyDir {
    dir: tempfile::TempDir,
}

impl PolicyDir {
    pub fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("components")).unwrap();
        std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
        for (name, file) in BAD {
            std::fs::write(
                dir.path().join(format!("components/{name}@1.0.0.wasm")),
                built(file),
            )
            .unwrap();
        }
        let this = Self { dir };
        for (path, text) in files {
            this.write(path, text);
        }
        this
    }

    pub fn write(&self, path: &str, text: &str) {
        std::fs::write(self.dir.path().join(path), text).unwrap();
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    fn runtime(&self) -> PolicyRuntime {
        PolicyRuntime::load(self.dir.path()).unwrap_or_else(|e| panic!("loads: {e}"))
    }

    fn load_error(&self) -> String {
        match PolicyRuntime::load(self.dir.path()) {
            Ok(_) => panic!("the manifests must be refused"),
            Err(e) => e.to_string(),
        }
    }
}

#[test]
fn validation_standard_follows_its_config() {
    let mixed = {
        let mut l = line("B", 1, 10);
        l.currency = "USD".into();
        l
    };
    let dup = {
        let mut l = line("A2", 1, 10);
        l.stock_id = "s-A".into();
        l
    };
    let mut negative_expected = ctx("t", false, vec![line("A", 1, 10)]);
    negative_expected.expected_total = Some(-1);
    let cases: Vec<Case<Expected>> = vec![
        (
            "defaults accept",
            vec![],
            ctx("t", false, three_lines()),
            vec![],
        ),
        (
            "zero quantity",
            vec![],
            ctx("t", false, vec![line("A", 0, 10)]),
            vec![("QUANTITY_TOO_SMALL", Some(0))],
        ),
        (
            "default max 100",
            vec![],
            ctx("t", false, vec![line("A", 1, 10), line("B", 101, 10)]),
            vec![("QUANTITY_TOO_LARGE", Some(1))],
        ),
        (
            "max-quantity at the bound",
            vec![("max-quantity", "5")],
            ctx("t", false, vec![line("A", 5, 10)]),
            vec![],
        ),
        (
            "max-quantity over",
            vec![("max-quantity", "5")],
            ctx("t", false, vec![line("A", 6, 10)]),
            vec![("QUANTITY_TOO_LARGE", Some(0))],
        ),
        (
            "min-quantity",
            vec![("min-quantity", "2")],
            ctx("t", false, vec![line("A", 1, 10)]),
            vec![("QUANTITY_TOO_SMALL", Some(0))],
        ),
        (
            "max-lines",
            vec![("max-lines", "2")],
            ctx("t", false, three_lines()),
            vec![("TOO_MANY_LINES", Some(2))],
        ),
        (
            "duplicate stock",
            vec![],
            ctx("t", false, vec![line("A", 1, 10), dup]),
            vec![("DUPLICATE_LINE", Some(1))],
        ),
        (
            "mixed currency",
            vec![],
            ctx("t", false, vec![line("A", 1, 10), mixed]),
            vec![("MIXED_CURRENCY", Some(1))],
        ),
        (
            "no lines",
            vec![],
            ctx("t", false, vec![]),
            vec![("NO_LINES", None)],
        ),
        (
            "negative expected total",
            vec![],
            negative_expected,
            vec![("INVALID_EXPECTED_TOTAL", None)],
        ),
        (
            "unparsable config",
            vec![("max-quantity", "lots")],
            ctx("t", false, vec![line("A", 1, 10)]),
            vec![("INVALID_CONFIG", None)],
        ),
    ];
    for (name, config, context, expected) in cases {
        let outcome = call(
            "validation-standard",
            Hook::Validation,
            &config,
            Limits::default(),
            &context,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = violations(outcome.output);
        let expected: Vec<(String, Option<u32>)> = expected
            .into_iter()
            .map(|(c, l)| (c.to_owned(), l))
            .collect();
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn pricing_standard_follows_its_config() {
    let big = vec![line("A", 12, 1_000), line("B", 3, 250)];
    let cases: Vec<Case<Result<i64, &str>>> = vec![
        (
            "catalog price",
            vec![],
            ctx("t", false, vec![line("A", 2, 1_000)]),
            Ok(2_000),
        ),
        (
            "default VIP 5%",
            vec![],
            ctx("t", true, vec![line("A", 2, 1_000)]),
            Ok(1_900),
        ),
        (
            "VIP 10%",
            vec![("vip-discount-bps", "1000")],
            ctx("t", true, vec![line("A", 2, 1_000)]),
            Ok(1_800),
        ),
        (
            "VIP off",
            vec![("vip-discount-bps", "0")],
            ctx("t", true, vec![line("A", 2, 1_000)]),
            Ok(2_000),
        ),
        (
            "bulk tier on the big line only",
            vec![("bulk-tiers", "10:200")],
            ctx("t", false, big.clone()),
            Ok(12_000 - 240 + 750),
        ),
        (
            "bulk then VIP, rounded down",
            vec![("bulk-tiers", "10:200")],
            ctx("t", true, big.clone()),
            Ok(11_885),
        ),
        (
            "rounding down",
            vec![("vip-discount-bps", "333")],
            ctx("t", true, vec![line("A", 1, 999)]),
            Ok(999 - 33),
        ),
        (
            "bad bps",
            vec![("vip-discount-bps", "20000")],
            ctx("t", true, vec![line("A", 1, 10)]),
            Err("internal"),
        ),
        (
            "bad tiers",
            vec![("bulk-tiers", "ten:2")],
            ctx("t", false, vec![line("A", 1, 10)]),
            Err("internal"),
        ),
        (
            "mixed currency",
            vec![],
            ctx(
                "t",
                false,
                vec![line("A", 1, 10), {
                    let mut l = line("B", 1, 10);
                    l.currency = "USD".into();
                    l
                }],
            ),
            Err("invalid-input"),
        ),
        (
            "overflow",
            vec![],
            ctx("t", false, vec![line("A", 100, i64::MAX / 10)]),
            Err("invalid-input"),
        ),
    ];
    for (name, config, context, expected) in cases {
        let outcome = call(
            "pricing-standard",
            Hook::Pricing,
            &config,
            Limits::default(),
            &context,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let HookOutput::Quote(quote) = outcome.output else {
            panic!("{name}: not a quote")
        };
        match (quote, expected) {
            (Ok(q), Ok(total)) => {
                assert_eq!(q.total, total, "{name}: {q:?}");
                q.check_against(&context)
                    .unwrap_or_else(|e| panic!("{name}: inconsistent quote {e}"));
            }
            (Err(PricingRefusal::Internal(_)), Err("internal")) => {}
            (Err(PricingRefusal::InvalidInput(_)), Err("invalid-input")) => {}
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn priority_vip_follows_its_config() {
    let mut tagged = ctx("t", false, three_lines());
    tagged.customer.tags = vec!["wholesale".into()];
    let cases: Vec<Case<u32>> = vec![
        ("vip default", vec![], ctx("t", true, three_lines()), 100),
        (
            "regular default",
            vec![],
            ctx("t", false, three_lines()),
            10,
        ),
        (
            "vip weight",
            vec![("vip-weight", "7")],
            ctx("t", true, three_lines()),
            7,
        ),
        (
            "regular weight",
            vec![("regular-weight", "1")],
            ctx("t", false, three_lines()),
            1,
        ),
        (
            "tag weight adds",
            vec![("tag-weights", "wholesale:50")],
            tagged.clone(),
            60,
        ),
        (
            "bad weight falls back to default",
            vec![("vip-weight", "-3")],
            ctx("t", true, three_lines()),
            100,
        ),
        (
            "saturates",
            vec![("vip-weight", "4294967295"), ("tag-weights", "wholesale:9")],
            {
                let mut c = tagged.clone();
                c.customer.vip = true;
                c
            },
            u32::MAX,
        ),
    ];
    for (name, config, context, expected) in cases {
        let outcome = call(
            "priority-vip",
            Hook::Prioritization,
            &config,
            Limits::default(),
            &context,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(outcome.output, HookOutput::Priority(expected), "{name}");
    }
}

#[test]
fn flash_sale_caps_units_in_its_window() {
    let config = [
        ("skus", "A,B"),
        ("max-units", "2"),
        ("starts-at-ms", "1000"),
        ("ends-at-ms", "2000"),
    ];
    let at = |ms: i64, lines: Vec<OrderLine>| {
        let mut c = ctx("t", false, lines);
        c.order_time_ms = ms;
        c
    };
    let cases = vec![
        (
            "over the cap in the window",
            at(1_500, vec![line("C", 9, 1), line("A", 3, 1)]),
            vec![("FLASH_SALE_LIMIT", Some(1))],
        ),
        (
            "at the cap",
            at(1_500, vec![line("A", 2, 1), line("B", 2, 1)]),
            vec![],
        ),
        ("unlisted sku", at(1_500, vec![line("C", 50, 1)]), vec![]),
        (
            "window start is inclusive",
            at(1_000, vec![line("B", 3, 1)]),
            vec![("FLASH_SALE_LIMIT", Some(0))],
        ),
        (
            "window end is exclusive",
            at(2_000, vec![line("A", 3, 1)]),
            vec![],
        ),
        ("before the window", at(999, vec![line("A", 3, 1)]), vec![]),
    ];
    for (name, context, expected) in cases {
        let outcome = call(
            "flash-sale",
            Hook::Validation,
            &config,
            Limits::default(),
            &context,
        )
        .unwrap();
        let expected: Vec<(String, Option<u32>)> = expected
            .into_iter()
            .map(|(c, l): (&str, _)| (c.to_owned(), l))
            .collect();
        assert_eq!(violations(outcome.output), expected, "{name}");
    }
}

#[test]
fn same_input_same_output_a_thousand_times() {
    let dir = PolicyDir::new(&[]);
    let runtime = dir.runtime();
    let set = runtime.snapshot();
    let context = ctx("default", true, three_lines());
    let first = runtime.evaluate(&set, &context, EvalMode::All).unwrap();
    assert!(first.violations.is_empty());
    assert!(first.quote.is_some() && first.priority == Some(100));
    for _ in 0..1_000 {
        let again = runtime.evaluate(&set, &context, EvalMode::All).unwrap();
        assert_eq!(again.violations, first.violations);
        assert_eq!(again.quote, first.quote);
        assert_eq!(again.priority, first.priority);
        let fuel: Vec<u64> = again.hooks.iter().map(|h| h.fuel_used).collect();
        assert_eq!(
            fuel,
            first.hooks.iter().map(|h| h.fuel_used).collect::<Vec<_>>()
        );
    }
}

#[test]
fn misbehaving_components_fail_with_typed_errors() {
    let context = ctx("t", false, three_lines());
    let generous = Limits {
        fuel: 10_000_000_000,
        memory_bytes: 16 << 20,
        timeout_ms: 10_000,
    };
    let cases = [
        (
            "bad-loop",
            Hook::Validation,
            Limits {
                fuel: 2_000_000,
                ..generous
            },
            FaultKind::InstructionLimitExceeded,
        ),
        (
            "bad-loop",
            Hook::Validation,
            Limits {
                timeout_ms: 50,
                ..generous
            },
            FaultKind::Timeout,
        ),
        ("bad-trap", Hook::Validation, generous, FaultKind::Trap),
        (
            "bad-memory",
            Hook::Validation,
            generous,
            FaultKind::MemoryLimitExceeded,
        ),
        (
            "bad-wrong-world",
            Hook::Validation,
            generous,
            FaultKind::MissingExport,
        ),
    ];
    for (name, hook, limits, kind) in cases {
        let started = std::time::Instant::now();
        let fault = call(name, hook, &[], limits, &context).expect_err(name);
        assert_eq!(fault.kind, kind, "{name}: {fault}");
        let text = fault.to_string();
        assert!(
            text.contains("tenant t")
                && text.contains(&format!("hook {hook}"))
                && text.contains(name),
            "{text}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{name} was stopped in time"
        );
        // The engine still serves a healthy call right after.
        let ok = call(
            "validation-standard",
            Hook::Validation,
            &[],
            Limits::default(),
            &context,
        )
        .unwrap();
        assert_eq!(violations(ok.output), vec![]);
    }
    // Garbage output is caught by the host's checks on the evaluation path.
    let dir = PolicyDir::new(&[(
        "tenants/t.toml",
        "[pricing]\ncomponent = \"bad-output@1.0.0\"\n",
    )]);
    let runtime = dir.runtime();
    let fault = runtime
        .evaluate(&runtime.snapshot(), &context, EvalMode::All)
        .expect_err("invalid output");
    assert_eq!(fault.kind, FaultKind::InvalidOutput, "{fault}");
    assert_eq!(fault.hook, Hook::Pricing);
}

#[test]
fn a_failing_tenant_does_not_disturb_the_others() {
    let dir = PolicyDir::new(&[(
        "tenants/evil.toml",
        "[validation]\ncomponent = \"bad-loop@1.0.0\"\n[validation.limits]\nfuel = 10_000_000_000\ntimeout-ms = 300\n",
    )]);
    let runtime = Arc::new(dir.runtime());
    let set = runtime.snapshot();
    let evil = {
        let (runtime, set) = (runtime.clone(), set.clone());
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let result = runtime.evaluate(&set, &ctx("evil", false, three_lines()), EvalMode::All);
            (result, started.elapsed())
        })
    };
    // While the evil tenant's component spins, another tenant is served normally.
    let mut served = 0;
    while !evil.is_finished() {
        let good = runtime
            .evaluate(&set, &ctx("good", true, three_lines()), EvalMode::All)
            .unwrap();
        assert!(good.violations.is_empty() && good.priority == Some(100));
        served += 1;
    }
    let (result, elapsed) = evil.join().unwrap();
    let fault = result.expect_err("the loop is stopped");
    assert_eq!(fault.kind, FaultKind::Timeout, "{fault}");
    assert!(
        elapsed >= std::time::Duration::from_millis(250),
        "{elapsed:?}"
    );
    assert!(served > 10, "only {served} calls served in parallel");
}

#[test]
fn fallback_runs_the_builtin_and_reject_refuses() {
    let dir = PolicyDir::new(&[
        (
            "tenants/soft.toml",
            "[validation]\ncomponent = \"bad-trap@1.0.0\"\non-error = \"fallback\"\n[pricing]\ncomponent = \"bad-output@1.0.0\"\non-error = \"fallback\"\n",
        ),
        (
            "tenants/strict.toml",
            "[validation]\ncomponent = \"bad-trap@1.0.0\"\non-error = \"reject\"\n",
        ),
    ]);
    let runtime = dir.runtime();
    let set = runtime.snapshot();
    let context = ctx("soft", true, vec![line("A", 2, 1_000)]);
    let soft = runtime.evaluate(&set, &context, EvalMode::All).unwrap();
    let baseline = runtime
        .evaluate(
            &set,
            &ctx("default", true, vec![line("A", 2, 1_000)]),
            EvalMode::All,
        )
        .unwrap();
    assert_eq!(soft.violations, baseline.violations);
    assert_eq!(soft.quote, baseline.quote, "the built-in priced it");
    assert!(soft.hooks[0].fell_back && soft.hooks[1].fell_back && !soft.hooks[2].fell_back);
    assert_eq!(soft.hooks[0].component, "validation-standard@1.0.0");
    assert_eq!(soft.hooks[0].fault.as_ref().unwrap().kind, FaultKind::Trap);
    assert_eq!(
        soft.hooks[1].fault.as_ref().unwrap().kind,
        FaultKind::InvalidOutput
    );
    let strict = runtime.evaluate(&set, &ctx("strict", false, three_lines()), EvalMode::All);
    assert_eq!(strict.expect_err("rejects").kind, FaultKind::Trap);
}

#[test]
fn limits_are_enforced_at_the_configured_numbers() {
    let context = ctx("t", false, three_lines());
    let roomy = Limits {
        fuel: 1_000_000_000,
        memory_bytes: 32 << 20,
        timeout_ms: 5_000,
    };
    let measured = call(
        "validation-standard",
        Hook::Validation,
        &[],
        roomy,
        &context,
    )
    .unwrap();
    let (fuel, peak) = (measured.fuel_used, measured.peak_memory_bytes);
    assert!(fuel > 0 && peak > 0);
    let exact_fuel = Limits { fuel, ..roomy };
    call(
        "validation-standard",
        Hook::Validation,
        &[],
        exact_fuel,
        &context,
    )
    .expect("exactly enough fuel");
    // Wasmtime checks fuel at function entries and loop headers, so a budget a few
    // instructions short can still finish the straight-line tail of the call. Find the
    // largest budget that fails: it must sit just below what the call uses.
    let fails = |fuel: u64| match call(
        "validation-standard",
        Hook::Validation,
        &[],
        Limits { fuel, ..roomy },
        &context,
    ) {
        Ok(_) => false,
        Err(fault) => {
            assert_eq!(fault.kind, FaultKind::InstructionLimitExceeded, "{fault}");
            true
        }
    };
    assert!(fails(fuel / 2));
    let (mut lo, mut hi) = (fuel / 2, fuel); // fails(lo), !fails(hi)
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if fails(mid) { lo = mid } else { hi = mid }
    }
    assert!(
        fuel - lo <= 200,
        "fuel enforced within 200 units of the use: fails at {lo}, uses {fuel}"
    );
    let exact_memory = Limits {
        memory_bytes: peak,
        ..roomy
    };
    call(
        "validation-standard",
        Hook::Validation,
        &[],
        exact_memory,
        &context,
    )
    .expect("exactly enough memory");
    // Memory grows in 64 KiB pages: one byte under the peak refuses the last page.
    let short_memory = Limits {
        memory_bytes: peak - 1,
        ..roomy
    };
    let fault = call(
        "validation-standard",
        Hook::Validation,
        &[],
        short_memory,
        &context,
    )
    .expect_err("one byte short");
    assert_eq!(fault.kind, FaultKind::MemoryLimitExceeded);
}

#[test]
fn strict_manifests_name_file_tenant_hook_and_field() {
    let cases: [(&str, &str, &[&str]); 8] = [
        (
            "default.toml",
            "[validation]\ncomponent = \"validation-standard@1.0.0\"\nfuel = 5\n",
            &[
                "default.toml",
                "tenant default",
                "hook validation",
                "unknown field `fuel`",
            ],
        ),
        (
            "tenants/acme.toml",
            "[pricing]\ncomponent = \"nope@1.0.0\"\n",
            &["acme.toml", "tenant acme", "hook pricing", "nope@1.0.0"],
        ),
        (
            "tenants/acme.toml",
            "[validation]\ncomponent = \"bad-wrong-world@1.0.0\"\n",
            &["tenant acme", "hook validation", "wrong world"],
        ),
        (
            "tenants/acme.toml",
            "[shipping]\ncomponent = \"x@1\"\n",
            &["tenant acme", "unknown hook `shipping`"],
        ),
        (
            "tenants/acme.toml",
            "[pricing]\ncomponent = \"pricing-standard@1.0.0\"\n[pricing.config]\nvip-discount-bps = 5.5\n",
            &["hook pricing", "config.vip-discount-bps", "float"],
        ),
        (
            "tenants/acme.toml",
            "[pricing]\ncomponent = \"pricing-standard@1.0.0\"\n[pricing.limits]\nmemory-bytes = 1_000_000_000\n",
            &["hook pricing", "limits.memory-bytes"],
        ),
        (
            "tenants/acme.toml",
            "[pricing]\ncomponent = \"pricing-standard@1.0.0\"\non-error = \"ignore\"\n",
            &["hook pricing", "ignore"],
        ),
        (
            "tenants/acme.toml",
            "[pricing]\ncomponent = \"pricing-standard\"\n",
            &["hook pricing", "name@version"],
        ),
    ];
    for (file, text, needles) in cases {
        let dir = PolicyDir::new(&[(file, text)]);
        let error = dir.load_error();
        for needle in needles {
            assert!(
                error.contains(needle),
                "{file}: {needle:?} not in {error:?}"
            );
        }
    }
}

#[test]
fn a_bad_manifest_stops_the_binary() {
    let dir = PolicyDir::new(&[(
        "tenants/acme.toml",
        "[pricing]\ncomponent = \"pricing-standard@1.0.0\"\nmystery = 1\n",
    )]);
    let work = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_orderhost-under-test"))
        .current_dir(work.path())
        .env_clear()
        .env("ORDERHOST_POLICIES_DIR", dir.path())
        .env("ORDERHOST_BIND", "127.0.0.1:0")
        .env("ORDERHOST_LOG_DIR", "")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in ["acme.toml", "tenant acme", "hook pricing", "mystery"] {
        assert!(stderr.contains(needle), "{needle} in {stderr}");
    }
}

#[test]
fn the_sandbox_grants_nothing() {
    let dir = PolicyDir::new(&[(
        "tenants/probe.toml",
        "[validation]\ncomponent = \"bad-sandbox@1.0.0\"\n",
    )]);
    let runtime = dir.runtime();
    let set = runtime.snapshot();
    let context = ctx("probe", false, three_lines());
    let codes = |c: &OrderContext| -> Vec<String> {
        runtime
            .evaluate(&set, c, EvalMode::All)
            .unwrap()
            .violations
            .into_iter()
            .map(|v| v.code)
            .collect()
    };
    let seen = codes(&context);
    assert!(seen.contains(&"FILE_READ_DENIED".to_owned()), "{seen:?}");
    assert!(seen.contains(&"ENV_EMPTY".to_owned()), "{seen:?}");
    assert!(
        seen.contains(&format!("CLOCK_MS:{ORDER_TIME}")),
        "the clock is the order time: {seen:?}"
    );
    let random = seen
        .iter()
        .find(|c| c.starts_with("RANDOM:"))
        .unwrap()
        .clone();
    // Same input, same "randomness"; the seed follows the input.
    assert_eq!(codes(&context), seen);
    let mut other = context.clone();
    other.customer.id = "someone-else".into();
    let other_random = codes(&other)
        .into_iter()
        .find(|c| c.starts_with("RANDOM:"))
        .unwrap();
    assert_ne!(other_random, random);
}

#[test]
fn swaps_are_atomic_and_a_failed_load_keeps_the_old_set() {
    let dir = PolicyDir::new(&[(
        "default.toml",
        "[pricing]\ncomponent = \"pricing-standard@1.0.0\"\n[pricing.config]\nvip-discount-bps = 500\n",
    )]);
    let runtime = dir.runtime();
    let context = ctx("default", true, vec![line("A", 1, 10_000)]);
    let old = runtime.snapshot();
    dir.write("default.toml", "[pricing]\ncomponent = \"pricing-standard@1.0.0\"\n[pricing.config]\nvip-discount-bps = 1000\n");
    let generation = runtime.reload().unwrap();
    let new = runtime.snapshot();
    assert_eq!((old.generation, new.generation), (1, generation));
    // A sequence that took the old snapshot finishes on it; new sequences see the new one.
    let total = |set| {
        runtime
            .evaluate(set, &context, EvalMode::All)
            .unwrap()
            .quote
            .unwrap()
            .total
    };
    assert_eq!(total(&old), 9_500);
    assert_eq!(total(&new), 9_000);
    dir.write(
        "default.toml",
        "[pricing]\ncomponent = \"pricing-standard@9.9.9\"\n",
    );
    assert!(runtime.reload().is_err());
    assert_eq!(
        runtime.snapshot().generation,
        generation,
        "the old set stays active"
    );
    assert_eq!(total(&runtime.snapshot()), 9_000);
}

backend_tests!(evaluation_api_runs_the_tenant_bindings);

async fn evaluation_api_runs_the_tenant_bindings(backend: Backend) {
    let policies = PolicyDir::new(&[
        (
            "tenants/acme.toml",
            "[validation]\ncomponent = \"flash-sale@1.0.0\"\n[validation.config]\nskus = \"HOT\"\nmax-units = 1\n",
        ),
        (
            "tenants/broken.toml",
            "[validation]\ncomponent = \"bad-trap@1.0.0\"\n",
        ),
        (
            "tenants/soft.toml",
            "[validation]\ncomponent = \"bad-trap@1.0.0\"\non-error = \"fallback\"\n",
        ),
    ]);
    let dir = policies.path();
    let app = spawn_app_with(backend, |c| c.policies_dir = dir).await;
    for t in ["acme", "broken", "soft"] {
        app.tenant(t).await;
    }
    let operator = app
        .user_with_role("ops@example.com", orderhost::auth::Role::Operator, None)
        .await;
    let admin = app
        .user_with_role(
            "boss@acme.example",
            orderhost::auth::Role::Admin,
            Some("acme"),
        )
        .await;
    let body = |tenant: Option<&str>| {
        let mut b = json!({
            "customer": { "id": "c1", "vip": true },
            "lines": [
                { "productId": "p1", "stockId": "s1", "sku": "HOT", "quantity": 2, "unitPrice": 1000, "currency": "EUR" },
                { "productId": "p2", "stockId": "s2", "sku": "COLD", "quantity": 1, "unitPrice": 500, "currency": "EUR" }
            ],
            "orderTimeMs": ORDER_TIME
        });
        if let Some(t) = tenant {
            b["tenant"] = json!(t);
        }
        b
    };
    let post = |token: String, body: Value| {
        let url = app.url("/admin/policy/evaluate");
        async move {
            new_client()
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };

    let acme = json_ok(
        post(operator.clone(), body(Some("acme"))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(acme["violations"][0]["code"], "FLASH_SALE_LIMIT");
    assert_eq!(acme["violations"][0]["line"], 0);
    assert_eq!(acme["quote"]["total"], 2_375, "{acme}");
    assert_eq!(acme["priority"], 100);
    let hooks = acme["hooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 3);
    assert_eq!(hooks[0]["component"], "flash-sale@1.0.0");
    assert!(
        hooks
            .iter()
            .all(|h| h["fuelUsed"].as_u64().unwrap() > 0
                && h["sha256"].as_str().unwrap().len() == 64)
    );

    // The admin of acme evaluates its own tenant, not another.
    let own = json_ok(post(admin.clone(), body(None)).await, StatusCode::OK).await;
    assert_eq!(own["violations"][0]["code"], "FLASH_SALE_LIMIT");
    assert_error(
        post(admin.clone(), body(Some("default"))).await,
        StatusCode::NOT_FOUND,
        "TENANT_NOT_FOUND",
    )
    .await;
    app.register("cus@example.com", None).await;
    let customer = app.login_as("cus@example.com", None).await.1;
    assert_error(
        post(customer, body(None)).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;

    // A failing component: reject → 503 with the hook and the kind; fallback → 200.
    let broken = assert_error(
        post(operator.clone(), body(Some("broken"))).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "POLICY_UNAVAILABLE",
    )
    .await;
    assert_eq!(broken["error"]["details"]["hook"], "validation");
    assert_eq!(broken["error"]["details"]["kind"], "Trap");
    assert_eq!(broken["error"]["details"]["component"], "bad-trap@1.0.0");
    let soft = json_ok(
        post(operator.clone(), body(Some("soft"))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(soft["hooks"][0]["fellBack"], true);
    assert_eq!(soft["hooks"][0]["fault"]["kind"], "Trap");

    // Bad input is an envelope, not a 500.
    let bad = post(
        operator.clone(),
        json!({ "customer": { "id": "c" }, "lines": [{ "sku": "x" }] }),
    )
    .await;
    assert_error(bad, StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY").await;

    // The calls and the failures are counted.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            "orderhost_policy_calls_total{hook=\"validation\",component=\"flash-sale@1.0.0\"}"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("kind=\"Trap\""), "{metrics}");
    assert!(metrics.contains("orderhost_policy_fuel_used"));
}
