//! Declarative bindings: `policies/default.toml` and `policies/tenants/<tenant>.toml`.
//!
//! ```toml
//! [pricing]
//! component = "pricing-standard@1.0.0"
//! on-error = "fallback"          # or "reject" (the default)
//! [pricing.config]
//! vip-discount-bps = 750         # strings, integers and booleans; read as strings
//! price-lists = { wholesale = { "MUG-1" = 900 } }  # tables/arrays: read as JSON text
//! [pricing.limits]
//! fuel = 50_000_000
//! memory-bytes = 16_777_216
//! timeout-ms = 100
//! ```
//!
//! Manifests are strict: an unknown hook or field, a component that is not registered or
//! does not export the hook, a float (anywhere, also inside a table) as a config value,
//! a config above `MAX_CONFIG_TOTAL_BYTES`, or limits out of range stop start-up with an error naming the file, the tenant, the hook and the field.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::{
    engine::{Limits, MAX_FUEL, MAX_MEMORY_BYTES, MAX_TIMEOUT_MS},
    types::Hook,
};

/// What a failed hook does to the order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Refuse the order: 503 `POLICY_UNAVAILABLE`.
    #[default]
    Reject,
    /// Run the built-in component for the hook instead.
    Fallback,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct HookEntry {
    component: String,
    #[serde(default)]
    config: toml::Table,
    #[serde(default)]
    limits: LimitsEntry,
    #[serde(default)]
    on_error: OnError,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LimitsEntry {
    fuel: Option<u64>,
    memory_bytes: Option<u64>,
    timeout_ms: Option<u64>,
}

/// One hook's binding as written in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingSpec {
    /// Component name.
    pub name: String,
    /// Component version.
    pub version: String,
    /// Configuration passed to `config(key)`.
    pub config: BTreeMap<String, String>,
    /// Limits.
    pub limits: Limits,
    /// What a failure does.
    pub on_error: OnError,
    /// Where it was written (file path).
    pub source: String,
}

/// The bindings a manifest file declares, by hook.
pub type ManifestBindings = BTreeMap<Hook, BindingSpec>;

/// A manifest that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: tenant {tenant}{}: {problem}", hook.map(|h| format!(", hook {h}")).unwrap_or_default())]
pub struct ManifestError {
    /// The file.
    pub file: PathBuf,
    /// The tenant the file binds (`default` for default.toml).
    pub tenant: String,
    /// The hook, when the problem is in one.
    pub hook: Option<Hook>,
    /// What is wrong (names the field).
    pub problem: String,
}

/// Parses one manifest file's text.
pub fn parse(file: &Path, tenant: &str, text: &str) -> Result<ManifestBindings, ManifestError> {
    let err = |hook: Option<Hook>, problem: String| ManifestError {
        file: file.to_owned(),
        tenant: tenant.to_owned(),
        hook,
        problem,
    };
    let table: toml::Table =
        toml::from_str(text).map_err(|e| err(None, format!("not valid TOML: {}", e.message())))?;
    let mut bindings = BTreeMap::new();
    for (key, value) in table {
        let hook = Hook::ALL
            .into_iter()
            .find(|h| h.as_str() == key)
            .ok_or_else(|| {
                err(
                    None,
                    format!(
                        "unknown hook `{key}` (expected validation, pricing or prioritization)"
                    ),
                )
            })?;
        let entry: HookEntry = value
            .try_into()
            .map_err(|e: toml::de::Error| err(Some(hook), e.message().to_owned()))?;
        let (name, version) = entry
            .component
            .split_once('@')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
            .ok_or_else(|| {
                err(
                    Some(hook),
                    format!(
                        "field `component`: {:?} is not `name@version`",
                        entry.component
                    ),
                )
            })?;
        let mut config = BTreeMap::new();
        for (k, v) in entry.config {
            let value = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                structured @ (toml::Value::Table(_) | toml::Value::Array(_)) => {
                    let json = serde_json::to_value(&structured)
                        .map_err(|e| err(Some(hook), format!("field `config.{k}`: {e}")))?;
                    super::types::structured_config_text(&json)
                        .map_err(|e| err(Some(hook), format!("field `config.{k}`: {e}")))?
                }
                other => {
                    return Err(err(
                        Some(hook),
                        format!(
                            "field `config.{k}`: a {} is not allowed (use a string, an integer, a boolean, or a table or array of them; money is integer minor units)",
                            other.type_str()
                        ),
                    ));
                }
            };
            config.insert(k, value);
        }
        if super::types::config_bytes(&config) > super::types::MAX_CONFIG_TOTAL_BYTES {
            return Err(err(
                Some(hook),
                format!(
                    "field `config`: more than {} bytes",
                    super::types::MAX_CONFIG_TOTAL_BYTES
                ),
            ));
        }
        let defaults = Limits::default();
        let limits = Limits {
            fuel: entry.limits.fuel.unwrap_or(defaults.fuel),
            memory_bytes: entry.limits.memory_bytes.unwrap_or(defaults.memory_bytes),
            timeout_ms: entry.limits.timeout_ms.unwrap_or(defaults.timeout_ms),
        };
        check_limits(&limits).map_err(|p| err(Some(hook), p))?;
        bindings.insert(
            hook,
            BindingSpec {
                name: name.to_owned(),
                version: version.to_owned(),
                config,
                limits,
                on_error: entry.on_error,
                source: file.display().to_string(),
            },
        );
    }
    Ok(bindings)
}

/// Limits within what the engine can enforce.
pub fn check_limits(limits: &Limits) -> Result<(), String> {
    if limits.fuel == 0 || limits.fuel > MAX_FUEL {
        return Err(format!(
            "field `limits.fuel`: {} is not in 1..={MAX_FUEL}",
            limits.fuel
        ));
    }
    if limits.memory_bytes < 65_536 || limits.memory_bytes > MAX_MEMORY_BYTES {
        return Err(format!(
            "field `limits.memory-bytes`: {} is not in 65536..={MAX_MEMORY_BYTES}",
            limits.memory_bytes
        ));
    }
    if limits.timeout_ms == 0 || limits.timeout_ms > MAX_TIMEOUT_MS {
        return Err(format!(
            "field `limits.timeout-ms`: {} is not in 1..={MAX_TIMEOUT_MS}",
            limits.timeout_ms
        ));
    }
    Ok(())
}
