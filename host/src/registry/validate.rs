//! What an upload must pass before it is stored, in order, each refusal with its own
//! code: a component (not random bytes, not a core module), compiling, importing only
//! the sandbox's allowlist (the engine's), exporting exactly one of the package's worlds
//! (read from the compiled component's own type, never from its metadata), and a smoke
//! call of every hook it exports on a canned order context with default limits through
//! the runtime's call path (so the host's output checks apply too).

use std::sync::Arc;

use crate::policy::{
    PolicyRuntime,
    engine::LoadError,
    types::{Attribute, Customer, Hook, Money, OrderContext, OrderLine, world_exporting},
};

use super::RegistryError;

/// `\0asm`, the first four bytes of every WebAssembly binary.
const MAGIC: &[u8; 4] = b"\0asm";

/// What validation learnt about an accepted component.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The world it targets (`validator`, `pricer`, `prioritizer`, `order-policy`).
    pub world: &'static str,
    /// The WIT package version of its hook exports.
    pub wit_version: &'static str,
    /// The hooks it serves.
    pub hooks: Vec<Hook>,
    /// Every export, sorted.
    pub exports: Vec<String>,
    /// Every import, sorted.
    pub imports: Vec<String>,
}

/// The order context every smoke call sees: two lines, a VIP customer, a fixed time.
pub fn smoke_context() -> OrderContext {
    let line = |sku: &str, quantity, unit_price| OrderLine {
        product_id: format!("smoke-product-{sku}"),
        stock_id: format!("smoke-stock-{sku}"),
        sku: sku.to_owned(),
        quantity,
        unit_price,
        currency: "EUR".into(),
        available: 100,
        tags: vec!["smoke".into()],
        vendor: Some("Smoke Works".into()),
        category: Some("smoke".into()),
        units_last24h: 1,
        units_last30d: 2,
    };
    OrderContext {
        tenant: "registry-smoke".into(),
        customer: Customer {
            id: "smoke-customer".into(),
            vip: true,
            tags: vec!["smoke".into()],
            order_count: 3,
            account_age_days: 30,
            lifetime_orders: 2,
            lifetime_spend: vec![Money {
                amount: 12_400,
                currency: "EUR".into(),
            }],
        },
        lines: vec![line("SMOKE-1", 2, 1_250), line("SMOKE-2", 1, 9_900)],
        expected_total: None,
        order_time_ms: 1_764_000_000_000,
        discount_codes: vec!["SMOKE10".into()],
        attributes: vec![Attribute {
            key: "channel".into(),
            value: "smoke".into(),
        }],
    }
}

/// Checks the binary header: random bytes and core modules are told apart from
/// components before anything is compiled.
fn check_header(bytes: &[u8]) -> Result<(), RegistryError> {
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(RegistryError::NotAComponent);
    }
    // After the magic: a 16-bit version and a 16-bit layer; layer 0 is a core module,
    // layer 1 a component.
    match [bytes[6], bytes[7]] {
        [0, 0] => Err(RegistryError::CoreModule),
        [1, 0] => Ok(()),
        _ => Err(RegistryError::NotAComponent),
    }
}

/// Runs every check on `bytes` (CPU work: call from a blocking thread).
pub fn validate(
    runtime: &PolicyRuntime,
    name: &str,
    version: &str,
    bytes: &[u8],
) -> Result<Validated, RegistryError> {
    check_header(bytes)?;
    let compiled = runtime
        .engine()
        .load(name, version, bytes)
        .map_err(|e| match e {
            LoadError::Compile(detail) => RegistryError::CompileFailed(detail),
            LoadError::ForbiddenImport(import) => RegistryError::ForbiddenImport(import),
            // Every import is in the allowlist, yet the host cannot provide it (e.g. a
            // WASI version it does not implement): still an import the sandbox refuses.
            LoadError::Link(detail) => RegistryError::ForbiddenImport(detail),
            LoadError::NoHook(exports) => RegistryError::UnknownWorld(exports),
        })?;
    let exports = compiled.exports().to_vec();
    let hooks = compiled.hooks();
    let foreign = exports
        .iter()
        .any(|e| !Hook::ALL.iter().any(|h| compiled.export_of(*h) == e));
    let world = world_exporting(&hooks)
        .filter(|_| !foreign)
        .ok_or_else(|| RegistryError::UnknownWorld(exports.clone()))?;
    let imports = compiled.imports().to_vec();
    let compiled = Arc::new(compiled);
    let ctx = smoke_context();
    for &hook in &hooks {
        runtime
            .try_component(compiled.clone(), hook, &ctx)
            .map_err(|fault| RegistryError::SmokeCallFailed {
                hook,
                kind: fault.kind,
                detail: fault.detail,
            })?;
    }
    Ok(Validated {
        world,
        wit_version: compiled.wit_version.as_str(),
        hooks,
        exports,
        imports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_tell_random_bytes_core_modules_and_components_apart() {
        let code = |b: &[u8]| check_header(b).map_err(|e| e.code());
        assert_eq!(code(b""), Err("NOT_A_COMPONENT"));
        assert_eq!(code(b"hello world"), Err("NOT_A_COMPONENT"));
        assert_eq!(code(b"\0asm"), Err("NOT_A_COMPONENT"));
        assert_eq!(code(b"\0asm\x01\0\0\0"), Err("CORE_MODULE"));
        assert_eq!(code(b"\0asm\x0d\0\x01\0"), Ok(()));
        assert_eq!(code(b"\0asm\x0d\0\x07\0"), Err("NOT_A_COMPONENT"));
    }
}
