//! Users: the account rows, their lookups, and the admin API (list, get, update, delete,
//! VIP promotion, customer tags). Every query is scoped by tenant: an admin never sees or
//! changes another tenant's users — such a request answers 404, not 403, so ids and emails
//! do not leak.

mod routes;

use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    auth::Role,
    clock::rfc3339,
    http::error::ApiError,
    store::{Store, TextList, WritePool as _, is_unique_violation},
    tags::Tags,
    text::FieldError,
    with_pool,
};

pub use routes::router;

/// An email address, trimmed and lower-cased: the login name within a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Parses an address: one `@`, a non-empty local part, a dotted domain, ≤ 254 bytes.
    /// NFKC-normalized and lower-cased first, with invisible characters refused
    /// ([`crate::text::identifier`]), so `ｄｕｐ@x.io` is the account `dup@x.io` and no
    /// lookalike of it can register.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let email = crate::text::identifier(raw)
            .map_err(|e| FieldError::text("email", e))?
            .to_lowercase();
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
            Err(FieldError::new("email", "not a valid email address"))
        }
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: trimmed, 1–100 characters on one line. The original service's clients
/// send one at registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;

impl DisplayName {
    /// Parses an optional name; absent, `null` or blank is no name.
    pub fn parse_optional(raw: Option<&str>) -> Result<Option<Self>, FieldError> {
        let Some(name) = raw.map(str::trim).filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        crate::text::single_line(name).map_err(|e| FieldError::text("name", e))?;
        if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
            return Err(FieldError::new(
                "name",
                format!("at most {MAX_DISPLAY_NAME_CHARS} characters"),
            ));
        }
        Ok(Some(Self(name.to_owned())))
    }

    /// A name read back from the database (parsed when it was stored).
    pub fn trusted(stored: String) -> Self {
        Self(stored)
    }

    /// The name.
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
    /// Display name, if the user gave one.
    pub name: Option<String>,
    /// argon2id PHC string. Never leaves the service.
    pub password_hash: String,
    /// Role as stored.
    pub role: String,
    /// VIP customer.
    pub vip: bool,
    /// The tenant's tags on this customer (normalized, sorted).
    pub tags: TextList,
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
    /// Display name (`null` when none was given).
    pub name: Option<String>,
    /// Tenant slug.
    pub tenant: String,
    /// Role.
    pub role: Role,
    /// VIP customer (orders jump the queue).
    pub vip: bool,
    /// The tenant's tags on this customer, which its rules read: lower case, sorted,
    /// at most 32 (`[]` when none).
    pub tags: Vec<String>,
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
            name: row.name,
            tenant: row.tenant_slug,
            vip: row.vip,
            tags: row.tags.into_vec(),
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
     u.name, u.password_hash, u.role, u.vip, u.tags, u.created_at, u.updated_at \
     from users u join tenants t on t.id = u.tenant_id";

/// Inserts a user.
pub async fn create(
    store: &Store,
    tenant_id: &str,
    email: &Email,
    name: Option<&DisplayName>,
    password_hash: &str,
    role: Role,
    now: i64,
) -> Result<UserRow, CreateUserError> {
    let id = uuid::Uuid::now_v7().to_string();
    let result = with_pool!(store, pool => sqlx::query(
        "insert into users (id, tenant_id, email, name, password_hash, role, vip, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(&id)
    .bind(tenant_id)
    .bind(email.as_str())
    .bind(name.map(DisplayName::as_str))
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

/// Whether the tenant still has an admin once `email` is no longer one, inside a write
/// transaction (locks the admin rows on PostgreSQL; SQLite's write transaction is already
/// exclusive). A macro: the transaction's type differs per backend.
macro_rules! keeps_an_admin {
    ($tx:expr, $pool:expr, $tenant_id:expr, $email:expr) => {{
        let admins: Vec<String> = sqlx::query_scalar(&format!(
            "select email from users where tenant_id = $1 and role = 'admin' order by id {}",
            $pool.for_update()
        ))
        .bind($tenant_id)
        .fetch_all(&mut *$tx)
        .await?;
        !admins.iter().any(|a| a == $email) || admins.len() > 1
    }};
}

/// What an admin change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Done.
    Done,
    /// No such user in the tenant.
    NotFound,
    /// Refused: it would leave the tenant without an admin.
    LastAdmin,
}

/// The values a user row is set to by [`update`].
#[derive(Debug, Clone)]
pub struct UserUpdate {
    /// Role.
    pub role: Role,
    /// VIP flag.
    pub vip: bool,
    /// Display name.
    pub name: Option<DisplayName>,
    /// The tags that replace the user's; `None` keeps them as they are.
    pub tags: Option<Tags>,
}

/// Sets a user's role, VIP flag, name and (when given) tags. Taking the admin role from
/// the tenant's last admin is refused ([`Change::LastAdmin`]): the tenant's admin rows are
/// locked first, so two admins demoting each other at once cannot both succeed.
pub async fn update(
    store: &Store,
    tenant_id: &str,
    email: &str,
    change: &UserUpdate,
    now: i64,
) -> Result<Change, sqlx::Error> {
    with_pool!(store, pool => {
        let mut tx = pool.begin_write().await?;
        if change.role != Role::Admin && !keeps_an_admin!(tx, pool, tenant_id, email) {
            return Ok(Change::LastAdmin);
        }
        let affected = sqlx::query(
            "update users set role = $1, vip = $2, name = $3, tags = coalesce($4, tags), \
             updated_at = $5 where tenant_id = $6 and email = $7",
        )
        .bind(change.role.as_str())
        .bind(change.vip)
        .bind(change.name.as_ref().map(DisplayName::as_str))
        .bind(change.tags.as_ref().map(Tags::stored))
        .bind(now)
        .bind(tenant_id)
        .bind(email)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(if affected == 1 { Change::Done } else { Change::NotFound })
    })
}

/// Deletes a user (its refresh tokens go with it); the tenant's last admin is refused like
/// in [`update`].
pub async fn delete(store: &Store, tenant_id: &str, email: &str) -> Result<Change, sqlx::Error> {
    with_pool!(store, pool => {
        let mut tx = pool.begin_write().await?;
        if !keeps_an_admin!(tx, pool, tenant_id, email) {
            return Ok(Change::LastAdmin);
        }
        let affected = sqlx::query("delete from users where tenant_id = $1 and email = $2")
            .bind(tenant_id)
            .bind(email)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(if affected == 1 { Change::Done } else { Change::NotFound })
    })
}

/// Why a user's tags could not be changed by [`retag`].
#[derive(Debug, thiserror::Error)]
pub enum RetagError {
    /// No such user in the tenant.
    #[error("no such user in this tenant")]
    NotFound,
    /// The result is not a valid tag list (too many tags).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Replaces a user's tags by what `edit` makes of them, in one write transaction (the
/// row is locked on PostgreSQL, SQLite's writer excludes others), so two additions at
/// once both land. Returns the tags written.
pub async fn retag(
    store: &Store,
    tenant_id: &str,
    email: &str,
    edit: impl FnOnce(Tags) -> Result<Tags, FieldError>,
    now: i64,
) -> Result<Tags, RetagError> {
    with_pool!(store, pool => {
        let mut tx = pool.begin_write().await?;
        let current: Option<TextList> = sqlx::query_scalar(&format!(
            "select tags from users where tenant_id = $1 and email = $2 {}",
            pool.for_update()
        ))
        .bind(tenant_id)
        .bind(email)
        .fetch_optional(&mut *tx)
        .await?;
        let current = current.ok_or(RetagError::NotFound)?;
        let tags = edit(Tags::trusted(current.into_vec()))?;
        sqlx::query("update users set tags = $1, updated_at = $2 where tenant_id = $3 and email = $4")
            .bind(tags.stored())
            .bind(now)
            .bind(tenant_id)
            .bind(email)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(tags)
    })
}
