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
    app::AppState,
    auth::Role,
    http::{
        error::{ApiError, ErrorEnvelope},
        extract::Json,
    },
    store::Store,
    tenants,
    users::{self, Email, UserRow, UserView},
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
    check_password_shape(&body.password)?;
    let tenant_id = tenants::resolve(&state.store, body.tenant.as_deref()).await?;
    let hash = password::hash(body.password)
        .await
        .map_err(ApiError::internal)?;
    let user = users::create(
        &state.store,
        &tenant_id,
        &email,
        &hash,
        Role::Customer,
        state.clock.now_ms(),
    )
    .await?;
    tracing::info!(user = %user.id, tenant = %user.tenant_slug, "user registered");
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Length bounds of a new password.
pub fn check_password_shape(password: &str) -> Result<(), ApiError> {
    let len = password.chars().count();
    if len < password::MIN_PASSWORD_LEN {
        return Err(ApiError::validation(
            "password",
            format!("at least {} characters", password::MIN_PASSWORD_LEN),
        ));
    }
    if len > password::MAX_PASSWORD_LEN {
        return Err(ApiError::validation(
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
    let email = body.email.trim().to_lowercase();
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
    let (jar, session) = start_session(&state, jar, &user, None).await?;
    tracing::info!(user = %user.id, "signed in");
    Ok((jar, Json(session)))
}

/// Issues an access token and a refresh token (a new family unless one is given), and
/// puts both in cookies.
async fn start_session(
    state: &AppState,
    jar: CookieJar,
    user: &UserRow,
    family: Option<String>,
) -> Result<(CookieJar, SessionResponse), ApiError> {
    let now = state.clock.now_ms();
    let family = family.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let refresh = new_refresh_token();
    let expires_at = now + state.auth.refresh_ttl_secs * 1000;
    insert_refresh(
        &state.store,
        user,
        &family,
        &hash_refresh_token(&refresh),
        expires_at,
        now,
    )
    .await?;
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
}

async fn insert_refresh(
    store: &Store,
    user: &UserRow,
    family: &str,
    hash: &str,
    expires_at: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    with_pool!(store, pool => sqlx::query(
        "insert into refresh_tokens (id, tenant_id, user_id, family_id, token_hash, expires_at, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(&user.tenant_id)
    .bind(&user.id)
    .bind(family)
    .bind(hash)
    .bind(expires_at)
    .bind(now)
    .execute(pool)
    .await
    .map(|_| ()))
}

async fn find_refresh(store: &Store, hash: &str) -> Result<Option<RefreshRow>, sqlx::Error> {
    with_pool!(store, pool => sqlx::query_as::<_, RefreshRow>(
        "select id, user_id, family_id, expires_at, rotated_at, revoked_at from refresh_tokens where token_hash = $1",
    )
    .bind(hash)
    .fetch_optional(pool)
    .await)
}

async fn revoke_family(store: &Store, family: &str, now: i64) -> Result<u64, sqlx::Error> {
    with_pool!(store, pool => sqlx::query(
        "update refresh_tokens set revoked_at = $1, updated_at = $1 where family_id = $2 and revoked_at is null",
    )
    .bind(now)
    .bind(family)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))
}

/// Marks a token rotated; `false` when it was rotated or revoked concurrently.
async fn mark_rotated(store: &Store, id: &str, now: i64) -> Result<bool, sqlx::Error> {
    with_pool!(store, pool => sqlx::query(
        "update refresh_tokens set rotated_at = $1, updated_at = $1 \
         where id = $2 and rotated_at is null and revoked_at is null",
    )
    .bind(now)
    .bind(id)
    .execute(pool)
    .await
    .map(|r| r.rows_affected() == 1))
}

fn refresh_refused(jar: CookieJar, code: &'static str, message: &str) -> (CookieJar, ApiError) {
    (
        clear_cookies(jar),
        ApiError::new(StatusCode::UNAUTHORIZED, code, message),
    )
}

/// Exchange the `refresh_token` cookie for a new access token and a new refresh token.
/// Presenting a token that was already rotated revokes its whole family (a stolen token
/// and its legitimate twin both stop working).
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
    let now = state.clock.now_ms();
    let row = match find_refresh(&state.store, &hash_refresh_token(&token)).await {
        Ok(Some(row)) => row,
        Ok(None) => {
            return Err(refresh_refused(
                jar,
                "INVALID_REFRESH_TOKEN",
                "unknown refresh token",
            ));
        }
        Err(e) => return Err((jar, e.into())),
    };
    if row.revoked_at.is_some() || row.rotated_at.is_some() {
        return Err(reuse_detected(&state, jar, &row, now).await);
    }
    if row.expires_at <= now {
        return Err(refresh_refused(
            jar,
            "REFRESH_TOKEN_EXPIRED",
            "the refresh token has expired; sign in again",
        ));
    }
    match mark_rotated(&state.store, &row.id, now).await {
        Ok(true) => {}
        // Lost a race with another use of the same token: that is reuse too.
        Ok(false) => return Err(reuse_detected(&state, jar, &row, now).await),
        Err(e) => return Err((jar, e.into())),
    }
    let user = match users::find_by_id(&state.store, &row.user_id).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            return Err(refresh_refused(
                jar,
                "INVALID_REFRESH_TOKEN",
                "the account no longer exists",
            ));
        }
        Err(e) => return Err((jar, e.into())),
    };
    match start_session(&state, jar.clone(), &user, Some(row.family_id)).await {
        Ok((jar, session)) => Ok((jar, Json(session))),
        Err(e) => Err((jar, e)),
    }
}

async fn reuse_detected(
    state: &AppState,
    jar: CookieJar,
    row: &RefreshRow,
    now: i64,
) -> (CookieJar, ApiError) {
    match revoke_family(&state.store, &row.family_id, now).await {
        Ok(n) => {
            tracing::warn!(user = %row.user_id, revoked = n, "refresh token reuse: family revoked")
        }
        Err(e) => return (jar, e.into()),
    }
    refresh_refused(
        jar,
        "REFRESH_TOKEN_REUSED",
        "this refresh token was already used; every session of its family is revoked, sign in again",
    )
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
        revoke_family(&state.store, &row.family_id, state.clock.now_ms()).await?;
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
