//! The component registry: uploaded WebAssembly components, stored in the database by
//! content hash (SHA-256) with name, semver version, the world they serve, their imports
//! and exports, size, owner and uploader. Owns the `components` and `component_quotas`
//! tables; every other module reads components through the functions here
//! ([`find`], [`load_bytes`], [`list`]).
//!
//! Owners: the *platform* (uploaded by an operator, visible to and bindable by every
//! tenant) or *one tenant* (uploaded by its admin, visible only there — to anyone else it
//! does not exist: 404). A tenant's own `name@version` wins over the platform's when
//! both exist ([`find`]).
//!
//! Not to be confused with `policy::registry`, the in-process table of *compiled*
//! components (built-ins and `policies/components/*.wasm`) the runtime binds from today.
//! "Which tenants bind it" is read from the runtime's active bindings
//! ([`crate::policy::runtime::PolicySet::uses`]), database bindings ([`bindings`])
//! included.

pub mod bindings;
pub mod ceilings;
pub mod dryrun;
pub mod fanout;
mod routes;
pub mod validate;

use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    clock::rfc3339,
    http::error::ApiError,
    policy::{BindingUse, FaultKind, registry::BUILTINS, types::Hook},
    store::{Store, WritePool as _, is_unique_violation},
    text::FieldError,
    with_pool,
};

pub use routes::router;
pub use validate::{Validated, validate};

/// The upload route; the edge reads its body under [`crate::Config::component_max_bytes`]
/// instead of the global body limit.
pub const UPLOAD_PATH: &str = "/admin/components";

/// The `owner` value of platform components.
pub const PLATFORM: &str = "platform";

/// Who owns a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The platform: uploaded by an operator, bindable by every tenant.
    Platform,
    /// One tenant (its id).
    Tenant(String),
}

impl Owner {
    /// The stored `owner` value.
    pub fn as_db(&self) -> &str {
        match self {
            Self::Platform => PLATFORM,
            Self::Tenant(id) => id,
        }
    }
}

/// Who is looking: operators see every component, an admin its tenant's and the
/// platform's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// An operator.
    Operator,
    /// An admin of this tenant (id).
    Tenant(String),
}

impl Viewer {
    /// The tenant id the viewer is confined to, if any.
    fn tenant(&self) -> Option<&str> {
        match self {
            Self::Operator => None,
            Self::Tenant(id) => Some(id),
        }
    }

    /// Whether the viewer may see a component of `owner` (a stored value).
    pub fn sees(&self, owner: &str) -> bool {
        owner == PLATFORM || self.tenant().is_none_or(|t| t == owner)
    }
}

/// A component's name: 1–64 of `a-z`, `0-9`, `-`, starting with a letter (as in
/// `name@version` in manifests and file names).
pub fn parse_name(raw: &str) -> Result<String, FieldError> {
    let name = raw.trim();
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(name.to_owned())
    } else {
        Err(FieldError::new(
            "name",
            "1-64 characters of a-z, 0-9 and '-', starting with a letter",
        ))
    }
}

/// A semver version (`1.2.3`, `1.0.0-beta.1`), in its canonical spelling.
pub fn parse_version(raw: &str) -> Result<String, FieldError> {
    let raw = raw.trim();
    if raw.len() > 64 {
        return Err(FieldError::new("version", "at most 64 characters"));
    }
    semver::Version::parse(raw)
        .map(|v| v.to_string())
        .map_err(|e| FieldError::new("version", format!("not a semver version: {e}")))
}

/// A component as stored, without its bytes, with the owner's slug.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ComponentRow {
    /// Id (UUIDv7).
    pub id: String,
    /// `platform` or a tenant id.
    pub owner: String,
    /// `platform` or the owning tenant's slug.
    pub owner_slug: String,
    /// Name.
    pub name: String,
    /// Semver version.
    pub version: String,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// World served.
    pub world: String,
    /// WIT package version.
    pub wit_version: String,
    /// Exports, a JSON array.
    pub exports: String,
    /// Imports, a JSON array.
    pub imports: String,
    /// Id of the user who uploaded it.
    pub uploaded_by: String,
    /// Upload time, epoch ms.
    pub created_at: i64,
    /// Last change, epoch ms.
    pub updated_at: i64,
}

impl ComponentRow {
    /// The hooks it serves (from its world).
    pub fn hooks(&self) -> Vec<Hook> {
        crate::policy::types::WORLDS
            .iter()
            .find(|(name, _)| *name == self.world)
            .map(|(_, hooks)| hooks.to_vec())
            .unwrap_or_default()
    }
}

/// A component as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Semver version.
    pub version: String,
    /// `platform` or the owning tenant's slug.
    pub owner: String,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// The world it targets (`validator`, `pricer`, `prioritizer`, `order-policy`).
    pub world: String,
    /// The hooks it can be bound to.
    pub hooks: Vec<Hook>,
    /// The `ordering:policy` WIT version it implements.
    pub wit_version: String,
    /// Its exports, as its own type names them.
    pub exports: Vec<String>,
    /// Its imports, as its own type names them.
    pub imports: Vec<String>,
    /// Id of the uploader.
    pub uploaded_by: String,
    /// Upload time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// The active bindings of this component the caller may see (`GET` of one component
    /// only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound_by: Option<Vec<BindingUse>>,
}

impl From<ComponentRow> for ComponentView {
    fn from(row: ComponentRow) -> Self {
        let list = |json: &str| serde_json::from_str::<Vec<String>>(json).unwrap_or_default();
        Self {
            hooks: row.hooks(),
            exports: list(&row.exports),
            imports: list(&row.imports),
            id: row.id,
            name: row.name,
            version: row.version,
            owner: row.owner_slug,
            sha256: row.sha256,
            size_bytes: row.size_bytes,
            world: row.world,
            wit_version: row.wit_version,
            uploaded_by: row.uploaded_by,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
            bound_by: None,
        }
    }
}

/// A tenant's component quota and what it uses of it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// Components the tenant may own.
    pub max_count: i64,
    /// Total bytes the tenant's components may take.
    pub max_bytes: i64,
    /// Components it owns.
    pub used_count: i64,
    /// Bytes they take.
    pub used_bytes: i64,
    /// Whether an operator set it (`false`: the configured defaults).
    pub custom: bool,
}

impl Quota {
    /// Whether one more component of `size` bytes fits.
    pub fn has_room_for(&self, size: i64) -> bool {
        self.used_count < self.max_count && self.used_bytes.saturating_add(size) <= self.max_bytes
    }
}

/// Why a registry request failed. Validation refusals are 422s, each with its own code.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A name, version or body that does not parse.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// Not a WebAssembly binary at all.
    #[error("the body is not a WebAssembly component")]
    NotAComponent,
    /// A core module, not a component.
    #[error("the body is a core WebAssembly module, not a component")]
    CoreModule,
    /// Exports none of the package's worlds (the exports it has).
    #[error("the component targets none of the ordering:policy worlds")]
    UnknownWorld(Vec<String>),
    /// Imports something the sandbox does not offer.
    #[error("the component imports {0}, which components may not use")]
    ForbiddenImport(String),
    /// wasmtime cannot compile it.
    #[error("the component does not compile: {0}")]
    CompileFailed(String),
    /// A hook failed its smoke call.
    #[error("the {hook} smoke call failed ({kind}): {detail}")]
    SmokeCallFailed {
        /// The hook.
        hook: Hook,
        /// The fault.
        kind: FaultKind,
        /// What happened.
        detail: String,
    },
    /// Bigger than the configured maximum.
    #[error("the component is {size} bytes; the limit is {max}")]
    TooLarge {
        /// Its size (as announced or read so far).
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The tenant's quota would be exceeded.
    #[error("the tenant's component quota would be exceeded")]
    QuotaExceeded(Quota),
    /// The owner has this name@version with other bytes (or it is a built-in's).
    #[error("{0} exists with other bytes; upload a new version")]
    VersionExists(String),
    /// Unknown or invisible to the caller.
    #[error("no component {0}")]
    NotFound(String),
    /// Bound somewhere: cannot be deleted.
    #[error("{id} is bound and cannot be deleted")]
    InUse {
        /// `name@version`.
        id: String,
        /// Its bindings.
        uses: Vec<BindingUse>,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// Something unexpected (a validation task that died).
    #[error("{0}")]
    Internal(String),
}

impl RegistryError {
    /// The stable code of a refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Field(_) => "VALIDATION_FAILED",
            Self::NotAComponent => "NOT_A_COMPONENT",
            Self::CoreModule => "CORE_MODULE",
            Self::UnknownWorld(_) => "UNKNOWN_WORLD",
            Self::ForbiddenImport(_) => "FORBIDDEN_IMPORT",
            Self::CompileFailed(_) => "COMPILE_FAILED",
            Self::SmokeCallFailed { .. } => "SMOKE_CALL_FAILED",
            Self::TooLarge { .. } => "TOO_LARGE",
            Self::QuotaExceeded(_) => "QUOTA_EXCEEDED",
            Self::VersionExists(_) => "VERSION_EXISTS",
            Self::NotFound(_) => "COMPONENT_NOT_FOUND",
            Self::InUse { .. } => "COMPONENT_IN_USE",
            Self::Db(_) | Self::Internal(_) => "INTERNAL",
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(err: RegistryError) -> Self {
        let code = err.code();
        let message = err.to_string();
        let refusal = |details: serde_json::Value| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message.clone())
                .with_details(details)
        };
        match err {
            RegistryError::Field(e) => e.into(),
            RegistryError::NotAComponent => refusal(serde_json::json!({
                "hint": "send the bytes of a WebAssembly component (.wasm built for wasm32-wasip2)"
            })),
            RegistryError::CoreModule => refusal(serde_json::json!({
                "hint": "build for wasm32-wasip2 (cargo build --target wasm32-wasip2), which \
                         produces a component, or wrap a core module with \
                         `wasm-tools component new`"
            })),
            RegistryError::UnknownWorld(exports) => refusal(serde_json::json!({
                "exports": exports,
                "worlds": crate::policy::types::WORLDS.iter().map(|(w, _)| *w).collect::<Vec<_>>(),
                "witVersion": crate::policy::types::WIT_VERSION,
                "witVersions": crate::policy::types::WitVersion::ALL.map(|v| v.as_str()),
            })),
            RegistryError::ForbiddenImport(import) => refusal(serde_json::json!({
                "import": import,
                "allowed": "ordering:policy/host, ordering:policy/types and the WASI cli, io, \
                            clocks, random and filesystem types/preopens interfaces",
            })),
            RegistryError::CompileFailed(detail) => refusal(serde_json::json!({
                "problem": detail.lines().next().unwrap_or_default(),
            })),
            RegistryError::SmokeCallFailed { hook, kind, detail } => refusal(serde_json::json!({
                "hook": hook, "kind": kind, "problem": detail,
            })),
            RegistryError::TooLarge { size, max } => {
                refusal(serde_json::json!({ "sizeBytes": size, "maxBytes": max }))
            }
            RegistryError::QuotaExceeded(quota) => {
                refusal(serde_json::to_value(quota).unwrap_or_default())
            }
            RegistryError::VersionExists(id) => ApiError::new(StatusCode::CONFLICT, code, message)
                .with_details(serde_json::json!({ "component": id })),
            RegistryError::NotFound(id) => ApiError::not_found(code, message)
                .with_details(serde_json::json!({ "component": id })),
            RegistryError::InUse { id, uses } => ApiError::new(StatusCode::CONFLICT, code, message)
                .with_details(serde_json::json!({ "component": id, "boundBy": uses })),
            RegistryError::Db(e) => e.into(),
            RegistryError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

/// Whether `name@version` is a built-in's (an upload may not shadow one).
pub fn is_builtin(name: &str, version: &str) -> bool {
    version == crate::policy::registry::BUILTIN_VERSION && BUILTINS.iter().any(|b| b.name == name)
}

const SELECT_COMPONENT: &str = "select c.id, c.owner, coalesce(t.slug, 'platform') as owner_slug, \
     c.name, c.version, c.sha256, c.size_bytes, c.world, c.wit_version, c.exports, c.imports, \
     c.uploaded_by, c.created_at, c.updated_at \
     from components c left join tenants t on t.id = c.owner";

/// The component `name@version` as `viewer` resolves it: of `owner` when given, else the
/// viewer's tenant's own before the platform's (an operator: the platform's, else the
/// oldest tenant's). `None` when the viewer may not see it.
pub async fn find(
    store: &Store,
    viewer: &Viewer,
    owner: Option<&Owner>,
    name: &str,
    version: &str,
) -> Result<Option<ComponentRow>, sqlx::Error> {
    let sql = format!(
        "{SELECT_COMPONENT} where c.name = $1 and c.version = $2 \
         and c.owner = coalesce($3, c.owner) \
         and (c.owner = 'platform' or c.owner = coalesce($4, c.owner)) \
         order by case when c.owner = coalesce($4, 'platform') then 0 else 1 end, c.created_at \
         limit 1"
    );
    with_pool!(store, pool => sqlx::query_as::<_, ComponentRow>(&sql)
        .bind(name)
        .bind(version)
        .bind(owner.map(Owner::as_db))
        .bind(viewer.tenant())
        .fetch_optional(pool)
        .await)
}

/// The bytes stored under `sha256` (any owner: content is content).
pub async fn load_bytes(store: &Store, sha256: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
    with_pool!(store, pool => sqlx::query_scalar::<_, Vec<u8>>(
        "select bytes from components where sha256 = $1 limit 1",
    )
    .bind(sha256)
    .fetch_optional(pool)
    .await)
}

/// List filters.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Exact name.
    pub name: Option<String>,
    /// Exact world.
    pub world: Option<String>,
    /// Exact owner.
    pub owner: Option<Owner>,
}

/// The components `viewer` sees matching `filter`, by name then newest first; and how
/// many match in all.
pub async fn list(
    store: &Store,
    viewer: &Viewer,
    filter: &Filter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ComponentRow>, i64), sqlx::Error> {
    let condition = "c.name = coalesce($1, c.name) and c.world = coalesce($2, c.world) \
         and c.owner = coalesce($3, c.owner) \
         and (c.owner = 'platform' or c.owner = coalesce($4, c.owner))";
    let sql = format!(
        "{SELECT_COMPONENT} where {condition} \
         order by c.name, c.created_at desc, c.id desc limit $5 offset $6"
    );
    let count = format!("select count(*) from components c where {condition}");
    let owner = filter.owner.as_ref().map(Owner::as_db);
    Ok(with_pool!(store, pool => {
        let rows = sqlx::query_as::<_, ComponentRow>(&sql)
            .bind(filter.name.as_deref())
            .bind(filter.world.as_deref())
            .bind(owner)
            .bind(viewer.tenant())
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?;
        let total: i64 = sqlx::query_scalar(&count)
            .bind(filter.name.as_deref())
            .bind(filter.world.as_deref())
            .bind(owner)
            .bind(viewer.tenant())
            .fetch_one(pool)
            .await?;
        (rows, total)
    }))
}

/// A component about to be stored.
#[derive(Debug)]
pub struct NewComponent<'a> {
    /// Owner.
    pub owner: &'a Owner,
    /// Name.
    pub name: &'a str,
    /// Version (canonical).
    pub version: &'a str,
    /// The bytes.
    pub bytes: &'a [u8],
    /// Their SHA-256, hex.
    pub sha256: &'a str,
    /// What validation found.
    pub validated: &'a Validated,
    /// The uploader's user id.
    pub uploaded_by: &'a str,
}

/// What [`insert`] did.
#[derive(Debug)]
pub enum Inserted {
    /// Stored.
    Stored,
    /// The owner has this name@version already (a concurrent upload won).
    Exists,
    /// The tenant's quota has no room for it (another upload took the room meanwhile).
    OverQuota(Quota),
}

/// Reads a tenant's quota and use on `$conn` (a pool or a transaction's connection).
macro_rules! read_quota {
    ($conn:expr, $tenant_id:expr, $defaults:expr) => {
        async {
            let custom: Option<(i64, i64)> = sqlx::query_as(
                "select max_count, max_bytes from component_quotas where tenant_id = $1",
            )
            .bind($tenant_id)
            .fetch_optional(&mut *$conn)
            .await?;
            let (used_count, used_bytes): (i64, i64) = sqlx::query_as(
                "select count(*), cast(coalesce(sum(size_bytes), 0) as bigint) from components \
                 where owner = $1",
            )
            .bind($tenant_id)
            .fetch_one(&mut *$conn)
            .await?;
            let (max_count, max_bytes) = custom.unwrap_or($defaults);
            Ok::<_, sqlx::Error>(Quota {
                max_count,
                max_bytes,
                used_count,
                used_bytes,
                custom: custom.is_some(),
            })
        }
    };
}

/// Stores a validated component. A tenant's upload is checked against its quota
/// (`quota_defaults` unless an operator set one) in the same write transaction, with the
/// tenant's row locked on PostgreSQL (SQLite's single writer already serializes), so two
/// concurrent uploads cannot both take the last room.
pub async fn insert(
    store: &Store,
    new: &NewComponent<'_>,
    quota_defaults: (i64, i64),
    now: i64,
) -> Result<Inserted, sqlx::Error> {
    let json = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    let size = i64::try_from(new.bytes.len()).unwrap_or(i64::MAX);
    let result = with_pool!(store, pool => {
        let mut tx = pool.begin_write().await?;
        if let Owner::Tenant(tenant_id) = new.owner {
            let lock = format!("select id from tenants where id = $1 {}", pool.for_update());
            sqlx::query(&lock).bind(tenant_id).execute(&mut *tx).await?;
            let quota = read_quota!(tx, tenant_id, quota_defaults).await?;
            if !quota.has_room_for(size) {
                return Ok(Inserted::OverQuota(quota));
            }
        }
        let inserted = sqlx::query(
            "insert into components (id, owner, name, version, sha256, bytes, size_bytes, world, \
             wit_version, exports, imports, uploaded_by, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(new.owner.as_db())
        .bind(new.name)
        .bind(new.version)
        .bind(new.sha256)
        .bind(new.bytes)
        .bind(size)
        .bind(new.validated.world)
        .bind(new.validated.wit_version)
        .bind(json(&new.validated.exports))
        .bind(json(&new.validated.imports))
        .bind(new.uploaded_by)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => tx.commit().await,
            Err(e) => Err(e),
        }
    });
    match result {
        Ok(()) => Ok(Inserted::Stored),
        Err(e)
            if is_unique_violation(
                &e,
                "components_owner_name_version_key",
                "components.owner, components.name, components.version",
            ) =>
        {
            Ok(Inserted::Exists)
        }
        Err(e) => Err(e),
    }
}

/// Deletes a component by id; whether it existed.
pub async fn delete(store: &Store, id: &str) -> Result<bool, sqlx::Error> {
    let done = with_pool!(store, pool => sqlx::query("delete from components where id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(done > 0)
}

/// A tenant's quota (its own row, else `defaults`) and its use.
pub async fn quota(
    store: &Store,
    tenant_id: &str,
    defaults: (i64, i64),
) -> Result<Quota, sqlx::Error> {
    with_pool!(store, pool => {
        let mut conn = pool.acquire().await?;
        read_quota!(conn, tenant_id, defaults).await
    })
}

/// Sets a tenant's quota.
pub async fn set_quota(
    store: &Store,
    tenant_id: &str,
    max_count: i64,
    max_bytes: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    with_pool!(store, pool => sqlx::query(
        "insert into component_quotas (tenant_id, max_count, max_bytes, created_at, updated_at) \
         values ($1, $2, $3, $4, $4) \
         on conflict (tenant_id) do update set max_count = excluded.max_count, \
         max_bytes = excluded.max_bytes, updated_at = excluded.updated_at",
    )
    .bind(tenant_id)
    .bind(max_count)
    .bind(max_bytes)
    .bind(now)
    .execute(pool)
    .await
    .map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions_parse_strictly() {
        assert_eq!(parse_name(" my-sale ").unwrap(), "my-sale");
        assert!(parse_name("").is_err());
        assert!(parse_name("My-Sale").is_err());
        assert!(parse_name("1sale").is_err());
        assert!(parse_name("sale@1").is_err());
        assert!(parse_name(&"a".repeat(65)).is_err());
        assert_eq!(parse_version("1.2.3").unwrap(), "1.2.3");
        assert_eq!(parse_version("1.0.0-beta.1").unwrap(), "1.0.0-beta.1");
        assert!(parse_version("1.2").is_err());
        assert!(parse_version("v1.2.3").is_err());
        assert!(parse_version("01.2.3").is_err());
    }

    #[test]
    fn viewers_see_their_tenant_and_the_platform() {
        let admin = Viewer::Tenant("t-a".into());
        assert!(admin.sees(PLATFORM));
        assert!(admin.sees("t-a"));
        assert!(!admin.sees("t-b"));
        assert!(Viewer::Operator.sees("t-b"));
    }
}
