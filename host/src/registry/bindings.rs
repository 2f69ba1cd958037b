//! Tenant bindings over the admin API: which component serves each hook of a tenant, with
//! its config, limits and `on_error`. Owns the `bindings`, `binding_history` and
//! `bindings_revision` tables.
//!
//! Every change is one append-only history row with a revision that increases per
//! tenant; `bindings` points each (tenant, hook) at the row that serves it, and the
//! one-row `bindings_revision` is bumped in the same transaction. A change is resolved,
//! compiled (cached by sha256), pre-linked and smoke-called with its own config and
//! limits *before* it is stored; then [`refresh`] rebuilds the database layer of the
//! policy runtime and publishes a new immutable snapshot. Requests in flight finish on
//! the snapshot they took. A refusal stores nothing and keeps the active snapshot.
//!
//! [`refresh`] is the "publish" step other replicas will hang on (a pub/sub message or a
//! periodic check calls it): it does nothing when the stored revision is not newer than
//! the snapshot's.
//!
//! Precedence: database bindings over `policies/tenants/<slug>.toml` over
//! `policies/default.toml` over the built-ins.

use std::{collections::BTreeMap, sync::Arc};

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{RegistryError, Viewer};

mod rollout;
use crate::{
    auth::AuthUser,
    clock::rfc3339,
    http::{
        error::{ApiError, ErrorEnvelope},
        extract::{Json, Path, Query},
        pagination::{Page, PageQuery},
    },
    policy::{
        Binding, BindingLayer, DatabaseBindings, HookMap, Limits, Override, PolicyRuntime,
        engine::{CompiledComponent, MAX_FUEL, MAX_MEMORY_BYTES, MAX_TIMEOUT_MS},
        manifest::{OnError, check_limits},
        registry::BUILTIN_VERSION,
        types::{Hook, HookOutput, PricingRefusal},
    },
    state::AppState,
    store::{Store, WritePool as _},
    tenants, with_pool,
};
pub use rollout::spawn_auto_rollbacks;

/// Most config entries a binding may have.
pub const MAX_CONFIG_ENTRIES: usize = 32;
/// Longest config key, bytes.
pub const MAX_CONFIG_KEY_BYTES: usize = 64;
/// Longest config value, bytes.
pub const MAX_CONFIG_VALUE_BYTES: usize = 1024;
/// Longest reason, characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Why a binding request failed.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    /// The path names no hook.
    #[error("no hook {0} (expected validation, pricing or prioritization)")]
    UnknownHook(String),
    /// The component is unknown or invisible to the tenant.
    #[error("no component {0} visible to this tenant")]
    ComponentNotFound(String),
    /// The component does not serve the hook.
    #[error("{component} does not export {export}")]
    HookNotExported {
        /// `name@version`.
        component: String,
        /// The export the hook needs.
        export: &'static str,
        /// What it serves.
        serves: Vec<Hook>,
    },
    /// Limits beyond the engine's ceilings.
    #[error("{0}")]
    LimitsOutOfRange(String),
    /// A config entry that is not allowed.
    #[error("config `{key}`: {problem}")]
    ConfigInvalid {
        /// The key.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// A field of the body that does not parse.
    #[error("{field}: {problem}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The stored component does not compile or link.
    #[error("{component} does not load: {detail}")]
    CompileFailed {
        /// `name@version`.
        component: String,
        /// Why.
        detail: String,
    },
    /// The smoke call with the new config and limits failed.
    #[error("the {hook} smoke call of {component} failed ({kind}): {detail}")]
    SmokeCallFailed {
        /// `name@version`.
        component: String,
        /// The hook.
        hook: Hook,
        /// The fault kind, or `INVALID_CONFIG` when the component refused its config.
        kind: String,
        /// What happened.
        detail: String,
    },
    /// No such revision of this tenant and hook.
    #[error("no revision {revision} of the {hook} binding")]
    RevisionNotFound {
        /// The hook.
        hook: Hook,
        /// The revision asked for.
        revision: i64,
    },
    /// Nothing to roll back: the hook has no database binding.
    #[error("the {0} hook has no database binding to roll back")]
    NoPreviousRevision(Hook),
    /// A rollout change on a hook that has no database binding to roll out beside.
    #[error("the {0} hook has no database binding: bind a stable component first")]
    NoDatabaseBinding(Hook),
    /// A ramp or promotion of a hook that has no canary.
    #[error("the {0} hook has no canary")]
    NoCanary(Hook),
    /// A shadow change or report of a hook that has no shadow.
    #[error("the {0} hook has no shadow")]
    NoShadow(Hook),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// Something unexpected.
    #[error("{0}")]
    Internal(String),
}

impl BindingError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownHook(_) => "HOOK_NOT_FOUND",
            Self::ComponentNotFound(_) => "COMPONENT_NOT_FOUND",
            Self::HookNotExported { .. } => "HOOK_NOT_EXPORTED",
            Self::LimitsOutOfRange(_) => "LIMITS_OUT_OF_RANGE",
            Self::ConfigInvalid { .. } => "CONFIG_INVALID",
            Self::Field { .. } => "VALIDATION_FAILED",
            Self::CompileFailed { .. } => "COMPILE_FAILED",
            Self::SmokeCallFailed { .. } => "SMOKE_CALL_FAILED",
            Self::RevisionNotFound { .. } => "REVISION_NOT_FOUND",
            Self::NoPreviousRevision(_) => "NO_PREVIOUS_REVISION",
            Self::NoDatabaseBinding(_) => "NO_DATABASE_BINDING",
            Self::NoCanary(_) => "NO_CANARY",
            Self::NoShadow(_) => "NO_SHADOW",
            Self::Db(_) | Self::Internal(_) => "INTERNAL",
        }
    }
}

impl From<BindingError> for ApiError {
    fn from(err: BindingError) -> Self {
        let code = err.code();
        let message = err.to_string();
        let refusal = |details: serde_json::Value| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message.clone())
                .with_details(details)
        };
        match err {
            BindingError::UnknownHook(hook) => {
                ApiError::not_found(code, message).with_details(serde_json::json!({ "hook": hook }))
            }
            BindingError::ComponentNotFound(id) => refusal(serde_json::json!({ "component": id })),
            BindingError::HookNotExported {
                component,
                export,
                serves,
            } => refusal(serde_json::json!({
                "component": component, "export": export, "serves": serves,
            })),
            BindingError::LimitsOutOfRange(problem) => refusal(serde_json::json!({
                "problem": problem,
                "max": { "fuel": MAX_FUEL, "memoryBytes": MAX_MEMORY_BYTES, "timeoutMs": MAX_TIMEOUT_MS },
            })),
            BindingError::ConfigInvalid { key, problem } => {
                refusal(serde_json::json!({ "key": key, "problem": problem }))
            }
            BindingError::Field { field, problem } => ApiError::validation(field, problem),
            BindingError::CompileFailed { component, detail } => refusal(serde_json::json!({
                "component": component, "problem": detail.lines().next().unwrap_or_default(),
            })),
            BindingError::SmokeCallFailed {
                component,
                hook,
                kind,
                detail,
            } => refusal(serde_json::json!({
                "component": component, "hook": hook, "kind": kind, "problem": detail,
            })),
            BindingError::RevisionNotFound { hook, revision } => ApiError::not_found(code, message)
                .with_details(serde_json::json!({ "hook": hook, "revision": revision })),
            BindingError::NoPreviousRevision(hook)
            | BindingError::NoDatabaseBinding(hook)
            | BindingError::NoCanary(hook)
            | BindingError::NoShadow(hook) => ApiError::new(StatusCode::CONFLICT, code, message)
                .with_details(serde_json::json!({ "hook": hook })),
            BindingError::Db(e) => e.into(),
            BindingError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

impl From<RegistryError> for BindingError {
    fn from(err: RegistryError) -> Self {
        match err {
            RegistryError::Db(e) => Self::Db(e),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// One history row.
#[derive(Debug, Clone, sqlx::FromRow)]
struct HistoryRow {
    tenant_slug: Option<String>,
    revision: i64,
    hook: String,
    action: String,
    component_name: Option<String>,
    component_version: Option<String>,
    sha256: Option<String>,
    config: String,
    fuel: i64,
    memory_bytes: i64,
    timeout_ms: i64,
    on_error: String,
    actor_id: String,
    actor_email: Option<String>,
    reason: String,
    previous_revision: Option<i64>,
    restores_revision: Option<i64>,
    created_at: i64,
    canary_name: Option<String>,
    canary_version: Option<String>,
    canary_sha256: Option<String>,
    canary_config: Option<String>,
    canary_permille: i32,
    shadow_name: Option<String>,
    shadow_version: Option<String>,
    shadow_sha256: Option<String>,
    shadow_config: Option<String>,
    shadow_permille: i32,
}

const SELECT_HISTORY: &str = "select t.slug as tenant_slug, h.revision, h.hook, h.action, \
     h.component_name, h.component_version, h.sha256, h.config, h.fuel, h.memory_bytes, \
     h.timeout_ms, h.on_error, h.actor_id, u.email as actor_email, h.reason, \
     h.previous_revision, h.restores_revision, h.created_at, \
     h.canary_name, h.canary_version, h.canary_sha256, h.canary_config, h.canary_permille, \
     h.shadow_name, h.shadow_version, h.shadow_sha256, h.shadow_config, h.shadow_permille \
     from binding_history h left join users u on u.id = h.actor_id \
     left join tenants t on t.id = h.tenant_id";

impl HistoryRow {
    fn component_id(&self) -> Option<String> {
        Some(format!(
            "{}@{}",
            self.component_name.as_deref()?,
            self.component_version.as_deref()?
        ))
    }

    fn hook(&self) -> Option<Hook> {
        parse_hook(&self.hook).ok()
    }

    fn limits(&self) -> Limits {
        let u = |v: i64| u64::try_from(v).unwrap_or_default();
        Limits {
            fuel: u(self.fuel),
            memory_bytes: u(self.memory_bytes),
            timeout_ms: u(self.timeout_ms),
        }
    }

    fn on_error(&self) -> OnError {
        if self.on_error == "fallback" {
            OnError::Fallback
        } else {
            OnError::Reject
        }
    }

    fn config(&self) -> BTreeMap<String, String> {
        serde_json::from_str(&self.config).unwrap_or_default()
    }

    /// The row's canary, when it has one.
    pub(super) fn canary(&self) -> Option<Candidate> {
        Candidate::from_columns(
            self.canary_name.as_deref(),
            self.canary_version.as_deref(),
            self.canary_sha256.as_deref(),
            self.canary_config.as_deref(),
            self.canary_permille,
        )
    }

    /// The row's shadow, when it has one.
    pub(super) fn shadow(&self) -> Option<Candidate> {
        Candidate::from_columns(
            self.shadow_name.as_deref(),
            self.shadow_version.as_deref(),
            self.shadow_sha256.as_deref(),
            self.shadow_config.as_deref(),
            self.shadow_permille,
        )
    }
}

/// A canary or shadow candidate as stored with a binding revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Candidate {
    pub(super) name: String,
    pub(super) version: String,
    pub(super) sha256: String,
    pub(super) config: BTreeMap<String, String>,
    /// Share, per mille.
    pub(super) permille: u16,
}

impl Candidate {
    fn from_columns(
        name: Option<&str>,
        version: Option<&str>,
        sha256: Option<&str>,
        config: Option<&str>,
        permille: i32,
    ) -> Option<Self> {
        Some(Self {
            name: name?.to_owned(),
            version: version?.to_owned(),
            sha256: sha256.unwrap_or_default().to_owned(),
            config: config
                .and_then(|c| serde_json::from_str(c).ok())
                .unwrap_or_default(),
            permille: u16::try_from(permille.clamp(0, 1_000)).unwrap_or(0),
        })
    }

    /// `name@version`.
    pub(super) fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Limits as the API reads and shows them.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsBody {
    /// Fuel (≈ wasm instructions) per call; default 50 000 000.
    pub fuel: Option<u64>,
    /// Largest linear memory, bytes; default 16 MiB.
    pub memory_bytes: Option<u64>,
    /// Wall-clock budget per call, ms; default 100.
    pub timeout_ms: Option<u64>,
}

impl From<Limits> for LimitsBody {
    fn from(l: Limits) -> Self {
        Self {
            fuel: Some(l.fuel),
            memory_bytes: Some(l.memory_bytes),
            timeout_ms: Some(l.timeout_ms),
        }
    }
}

/// `PUT /admin/tenants/{tenant}/bindings/{hook}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BindBody {
    /// `name@version`, or `name@<semver range>` (e.g. `flash-sale@^0.1`) resolved now to
    /// the highest matching version among the platform's and the tenant's components.
    pub component: String,
    /// Configuration read by `config(key)`: strings (integers and booleans are taken as
    /// their text), or JSON objects and arrays of them, read as their JSON text (integers
    /// only, no null; at most 256 KiB per binding in all).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Limits (defaults where absent).
    #[serde(default)]
    pub limits: LimitsBody,
    /// What a failed call does: `reject` (default) or `fallback` to the built-in.
    #[serde(default)]
    pub on_error: OnError,
    /// Why (kept in the history).
    #[serde(default)]
    pub reason: String,
}

/// `POST …/bindings/{hook}/rollback`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollbackBody {
    /// The revision to restore; default: what served the hook before the active one.
    pub revision: Option<i64>,
    /// Why (kept in the history).
    #[serde(default)]
    pub reason: String,
}

/// One hook's effective binding.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BindingView {
    /// The hook.
    pub hook: Hook,
    /// Which layer serves it.
    pub source: BindingLayer,
    /// Where exactly (`database`, a file path, `built-in`).
    pub declared_in: String,
    /// `name@version`.
    pub component: String,
    /// Its sha256.
    pub sha256: String,
    /// The tenant's revision, for a database binding.
    pub revision: Option<i64>,
    /// Configuration.
    pub config: BTreeMap<String, String>,
    /// Limits.
    pub limits: LimitsBody,
    /// What a failure does.
    pub on_error: OnError,
    /// The canary beside it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<rollout::CandidateView>,
    /// The shadow beside it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<rollout::CandidateView>,
}

/// A tenant's effective bindings.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BindingsView {
    /// Tenant slug.
    pub tenant: String,
    /// The tenant's latest revision (0: never bound over the API).
    pub revision: i64,
    /// One per hook, in evaluation order.
    pub bindings: Vec<BindingView>,
}

/// One change.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The tenant's revision of this change.
    pub revision: i64,
    /// The hook.
    pub hook: String,
    /// `bind`, `rollback`, `canary` (set or ramped), `promote`, `auto-rollback` (the
    /// service took the canary to 0 % by itself), `shadow`.
    pub action: String,
    /// `name@version` now serving; `null`: no database binding (the TOML files or the
    /// built-in serve).
    pub component: Option<String>,
    /// Its sha256.
    pub sha256: Option<String>,
    /// Configuration.
    pub config: BTreeMap<String, String>,
    /// Limits.
    pub limits: LimitsBody,
    /// What a failure does.
    pub on_error: String,
    /// Who (user id).
    pub by: String,
    /// Who (email, while the user exists).
    pub by_email: Option<String>,
    /// When (RFC 3339).
    pub at: String,
    /// Why.
    pub reason: String,
    /// The revision that served the hook before (`null`: no database binding).
    pub from_revision: Option<i64>,
    /// For a rollback: the revision it restored.
    pub restores_revision: Option<i64>,
    /// The canary this revision carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<rollout::CandidateView>,
    /// The shadow this revision carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<rollout::CandidateView>,
}

impl From<HistoryRow> for HistoryEntry {
    fn from(row: HistoryRow) -> Self {
        Self {
            canary: row.canary().as_ref().map(Into::into),
            shadow: row.shadow().as_ref().map(Into::into),
            component: row.component_id(),
            config: row.config(),
            limits: row.limits().into(),
            revision: row.revision,
            hook: row.hook,
            action: row.action,
            sha256: row.sha256,
            on_error: row.on_error,
            by: row.actor_id,
            by_email: row.actor_email,
            at: rfc3339(row.created_at),
            reason: row.reason,
            from_revision: row.previous_revision,
            restores_revision: row.restores_revision,
        }
    }
}

/// What a change answers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeView {
    /// The stored change.
    pub change: HistoryEntry,
    /// The policy-set generation now active in this process.
    pub generation: u64,
}

/// Filter of the history.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only this hook.
    pub hook: Option<String>,
}

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_bindings))
        .routes(routes!(bind))
        .routes(routes!(rollout::set_rollout))
        .routes(routes!(rollout::promote))
        .routes(routes!(rollout::shadow_report))
        .routes(routes!(rollback))
        .routes(routes!(history))
        .merge(super::ceilings::router())
        // A binding's config may be a JSON price list of up to `MAX_CONFIG_TOTAL_BYTES`
        // (a canary's config beside it): the edge guard reads these bodies under
        // `MAX_BINDING_BODY_BYTES` instead of the service's general limit.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BINDING_BODY_BYTES))
}

/// Largest body of a request that changes a binding (`PUT`/`PATCH
/// /admin/tenants/{tenant}/bindings/{hook}`): two configs of the largest size, and room.
pub const MAX_BINDING_BODY_BYTES: usize =
    2 * crate::policy::types::MAX_CONFIG_TOTAL_BYTES + (64 << 10);

/// Whether a request changes a binding (and may carry a large config).
pub fn changes_a_binding(method: &axum::http::Method, path: &str) -> bool {
    (method == axum::http::Method::PUT || method == axum::http::Method::PATCH)
        && path
            .strip_prefix("/admin/tenants/")
            .and_then(|rest| rest.split_once("/bindings/"))
            .is_some_and(|(tenant, hook)| !tenant.contains('/') && !hook.contains('/'))
}

/// An optional JSON body: empty (or blank) is the default request.
fn optional_body<T: Default + serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, BindingError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| BindingError::Field {
        field: "body",
        problem: format!("not a {what} request: {e}"),
    })
}

fn parse_hook(raw: &str) -> Result<Hook, BindingError> {
    Hook::ALL
        .into_iter()
        .find(|h| h.as_str() == raw)
        .ok_or_else(|| BindingError::UnknownHook(raw.chars().take(64).collect()))
}

fn parse_reason(raw: &str) -> Result<String, BindingError> {
    let reason = raw.trim();
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(BindingError::Field {
            field: "reason",
            problem: format!("at most {MAX_REASON_CHARS} characters"),
        });
    }
    Ok(reason.to_owned())
}

fn parse_config(
    raw: serde_json::Map<String, serde_json::Value>,
) -> Result<BTreeMap<String, String>, BindingError> {
    if raw.len() > MAX_CONFIG_ENTRIES {
        return Err(BindingError::ConfigInvalid {
            key: String::new(),
            problem: format!("at most {MAX_CONFIG_ENTRIES} entries"),
        });
    }
    let mut config = BTreeMap::new();
    for (key, value) in raw {
        let invalid = |problem: String| BindingError::ConfigInvalid {
            key: key.chars().take(MAX_CONFIG_KEY_BYTES).collect(),
            problem,
        };
        let key_ok = (1..=MAX_CONFIG_KEY_BYTES).contains(&key.len())
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !key_ok {
            return Err(invalid(format!(
                "keys are 1-{MAX_CONFIG_KEY_BYTES} of a-z, A-Z, 0-9, '-', '_', '.'"
            )));
        }
        let value = match value {
            serde_json::Value::String(s) if s.len() > MAX_CONFIG_VALUE_BYTES => {
                return Err(invalid(format!(
                    "string values are at most {MAX_CONFIG_VALUE_BYTES} bytes (a larger value goes in as a JSON table or array)"
                )));
            }
            serde_json::Value::String(s) => s,
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            structured @ (serde_json::Value::Object(_) | serde_json::Value::Array(_)) => {
                crate::policy::types::structured_config_text(&structured).map_err(invalid)?
            }
            _ => {
                return Err(invalid(
                    "values are strings, integers, booleans, or JSON tables and arrays of them (integers and booleans are taken as their text; money is integer minor units)".into(),
                ));
            }
        };
        config.insert(key, value);
    }
    let total = crate::policy::types::config_bytes(&config);
    if total > crate::policy::types::MAX_CONFIG_TOTAL_BYTES {
        return Err(BindingError::ConfigInvalid {
            key: String::new(),
            problem: format!(
                "{total} bytes of config; at most {} per binding",
                crate::policy::types::MAX_CONFIG_TOTAL_BYTES
            ),
        });
    }
    Ok(config)
}

fn parse_limits(body: LimitsBody) -> Result<Limits, BindingError> {
    let defaults = Limits::default();
    let limits = Limits {
        fuel: body.fuel.unwrap_or(defaults.fuel),
        memory_bytes: body.memory_bytes.unwrap_or(defaults.memory_bytes),
        timeout_ms: body.timeout_ms.unwrap_or(defaults.timeout_ms),
    };
    check_limits(&limits).map_err(BindingError::LimitsOutOfRange)?;
    Ok(limits)
}

/// A component chosen for a binding.
struct Chosen {
    name: String,
    version: String,
    sha256: String,
}

/// Resolves `name@version` or `name@<range>` among the components `tenant_id` sees
/// (its own before the platform's) and the built-ins.
async fn choose(store: &Store, tenant_id: &str, spec: &str) -> Result<Chosen, BindingError> {
    let not_found = || BindingError::ComponentNotFound(spec.chars().take(140).collect());
    let (name, wanted) = spec.trim().split_once('@').ok_or_else(not_found)?;
    let name = super::parse_name(name).map_err(|_| not_found())?;
    let viewer = Viewer::Tenant(tenant_id.to_owned());
    let builtin = |version: &str| {
        super::is_builtin(&name, version).then(|| Chosen {
            name: name.clone(),
            version: version.to_owned(),
            sha256: String::new(),
        })
    };
    let version = match semver::Version::parse(wanted.trim()) {
        Ok(exact) => exact.to_string(),
        Err(_) => {
            let range = semver::VersionReq::parse(wanted.trim()).map_err(|_| not_found())?;
            let filter = super::Filter {
                name: Some(name.clone()),
                ..super::Filter::default()
            };
            let (rows, _) = super::list(store, &viewer, &filter, 1000, 0).await?;
            rows.iter()
                .map(|r| r.version.as_str())
                .chain(super::is_builtin(&name, BUILTIN_VERSION).then_some(BUILTIN_VERSION))
                .filter_map(|v| semver::Version::parse(v).ok())
                .filter(|v| range.matches(v))
                .max()
                .ok_or_else(not_found)?
                .to_string()
        }
    };
    match super::find(store, &viewer, None, &name, &version).await? {
        Some(row) => Ok(Chosen {
            name: row.name,
            version: row.version,
            sha256: row.sha256,
        }),
        None => builtin(&version).ok_or_else(not_found),
    }
}

/// The compiled component of `chosen` (a built-in when its sha256 is empty or a
/// built-in's), compiled once per process.
async fn compiled(
    store: &Store,
    runtime: &Arc<PolicyRuntime>,
    name: &str,
    version: &str,
    sha256: &str,
) -> Result<Arc<CompiledComponent>, BindingError> {
    let id = format!("{name}@{version}");
    if let Some(builtin) = runtime
        .registry()
        .get(name, version)
        .filter(|b| sha256.is_empty() || b.sha256 == sha256)
        .filter(|_| super::is_builtin(name, version))
    {
        return Ok(builtin);
    }
    if let Some(c) = runtime.compiled_upload(sha256, &id) {
        return Ok(c);
    }
    let bytes = super::load_bytes(store, sha256)
        .await?
        .ok_or_else(|| BindingError::ComponentNotFound(id.clone()))?;
    let (runtime, name, version) = (runtime.clone(), name.to_owned(), version.to_owned());
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        span.in_scope(|| runtime.compile_upload(&name, &version, &bytes))
    })
    .await
    .map_err(|e| BindingError::Internal(format!("compile task failed: {e}")))?
    .map_err(|e| BindingError::CompileFailed {
        component: id,
        detail: e.to_string(),
    })
}

/// Checks that `binding` serves `hook` and smoke-calls it with its own config and limits.
async fn check(
    runtime: &Arc<PolicyRuntime>,
    binding: Binding,
    hook: Hook,
    tenant_slug: &str,
) -> Result<(), BindingError> {
    let component = binding.component.id();
    if !binding.component.serves(hook) {
        return Err(BindingError::HookNotExported {
            export: binding.component.export_of(hook),
            component,
            serves: binding.component.hooks(),
        });
    }
    let mut ctx = super::validate::smoke_context();
    ctx.tenant = tenant_slug.to_owned();
    let runtime = runtime.clone();
    let span = tracing::Span::current();
    let output = tokio::task::spawn_blocking(move || {
        span.in_scope(|| runtime.try_binding(&binding, hook, &ctx))
    })
    .await
    .map_err(|e| BindingError::Internal(format!("smoke task failed: {e}")))?;
    let failed = |kind: String, detail: String| BindingError::SmokeCallFailed {
        component: component.clone(),
        hook,
        kind,
        detail,
    };
    match output {
        Err(fault) => Err(failed(fault.kind.as_str().to_owned(), fault.detail)),
        // The components' shared convention: a bad config value is reported as an
        // `INVALID_CONFIG` violation (or an internal pricing error), on any context.
        Ok(HookOutput::Violations(v)) => match v.iter().find(|v| v.code == "INVALID_CONFIG") {
            Some(v) => Err(failed("INVALID_CONFIG".into(), v.message.clone())),
            None => Ok(()),
        },
        Ok(HookOutput::Quote(Err(PricingRefusal::Internal(detail)))) => {
            Err(failed("INVALID_CONFIG".into(), detail))
        }
        Ok(_) => Ok(()),
    }
}

/// The header of a per-request override.
pub const OVERRIDE_HEADER: &str = "x-policy-override";

/// 403 `OVERRIDE_FORBIDDEN`.
pub fn override_forbidden(why: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "OVERRIDE_FORBIDDEN", why.to_owned())
        .with_details(serde_json::json!({ "header": "X-Policy-Override" }))
}

fn override_invalid(problem: impl Into<String>) -> ApiError {
    let problem = problem.into();
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "OVERRIDE_INVALID",
        format!("X-Policy-Override: {problem}"),
    )
    .with_details(serde_json::json!({
        "header": "X-Policy-Override",
        "problem": problem,
        "expected": "hook=name@version[?key=value&…], comma-separated; hooks: validation, pricing, prioritization",
    }))
}

/// Reads `X-Policy-Override: hook=name@version[?config], …` for a request evaluated for
/// `tenant_id`: none → empty; sent by anyone but an operator → 403
/// `OVERRIDE_FORBIDDEN`; each component is resolved like a binding's (`name@version` or a
/// range among the tenant's, the platform's and the built-ins), compiled through the same
/// sha256 cache and checked to export its hook. A `?key=value&…` suffix (URL-encoded)
/// is the override's config; without it the current binding's config is kept.
pub async fn read_overrides(
    state: &AppState,
    actor: &AuthUser,
    tenant_id: &str,
    headers: &axum::http::HeaderMap,
) -> Result<Vec<Override>, ApiError> {
    let values: Vec<_> = headers.get_all(OVERRIDE_HEADER).iter().collect();
    if values.is_empty() {
        return Ok(Vec::new());
    }
    if actor.role(&state.store).await? != crate::auth::Role::Operator {
        return Err(override_forbidden(
            "only operators may override a binding for one request",
        ));
    }
    let mut text = String::new();
    for value in values {
        let value = value
            .to_str()
            .map_err(|_| override_invalid("not visible ASCII"))?;
        if !text.is_empty() {
            text.push(',');
        }
        text.push_str(value);
    }
    let mut overrides: Vec<Override> = Vec::new();
    for pair in text.split(',').map(str::trim) {
        let (hook, spec) = pair
            .split_once('=')
            .ok_or_else(|| override_invalid(format!("{pair:?} is not hook=name@version")))?;
        let hook = parse_hook(hook.trim())
            .map_err(|_| override_invalid(format!("no hook {:?}", hook.trim())))?;
        if overrides.iter().any(|o| o.hook == hook) {
            return Err(override_invalid(format!("{hook} is overridden twice")));
        }
        let (spec, query) = match spec.split_once('?') {
            Some((spec, query)) => (spec.trim(), Some(query)),
            None => (spec.trim(), None),
        };
        if !spec.contains('@') {
            return Err(override_invalid(format!("{spec:?} is not name@version")));
        }
        let config = query
            .map(|q| {
                let raw: serde_json::Map<String, serde_json::Value> =
                    url::form_urlencoded::parse(q.as_bytes())
                        .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
                        .collect();
                parse_config(raw)
            })
            .transpose()?;
        let chosen = choose(&state.store, tenant_id, spec).await?;
        let component = compiled(
            &state.store,
            &state.policy,
            &chosen.name,
            &chosen.version,
            &chosen.sha256,
        )
        .await?;
        if !component.serves(hook) {
            return Err(BindingError::HookNotExported {
                component: component.id(),
                export: component.export_of(hook),
                serves: component.hooks(),
            }
            .into());
        }
        overrides.push(Override {
            hook,
            component,
            config,
        });
    }
    tracing::info!(
        overrides = ?overrides.iter().map(|o| format!("{}={}", o.hook, o.component.id())).collect::<Vec<_>>(),
        "per-request policy override"
    );
    Ok(overrides)
}

/// A change about to be stored.
struct Change<'a> {
    tenant_id: &'a str,
    hook: Hook,
    action: &'a str,
    /// `None`: no database binding.
    component: Option<(&'a str, &'a str, &'a str)>,
    config: &'a BTreeMap<String, String>,
    limits: Limits,
    on_error: OnError,
    actor_id: &'a str,
    reason: &'a str,
    restores: Option<i64>,
    /// The canary and the shadow this revision carries (none for a plain bind).
    canary: Option<&'a Candidate>,
    shadow: Option<&'a Candidate>,
}

/// Appends the change to the history, points the hook at it and bumps the global
/// revision, in one transaction; returns the new tenant revision.
async fn store_change(store: &Store, change: &Change<'_>, now: i64) -> Result<i64, sqlx::Error> {
    let config = serde_json::to_string(change.config).unwrap_or_else(|_| "{}".into());
    let on_error = match change.on_error {
        OnError::Reject => "reject",
        OnError::Fallback => "fallback",
    };
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    with_pool!(store, pool => {
        let mut tx = pool.begin_write().await?;
        // Taking the one revision row first serializes binding changes (a row lock on
        // PostgreSQL; SQLite has one writer), so tenant revisions never collide.
        sqlx::query("update bindings_revision set revision = revision + 1, updated_at = $1 where id = 1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let revision: i64 = sqlx::query_scalar(
            "select coalesce(max(revision), 0) + 1 from binding_history where tenant_id = $1",
        )
        .bind(change.tenant_id)
        .fetch_one(&mut *tx)
        .await?;
        let previous: Option<i64> = sqlx::query_scalar(
            "select revision from bindings where tenant_id = $1 and hook = $2",
        )
        .bind(change.tenant_id)
        .bind(change.hook.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query(
            "insert into binding_history (id, tenant_id, revision, hook, action, component_name, \
             component_version, sha256, config, fuel, memory_bytes, timeout_ms, on_error, \
             actor_id, reason, previous_revision, restores_revision, created_at, updated_at, \
             canary_name, canary_version, canary_sha256, canary_config, canary_permille, \
             shadow_name, shadow_version, shadow_sha256, shadow_config, shadow_permille) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $18, \
             $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(change.tenant_id)
        .bind(revision)
        .bind(change.hook.as_str())
        .bind(change.action)
        .bind(change.component.map(|c| c.0))
        .bind(change.component.map(|c| c.1))
        .bind(change.component.map(|c| c.2))
        .bind(&config)
        .bind(i(change.limits.fuel))
        .bind(i(change.limits.memory_bytes))
        .bind(i(change.limits.timeout_ms))
        .bind(on_error)
        .bind(change.actor_id)
        .bind(change.reason)
        .bind(previous)
        .bind(change.restores)
        .bind(now)
        .bind(change.canary.map(|c| c.name.as_str()))
        .bind(change.canary.map(|c| c.version.as_str()))
        .bind(change.canary.map(|c| c.sha256.as_str()))
        .bind(change.canary.map(|c| serde_json::to_string(&c.config).unwrap_or_else(|_| "{}".into())))
        .bind(change.canary.map_or(0, |c| i32::from(c.permille)))
        .bind(change.shadow.map(|c| c.name.as_str()))
        .bind(change.shadow.map(|c| c.version.as_str()))
        .bind(change.shadow.map(|c| c.sha256.as_str()))
        .bind(change.shadow.map(|c| serde_json::to_string(&c.config).unwrap_or_else(|_| "{}".into())))
        .bind(change.shadow.map_or(0, |c| i32::from(c.permille)))
        .execute(&mut *tx)
        .await?;
        if change.component.is_some() {
            sqlx::query(
                "insert into bindings (tenant_id, hook, revision, created_at, updated_at) \
                 values ($1, $2, $3, $4, $4) on conflict (tenant_id, hook) do update \
                 set revision = excluded.revision, updated_at = excluded.updated_at",
            )
            .bind(change.tenant_id)
            .bind(change.hook.as_str())
            .bind(revision)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query("delete from bindings where tenant_id = $1 and hook = $2")
                .bind(change.tenant_id)
                .bind(change.hook.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(revision)
    })
}

/// Reads the database bindings and publishes them when the stored revision is newer than
/// the active snapshot's; returns the generation now active. Called at start-up, after
/// every change, and (across replicas) by whatever learns that the revision moved.
pub async fn refresh(store: &Store, runtime: &Arc<PolicyRuntime>) -> Result<u64, BindingError> {
    let revision: i64 = with_pool!(store, pool => sqlx::query_scalar(
        "select revision from bindings_revision where id = 1",
    )
    .fetch_one(pool)
    .await)?;
    let current = runtime.snapshot();
    if revision <= current.database_revision() {
        return Ok(current.generation);
    }
    let sql = format!(
        "{SELECT_HISTORY} join bindings b on b.tenant_id = h.tenant_id and b.revision = h.revision"
    );
    let rows: Vec<HistoryRow> =
        with_pool!(store, pool => sqlx::query_as::<_, HistoryRow>(&sql).fetch_all(pool).await)?;
    let mut database = DatabaseBindings {
        revision,
        tenants: Default::default(),
    };
    for row in rows {
        let (Some(slug), Some(hook), Some(name), Some(version)) = (
            row.tenant_slug.clone(),
            row.hook(),
            row.component_name.as_deref(),
            row.component_version.as_deref(),
        ) else {
            continue;
        };
        let component = compiled(
            store,
            runtime,
            name,
            version,
            row.sha256.as_deref().unwrap_or_default(),
        )
        .await?;
        let (limits, on_error) = (row.limits(), row.on_error());
        let mut rollouts = Vec::with_capacity(2);
        for candidate in [row.canary(), row.shadow()] {
            rollouts.push(match candidate {
                Some(c) => Some(rollout(store, runtime, &c, limits, on_error, row.revision).await?),
                None => None,
            });
        }
        let shadow = rollouts.pop().flatten();
        let canary = rollouts.pop().flatten();
        let map: &mut HookMap = database.tenants.entry(slug).or_default();
        map.insert(
            hook,
            Arc::new(Binding {
                component,
                config: Arc::new(row.config()),
                limits,
                on_error,
                source: "database".into(),
                revision: Some(row.revision),
                canary,
                shadow,
            }),
        );
    }
    Ok(runtime.publish_database(database))
}

/// A stored candidate, compiled, as the runtime serves it beside its stable binding.
pub(super) async fn rollout(
    store: &Store,
    runtime: &Arc<PolicyRuntime>,
    candidate: &Candidate,
    limits: Limits,
    on_error: OnError,
    revision: i64,
) -> Result<crate::policy::runtime::Rollout, BindingError> {
    let component = compiled(
        store,
        runtime,
        &candidate.name,
        &candidate.version,
        &candidate.sha256,
    )
    .await?;
    Ok(crate::policy::runtime::Rollout {
        binding: Arc::new(Binding {
            component,
            config: Arc::new(candidate.config.clone()),
            limits,
            on_error,
            source: "database".into(),
            revision: Some(revision),
            canary: None,
            shadow: None,
        }),
        permille: candidate.permille,
    })
}

/// Resolves, compiles and smoke-calls a binding, stores the change and publishes it.
async fn apply(
    state: &AppState,
    tenant: &(String, String),
    change: Change<'_>,
    component: Option<Arc<CompiledComponent>>,
) -> Result<ChangeView, ApiError> {
    let (tenant_id, slug) = tenant;
    if let Some(component) = component {
        let binding = Binding {
            component,
            config: Arc::new(change.config.clone()),
            limits: change.limits,
            on_error: change.on_error,
            source: "smoke call".into(),
            revision: None,
            canary: None,
            shadow: None,
        };
        check(&state.policy, binding, change.hook, slug).await?;
    }
    let revision = store_change(&state.store, &change, state.clock.now_ms()).await?;
    let generation = refresh(&state.store, &state.policy).await?;
    // Committed and live here: tell the other replicas (their revision check is the
    // backstop if this is lost).
    // Spawned: an unreachable Redis must not hold the answer up.
    let (fanout, announced) = (
        state.fanout.clone(),
        state.policy.snapshot().database_revision(),
    );
    tokio::spawn(async move { fanout.announce(announced).await });
    tracing::info!(
        tenant = %slug,
        hook = change.hook.as_str(),
        revision,
        action = change.action,
        component = ?change.component.map(|c| format!("{}@{}", c.0, c.1)),
        generation,
        "binding published"
    );
    let row = history_rows(&state.store, tenant_id, None, Some(revision), 1, 0)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| BindingError::Internal(format!("revision {revision} vanished")))?;
    Ok(ChangeView {
        change: row.into(),
        generation,
    })
}

async fn history_rows(
    store: &Store,
    tenant_id: &str,
    hook: Option<&str>,
    revision: Option<i64>,
    limit: i64,
    offset: i64,
) -> Result<Vec<HistoryRow>, sqlx::Error> {
    let sql = format!(
        "{SELECT_HISTORY} where h.tenant_id = $1 and h.hook = coalesce($2, h.hook) \
         and h.revision = coalesce($3, h.revision) order by h.revision desc limit $4 offset $5"
    );
    with_pool!(store, pool => sqlx::query_as::<_, HistoryRow>(&sql)
        .bind(tenant_id)
        .bind(hook)
        .bind(revision)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await)
}

/// The tenant in the path as (id, slug): an admin's own only (another → 404), an
/// operator's any; customers 403.
async fn scope(
    state: &AppState,
    actor: &AuthUser,
    tenant: &str,
) -> Result<(String, String), ApiError> {
    let scope = tenants::admin_scope(&state.store, actor, Some(tenant)).await?;
    let slug = tenants::find_by_id(&state.store, &scope.tenant_id)
        .await?
        .map(|t| t.slug)
        .ok_or_else(|| tenants::not_found(tenant))?;
    Ok((scope.tenant_id, slug))
}

/// The effective binding of each hook, with the layer it comes from and its revision.
#[utoipa::path(get, path = "/admin/tenants/{tenant}/bindings", tag = "bindings",
    params(("tenant" = String, Path)),
    responses((status = 200, body = BindingsView), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
async fn list_bindings(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(tenant): Path<String>,
) -> Result<Json<BindingsView>, ApiError> {
    let (tenant_id, slug) = scope(&state, &actor, &tenant).await?;
    Ok(Json(effective(&state, &tenant_id, slug).await?))
}

/// A tenant's effective binding per hook as this process serves it, with the tenant's
/// latest revision: what `GET …/bindings` answers and the operator console shows.
pub(crate) async fn effective(
    state: &AppState,
    tenant_id: &str,
    slug: String,
) -> Result<BindingsView, sqlx::Error> {
    let revision = history_rows(&state.store, tenant_id, None, None, 1, 0)
        .await?
        .first()
        .map_or(0, |r| r.revision);
    let set = state.policy.snapshot();
    let bindings = Hook::ALL
        .into_iter()
        .map(|hook| {
            let (layer, b) = set.effective(&slug, hook);
            BindingView {
                hook,
                source: layer,
                declared_in: b.source.clone(),
                component: b.component.id(),
                sha256: b.component.sha256.clone(),
                revision: b.revision,
                config: (*b.config).clone(),
                limits: b.limits.into(),
                on_error: b.on_error,
                canary: b.canary.as_ref().map(Into::into),
                shadow: b.shadow.as_ref().map(Into::into),
            }
        })
        .collect();
    Ok(BindingsView {
        tenant: slug,
        revision,
        bindings,
    })
}

/// The tenant's latest `limit` binding changes, newest first.
pub(crate) async fn recent_history(
    store: &Store,
    tenant_id: &str,
    limit: i64,
) -> Result<Vec<HistoryEntry>, sqlx::Error> {
    Ok(history_rows(store, tenant_id, None, None, limit, 0)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Bind a component to a hook of the tenant: validated, compiled and smoke-called with
/// this config and limits, then published (requests in flight finish on the old
/// bindings).
#[utoipa::path(put, path = "/admin/tenants/{tenant}/bindings/{hook}", tag = "bindings",
    params(("tenant" = String, Path), ("hook" = String, Path)), request_body = BindBody,
    responses((status = 200, body = ChangeView), (status = 403, body = ErrorEnvelope),
              (status = 404, description = "HOOK_NOT_FOUND, tenant not found", body = ErrorEnvelope),
              (status = 422, description = "COMPONENT_NOT_FOUND, HOOK_NOT_EXPORTED, LIMITS_OUT_OF_RANGE, CONFIG_INVALID, COMPILE_FAILED, SMOKE_CALL_FAILED, VALIDATION_FAILED", body = ErrorEnvelope)))]
async fn bind(
    State(state): State<AppState>,
    actor: AuthUser,
    Path((tenant, hook)): Path<(String, String)>,
    Json(body): Json<BindBody>,
) -> Result<Json<ChangeView>, ApiError> {
    let scope = scope(&state, &actor, &tenant).await?;
    let hook = parse_hook(&hook)?;
    let config = parse_config(body.config)?;
    let limits = parse_limits(body.limits)?;
    if let Some(problem) = super::ceilings::of(&state.store, &scope.0)
        .await?
        .refuse(&limits)
    {
        return Err(BindingError::LimitsOutOfRange(problem).into());
    }
    let reason = parse_reason(&body.reason)?;
    let chosen = choose(&state.store, &scope.0, &body.component).await?;
    let component = compiled(
        &state.store,
        &state.policy,
        &chosen.name,
        &chosen.version,
        &chosen.sha256,
    )
    .await?;
    let sha256 = component.sha256.clone();
    let change = Change {
        tenant_id: &scope.0,
        hook,
        action: "bind",
        component: Some((&chosen.name, &chosen.version, &sha256)),
        config: &config,
        limits,
        on_error: body.on_error,
        actor_id: &actor.user_id,
        reason: &reason,
        restores: None,
        // A new binding starts without a canary or a shadow.
        canary: None,
        shadow: None,
    };
    Ok(Json(apply(&state, &scope, change, Some(component)).await?))
}

/// Restore the previous binding of a hook (what served it before the active one), or
/// `{"revision": n}` of this tenant and hook.
#[utoipa::path(post, path = "/admin/tenants/{tenant}/bindings/{hook}/rollback", tag = "bindings",
    params(("tenant" = String, Path), ("hook" = String, Path)), request_body = RollbackBody,
    responses((status = 200, body = ChangeView), (status = 403, body = ErrorEnvelope),
              (status = 404, description = "REVISION_NOT_FOUND, HOOK_NOT_FOUND", body = ErrorEnvelope),
              (status = 409, description = "NO_PREVIOUS_REVISION", body = ErrorEnvelope),
              (status = 422, description = "COMPONENT_NOT_FOUND, SMOKE_CALL_FAILED", body = ErrorEnvelope)))]
async fn rollback(
    State(state): State<AppState>,
    actor: AuthUser,
    Path((tenant, hook)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<ChangeView>, ApiError> {
    let scope = scope(&state, &actor, &tenant).await?;
    let hook = parse_hook(&hook)?;
    // The body is optional: no body (or `{}`) restores the previous revision.
    let body: RollbackBody = optional_body(&body, "rollback")?;
    let reason = parse_reason(&body.reason)?;
    let find = |revision: i64| {
        let store = &state.store;
        let tenant_id = &scope.0;
        async move {
            history_rows(store, tenant_id, Some(hook.as_str()), Some(revision), 1, 0)
                .await
                .map(|rows| rows.into_iter().next())
        }
    };
    let target: Option<HistoryRow> = match body.revision {
        Some(revision) => Some(
            find(revision)
                .await?
                .ok_or(BindingError::RevisionNotFound { hook, revision })?,
        ),
        None => {
            let active: Option<i64> = with_pool!(&state.store, pool => sqlx::query_scalar(
                "select revision from bindings where tenant_id = $1 and hook = $2",
            )
            .bind(&scope.0)
            .bind(hook.as_str())
            .fetch_optional(pool)
            .await)?;
            let active = active.ok_or(BindingError::NoPreviousRevision(hook))?;
            let row = find(active)
                .await?
                .ok_or(BindingError::NoPreviousRevision(hook))?;
            match row.previous_revision {
                Some(previous) => Some(find(previous).await?.ok_or(
                    BindingError::RevisionNotFound {
                        hook,
                        revision: previous,
                    },
                )?),
                // The first database binding: rolling it back hands the hook back to
                // the TOML files or the built-in.
                None => None,
            }
        }
    };
    let restored = target.as_ref().map(|t| t.revision);
    // The restored revision's canary and shadow come back with it.
    let (canary, shadow) = target
        .as_ref()
        .map_or((None, None), |t| (t.canary(), t.shadow()));
    let (config, limits, on_error) = target
        .as_ref()
        .map(|t| (t.config(), t.limits(), t.on_error()))
        .unwrap_or_else(|| (BTreeMap::new(), Limits::default(), OnError::Reject));
    let component = match target.as_ref().and_then(|t| {
        Some((
            t.component_name.clone()?,
            t.component_version.clone()?,
            t.sha256.clone().unwrap_or_default(),
        ))
    }) {
        Some((name, version, sha)) => Some((
            compiled(&state.store, &state.policy, &name, &version, &sha).await?,
            name,
            version,
            sha,
        )),
        None => None,
    };
    let change = Change {
        tenant_id: &scope.0,
        hook,
        action: "rollback",
        component: component
            .as_ref()
            .map(|(_, n, v, s)| (n.as_str(), v.as_str(), s.as_str())),
        config: &config,
        limits,
        on_error,
        actor_id: &actor.user_id,
        reason: &reason,
        restores: restored,
        canary: canary.as_ref(),
        shadow: shadow.as_ref(),
    };
    let compiled = component.as_ref().map(|c| c.0.clone());
    Ok(Json(apply(&state, &scope, change, compiled).await?))
}

/// Every binding change of the tenant, newest first: revision, hook, component, who,
/// when, from which revision, why.
#[utoipa::path(get, path = "/admin/tenants/{tenant}/bindings/history", tag = "bindings",
    params(("tenant" = String, Path), HistoryQuery, PageQuery),
    responses((status = 200, body = Page<HistoryEntry>), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
async fn history(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(tenant): Path<String>,
    Query(query): Query<HistoryQuery>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<HistoryEntry>>, ApiError> {
    let (tenant_id, _) = scope(&state, &actor, &tenant).await?;
    let hook = query.hook.as_deref().map(parse_hook).transpose()?;
    let hook = hook.map(Hook::as_str);
    let rows = history_rows(
        &state.store,
        &tenant_id,
        hook,
        None,
        page.limit(),
        page.offset(),
    )
    .await?;
    let total: i64 = with_pool!(&state.store, pool => sqlx::query_scalar(
        "select count(*) from binding_history where tenant_id = $1 and hook = coalesce($2, hook)",
    )
    .bind(&tenant_id)
    .bind(hook)
    .fetch_one(pool)
    .await)?;
    Ok(Json(Page::new(
        page,
        rows.into_iter().map(Into::into).collect(),
        total,
    )))
}

/// For the modules that run a candidate beside a tenant's binding (the dry run in
/// [`super::dryrun`]): `name@version` (or a range) resolved among the components the
/// tenant sees and the built-ins, compiled through the same sha256 cache, and checked to
/// export `hook`.
pub(crate) async fn candidate(
    state: &AppState,
    tenant_id: &str,
    spec: &str,
    hook: Hook,
) -> Result<Arc<CompiledComponent>, BindingError> {
    let chosen = choose(&state.store, tenant_id, spec).await?;
    let component = compiled(
        &state.store,
        &state.policy,
        &chosen.name,
        &chosen.version,
        &chosen.sha256,
    )
    .await?;
    if !component.serves(hook) {
        return Err(BindingError::HookNotExported {
            component: component.id(),
            export: component.export_of(hook),
            serves: component.hooks(),
        });
    }
    Ok(component)
}

/// A candidate's config and limits, parsed and bounded like a binding's (the tenant's
/// limit ceilings included).
pub(crate) async fn candidate_settings(
    store: &Store,
    tenant_id: &str,
    config: Option<serde_json::Map<String, serde_json::Value>>,
    limits: Option<LimitsBody>,
) -> Result<(Option<BTreeMap<String, String>>, Option<Limits>), ApiError> {
    let config = config.map(parse_config).transpose()?;
    let limits = limits.map(parse_limits).transpose()?;
    if let Some(limits) = &limits
        && let Some(problem) = super::ceilings::of(store, tenant_id).await?.refuse(limits)
    {
        return Err(BindingError::LimitsOutOfRange(problem).into());
    }
    Ok((config, limits))
}
