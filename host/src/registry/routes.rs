//! `POST/GET /admin/components`, `GET/DELETE /admin/components/{name}/{version}` and
//! `GET/PUT /admin/tenants/{tenant}/component-quota`.
//!
//! Operators upload platform components and see every component; a tenant admin uploads
//! its tenant's own and sees those plus the platform's (another tenant's is 404, as if it
//! did not exist); customers get 403.

use std::time::Instant;

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, header},
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    ComponentRow, ComponentView, Filter, NewComponent, Owner, PLATFORM, Quota, RegistryError,
    Viewer,
};
use crate::{
    auth::{AuthUser, Role},
    http::{
        error::{ApiError, ErrorEnvelope},
        extract::{Json, Path, Query},
        pagination::{Page, PageQuery},
    },
    policy::BindingUse,
    state::AppState,
    tenants,
};

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload, list_components))
        .routes(routes!(get_component, delete_component))
        .routes(routes!(get_quota, put_quota))
}

/// Name and version of an upload (or the `X-Component-Name` / `X-Component-Version`
/// headers).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// Component name: 1–64 of `a-z`, `0-9`, `-`, starting with a letter.
    pub name: Option<String>,
    /// Semver version, e.g. `0.1.0`.
    pub version: Option<String>,
}

/// Filters of `GET /admin/components`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Exact name.
    pub name: Option<String>,
    /// World served: `validator`, `pricer`, `prioritizer` or `order-policy`.
    pub world: Option<String>,
    /// `platform` or a tenant slug (admins: their own or `platform`).
    pub owner: Option<String>,
}

/// Which owner's `name@version` is meant.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OwnerQuery {
    /// `platform` or a tenant slug; by default the caller's tenant's own, else the
    /// platform's.
    pub owner: Option<String>,
}

/// Body of `PUT /admin/tenants/{tenant}/component-quota`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaBody {
    /// Components the tenant may own (0–10 000).
    pub max_count: i64,
    /// Total bytes of its components (0–1 TiB).
    pub max_bytes: i64,
}

/// Who is asking: 403 for customers.
async fn viewer(state: &AppState, actor: &AuthUser) -> Result<Viewer, ApiError> {
    Ok(match actor.require_admin(&state.store).await? {
        Role::Operator => Viewer::Operator,
        _ => Viewer::Tenant(actor.tenant_id.clone()),
    })
}

/// Parses `?owner=`: `platform` or a slug the viewer may see (another tenant's → 404).
async fn owner_param(
    state: &AppState,
    viewer: &Viewer,
    raw: Option<&str>,
) -> Result<Option<Owner>, ApiError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(PLATFORM) => Ok(Some(Owner::Platform)),
        Some(slug) => {
            let id = tenants::resolve(&state.store, Some(slug)).await?;
            if viewer.sees(&id) {
                Ok(Some(Owner::Tenant(id)))
            } else {
                Err(tenants::not_found(slug))
            }
        }
    }
}

/// The name and version in the path, or 404 when they cannot name a component.
fn path_id(name: &str, version: &str) -> Result<(String, String), RegistryError> {
    let not_found = || RegistryError::NotFound(format!("{name}@{version}"));
    let name = super::parse_name(name).map_err(|_| not_found())?;
    let version = super::parse_version(version).map_err(|_| not_found())?;
    Ok((name, version))
}

/// The component `name@version` the viewer means, or 404.
async fn resolve(
    state: &AppState,
    viewer: &Viewer,
    name: &str,
    version: &str,
    owner: Option<&str>,
) -> Result<ComponentRow, ApiError> {
    let (name, version) = path_id(name, version)?;
    let owner = owner_param(state, viewer, owner).await?;
    super::find(&state.store, viewer, owner.as_ref(), &name, &version)
        .await?
        .ok_or_else(|| RegistryError::NotFound(format!("{name}@{version}")).into())
}

/// The active bindings of `row`: a tenant's component counts only its tenant's and the
/// default bindings; an admin sees no other tenant's slug.
async fn bindings_of(
    state: &AppState,
    viewer: &Viewer,
    row: &ComponentRow,
) -> Result<Vec<BindingUse>, ApiError> {
    let visible_slug = match viewer {
        Viewer::Operator => None,
        Viewer::Tenant(id) => Some(
            tenants::find_by_id(&state.store, id)
                .await?
                .map(|t| t.slug)
                .unwrap_or_default(),
        ),
    };
    let owner_slug = (row.owner != PLATFORM).then_some(row.owner_slug.as_str());
    Ok(state
        .policy
        .snapshot()
        .uses(&row.name, &row.version)
        .into_iter()
        .filter(|u| match u.tenant.as_deref() {
            None => true,
            Some(t) => {
                owner_slug.is_none_or(|o| o == t) && visible_slug.as_deref().is_none_or(|v| v == t)
            }
        })
        .collect())
}

/// Name and version from the query, else from the headers.
fn upload_id(query: &UploadQuery, headers: &HeaderMap) -> Result<(String, String), ApiError> {
    let from = |q: &Option<String>, h: &str, field: &str| {
        q.clone()
            .or_else(|| {
                headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .ok_or_else(|| {
                ApiError::validation(
                    field,
                    format!("give the component's {field} as `?{field}=` or the {h} header"),
                )
            })
    };
    let name = super::parse_name(&from(&query.name, "x-component-name", "name")?)?;
    let version = super::parse_version(&from(&query.version, "x-component-version", "version")?)?;
    Ok((name, version))
}

fn wasm_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim())
        .is_some_and(|t| {
            t.eq_ignore_ascii_case("application/wasm")
                || t.eq_ignore_ascii_case("application/octet-stream")
        })
}

/// Upload a component: raw `application/wasm` body (operator: platform-owned; admin: its
/// tenant's). Validated before it is stored; the same bytes again answer 200 with the
/// stored record.
#[utoipa::path(post, path = "/admin/components", tag = "components", params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 201, description = "stored", body = ComponentView),
              (status = 200, description = "these bytes were stored already", body = ComponentView),
              (status = 403, body = ErrorEnvelope),
              (status = 409, description = "VERSION_EXISTS", body = ErrorEnvelope),
              (status = 415, body = ErrorEnvelope),
              (status = 422, description = "NOT_A_COMPONENT, CORE_MODULE, UNKNOWN_WORLD, FORBIDDEN_IMPORT, COMPILE_FAILED, SMOKE_CALL_FAILED, TOO_LARGE, QUOTA_EXCEEDED, VALIDATION_FAILED", body = ErrorEnvelope)))]
async fn upload(
    State(state): State<AppState>,
    actor: AuthUser,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<ComponentView>), ApiError> {
    let started = Instant::now();
    let viewer = viewer(&state, &actor).await?;
    let owner = match &viewer {
        Viewer::Operator => Owner::Platform,
        Viewer::Tenant(id) => Owner::Tenant(id.clone()),
    };
    let (name, version) = upload_id(&query, &headers)?;
    if !wasm_content_type(&headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the component's bytes with `Content-Type: application/wasm`",
        ));
    }
    let max = state.config.component_max_bytes;
    // The edge has read the body under this same limit; this bound only keeps the
    // handler honest on its own.
    let bytes = axum::body::to_bytes(body, max.saturating_add(1))
        .await
        .map_err(|_| RegistryError::TooLarge {
            size: max as u64 + 1,
            max: max as u64,
        })?;
    if bytes.len() > max {
        return Err(RegistryError::TooLarge {
            size: bytes.len() as u64,
            max: max as u64,
        }
        .into());
    }
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let id = format!("{name}@{version}");
    let existing = |row: ComponentRow| -> Result<(StatusCode, Json<ComponentView>), ApiError> {
        if row.sha256 == sha256 {
            Ok((StatusCode::OK, Json(row.into())))
        } else {
            Err(RegistryError::VersionExists(id.clone()).into())
        }
    };
    let find_own = || super::find(&state.store, &viewer, Some(&owner), &name, &version);
    if let Some(row) = find_own().await? {
        return existing(row);
    }
    if super::is_builtin(&name, &version) {
        return Err(RegistryError::VersionExists(id).into());
    }
    if let Owner::Tenant(tenant_id) = &owner {
        let quota = super::quota(&state.store, tenant_id, quota_defaults(&state)).await?;
        // Refused here before anything is compiled; `insert` checks again atomically.
        if !quota.has_room_for(bytes.len() as i64) {
            return Err(RegistryError::QuotaExceeded(quota).into());
        }
    }
    // Compiling and the smoke calls are CPU work: off the async threads.
    let validated = {
        let (runtime, bytes, name, version) = (
            state.policy.clone(),
            bytes.clone(),
            name.clone(),
            version.clone(),
        );
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            span.in_scope(|| super::validate(&runtime, &name, &version, &bytes))
        })
        .await
        .map_err(|e| RegistryError::Internal(format!("validation task failed: {e}")))??
    };
    let new = NewComponent {
        owner: &owner,
        name: &name,
        version: &version,
        bytes: &bytes,
        sha256: &sha256,
        validated: &validated,
        uploaded_by: &actor.user_id,
    };
    let inserted = super::insert(
        &state.store,
        &new,
        quota_defaults(&state),
        state.clock.now_ms(),
    )
    .await?;
    if let super::Inserted::OverQuota(quota) = inserted {
        return Err(RegistryError::QuotaExceeded(quota).into());
    }
    let row = find_own()
        .await?
        .ok_or_else(|| RegistryError::Internal(format!("{id} vanished after its insert")))?;
    if let super::Inserted::Exists = inserted {
        // A concurrent upload of the same name@version won the insert.
        return existing(row);
    }
    tracing::info!(
        component = %id,
        owner = %row.owner_slug,
        world = validated.world,
        size_bytes = bytes.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "component uploaded"
    );
    Ok((StatusCode::CREATED, Json(row.into())))
}

fn quota_defaults(state: &AppState) -> (i64, i64) {
    (
        i64::from(state.config.component_quota_count),
        i64::try_from(state.config.component_quota_bytes).unwrap_or(i64::MAX),
    )
}

/// List the components the caller sees (operators: all; admins: their tenant's and the
/// platform's).
#[utoipa::path(get, path = "/admin/components", tag = "components", params(ListQuery, PageQuery),
    responses((status = 200, body = Page<ComponentView>), (status = 403, body = ErrorEnvelope),
              (status = 404, description = "owner names another tenant", body = ErrorEnvelope)))]
async fn list_components(
    State(state): State<AppState>,
    actor: AuthUser,
    Query(query): Query<ListQuery>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<ComponentView>>, ApiError> {
    let viewer = viewer(&state, &actor).await?;
    let filter = Filter {
        owner: owner_param(&state, &viewer, query.owner.as_deref()).await?,
        name: query.name.map(|n| n.trim().to_owned()),
        world: query.world.map(|w| w.trim().to_owned()),
    };
    let (rows, total) =
        super::list(&state.store, &viewer, &filter, page.limit(), page.offset()).await?;
    Ok(Json(Page::new(
        page,
        rows.into_iter().map(Into::into).collect(),
        total,
    )))
}

/// One component: metadata, exports, imports, hash, and which tenants bind it.
#[utoipa::path(get, path = "/admin/components/{name}/{version}", tag = "components",
    params(("name" = String, Path), ("version" = String, Path), OwnerQuery),
    responses((status = 200, body = ComponentView), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
async fn get_component(
    State(state): State<AppState>,
    actor: AuthUser,
    Path((name, version)): Path<(String, String)>,
    Query(query): Query<OwnerQuery>,
) -> Result<Json<ComponentView>, ApiError> {
    let viewer = viewer(&state, &actor).await?;
    let row = resolve(&state, &viewer, &name, &version, query.owner.as_deref()).await?;
    let uses = bindings_of(&state, &viewer, &row).await?;
    let mut view = ComponentView::from(row);
    view.bound_by = Some(uses);
    Ok(Json(view))
}

/// Delete a component nothing binds (admins: their tenant's own only).
#[utoipa::path(delete, path = "/admin/components/{name}/{version}", tag = "components",
    params(("name" = String, Path), ("version" = String, Path), OwnerQuery),
    responses((status = 204, description = "deleted"), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope),
              (status = 409, description = "COMPONENT_IN_USE", body = ErrorEnvelope)))]
async fn delete_component(
    State(state): State<AppState>,
    actor: AuthUser,
    Path((name, version)): Path<(String, String)>,
    Query(query): Query<OwnerQuery>,
) -> Result<StatusCode, ApiError> {
    let viewer = viewer(&state, &actor).await?;
    let row = resolve(&state, &viewer, &name, &version, query.owner.as_deref()).await?;
    if viewer != Viewer::Operator && row.owner == PLATFORM {
        return Err(ApiError::forbidden(
            "platform components are deleted by operators",
        ));
    }
    let uses = bindings_of(&state, &Viewer::Operator, &row).await?;
    if !uses.is_empty() {
        return Err(RegistryError::InUse {
            id: format!("{}@{}", row.name, row.version),
            uses,
        }
        .into());
    }
    if !super::delete(&state.store, &row.id).await? {
        return Err(RegistryError::NotFound(format!("{}@{}", row.name, row.version)).into());
    }
    tracing::info!(component = %format!("{}@{}", row.name, row.version), owner = %row.owner_slug, "component deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A tenant's component quota and use (operator, or admin of the tenant).
#[utoipa::path(get, path = "/admin/tenants/{tenant}/component-quota", tag = "components",
    params(("tenant" = String, Path)),
    responses((status = 200, body = Quota), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope)))]
async fn get_quota(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(tenant): Path<String>,
) -> Result<Json<Quota>, ApiError> {
    let scope = tenants::admin_scope(&state.store, &actor, Some(&tenant)).await?;
    let quota = super::quota(&state.store, &scope.tenant_id, quota_defaults(&state)).await?;
    Ok(Json(quota))
}

/// Set a tenant's component quota (operator). Lowering it below what the tenant uses
/// refuses its next uploads; nothing stored is removed.
#[utoipa::path(put, path = "/admin/tenants/{tenant}/component-quota", tag = "components",
    params(("tenant" = String, Path)), request_body = QuotaBody,
    responses((status = 200, body = Quota), (status = 403, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
async fn put_quota(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(tenant): Path<String>,
    Json(body): Json<QuotaBody>,
) -> Result<Json<Quota>, ApiError> {
    actor.require_operator(&state.store).await?;
    if !(0..=10_000).contains(&body.max_count) {
        return Err(ApiError::validation("maxCount", "between 0 and 10000"));
    }
    if !(0..=1 << 40).contains(&body.max_bytes) {
        return Err(ApiError::validation("maxBytes", "between 0 and 1 TiB"));
    }
    let tenant_id = tenants::resolve(&state.store, Some(&tenant)).await?;
    super::set_quota(
        &state.store,
        &tenant_id,
        body.max_count,
        body.max_bytes,
        state.clock.now_ms(),
    )
    .await?;
    let quota = super::quota(&state.store, &tenant_id, quota_defaults(&state)).await?;
    tracing::info!(tenant = %tenant, max_count = body.max_count, max_bytes = body.max_bytes, "component quota set");
    Ok(Json(quota))
}
