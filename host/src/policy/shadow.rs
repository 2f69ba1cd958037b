//! Shadow mode: a binding's shadow candidate runs on a sample of live orders *after* they
//! were decided, off the order's path, and what it would have decided differently is
//! counted and kept as examples (like GitHub's Scientist).
//!
//! After an order is accepted, each hook whose binding carries a shadow and whose sample
//! hits (a SHA-256 bucket of the order id below the shadow's per-mille share) is queued
//! here; a blocking task runs the candidate (its own component and config, the stable
//! binding's limits) on the order's context and compares with what decided the order:
//!
//! | kind | when |
//! |---|---|
//! | `validationMismatch` | the candidate's violations (any) differ from the accepted order's (none) |
//! | `priceDelta` | the candidate's total differs from the charged total |
//! | `priorityDelta` | the candidate's priority differs from the order's |
//! | `candidateError` | the candidate failed (trap, limits, timeout, invalid output) |
//!
//! The order never waits for it or depends on it: at most [`MAX_IN_FLIGHT`] shadow calls
//! run at once per process, and an order that finds them all busy is not shadowed
//! (counted as `skipped`). Results are per process and per binding revision (a new
//! revision starts a new count); `GET /admin/tenants/{tenant}/bindings/{hook}/shadow`
//! shows this replica's.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use serde::Serialize;
use utoipa::ToSchema;

use super::{
    PolicyRuntime,
    runtime::{Binding, Rollout},
    types::{Hook, HookOutput, OrderContext, Quote, Violation},
};

/// Shadow calls running at once in a process, at most.
pub const MAX_IN_FLIGHT: usize = 4;
/// Examples kept per kind and binding revision.
pub const EXAMPLES: usize = 20;

/// Tag of the sample bucket encoding.
const SAMPLE_ENCODING: &[u8] = b"orderhost/shadow/v1\0";

/// The sample bucket (0–999) of an order: the order is shadowed when it is below the
/// shadow's per-mille share.
pub fn sample_bucket(order_id: &str) -> u16 {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    hash.update(SAMPLE_ENCODING);
    hash.update(order_id.as_bytes());
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u16::try_from(u64::from_be_bytes(first) % 1_000).unwrap_or(0)
}

/// What decided an order, per hook, for the comparison.
#[derive(Debug, Clone)]
pub struct Decided {
    /// The order.
    pub order_id: String,
    /// Its violations (none: accepted).
    pub violations: Vec<Violation>,
    /// Its quote.
    pub quote: Quote,
    /// Its priority.
    pub priority: u32,
}

/// One disagreement.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowExample {
    /// The order.
    pub order_id: String,
    /// What decided it.
    pub actual: String,
    /// What the candidate said.
    pub candidate: String,
}

/// Counts and examples of one binding revision's shadow.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowReport {
    /// `name@version` of the candidate.
    pub candidate: String,
    /// The binding revision it shadows.
    pub revision: i64,
    /// Orders the candidate ran on.
    pub runs: u64,
    /// Of which it agreed.
    pub agreements: u64,
    /// Sampled orders not shadowed because the shadow calls were all busy.
    pub skipped: u64,
    /// Disagreements per kind.
    pub disagreements: BTreeMap<String, u64>,
    /// Disagreements per kind, as a share of the runs (percent).
    pub rates: BTreeMap<String, f64>,
    /// Up to 20 examples per kind.
    pub examples: BTreeMap<String, Vec<ShadowExample>>,
}

type Key = (String, Hook, i64);

/// The shadow results of one process.
#[derive(Debug)]
pub struct ShadowLab {
    reports: Mutex<HashMap<Key, ShadowReport>>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl Default for ShadowLab {
    fn default() -> Self {
        Self {
            reports: Mutex::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
        }
    }
}

impl ShadowLab {
    /// This process's report of the shadow of `tenant`'s `hook` at binding `revision`.
    pub fn report(&self, tenant: &str, hook: Hook, revision: i64) -> Option<ShadowReport> {
        let reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        let mut report = reports.get(&(tenant.to_owned(), hook, revision))?.clone();
        for (kind, n) in &report.disagreements {
            let rate = if report.runs == 0 {
                0.0
            } else {
                *n as f64 * 100.0 / report.runs as f64
            };
            report.rates.insert(kind.clone(), rate);
        }
        Some(report)
    }

    fn with_report(&self, key: &Key, candidate: &str, f: impl FnOnce(&mut ShadowReport)) {
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        let report = reports.entry(key.clone()).or_insert_with(|| ShadowReport {
            candidate: candidate.to_owned(),
            revision: key.2,
            ..ShadowReport::default()
        });
        f(report);
    }
}

/// The kind of disagreement between what decided an order and the candidate's output.
fn compare(
    hook: Hook,
    decided: &Decided,
    output: &HookOutput,
) -> Option<(&'static str, String, String)> {
    match (hook, output) {
        (Hook::Validation, HookOutput::Violations(v)) if *v != decided.violations => Some((
            "validationMismatch",
            format!("{} violations", decided.violations.len()),
            v.iter()
                .map(|v| v.code.as_str())
                .collect::<Vec<_>>()
                .join(","),
        )),
        (Hook::Pricing, HookOutput::Quote(Ok(q))) if q.total != decided.quote.total => Some((
            "priceDelta",
            format!("{} {}", decided.quote.total, decided.quote.currency),
            format!(
                "{} {} (delta {})",
                q.total,
                q.currency,
                q.total - decided.quote.total
            ),
        )),
        (Hook::Pricing, HookOutput::Quote(Err(refusal))) => Some((
            "priceDelta",
            format!("{} {}", decided.quote.total, decided.quote.currency),
            format!("refused: {refusal:?}"),
        )),
        (Hook::Prioritization, HookOutput::Priority(p)) if *p != decided.priority => {
            Some(("priorityDelta", decided.priority.to_string(), p.to_string()))
        }
        _ => None,
    }
}

impl PolicyRuntime {
    /// After `decided` was accepted: queues the shadow runs of its bindings that carry a
    /// shadow sampling this order. Returns at once; never fails the order.
    pub fn shadow_after(self: &Arc<Self>, ctx: &OrderContext, decided: &Decided) {
        let set = self.snapshot();
        let bucket = sample_bucket(&decided.order_id);
        for hook in Hook::ALL {
            let stable = set.binding(&ctx.tenant, hook);
            let (Some(shadow), Some(revision)) = (&stable.shadow, stable.revision) else {
                continue;
            };
            if bucket >= shadow.permille {
                continue;
            }
            let key = (ctx.tenant.clone(), hook, revision);
            let candidate = shadow.binding.component.id();
            let Ok(slot) = self.shadows().slots.clone().try_acquire_owned() else {
                self.shadows()
                    .with_report(&key, &candidate, |r| r.skipped += 1);
                continue;
            };
            let (runtime, ctx, decided) = (self.clone(), ctx.clone(), decided.clone());
            let binding: Arc<Binding> = shadow_binding(shadow);
            tokio::task::spawn_blocking(move || {
                let _slot = slot;
                let outcome = runtime.replay_call(
                    &binding.component,
                    binding.config.clone(),
                    binding.limits,
                    &ctx,
                    hook,
                );
                let lab = runtime.shadows();
                lab.with_report(&key, &candidate, |report| {
                    report.runs += 1;
                    let differs = match &outcome {
                        Ok(outcome) => compare(hook, &decided, &outcome.output),
                        Err(fault) => Some((
                            "candidateError",
                            "decided".to_owned(),
                            format!("{}: {}", fault.kind.as_str(), fault.detail),
                        )),
                    };
                    match differs {
                        None => report.agreements += 1,
                        Some((kind, actual, said)) => {
                            *report.disagreements.entry(kind.to_owned()).or_default() += 1;
                            let examples = report.examples.entry(kind.to_owned()).or_default();
                            if examples.len() < EXAMPLES {
                                examples.push(ShadowExample {
                                    order_id: decided.order_id.clone(),
                                    actual,
                                    candidate: said,
                                });
                            }
                            metrics::counter!("orderhost_shadow_disagreements_total",
                                "hook" => hook.as_str(), "kind" => kind)
                            .increment(1);
                        }
                    }
                });
            });
        }
    }
}

fn shadow_binding(shadow: &Rollout) -> Arc<Binding> {
    shadow.binding.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_buckets_are_spread_and_stable() {
        let hits = (0..10_000)
            .filter(|i| sample_bucket(&format!("order-{i}")) < 250)
            .count();
        assert!((2_300..=2_700).contains(&hits), "{hits}");
        assert_eq!(sample_bucket("x"), sample_bucket("x"));
    }
}
