//! The `/auth` routes and the refresh-token store.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, FromRequestParts, State},
    http::{StatusCode, request::Parts},
};
use axum_extra::extract::{
    CookieJar,
    cookie::{Cookie, SameSite},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    ACCESS_COOKIE, AuthUser, REFRESH_COOKIE, password,
    tokens::{Claims, hash_refresh_token, new_refresh_token},
};
use crate::{
    auth::Role,
    http::{
        error::{ApiError, ErrorEnvelope},
        extract::Json,
    },
    state::AppState,
    store::{Store, WritePool as _},
    tenants,
    text::FieldError,
    users::{self, DisplayName, Email, UserRow, UserView},
    with_pool,
};

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(profile))
}

/// Path the refresh cookie is sent to: only the auth routes ever see it.
const REFRESH_COOKIE_PATH: &str = "/auth";

/// Body of `POST /auth/register`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    /// Email, the login name within the tenant.
    pub email: String,
    /// Password, 8 to 128 characters.
    pub password: String,
    /// Display name, optional (1–100 characters, one line), as the original service's
    /// clients send it.
    pub name: Option<String>,
    /// Tenant slug; the default tenant when absent.
    pub tenant: Option<String>,
}

/// Body of `POST /auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginRequest {
    /// Email.
    pub email: String,
    /// Password.
    pub password: String,
    /// Tenant slug; the default tenant when absent.
    pub tenant: Option<String>,
}

/// A new session: the access token for Bearer clients (browsers use the cookies).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionResponse {
    /// JWT to send as `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The signed-in user.
    pub user: UserView,
}

/// The client address used for throttling: the socket peer, or the first
/// `X-Forwarded-For` hop when the service is configured to trust its proxy.
pub struct ClientIp(pub String);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.config.trust_forwarded_for
            && let Some(first) = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        {
            return Ok(Self(first.to_owned()));
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string())
            .unwrap_or_else(|| "unknown".to_owned());
        Ok(Self(peer))
    }
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
        "email or password is wrong",
    )
}

/// Create an account (role `customer`).
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = UserView),
              (status = 404, description = "unknown tenant", body = ErrorEnvelope),
              (status = 409, description = "email taken", body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
async fn register(
    State(state): State<AppState>,
    Json(body): Json<RegisterRequest>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let email = Email::parse(&body.email)?;
    let name = DisplayName::parse_optional(body.name.as_deref())?;
    check_password_shape(&body.password)?;
    let tenant_id = tenants::resolve(&state.store, body.tenant.as_deref()).await?;
    let hash = password::hash(body.password)
        .await
        .map_err(ApiError::internal)?;
    let user = users::create(
        &state.store,
        &tenant_id,
        &email,
        name.as_ref(),
        &hash,
        Role::Customer,
        state.clock.now_ms(),
    )
    .await?;
    // The rest of this request's lines (and its `request finished`) name the new account.
    let span = tracing::Span::current();
    span.record("tenant", tenant_id.as_str());
    span.record("user", user.id.as_str());
    tracing::info!(user = %user.id, tenant = %user.tenant_slug, "user registered");
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Length bounds of a new password.
pub fn check_password_shape(password: &str) -> Result<(), FieldError> {
    let len = password.chars().count();
    if len < password::MIN_PASSWORD_LEN {
        return Err(FieldError::new(
            "password",
            format!("at least {} characters", password::MIN_PASSWORD_LEN),
        ));
    }
    if len > password::MAX_PASSWORD_LEN {
        return Err(FieldError::new(
            "password",
            format!("at most {} characters", password::MAX_PASSWORD_LEN),
        ));
    }
    Ok(())
}

/// Sign in: sets the `access_token` and `refresh_token` cookies and returns the access
/// token for Bearer clients. Throttled per account and per IP (429 with `Retry-After`).
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = SessionResponse),
              (status = 401, body = ErrorEnvelope),
              (status = 429, body = ErrorEnvelope)))]
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    Json(body): Json<LoginRequest>,
) -> Result<(CookieJar, Json<SessionResponse>), ApiError> {
    let tenant_id = tenants::resolve(&state.store, body.tenant.as_deref()).await?;
    // The same normalization as at registration, so `ｄｕｐ@x.io` signs in as `dup@x.io`;
    // an address that cannot be one is simply an unknown account.
    let email = Email::parse(&body.email)
        .map(|e| e.as_str().to_owned())
        .unwrap_or_else(|_| body.email.trim().to_lowercase());
    let account = format!("{tenant_id}:{email}");
    let now = state.clock.now_ms();
    if let Err(secs) = state.auth.throttle.check(&account, &ip, now) {
        tracing::warn!(%ip, "login throttled");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_ATTEMPTS",
            "too many failed sign-ins; wait before trying again",
        )
        .with_retry_after(secs));
    }
    let user = users::find_by_email(&state.store, &tenant_id, &email).await?;
    let plausible = body.password.chars().count() <= password::MAX_PASSWORD_LEN;
    let verified = plausible
        && password::verify(
            body.password,
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await
        .map_err(ApiError::internal)?;
    let user = match user {
        Some(user) if verified => user,
        _ => {
            state.auth.throttle.record_failure(&account, &ip, now);
            tracing::info!(%ip, "failed sign-in");
            return Err(invalid_credentials());
        }
    };
    state.auth.throttle.clear_account(&account);
    // Signed in: the rest of this request's lines name the account.
    let span = tracing::Span::current();
    span.record("tenant", user.tenant_id.as_str());
    span.record("user", user.id.as_str());
    let (jar, session) = start_session(&state, jar, &user).await?;
    tracing::info!(user = %user.id, "signed in");
    Ok((jar, Json(session)))
}

/// Inserts a refresh token row (a macro: the executor is a pool or a transaction of
/// either backend).
macro_rules! insert_refresh {
    ($executor:expr, $user:expr, $family:expr, $hash:expr, $expires_at:expr, $now:expr) => {
        sqlx::query(
            "insert into refresh_tokens (id, tenant_id, user_id, family_id, token_hash, expires_at, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&$user.tenant_id)
        .bind(&$user.id)
        .bind($family)
        .bind($hash)
        .bind($expires_at)
        .bind($now)
        .execute($executor)
        .await
        .map(|_| ())
    };
}

/// Issues an access token and a refresh token of a new family, and puts both in cookies.
async fn start_session(
    state: &AppState,
    jar: CookieJar,
    user: &UserRow,
) -> Result<(CookieJar, SessionResponse), ApiError> {
    let now = state.clock.now_ms();
    let family = uuid::Uuid::now_v7().to_string();
    let refresh = new_refresh_token();
    let expires_at = now + state.auth.refresh_ttl_secs * 1000;
    let hash = hash_refresh_token(&refresh);
    with_pool!(&state.store, pool => insert_refresh!(pool, user, &family, &hash, expires_at, now))?;
    session(state, jar, user, refresh, now)
}

/// Puts an access token for `user` and the refresh token `refresh` in cookies.
fn session(
    state: &AppState,
    jar: CookieJar,
    user: &UserRow,
    refresh: String,
    now: i64,
) -> Result<(CookieJar, SessionResponse), ApiError> {
    let (jar, session) = with_access_token(state, jar, user, now)?;
    let jar = jar.add(cookie(
        REFRESH_COOKIE,
        refresh,
        REFRESH_COOKIE_PATH,
        state.auth.refresh_ttl_secs,
        state.auth.secure_cookies,
    ));
    Ok((jar, session))
}

fn with_access_token(
    state: &AppState,
    jar: CookieJar,
    user: &UserRow,
    now_ms: i64,
) -> Result<(CookieJar, SessionResponse), ApiError> {
    let iat = now_ms / 1000;
    let claims = Claims {
        sub: user.id.clone(),
        tenant: user.tenant_id.clone(),
        role: user.role(),
        vip: user.vip,
        iat,
        exp: iat + state.auth.access_ttl_secs,
    };
    let access = state.auth.keys.sign(&claims).map_err(ApiError::internal)?;
    let jar = jar.add(cookie(
        ACCESS_COOKIE,
        access.clone(),
        "/",
        state.auth.access_ttl_secs,
        state.auth.secure_cookies,
    ));
    Ok((
        jar,
        SessionResponse {
            access_token: access,
            token_type: "Bearer",
            expires_in: state.auth.access_ttl_secs,
            user: user.clone().into(),
        },
    ))
}

fn cookie(
    name: &'static str,
    value: String,
    path: &'static str,
    ttl_secs: i64,
    secure: bool,
) -> Cookie<'static> {
    Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .path(path)
        .max_age(time::Duration::seconds(ttl_secs))
        .build()
}

fn clear_cookies(jar: CookieJar) -> CookieJar {
    jar.remove(Cookie::build(ACCESS_COOKIE).path("/"))
        .remove(Cookie::build(REFRESH_COOKIE).path(REFRESH_COOKIE_PATH))
}

/// A stored refresh token.
#[derive(Debug, sqlx::FromRow)]
struct RefreshRow {
    id: String,
    user_id: String,
    family_id: String,
    expires_at: i64,
    rotated_at: Option<i64>,
    revoked_at: Option<i64>,
    revoked_reason: Option<String>,
}

/// How long a rotated refresh token still yields its successor instead of counting as
/// reuse: two tabs refreshing at once, or a client retrying a refresh whose answer it
/// lost, must not end the session. Outside the window, reuse revokes the family.
pub const ROTATION_GRACE_MS: i64 = 30_000;

/// Why a family was revoked (stored, so a later refresh is reported as what it is).
const REVOKED_LOGOUT: &str = "logout";
const REVOKED_REUSE: &str = "reuse";

async fn find_refresh(store: &Store, hash: &str) -> Result<Option<RefreshRow>, sqlx::Error> {
    with_pool!(store, pool => sqlx::query_as::<_, RefreshRow>(
        "select id, user_id, family_id, expires_at, rotated_at, revoked_at, revoked_reason \
         from refresh_tokens where token_hash = $1",
    )
    .bind(hash)
    .fetch_optional(pool)
    .await)
}

async fn revoke_family(
    store: &Store,
    family: &str,
    reason: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    with_pool!(store, pool => sqlx::query(
        "update refresh_tokens set revoked_at = $1, revoked_reason = $2, updated_at = $1 \
         where family_id = $3 and revoked_at is null",
    )
    .bind(now)
    .bind(reason)
    .bind(family)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))
}

/// Rotates `row` to `successor` in one write transaction: marks it rotated (guarded:
/// `false` when another request rotated or revoked it first — on PostgreSQL that request
/// holds the row until it commits, so its successor is visible once this returns) and
/// inserts the successor in the same family.
async fn rotate(
    store: &Store,
    row: &RefreshRow,
    user: &UserRow,
    successor_hash: &str,
    expires_at: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    with_pool!(store, pool => {
        let mut tx = pool.begin_write().await?;
        let marked = sqlx::query(
            "update refresh_tokens set rotated_at = $1, updated_at = $1 \
             where id = $2 and rotated_at is null and revoked_at is null",
        )
        .bind(now)
        .bind(&row.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if marked != 1 {
            return Ok(false);
        }
        insert_refresh!(&mut *tx, user, &row.family_id, successor_hash, expires_at, now)?;
        tx.commit().await?;
        Ok(true)
    })
}

fn refresh_refused(jar: CookieJar, code: &'static str, message: &str) -> (CookieJar, ApiError) {
    (
        clear_cookies(jar),
        ApiError::new(StatusCode::UNAUTHORIZED, code, message),
    )
}

/// Exchange the `refresh_token` cookie for a new access token and a new refresh token.
/// Presenting a token that was rotated more than [`ROTATION_GRACE_MS`] ago revokes its
/// whole family (a stolen token and its legitimate twin both stop working); within the
/// window it yields the same successor as the first refresh did.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth",
    responses((status = 200, body = SessionResponse), (status = 401, body = ErrorEnvelope)))]
async fn refresh(
    State(state): State<AppState>,
    jar: CookieJar,
) -> Result<(CookieJar, Json<SessionResponse>), (CookieJar, ApiError)> {
    let Some(token) = jar.get(REFRESH_COOKIE).map(|c| c.value().to_owned()) else {
        return Err(refresh_refused(
            jar,
            "UNAUTHENTICATED",
            "no refresh_token cookie",
        ));
    };
    match refresh_session(&state, &token).await {
        Ok((user, refresh, now)) => match session(&state, jar.clone(), &user, refresh, now) {
            Ok((jar, session)) => Ok((jar, Json(session))),
            Err(e) => Err((jar, e)),
        },
        Err(Refused::Client(code, message)) => Err(refresh_refused(jar, code, message)),
        Err(Refused::Server(e)) => Err((jar, e)),
    }
}

/// Why a refresh gave no session.
enum Refused {
    /// The client's token is no good: 401 with this code, cookies cleared.
    Client(&'static str, &'static str),
    /// The service failed.
    Server(ApiError),
}

impl From<sqlx::Error> for Refused {
    fn from(e: sqlx::Error) -> Self {
        Self::Server(e.into())
    }
}

/// The stored row of a presented refresh token.
async fn stored_refresh(state: &AppState, token: &str) -> Result<RefreshRow, Refused> {
    find_refresh(&state.store, &hash_refresh_token(token))
        .await?
        .ok_or(Refused::Client(
            "INVALID_REFRESH_TOKEN",
            "unknown refresh token",
        ))
}

/// The user and the refresh token a valid `token` is exchanged for.
async fn refresh_session(state: &AppState, token: &str) -> Result<(UserRow, String, i64), Refused> {
    let now = state.clock.now_ms();
    let row = stored_refresh(state, token).await?;
    if row.revoked_at.is_some() {
        return Err(revoked(&row));
    }
    if row.expires_at <= now {
        return Err(Refused::Client(
            "REFRESH_TOKEN_EXPIRED",
            "the refresh token has expired; sign in again",
        ));
    }
    let user = users::find_by_id(&state.store, &row.user_id)
        .await?
        .ok_or(Refused::Client(
            "INVALID_REFRESH_TOKEN",
            "the account no longer exists",
        ))?;
    let successor = state.auth.keys.successor_refresh_token(token);
    let rotated_now = match row.rotated_at {
        None => {
            let expires_at = now + state.auth.refresh_ttl_secs * 1000;
            let hash = hash_refresh_token(&successor);
            rotate(&state.store, &row, &user, &hash, expires_at, now).await?
        }
        Some(_) => false,
    };
    if rotated_now {
        return Ok((user, successor, now));
    }
    // Rotated already — by a concurrent request a moment ago, or long before.
    let row = stored_refresh(state, token).await?;
    match row.rotated_at {
        _ if row.revoked_at.is_some() => Err(revoked(&row)),
        Some(at) if now - at <= ROTATION_GRACE_MS => {
            let successor = current_successor(state, successor, now).await?;
            tracing::info!(user = %row.user_id, "refresh within the rotation grace window: same successor");
            Ok((user, successor, now))
        }
        _ => {
            let revoked = revoke_family(&state.store, &row.family_id, REVOKED_REUSE, now).await?;
            tracing::warn!(user = %row.user_id, revoked, "refresh token reuse: family revoked");
            Err(Refused::Client(
                "REFRESH_TOKEN_REUSED",
                "this refresh token was already used; every session of its family is revoked, sign in again",
            ))
        }
    }
}

/// The live end of a rotation chain starting at `successor`: a successor that was itself
/// rotated within the grace window hands on to its own (a few steps at most).
async fn current_successor(
    state: &AppState,
    mut successor: String,
    now: i64,
) -> Result<String, Refused> {
    for _ in 0..4 {
        let Some(row) = find_refresh(&state.store, &hash_refresh_token(&successor)).await? else {
            // Only when the secret changed since (a development restart).
            return Err(Refused::Client(
                "INVALID_REFRESH_TOKEN",
                "unknown refresh token",
            ));
        };
        if row.revoked_at.is_some() {
            return Err(revoked(&row));
        }
        match row.rotated_at {
            None => return Ok(successor),
            Some(at) if now - at <= ROTATION_GRACE_MS => {
                successor = state.auth.keys.successor_refresh_token(&successor);
            }
            Some(_) => break,
        }
    }
    Err(Refused::Client(
        "REFRESH_TOKEN_REUSED",
        "this refresh token was already used; sign in again",
    ))
}

/// A refresh with a token of a revoked family, reported as what it is.
fn revoked(row: &RefreshRow) -> Refused {
    if row.revoked_reason.as_deref() == Some(REVOKED_LOGOUT) {
        tracing::info!(user = %row.user_id, "refresh after sign-out refused");
        Refused::Client(
            "SESSION_ENDED",
            "this session was signed out; sign in again",
        )
    } else {
        tracing::info!(user = %row.user_id, "refresh with a token of a revoked family refused");
        Refused::Client(
            "REFRESH_TOKEN_REUSED",
            "this refresh token's family was revoked after a reuse; sign in again",
        )
    }
}

/// Sign out: revokes the refresh token's family and clears both cookies. Works without a
/// valid access token so an expired session can still be closed.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", responses((status = 204)))]
async fn logout(
    State(state): State<AppState>,
    jar: CookieJar,
) -> Result<(CookieJar, StatusCode), ApiError> {
    if let Some(token) = jar.get(REFRESH_COOKIE).map(|c| c.value().to_owned())
        && let Some(row) = find_refresh(&state.store, &hash_refresh_token(&token)).await?
    {
        revoke_family(
            &state.store,
            &row.family_id,
            REVOKED_LOGOUT,
            state.clock.now_ms(),
        )
        .await?;
        tracing::info!(user = %row.user_id, "signed out");
    }
    Ok((clear_cookies(jar), StatusCode::NO_CONTENT))
}

/// The signed-in user.
#[utoipa::path(get, path = "/auth/profile", tag = "auth",
    responses((status = 200, body = UserView), (status = 401, body = ErrorEnvelope)))]
async fn profile(
    State(state): State<AppState>,
    actor: AuthUser,
) -> Result<Json<UserView>, ApiError> {
    let user = users::find_by_id(&state.store, &actor.user_id)
        .await?
        .filter(|u| u.tenant_id == actor.tenant_id)
        .ok_or_else(|| ApiError::unauthenticated("the account no longer exists"))?;
    Ok(Json(user.into()))
}
