//! Catalog routes: admin product and stock management, public showcase.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, header},
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    Currency, ListFilter, MinorUnits, Money, MovementView, NewProduct, ProductPatch, ProductView,
    ShowcaseItem, Sku, StockChange, StockView, parse_attribute, parse_description, parse_images,
    parse_name, parse_quantity, product_not_found,
};
use crate::{
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
        .routes(routes!(create_product, list_products))
        .routes(routes!(get_product, update_product))
        .routes(routes!(deactivate_product))
        .routes(routes!(receive_stock))
        .routes(routes!(adjust_stock))
        .routes(routes!(list_movements))
        .routes(routes!(showcase_list))
        .routes(routes!(showcase_get))
}

/// Body of `POST /products`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProduct {
    /// Unique in the tenant: 1-64 characters without spaces.
    pub sku: String,
    /// 1-200 characters.
    pub name: String,
    /// At most 5000 characters.
    pub description: Option<String>,
    /// At most 20 absolute http(s) URLs.
    pub images: Option<Vec<String>>,
    /// Unit price in minor units (cents), ≥ 0.
    pub unit_price: i64,
    /// ISO 4217 code, three upper-case letters.
    pub currency: String,
    /// For sale (default true).
    pub active: Option<bool>,
    /// Units in stock at creation (default 0).
    pub initial_stock: Option<i64>,
    /// Tags for the tenant's rules: at most 32, each 1-64 characters of `a-z 0-9 - _ . :`
    /// once trimmed and lower-cased; duplicates count once, stored sorted.
    pub tags: Option<Vec<String>>,
    /// Vendor (brand, maker): 1-128 characters, one line; blank is none.
    pub vendor: Option<String>,
    /// Category: 1-128 characters, one line; blank is none.
    pub category: Option<String>,
}

impl CreateProduct {
    fn parse(self) -> Result<NewProduct, ApiError> {
        Ok(NewProduct {
            sku: Sku::parse(&self.sku)?,
            name: parse_name(&self.name)?,
            description: parse_description(self.description.as_deref().unwrap_or_default())?,
            images: parse_images(self.images.as_deref().unwrap_or_default())?,
            price: Money {
                amount: MinorUnits::parse("unitPrice", self.unit_price)?,
                currency: Currency::parse(&self.currency)?,
            },
            active: self.active.unwrap_or(true),
            initial_stock: parse_quantity("initialStock", self.initial_stock.unwrap_or(0), 0)?,
            tags: Tags::parse("tags", self.tags.as_deref().unwrap_or_default())?,
            vendor: parse_attribute("vendor", self.vendor.as_deref().unwrap_or_default())?,
            category: parse_attribute("category", self.category.as_deref().unwrap_or_default())?,
        })
    }
}

/// Body of `PATCH /products/{id}`: the fields to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateProduct {
    /// 1-200 characters.
    pub name: Option<String>,
    /// At most 5000 characters; `""` clears it.
    pub description: Option<String>,
    /// Replaces the list: at most 20 absolute http(s) URLs.
    pub images: Option<Vec<String>>,
    /// Unit price in minor units, ≥ 0.
    pub unit_price: Option<i64>,
    /// ISO 4217 code.
    pub currency: Option<String>,
    /// For sale.
    pub active: Option<bool>,
    /// Replaces the tags (`[]` removes them all); the rules of `POST /products`.
    pub tags: Option<Vec<String>>,
    /// 1-128 characters; `""` removes it.
    pub vendor: Option<String>,
    /// 1-128 characters; `""` removes it.
    pub category: Option<String>,
}

impl UpdateProduct {
    fn parse(self) -> Result<ProductPatch, ApiError> {
        Ok(ProductPatch {
            name: self.name.as_deref().map(parse_name).transpose()?,
            description: self
                .description
                .as_deref()
                .map(parse_description)
                .transpose()?,
            images: self.images.as_deref().map(parse_images).transpose()?,
            unit_price: self
                .unit_price
                .map(|p| MinorUnits::parse("unitPrice", p))
                .transpose()?,
            currency: self.currency.as_deref().map(Currency::parse).transpose()?,
            active: self.active,
            tags: self
                .tags
                .as_deref()
                .map(|raw| Tags::parse("tags", raw))
                .transpose()?,
            vendor: self
                .vendor
                .as_deref()
                .map(|raw| parse_attribute("vendor", raw))
                .transpose()?,
            category: self
                .category
                .as_deref()
                .map(|raw| parse_attribute("category", raw))
                .transpose()?,
        })
    }
}

/// Body of `POST /products/{id}/stock/receive`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiveStock {
    /// Units received, > 0.
    pub quantity: i64,
    /// Free text, at most 500 characters (e.g. a delivery note number).
    pub reason: Option<String>,
}

/// Body of `POST /products/{id}/stock/adjust`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdjustStock {
    /// Units to add (positive) or remove (negative); never zero.
    pub delta: i64,
    /// Why, 1-500 characters (inventory count, breakage, …).
    pub reason: String,
}

/// Filters of the showcase list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ShowcaseQuery {
    /// `true` (default): only products for sale; `false`: inactive ones too.
    pub active: Option<bool>,
    /// `true`: only products with units available; `false` (default): all.
    pub in_stock: Option<bool>,
}

/// The showcase's tenant: the `X-Tenant` slug, the default tenant without one.
async fn showcase_tenant(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let slug = match headers.get("x-tenant") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| tenants::not_found(&String::from_utf8_lossy(value.as_bytes())))?,
        ),
    };
    let tenant_id = tenants::resolve(&state.store, slug).await?;
    tracing::Span::current().record("tenant", tenant_id.as_str());
    Ok(tenant_id)
}

/// Create a product and its stock item (admin of the tenant, or operator).
#[utoipa::path(post, path = "/products", tag = "catalog", params(tenants::TenantQuery),
    request_body = CreateProduct, security(("bearer" = []), ("cookie" = [])),
    responses((status = 201, body = ProductView, headers(("location" = String))),
              (status = 403, body = ErrorEnvelope),
              (status = 409, description = "`SKU_TAKEN`", body = ErrorEnvelope),
              (status = 422, description = "`VALIDATION_FAILED`, `INVALID_BODY`", body = ErrorEnvelope)))]
async fn create_product(
    State(state): State<AppState>,
    scope: tenants::AdminScope,
    Json(body): Json<CreateProduct>,
) -> Result<
    (
        StatusCode,
        [(header::HeaderName, String); 1],
        Json<ProductView>,
    ),
    ApiError,
> {
    let tenant_id = scope.tenant_id.clone();
    let product = body.parse()?;
    let row = super::create(
        &state.store,
        &tenant_id,
        &product,
        Some(&scope.actor.user_id),
        state.clock.now_ms(),
    )
    .await?;
    tracing::info!(product = %row.id, sku = %row.sku, "product created");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/products/{}", row.id))],
        Json(row.into()),
    ))
}

/// List a tenant's products, inactive ones included, oldest first (admin, or operator).
#[utoipa::path(get, path = "/products", tag = "catalog", params(PageQuery, tenants::TenantQuery),
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = Page<ProductView>), (status = 403, body = ErrorEnvelope)))]
async fn list_products(
    State(state): State<AppState>,
    scope: tenants::AdminScope,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<ProductView>>, ApiError> {
    let tenant_id = scope.tenant_id.clone();
    let (rows, total) = super::list(
        &state.store,
        &tenant_id,
        ListFilter::default(),
        page.limit(),
        page.offset(),
    )
    .await?;
    Ok(Json(Page::new(
        page,
        rows.into_iter().map(Into::into).collect(),
        total,
    )))
}

/// Get a product with its stock (admin, or operator).
#[utoipa::path(get, path = "/products/{id}", tag = "catalog",
    params(("id" = String, Path, description = "Product id"), tenants::TenantQuery),
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = ProductView),
              (status = 404, description = "`PRODUCT_NOT_FOUND`", body = ErrorEnvelope)))]
async fn get_product(
    State(state): State<AppState>,
    scope: tenants::AdminScope,
    Path(id): Path<String>,
) -> Result<Json<ProductView>, ApiError> {
    let tenant_id = scope.tenant_id.clone();
    let row = super::find(&state.store, &tenant_id, &id)
        .await?
        .ok_or_else(|| product_not_found(&id))?;
    Ok(Json(row.into()))
}

/// Change a product's name, description, images, price, currency, active flag, tags, vendor
/// or category (admin, or operator). The sku and the stock do not change here.
#[utoipa::path(patch, path = "/products/{id}", tag = "catalog",
    params(("id" = String, Path, description = "Product id"), tenants::TenantQuery),
    request_body = UpdateProduct, security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = ProductView),
              (status = 404, description = "`PRODUCT_NOT_FOUND`", body = ErrorEnvelope),
              (status = 422, description = "`VALIDATION_FAILED`, `INVALID_BODY`", body = ErrorEnvelope)))]
async fn update_product(
    State(state): State<AppState>,
    scope: tenants::AdminScope,
    Path(id): Path<String>,
    Json(body): Json<UpdateProduct>,
) -> Result<Json<ProductView>, ApiError> {
    let tenant_id = scope.tenant_id.clone();
    let patch = body.parse()?;
    let row = super::update(&state.store, &tenant_id, &id, &patch, state.clock.now_ms())
        .await?
        .ok_or_else(|| product_not_found(&id))?;
    tracing::info!(product = %row.id, "product updated");
    Ok(Json(row.into()))
}

/// Take a product off sale (idempotent): it leaves the showcase and cannot be ordered.
#[utoipa::path(post, path = "/products/{id}/deactivate", tag = "catalog",
    params(("id" = String, Path, description = "Product id"), tenants::TenantQuery),
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = ProductView),
              (status = 404, description = "`PRODUCT_NOT_FOUND`", body = ErrorEnvelope)))]
async fn deactivate_product(
    State(state): State<AppState>,
    scope: tenants::AdminScope,
    Path(id): Path<String>,
) -> Result<Json<ProductView>, ApiError> {
    let tenant_id = scope.tenant_id.clone();
    let row = super::deactivate(&state.store, &tenant_id, &id, state.clock.now_ms())
        .await?
        .ok_or_else(|| product_not_found(&id))?;
    tracing::info!(product = %row.id, "product deactivated");
    Ok(Json(row.into()))
}

/// Record goods received: `available` and `received` grow by `quantity`.
#[utoipa::path(post, path = "/products/{id}/stock/receive", tag = "catalog",
    params(("id" = String, Path, description = "Product id"), tenants::TenantQuery),
    request_body = ReceiveStock, security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = StockView),
              (status = 404, description = "`PRODUCT_NOT_FOUND`", body = ErrorEnvelope),
              (status = 422, description = "`VALIDATION_FAILED`, `INVALID_BODY`", body = ErrorEnvelope)))]
async fn receive_stock(
    State(state): State<AppState>,
    scope: tenants::AdminScope,
    Path(id): Path<String>,
    Json(body): Json<ReceiveStock>,
) -> Result<Json<StockView>, ApiError> {
    let change = StockChange::receive(body.quantity, body.reason.as_deref())?;
    apply_stock_change(state, scope, id, change).await
}

/// Correct the stock by `delta` units with a reason; refused with 409
/// `INSUFFICIENT_STOCK` when fewer than `-delta` units are available.
#[utoipa::path(post, path = "/products/{id}/stock/adjust", tag = "catalog",
    params(("id" = String, Path, description = "Product id"), tenants::TenantQuery),
    request_body = AdjustStock, security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = StockView),
              (status = 404, description = "`PRODUCT_NOT_FOUND`", body = ErrorEnvelope),
              (status = 409, description = "`INSUFFICIENT_STOCK`", body = ErrorEnvelope),
              (status = 422, description = "`VALIDATION_FAILED`, `INVALID_BODY`", body = ErrorEnvelope)))]
async fn adjust_stock(
    State(state): State<AppState>,
    scope: tenants::AdminScope,
    Path(id): Path<String>,
    Json(body): Json<AdjustStock>,
) -> Result<Json<StockView>, ApiError> {
    let change = StockChange::adjust(body.delta, &body.reason)?;
    apply_stock_change(state, scope, id, change).await
}

async fn apply_stock_change(
    state: AppState,
    scope: tenants::AdminScope,
    id: String,
    change: StockChange,
) -> Result<Json<StockView>, ApiError> {
    let tenant_id = scope.tenant_id.clone();
    let stock = super::change_stock(
        &state.store,
        &tenant_id,
        &id,
        &change,
        Some(&scope.actor.user_id),
        state.clock.now_ms(),
    )
    .await?;
    tracing::info!(product = %id, kind = change.kind.as_str(), delta = change.delta,
        available = stock.available, "stock changed");
    Ok(Json(stock.into()))
}

/// A product's stock movements, newest first: the audit trail (admin, or operator).
#[utoipa::path(get, path = "/products/{id}/stock/movements", tag = "catalog",
    params(("id" = String, Path, description = "Product id"), PageQuery, tenants::TenantQuery),
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = Page<MovementView>),
              (status = 404, description = "`PRODUCT_NOT_FOUND`", body = ErrorEnvelope)))]
async fn list_movements(
    State(state): State<AppState>,
    scope: tenants::AdminScope,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<MovementView>>, ApiError> {
    let tenant_id = scope.tenant_id.clone();
    let (rows, total) =
        super::movements(&state.store, &tenant_id, &id, page.limit(), page.offset())
            .await?
            .ok_or_else(|| product_not_found(&id))?;
    Ok(Json(Page::new(
        page,
        rows.into_iter().map(Into::into).collect(),
        total,
    )))
}

/// The public showcase: products with their live stock, oldest first. The tenant is the
/// `X-Tenant` header's slug (the default tenant without one).
#[utoipa::path(get, path = "/stock/products-with-stock", tag = "catalog",
    params(PageQuery, ShowcaseQuery,
           ("X-Tenant" = Option<String>, Header, description = "Tenant slug (default tenant when absent)")),
    responses((status = 200, body = Page<ShowcaseItem>),
              (status = 404, description = "`TENANT_NOT_FOUND`", body = ErrorEnvelope)))]
async fn showcase_list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(page): Query<PageQuery>,
    Query(query): Query<ShowcaseQuery>,
) -> Result<Json<Page<ShowcaseItem>>, ApiError> {
    let tenant_id = showcase_tenant(&state, &headers).await?;
    let filter = ListFilter {
        active_only: query.active.unwrap_or(true),
        in_stock_only: query.in_stock.unwrap_or(false),
    };
    let (rows, total) = super::list(
        &state.store,
        &tenant_id,
        filter,
        page.limit(),
        page.offset(),
    )
    .await?;
    Ok(Json(Page::new(
        page,
        rows.into_iter().map(Into::into).collect(),
        total,
    )))
}

/// One product of the public showcase; 404 `PRODUCT_NOT_FOUND` when it is missing,
/// inactive or another tenant's.
#[utoipa::path(get, path = "/stock/products-with-stock/{productId}", tag = "catalog",
    params(("productId" = String, Path, description = "Product id"),
           ("X-Tenant" = Option<String>, Header, description = "Tenant slug (default tenant when absent)")),
    responses((status = 200, body = ShowcaseItem),
              (status = 404, description = "`PRODUCT_NOT_FOUND`, `TENANT_NOT_FOUND`", body = ErrorEnvelope)))]
async fn showcase_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(product_id): Path<String>,
) -> Result<Json<ShowcaseItem>, ApiError> {
    let tenant_id = showcase_tenant(&state, &headers).await?;
    let row = super::find(&state.store, &tenant_id, &product_id)
        .await?
        .filter(|row| row.active)
        .ok_or_else(|| product_not_found(&product_id))?;
    Ok(Json(row.into()))
}
