//! The process-wide half of the wasmtime runtime: the `Engine` (pooling allocator,
//! copy-on-write memory images, fuel, epoch interruption with a ticker thread), the
//! `Linker` (our host interface plus WASI), the import allowlist, compilation with a
//! process-wide cache and pre-linking, and running a call: a fresh `Store` with the
//! binding's fuel and epoch deadline around the per-call state of `sandbox.rs` (WASI
//! context, memory limiter, pinned clocks, capped output, seed), and the mapping of its
//! failures to `FaultKind`s.
//!
//! One instance per order where one component serves several hooks: the calls of an
//! order's evaluation go through one [`CallSession`]. When the component, config and
//! limits of a hook are those of the instance the previous hook ran on (an `order-policy`
//! component bound to all three hooks), the call runs on that instance in its store, with
//! its fuel refilled to the binding's limit and a new epoch deadline first, so the limits
//! are still per call. An instance whose call failed is never called again; the next hook
//! gets a fresh one. Otherwise every call instantiates in a fresh store, as before; what
//! the calls of an order share whatever serves them is only what carries no guest state
//! (the random seed and the context converted to the guest's types, computed once).
//!
//! Calls are synchronous: a call is bounded by fuel and by its epoch deadline, so it
//! blocks a thread for at most its timeout. The runtime runs a whole
//! validate → price → prioritize sequence on tokio's blocking pool in one hop (see
//! `runtime.rs`) instead of using wasmtime's async support: no fiber stacks to allocate,
//! no yielding overhead per call, and one thread hop per order instead of three.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, Store,
    Trap,
    component::{Component, Instance, InstancePre, Linker},
};

use super::{
    bindings::{self, HookPre, WitContext},
    sandbox::{CallLabel, CallState, call_seed},
    types::{Hook, HookOutput, OrderContext, WIT_VERSION, WitVersion},
};

/// How often the epoch advances; timeouts are rounded up to it.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Ticks without a call in flight after which the ticker sleeps until the next call.
const IDLE_TICKS_BEFORE_PARK: u32 = 100;

/// The epoch ticker's wake-up: calls in flight in this process and the ticker's thread.
/// Ticking at 1 kHz costs ~3 % of a core on an idle machine; the deadlines only matter
/// while a component runs, so the ticker parks after [`IDLE_TICKS_BEFORE_PARK`] idle
/// ticks and the first call to start wakes it (written by hand: wasmtime leaves the
/// ticking to its embedder).
struct Ticker {
    active: AtomicUsize,
    thread: OnceLock<std::thread::Thread>,
}

static TICKER: Ticker = Ticker {
    active: AtomicUsize::new(0),
    thread: OnceLock::new(),
};

/// Held while a component may run (instantiation and the call): the ticker keeps ticking.
struct Running;

impl Running {
    fn start() -> Self {
        if TICKER.active.fetch_add(1, Ordering::SeqCst) == 0
            && let Some(thread) = TICKER.thread.get()
        {
            // A parked ticker wakes at once; an unpark before it parks makes that park
            // return at once (the token is kept), so no call runs without ticks.
            thread.unpark();
        }
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        TICKER.active.fetch_sub(1, Ordering::SeqCst);
    }
}
/// Largest linear memory any component may have (the pool's slot size).
pub const MAX_MEMORY_BYTES: u64 = 64 << 20;
/// Bytes of each pooled linear memory kept mapped between calls (a Rust guest starts
/// with about 1.1 MiB: its 1 MiB stack plus data).
const KEEP_RESIDENT_BYTES: usize = 4 << 20;
/// Largest timeout a binding may set.
pub const MAX_TIMEOUT_MS: u64 = 10_000;
/// Largest fuel a binding may set.
pub const MAX_FUEL: u64 = 10_000_000_000;

/// Resource limits of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (≈ wasm instructions) for instantiation plus the call.
    pub fuel: u64,
    /// Largest size of any linear memory, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock budget in milliseconds.
    pub timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 50_000_000,
            memory_bytes: 16 << 20,
            timeout_ms: 100,
        }
    }
}

/// Why a call failed. Each names its cause the way operators search for it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub enum FaultKind {
    /// Ran out of fuel.
    InstructionLimitExceeded,
    /// Tried to grow memory past its limit.
    MemoryLimitExceeded,
    /// Ran past its wall-clock deadline.
    Timeout,
    /// Trapped (panic, unreachable, out-of-bounds access, …).
    Trap,
    /// Returned something the host cannot accept.
    InvalidOutput,
    /// Does not export the hook's interface.
    MissingExport,
    /// No instance slot free (too many concurrent calls).
    Busy,
    /// Not called: the binding's breaker is open after repeated failures (`breaker.rs`).
    BreakerOpen,
}

impl FaultKind {
    /// Stable name, as in metrics and error details.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InstructionLimitExceeded => "InstructionLimitExceeded",
            Self::MemoryLimitExceeded => "MemoryLimitExceeded",
            Self::Timeout => "Timeout",
            Self::Trap => "Trap",
            Self::InvalidOutput => "InvalidOutput",
            Self::MissingExport => "MissingExport",
            Self::Busy => "Busy",
            Self::BreakerOpen => "BreakerOpen",
        }
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed hook call: what went wrong, where.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: tenant {tenant}, hook {hook}, component {component}: {detail}")]
pub struct PolicyFault {
    /// The kind of failure.
    pub kind: FaultKind,
    /// Tenant slug.
    pub tenant: String,
    /// Hook.
    pub hook: Hook,
    /// `name@version`.
    pub component: String,
    /// What happened.
    pub detail: String,
    /// Fuel used before the failure.
    pub fuel_used: u64,
}

/// A component compiled once and pre-linked once per hook it exports.
pub struct CompiledComponent {
    /// Name.
    pub name: String,
    /// Semver version.
    pub version: String,
    /// sha256 of the component bytes, hex.
    pub sha256: String,
    /// The `ordering:policy` version it targets, read from its exports.
    pub wit_version: WitVersion,
    /// The component pre-linked: what every instance of it is made from.
    instance_pre: InstancePre<CallState>,
    /// Each exported hook's entry point, found once.
    pres: HashMap<Hook, HookPre>,
    /// Instances made of it so far (a call on a kept instance makes none).
    instantiations: AtomicU64,
    /// Every import, as the component's own type names it (not its metadata).
    imports: Vec<String>,
    /// Every export, likewise.
    exports: Vec<String>,
    /// The metric handles of each hook, resolved on its first call (per `Hook::ALL`).
    metrics: [OnceLock<crate::observability::CallMetrics>; 3],
}

impl std::fmt::Debug for CompiledComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledComponent")
            .field("id", &self.id())
            .field("sha256", &self.sha256)
            .field("hooks", &self.hooks())
            .finish()
    }
}

impl CompiledComponent {
    /// The call metrics of `hook` of this component: counting a call is an atomic add,
    /// not a registry lookup with freshly built labels.
    pub fn call_metrics(&self, hook: Hook) -> &crate::observability::CallMetrics {
        let index = Hook::ALL.iter().position(|h| *h == hook).unwrap_or(0);
        self.metrics[index]
            .get_or_init(|| crate::observability::CallMetrics::new(hook.as_str(), self.id()))
    }

    /// `name@version`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The hooks this component can serve.
    pub fn hooks(&self) -> Vec<Hook> {
        let mut hooks: Vec<Hook> = self.pres.keys().copied().collect();
        hooks.sort();
        hooks
    }

    /// The interface it would export for `hook`, in its WIT version.
    pub fn export_of(&self, hook: Hook) -> &'static str {
        hook.export_in(self.wit_version)
    }

    /// Whether it can serve `hook`.
    pub fn serves(&self, hook: Hook) -> bool {
        self.pres.contains_key(&hook)
    }

    /// Its imports (interface names with versions), sorted.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Its exports, sorted.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    /// How many instances of it this process has made (each call on a fresh store makes
    /// one; the later hooks of an order on a kept instance make none).
    pub fn instantiations(&self) -> u64 {
        self.instantiations.load(Ordering::Relaxed)
    }
}

/// Imports a component may have: our host interface and the WASI a Rust `std` guest
/// pulls in. Everything here is granted nothing by the per-call context (`sandbox.rs`: no
/// preopens, no environment, pinned clocks, seeded randomness). Sockets and HTTP are not
/// listed.
const ALLOWED_IMPORTS: &[&str] = &[
    "ordering:policy/types@1.0.0",
    "ordering:policy/host@1.0.0",
    "ordering:policy/types@1.1.0",
    "ordering:policy/host@1.1.0",
    "wasi:cli/environment@",
    "wasi:cli/exit@",
    "wasi:cli/stdin@",
    "wasi:cli/stdout@",
    "wasi:cli/stderr@",
    "wasi:cli/terminal-",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    // A guest that reaches `std::fs` imports these; with no preopened directory it can
    // open nothing.
    "wasi:filesystem/types@",
    "wasi:filesystem/preopens@",
];

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a valid component for this engine.
    #[error("does not compile as a WebAssembly component: {0}")]
    Compile(String),
    /// Imports something the sandbox does not offer.
    #[error(
        "imports {0:?}, which components may not use (allowed: ordering:policy/host and the WASI cli/io/clocks/random/filesystem-types interfaces)"
    )]
    ForbiddenImport(String),
    /// Exports none of the hooks (what it exports instead).
    #[error(
        "exports none of the hook interfaces (ordering:policy/validation, pricing, prioritization @1.0.0 or @{})",
        WIT_VERSION
    )]
    NoHook(Vec<String>),
    /// Linking failed.
    #[error("cannot be linked: {0}")]
    Link(String),
}

/// The process-wide engine and linker.
pub struct PolicyEngine {
    engine: Engine,
    linker: Linker<CallState>,
    cache: Mutex<HashMap<String, Component>>,
}

impl PolicyEngine {
    /// The engine shared by everything in this process (one per process: compiled code
    /// and the instance pool are shared by every app and every test).
    pub fn shared() -> anyhow::Result<Arc<Self>> {
        static SHARED: OnceLock<Arc<PolicyEngine>> = OnceLock::new();
        if let Some(engine) = SHARED.get() {
            return Ok(engine.clone());
        }
        let engine = Arc::new(Self::new()?);
        Ok(SHARED.get_or_init(|| engine).clone())
    }

    fn new() -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(512)
            .total_core_instances(2048)
            .total_memories(1024)
            .total_tables(2048)
            .max_memory_size(MAX_MEMORY_BYTES as usize)
            // Keep freed slots warm: re-instantiation then costs a page reset, not an mmap.
            .max_unused_warm_slots(64)
            // Reset a freed slot by zeroing the pages the call dirtied (found with the
            // PAGEMAP_SCAN ioctl on Linux >= 6.7) instead of madvise: madvise flushes the
            // TLB of every core running this process, which made two threads slower
            // than one (measured with perf on the policy bench).
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(64 << 10)
            .pagemap_scan(Enabled::Auto);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .memory_init_cow(true)
            .cranelift_opt_level(OptLevel::Speed)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("wasmtime engine: {e}"))?;
        let ticker = engine.weak();
        let handle = std::thread::Builder::new()
            .name("policy-epoch".into())
            .spawn(move || {
                let mut idle = 0u32;
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    if TICKER.active.load(Ordering::SeqCst) == 0 {
                        idle = idle.saturating_add(1);
                        if idle >= IDLE_TICKS_BEFORE_PARK {
                            // Bounded, so a dropped engine still ends the thread; still
                            // idle after it, the ticker parks again at once.
                            std::thread::park_timeout(Duration::from_secs(1));
                            continue;
                        }
                    } else {
                        idle = 0;
                    }
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        let _ = TICKER.thread.set(handle.thread().clone());
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| anyhow::anyhow!("linking WASI: {e}"))?;
        bindings::add_host_to_linker(&mut linker)
            .map_err(|e| anyhow::anyhow!("linking the host interface: {e}"))?;
        Ok(Self {
            engine,
            linker,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Compiles (once per content hash in this process), checks imports against the
    /// allowlist, and pre-links every hook the component exports. Only a component that
    /// passes every check enters the compile cache, so refused uploads do not pile up in
    /// memory.
    pub fn load(
        &self,
        name: &str,
        version: &str,
        bytes: &[u8],
    ) -> Result<CompiledComponent, LoadError> {
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes));
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&sha256)
            .cloned();
        let is_new = cached.is_none();
        let component = match cached {
            Some(c) => c,
            None => Component::new(&self.engine, bytes)
                .map_err(|e| LoadError::Compile(format!("{e:#}")))?,
        };
        let ty = component.component_type();
        let mut imports: Vec<String> = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        imports.sort();
        if let Some(import) = imports.iter().find(|import| {
            !ALLOWED_IMPORTS
                .iter()
                .any(|allowed| import.starts_with(allowed))
        }) {
            return Err(LoadError::ForbiddenImport(import.clone()));
        }
        let mut exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        exports.sort();
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        // The version is the newest one whose hook interfaces it exports; a component
        // exporting hooks of two versions is served by the newer one's only.
        let Some(wit_version) = WitVersion::ALL.into_iter().rev().find(|v| {
            Hook::ALL
                .iter()
                .any(|hook| exports.iter().any(|e| e == hook.export_in(*v)))
        }) else {
            return Err(LoadError::NoHook(exports));
        };
        let mut pres = HashMap::new();
        for hook in Hook::ALL {
            if exports.iter().any(|e| e == hook.export_in(wit_version)) {
                let pre = HookPre::new(hook, wit_version, &instance_pre)
                    .map_err(|e| LoadError::Link(format!("{e:#}")))?;
                pres.insert(hook, pre);
            }
        }
        if is_new {
            self.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(sha256.clone(), component);
        }
        Ok(CompiledComponent {
            name: name.to_owned(),
            version: version.to_owned(),
            sha256,
            wit_version,
            instance_pre,
            pres,
            instantiations: AtomicU64::new(0),
            imports,
            exports,
            metrics: Default::default(),
        })
    }

    /// Runs `hook` of `component` on `ctx` in a fresh store with `limits`.
    pub fn call(
        &self,
        call: &CallSpec<'_>,
        ctx: &OrderContext,
    ) -> Result<CallOutcome, PolicyFault> {
        self.call_in(&mut CallSession::new(ctx), call)
    }

    /// Runs `hook` of `component` on the session's context with `limits`: on the
    /// session's kept instance when it is one of this component with this config and
    /// these limits, else on a fresh instance in a fresh store (kept for the order's next
    /// hook when the component serves more than one and the call succeeded).
    pub fn call_in(
        &self,
        session: &mut CallSession<'_>,
        call: &CallSpec<'_>,
    ) -> Result<CallOutcome, PolicyFault> {
        let fault = |kind: FaultKind, detail: String, fuel_used: u64| PolicyFault {
            kind,
            tenant: call.tenant.to_owned(),
            hook: call.hook,
            component: call.component.id(),
            detail,
            fuel_used,
        };
        let Some(pre) = call.component.pres.get(&call.hook) else {
            return Err(fault(
                FaultKind::MissingExport,
                format!(
                    "does not export {}",
                    call.hook.export_in(call.component.wit_version)
                ),
                0,
            ));
        };
        let started = Instant::now();
        // At most one instance is held per order: one that cannot serve this call is
        // dropped (its pool slot freed) before a new one is made.
        let kept = session.live.take_if(|live| live.fits(call));
        session.live = None;
        let (mut store, instance) = match kept {
            Some(LiveInstance {
                mut store,
                instance,
                ..
            }) => {
                store.data_mut().begin_call(call.hook);
                (store, Some(instance))
            }
            None => {
                let label = CallLabel {
                    tenant: call.tenant.to_owned(),
                    hook: call.hook,
                    component: call.component.id(),
                };
                let state = CallState::new(
                    session.ctx,
                    session.seed,
                    label,
                    call.config.clone(),
                    call.limits.memory_bytes,
                );
                let mut store = Store::new(&self.engine, state);
                store.limiter(|s| s.limiter());
                (store, None)
            }
        };
        // Per call, whether the instance is new or kept: the whole fuel limit (a fresh
        // instance's instantiation is paid from its first call's fuel, as it always was)
        // and a deadline from now, with the ticker awake until the call has returned.
        let running = Running::start();
        store
            .set_fuel(call.limits.fuel)
            .map_err(|e| fault(FaultKind::Trap, format!("setting fuel: {e}"), 0))?;
        let ticks = call
            .limits
            .timeout_ms
            .div_ceil(EPOCH_TICK.as_millis() as u64)
            .max(1);
        // +1: the ticker may advance right after we read the epoch.
        store.set_epoch_deadline(ticks + 1);
        store.epoch_deadline_trap();

        let result = run(call.component, pre, &mut store, instance, &session.wit_ctx);
        drop(running);
        let fuel_used = call
            .limits
            .fuel
            .saturating_sub(store.get_fuel().unwrap_or(0));
        let peak_memory_bytes = store.data().peak_memory_bytes();
        store.data().flush_output();
        let logs = store.data_mut().take_log_lines();
        let output = match result {
            Ok((output, instance)) => {
                if call.component.pres.len() > 1 {
                    session.live = Some(LiveInstance {
                        name: call.component.name.clone(),
                        version: call.component.version.clone(),
                        sha256: call.component.sha256.clone(),
                        config: call.config.clone(),
                        limits: call.limits,
                        store,
                        instance,
                    });
                }
                output
            }
            // The store (and with it a trapped instance) is dropped here: a failed
            // instance never serves another hook.
            Err(err) => {
                let kind = if store.data().memory_refused() {
                    FaultKind::MemoryLimitExceeded
                } else {
                    match err.downcast_ref::<Trap>() {
                        Some(Trap::OutOfFuel) => FaultKind::InstructionLimitExceeded,
                        Some(Trap::Interrupt) => FaultKind::Timeout,
                        Some(_) => FaultKind::Trap,
                        None if err
                            .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                            .is_some() =>
                        {
                            FaultKind::Busy
                        }
                        None => FaultKind::Trap,
                    }
                };
                let detail = match kind {
                    FaultKind::MemoryLimitExceeded => {
                        format!(
                            "tried to grow memory past {} bytes",
                            call.limits.memory_bytes
                        )
                    }
                    FaultKind::InstructionLimitExceeded => {
                        format!("used all {} fuel", call.limits.fuel)
                    }
                    FaultKind::Timeout => format!("ran past {} ms", call.limits.timeout_ms),
                    _ => first_line(&format!("{err:#}")),
                };
                return Err(fault(kind, detail, fuel_used));
            }
        };
        Ok(CallOutcome {
            output,
            fuel_used,
            peak_memory_bytes,
            elapsed: started.elapsed(),
            logs,
        })
    }
}

/// The calls of one evaluation of one order context (see the module header): the
/// context's seed and guest-typed copy, computed once, and at most one kept instance.
/// Dropping it drops the instance: no instance outlives its order.
pub struct CallSession<'a> {
    ctx: &'a OrderContext,
    seed: u128,
    wit_ctx: WitContext<'a>,
    live: Option<LiveInstance>,
}

impl<'a> CallSession<'a> {
    /// A session for calls on `ctx`.
    pub fn new(ctx: &'a OrderContext) -> Self {
        Self {
            ctx,
            seed: call_seed(ctx),
            wit_ctx: WitContext::new(ctx),
            live: None,
        }
    }

    /// Drops the kept instance, if any: after an output the host refused, the instance
    /// that produced it serves no later hook.
    pub fn discard(&mut self) {
        self.live = None;
    }
}

impl std::fmt::Debug for CallSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallSession")
            .field("tenant", &self.ctx.tenant)
            .field("kept", &self.live.as_ref().map(|l| &l.name))
            .finish_non_exhaustive()
    }
}

/// An instance kept after a successful call, with what it was made for.
struct LiveInstance {
    /// Name and version of its component.
    name: String,
    version: String,
    /// sha256 of its component.
    sha256: String,
    config: Arc<BTreeMap<String, String>>,
    limits: Limits,
    store: Store<CallState>,
    instance: Instance,
}

impl LiveInstance {
    /// Whether `call` may run on it: the same component, config and limits (the config is
    /// compared by value: bindings of the three hooks each hold their own copy).
    fn fits(&self, call: &CallSpec<'_>) -> bool {
        self.sha256 == call.component.sha256
            && self.name == call.component.name
            && self.version == call.component.version
            && self.limits == call.limits
            && (Arc::ptr_eq(&self.config, &call.config) || self.config == call.config)
    }
}

/// Calls `pre`'s hook on `instance`, or on a new instance of `component` made in
/// `store` first (counted), and hands the instance back with the output.
fn run(
    component: &CompiledComponent,
    pre: &HookPre,
    store: &mut Store<CallState>,
    instance: Option<Instance>,
    ctx: &WitContext<'_>,
) -> wasmtime::Result<(HookOutput, Instance)> {
    let instance = match instance {
        Some(instance) => instance,
        None => {
            let instance = component.instance_pre.instantiate(&mut *store)?;
            component.instantiations.fetch_add(1, Ordering::Relaxed);
            instance
        }
    };
    let output = pre.call(store, &instance, ctx)?;
    Ok((output, instance))
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

/// What to call, with what configuration and limits.
pub struct CallSpec<'a> {
    /// Tenant slug (for errors and logs).
    pub tenant: &'a str,
    /// The hook.
    pub hook: Hook,
    /// The component.
    pub component: &'a CompiledComponent,
    /// The binding's configuration, read through `config(key)`.
    pub config: Arc<BTreeMap<String, String>>,
    /// The binding's limits.
    pub limits: Limits,
}

/// A successful call.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// What the hook returned.
    pub output: HookOutput,
    /// Fuel consumed (instantiation + call; the call alone on an instance kept from the
    /// order's previous hook).
    pub fuel_used: u64,
    /// Largest linear memory size seen, bytes.
    pub peak_memory_bytes: u64,
    /// Wall time of instantiation + call (the call alone on a kept instance).
    pub elapsed: Duration,
    /// What the component wrote with `host.log`.
    pub logs: Vec<super::types::GuestLogLine>,
}
