//! Authentication: registration, login, refresh-token rotation, logout, the profile, and
//! the extractor that turns a Bearer header or an `access_token` cookie into an
//! [`AuthUser`]. Also owns the CSRF origin check and login throttling.

pub mod csrf;
pub mod password;
mod routes;
pub mod throttle;
pub mod tokens;

use std::sync::Arc;

use axum::{extract::FromRequestParts, http::request::Parts};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{config::Config, http::error::ApiError, state::AppState};

pub use routes::{ROTATION_GRACE_MS, check_password_shape, router};

/// Name of the cookie holding the access token.
pub const ACCESS_COOKIE: &str = "access_token";
/// Name of the cookie holding the refresh token.
pub const REFRESH_COOKIE: &str = "refresh_token";

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Places and follows its own orders (the default).
    Customer,
    /// Manages its tenant: users, VIPs, catalog, bindings.
    Admin,
    /// Runs the platform: all tenants, components.
    Operator,
}

impl Role {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Admin => "admin",
            Self::Operator => "operator",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "customer" => Some(Self::Customer),
            "admin" => Some(Self::Admin),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }
}

/// Keys, lifetimes and throttling state of the auth module.
#[derive(Debug)]
pub struct AuthState {
    /// JWT keys.
    pub keys: tokens::JwtKeys,
    /// Access token lifetime in seconds.
    pub access_ttl_secs: i64,
    /// Refresh token lifetime in seconds.
    pub refresh_ttl_secs: i64,
    /// Whether cookies carry `Secure`.
    pub secure_cookies: bool,
    /// Failed-login counters.
    pub throttle: throttle::LoginThrottle,
}

impl AuthState {
    /// Builds the auth state; development without a secret gets a random one per start.
    pub fn from_config(cfg: &Config) -> Arc<Self> {
        let secret = if cfg.jwt_secret.is_empty() {
            tracing::warn!(
                "no ORDERHOST_JWT_SECRET set: using a random secret for this development run; \
                 tokens will not survive a restart"
            );
            tokens::random_secret()
        } else {
            cfg.jwt_secret.as_bytes().to_vec()
        };
        Arc::new(Self {
            keys: tokens::JwtKeys::new(&secret),
            access_ttl_secs: i64::try_from(cfg.access_token_ttl_secs).unwrap_or(900),
            refresh_ttl_secs: i64::try_from(cfg.refresh_token_ttl_secs).unwrap_or(1_209_600),
            secure_cookies: !cfg.is_development(),
            throttle: throttle::LoginThrottle::new(
                cfg.login_window_secs,
                cfg.login_max_failures,
                cfg.login_ip_max_failures,
            ),
        })
    }
}

/// The authenticated caller, from a verified access token: who it is and which tenant it
/// belongs to — nothing more. The role is deliberately not taken from the token: a token
/// lives 15 minutes, and an admin demoted in that time must lose its rights at once, so
/// every role check reads the user's row ([`AuthUser::role`]).
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// User id.
    pub user_id: String,
    /// Tenant id (a user never changes tenant).
    pub tenant_id: String,
}

impl AuthUser {
    /// The caller's role as its row says now; 401 when the account is gone.
    pub async fn role(&self, store: &crate::store::Store) -> Result<Role, ApiError> {
        crate::users::find_by_id(store, &self.user_id)
            .await?
            .filter(|u| u.tenant_id == self.tenant_id)
            .map(|u| u.role())
            .ok_or_else(|| ApiError::unauthenticated("the account no longer exists"))
    }

    /// The caller's current role, or 403 unless it is an admin or an operator.
    pub async fn require_admin(&self, store: &crate::store::Store) -> Result<Role, ApiError> {
        match self.role(store).await? {
            role @ (Role::Admin | Role::Operator) => Ok(role),
            Role::Customer => Err(ApiError::forbidden(
                "this action needs the admin or operator role",
            )),
        }
    }

    /// 403 unless the caller is an operator now.
    pub async fn require_operator(&self, store: &crate::store::Store) -> Result<(), ApiError> {
        match self.role(store).await? {
            Role::Operator => Ok(()),
            _ => Err(ApiError::forbidden("this action needs the operator role")),
        }
    }
}

/// The bearer token of a request: `Authorization: Bearer …` first, then the cookie.
pub fn access_token(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    axum_extra::extract::CookieJar::from_headers(&parts.headers)
        .get(ACCESS_COOKIE)
        .map(|c| c.value().to_owned())
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = access_token(parts).ok_or_else(|| {
            ApiError::unauthenticated(
                "sign in: send `Authorization: Bearer <token>` or the access_token cookie",
            )
        })?;
        let now_secs = state.clock.now_ms() / 1000;
        let claims = state
            .auth
            .keys
            .verify(&token, now_secs)
            .map_err(|e| match e {
                tokens::TokenError::Expired => ApiError::new(
                    axum::http::StatusCode::UNAUTHORIZED,
                    "TOKEN_EXPIRED",
                    "the access token has expired; refresh it or sign in again",
                ),
                tokens::TokenError::Invalid => ApiError::new(
                    axum::http::StatusCode::UNAUTHORIZED,
                    "INVALID_TOKEN",
                    "the access token is invalid",
                ),
            })?;
        let span = tracing::Span::current();
        span.record("user", claims.sub.as_str());
        span.record("tenant", claims.tenant.as_str());
        Ok(Self {
            user_id: claims.sub,
            tenant_id: claims.tenant,
        })
    }
}
