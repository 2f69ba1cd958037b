//! `GET /health` (liveness plus the state of each dependency) and `GET /health/ready`
//! (503 until migrations ran and every dependency answers).

use std::{
    collections::BTreeMap,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use axum::{extract::State, http::StatusCode};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Json;
use crate::state::AppState;

/// How long a dependency may take to answer a health probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The health report.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    /// `ok`, `degraded` (a dependency is down) or `starting` (migrations not run yet).
    pub status: &'static str,
    /// Service version.
    pub version: &'static str,
    /// Database backend in use (`sqlite` or `postgres`).
    pub database_backend: &'static str,
    /// One entry per dependency.
    pub checks: BTreeMap<&'static str, Check>,
    /// The policy runtime.
    pub policy: PolicyHealth,
    /// Jobs waiting or being processed (`null` when the queue cannot be read).
    pub queue_depth: Option<i64>,
    /// The order queue.
    pub queue: QueueHealth,
}

/// State of the order queue.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueHealth {
    /// `database` or `redis`.
    pub backend: &'static str,
    /// Jobs waiting per priority (keys are priorities); `null` when the queue cannot be
    /// read (Redis down).
    pub waiting: Option<BTreeMap<i64, i64>>,
    /// Jobs claimed by a worker and not settled yet.
    pub in_flight: Option<i64>,
    /// Jobs in the dead-letter queue.
    pub dead_letters: Option<i64>,
    /// Redis mode: accepted orders not handed to Redis yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbox: Option<OutboxHealth>,
}

/// The outbox (Redis mode).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboxHealth {
    /// Rows not pushed yet (`null` when the database cannot be read).
    pub unsent: Option<i64>,
    /// Age of the oldest unsent row in ms (0 when empty).
    pub lag_ms: Option<i64>,
}

/// State of the policy runtime.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyHealth {
    /// Generation of the active binding set.
    pub generation: u64,
    /// Registered components (built-ins included).
    pub components: usize,
}

/// The state of one dependency.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// `up` or `down`.
    pub status: &'static str,
    /// Round-trip time of the probe in milliseconds.
    pub latency_ms: f64,
    /// Why it is down (no secrets: connection strings are never included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
}

async fn probe<F, E>(fut: F) -> Check
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let outcome = tokio::time::timeout(PROBE_TIMEOUT, fut).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
    };
    Check {
        status: if error.is_none() { "up" } else { "down" },
        latency_ms,
        error,
    }
}

async fn report(state: &AppState) -> HealthReport {
    // Side by side: with a dependency down each part waits up to PROBE_TIMEOUT, and the
    // whole report must stay within one such wait (compose and nginx probe with timeouts).
    let redis = async {
        match &state.redis {
            Some(client) => {
                let client = client.clone();
                Some(
                    probe(async move {
                        let mut conn = client.get_multiplexed_async_connection().await?;
                        redis::cmd("PING")
                            .query_async::<String>(&mut conn)
                            .await
                            .map(|_| ())
                    })
                    .await,
                )
            }
            None => None,
        }
    };
    let (database, redis, queue) =
        tokio::join!(probe(state.store.ping()), redis, queue_health(state));
    let mut checks = BTreeMap::new();
    checks.insert("database", database);
    if let Some(redis) = redis {
        checks.insert("redis", redis);
    }
    let all_up = checks.values().all(|c| c.status == "up");
    let status = if !state.ready.load(Ordering::Acquire) {
        "starting"
    } else if all_up {
        "ok"
    } else {
        "degraded"
    };
    HealthReport {
        status,
        version: env!("CARGO_PKG_VERSION"),
        database_backend: state.store.backend(),
        checks,
        queue_depth: queue
            .waiting
            .as_ref()
            .zip(queue.in_flight)
            .map(|(waiting, in_flight)| waiting.values().sum::<i64>() + in_flight),
        queue,
        policy: PolicyHealth {
            generation: state.policy.snapshot().generation,
            components: state.policy.registry().all().len(),
        },
    }
}

/// The queue as `/health` reports it: waiting per priority, in flight, dead letters and,
/// in Redis mode, the outbox (the operator console shows the same).
pub(crate) async fn queue_health(state: &AppState) -> QueueHealth {
    let backlog = async {
        match state.relay {
            Some(_) => {
                tokio::time::timeout(PROBE_TIMEOUT, crate::queue::outbox::backlog(&state.store))
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            None => None,
        }
    };
    let (depth, backlog) = tokio::join!(
        tokio::time::timeout(PROBE_TIMEOUT, state.queue.depth()),
        backlog
    );
    let depth = depth.ok().and_then(Result::ok);
    let outbox = match state.relay {
        Some(_) => {
            let now = state.clock.now_ms();
            Some(OutboxHealth {
                unsent: backlog.map(|(n, _)| n),
                lag_ms: backlog.map(|(_, oldest)| oldest.map_or(0, |t| (now - t).max(0))),
            })
        }
        None => None,
    };
    QueueHealth {
        backend: state.queue.kind().as_str(),
        waiting: depth.as_ref().map(|d| d.waiting.clone()),
        in_flight: depth.as_ref().map(|d| d.in_flight),
        dead_letters: depth.as_ref().map(|d| d.dead),
        outbox,
    }
}

/// Liveness: 200 while the process serves, with the state of each dependency.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = HealthReport)))]
async fn health(State(state): State<AppState>) -> Json<HealthReport> {
    Json(report(&state).await)
}

/// Readiness: 200 when migrations ran and every dependency answers, 503 otherwise.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, body = HealthReport), (status = 503, body = HealthReport)))]
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<HealthReport>) {
    let report = report(&state).await;
    let code = if report.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report))
}
