//! `Idempotency-Key`: the record of a request under its client's key, so a retried order
//! is answered with the first response instead of being placed twice.
//!
//! [`begin`] takes the key for a request (or replays the first response, or refuses a
//! reused or in-flight key), the order write settles it in the order's own transaction
//! ([`mark_done!`]: a 202 and its key commit together), [`finish`] records a rejection or
//! frees the key after a 5xx, and [`sweep_expired`] (run by the workers) deletes keys past
//! their lifetime. Keys are per user; this module is the only one that names the
//! `idempotency_keys` table.

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

use crate::{
    auth::AuthUser,
    http::error::ApiError,
    state::AppState,
    store::{Store, WritePool as _},
    with_pool,
};

/// The request header.
pub const HEADER: &str = "idempotency-key";

/// How long a key may stay in flight before another request with it may take over.
const STALE_IN_FLIGHT_MS: i64 = 60_000;

/// A key this request holds, with the hash of the request it was taken for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldKey {
    /// The client's key.
    pub key: String,
    /// SHA-256 of the canonical request, hex.
    pub request_hash: String,
}

/// What a request with a key does next.
#[derive(Debug)]
pub enum Begun {
    /// Run the request: it holds the key.
    Proceed(HeldKey),
    /// Answer with the first response to the same key and body.
    Replay(Response),
}

/// A key to settle as done, with the response it answers from now on (the order write
/// records it in its own transaction).
#[derive(Debug, Clone)]
pub struct Done {
    /// The client's key.
    pub key: String,
    /// The 202 response body.
    pub response_body: String,
}

/// Marks `$key` of `$tenant_id`/`$user_id` done with a 202 and `$body`, on `$executor` (a
/// macro: the executor is a transaction of either backend).
macro_rules! mark_done {
    ($executor:expr, $tenant_id:expr, $user_id:expr, $key:expr, $body:expr, $now:expr) => {
        sqlx::query(
            "update idempotency_keys set state = 'done', response_status = 202, response_body = $1, \
             updated_at = $2 where tenant_id = $3 and user_id = $4 and key = $5",
        )
        .bind($body)
        .bind($now)
        .bind($tenant_id)
        .bind($user_id)
        .bind($key)
        .execute($executor)
        .await
    };
}
pub(crate) use mark_done;

/// The stored record of a key.
#[derive(sqlx::FromRow)]
struct Stored {
    request_hash: String,
    state: String,
    response_status: Option<i32>,
    response_body: Option<String>,
    created_at: i64,
    updated_at: i64,
}

/// Takes the request's key (`headers` must hold one) for the request whose canonical
/// form is `request`: a new key is taken; the same key and request replay the first
/// response; the same key with another request is 422 `IDEMPOTENCY_KEY_REUSED`; a key
/// still in flight is 409 `IDEMPOTENCY_IN_FLIGHT` — unless its request died (in flight
/// for a minute) or its lifetime ended, when this request takes it over.
pub async fn begin(
    state: &AppState,
    actor: &AuthUser,
    headers: &HeaderMap,
    request: &[u8],
) -> Result<Begun, ApiError> {
    let key = headers
        .get(HEADER)
        .and_then(|k| k.to_str().ok())
        .filter(|k| (1..=255).contains(&k.len()))
        .ok_or_else(|| ApiError::validation("Idempotency-Key", "1-255 visible ASCII characters"))?
        .to_owned();
    let held = HeldKey {
        key,
        request_hash: hex::encode(Sha256::digest(request)),
    };
    let now = state.clock.now_ms();
    let inserted = with_pool!(&state.store, pool => sqlx::query(
        "insert into idempotency_keys (tenant_id, user_id, key, request_hash, state, created_at, updated_at) \
         values ($1, $2, $3, $4, 'in_flight', $5, $5) on conflict do nothing",
    )
    .bind(&actor.tenant_id)
    .bind(&actor.user_id)
    .bind(&held.key)
    .bind(&held.request_hash)
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected());
    if inserted == 1 {
        return Ok(Begun::Proceed(held));
    }
    let stored = with_pool!(&state.store, pool => sqlx::query_as::<_, Stored>(
        "select request_hash, state, response_status, response_body, created_at, updated_at from idempotency_keys \
         where tenant_id = $1 and user_id = $2 and key = $3",
    )
    .bind(&actor.tenant_id)
    .bind(&actor.user_id)
    .bind(&held.key)
    .fetch_optional(pool)
    .await?)
    .ok_or_else(|| ApiError::unavailable("idempotency key vanished while being read"))?;
    if stored.created_at < now - state.config.idempotency_ttl_ms() {
        // Expired (the sweep has not removed it yet): the key is free again, with a new
        // lifetime from now.
        return take_over(&state.store, actor, held, now, now, &stored).await;
    }
    if stored.request_hash != held.request_hash {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "IDEMPOTENCY_KEY_REUSED",
            "this Idempotency-Key was used with a different request body",
        ));
    }
    match (
        stored.state.as_str(),
        stored.response_status,
        stored.response_body.as_ref(),
    ) {
        ("done", Some(status), Some(body)) => {
            let status = StatusCode::from_u16(u16::try_from(status).unwrap_or(500))
                .unwrap_or(StatusCode::OK);
            Ok(Begun::Replay(stored_response(status, body.clone())))
        }
        ("in_flight", _, _) if stored.updated_at < now - STALE_IN_FLIGHT_MS => {
            // The request that took the key died before settling it (a crash, a lost
            // connection to the database): take the key over, keeping its lifetime.
            take_over(&state.store, actor, held, stored.created_at, now, &stored).await
        }
        _ => Err(in_flight()),
    }
}

/// Takes a key over for this request (in flight, with `created_at` as its start), under a
/// guard on the row as it was read: of two requests taking the same key over, only one
/// proceeds; the other is told the key is in flight.
async fn take_over(
    store: &Store,
    actor: &AuthUser,
    held: HeldKey,
    created_at: i64,
    now: i64,
    seen: &Stored,
) -> Result<Begun, ApiError> {
    let taken = with_pool!(store, pool => sqlx::query(
        "update idempotency_keys set request_hash = $1, state = 'in_flight', response_status = null, \
         response_body = null, created_at = $2, updated_at = $3 \
         where tenant_id = $4 and user_id = $5 and key = $6 and state = $7 and created_at = $8 \
         and updated_at = $9",
    )
    .bind(&held.request_hash)
    .bind(created_at)
    .bind(now)
    .bind(&actor.tenant_id)
    .bind(&actor.user_id)
    .bind(&held.key)
    .bind(&seen.state)
    .bind(seen.created_at)
    .bind(seen.updated_at)
    .execute(pool)
    .await?
    .rows_affected());
    if taken == 1 {
        Ok(Begun::Proceed(held))
    } else {
        Err(in_flight())
    }
}

fn in_flight() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "IDEMPOTENCY_IN_FLIGHT",
        "a request with this Idempotency-Key is still being processed; retry shortly",
    )
    .with_retry_after(1)
}

fn stored_response(status: StatusCode, body: String) -> Response {
    let location = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_str().map(|id| format!("/order/{id}")));
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if status == StatusCode::ACCEPTED
        && let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok())
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Settles a key whose request ended in `error`: a rejection (4xx) is recorded as the
/// key's answer; after a 5xx the key is freed so the client's retry runs again.
pub async fn finish(state: &AppState, actor: &AuthUser, held: &HeldKey, error: &ApiError) {
    let now = state.clock.now_ms();
    let result = if error.status.is_client_error() {
        let body = serde_json::json!({ "error": { "code": error.code, "message": error.message, "details": error.details } });
        with_pool!(&state.store, pool => sqlx::query(
            "update idempotency_keys set state = 'done', response_status = $1, response_body = $2, updated_at = $3 \
             where tenant_id = $4 and user_id = $5 and key = $6",
        )
        .bind(i32::from(error.status.as_u16()))
        .bind(body.to_string())
        .bind(now)
        .bind(&actor.tenant_id)
        .bind(&actor.user_id)
        .bind(&held.key)
        .execute(pool)
        .await
        .map(|_| ()))
    } else {
        with_pool!(&state.store, pool => sqlx::query(
            "delete from idempotency_keys where tenant_id = $1 and user_id = $2 and key = $3",
        )
        .bind(&actor.tenant_id)
        .bind(&actor.user_id)
        .bind(&held.key)
        .execute(pool)
        .await
        .map(|_| ()))
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "could not settle an idempotency key");
    }
}

/// Deletes the keys older than `ttl_ms` at `now` (a key in flight that old belongs to a
/// request that died long ago); returns how many went.
pub async fn sweep_expired(store: &Store, now: i64, ttl_ms: i64) -> Result<u64, sqlx::Error> {
    with_pool!(store, pool => {
        let _turn = pool.write_turn().await;
        sqlx::query("delete from idempotency_keys where created_at < $1")
            .bind(now - ttl_ms)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })
}
