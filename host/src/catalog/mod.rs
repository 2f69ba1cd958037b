//! The catalog: products (per tenant, unique sku, price in minor units, and the tags,
//! vendor and category tenant rules read) and their stock items (`available`, `reserved`,
//! `received`, `version`), the admin API, the public showcase and bulk import.
//!
//! Every product has exactly one stock item, created in the same transaction. Stock only
//! changes through guarded `update … where available + Δ >= 0` statements, each recorded
//! as a movement (the audit trail), so it never goes negative under concurrency.

pub mod import;
pub mod lookup;
pub mod money;
mod routes;

use serde::Serialize;
use utoipa::ToSchema;

pub use money::{Currency, Decimal, DecimalError, MinorUnits, Money, format_minor};
pub use routes::router;

use crate::{
    clock::rfc3339,
    http::error::ApiError,
    store::{Store, TextList, WritePool as _, is_unique_violation},
    tags::Tags,
    with_pool,
};

/// Largest quantity of one stock change (and of an initial stock).
pub const MAX_QUANTITY: i64 = 1_000_000_000;
/// Longest sku, in characters.
pub const MAX_SKU_CHARS: usize = 64;
/// Longest product name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 5000;
/// Most images of a product.
pub const MAX_IMAGES: usize = 20;
/// Longest stock-change reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Longest vendor or category, in characters.
pub const MAX_ATTRIBUTE_CHARS: usize = 128;

pub use crate::text::FieldError;

/// A stock keeping unit: unique within a tenant, case-sensitive, 1–64 characters without
/// whitespace or control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sku(String);

impl Sku {
    /// Parses a sku (surrounding whitespace is trimmed).
    /// It is NFKC-normalized and may hold no invisible character ([`crate::text::identifier`]):
    /// `ＭＵＧ－１` is `MUG-1`, and `MUG-1` with a zero-width space is refused.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let sku =
            crate::text::identifier(raw).map_err(|e| FieldError::new("sku", e.to_string()))?;
        let len = sku.chars().count();
        if (1..=MAX_SKU_CHARS).contains(&len)
            && !sku.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            Ok(Self(sku))
        } else {
            Err(FieldError::new(
                "sku",
                format!("1-{MAX_SKU_CHARS} characters without spaces"),
            ))
        }
    }

    /// The sku.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product name: trimmed, 1–200 characters, one line.
pub fn parse_name(raw: &str) -> Result<String, FieldError> {
    let name =
        crate::text::single_line(raw.trim()).map_err(|e| FieldError::new("name", e.to_string()))?;
    if (1..=MAX_NAME_CHARS).contains(&name.chars().count()) {
        Ok(name.to_owned())
    } else {
        Err(FieldError::new(
            "name",
            format!("1-{MAX_NAME_CHARS} characters"),
        ))
    }
}

/// A description: trimmed, at most 5000 characters, may be empty.
pub fn parse_description(raw: &str) -> Result<String, FieldError> {
    let description = crate::text::multi_line(raw.trim())
        .map_err(|e| FieldError::new("description", e.to_string()))?;
    if description.chars().count() <= MAX_DESCRIPTION_CHARS {
        Ok(description.to_owned())
    } else {
        Err(FieldError::new(
            "description",
            format!("at most {MAX_DESCRIPTION_CHARS} characters"),
        ))
    }
}

/// Image URLs: at most 20 absolute `http(s)` URLs of at most 2048 bytes.
pub fn parse_images(raw: &[String]) -> Result<Vec<String>, FieldError> {
    if raw.len() > MAX_IMAGES {
        return Err(FieldError::new(
            "images",
            format!("at most {MAX_IMAGES} images"),
        ));
    }
    raw.iter()
        .map(|image| {
            let image = image.trim();
            match url::Url::parse(image) {
                Ok(url) if image.len() <= 2048 && matches!(url.scheme(), "http" | "https") => {
                    Ok(image.to_owned())
                }
                _ => Err(FieldError::new(
                    "images",
                    format!("{image:?} is not an absolute http(s) URL of at most 2048 bytes"),
                )),
            }
        })
        .collect()
}

/// A vendor or a category (`field` names which): trimmed, one line, 1–128 characters;
/// blank is none.
pub fn parse_attribute(field: &'static str, raw: &str) -> Result<Option<String>, FieldError> {
    let value =
        crate::text::single_line(raw.trim()).map_err(|e| FieldError::new(field, e.to_string()))?;
    match value.chars().count() {
        0 => Ok(None),
        len if len <= MAX_ATTRIBUTE_CHARS => Ok(Some(value.to_owned())),
        _ => Err(FieldError::new(
            field,
            format!("1-{MAX_ATTRIBUTE_CHARS} characters"),
        )),
    }
}

/// A stock quantity between `min` and [`MAX_QUANTITY`].
pub fn parse_quantity(field: &'static str, value: i64, min: i64) -> Result<i64, FieldError> {
    if (min..=MAX_QUANTITY).contains(&value) {
        Ok(value)
    } else {
        Err(FieldError::new(
            field,
            format!("an integer between {min} and {MAX_QUANTITY}"),
        ))
    }
}

/// A stock-change reason: trimmed, one line, at most 500 characters; `required` refuses
/// empty.
pub fn parse_reason(raw: &str, required: bool) -> Result<String, FieldError> {
    let reason = crate::text::single_line(raw.trim())
        .map_err(|e| FieldError::new("reason", e.to_string()))?;
    let len = reason.chars().count();
    if len > MAX_REASON_CHARS || (required && len == 0) {
        Err(FieldError::new(
            "reason",
            format!(
                "{}at most {MAX_REASON_CHARS} characters",
                if required { "required, " } else { "" }
            ),
        ))
    } else {
        Ok(reason.to_owned())
    }
}

/// A product to create, parsed.
#[derive(Debug, Clone)]
pub struct NewProduct {
    /// Sku, unique in the tenant.
    pub sku: Sku,
    /// Name.
    pub name: String,
    /// Description (may be empty).
    pub description: String,
    /// Image URLs.
    pub images: Vec<String>,
    /// Unit price.
    pub price: Money,
    /// For sale.
    pub active: bool,
    /// Units in stock at creation (available and received).
    pub initial_stock: i64,
    /// Tags.
    pub tags: Tags,
    /// Vendor (brand, maker), if any.
    pub vendor: Option<String>,
    /// Category, if any.
    pub category: Option<String>,
}

/// Changes to a product, parsed; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct ProductPatch {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New image URLs (replace the list).
    pub images: Option<Vec<String>>,
    /// New unit price.
    pub unit_price: Option<MinorUnits>,
    /// New currency.
    pub currency: Option<Currency>,
    /// New active flag.
    pub active: Option<bool>,
    /// New tags (replace the list).
    pub tags: Option<Tags>,
    /// New vendor; `Some(None)` removes it.
    pub vendor: Option<Option<String>>,
    /// New category; `Some(None)` removes it.
    pub category: Option<Option<String>>,
}

/// A product to create, or to update when its sku exists (bulk import).
#[derive(Debug, Clone)]
pub struct Upsert {
    /// What to insert when the sku is new.
    pub new: NewProduct,
    /// What to change when it exists (stock never changes here).
    pub patch: ProductPatch,
}

/// The kind of a stock movement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MovementKind {
    /// Goods received (+).
    Receive,
    /// Manual correction (±), with a reason.
    Adjust,
    /// Units taken by an order (written by the order path).
    Reserve,
    /// Units given back by an order (written by the order path).
    Release,
}

impl MovementKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receive => "receive",
            Self::Adjust => "adjust",
            Self::Reserve => "reserve",
            Self::Release => "release",
        }
    }
}

/// A change of a product's stock by an admin: `delta` is added to `available` and to
/// `received`.
#[derive(Debug, Clone)]
pub struct StockChange {
    /// Receive or adjust.
    pub kind: MovementKind,
    /// Signed quantity.
    pub delta: i64,
    /// Why (required for adjustments).
    pub reason: String,
}

impl StockChange {
    /// Goods received: `quantity` in 1..=[`MAX_QUANTITY`].
    pub fn receive(quantity: i64, reason: Option<&str>) -> Result<Self, FieldError> {
        Ok(Self {
            kind: MovementKind::Receive,
            delta: parse_quantity("quantity", quantity, 1)?,
            reason: parse_reason(reason.unwrap_or_default(), false)?,
        })
    }

    /// A correction: `delta` non-zero, at most [`MAX_QUANTITY`] either way, with a reason.
    pub fn adjust(delta: i64, reason: &str) -> Result<Self, FieldError> {
        if delta == 0 || delta.unsigned_abs() > MAX_QUANTITY.unsigned_abs() {
            return Err(FieldError::new(
                "delta",
                format!("a non-zero integer between -{MAX_QUANTITY} and {MAX_QUANTITY}"),
            ));
        }
        Ok(Self {
            kind: MovementKind::Adjust,
            delta,
            reason: parse_reason(reason, true)?,
        })
    }
}

/// A product joined with its stock item, as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProductRow {
    /// Product id.
    pub id: String,
    /// Sku.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Image URLs as a JSON array.
    pub images: String,
    /// Unit price, minor units.
    pub unit_price: i64,
    /// Currency.
    pub currency: String,
    /// For sale.
    pub active: bool,
    /// Tags (normalized, sorted).
    pub tags: TextList,
    /// Vendor.
    pub vendor: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// Creation time, epoch ms.
    pub created_at: i64,
    /// Last change, epoch ms.
    pub updated_at: i64,
    /// Stock item id.
    pub stock_id: String,
    /// Units that can be ordered now.
    pub available: i64,
    /// Units held by orders.
    pub reserved: i64,
    /// Units ever received, net of adjustments.
    pub received: i64,
    /// Stock item version (bumped by every stock change).
    pub stock_version: i64,
}

impl ProductRow {
    fn image_list(&self) -> Vec<String> {
        serde_json::from_str(&self.images).unwrap_or_default()
    }
}

/// A product with its stock, as admins see it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    /// Product id.
    pub id: String,
    /// Sku.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Image URLs.
    pub images: Vec<String>,
    /// Unit price in minor units.
    pub unit_price: i64,
    /// Unit price as a decimal string in the currency's exponent, e.g. `"12.50"`.
    pub price: String,
    /// Currency (ISO 4217).
    pub currency: String,
    /// For sale.
    pub active: bool,
    /// Tags the tenant's rules read: lower case, sorted, at most 32 (`[]` when none).
    pub tags: Vec<String>,
    /// Vendor (`null` when none).
    pub vendor: Option<String>,
    /// Category (`null` when none).
    pub category: Option<String>,
    /// Stock item id.
    pub stock_id: String,
    /// Units that can be ordered now.
    pub available: i64,
    /// Units held by orders.
    pub reserved: i64,
    /// Units ever received, net of adjustments.
    pub received: i64,
    /// Stock item version.
    pub stock_version: i64,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change of the product (RFC 3339).
    pub updated_at: String,
}

impl From<ProductRow> for ProductView {
    fn from(row: ProductRow) -> Self {
        Self {
            images: row.image_list(),
            price: format_minor(row.unit_price, &row.currency),
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
            id: row.id,
            sku: row.sku,
            name: row.name,
            description: row.description,
            unit_price: row.unit_price,
            currency: row.currency,
            active: row.active,
            tags: row.tags.into_vec(),
            vendor: row.vendor,
            category: row.category,
            stock_id: row.stock_id,
            available: row.available,
            reserved: row.reserved,
            received: row.received,
            stock_version: row.stock_version,
        }
    }
}

/// A product as the public showcase shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShowcaseItem {
    /// Product id.
    pub id: String,
    /// Sku.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Image URLs.
    pub images: Vec<String>,
    /// Unit price in minor units.
    pub unit_price: i64,
    /// Unit price as a decimal string, e.g. `"12.50"`.
    pub price: String,
    /// Currency (ISO 4217).
    pub currency: String,
    /// For sale.
    pub active: bool,
    /// Stock item id (what an order line may name).
    pub stock_id: String,
    /// Units that can be ordered now.
    pub available: i64,
    /// Units held by orders.
    pub reserved: i64,
}

impl From<ProductRow> for ShowcaseItem {
    fn from(row: ProductRow) -> Self {
        Self {
            images: row.image_list(),
            price: format_minor(row.unit_price, &row.currency),
            id: row.id,
            sku: row.sku,
            name: row.name,
            description: row.description,
            unit_price: row.unit_price,
            currency: row.currency,
            active: row.active,
            stock_id: row.stock_id,
            available: row.available,
            reserved: row.reserved,
        }
    }
}

/// A stock item as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StockRow {
    /// Stock item id.
    pub stock_id: String,
    /// Product id.
    pub product_id: String,
    /// Units that can be ordered now.
    pub available: i64,
    /// Units held by orders.
    pub reserved: i64,
    /// Units ever received, net of adjustments.
    pub received: i64,
    /// Bumped by every change.
    pub version: i64,
    /// Last change, epoch ms.
    pub updated_at: i64,
}

/// A stock item as shown by the API.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockView {
    /// Stock item id.
    pub stock_id: String,
    /// Product id.
    pub product_id: String,
    /// Units that can be ordered now.
    pub available: i64,
    /// Units held by orders.
    pub reserved: i64,
    /// Units ever received, net of adjustments.
    pub received: i64,
    /// Bumped by every change.
    pub version: i64,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

impl From<StockRow> for StockView {
    fn from(row: StockRow) -> Self {
        Self {
            updated_at: rfc3339(row.updated_at),
            stock_id: row.stock_id,
            product_id: row.product_id,
            available: row.available,
            reserved: row.reserved,
            received: row.received,
            version: row.version,
        }
    }
}

/// A stock movement as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MovementRow {
    /// Id.
    pub id: String,
    /// Stock item id.
    pub stock_id: String,
    /// `receive`, `adjust`, `reserve` or `release`.
    pub kind: String,
    /// Signed quantity.
    pub quantity: i64,
    /// Why.
    pub reason: String,
    /// Who (a user id), when a person did it.
    pub actor_id: Option<String>,
    /// The order, for reservations and releases.
    pub order_id: Option<String>,
    /// When, epoch ms.
    pub created_at: i64,
}

/// A stock movement as shown by the API.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MovementView {
    /// Id.
    pub id: String,
    /// Stock item id.
    pub stock_id: String,
    /// `receive`, `adjust`, `reserve` or `release`.
    pub kind: String,
    /// Signed quantity.
    pub quantity: i64,
    /// Why.
    pub reason: String,
    /// Who (a user id), when a person did it.
    pub actor_id: Option<String>,
    /// The order, for reservations and releases.
    pub order_id: Option<String>,
    /// When (RFC 3339).
    pub created_at: String,
}

impl From<MovementRow> for MovementView {
    fn from(row: MovementRow) -> Self {
        Self {
            created_at: rfc3339(row.created_at),
            id: row.id,
            stock_id: row.stock_id,
            kind: row.kind,
            quantity: row.quantity,
            reason: row.reason,
            actor_id: row.actor_id,
            order_id: row.order_id,
        }
    }
}

/// Why a catalog write failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// No such product in the tenant (also: it belongs to another tenant).
    #[error("no such product in this tenant")]
    ProductNotFound(String),
    /// The tenant already has a product with this sku.
    #[error("a product with sku {0:?} exists in this tenant")]
    SkuTaken(String),
    /// The change would make `available` negative.
    #[error("not enough stock: {available} available, change of {delta}")]
    InsufficientStock {
        /// Units available when the change was refused.
        available: i64,
        /// The refused change.
        delta: i64,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// 404 `PRODUCT_NOT_FOUND`.
pub fn product_not_found(id: &str) -> ApiError {
    ApiError::not_found("PRODUCT_NOT_FOUND", "no such product in this tenant")
        .with_details(serde_json::json!({ "productId": id }))
}

impl From<CatalogError> for ApiError {
    fn from(err: CatalogError) -> Self {
        use axum::http::StatusCode;
        match err {
            CatalogError::ProductNotFound(id) => product_not_found(&id),
            CatalogError::SkuTaken(ref sku) => {
                ApiError::new(StatusCode::CONFLICT, "SKU_TAKEN", err.to_string())
                    .with_details(serde_json::json!({ "sku": sku }))
            }
            CatalogError::InsufficientStock { available, delta } => {
                ApiError::new(StatusCode::CONFLICT, "INSUFFICIENT_STOCK", err.to_string())
                    .with_details(serde_json::json!({ "available": available, "delta": delta }))
            }
            CatalogError::Db(e) => e.into(),
        }
    }
}

/// Which products a list holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListFilter {
    /// Only products for sale.
    pub active_only: bool,
    /// Only products with `available > 0`.
    pub in_stock_only: bool,
}

const SELECT_PRODUCT: &str = "select p.id, p.sku, p.name, p.description, p.images, \
     p.unit_price, p.currency, p.active, p.tags, p.vendor, p.category, p.created_at, \
     p.updated_at, s.id as stock_id, \
     s.available, s.reserved, s.received, s.version as stock_version \
     from products p join stock_items s on s.product_id = p.id";

/// `null` keeps a column; for the nullable vendor and category, `''` (never a stored
/// value: they are 1–128 characters) sets NULL.
const UPDATE_PRODUCT: &str = "update products set name = coalesce($1, name), \
     description = coalesce($2, description), images = coalesce($3, images), \
     unit_price = coalesce($4, unit_price), currency = coalesce($5, currency), \
     active = coalesce($6, active), tags = coalesce($7, tags), \
     vendor = nullif(coalesce($8, vendor), ''), category = nullif(coalesce($9, category), ''), \
     updated_at = $10 where tenant_id = $11";

const STOCK_COLUMNS: &str =
    "id as stock_id, product_id, available, reserved, received, version, updated_at";

/// Appends a stock movement on `$tx`.
macro_rules! insert_movement {
    ($tx:ident, $tenant_id:expr, $stock_id:expr, $kind:expr, $quantity:expr, $reason:expr, $actor:expr, $now:expr) => {
        sqlx::query(
            "insert into stock_movements (id, tenant_id, stock_id, kind, quantity, reason, \
             actor_id, order_id, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $7, null, $8, $8)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind($tenant_id)
        .bind($stock_id)
        .bind($kind.as_str())
        .bind($quantity)
        .bind($reason)
        .bind($actor)
        .bind($now)
        .execute(&mut *$tx)
        .await?
    };
}

/// Inserts a product, its stock item and, for a positive initial stock, its `receive`
/// movement, on `$tx` (a transaction of either backend). Evaluates to the product id.
macro_rules! insert_product {
    ($tx:ident, $tenant_id:expr, $product:expr, $actor:expr, $now:expr) => {{
        let product: &NewProduct = $product;
        let product_id = uuid::Uuid::now_v7().to_string();
        let stock_id = uuid::Uuid::now_v7().to_string();
        let inserted = sqlx::query(
            "insert into products (id, tenant_id, sku, name, description, images, unit_price, \
             currency, active, tags, vendor, category, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
        )
        .bind(&product_id)
        .bind($tenant_id)
        .bind(product.sku.as_str())
        .bind(&product.name)
        .bind(&product.description)
        .bind(serde_json::to_string(&product.images).unwrap_or_else(|_| "[]".into()))
        .bind(product.price.amount.get())
        .bind(product.price.currency.as_str())
        .bind(product.active)
        .bind(product.tags.stored())
        .bind(product.vendor.as_deref())
        .bind(product.category.as_deref())
        .bind($now)
        .execute(&mut *$tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e, "products_tenant_sku_key", "products.sku") => {
                return Err(CatalogError::SkuTaken(product.sku.as_str().to_owned()));
            }
            other => other?,
        };
        sqlx::query(
            "insert into stock_items (id, tenant_id, product_id, available, reserved, received, \
             version, created_at, updated_at) values ($1, $2, $3, $4, 0, $4, 0, $5, $5)",
        )
        .bind(&stock_id)
        .bind($tenant_id)
        .bind(&product_id)
        .bind(product.initial_stock)
        .bind($now)
        .execute(&mut *$tx)
        .await?;
        if product.initial_stock > 0 {
            insert_movement!(
                $tx,
                $tenant_id,
                &stock_id,
                MovementKind::Receive,
                product.initial_stock,
                "initial stock",
                $actor,
                $now
            );
        }
        product_id
    }};
}

/// Runs [`UPDATE_PRODUCT`] for `$patch`, the row chosen by `and $key = $12`, on `$exec`.
macro_rules! update_product {
    ($exec:expr, $key:literal, $value:expr, $tenant_id:expr, $patch:expr, $now:expr) => {{
        let patch: &ProductPatch = $patch;
        let images = patch
            .images
            .as_ref()
            .map(|i| serde_json::to_string(i).unwrap_or_else(|_| "[]".into()));
        // A removal (`Some(None)`) travels as '', which the statement turns into NULL.
        let cleared = |value: &Option<Option<String>>| {
            value
                .as_ref()
                .map(|v| v.as_deref().unwrap_or_default().to_owned())
        };
        sqlx::query(&format!("{UPDATE_PRODUCT} and {} = $12", $key))
            .bind(patch.name.as_deref())
            .bind(patch.description.as_deref())
            .bind(images)
            .bind(patch.unit_price.map(MinorUnits::get))
            .bind(patch.currency.as_ref().map(Currency::as_str))
            .bind(patch.active)
            .bind(patch.tags.as_ref().map(Tags::stored))
            .bind(cleared(&patch.vendor))
            .bind(cleared(&patch.category))
            .bind($now)
            .bind($tenant_id)
            .bind($value)
            .execute($exec)
            .await?
            .rows_affected()
    }};
}

/// Creates a product with its stock item (and a `receive` movement for a positive
/// initial stock) in one transaction.
pub async fn create(
    store: &Store,
    tenant_id: &str,
    product: &NewProduct,
    actor_id: Option<&str>,
    now: i64,
) -> Result<ProductRow, CatalogError> {
    let sql = format!("{SELECT_PRODUCT} where p.id = $1");
    with_pool!(store, pool => {
        let mut tx = pool.begin_write().await?;
        let id = insert_product!(tx, tenant_id, product, actor_id, now);
        let row = sqlx::query_as::<_, ProductRow>(&sql)
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row)
    })
}

/// Looks a product up by id within a tenant.
pub async fn find(
    store: &Store,
    tenant_id: &str,
    id: &str,
) -> Result<Option<ProductRow>, sqlx::Error> {
    let sql = format!("{SELECT_PRODUCT} where p.tenant_id = $1 and p.id = $2");
    with_pool!(store, pool => sqlx::query_as::<_, ProductRow>(&sql)
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await)
}

/// One page of a tenant's products, oldest first, and how many match `filter`.
pub async fn list(
    store: &Store,
    tenant_id: &str,
    filter: ListFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ProductRow>, i64), sqlx::Error> {
    let mut condition = String::from("p.tenant_id = $1");
    if filter.active_only {
        condition.push_str(" and p.active");
    }
    if filter.in_stock_only {
        condition.push_str(" and s.available > 0");
    }
    let sql = format!(
        "{SELECT_PRODUCT} where {condition} order by p.created_at, p.id limit $2 offset $3"
    );
    let count = format!(
        "select count(*) from products p join stock_items s on s.product_id = p.id \
         where {condition}"
    );
    with_pool!(store, pool => {
        let rows = sqlx::query_as::<_, ProductRow>(&sql)
            .bind(tenant_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?;
        let total: i64 = sqlx::query_scalar(&count).bind(tenant_id).fetch_one(pool).await?;
        Ok((rows, total))
    })
}

/// Applies `patch` to a product; `None` when the tenant has no such product.
pub async fn update(
    store: &Store,
    tenant_id: &str,
    id: &str,
    patch: &ProductPatch,
    now: i64,
) -> Result<Option<ProductRow>, sqlx::Error> {
    let affected =
        with_pool!(store, pool => update_product!(pool, "id", id, tenant_id, patch, now));
    if affected == 0 {
        return Ok(None);
    }
    find(store, tenant_id, id).await
}

/// Takes a product off sale; idempotent (`updated_at` moves only on the first call).
pub async fn deactivate(
    store: &Store,
    tenant_id: &str,
    id: &str,
    now: i64,
) -> Result<Option<ProductRow>, sqlx::Error> {
    let affected = with_pool!(store, pool => sqlx::query(
        "update products set updated_at = case when active then $1 else updated_at end, \
         active = $2 where tenant_id = $3 and id = $4",
    )
    .bind(now)
    .bind(false)
    .bind(tenant_id)
    .bind(id)
    .execute(pool)
    .await?
    .rows_affected());
    if affected == 0 {
        return Ok(None);
    }
    find(store, tenant_id, id).await
}

/// Applies a stock change to a product's stock item and records the movement, in one
/// transaction. The guard is in the `update` itself (`available + Δ >= 0`), so
/// concurrent changes can never drive the stock negative.
pub async fn change_stock(
    store: &Store,
    tenant_id: &str,
    product_id: &str,
    change: &StockChange,
    actor_id: Option<&str>,
    now: i64,
) -> Result<StockRow, CatalogError> {
    let update = format!(
        "update stock_items set available = available + $1, received = received + $1, \
         version = version + 1, updated_at = $2 \
         where tenant_id = $3 and product_id = $4 and available + $1 >= 0 \
         returning {STOCK_COLUMNS}"
    );
    with_pool!(store, pool => {
        let mut tx = pool.begin_write().await?;
        let updated = sqlx::query_as::<_, StockRow>(&update)
            .bind(change.delta)
            .bind(now)
            .bind(tenant_id)
            .bind(product_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(stock) = updated else {
            // Only to tell the two refusals apart; nothing is written after this read.
            let available: Option<i64> = sqlx::query_scalar(
                "select available from stock_items where tenant_id = $1 and product_id = $2",
            )
            .bind(tenant_id)
            .bind(product_id)
            .fetch_optional(&mut *tx)
            .await?;
            return Err(match available {
                None => CatalogError::ProductNotFound(product_id.to_owned()),
                Some(available) => CatalogError::InsufficientStock {
                    available,
                    delta: change.delta,
                },
            });
        };
        insert_movement!(
            tx,
            tenant_id,
            &stock.stock_id,
            change.kind,
            change.delta,
            &change.reason,
            actor_id,
            now
        );
        tx.commit().await?;
        Ok(stock)
    })
}

/// One page of a product's stock movements, newest first, and their count; `None` when
/// the tenant has no such product.
pub async fn movements(
    store: &Store,
    tenant_id: &str,
    product_id: &str,
    limit: i64,
    offset: i64,
) -> Result<Option<(Vec<MovementRow>, i64)>, sqlx::Error> {
    with_pool!(store, pool => {
        let stock_id: Option<String> = sqlx::query_scalar(
            "select id from stock_items where tenant_id = $1 and product_id = $2",
        )
        .bind(tenant_id)
        .bind(product_id)
        .fetch_optional(pool)
        .await?;
        let Some(stock_id) = stock_id else {
            return Ok(None);
        };
        let rows = sqlx::query_as::<_, MovementRow>(
            "select id, stock_id, kind, quantity, reason, actor_id, order_id, created_at \
             from stock_movements where tenant_id = $1 and stock_id = $2 \
             order by created_at desc, id desc limit $3 offset $4",
        )
        .bind(tenant_id)
        .bind(&stock_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "select count(*) from stock_movements where tenant_id = $1 and stock_id = $2",
        )
        .bind(tenant_id)
        .bind(&stock_id)
        .fetch_one(pool)
        .await?;
        Ok(Some((rows, total)))
    })
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertSummary {
    /// Products created (with their initial stock).
    pub created: usize,
    /// Existing products whose fields were rewritten (their stock untouched).
    pub updated: usize,
}

/// Creates the products whose sku is new and updates the others, all in one transaction:
/// either every item is written or none is. Stock is set only on creation.
pub async fn upsert_by_sku(
    store: &Store,
    tenant_id: &str,
    items: &[Upsert],
    now: i64,
) -> Result<UpsertSummary, CatalogError> {
    upsert_by_sku_with_progress(store, tenant_id, items, now, |_| {}).await
}

/// [`upsert_by_sku`], calling `progress` with the number of items written so far after
/// each item (the command line draws its bar from it; nothing is committed before the
/// end).
pub async fn upsert_by_sku_with_progress(
    store: &Store,
    tenant_id: &str,
    items: &[Upsert],
    now: i64,
    progress: impl Fn(u64),
) -> Result<UpsertSummary, CatalogError> {
    let mut summary = UpsertSummary::default();
    let actor: Option<&str> = None;
    with_pool!(store, pool => {
        let mut tx = pool.begin_write().await?;
        for (done, item) in (1u64..).zip(items) {
            let sku = item.new.sku.as_str();
            if update_product!(&mut *tx, "sku", sku, tenant_id, &item.patch, now) == 1 {
                summary.updated += 1;
            } else {
                insert_product!(tx, tenant_id, &item.new, actor, now);
                summary.created += 1;
            }
            progress(done);
        }
        tx.commit().await?;
    });
    Ok(summary)
}
