//! The users admin API.

use axum::{extract::State, http::StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{Change, DisplayName, Email, UserRow, UserUpdate, UserView};
use crate::{
    auth::Role,
    http::{
        error::{ApiError, ErrorEnvelope},
        extract::{Json, Path, Query},
        pagination::{Page, PageQuery},
    },
    state::AppState,
    tags::Tags,
    tenants,
};

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(promote_vip))
        .routes(routes!(demote_vip))
}

/// Body of `PATCH /users/{email}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateUser {
    /// New role. Admins may grant `customer` and `admin`; only operators grant `operator`.
    pub role: Option<Role>,
    /// New VIP flag.
    pub vip: Option<bool>,
    /// New display name (1–100 characters, one line); `""` removes it.
    pub name: Option<String>,
    /// New customer tags, replacing the user's (`[]` removes them all): at most 32, each
    /// 1–64 characters of `a-z 0-9 - _ . :` once trimmed and lower-cased; duplicates count
    /// once, and they are stored sorted.
    pub tags: Option<Vec<String>>,
}

fn user_not_found(email: &str) -> ApiError {
    ApiError::not_found("USER_NOT_FOUND", "no such user in this tenant")
        .with_details(serde_json::json!({ "email": email }))
}

fn last_admin() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "LAST_ADMIN",
        "this is the tenant's last admin: make another user admin first",
    )
}

/// Loads the target user of an admin action, enforcing that admins do not manage operators.
async fn target(
    state: &AppState,
    scope: &tenants::AdminScope,
    raw_email: &str,
) -> Result<UserRow, ApiError> {
    let email = Email::parse(raw_email).map_err(|_| user_not_found(raw_email))?;
    let user = super::find_by_email(&state.store, &scope.tenant_id, email.as_str())
        .await?
        .ok_or_else(|| user_not_found(email.as_str()))?;
    if user.role() == Role::Operator && scope.actor_role != Role::Operator {
        return Err(ApiError::forbidden(
            "only operators manage operator accounts",
        ));
    }
    Ok(user)
}

async fn apply(
    state: &AppState,
    tenant_id: &str,
    user: &UserRow,
    change: &UserUpdate,
) -> Result<UserView, ApiError> {
    let now = state.clock.now_ms();
    match super::update(&state.store, tenant_id, &user.email, change, now).await? {
        Change::Done => {}
        Change::NotFound => return Err(user_not_found(&user.email)),
        Change::LastAdmin => return Err(last_admin()),
    }
    let row = super::find_by_email(&state.store, tenant_id, &user.email)
        .await?
        .ok_or_else(|| user_not_found(&user.email))?;
    Ok(row.into())
}

/// List a tenant's users (admin of the tenant, or operator).
#[utoipa::path(get, path = "/users", tag = "users", params(PageQuery, tenants::TenantQuery),
    responses((status = 200, body = Page<UserView>), (status = 403, body = ErrorEnvelope)))]
async fn list_users(
    State(state): State<AppState>,
    scope: tenants::AdminScope,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<UserView>>, ApiError> {
    let (rows, total) =
        super::list(&state.store, &scope.tenant_id, page.limit(), page.offset()).await?;
    Ok(Json(Page::new(
        page,
        rows.into_iter().map(Into::into).collect(),
        total,
    )))
}

/// Get a user by email (admin of the tenant, or operator).
#[utoipa::path(get, path = "/users/{email}", tag = "users", params(("email" = String, Path), tenants::TenantQuery),
    responses((status = 200, body = UserView), (status = 404, body = ErrorEnvelope)))]
async fn get_user(
    State(state): State<AppState>,
    scope: tenants::AdminScope,
    Path(email): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    let user = target(&state, &scope, &email).await?;
    Ok(Json(user.into()))
}

/// Change a user's role, VIP flag, name or tags (admin of the tenant, or operator).
#[utoipa::path(patch, path = "/users/{email}", tag = "users", params(("email" = String, Path), tenants::TenantQuery),
    request_body = UpdateUser,
    responses((status = 200, body = UserView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
              (status = 422, description = "`VALIDATION_FAILED` (`details.field`: `name`, `tags`), `INVALID_BODY`", body = ErrorEnvelope)))]
async fn update_user(
    State(state): State<AppState>,
    scope: tenants::AdminScope,
    Path(email): Path<String>,
    Json(body): Json<UpdateUser>,
) -> Result<Json<UserView>, ApiError> {
    let user = target(&state, &scope, &email).await?;
    let role = body.role.unwrap_or(user.role());
    if role == Role::Operator && scope.actor_role != Role::Operator {
        return Err(ApiError::forbidden(
            "only operators grant the operator role",
        ));
    }
    let name = match body.name.as_deref() {
        None => user.name.clone().map(DisplayName::trusted),
        Some(raw) => DisplayName::parse_optional(Some(raw))?,
    };
    let tags = body
        .tags
        .as_deref()
        .map(|raw| Tags::parse("tags", raw))
        .transpose()?;
    let vip = body.vip.unwrap_or(user.vip);
    let change = UserUpdate {
        role,
        vip,
        name,
        tags,
    };
    let view = apply(&state, &scope.tenant_id, &user, &change).await?;
    tracing::info!(target_user = %view.id, role = role.as_str(), vip, tags = ?view.tags, "user updated");
    Ok(Json(view))
}

/// Delete a user and its sessions (admin of the tenant, or operator).
#[utoipa::path(delete, path = "/users/{email}", tag = "users", params(("email" = String, Path), tenants::TenantQuery),
    responses((status = 204), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn delete_user(
    State(state): State<AppState>,
    scope: tenants::AdminScope,
    Path(email): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user = target(&state, &scope, &email).await?;
    if user.id == scope.actor.user_id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "CANNOT_DELETE_SELF",
            "an account cannot delete itself; ask another admin",
        ));
    }
    match super::delete(&state.store, &scope.tenant_id, &user.email).await? {
        Change::Done => {}
        Change::NotFound => return Err(user_not_found(&user.email)),
        Change::LastAdmin => return Err(last_admin()),
    }
    tracing::info!(target_user = %user.id, "user deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Make a user a VIP: its orders are processed before regular ones.
#[utoipa::path(post, path = "/users/{email}/promote-vip", tag = "users", params(("email" = String, Path), tenants::TenantQuery),
    responses((status = 200, body = UserView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn promote_vip(
    State(state): State<AppState>,
    scope: tenants::AdminScope,
    Path(email): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    set_vip(state, scope, email, true).await
}

/// Make a VIP a regular customer again.
#[utoipa::path(post, path = "/users/{email}/demote-vip", tag = "users", params(("email" = String, Path), tenants::TenantQuery),
    responses((status = 200, body = UserView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn demote_vip(
    State(state): State<AppState>,
    scope: tenants::AdminScope,
    Path(email): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    set_vip(state, scope, email, false).await
}

async fn set_vip(
    state: AppState,
    scope: tenants::AdminScope,
    email: String,
    vip: bool,
) -> Result<Json<UserView>, ApiError> {
    let user = target(&state, &scope, &email).await?;
    let change = UserUpdate {
        role: user.role(),
        vip,
        name: user.name.clone().map(DisplayName::trusted),
        tags: None,
    };
    let view = apply(&state, &scope.tenant_id, &user, &change).await?;
    tracing::info!(target_user = %view.id, vip, "vip flag changed");
    Ok(Json(view))
}
