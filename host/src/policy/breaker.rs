//! A circuit breaker per binding: a component that keeps failing (traps, limits,
//! timeouts, garbage output) stops being called for a while, and the binding's `on_error`
//! answers instead — the built-in for `fallback`, 503 `POLICY_UNAVAILABLE` for `reject` —
//! without paying the failing call's fuel and deadline on every order.
//!
//! - **closed**: every call runs and is counted in a sliding window of `window_ms`
//!   (ten buckets). When the window holds at least `min_calls` calls of which at least
//!   `failure_ratio` % failed, the breaker opens.
//! - **open**: no call runs; the runtime gets a [`FaultKind::BreakerOpen`] fault and takes
//!   the binding's `on_error` path. After `open_ms` the next call finds it half-open.
//! - **half-open**: up to `probes` calls at a time run as probes (the others are answered
//!   as when open). `probes` successes close it with an empty window; one failed probe
//!   opens it again for another `open_ms`.
//!
//! A breaker is keyed by (tenant, hook, component `name@version`, sha256): a new binding of
//! another component starts closed, a rebinding of the same component keeps its breaker,
//! and a default binding has one breaker per tenant it serves. The state is per process:
//! each replica has its own breakers and trips them on its own traffic. Time is the app's
//! [`Clock`], so tests move it by hand.
//!
//! Cost on the order path (closed): one hash of the key, a shared read lock and two short
//! per-breaker mutex sections (`admit`, `record`); measured by `benches/breaker.rs`.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash, Hasher},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU8, Ordering},
    },
};

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    engine::{CallOutcome, CompiledComponent, FaultKind, PolicyFault},
    manifest::OnError,
    runtime::{Binding, OVERRIDE_SOURCE},
    types::Hook,
};
use crate::{
    auth::AuthUser,
    clock::{Clock, SystemClock, rfc3339},
    http::{
        error::{ApiError, ErrorEnvelope},
        extract::{Json, Path},
    },
    state::AppState,
    tenants,
};

/// Buckets of the sliding window: the window slides by a tenth of its length.
const BUCKETS: usize = 10;

/// A breaker that is closed and has not been used for this long is forgotten (its binding
/// is most likely gone): ms.
const FORGET_AFTER_MS: i64 = 3_600_000;

/// Breaker tuning: flags of `serve` (each with its environment variable). Out-of-range
/// values are refused at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct BreakerConfig {
    /// Length of the sliding window over which a binding's failures are counted, ms
    /// (100 – 600 000).
    #[arg(
        long = "breaker-window-ms",
        env = "ORDERHOST_BREAKER_WINDOW_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(100..=600_000)
    )]
    pub window_ms: u64,
    /// Calls the window must hold before the breaker may open (1 – 100 000).
    #[arg(
        long = "breaker-min-calls",
        env = "ORDERHOST_BREAKER_MIN_CALLS",
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    pub min_calls: u32,
    /// Share of failed calls in the window that opens the breaker, percent (1 – 100).
    #[arg(
        long = "breaker-failure-ratio",
        env = "ORDERHOST_BREAKER_FAILURE_RATIO",
        default_value_t = 50,
        value_parser = clap::value_parser!(u8).range(1..=100)
    )]
    pub failure_ratio: u8,
    /// How long an open breaker answers without calling the component before it lets
    /// probes through, ms (100 – 3 600 000).
    #[arg(
        long = "breaker-open-ms",
        env = "ORDERHOST_BREAKER_OPEN_MS",
        default_value_t = 5_000,
        value_parser = clap::value_parser!(u64).range(100..=3_600_000)
    )]
    pub open_ms: u64,
    /// Probe calls a half-open breaker lets through at a time, and successes it needs to
    /// close (1 – 100).
    #[arg(
        long = "breaker-probes",
        env = "ORDERHOST_BREAKER_PROBES",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(1..=100)
    )]
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window_ms: 10_000,
            min_calls: 20,
            failure_ratio: 50,
            open_ms: 5_000,
            probes: 3,
        }
    }
}

impl BreakerConfig {
    fn bucket_ms(&self) -> i64 {
        i64::try_from(self.window_ms / BUCKETS as u64)
            .unwrap_or(i64::MAX)
            .max(1)
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    /// Calls run and are counted.
    Closed,
    /// A few probe calls run; the rest are answered as when open.
    HalfOpen,
    /// No call runs.
    Open,
}

impl BreakerState {
    /// Stable name, as in logs and the `to` label of the transitions counter.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half-open",
            Self::Open => "open",
        }
    }

    /// Value of the `orderhost_breaker_state` gauge (and of `BindingBreaker::state`).
    fn code(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen => 1,
            Self::Open => 2,
        }
    }

    fn gauge(self) -> f64 {
        f64::from(self.code())
    }
}

/// Whether a fault counts against the component. `Busy` does not: it means this process
/// had no free instance slot, which says nothing about the component and would let a load
/// spike open the breakers of healthy bindings. `MissingExport` does: it is the
/// component's (it cannot happen for a binding that passed its checks). `BreakerOpen` is
/// never recorded: no call ran.
fn counts_against_component(kind: FaultKind) -> bool {
    match kind {
        FaultKind::Trap
        | FaultKind::InstructionLimitExceeded
        | FaultKind::MemoryLimitExceeded
        | FaultKind::Timeout
        | FaultKind::InvalidOutput
        | FaultKind::MissingExport => true,
        FaultKind::Busy | FaultKind::BreakerOpen => false,
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// `now / bucket_ms` of the calls it holds.
    index: i64,
    calls: u32,
    failures: u32,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    since_ms: i64,
    /// Increases at every transition: a probe admitted in an earlier half-open spell does
    /// not count in a later one.
    generation: u64,
    buckets: [Bucket; BUCKETS],
    probes_in_flight: u32,
    probe_successes: u32,
    last_fault: Option<(FaultKind, String)>,
    last_used_ms: i64,
    opened: u64,
}

impl Inner {
    fn window(&self, now: i64, bucket_ms: i64) -> (u32, u32) {
        let current = now.div_euclid(bucket_ms);
        self.buckets
            .iter()
            .filter(|b| b.index > current - BUCKETS as i64 && b.index <= current)
            .fold((0, 0), |(calls, failures), b| {
                (calls + b.calls, failures + b.failures)
            })
    }

    fn count(&mut self, now: i64, bucket_ms: i64, failed: bool) {
        let index = now.div_euclid(bucket_ms);
        let bucket = &mut self.buckets[index.rem_euclid(BUCKETS as i64) as usize];
        if bucket.index != index {
            *bucket = Bucket {
                index,
                ..Bucket::default()
            };
        }
        bucket.calls += 1;
        bucket.failures += u32::from(failed);
    }

    fn enter(&mut self, to: BreakerState, now: i64) {
        self.state = to;
        self.since_ms = now;
        self.generation += 1;
        self.probes_in_flight = 0;
        self.probe_successes = 0;
        match to {
            BreakerState::Open => self.opened += 1,
            // A closed breaker starts from an empty window: the failures that opened it
            // are not held against the recovered component.
            BreakerState::Closed => self.buckets = [Bucket::default(); BUCKETS],
            BreakerState::HalfOpen => {}
        }
    }
}

/// A transition to report once the breaker's lock is released.
struct Transition {
    to: BreakerState,
    calls: u32,
    failures: u32,
    fault: Option<(FaultKind, String)>,
}

/// The breaker of one (tenant, hook, component).
#[derive(Debug)]
pub struct BindingBreaker {
    tenant: String,
    hook: Hook,
    name: String,
    version: String,
    sha256: String,
    /// `name@version`, as in labels and faults.
    component: String,
    /// `inner.state` as [`BreakerState::code`], written under the lock: a closed
    /// breaker admits a call without taking the lock.
    state: AtomicU8,
    inner: Mutex<Inner>,
}

impl BindingBreaker {
    fn new(tenant: &str, hook: Hook, component: &CompiledComponent, now: i64) -> Self {
        let breaker = Self {
            tenant: tenant.to_owned(),
            hook,
            name: component.name.clone(),
            version: component.version.clone(),
            sha256: component.sha256.clone(),
            component: component.id(),
            state: AtomicU8::new(BreakerState::Closed.code()),
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                since_ms: now,
                generation: 0,
                buckets: [Bucket::default(); BUCKETS],
                probes_in_flight: 0,
                probe_successes: 0,
                last_fault: None,
                last_used_ms: now,
                opened: 0,
            }),
        };
        metrics::gauge!("orderhost_breaker_state", &breaker.labels())
            .set(BreakerState::Closed.gauge());
        breaker
    }

    fn is(&self, tenant: &str, hook: Hook, component: &CompiledComponent) -> bool {
        self.hook == hook
            && self.tenant == tenant
            && self.sha256 == component.sha256
            && self.name == component.name
            && self.version == component.version
    }

    fn labels(&self) -> [(&'static str, String); 3] {
        [
            ("tenant", self.tenant.clone()),
            ("hook", self.hook.as_str().to_owned()),
            ("component", self.component.clone()),
        ]
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves `inner` (locked) to `to` and publishes the state for the lock-free check.
    fn enter(&self, inner: &mut Inner, to: BreakerState, now: i64) {
        inner.enter(to, now);
        self.state.store(to.code(), Ordering::Release);
    }

    /// Whether a call may run now; `Ok(Some(generation))` for a half-open probe.
    fn admit(&self, config: &BreakerConfig, now: i64) -> Result<Option<u64>, PolicyFault> {
        // The common case, lock-free: a call admitted while closed is counted by `finish`
        // only if the breaker is still closed then.
        if self.state.load(Ordering::Acquire) == BreakerState::Closed.code() {
            return Ok(None);
        }
        let mut inner = self.lock();
        inner.last_used_ms = now;
        let mut transition = None;
        if inner.state == BreakerState::Open
            && now.saturating_sub(inner.since_ms) >= i64::try_from(config.open_ms).unwrap_or(0)
        {
            self.enter(&mut inner, BreakerState::HalfOpen, now);
            transition = Some(Transition {
                to: BreakerState::HalfOpen,
                calls: 0,
                failures: 0,
                fault: None,
            });
        }
        let admitted = match inner.state {
            BreakerState::Closed => Ok(None),
            BreakerState::HalfOpen
                if inner.probes_in_flight + inner.probe_successes < config.probes =>
            {
                inner.probes_in_flight += 1;
                Ok(Some(inner.generation))
            }
            state => Err(self.open_fault(&inner, state, config, now)),
        };
        drop(inner);
        if let Some(t) = transition {
            self.report(t, config);
        }
        admitted
    }

    fn open_fault(
        &self,
        inner: &Inner,
        state: BreakerState,
        config: &BreakerConfig,
        now: i64,
    ) -> PolicyFault {
        let detail = match state {
            BreakerState::HalfOpen => format!(
                "the binding's breaker is half-open and its {} probe calls are in flight or done; the component was not called",
                config.probes
            ),
            _ => {
                let retry = i64::try_from(config.open_ms)
                    .unwrap_or(0)
                    .saturating_sub(now.saturating_sub(inner.since_ms));
                let last = inner
                    .last_fault
                    .as_ref()
                    .map(|(kind, _)| format!(" (last failure: {kind})"))
                    .unwrap_or_default();
                format!(
                    "the binding's breaker is open after repeated failures{last}; the component was not called; probes in {retry} ms"
                )
            }
        };
        PolicyFault {
            kind: FaultKind::BreakerOpen,
            tenant: self.tenant.clone(),
            hook: self.hook,
            component: self.component.clone(),
            detail,
            fuel_used: 0,
        }
    }

    /// Counts the result of an admitted call; `probe` is the generation a probe was
    /// admitted in. `fault` is `None` for a success, `Some((kind, detail))` otherwise.
    fn finish(
        &self,
        config: &BreakerConfig,
        now: i64,
        probe: Option<u64>,
        fault: Option<(FaultKind, &str)>,
    ) {
        let failed = fault.is_some_and(|(kind, _)| counts_against_component(kind));
        let neutral = fault.is_some() && !failed;
        let mut inner = self.lock();
        inner.last_used_ms = now;
        if failed && let Some((kind, detail)) = fault {
            inner.last_fault = Some((kind, detail.to_owned()));
        }
        let transition = match probe {
            Some(generation)
                if generation == inner.generation && inner.state == BreakerState::HalfOpen =>
            {
                inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
                if failed {
                    self.enter(&mut inner, BreakerState::Open, now);
                    Some(BreakerState::Open)
                } else if neutral {
                    None
                } else {
                    inner.probe_successes += 1;
                    (inner.probe_successes >= config.probes).then(|| {
                        self.enter(&mut inner, BreakerState::Closed, now);
                        BreakerState::Closed
                    })
                }
            }
            // A probe of an earlier half-open spell: its answer is stale.
            Some(_) => None,
            None if inner.state == BreakerState::Closed && !neutral => {
                let bucket_ms = config.bucket_ms();
                inner.count(now, bucket_ms, failed);
                // Only a failure can trip it: a success skips the window's sum.
                let trips = failed && {
                    let (calls, failures) = inner.window(now, bucket_ms);
                    calls >= config.min_calls
                        && u64::from(failures) * 100
                            >= u64::from(config.failure_ratio) * u64::from(calls)
                };
                trips.then(|| {
                    self.enter(&mut inner, BreakerState::Open, now);
                    BreakerState::Open
                })
            }
            // Admitted while closed, answered after the breaker changed: not counted.
            None => None,
        };
        let transition = transition.map(|to| {
            let (calls, failures) = inner.window(now, config.bucket_ms());
            Transition {
                to,
                calls,
                failures,
                fault: inner.last_fault.clone(),
            }
        });
        drop(inner);
        if let Some(t) = transition {
            self.report(t, config);
        }
    }

    /// Metrics and the log line of a transition.
    fn report(&self, t: Transition, config: &BreakerConfig) {
        let labels = self.labels();
        metrics::gauge!("orderhost_breaker_state", &labels).set(t.to.gauge());
        let [tenant, hook, component] = labels;
        metrics::counter!(
            "orderhost_breaker_transitions_total",
            &[tenant, hook, component, ("to", t.to.as_str().to_owned())]
        )
        .increment(1);
        match t.to {
            BreakerState::Open => {
                let (kind, detail) = t.fault.unwrap_or((FaultKind::Trap, String::new()));
                tracing::warn!(
                    tenant = %self.tenant,
                    hook = self.hook.as_str(),
                    component = %self.component,
                    failures = t.failures,
                    calls = t.calls,
                    last_fault = kind.as_str(),
                    last_detail = %detail,
                    open_ms = config.open_ms,
                    "policy breaker opened: the component is not called until probes succeed"
                );
            }
            BreakerState::HalfOpen => tracing::info!(
                tenant = %self.tenant,
                hook = self.hook.as_str(),
                component = %self.component,
                probes = config.probes,
                "policy breaker half-open: probing the component"
            ),
            BreakerState::Closed => tracing::info!(
                tenant = %self.tenant,
                hook = self.hook.as_str(),
                component = %self.component,
                probes = config.probes,
                "policy breaker closed: the probes succeeded"
            ),
        }
    }

    /// What `GET /admin/tenants/{tenant}/breakers` shows (advancing open → half-open when
    /// its time has come, as the next call would).
    fn view(&self, config: &BreakerConfig, now: i64) -> BreakerStatus {
        let mut inner = self.lock();
        let mut transition = None;
        if inner.state == BreakerState::Open
            && now.saturating_sub(inner.since_ms) >= i64::try_from(config.open_ms).unwrap_or(0)
        {
            self.enter(&mut inner, BreakerState::HalfOpen, now);
            transition = Some(Transition {
                to: BreakerState::HalfOpen,
                calls: 0,
                failures: 0,
                fault: None,
            });
        }
        let (calls, failures) = inner.window(now, config.bucket_ms());
        let status = BreakerStatus {
            state: inner.state,
            since: rfc3339(inner.since_ms),
            window_calls: calls,
            window_failures: failures,
            probes_in_flight: inner.probes_in_flight,
            probe_successes: inner.probe_successes,
            probes_at: (inner.state == BreakerState::Open).then(|| {
                rfc3339(
                    inner
                        .since_ms
                        .saturating_add(i64::try_from(config.open_ms).unwrap_or(0)),
                )
            }),
            times_opened: inner.opened,
            last_fault: inner.last_fault.as_ref().map(|(kind, detail)| LastFault {
                kind: *kind,
                detail: detail.clone(),
            }),
        };
        drop(inner);
        if let Some(t) = transition {
            self.report(t, config);
        }
        status
    }
}

/// Permission to run one call, to be settled with [`Ticket::record`]. Dropped unsettled
/// (the call never finished), it frees its probe slot without counting.
#[derive(Debug)]
pub struct Ticket<'a> {
    breakers: &'a Breakers,
    breaker: Option<Arc<BindingBreaker>>,
    probe: Option<u64>,
}

impl Ticket<'_> {
    /// Counts `result` against the breaker and hands it back.
    pub fn record(
        mut self,
        result: Result<CallOutcome, PolicyFault>,
    ) -> Result<CallOutcome, PolicyFault> {
        if let Some(breaker) = self.breaker.take() {
            let fault = result.as_ref().err().map(|f| (f.kind, f.detail.as_str()));
            breaker.finish(
                &self.breakers.config,
                self.breakers.clock.now_ms(),
                self.probe,
                fault,
            );
        }
        result
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(breaker) = self.breaker.take() {
            breaker.finish(
                &self.breakers.config,
                self.breakers.clock.now_ms(),
                self.probe,
                Some((FaultKind::Busy, "the call did not finish")),
            );
        }
    }
}

/// Every breaker of this process.
pub struct Breakers {
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    hasher: std::hash::RandomState,
    // By a hash of (tenant, hook, component, sha256); the `Vec` holds the rare collisions.
    map: RwLock<HashMap<u64, Vec<Arc<BindingBreaker>>>>,
}

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breakers")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for Breakers {
    fn default() -> Self {
        Self::new(BreakerConfig::default(), Arc::new(SystemClock))
    }
}

impl Breakers {
    /// Breakers tuned by `config`, reading time from `clock`.
    pub fn new(config: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            clock,
            hasher: std::hash::RandomState::new(),
            map: RwLock::new(HashMap::new()),
        }
    }

    /// The tuning.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    // Tenant, hook and the first 16 hex digits of the sha256 pick the slot; `find`
    // compares everything (name and version included), so this only needs to spread.
    fn key(&self, tenant: &str, hook: Hook, component: &CompiledComponent) -> u64 {
        let mut h = self.hasher.build_hasher();
        tenant.hash(&mut h);
        hook.hash(&mut h);
        component
            .sha256
            .get(..16)
            .unwrap_or(&component.sha256)
            .hash(&mut h);
        h.finish()
    }

    fn find(
        &self,
        key: u64,
        tenant: &str,
        hook: Hook,
        component: &CompiledComponent,
    ) -> Option<Arc<BindingBreaker>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)?
            .iter()
            .find(|b| b.is(tenant, hook, component))
            .cloned()
    }

    /// The breaker of (tenant, hook, component), created closed on first use.
    fn breaker(
        &self,
        tenant: &str,
        hook: Hook,
        component: &CompiledComponent,
        now: i64,
    ) -> Arc<BindingBreaker> {
        let key = self.key(tenant, hook, component);
        if let Some(found) = self.find(key, tenant, hook, component) {
            return found;
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = map
            .get(&key)
            .and_then(|v| v.iter().find(|b| b.is(tenant, hook, component)))
        {
            return found.clone();
        }
        // New bindings are rare: forget the breakers nobody used for an hour while at it.
        map.retain(|_, breakers| {
            breakers.retain(|b| {
                let inner = b.lock();
                inner.state != BreakerState::Closed
                    || now.saturating_sub(inner.last_used_ms) < FORGET_AFTER_MS
            });
            !breakers.is_empty()
        });
        let breaker = Arc::new(BindingBreaker::new(tenant, hook, component, now));
        map.entry(key).or_default().push(breaker.clone());
        breaker
    }

    /// Whether `binding` may be called for `tenant`'s `hook` now: a [`Ticket`] to settle
    /// with the call's result, or the [`FaultKind::BreakerOpen`] fault that takes the
    /// binding's `on_error` path. An operator's one-off override is never gated nor
    /// counted: it is not the binding.
    pub fn admit(
        &self,
        tenant: &str,
        hook: Hook,
        binding: &Binding,
    ) -> Result<Ticket<'_>, PolicyFault> {
        if binding.source == OVERRIDE_SOURCE {
            return Ok(Ticket {
                breakers: self,
                breaker: None,
                probe: None,
            });
        }
        let now = self.clock.now_ms();
        let breaker = self.breaker(tenant, hook, &binding.component, now);
        let probe = breaker.admit(&self.config, now)?;
        Ok(Ticket {
            breakers: self,
            breaker: Some(breaker),
            probe,
        })
    }

    /// The status of the breaker of (tenant, hook, component); a closed, empty one when it
    /// has not been used in this process.
    pub fn status(&self, tenant: &str, hook: Hook, component: &CompiledComponent) -> BreakerStatus {
        let now = self.clock.now_ms();
        match self.find(self.key(tenant, hook, component), tenant, hook, component) {
            Some(breaker) => breaker.view(&self.config, now),
            None => BreakerStatus {
                state: BreakerState::Closed,
                since: String::new(),
                window_calls: 0,
                window_failures: 0,
                probes_in_flight: 0,
                probe_successes: 0,
                probes_at: None,
                times_opened: 0,
                last_fault: None,
            },
        }
    }
}

/// A breaker's last counted failure.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastFault {
    /// Its kind (`Trap`, `Timeout`, …).
    pub kind: FaultKind,
    /// What happened.
    pub detail: String,
}

/// One breaker's state, as this process sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakerStatus {
    /// `closed`, `half-open` or `open`.
    pub state: BreakerState,
    /// When it entered that state (RFC 3339); empty for a breaker not used yet.
    pub since: String,
    /// Calls counted in the sliding window (closed state).
    pub window_calls: u32,
    /// Of those, the failed ones.
    pub window_failures: u32,
    /// Probe calls running now (half-open).
    pub probes_in_flight: u32,
    /// Probe calls that succeeded in this half-open spell.
    pub probe_successes: u32,
    /// When an open breaker starts probing (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes_at: Option<String>,
    /// How many times it opened since this process started.
    pub times_opened: u64,
    /// The last failure it counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_fault: Option<LastFault>,
}

/// The breaker of one hook's effective binding.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookBreaker {
    /// The hook.
    pub hook: Hook,
    /// `name@version` of the bound component.
    pub component: String,
    /// Its sha256.
    pub sha256: String,
    /// What the binding does while the breaker is open.
    pub on_error: OnError,
    /// The breaker.
    #[serde(flatten)]
    pub status: BreakerStatus,
}

/// The breaker settings of this process.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakerSettings {
    /// `ORDERHOST_BREAKER_WINDOW_MS`.
    pub window_ms: u64,
    /// `ORDERHOST_BREAKER_MIN_CALLS`.
    pub min_calls: u32,
    /// `ORDERHOST_BREAKER_FAILURE_RATIO`, percent.
    pub failure_ratio_percent: u8,
    /// `ORDERHOST_BREAKER_OPEN_MS`.
    pub open_ms: u64,
    /// `ORDERHOST_BREAKER_PROBES`.
    pub probes: u32,
}

/// Body of `GET /admin/tenants/{tenant}/breakers`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakersView {
    /// Tenant slug.
    pub tenant: String,
    /// The replica that answered: breakers are per process, each replica has its own.
    pub replica: String,
    /// The settings.
    pub settings: BreakerSettings,
    /// One per hook, for its effective binding.
    pub breakers: Vec<HookBreaker>,
}

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_breakers))
}

/// The breaker of each hook's effective binding on the replica that answers (tenant admin
/// for its own tenant, operator for any).
#[utoipa::path(get, path = "/admin/tenants/{tenant}/breakers", tag = "policy",
    params(("tenant" = String, Path)),
    responses((status = 200, body = BreakersView), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
async fn list_breakers(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(tenant): Path<String>,
) -> Result<Json<BreakersView>, ApiError> {
    let scope = tenants::admin_scope(&state.store, &actor, Some(&tenant)).await?;
    let slug = tenants::find_by_id(&state.store, &scope.tenant_id)
        .await?
        .map(|t| t.slug)
        .ok_or_else(|| tenants::not_found(&tenant))?;
    Ok(Json(view(&state, slug)))
}

/// The breakers of a tenant's hooks on this process: what `GET …/breakers` answers and
/// the operator console shows.
pub(crate) fn view(state: &AppState, slug: String) -> BreakersView {
    let set = state.policy.snapshot();
    let breakers = state.policy.breakers();
    let config = breakers.config();
    let hooks = Hook::ALL
        .into_iter()
        .map(|hook| {
            let binding = set.binding(&slug, hook);
            HookBreaker {
                hook,
                component: binding.component.id(),
                sha256: binding.component.sha256.clone(),
                on_error: binding.on_error,
                status: breakers.status(&slug, hook, &binding.component),
            }
        })
        .collect();
    BreakersView {
        tenant: slug,
        replica: state.fanout.id().to_owned(),
        settings: BreakerSettings {
            window_ms: config.window_ms,
            min_calls: config.min_calls,
            failure_ratio_percent: config.failure_ratio,
            open_ms: config.open_ms,
            probes: config.probes,
        },
        breakers: hooks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner() -> Inner {
        Inner {
            state: BreakerState::Closed,
            since_ms: 0,
            generation: 0,
            buckets: [Bucket::default(); BUCKETS],
            probes_in_flight: 0,
            probe_successes: 0,
            last_fault: None,
            last_used_ms: 0,
            opened: 0,
        }
    }

    #[test]
    fn the_window_slides_by_buckets() {
        let mut w = inner();
        // 10 s window, 1 s buckets.
        w.count(0, 1_000, true);
        w.count(500, 1_000, false);
        w.count(9_999, 1_000, true);
        assert_eq!(w.window(9_999, 1_000), (3, 2));
        // The first bucket (0–999) leaves the window at 10 000.
        assert_eq!(w.window(10_000, 1_000), (1, 1));
        w.count(10_000, 1_000, false);
        assert_eq!(w.window(10_000, 1_000), (2, 1));
        assert_eq!(w.window(30_000, 1_000), (0, 0));
    }
}
