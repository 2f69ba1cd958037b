//! The active bindings and the evaluation of an order context through them.
//!
//! The binding set is an immutable snapshot behind an atomic pointer: an evaluation
//! takes one snapshot for its whole validate → price → prioritize sequence, so it sees
//! all-old or all-new bindings, and in-flight calls finish on the snapshot they took.
//! A new set is compiled and checked completely before it is published; if anything
//! fails, the old set stays active.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use arc_swap::ArcSwap;
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    engine::{
        CallOutcome, CallSession, CallSpec, CompiledComponent, FaultKind, Limits, PolicyEngine,
        PolicyFault,
    },
    manifest::{self, ManifestError, OnError},
    registry::{BUILTIN_VERSION, ComponentRegistry, standard_for},
    types::{Hook, HookOutput, OrderContext, PricingRefusal, Quote, Violation},
};

/// One hook's active binding.
#[derive(Debug)]
pub struct Binding {
    /// The component.
    pub component: Arc<CompiledComponent>,
    /// Its configuration.
    pub config: Arc<BTreeMap<String, String>>,
    /// Its limits.
    pub limits: Limits,
    /// What a failure does.
    pub on_error: OnError,
    /// Where it was declared (`built-in`, a file path, `database`).
    pub source: String,
    /// The tenant's binding revision, for a database binding.
    pub revision: Option<i64>,
    /// A canary candidate serving a sticky share of the customers (database bindings).
    pub canary: Option<Rollout>,
    /// A shadow candidate run beside this binding on a sample of orders, off the order's
    /// path (database bindings).
    pub shadow: Option<Rollout>,
}

/// A candidate beside a stable binding: a canary or a shadow.
#[derive(Debug)]
pub struct Rollout {
    /// The candidate as a binding of its own: its component and config, the stable
    /// binding's limits and `on_error`.
    pub binding: Arc<Binding>,
    /// Its share, per mille (0–1 000): of the customers for a canary, of the orders for
    /// a shadow.
    pub permille: u16,
}

/// Tag of the canary bucket encoding: changing it moves every customer.
const CANARY_ENCODING: &[u8] = b"orderhost/canary/v1\0";

/// The canary bucket (0–999) of a customer of a tenant: sticky (the same customer always
/// falls in the same bucket), so while a canary ramps up or down a customer moves at most
/// once, and only in the ramp's direction. A customer is served by the canary when its
/// bucket is below the canary's per-mille share.
pub fn canary_bucket(tenant: &str, customer_id: &str) -> u16 {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    hash.update(CANARY_ENCODING);
    hash.update(tenant.as_bytes());
    hash.update([0]);
    hash.update(customer_id.as_bytes());
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u16::try_from(u64::from_be_bytes(first) % 1_000).unwrap_or(0)
}

/// Which layer an effective binding comes from, highest precedence first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BindingLayer {
    /// Bound over the admin API (`registry::bindings`).
    Database,
    /// `policies/tenants/<tenant>.toml`.
    TenantToml,
    /// `policies/default.toml`.
    DefaultToml,
    /// The built-in component for the hook.
    BuiltIn,
}

/// The bindings bound over the admin API, by tenant slug then hook, and the database's
/// `bindings_revision` they were read at.
#[derive(Debug, Clone, Default)]
pub struct DatabaseBindings {
    /// The revision of the whole table set (increases with every change).
    pub revision: i64,
    /// Bindings by tenant slug.
    pub tenants: HashMap<String, HookMap>,
}

/// Bindings by hook.
pub type HookMap = BTreeMap<Hook, Arc<Binding>>;

/// The `config_sha256` of every binding configuration in a set, by the address of its
/// `Arc`, computed when the set is built instead of on every hook call (a JSON encoding
/// and a SHA-256 per call). Each entry holds its configuration, so the address cannot be
/// freed and reused by another configuration while the map lives. Kept beside the
/// bindings rather than in [`Binding`]: other modules build bindings with struct literals.
type ConfigDigests = HashMap<usize, (Arc<BTreeMap<String, String>>, String)>;

/// Adds `binding`'s configuration (and its canary's and shadow's) to `digests`, taking
/// the digest from `previous` when it holds the same `Arc` (an entry keeps its
/// configuration alive, so the same address there is the same configuration).
fn add_digests(digests: &mut ConfigDigests, previous: &ConfigDigests, binding: &Binding) {
    let address = Arc::as_ptr(&binding.config).addr();
    digests
        .entry(address)
        .or_insert_with(|| match previous.get(&address) {
            Some(known) => known.clone(),
            None => (binding.config.clone(), config_sha256(&binding.config)),
        });
    for rollout in [&binding.canary, &binding.shadow].into_iter().flatten() {
        add_digests(digests, previous, &rollout.binding);
    }
}

/// An immutable set of bindings: the database's per tenant, over each tenant's TOML
/// file, over `default.toml`, over the built-ins.
#[derive(Debug, Clone)]
pub struct PolicySet {
    /// Increases with every published set.
    pub generation: u64,
    default: HookMap,
    tenants: HashMap<String, HookMap>,
    database: Arc<DatabaseBindings>,
    builtin: HookMap,
    config_digests: Arc<ConfigDigests>,
}

impl PolicySet {
    /// The digests of every binding configuration in this set's layers (those of
    /// `previous`, the set it succeeds, reused).
    fn digest_configs(&mut self, previous: &ConfigDigests) {
        let mut digests = ConfigDigests::new();
        let layers = [&self.default, &self.builtin]
            .into_iter()
            .chain(self.tenants.values())
            .chain(self.database.tenants.values());
        for binding in layers.flat_map(|hooks| hooks.values()) {
            add_digests(&mut digests, previous, binding);
        }
        self.config_digests = Arc::new(digests);
    }

    /// `config_sha256(&binding.config)`, from the digests computed with the set (computed
    /// here only for a configuration the set does not hold).
    fn config_digest(&self, binding: &Binding) -> String {
        match self
            .config_digests
            .get(&Arc::as_ptr(&binding.config).addr())
        {
            Some((_, digest)) => digest.clone(),
            None => config_sha256(&binding.config),
        }
    }

    /// The binding serving `hook` for `tenant`: the database's, else the tenant's TOML
    /// file's, else the default.
    pub fn binding(&self, tenant: &str, hook: Hook) -> &Arc<Binding> {
        self.effective(tenant, hook).1
    }

    /// The binding serving `hook` for `tenant` and the layer it comes from.
    pub fn effective(&self, tenant: &str, hook: Hook) -> (BindingLayer, &Arc<Binding>) {
        if let Some(b) = self.database.tenants.get(tenant).and_then(|m| m.get(&hook)) {
            return (BindingLayer::Database, b);
        }
        if let Some(b) = self.tenants.get(tenant).and_then(|m| m.get(&hook)) {
            return (BindingLayer::TenantToml, b);
        }
        let b = &self.default[&hook];
        if Arc::ptr_eq(b, &self.builtin[&hook]) {
            (BindingLayer::BuiltIn, b)
        } else {
            (BindingLayer::DefaultToml, b)
        }
    }

    /// This set with `overrides` serving their hooks for `tenant` only: the one-off set of
    /// an operator's `X-Policy-Override` request. Each override keeps the current
    /// binding's limits and `on_error`, and its config unless it brings its own. The
    /// result is never published; the set it came from is untouched.
    pub fn with_overrides(&self, tenant: &str, overrides: &[Override]) -> PolicySet {
        let mut set = self.clone();
        let mut database = DatabaseBindings::clone(&self.database);
        let mut digests = ConfigDigests::clone(&self.config_digests);
        let hooks = database.tenants.entry(tenant.to_owned()).or_default();
        for o in overrides {
            let current = self.binding(tenant, o.hook);
            let binding = Arc::new(Binding {
                component: o.component.clone(),
                config: o
                    .config
                    .clone()
                    .map_or_else(|| current.config.clone(), Arc::new),
                limits: current.limits,
                on_error: current.on_error,
                source: OVERRIDE_SOURCE.into(),
                revision: None,
                canary: None,
                shadow: None,
            });
            add_digests(&mut digests, &ConfigDigests::new(), &binding);
            hooks.insert(o.hook, binding);
        }
        set.database = Arc::new(database);
        set.config_digests = Arc::new(digests);
        set
    }

    /// The database's `bindings_revision` this set includes.
    pub fn database_revision(&self) -> i64 {
        self.database.revision
    }

    /// Per tenant slug, the highest revision among its database bindings in this set
    /// (what `GET /admin/replicas` reports per replica).
    pub fn database_tenant_revisions(&self) -> std::collections::BTreeMap<String, i64> {
        self.database
            .tenants
            .iter()
            .map(|(slug, hooks)| {
                let revision = hooks.values().filter_map(|b| b.revision).max();
                (slug.clone(), revision.unwrap_or(0))
            })
            .collect()
    }

    /// The built-in binding of `hook` (what `on-error = "fallback"` runs).
    pub fn builtin(&self, hook: Hook) -> &Arc<Binding> {
        &self.builtin[&hook]
    }

    /// Every binding of `name@version` in this set: the default bindings (serving every
    /// tenant without its own) and each tenant's, sorted by tenant then hook.
    pub fn uses(&self, name: &str, version: &str) -> Vec<BindingUse> {
        let matches = |b: &Binding| b.component.name == name && b.component.version == version;
        let mut uses: Vec<BindingUse> = self
            .default
            .iter()
            .filter(|(_, b)| matches(b))
            .map(|(hook, b)| BindingUse {
                tenant: None,
                hook: *hook,
                source: b.source.clone(),
            })
            .collect();
        let mut tenants: Vec<BindingUse> = self
            .tenants
            .iter()
            .chain(self.database.tenants.iter())
            .flat_map(|(tenant, hooks)| {
                hooks
                    .iter()
                    .filter(|(_, b)| matches(b))
                    .map(|(hook, b)| BindingUse {
                        tenant: Some(tenant.clone()),
                        hook: *hook,
                        source: b.source.clone(),
                    })
            })
            .collect();
        tenants.sort_by(|a, b| (&a.tenant, a.hook).cmp(&(&b.tenant, b.hook)));
        uses.extend(tenants);
        uses
    }
}

/// The `source` of a binding put in place by a per-request override.
pub const OVERRIDE_SOURCE: &str = "override";

/// One hook served, for one request, by another component than its binding's.
#[derive(Debug, Clone)]
pub struct Override {
    /// The hook.
    pub hook: Hook,
    /// The component (already checked to export the hook).
    pub component: Arc<CompiledComponent>,
    /// Its config; `None` keeps the current binding's.
    pub config: Option<BTreeMap<String, String>>,
}

/// One binding of a component: which tenant, which hook, declared where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BindingUse {
    /// Tenant slug; `null` for a default binding (every tenant without its own).
    pub tenant: Option<String>,
    /// The hook.
    pub hook: Hook,
    /// Where the binding is declared (`built-in` or a manifest path).
    pub source: String,
}

/// Why bindings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    /// A manifest is wrong.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A component failed to load.
    #[error(transparent)]
    Registry(#[from] super::registry::RegistryError),
    /// Something else (I/O, engine).
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

/// Which hooks an evaluation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalMode {
    /// All three, whatever the earlier ones said (the operators' evaluation tool).
    All,
    /// Stop after violations or a pricing refusal (the order path).
    Order,
}

/// A failure inside one hook, as reported.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FaultReport {
    /// The kind (`Timeout`, `Trap`, …).
    pub kind: FaultKind,
    /// What happened.
    pub detail: String,
}

/// Why a component served a hook (the order's decision log records it per hook).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ServedBy {
    /// The binding's component.
    Stable,
    /// An operator's `X-Policy-Override` chose it (quotes and evaluations only).
    Override,
    /// The bound component failed and the built-in answered (`on-error = "fallback"`).
    Fallback,
    /// The binding's breaker was open: the component was not called and the built-in
    /// answered (`on-error = "fallback"`; see `breaker.rs`).
    BreakerOpen,
    /// The binding's canary candidate (the customer's sticky bucket is in its share).
    Canary,
}

/// What one hook did.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookReport {
    /// The hook.
    pub hook: Hook,
    /// `name@version` of the component that produced the result.
    pub component: String,
    /// Its sha256.
    pub sha256: String,
    /// The tenant's binding revision, when a database binding produced the result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Fuel used by the call that produced the result.
    pub fuel_used: u64,
    /// Wall time of instantiation + call, microseconds (both calls when it fell back).
    pub latency_us: u64,
    /// Largest linear memory of the call, bytes.
    pub peak_memory_bytes: u64,
    /// Whether the bound component failed and the built-in answered.
    pub fell_back: bool,
    /// Whether an operator's `X-Policy-Override` replaced the binding for this request.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub overridden: bool,
    /// The bound component's failure, when it fell back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultReport>,
    /// Why this component answered.
    pub served_by: ServedBy,
    /// SHA-256 of the configuration the component read (its canonical JSON).
    pub config_sha256: String,
    /// That configuration (kept for the decision log and exact replays; not in API
    /// answers, which show only its hash).
    #[serde(skip)]
    pub config: Arc<BTreeMap<String, String>>,
    /// What the component wrote with `host.log` (capped per call).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<super::types::GuestLogLine>,
}

/// The result of running a context through a tenant's bindings.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    /// Violations (empty = accepted).
    pub violations: Vec<Violation>,
    /// The quote, when pricing ran and priced.
    pub quote: Option<Quote>,
    /// The pricing component's refusal, when it refused.
    pub pricing_refusal: Option<PricingRefusal>,
    /// The priority, when prioritization ran.
    pub priority: Option<u32>,
    /// Per hook: component, fuel, latency, fallbacks.
    pub hooks: Vec<HookReport>,
    /// Generation of the binding set used.
    pub generation: u64,
}

/// The policy runtime of an app: engine, registry and the active bindings.
pub struct PolicyRuntime {
    engine: Arc<PolicyEngine>,
    registry: ComponentRegistry,
    dir: PathBuf,
    current: ArcSwap<PolicySet>,
    generation: AtomicU64,
    // Publishing reads the current set and stores a successor: one publisher at a time,
    // so a TOML reload and a database refresh cannot drop each other's layer.
    publish: std::sync::Mutex<()>,
    // Uploaded components compiled and pre-linked for a binding, by sha256 and
    // name@version: swapping back to one is a map lookup, not a database read.
    uploaded: std::sync::Mutex<HashMap<(String, String), Arc<CompiledComponent>>>,
    // A circuit breaker per binding (`breaker.rs`), consulted by `run_hook`.
    breakers: super::breaker::Breakers,
    // Compares canaries with their stable bindings and rolls bad ones back (`canary.rs`).
    canaries: super::canary::CanaryGuard,
    // Shadow candidates' runs and their disagreements (`shadow.rs`).
    shadows: super::shadow::ShadowLab,
}

impl std::fmt::Debug for PolicyRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyRuntime")
            .field("dir", &self.dir)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl PolicyRuntime {
    /// Loads the built-ins, `dir/components/*.wasm`, and the manifests in `dir`.
    pub fn load(dir: &Path) -> Result<Self, PolicyLoadError> {
        let engine = PolicyEngine::shared()?;
        let mut registry = ComponentRegistry::with_builtins(&engine)?;
        registry.insert_dir(&engine, &dir.join("components"))?;
        let set = build_set(&registry, dir, 1)?;
        Ok(Self {
            engine,
            registry,
            dir: dir.to_owned(),
            current: ArcSwap::from_pointee(set),
            generation: AtomicU64::new(1),
            publish: std::sync::Mutex::new(()),
            uploaded: std::sync::Mutex::default(),
            breakers: super::breaker::Breakers::default(),
            canaries: super::canary::CanaryGuard::default(),
            shadows: super::shadow::ShadowLab::default(),
        })
    }

    /// This runtime with its canary guard tuned by `config` on `clock` (see `canary.rs`).
    pub fn with_canary_guard(
        mut self,
        config: super::canary::CanaryConfig,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Self {
        self.canaries = super::canary::CanaryGuard::new(config, clock);
        self
    }

    /// The shadow results of this process.
    pub fn shadows(&self) -> &super::shadow::ShadowLab {
        &self.shadows
    }

    /// The canary guard of this process.
    pub fn canaries(&self) -> &super::canary::CanaryGuard {
        &self.canaries
    }

    /// This runtime with its per-binding breakers tuned by `config` and reading time from
    /// `clock` (the app's, so tests move it); [`Self::load`] gives the defaults on the
    /// system clock.
    pub fn with_breaker(
        mut self,
        config: super::breaker::BreakerConfig,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Self {
        self.breakers = super::breaker::Breakers::new(config, clock);
        self
    }

    /// The per-binding breakers of this process.
    pub fn breakers(&self) -> &super::breaker::Breakers {
        &self.breakers
    }

    /// The active binding set.
    pub fn snapshot(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    /// The component registry.
    pub fn registry(&self) -> &ComponentRegistry {
        &self.registry
    }

    /// The process-wide engine.
    pub fn engine(&self) -> &Arc<PolicyEngine> {
        &self.engine
    }

    /// Runs `hook` of `component` once on `ctx` with default limits, no configuration and
    /// the host's output checks: the upload smoke call (synchronous: call from a blocking
    /// thread).
    pub fn try_component(
        &self,
        component: Arc<CompiledComponent>,
        hook: Hook,
        ctx: &OrderContext,
    ) -> Result<HookOutput, PolicyFault> {
        let binding = Binding {
            component,
            config: Arc::new(BTreeMap::new()),
            limits: Limits::default(),
            on_error: OnError::Reject,
            source: "smoke call".into(),
            revision: None,
            canary: None,
            shadow: None,
        };
        self.try_binding(&binding, hook, ctx)
    }

    /// Runs `hook` of `binding` (its component, config and limits) once on `ctx` with the
    /// host's output checks: the smoke call of a binding before it is published
    /// (synchronous: call from a blocking thread).
    pub fn try_binding(
        &self,
        binding: &Binding,
        hook: Hook,
        ctx: &OrderContext,
    ) -> Result<HookOutput, PolicyFault> {
        self.call_checked(binding, ctx, hook, &mut CallSession::new(ctx))
            .map(|outcome| outcome.output)
    }

    /// An uploaded component compiled earlier for a binding.
    pub fn compiled_upload(&self, sha256: &str, id: &str) -> Option<Arc<CompiledComponent>> {
        self.uploaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(sha256.to_owned(), id.to_owned()))
            .cloned()
    }

    /// Compiles (the engine caches by sha256) and pre-links an uploaded component for a
    /// binding, and keeps it for the next swap (synchronous: call from a blocking thread).
    pub fn compile_upload(
        &self,
        name: &str,
        version: &str,
        bytes: &[u8],
    ) -> Result<Arc<CompiledComponent>, super::engine::LoadError> {
        let compiled = Arc::new(self.engine.load(name, version, bytes)?);
        self.uploaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((compiled.sha256.clone(), compiled.id()), compiled.clone());
        Ok(compiled)
    }

    /// Re-reads the manifests and publishes them over the current database bindings; on
    /// any error the active set stays.
    pub fn reload(&self) -> Result<u64, PolicyLoadError> {
        let _publishing = self.publish.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let mut set = build_set(&self.registry, &self.dir, generation)?;
        let current = self.current.load();
        set.database = current.database.clone();
        set.digest_configs(&current.config_digests);
        self.current.store(Arc::new(set));
        tracing::info!(generation, "policy bindings published");
        Ok(generation)
    }

    /// Publishes `database` as the database layer when it is newer than the active set's
    /// (a refresh that read the database before another one published loses, so the
    /// newest revision stays). Returns the generation now active.
    pub fn publish_database(&self, database: DatabaseBindings) -> u64 {
        let _publishing = self.publish.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current.load_full();
        if database.revision <= current.database.revision {
            return current.generation;
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let revision = database.revision;
        let mut set = PolicySet::clone(&current);
        set.generation = generation;
        set.database = Arc::new(database);
        set.digest_configs(&current.config_digests);
        self.current.store(Arc::new(set));
        tracing::info!(generation, revision, "database bindings published");
        generation
    }

    /// Runs `ctx` through `set` (synchronously: call from a blocking thread).
    pub fn evaluate(
        &self,
        set: &PolicySet,
        ctx: &OrderContext,
        mode: EvalMode,
    ) -> Result<Evaluation, PolicyFault> {
        let mut evaluation = Evaluation {
            violations: Vec::new(),
            quote: None,
            pricing_refusal: None,
            priority: None,
            hooks: Vec::with_capacity(3),
            generation: set.generation,
        };
        // One session for the order's hooks: where one component, config and limits serve
        // several of them, they run on one instance (`engine.rs`).
        let mut session = CallSession::new(ctx);
        for hook in Hook::ALL {
            if mode == EvalMode::Order
                && (!evaluation.violations.is_empty() || evaluation.pricing_refusal.is_some())
            {
                break;
            }
            let (output, report) = self.run_hook(set, ctx, hook, &mut session)?;
            evaluation.hooks.push(report);
            match output {
                HookOutput::Violations(v) => evaluation.violations = v,
                HookOutput::Quote(Ok(q)) => evaluation.quote = Some(q),
                HookOutput::Quote(Err(r)) => evaluation.pricing_refusal = Some(r),
                HookOutput::Priority(p) => evaluation.priority = Some(p),
            }
        }
        Ok(evaluation)
    }

    /// Takes the current snapshot and evaluates on the blocking pool.
    pub async fn evaluate_current(
        self: &Arc<Self>,
        ctx: OrderContext,
        mode: EvalMode,
    ) -> Result<Evaluation, PolicyFault> {
        self.evaluate_with_overrides(ctx, mode, &[]).await
    }

    /// Like [`Self::evaluate_current`], with `overrides` replacing their hooks' bindings
    /// in a one-off copy of the current snapshot (nothing is published).
    pub async fn evaluate_with_overrides(
        self: &Arc<Self>,
        ctx: OrderContext,
        mode: EvalMode,
        overrides: &[Override],
    ) -> Result<Evaluation, PolicyFault> {
        let runtime = self.clone();
        let set = match overrides {
            [] => self.snapshot(),
            overrides => Arc::new(self.snapshot().with_overrides(&ctx.tenant, overrides)),
        };
        // The platform's built-ins, serving all three hooks with their built-in config,
        // run on the request's own thread: they take ~20–35 µs and never approach a time
        // limit, and handing them to the blocking pool and back cost more than the calls
        // (two thread wake-ups per order: ~0.1–0.2 ms of CPU per order at 300 orders/s).
        // Anything a tenant or an operator bound (a TOML file, the database, an override)
        // runs on the blocking pool, so a component that spins until its time limit holds
        // a blocking thread, never one of the threads that serve requests.
        if overrides.is_empty()
            && Hook::ALL
                .iter()
                .all(|hook| set.effective(&ctx.tenant, *hook).0 == BindingLayer::BuiltIn)
        {
            return runtime.evaluate(&set, &ctx, mode);
        }
        let tenant = ctx.tenant.clone();
        // The blocking thread works for this request: its log lines carry the request's
        // span (request id, tenant, user).
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| runtime.evaluate(&set, &ctx, mode)))
            .await
            .unwrap_or_else(|join| {
                Err(PolicyFault {
                    kind: FaultKind::Trap,
                    tenant,
                    hook: Hook::Validation,
                    component: "host".into(),
                    detail: format!("evaluation task failed: {join}"),
                    fuel_used: 0,
                })
            })
    }

    fn run_hook(
        &self,
        set: &PolicySet,
        ctx: &OrderContext,
        hook: Hook,
        session: &mut CallSession<'_>,
    ) -> Result<(HookOutput, HookReport), PolicyFault> {
        let stable = set.binding(&ctx.tenant, hook);
        let overridden = stable.source == OVERRIDE_SOURCE;
        // A canary serves the customers whose sticky bucket is inside its share (unless
        // this process already rolled it back).
        let (binding, chosen) = match &stable.canary {
            Some(canary)
                if canary.permille > 0
                    && canary_bucket(&ctx.tenant, &ctx.customer.id) < canary.permille
                    && !self.canaries.is_rolled_back(&ctx.tenant, hook, stable) =>
            {
                (&canary.binding, ServedBy::Canary)
            }
            _ => (stable, ServedBy::Stable),
        };
        let started = Instant::now();
        // The binding's breaker (`breaker.rs`): while it is open the component is not
        // called and its `BreakerOpen` fault takes the `on_error` path below.
        let result = match self.breakers.admit(&ctx.tenant, hook, binding) {
            Ok(ticket) => ticket.record(self.call_checked(binding, ctx, hook, session)),
            Err(open) => Err(open),
        };
        if stable.canary.is_some() && !overridden {
            let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.canaries.record(
                &ctx.tenant,
                hook,
                stable,
                chosen == ServedBy::Canary,
                result.is_err(),
                latency_us,
            );
        }
        match result {
            Ok(outcome) => {
                tracing::debug!(
                    hook = hook.as_str(),
                    component = %binding.component.name,
                    version = %binding.component.version,
                    fuel = outcome.fuel_used,
                    micros = started.elapsed().as_micros() as u64,
                    "hook evaluated"
                );
                let served_by = if overridden {
                    ServedBy::Override
                } else {
                    chosen
                };
                let output = outcome.output.clone();
                let config_sha256 = set.config_digest(binding);
                Ok((
                    output,
                    report(
                        hook,
                        binding,
                        outcome,
                        started,
                        None,
                        served_by,
                        config_sha256,
                    ),
                ))
            }
            Err(fault) if binding.on_error == OnError::Fallback => {
                // An open breaker's transitions are logged (`breaker.rs`), not each call.
                let served_by = if fault.kind == FaultKind::BreakerOpen {
                    tracing::debug!(%fault, "breaker open; the built-in answers");
                    ServedBy::BreakerOpen
                } else {
                    tracing::warn!(%fault, "policy call failed; falling back to the built-in");
                    ServedBy::Fallback
                };
                let builtin = set.builtin(hook);
                let outcome = self.call_checked(builtin, ctx, hook, session)?;
                let fault = FaultReport {
                    kind: fault.kind,
                    detail: fault.detail,
                };
                let output = outcome.output.clone();
                let config_sha256 = set.config_digest(builtin);
                let mut report = report(
                    hook,
                    builtin,
                    outcome,
                    started,
                    Some(fault),
                    served_by,
                    config_sha256,
                );
                report.overridden = overridden;
                Ok((output, report))
            }
            Err(fault) => {
                if fault.kind == FaultKind::BreakerOpen {
                    tracing::debug!(%fault, "breaker open; the binding rejects");
                } else {
                    tracing::warn!(%fault, "policy call failed; the binding rejects");
                }
                Err(fault)
            }
        }
    }

    /// One call in `session` with the host's checks on what came back, and its metrics.
    fn call_checked(
        &self,
        binding: &Binding,
        ctx: &OrderContext,
        hook: Hook,
        session: &mut CallSession<'_>,
    ) -> Result<CallOutcome, PolicyFault> {
        let spec = CallSpec {
            tenant: &ctx.tenant,
            hook,
            component: &binding.component,
            config: binding.config.clone(),
            limits: binding.limits,
        };
        let result = self.engine.call_in(session, &spec).and_then(|mut outcome| {
            check_output(&mut outcome.output, ctx).map_err(|detail| PolicyFault {
                kind: FaultKind::InvalidOutput,
                tenant: ctx.tenant.clone(),
                hook,
                component: binding.component.id(),
                detail,
                fuel_used: outcome.fuel_used,
            })?;
            Ok(outcome)
        });
        if result.is_err() {
            // An instance whose answer the host refused answers nothing else.
            session.discard();
        }
        let metrics = binding.component.call_metrics(hook);
        metrics.calls.increment(1);
        match result {
            Ok(outcome) => {
                metrics.fuel.record(outcome.fuel_used as f64);
                metrics.seconds.record(outcome.elapsed.as_secs_f64());
                Ok(outcome)
            }
            Err(fault) => {
                metrics::counter!(
                    "orderhost_policy_errors_total",
                    "hook" => hook.as_str(),
                    "component" => fault.component.clone(),
                    "kind" => fault.kind.as_str()
                )
                .increment(1);
                Err(fault)
            }
        }
    }
    /// One call of `hook` of `component` on `ctx` with `config` and `limits` and the
    /// host's output checks, without the live metrics: a dry run's replays are not
    /// traffic (synchronous: call from a blocking thread).
    pub fn replay_call(
        &self,
        component: &CompiledComponent,
        config: Arc<BTreeMap<String, String>>,
        limits: Limits,
        ctx: &OrderContext,
        hook: Hook,
    ) -> Result<CallOutcome, PolicyFault> {
        let spec = CallSpec {
            tenant: &ctx.tenant,
            hook,
            component,
            config,
            limits,
        };
        let mut outcome = self.engine.call(&spec, ctx)?;
        check_output(&mut outcome.output, ctx).map_err(|detail| PolicyFault {
            kind: FaultKind::InvalidOutput,
            tenant: ctx.tenant.clone(),
            hook,
            component: component.id(),
            detail,
            fuel_used: outcome.fuel_used,
        })?;
        Ok(outcome)
    }
}

fn report(
    hook: Hook,
    binding: &Binding,
    outcome: CallOutcome,
    started: Instant,
    fault: Option<FaultReport>,
    served_by: ServedBy,
    config_sha256: String,
) -> HookReport {
    HookReport {
        hook,
        component: binding.component.id(),
        sha256: binding.component.sha256.clone(),
        revision: binding.revision,
        fuel_used: outcome.fuel_used,
        latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        peak_memory_bytes: outcome.peak_memory_bytes,
        fell_back: fault.is_some(),
        overridden: served_by == ServedBy::Override,
        fault,
        served_by,
        config_sha256,
        config: binding.config.clone(),
        logs: outcome.logs,
    }
}

/// SHA-256 (hex) of a binding configuration's canonical JSON (keys sorted, as the map
/// keeps them), so a decision names the exact configuration without showing it.
pub fn config_sha256(config: &BTreeMap<String, String>) -> String {
    use sha2::Digest as _;
    let json = serde_json::to_vec(config).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(&json))
}

/// What the host refuses to accept from a component whatever its binding says; an
/// accepted quote gets every discount code of the context accounted for
/// (`Quote::account_for_codes`).
fn check_output(output: &mut HookOutput, ctx: &OrderContext) -> Result<(), String> {
    let lines = ctx.lines.len();
    match output {
        HookOutput::Violations(violations) => {
            for v in violations {
                if v.code.is_empty() || v.code.len() > 64 {
                    return Err(format!(
                        "violation code {:?} is empty or longer than 64 bytes",
                        v.code
                    ));
                }
                if v.line.is_some_and(|l| l as usize >= lines) {
                    return Err(format!(
                        "violation {} names line {:?} of {lines}",
                        v.code, v.line
                    ));
                }
            }
            Ok(())
        }
        HookOutput::Quote(Ok(quote)) => {
            quote.check_against(ctx)?;
            quote.account_for_codes(ctx);
            Ok(())
        }
        HookOutput::Quote(Err(_)) | HookOutput::Priority(_) => Ok(()),
    }
}

fn builtin_binding(
    registry: &ComponentRegistry,
    hook: Hook,
) -> Result<Arc<Binding>, PolicyLoadError> {
    let name = standard_for(hook).name;
    let component = registry
        .get(name, BUILTIN_VERSION)
        .ok_or_else(|| anyhow::anyhow!("built-in {name} missing"))?;
    Ok(Arc::new(Binding {
        component,
        config: Arc::new(BTreeMap::new()),
        limits: Limits::default(),
        on_error: OnError::Reject,
        source: "built-in".into(),
        revision: None,
        canary: None,
        shadow: None,
    }))
}

fn resolve(
    registry: &ComponentRegistry,
    file: &Path,
    tenant: &str,
    specs: manifest::ManifestBindings,
) -> Result<HookMap, PolicyLoadError> {
    let mut map = HookMap::new();
    for (hook, spec) in specs {
        let err = |problem: String| ManifestError {
            file: file.to_owned(),
            tenant: tenant.to_owned(),
            hook: Some(hook),
            problem,
        };
        let component = registry.get(&spec.name, &spec.version).ok_or_else(|| {
            err(format!(
                "field `component`: {}@{} is not a registered component (built-ins: {}; others go in policies/components/<name>@<version>.wasm)",
                spec.name,
                spec.version,
                super::registry::BUILTINS.iter().map(|b| format!("{}@{BUILTIN_VERSION}", b.name)).collect::<Vec<_>>().join(", ")
            ))
        })?;
        if !component.serves(hook) {
            return Err(err(format!(
                "field `component`: {} does not export {} (wrong world: it serves {:?})",
                component.id(),
                component.export_of(hook),
                component.hooks()
            ))
            .into());
        }
        map.insert(
            hook,
            Arc::new(Binding {
                component,
                config: Arc::new(spec.config),
                limits: spec.limits,
                on_error: spec.on_error,
                source: spec.source,
                revision: None,
                canary: None,
                shadow: None,
            }),
        );
    }
    Ok(map)
}

fn read_manifest(
    registry: &ComponentRegistry,
    file: &Path,
    tenant: &str,
) -> Result<Option<HookMap>, PolicyLoadError> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ManifestError {
                file: file.to_owned(),
                tenant: tenant.to_owned(),
                hook: None,
                problem: format!("cannot be read: {e}"),
            }
            .into());
        }
    };
    let specs = manifest::parse(file, tenant, &text)?;
    Ok(Some(resolve(registry, file, tenant, specs)?))
}

/// Builds a complete binding set from `dir` (compiling nothing new: components come
/// from the registry, which compiled them when they were registered).
fn build_set(
    registry: &ComponentRegistry,
    dir: &Path,
    generation: u64,
) -> Result<PolicySet, PolicyLoadError> {
    let mut builtin = HookMap::new();
    for hook in Hook::ALL {
        builtin.insert(hook, builtin_binding(registry, hook)?);
    }
    let mut default = builtin.clone();
    if let Some(declared) = read_manifest(registry, &dir.join("default.toml"), "default")? {
        default.extend(declared);
    }
    let mut tenants = HashMap::new();
    let tenant_dir = dir.join("tenants");
    match std::fs::read_dir(&tenant_dir) {
        Ok(entries) => {
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            files.sort();
            for file in files {
                let tenant = file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_owned();
                if let Some(map) = read_manifest(registry, &file, &tenant)? {
                    tenants.insert(tenant, map);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", tenant_dir.display()).into()),
    }
    let mut set = PolicySet {
        generation,
        default,
        tenants,
        database: Arc::default(),
        builtin,
        config_digests: Arc::default(),
    };
    set.digest_configs(&ConfigDigests::new());
    Ok(set)
}

#[cfg(test)]
mod canary_tests {
    use super::canary_bucket;

    #[test]
    fn canary_buckets_split_within_two_points_and_stay_sticky() {
        let customers: Vec<String> = (0..10_000)
            .map(|i| format!("0190a1b2-c3d4-7e5f-8a9b-{i:012}"))
            .collect();
        let share = |permille: u16| {
            customers
                .iter()
                .filter(|c| canary_bucket("acme", c) < permille)
                .count() as f64
                / customers.len() as f64
                * 100.0
        };
        for (permille, percent) in [(100, 10.0), (300, 30.0), (500, 50.0), (1, 0.1)] {
            let got = share(permille);
            assert!((got - percent).abs() <= 2.0, "{percent} %: got {got:.2} %");
        }
        assert_eq!(share(0), 0.0);
        assert_eq!(share(1_000), 100.0);
        // Sticky: the same customer, the same bucket; another tenant, another draw.
        let c = &customers[42];
        assert_eq!(canary_bucket("acme", c), canary_bucket("acme", c));
        let moved = customers
            .iter()
            .filter(|c| canary_bucket("acme", c) != canary_bucket("other", c))
            .count();
        assert!(moved > 9_000, "{moved}");
    }
}
