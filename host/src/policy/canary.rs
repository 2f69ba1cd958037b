//! The canary guard: compares a canary candidate with its stable binding on live traffic
//! and takes the canary to 0 % by itself when the candidate is worse.
//!
//! Per canary (tenant, hook, binding revision) the guard counts, over a window of
//! `ORDERHOST_CANARY_WINDOW_MS` (tumbling: it starts again once it is that old), each
//! side's calls, component failures (traps, limits, timeouts, invalid output, an open
//! breaker) and latencies. Once the candidate has `ORDERHOST_CANARY_MIN_CALLS` calls in
//! the window it is rolled back when
//!
//! - its failure rate exceeds the stable side's by more than
//!   `ORDERHOST_CANARY_ERROR_MARGIN` percentage points, or
//! - both sides have the minimum of calls and its p99 latency exceeds the stable side's
//!   by the factor `ORDERHOST_CANARY_LATENCY_FACTOR` (percent, 200 = twice) and by more
//!   than 1 ms (so microsecond noise cannot roll anything back).
//!
//! Rolling back is immediate in this process (the revision is marked: its canary serves
//! nobody here from the next call) and durable through the sink: an `auto-rollback`
//! history revision with the canary at 0 % and a reason saying what was measured
//! (`registry::bindings::rollout::run_auto_rollbacks`), published and announced to the
//! other replicas like any binding change. A replica that finds the revision already
//! moved on does nothing, so many replicas detecting the same candidate write once.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, RwLock},
};

use tokio::sync::mpsc;

use super::{runtime::Binding, types::Hook};
use crate::clock::{Clock, SystemClock};

/// Latencies kept per side and window (the most recent ones) for the p99.
const LATENCY_SAMPLES: usize = 2_048;

/// Slack under which a latency difference never rolls back, µs.
const LATENCY_FLOOR_US: u64 = 1_000;

/// Canary guard tuning: flags of `serve` (each with its environment variable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct CanaryConfig {
    /// Window over which a canary and its stable binding are compared, ms
    /// (1 000 – 3 600 000).
    #[arg(
        id = "canary_window_ms",
        long = "canary-window-ms",
        env = "ORDERHOST_CANARY_WINDOW_MS",
        default_value_t = 60_000,
        value_parser = clap::value_parser!(u64).range(1_000..=3_600_000)
    )]
    pub window_ms: u64,
    /// Candidate calls in the window before it may be judged (1 – 100 000).
    #[arg(
        id = "canary_min_calls",
        long = "canary-min-calls",
        env = "ORDERHOST_CANARY_MIN_CALLS",
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    pub min_calls: u32,
    /// Failure-rate margin over the stable binding that rolls the canary back,
    /// percentage points (0 – 100).
    #[arg(
        id = "canary_error_margin",
        long = "canary-error-margin",
        env = "ORDERHOST_CANARY_ERROR_MARGIN",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(0..=100)
    )]
    pub error_margin: u32,
    /// p99 latency of the candidate, as a percentage of the stable binding's, above
    /// which the canary is rolled back (101 – 10 000; 200 = twice as slow).
    #[arg(
        id = "canary_latency_factor",
        long = "canary-latency-factor",
        env = "ORDERHOST_CANARY_LATENCY_FACTOR",
        default_value_t = 200,
        value_parser = clap::value_parser!(u32).range(101..=10_000)
    )]
    pub latency_factor: u32,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        Self {
            window_ms: 60_000,
            min_calls: 20,
            error_margin: 5,
            latency_factor: 200,
        }
    }
}

/// A canary the guard rolled back, for the sink to make durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoRollback {
    /// Tenant slug.
    pub tenant: String,
    /// The hook.
    pub hook: Hook,
    /// The binding revision whose canary failed.
    pub revision: i64,
    /// `name@version` of the candidate.
    pub candidate: String,
    /// What was measured.
    pub reason: String,
}

type Key = (String, Hook, i64);

#[derive(Debug, Default)]
struct Side {
    calls: u32,
    failures: u32,
    latencies_us: Vec<u64>,
}

impl Side {
    fn record(&mut self, failed: bool, latency_us: u64) {
        self.calls = self.calls.saturating_add(1);
        if failed {
            self.failures = self.failures.saturating_add(1);
        } else if self.latencies_us.len() < LATENCY_SAMPLES {
            self.latencies_us.push(latency_us);
        } else {
            let at = self.calls as usize % LATENCY_SAMPLES;
            self.latencies_us[at] = latency_us;
        }
    }

    fn failure_percent(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            f64::from(self.failures) * 100.0 / f64::from(self.calls)
        }
    }

    fn p99_us(&self) -> Option<u64> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let rank = (sorted.len() * 99).div_ceil(100).max(1) - 1;
        sorted.get(rank).copied()
    }
}

#[derive(Debug)]
struct Monitor {
    started_ms: i64,
    stable: Side,
    candidate: Side,
}

/// The guard of one runtime (one process).
pub struct CanaryGuard {
    config: CanaryConfig,
    clock: Arc<dyn Clock>,
    monitors: Mutex<HashMap<Key, Monitor>>,
    rolled_back: RwLock<HashSet<Key>>,
    sink: Mutex<Option<mpsc::UnboundedSender<AutoRollback>>>,
}

impl std::fmt::Debug for CanaryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanaryGuard")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for CanaryGuard {
    fn default() -> Self {
        Self::new(CanaryConfig::default(), Arc::new(SystemClock))
    }
}

impl CanaryGuard {
    /// A guard with `config`, reading time from `clock`.
    pub fn new(config: CanaryConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            clock,
            monitors: Mutex::default(),
            rolled_back: RwLock::default(),
            sink: Mutex::default(),
        }
    }

    /// Where rollbacks go to be made durable (the app's rollback task).
    pub fn set_sink(&self, sink: mpsc::UnboundedSender<AutoRollback>) {
        *self.sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink);
    }

    /// Whether this process already rolled back the canary of `stable` (its share is
    /// then 0 here until the durable revision arrives).
    pub fn is_rolled_back(&self, tenant: &str, hook: Hook, stable: &Binding) -> bool {
        let Some(revision) = stable.revision else {
            return false;
        };
        self.rolled_back
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(tenant.to_owned(), hook, revision))
    }

    /// Counts one call of a binding that has a canary: `candidate` says which side
    /// served it. Judges the candidate, and rolls it back when it is worse.
    pub fn record(
        &self,
        tenant: &str,
        hook: Hook,
        stable: &Binding,
        candidate: bool,
        failed: bool,
        latency_us: u64,
    ) {
        let (Some(canary), Some(revision)) = (&stable.canary, stable.revision) else {
            return;
        };
        let key = (tenant.to_owned(), hook, revision);
        let now = self.clock.now_ms();
        let verdict = {
            let mut monitors = self.monitors.lock().unwrap_or_else(|e| e.into_inner());
            let window = i64::try_from(self.config.window_ms).unwrap_or(i64::MAX);
            let monitor = monitors.entry(key.clone()).or_insert_with(|| Monitor {
                started_ms: now,
                stable: Side::default(),
                candidate: Side::default(),
            });
            if now.saturating_sub(monitor.started_ms) >= window {
                *monitor = Monitor {
                    started_ms: now,
                    stable: Side::default(),
                    candidate: Side::default(),
                };
            }
            let side = if candidate {
                &mut monitor.candidate
            } else {
                &mut monitor.stable
            };
            side.record(failed, latency_us);
            self.judge(monitor)
        };
        let Some(reason) = verdict else {
            return;
        };
        if !self
            .rolled_back
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key)
        {
            return;
        }
        let candidate = canary.binding.component.id();
        tracing::warn!(%tenant, hook = hook.as_str(), revision, %candidate, %reason,
            "canary rolled back automatically");
        metrics::counter!("orderhost_canary_auto_rollbacks_total", "hook" => hook.as_str())
            .increment(1);
        if let Some(sink) = self.sink.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = sink.send(AutoRollback {
                tenant: tenant.to_owned(),
                hook,
                revision,
                candidate,
                reason,
            });
        }
    }

    /// Why the candidate must go, if it must.
    fn judge(&self, monitor: &Monitor) -> Option<String> {
        let (stable, candidate) = (&monitor.stable, &monitor.candidate);
        if candidate.calls < self.config.min_calls {
            return None;
        }
        let (theirs, ours) = (candidate.failure_percent(), stable.failure_percent());
        if theirs > ours + f64::from(self.config.error_margin) {
            return Some(format!(
                "automatic: the candidate failed {theirs:.1} % of {} calls, the stable binding {ours:.1} % of {} (margin {} points)",
                candidate.calls, stable.calls, self.config.error_margin
            ));
        }
        if stable.calls < self.config.min_calls {
            return None;
        }
        let (Some(theirs), Some(ours)) = (candidate.p99_us(), stable.p99_us()) else {
            return None;
        };
        let limit = ours.saturating_mul(u64::from(self.config.latency_factor)) / 100;
        if theirs > limit && theirs > ours.saturating_add(LATENCY_FLOOR_US) {
            return Some(format!(
                "automatic: the candidate's p99 latency {theirs} µs exceeds {}% of the stable binding's {ours} µs",
                self.config.latency_factor
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor() -> Monitor {
        Monitor {
            started_ms: 0,
            stable: Side::default(),
            candidate: Side::default(),
        }
    }

    #[test]
    fn a_failing_candidate_is_judged_once_it_has_enough_calls() {
        let guard = CanaryGuard::default();
        let mut m = monitor();
        for _ in 0..100 {
            m.stable.record(false, 100);
        }
        for i in 0..19 {
            m.candidate.record(i % 2 == 0, 100);
        }
        assert_eq!(guard.judge(&m), None, "19 calls are too few");
        m.candidate.record(true, 100);
        assert!(guard.judge(&m).unwrap().contains("failed 55.0 %"));
    }

    #[test]
    fn within_the_margin_or_a_tiny_latency_gap_is_fine() {
        let guard = CanaryGuard::default();
        let mut m = monitor();
        for i in 0..100 {
            m.stable.record(i < 10, 100);
            m.candidate.record(i < 14, 900);
        }
        assert_eq!(guard.judge(&m), None, "14 % vs 10 %, 0.9 ms vs 0.1 ms");
        let mut slow = monitor();
        for _ in 0..100 {
            slow.stable.record(false, 2_000);
            slow.candidate.record(false, 5_000);
        }
        assert!(guard.judge(&slow).unwrap().contains("p99 latency 5000 µs"));
    }
}
