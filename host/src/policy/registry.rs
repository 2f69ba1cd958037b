//! The components a process knows: the built-ins embedded in the binary, plus any
//! `policies/components/<name>@<version>.wasm` an operator drops in (until the upload API
//! lands, that is how a tenant's own component reaches the host). Each is compiled and
//! pre-linked once, when it is registered.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{
    engine::{CompiledComponent, LoadError, PolicyEngine},
    types::Hook,
};

/// Version of the built-in components (the `components/` workspace version). Not the WIT
/// package's version (`types::WIT_VERSION`): the built-ins may change while the contract
/// stays, and the contract may grow a version the built-ins keep serving.
pub const BUILTIN_VERSION: &str = "1.0.0";

/// Folder where the build left every guest component (`<name_with_underscores>.wasm`),
/// including the misbehaving ones the tests load.
pub const BUILD_DIR: &str = env!("ORDERHOST_COMPONENTS_DIR");

/// A component shipped inside the binary.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// Name.
    pub name: &'static str,
    /// The hook it serves by default, if it is the standard one for a hook.
    pub default_for: Option<Hook>,
    /// The component bytes.
    pub bytes: &'static [u8],
}

macro_rules! builtin {
    ($name:literal, $file:literal, $hook:expr) => {
        Builtin {
            name: $name,
            default_for: $hook,
            bytes: include_bytes!(concat!(env!("ORDERHOST_COMPONENTS_DIR"), "/", $file)),
        }
    };
}

/// The built-in components.
pub const BUILTINS: &[Builtin] = &[
    builtin!(
        "validation-standard",
        "validation_standard.wasm",
        Some(Hook::Validation)
    ),
    builtin!(
        "pricing-standard",
        "pricing_standard.wasm",
        Some(Hook::Pricing)
    ),
    builtin!(
        "priority-vip",
        "priority_vip.wasm",
        Some(Hook::Prioritization)
    ),
    builtin!("flash-sale", "flash_sale.wasm", None),
    // The three standard built-ins above in one `order-policy` component: bound to all
    // three hooks with one config and limits, an order instantiates it once
    // (`engine.rs`). Nothing binds it by default: see
    // `policies/examples/order-policy.toml`.
    builtin!("order-policy-standard", "order_policy_standard.wasm", None),
];

/// The built-in that serves `hook` when nothing else is bound (and on `fallback`).
pub fn standard_for(hook: Hook) -> &'static Builtin {
    BUILTINS
        .iter()
        .find(|b| b.default_for == Some(hook))
        .expect("every hook has a standard built-in")
}

/// A component that could not be registered.
#[derive(Debug, thiserror::Error)]
#[error("component {id} ({source_path}): {error}")]
pub struct RegistryError {
    /// `name@version`.
    pub id: String,
    /// Where it came from.
    pub source_path: String,
    /// Why.
    #[source]
    pub error: LoadError,
}

/// Compiled components by name and version.
#[derive(Clone, Default)]
pub struct ComponentRegistry {
    components: HashMap<(String, String), Arc<CompiledComponent>>,
}

impl ComponentRegistry {
    /// A registry holding the built-ins.
    pub fn with_builtins(engine: &PolicyEngine) -> Result<Self, RegistryError> {
        let mut registry = Self::default();
        for builtin in BUILTINS {
            registry.insert(
                engine,
                builtin.name,
                BUILTIN_VERSION,
                builtin.bytes,
                "built-in",
            )?;
        }
        Ok(registry)
    }

    /// Compiles and registers a component (replacing one with the same name and version).
    pub fn insert(
        &mut self,
        engine: &PolicyEngine,
        name: &str,
        version: &str,
        bytes: &[u8],
        source: &str,
    ) -> Result<Arc<CompiledComponent>, RegistryError> {
        let compiled = engine
            .load(name, version, bytes)
            .map_err(|error| RegistryError {
                id: format!("{name}@{version}"),
                source_path: source.to_owned(),
                error,
            })?;
        let compiled = Arc::new(compiled);
        self.components
            .insert((name.to_owned(), version.to_owned()), compiled.clone());
        Ok(compiled)
    }

    /// Registers every `<name>@<version>.wasm` in `dir` (a missing folder is empty).
    pub fn insert_dir(&mut self, engine: &PolicyEngine, dir: &Path) -> anyhow::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => anyhow::bail!("cannot read {}: {e}", dir.display()),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        paths.sort();
        for path in paths {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            let (name, version) = stem
                .split_once('@')
                .filter(|(n, v)| !n.is_empty() && !v.is_empty())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: component files are named <name>@<version>.wasm",
                        path.display()
                    )
                })?;
            let bytes = std::fs::read(&path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            self.insert(engine, name, version, &bytes, &path.display().to_string())?;
        }
        Ok(())
    }

    /// Looks a component up.
    pub fn get(&self, name: &str, version: &str) -> Option<Arc<CompiledComponent>> {
        self.components
            .get(&(name.to_owned(), version.to_owned()))
            .cloned()
    }

    /// Every registered component.
    pub fn all(&self) -> Vec<Arc<CompiledComponent>> {
        let mut all: Vec<_> = self.components.values().cloned().collect();
        all.sort_by_key(|c| c.id());
        all
    }
}
