//! Users: the account rows, their lookups, and the admin API (list, get, update, delete,
//! VIP promotion). Every query is scoped by tenant: an admin never sees or changes another
//! tenant's users — such a request answers 404, not 403, so ids and emails do not leak.

mod routes;

use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    auth::Role,
    clock::rfc3339,
    http::error::ApiError,
    store::{Store, is_unique_violation},
    with_pool,
};

pub use routes::router;

/// An email address, trimmed and lower-cased: the login name within a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Parses an address: one `@`, a non-empty local part, a dotted domain, ≤ 254 bytes.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let email = raw.trim().to_lowercase();
        let valid = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && match email.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                }
                None => false,
            };
        if valid {
            Ok(Self(email))
        } else {
            Err(ApiError::validation("email", "not a valid email address"))
        }
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user as stored, joined with its tenant's slug.
#[derive(Clone, sqlx::FromRow)]
pub struct UserRow {
    /// Id.
    pub id: String,
    /// Tenant id.
    pub tenant_id: String,
    /// Tenant slug.
    pub tenant_slug: String,
    /// Email (lower case).
    pub email: String,
    /// argon2id PHC string. Never leaves the service.
    pub password_hash: String,
    /// Role as stored.
    pub role: String,
    /// VIP customer.
    pub vip: bool,
    /// Creation time, epoch ms.
    pub created_at: i64,
    /// Last change, epoch ms.
    pub updated_at: i64,
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is left out on purpose: debug output ends up in logs.
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("tenant", &self.tenant_slug)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("vip", &self.vip)
            .finish_non_exhaustive()
    }
}

impl UserRow {
    /// The role; an unknown stored value reads as the least privileged.
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Customer)
    }
}

/// A user as shown by the API (never the password hash).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    /// Id.
    pub id: String,
    /// Email.
    pub email: String,
    /// Tenant slug.
    pub tenant: String,
    /// Role.
    pub role: Role,
    /// VIP customer (orders jump the queue).
    pub vip: bool,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

impl From<UserRow> for UserView {
    fn from(row: UserRow) -> Self {
        Self {
            role: row.role(),
            id: row.id,
            email: row.email,
            tenant: row.tenant_slug,
            vip: row.vip,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        }
    }
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// The tenant already has this email.
    #[error("an account with this email exists in this tenant")]
    EmailTaken,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<CreateUserError> for ApiError {
    fn from(err: CreateUserError) -> Self {
        match err {
            CreateUserError::EmailTaken => ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "EMAIL_TAKEN",
                "an account with this email exists in this tenant",
            ),
            CreateUserError::Db(e) => e.into(),
        }
    }
}

const SELECT_USER: &str = "select u.id, u.tenant_id, t.slug as tenant_slug, u.email, \
     u.password_hash, u.role, u.vip, u.created_at, u.updated_at \
     from users u join tenants t on t.id = u.tenant_id";

/// Inserts a user.
pub async fn create(
    store: &Store,
    tenant_id: &str,
    email: &Email,
    password_hash: &str,
    role: Role,
    now: i64,
) -> Result<UserRow, CreateUserError> {
    let id = uuid::Uuid::now_v7().to_string();
    let result = with_pool!(store, pool => sqlx::query(
        "insert into users (id, tenant_id, email, password_hash, role, vip, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(&id)
    .bind(tenant_id)
    .bind(email.as_str())
    .bind(password_hash)
    .bind(role.as_str())
    .bind(false)
    .bind(now)
    .execute(pool)
    .await
    .map(|_| ()));
    match result {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e, "users_tenant_email_key", "users.email") => {
            return Err(CreateUserError::EmailTaken);
        }
        Err(e) => return Err(e.into()),
    }
    find_by_id(store, &id)
        .await?
        .ok_or_else(|| CreateUserError::Db(sqlx::Error::RowNotFound))
}

/// Looks a user up by id.
pub async fn find_by_id(store: &Store, id: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = format!("{SELECT_USER} where u.id = $1");
    with_pool!(store, pool => sqlx::query_as::<_, UserRow>(&sql).bind(id).fetch_optional(pool).await)
}

/// Looks a user up by email within a tenant.
pub async fn find_by_email(
    store: &Store,
    tenant_id: &str,
    email: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = format!("{SELECT_USER} where u.tenant_id = $1 and u.email = $2");
    with_pool!(store, pool => sqlx::query_as::<_, UserRow>(&sql)
        .bind(tenant_id)
        .bind(email)
        .fetch_optional(pool)
        .await)
}

/// One page of a tenant's users, oldest first, and the tenant's user count.
pub async fn list(
    store: &Store,
    tenant_id: &str,
    limit: i64,
    offset: i64,
) -> Result<(Vec<UserRow>, i64), sqlx::Error> {
    let sql = format!(
        "{SELECT_USER} where u.tenant_id = $1 order by u.created_at, u.id limit $2 offset $3"
    );
    with_pool!(store, pool => {
        let rows = sqlx::query_as::<_, UserRow>(&sql)
            .bind(tenant_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?;
        let total: i64 = sqlx::query_scalar("select count(*) from users where tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(pool)
            .await?;
        Ok((rows, total))
    })
}

/// Sets a user's role and VIP flag; `false` when no such user exists in the tenant.
pub async fn update(
    store: &Store,
    tenant_id: &str,
    email: &str,
    role: Role,
    vip: bool,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let result = with_pool!(store, pool => sqlx::query(
        "update users set role = $1, vip = $2, updated_at = $3 where tenant_id = $4 and email = $5",
    )
    .bind(role.as_str())
    .bind(vip)
    .bind(now)
    .bind(tenant_id)
    .bind(email)
    .execute(pool)
    .await?
    .rows_affected());
    Ok(result == 1)
}

/// Deletes a user (its refresh tokens go with it); `false` when there was none.
pub async fn delete(store: &Store, tenant_id: &str, email: &str) -> Result<bool, sqlx::Error> {
    let affected = with_pool!(store, pool => sqlx::query(
        "delete from users where tenant_id = $1 and email = $2",
    )
    .bind(tenant_id)
    .bind(email)
    .execute(pool)
    .await?
    .rows_affected());
    Ok(affected == 1)
}
