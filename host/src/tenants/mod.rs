//! Tenants (merchants): every row of tenant data names one. A `default` tenant exists on
//! every installation; operators create and list the others.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::AuthUser,
    clock::rfc3339,
    http::{
        error::ApiError,
        extract::{Json, Query},
        pagination::{Page, PageQuery},
    },
    state::AppState,
    store::{Store, is_unique_violation},
    text::FieldError,
    with_pool,
};

/// A tenant as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantRow {
    /// Id.
    pub id: String,
    /// URL-safe unique name.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Creation time, epoch ms.
    pub created_at: i64,
    /// Last change, epoch ms.
    pub updated_at: i64,
}

/// A tenant as shown by the API.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantView {
    /// Id.
    pub id: String,
    /// URL-safe unique name, used in `X-Tenant` and at registration.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

impl From<TenantRow> for TenantView {
    fn from(row: TenantRow) -> Self {
        Self {
            id: row.id,
            slug: row.slug,
            name: row.name,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        }
    }
}

/// 404 `TENANT_NOT_FOUND`.
pub fn not_found(slug: &str) -> ApiError {
    ApiError::not_found("TENANT_NOT_FOUND", format!("no tenant named {slug:?}"))
        .with_details(serde_json::json!({ "tenant": slug }))
}

/// A tenant slug: 2–63 of `a-z`, `0-9`, `-`, starting with a letter or digit.
pub fn parse_slug(raw: &str) -> Result<String, FieldError> {
    let slug = crate::text::identifier(raw)
        .map_err(|e| FieldError::text("slug", e))?
        .to_ascii_lowercase();
    let ok = (2..=63).contains(&slug.len())
        && slug.starts_with(|c: char| c.is_ascii_alphanumeric())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(slug)
    } else {
        Err(FieldError::new(
            "slug",
            "2-63 characters of a-z, 0-9 and '-', starting with a letter or digit",
        ))
    }
}

/// A tenant's display name: trimmed, one line, at most 200 characters; the slug when
/// absent or blank.
pub fn parse_name(raw: Option<&str>, slug: &str) -> Result<String, FieldError> {
    let Some(name) = raw.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(slug.to_owned());
    };
    crate::text::single_line(name).map_err(|e| FieldError::text("name", e))?;
    if name.chars().count() > 200 {
        return Err(FieldError::new("name", "at most 200 characters"));
    }
    Ok(name.to_owned())
}

const SELECT_TENANT: &str = "select id, slug, name, created_at, updated_at from tenants";

/// Looks a tenant up by slug.
pub async fn find_by_slug(store: &Store, slug: &str) -> Result<Option<TenantRow>, sqlx::Error> {
    let sql = format!("{SELECT_TENANT} where slug = $1");
    with_pool!(store, pool => sqlx::query_as::<_, TenantRow>(&sql).bind(slug).fetch_optional(pool).await)
}

/// Looks a tenant up by id.
pub async fn find_by_id(store: &Store, id: &str) -> Result<Option<TenantRow>, sqlx::Error> {
    let sql = format!("{SELECT_TENANT} where id = $1");
    with_pool!(store, pool => sqlx::query_as::<_, TenantRow>(&sql).bind(id).fetch_optional(pool).await)
}

/// Why a tenant could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// No tenant has this slug.
    #[error("no tenant named {0:?}")]
    NotFound(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<TenantError> for ApiError {
    fn from(err: TenantError) -> Self {
        match err {
            TenantError::NotFound(slug) => not_found(&slug),
            TenantError::Db(e) => e.into(),
        }
    }
}

/// Resolves an optional slug to a tenant id; `None` means the default tenant.
pub async fn resolve(store: &Store, slug: Option<&str>) -> Result<String, TenantError> {
    match slug.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(crate::store::DEFAULT_TENANT_ID.to_owned()),
        Some(raw) => {
            let slug = crate::text::identifier(raw)
                .map_err(|_| TenantError::NotFound(raw.to_owned()))?
                .to_ascii_lowercase();
            find_by_slug(store, &slug)
                .await?
                .map(|t| t.id)
                .ok_or(TenantError::NotFound(slug))
        }
    }
}

/// Which tenant an admin request is about.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantQuery {
    /// Tenant slug; operators only (admins always act on their own tenant).
    pub tenant: Option<String>,
}

/// Who acts on which tenant in an admin request; also an extractor, so an admin handler
/// takes `scope: AdminScope` instead of repeating the caller / `?tenant=` / role preamble:
/// an admin acts on its own tenant, an operator on the one `?tenant=` names (its own by
/// default); customers get 403, an admin naming another tenant 404.
#[derive(Debug, Clone)]
pub struct AdminScope {
    /// The caller.
    pub actor: AuthUser,
    /// The tenant the action applies to.
    pub tenant_id: String,
    /// The caller's role, read from its row now (never from the token).
    pub actor_role: crate::auth::Role,
}

impl axum::extract::FromRequestParts<AppState> for AdminScope {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let actor = AuthUser::from_request_parts(parts, state).await?;
        let Query(query) = Query::<TenantQuery>::from_request_parts(parts, state).await?;
        admin_scope(&state.store, &actor, query.tenant.as_deref()).await
    }
}

/// The tenant an admin action applies to: an admin's own; an operator's choice. An
/// admin naming another tenant gets 404, exactly as for a missing one, so tenant slugs do
/// not leak through the admin API. A customer — or an admin demoted since its token was
/// issued — gets 403.
pub async fn admin_scope(
    store: &Store,
    actor: &AuthUser,
    tenant: Option<&str>,
) -> Result<AdminScope, ApiError> {
    let actor_role = actor.require_admin(store).await?;
    let tenant_id = match tenant.map(str::trim).filter(|s| !s.is_empty()) {
        None => actor.tenant_id.clone(),
        Some(slug) => {
            let id = resolve(store, Some(slug)).await?;
            if actor_role == crate::auth::Role::Operator || id == actor.tenant_id {
                id
            } else {
                return Err(not_found(slug));
            }
        }
    };
    Ok(AdminScope {
        actor: actor.clone(),
        tenant_id,
        actor_role,
    })
}

/// Creates a tenant; `Ok(None)` when the slug is taken.
pub async fn create(
    store: &Store,
    slug: &str,
    name: &str,
    now: i64,
) -> Result<Option<TenantRow>, sqlx::Error> {
    let row = TenantRow {
        id: uuid::Uuid::now_v7().to_string(),
        slug: slug.to_owned(),
        name: name.to_owned(),
        created_at: now,
        updated_at: now,
    };
    let result = with_pool!(store, pool => sqlx::query(
        "insert into tenants (id, slug, name, created_at, updated_at) values ($1, $2, $3, $4, $5)",
    )
    .bind(&row.id)
    .bind(&row.slug)
    .bind(&row.name)
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(pool)
    .await
    .map(|_| ()));
    match result {
        Ok(_) => Ok(Some(row)),
        Err(e) if is_unique_violation(&e, "tenants_slug_key", "tenants.slug") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Body of `POST /tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTenant {
    /// URL-safe unique name.
    pub slug: String,
    /// Display name (defaults to the slug).
    pub name: Option<String>,
}

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_tenant, list_tenants))
}

/// Create a tenant (operator).
#[utoipa::path(post, path = "/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = TenantView), (status = 403, body = crate::http::error::ErrorEnvelope),
              (status = 409, description = "slug taken", body = crate::http::error::ErrorEnvelope)))]
async fn create_tenant(
    State(state): State<AppState>,
    actor: AuthUser,
    Json(body): Json<CreateTenant>,
) -> Result<(StatusCode, Json<TenantView>), ApiError> {
    actor.require_operator(&state.store).await?;
    let slug = parse_slug(&body.slug)?;
    let name = parse_name(body.name.as_deref(), &slug)?;
    let row = create(&state.store, &slug, &name, state.clock.now_ms())
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "TENANT_EXISTS",
                format!("a tenant named {slug:?} exists"),
            )
        })?;
    tracing::info!(tenant = %row.slug, "tenant created");
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// List tenants (operator).
#[utoipa::path(get, path = "/tenants", tag = "tenants", params(PageQuery),
    responses((status = 200, body = Page<TenantView>), (status = 403, body = crate::http::error::ErrorEnvelope)))]
async fn list_tenants(
    State(state): State<AppState>,
    actor: AuthUser,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<TenantView>>, ApiError> {
    actor.require_operator(&state.store).await?;
    let sql = format!("{SELECT_TENANT} order by created_at, slug limit $1 offset $2");
    let (rows, total) = with_pool!(&state.store, pool => {
        let rows = sqlx::query_as::<_, TenantRow>(&sql)
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(pool)
            .await?;
        let total: i64 = sqlx::query_scalar("select count(*) from tenants").fetch_one(pool).await?;
        (rows, total)
    });
    Ok(Json(Page::new(
        page,
        rows.into_iter().map(Into::into).collect(),
        total,
    )))
}
