//! Orders: placement through the tenant's policy hooks (`place`), processing by queue
//! workers (`process`), cancellation and status as JSON or server-sent events (`routes`).
//!
//! Lifecycle: `PENDING` (accepted, priced, queued) → `CONFIRMED` (stock reserved for every
//! line) or `FAILED` (with a reason: `OUT_OF_STOCK`, `PRODUCT_INACTIVE`,
//! `RETRIES_EXHAUSTED`); `PENDING` or `CONFIRMED` → `CANCELLED` (reserved stock released).
//! A dead letter's order (FAILED `RETRIES_EXHAUSTED`) goes back to `PENDING` when an admin
//! retries it, or stays FAILED with `DISCARDED` (see `queue::dead_letters`).

/// Appends a status change to `order_events` (a macro: the executor is a different
/// concrete type per backend). Single-row: batch settlement and the order writer insert
/// their events in multi-row statements.
macro_rules! record_event {
    ($executor:expr, $order_id:expr, $tenant_id:expr, $status:expr, $reason:expr, $now:expr) => {
        sqlx::query(
            "insert into order_events (order_id, tenant_id, status, reason, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $5)",
        )
        .bind($order_id.as_str())
        .bind($tenant_id.as_str())
        .bind($status.as_str())
        .bind($reason)
        .bind($now)
        .execute($executor)
        .await
    };
}
// The dead-letter service (`queue::dead_letters`) records its status changes with it too.
pub(crate) use record_event;

pub mod decision;
pub mod history;
mod place;
pub mod process;
pub mod reader;
mod routes;
pub mod writer;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

use crate::{
    clock::rfc3339,
    policy::types::{CodeRejection, Discount, Quote},
    state::AppState,
};

/// Deletes expired idempotency keys (the workers do it once a minute); returns how many.
pub async fn sweep_expired_keys(
    ctx: impl Into<crate::state::WorkerContext>,
) -> Result<u64, sqlx::Error> {
    let ctx = ctx.into();
    crate::idempotency::sweep_expired(
        &ctx.store,
        ctx.clock.now_ms(),
        ctx.config.idempotency_ttl_ms(),
    )
    .await
}

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    place::router()
        .merge(routes::router())
        .merge(decision::router())
}

/// Why the order store could not serve a placement.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// The customer's row is gone (deleted since its token was issued).
    #[error("the account no longer exists")]
    AccountGone,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// The database failed for a whole group of concurrent placements (logged once, for
    /// the group).
    #[error("the database failed for this group of orders")]
    GroupFailed,
    /// The batch task stopped (the service is shutting down).
    #[error(transparent)]
    Stopped(#[from] crate::store::batch::Stopped),
}

impl From<OrderError> for crate::http::error::ApiError {
    fn from(err: OrderError) -> Self {
        match err {
            OrderError::AccountGone => Self::unauthenticated("the account no longer exists"),
            other => Self::unavailable(other),
        }
    }
}

/// An order's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum OrderStatus {
    /// Accepted and queued.
    Pending,
    /// Stock reserved.
    Confirmed,
    /// Not fulfilled (see the reason).
    Failed,
    /// Cancelled by the customer or an admin.
    Cancelled,
}

impl OrderStatus {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Confirmed => "CONFIRMED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Result<Self, UnknownStatus> {
        match s {
            "PENDING" => Ok(Self::Pending),
            "CONFIRMED" => Ok(Self::Confirmed),
            "FAILED" => Ok(Self::Failed),
            "CANCELLED" => Ok(Self::Cancelled),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

/// A stored status this build does not know: a bug or a newer writer. It fails the read
/// (logged, 500) instead of being shown as some other status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown order status {0:?} in the database")]
pub struct UnknownStatus(pub String);

impl TryFrom<String> for OrderStatus {
    type Error = UnknownStatus;

    fn try_from(stored: String) -> Result<Self, UnknownStatus> {
        Self::parse(&stored)
    }
}

/// An order row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    /// Id.
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Customer.
    pub user_id: String,
    /// Status (read as a typed value: an unknown stored status fails the read).
    #[sqlx(try_from = "String")]
    pub status: OrderStatus,
    /// Failure reason.
    pub reason: Option<String>,
    /// Queue priority.
    pub priority: i64,
    /// Charged total, minor units.
    pub total: i64,
    /// Currency.
    pub currency: String,
    /// What the client expected to pay.
    pub expected_total: Option<i64>,
    /// The quote, JSON.
    pub quote: String,
    /// Components used, JSON.
    pub components: String,
    /// Created, epoch ms.
    pub created_at: i64,
    /// Changed, epoch ms.
    pub updated_at: i64,
    /// Settled, epoch ms.
    pub final_at: Option<i64>,
}

/// An order line row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LineRow {
    /// Position in the order.
    pub line_no: i32,
    /// Product.
    pub product_id: String,
    /// Stock item.
    pub stock_id: String,
    /// Sku.
    pub sku: String,
    /// Quantity.
    pub quantity: i64,
    /// Charged unit price.
    pub unit_price: i64,
    /// Quantity × unit price.
    pub subtotal: i64,
}

/// A line as shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineView {
    /// Position in the order (0-based).
    pub line_no: i32,
    /// Product.
    pub product_id: String,
    /// Stock item.
    pub stock_id: String,
    /// Sku.
    pub sku: String,
    /// Quantity.
    pub quantity: i64,
    /// Charged unit price, minor units.
    pub unit_price: i64,
    /// Quantity × unit price, minor units.
    pub subtotal: i64,
}

/// Which component served a hook for this order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentUsed {
    /// Hook.
    pub hook: String,
    /// `name@version`.
    pub component: String,
    /// sha256 of the component.
    pub sha256: String,
    /// The tenant's binding revision, when a database binding served the hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Whether the built-in answered after the bound component failed.
    pub fell_back: bool,
    /// Whether an operator's `X-Policy-Override` chose the component (quotes only: a
    /// real order never runs on an override).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overridden: bool,
    /// Why this component served: `stable`, `canary`, `fallback`, `override`, … (absent
    /// on orders placed before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<crate::policy::runtime::ServedBy>,
}

/// An order as shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    /// Id.
    pub id: String,
    /// Status.
    pub status: OrderStatus,
    /// Why it failed (`OUT_OF_STOCK`, `PRODUCT_INACTIVE`, `RETRIES_EXHAUSTED`, `DISCARDED`).
    pub reason: Option<String>,
    /// Queue priority (higher is processed first).
    pub priority: i64,
    /// Charged total, minor units — the pricing component's, never the client's.
    pub total: i64,
    /// Currency.
    pub currency: String,
    /// What the client said it expected to pay.
    pub expected_total: Option<i64>,
    /// The lines.
    pub lines: Vec<LineView>,
    /// Discounts with their reasons (a redeemed code's discount names it in
    /// `discountCode`).
    pub discounts: Vec<Discount>,
    /// The discount codes sent that were not applied, each with its reason.
    pub rejected_codes: Vec<CodeRejection>,
    /// The components that decided, per hook.
    pub components: Vec<ComponentUsed>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

impl OrderView {
    /// Builds the view from stored rows.
    pub fn from_rows(order: OrderRow, lines: Vec<LineRow>) -> Self {
        let (discounts, rejected_codes) = serde_json::from_str::<Quote>(&order.quote)
            .map(|q| (q.discounts, q.rejected_codes))
            .unwrap_or_default();
        let components = serde_json::from_str(&order.components).unwrap_or_default();
        Self {
            status: order.status,
            id: order.id,
            reason: order.reason,
            priority: order.priority,
            total: order.total,
            currency: order.currency,
            expected_total: order.expected_total,
            lines: lines
                .into_iter()
                .map(|l| LineView {
                    line_no: l.line_no,
                    product_id: l.product_id,
                    stock_id: l.stock_id,
                    sku: l.sku,
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                    subtotal: l.subtotal,
                })
                .collect(),
            discounts,
            rejected_codes,
            components,
            created_at: rfc3339(order.created_at),
            updated_at: rfc3339(order.updated_at),
        }
    }
}

/// One clock hour: the bucket of `customer_sku_hours` (a customer's confirmed units per
/// SKU, for the WIT 1.1 context's `units-last24h` / `units-last30d`).
pub const HOUR_MS: i64 = 3_600_000;
/// How long `customer_sku_hours` rows are kept: the longest window (30 days) and a day.
pub const SKU_HOURS_KEPT_MS: i64 = 31 * 86_400_000;

/// Deletes the `customer_sku_hours` buckets no window reaches any more (by the `hour`
/// index); returns how many went. Run by the workers' housekeeping.
pub async fn sweep_old_sku_hours(
    store: &crate::store::Store,
    now: i64,
) -> Result<u64, sqlx::Error> {
    use crate::store::WritePool as _;
    crate::with_pool!(store, pool => {
        let _turn = pool.write_turn().await;
        sqlx::query("delete from customer_sku_hours where hour < $1")
            .bind((now - SKU_HOURS_KEPT_MS) / HOUR_MS)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })
}

/// Columns of [`OrderRow`].
pub const ORDER_COLUMNS: &str = "id, tenant_id, user_id, status, reason, priority, total, currency, \
     expected_total, quote, components, created_at, updated_at, final_at";

/// Columns of [`LineRow`].
pub const LINE_COLUMNS: &str = "line_no, product_id, stock_id, sku, quantity, unit_price, subtotal";
