//! The order path's read: the customer and the catalog lines of an order.
//!
//! Every order placement needs its customer row (VIP, age, order count, tags) and the
//! catalog rows its lines name (with their tags, vendor and category), fresh from the
//! database (prices, `active`, availability and attributes change under the admin API).
//! Read one request at a time that is one statement per order, and statements — not
//! rows — are what placement spends PostgreSQL's time on (perf and
//! pg_stat_statements on the order benchmark). Concurrent placements are therefore read
//! together through a [`Batcher`]: one statement (a `union all` of the customers, the
//! stock items named by id and the products named by sku) for all of them, each id list
//! as one array bind so the statement text never changes.

use std::collections::HashMap;

use super::{HOUR_MS, OrderError};
use crate::{
    catalog::lookup::{self, CatalogLine, LineRef},
    store::{Store, TextList, WritePool as _, batch::Batcher},
    with_pool,
};

/// Most orders read in one group.
pub const MAX_GROUP: usize = 256;
/// Groups read at once.
const LANES: usize = 1;

/// What the customer looks like to the hooks.
#[derive(Debug, Clone)]
pub struct CustomerRow {
    /// The tenant's slug.
    pub tenant_slug: String,
    /// VIP flag.
    pub vip: bool,
    /// Account creation, epoch ms.
    pub created_at: i64,
    /// Orders placed so far.
    pub order_count: i64,
    /// The tenant's tags on the customer (normalized, sorted; empty when none).
    pub tags: Vec<String>,
    /// Confirmed orders and what they cost, per currency (sorted by currency).
    pub confirmed: Vec<(String, i64, i64)>,
    /// Per SKU of this order's lines the customer bought recently: units in its confirmed
    /// orders of the last 24 hours and of the last 30 days (`customer_sku_hours`), plus
    /// those of its orders still pending.
    pub recent_units: HashMap<String, (i64, i64)>,
}

/// The shorter window of the recent-units figures: 24 hours.
pub const DAY_MS: i64 = 86_400_000;
/// The longer window: 30 days.
pub const RECENT_WINDOW_MS: i64 = 30 * DAY_MS;

/// One order's read.
#[derive(Debug)]
pub struct ReadRequest {
    /// The customer.
    pub user_id: String,
    /// The customer's tenant (rows of other tenants never match).
    pub tenant_id: String,
    /// The lines' references, in order.
    pub refs: Vec<LineRef>,
    /// The order time (epoch ms): the recent-units windows end here (a group's read
    /// uses its latest request's time).
    pub now_ms: i64,
}

/// The customer and, per reference, the catalog row it names.
pub type ReadResult = Result<(CustomerRow, Vec<Option<CatalogLine>>), OrderError>;

/// Handle to the read batcher.
#[derive(Clone, Debug)]
pub struct OrderReader {
    batcher: Batcher<ReadRequest, ReadResult>,
}

impl OrderReader {
    /// Starts the reader on `store`.
    pub fn start(store: Store) -> Self {
        let batcher = Batcher::start(MAX_GROUP, LANES, move |group: Vec<ReadRequest>| {
            let store = store.clone();
            async move {
                match read_group(&store, &group).await {
                    Ok(found) => group.iter().map(|r| found.answer(r)).collect(),
                    Err(error) => {
                        tracing::error!(%error, orders = group.len(), "order read failed");
                        group.iter().map(|_| Err(OrderError::GroupFailed)).collect()
                    }
                }
            }
        });
        Self { batcher }
    }

    /// Reads one order's customer and lines (with whatever other orders are waiting).
    pub async fn read(&self, request: ReadRequest) -> ReadResult {
        self.batcher.call_or_run(request).await?
    }
}

struct CustomerRecord {
    tenant_id: String,
    tenant_slug: String,
    vip: bool,
    created_at: i64,
    order_count: i64,
    tags: Vec<String>,
}

/// What the group's history branches found for one customer.
#[derive(Default)]
struct History {
    /// (currency, orders, spend), sorted by currency.
    confirmed: Vec<(String, i64, i64)>,
    /// sku → (units in 24 h, units in 30 days).
    units: HashMap<String, (i64, i64)>,
}

struct LineRecord {
    tenant_id: String,
    line: CatalogLine,
}

/// The rows a group's statements returned.
struct Found {
    customers: HashMap<String, CustomerRecord>,
    lines: Vec<LineRecord>,
    /// By user id (history rows are read for the group's users in their own tenants).
    history: HashMap<String, History>,
}

impl Found {
    fn answer(&self, request: &ReadRequest) -> ReadResult {
        let customer = self
            .customers
            .get(&request.user_id)
            .filter(|c| c.tenant_id == request.tenant_id)
            .ok_or(OrderError::AccountGone)?;
        let rows: Vec<CatalogLine> = self
            .lines
            .iter()
            .filter(|r| r.tenant_id == request.tenant_id)
            .filter(|r| request.refs.iter().any(|x| x.names(&r.line)))
            .map(|r| r.line.clone())
            .collect();
        let history = self.history.get(&request.user_id);
        let lines = lookup::match_refs(&request.refs, &rows);
        let recent_units = history
            .map(|h| {
                lines
                    .iter()
                    .flatten()
                    .filter_map(|line| h.units.get(&line.sku).map(|u| (line.sku.clone(), *u)))
                    .collect()
            })
            .unwrap_or_default();
        Ok((
            CustomerRow {
                tenant_slug: customer.tenant_slug.clone(),
                vip: customer.vip,
                created_at: customer.created_at,
                order_count: customer.order_count,
                tags: customer.tags.clone(),
                confirmed: history.map(|h| h.confirmed.clone()).unwrap_or_default(),
                recent_units,
            },
            lines,
        ))
    }
}

/// A catalog branch of the group's union: customer columns empty, the product's tags in
/// the shared `tags` column.
const LINE_COLUMNS: &str = "select null, p.tenant_id, null, null, null, null, p.tags, p.id, s.id, \
    p.sku, p.name, p.unit_price, p.currency, p.active, s.available, p.vendor, p.category \
    from products p join stock_items s on s.product_id = p.id where ";

/// One row of the group's union: a customer or a catalog line.
#[derive(sqlx::FromRow)]
struct GroupRow {
    user_id: Option<String>,
    tenant_id: String,
    tenant_slug: Option<String>,
    vip: Option<bool>,
    created_at: Option<i64>,
    order_count: Option<i64>,
    /// The customer's tags on a customer row, the product's on a catalog row: every
    /// branch has one list to give, so they share the column (of the same type in each
    /// branch, which a typed NULL of an array could not be on both backends).
    tags: TextList,
    product_id: Option<String>,
    stock_id: Option<String>,
    sku: Option<String>,
    name: Option<String>,
    unit_price: Option<i64>,
    currency: Option<String>,
    active: Option<bool>,
    available: Option<i64>,
    vendor: Option<String>,
    category: Option<String>,
}

async fn read_group(store: &Store, group: &[ReadRequest]) -> Result<Found, sqlx::Error> {
    let mut users: Vec<String> = group.iter().map(|r| r.user_id.clone()).collect();
    users.sort_unstable();
    users.dedup();
    let mut stock_ids = Vec::new();
    let mut skus = Vec::new();
    let mut sku_tenants = Vec::new();
    for request in group {
        for r in &request.refs {
            match r {
                LineRef::Stock(id) => stock_ids.push(id.clone()),
                LineRef::Sku(sku) => {
                    skus.push(sku.clone());
                    sku_tenants.push(request.tenant_id.clone());
                }
            }
        }
    }
    for list in [&mut stock_ids, &mut skus, &mut sku_tenants] {
        list.sort_unstable();
        list.dedup();
    }
    // The windows in whole clock hours: every bucket that overlaps the last 24 hours (30
    // days) counts, so a purchase up to an hour older may count too (a limit errs on the
    // strict side).
    let now = group.iter().map(|r| r.now_ms).max().unwrap_or_default();
    let since = |window: i64| (now - window) / HOUR_MS;
    // One statement, one round trip: the customers, then the stock items named by id,
    // then every (tenant, sku) pair of the group (rows of other pairs are filtered out per
    // request in `Found::answer`). Each branch uses its own index.
    let rows: Vec<GroupRow> = with_pool!(store, pool => {
        let mut q = sqlx::QueryBuilder::new(
            "select u.id as user_id, u.tenant_id, t.slug as tenant_slug, u.vip, u.created_at, u.order_count, \
             u.tags, cast(null as text) as product_id, cast(null as text) as stock_id, cast(null as text) as sku, \
             cast(null as text) as name, cast(null as bigint) as unit_price, cast(null as text) as currency, \
             cast(null as boolean) as active, cast(null as bigint) as available, \
             cast(null as text) as vendor, cast(null as text) as category \
             from users u join tenants t on t.id = u.tenant_id where ",
        );
        pool.push_any(&mut q, "u.id", users.clone());
        q.push(" union all ").push(LINE_COLUMNS);
        pool.push_any(&mut q, "s.id", stock_ids.clone());
        q.push(" union all ").push(LINE_COLUMNS);
        pool.push_any(&mut q, "p.tenant_id", sku_tenants.clone());
        q.push(" and ");
        pool.push_any(&mut q, "p.sku", skus.clone());
        // The customers' confirmed totals: one row per customer and currency (its order
        // count in `order_count`, its spend in `unit_price`), by primary key.
        q.push(" union all select ct.user_id, ct.tenant_id, null, null, null, ct.orders, ")
            .push(pool.empty_text_list())
            .push(
                ", null, null, null, null, ct.spend, ct.currency, null, null, null, null \
                 from customer_totals ct where ",
            );
        pool.push_any(&mut q, "ct.user_id", users.clone());
        // The customers' confirmed units of the group's SKUs (named by sku, or by stock
        // item through its product) from their hourly buckets: for each SKU an index
        // range of (user_id, sku, hour), at most 721 rows however often the customer
        // orders (an index-only scan on PostgreSQL, whose key includes `units`; SQLite's
        // table is the index). 30-day units in `unit_price`, 24-hour units in `available`.
        q.push(" union all select b.user_id, '', null, null, null, null, ")
            .push(pool.empty_text_list())
            .push(", null, null, b.sku, null, cast(sum(b.units) as bigint), null, null, \
                 cast(sum(case when b.hour >= ")
            .push_bind(since(DAY_MS))
            .push(" then b.units else 0 end) as bigint), null, null \
                 from (select p.sku from products p where ");
        pool.push_any(&mut q, "p.tenant_id", sku_tenants.clone());
        q.push(" and ");
        pool.push_any(&mut q, "p.sku", skus.clone());
        q.push(" union all select p.sku from stock_items s join products p on p.id = s.product_id where ");
        pool.push_any(&mut q, "s.id", stock_ids.clone());
        q.push(") k join customer_sku_hours b on b.sku = k.sku where ");
        pool.push_any(&mut q, "b.user_id", users.clone());
        q.push(" and b.hour >= ")
            .push_bind(since(RECENT_WINDOW_MS))
            .push(" group by b.user_id, b.sku");
        // Plus the units of the customers' orders still PENDING (accepted, not settled
        // yet), through the partial index of pending orders by customer (live work, not
        // history): a second order placed right after the first — a double click — sees
        // the first one's units. Same columns as the buckets' rows; `Found` adds them up.
        q.push(" union all select o.user_id, '', null, null, null, null, ")
            .push(pool.empty_text_list())
            .push(", null, null, l.sku, null, cast(sum(l.quantity) as bigint), null, null, \
                 cast(sum(case when o.created_at >= ")
            .push_bind(now - DAY_MS)
            .push(" then l.quantity else 0 end) as bigint), null, null \
                 from orders o join order_lines l on l.order_id = o.id where ");
        pool.push_any(&mut q, "o.user_id", users);
        q.push(" and o.status = 'PENDING' and o.created_at >= ")
            .push_bind(now - RECENT_WINDOW_MS)
            .push(" and l.sku in (select p.sku from products p where ");
        pool.push_any(&mut q, "p.tenant_id", sku_tenants.clone());
        q.push(" and ");
        pool.push_any(&mut q, "p.sku", skus);
        q.push(" union all select p.sku from stock_items s join products p on p.id = s.product_id where ");
        pool.push_any(&mut q, "s.id", stock_ids);
        q.push(") group by o.user_id, l.sku");
        q.build_query_as::<GroupRow>().fetch_all(pool).await?
    });
    let mut customers = HashMap::new();
    let mut lines = Vec::new();
    let mut history: HashMap<String, History> = HashMap::new();
    for row in rows {
        match row {
            GroupRow {
                user_id: Some(id),
                tenant_id,
                tenant_slug: Some(tenant_slug),
                vip: Some(vip),
                created_at: Some(created_at),
                order_count: Some(order_count),
                tags,
                ..
            } => {
                customers.insert(
                    id,
                    CustomerRecord {
                        tenant_id,
                        tenant_slug,
                        vip,
                        created_at,
                        order_count,
                        tags: tags.into_vec(),
                    },
                );
            }
            GroupRow {
                tenant_id,
                product_id: Some(product_id),
                stock_id: Some(stock_id),
                sku: Some(sku),
                name: Some(name),
                unit_price: Some(unit_price),
                currency: Some(currency),
                active: Some(active),
                available: Some(available),
                tags,
                vendor,
                category,
                ..
            } => lines.push(LineRecord {
                tenant_id,
                line: CatalogLine {
                    product_id,
                    stock_id,
                    sku,
                    name,
                    unit_price,
                    currency,
                    active,
                    available,
                    tags: tags.into_vec(),
                    vendor,
                    category,
                },
            }),
            GroupRow {
                user_id: Some(id),
                tenant_slug: None,
                sku: None,
                order_count: Some(orders),
                unit_price: Some(spend),
                currency: Some(currency),
                ..
            } => history
                .entry(id)
                .or_default()
                .confirmed
                .push((currency, orders, spend)),
            GroupRow {
                user_id: Some(id),
                product_id: None,
                sku: Some(sku),
                unit_price: Some(units_30d),
                available: Some(units_24h),
                ..
            } => {
                // A SKU's confirmed (bucket) and pending rows add up.
                let units = history.entry(id).or_default().units.entry(sku).or_default();
                units.0 += units_24h;
                units.1 += units_30d;
            }
            _ => {}
        }
    }
    for h in history.values_mut() {
        h.confirmed.sort_unstable();
    }
    Ok(Found {
        customers,
        lines,
        history,
    })
}
