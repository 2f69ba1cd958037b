//! History preload: N already-settled orders written straight into a tenant's tables, so a
//! benchmark or a plan test measures the order path on a database that has a past
//! (issue 14: "cost flat in history").
//!
//! What one history order leaves behind is what a real one leaves once settled
//! (`place.rs`, `writer.rs`, `process.rs`, `routes.rs`): the order row (~90 % CONFIRMED,
//! ~6 % FAILED `OUT_OF_STOCK`/`PRODUCT_INACTIVE`, ~4 % CANCELLED, half of those after
//! their confirmation), 1–3 lines, its events (PENDING and what followed), the stock
//! movements of confirmed lines (reserve, and release when cancelled), a decision log for
//! orders still inside the decision retention, and an idempotency key for half the orders
//! still inside the key lifetime. Each customer's `order_count` is raised by its history
//! orders, and each stock row's `reserved` and `received` by the quantities its history
//! orders still hold (with one `receive` movement per stock row and chunk), so `available`
//! is unchanged and `reserved` still equals what confirmed orders hold.
//!
//! Not written, because a settled order leaves none behind: jobs (a settled job is
//! deleted; dead letters are an operator's queue to empty) and outbox rows (deleted once
//! Redis has the job). Orders are spread evenly over the span before `now`, with UUIDv7
//! ids of their own creation time, so ids stay time-ordered and a run's orders (ids from
//! its own start) are told apart from history by `id >= …` on the primary key.
//!
//! Rows are generated here and written with the store's multi-row inserts
//! ([`WritePool::push_rows`]: `unnest` of arrays on PostgreSQL, `json_each` on SQLite),
//! one transaction per chunk, so the same code serves both backends; on PostgreSQL the
//! tables are vacuumed and ANALYZEd at the end so plans see their size. The order writer's batching is
//! not used: it would enqueue a job per order and run the policy hooks.

use std::collections::{BTreeMap, HashMap};

use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use sha2::{Digest as _, Sha256};

use super::{ComponentUsed, LineRow, OrderRow, OrderStatus, OrderView, decision};
use crate::{
    auth::Role,
    catalog,
    policy::{
        runtime::ServedBy,
        types::{Customer, Hook, LinePrice, OrderContext, OrderLine, Quote},
    },
    store::{Col, Store, WritePool as _},
    tenants, users, with_pool,
};

/// One day, ms.
pub const DAY_MS: i64 = 86_400_000;

/// Customers a tenant gets at least (created when it has fewer).
pub const MIN_CUSTOMERS: usize = 100;

/// Products a tenant gets when it has none with stock.
pub const NEW_PRODUCTS: usize = 20;

/// The tables that keep a row (or several) for every order ever placed: the history. No
/// statement of the order path may read them by a sequential scan (`tests/api/plans.rs`,
/// the order bench).
pub const HISTORY_TABLES: [&str; 6] = [
    "orders",
    "order_lines",
    "order_events",
    "stock_movements",
    "idempotency_keys",
    "order_decisions",
];

/// The tables that hold live work only (a settled job and a pushed outbox row are
/// deleted): empty at rest, as large as the backlog under load. A scan of them costs
/// what the backlog costs, not what the history does; their statements are checked
/// against a backlog instead (`tests/api/plans.rs`).
pub const LIVE_WORK_TABLES: [&str; 2] = ["jobs", "outbox"];

/// Every table that grows with orders: [`HISTORY_TABLES`], then [`LIVE_WORK_TABLES`].
pub const GROWING_TABLES: [&str; 8] = [
    HISTORY_TABLES[0],
    HISTORY_TABLES[1],
    HISTORY_TABLES[2],
    HISTORY_TABLES[3],
    HISTORY_TABLES[4],
    HISTORY_TABLES[5],
    LIVE_WORK_TABLES[0],
    LIVE_WORK_TABLES[1],
];

/// What to preload.
#[derive(Debug, Clone)]
pub struct Preload {
    /// Tenant slug (`None`: the default tenant).
    pub tenant: Option<String>,
    /// Settled orders to write.
    pub orders: u64,
    /// "Now", epoch ms: every history order was created and settled before it.
    pub now_ms: i64,
    /// How far back the history reaches, ms (default 90 days).
    pub span_ms: i64,
    /// Orders younger than this keep their decision log (the workers delete older ones:
    /// `ORDERHOST_DECISION_RETENTION_DAYS`, 30 days by default).
    pub decision_retention_ms: i64,
    /// Orders younger than this keep their idempotency key (`ORDERHOST_IDEMPOTENCY_TTL_SECS`,
    /// 24 h by default).
    pub idempotency_ttl_ms: i64,
    /// Orders per transaction.
    pub chunk: u64,
    /// Seed of the generator (the same seed writes the same shapes; ids stay unique).
    pub seed: u64,
}

impl Preload {
    /// `orders` orders in the default tenant over the 90 days before `now_ms`, with the
    /// service's default retention settings.
    pub fn new(orders: u64, now_ms: i64) -> Self {
        Self {
            tenant: None,
            orders,
            now_ms,
            span_ms: 90 * DAY_MS,
            decision_retention_ms: 30 * DAY_MS,
            idempotency_ttl_ms: DAY_MS,
            chunk: 5_000,
            seed: 14,
        }
    }
}

/// What a preload wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreloadReport {
    /// Orders.
    pub orders: u64,
    /// Order lines.
    pub lines: u64,
    /// Order events.
    pub events: u64,
    /// Stock movements.
    pub movements: u64,
    /// Decision logs.
    pub decisions: u64,
    /// Idempotency keys.
    pub keys: u64,
    /// Customers created because the tenant had fewer than [`MIN_CUSTOMERS`].
    pub customers_created: u64,
    /// Products created because the tenant had none with stock.
    pub products_created: u64,
}

/// Why a preload stopped.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// The tenant is unknown.
    #[error(transparent)]
    Tenant(#[from] tenants::TenantError),
    /// A customer could not be created.
    #[error(transparent)]
    User(#[from] users::CreateUserError),
    /// A product could not be created.
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
    /// A generated value was refused (a bug here).
    #[error(transparent)]
    Field(#[from] catalog::FieldError),
    /// The customers' password could not be hashed.
    #[error("hashing the history customers' password: {0}")]
    Hash(String),
    /// A row could not be serialized (a bug here).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct CustomerRow {
    id: String,
    vip: bool,
    created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct ItemRow {
    product_id: String,
    stock_id: String,
    sku: String,
    unit_price: i64,
    currency: String,
}

/// Writes `plan.orders` settled orders; calls `progress` with the orders written so far
/// after each chunk.
pub async fn preload(
    store: &Store,
    plan: &Preload,
    mut progress: impl FnMut(u64),
) -> Result<PreloadReport, HistoryError> {
    let tenant_id = tenants::resolve(store, plan.tenant.as_deref()).await?;
    let slug = plan
        .tenant
        .clone()
        .unwrap_or_else(|| crate::store::DEFAULT_TENANT_SLUG.to_owned());
    let mut report = PreloadReport::default();
    let customers = customers(store, &tenant_id, plan, &mut report).await?;
    let items = items(store, &tenant_id, plan, &mut report).await?;
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let components = components_used();
    let components_json = serde_json::to_string(&components)?;
    let used = (components.as_slice(), components_json.as_str());
    let mut done = 0;
    while done < plan.orders {
        let n = plan.chunk.max(1).min(plan.orders - done);
        let chunk = generate(
            plan,
            &tenant_id,
            &slug,
            &customers,
            &items,
            used,
            done..done + n,
            &mut rng,
        )?;
        write_chunk(store, &chunk, plan.now_ms).await?;
        report.orders += n;
        report.lines += chunk.lines.len() as u64;
        report.events += chunk.events.len() as u64;
        report.movements += chunk.movements.len() as u64 + chunk.received.len() as u64;
        report.decisions += chunk.decisions.len() as u64;
        report.keys += chunk.keys.len() as u64;
        done += n;
        progress(done);
    }
    if let Store::Postgres(pool) = store {
        // What autovacuum would have done to a real history long ago: plans see the
        // tables' size, and no vacuum of a million fresh rows starts in the middle of the
        // measurement that follows. (SQLite is left alone: the service never runs ANALYZE
        // there either.) VACUUM cannot run in a transaction: the simple protocol.
        sqlx::raw_sql(
            "vacuum (analyze) orders, order_lines, order_events, stock_movements, order_decisions, \
             idempotency_keys, jobs, outbox, users, stock_items, products",
        )
        .execute(pool)
        .await?;
    }
    Ok(report)
}

/// The tenant's customers, created up to [`MIN_CUSTOMERS`] (one in ten a VIP) with an
/// unguessable password nobody is told: history accounts that cannot sign in.
async fn customers(
    store: &Store,
    tenant_id: &str,
    plan: &Preload,
    report: &mut PreloadReport,
) -> Result<Vec<CustomerRow>, HistoryError> {
    let existing = || async {
        with_pool!(store, pool => sqlx::query_as::<_, CustomerRow>(
            "select id, vip, created_at from users where tenant_id = $1 and role = 'customer' \
             order by id limit 10000",
        )
        .bind(tenant_id)
        .fetch_all(pool)
        .await)
    };
    let mut found = existing().await?;
    if found.len() >= MIN_CUSTOMERS {
        return Ok(found);
    }
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let hash = crate::auth::password::hash(secret)
        .await
        .map_err(|e| HistoryError::Hash(e.to_string()))?;
    let created_at = plan.now_ms - plan.span_ms - 30 * DAY_MS;
    let run = uuid::Uuid::new_v4().simple().to_string();
    for i in 0..MIN_CUSTOMERS - found.len() {
        let email = users::Email::parse(&format!("history-{i}-{}@example.com", &run[..8]))?;
        users::create(
            store,
            tenant_id,
            &email,
            None,
            &hash,
            Role::Customer,
            created_at,
        )
        .await?;
        if i % 10 == 0 {
            let vip = users::UserUpdate {
                role: Role::Customer,
                vip: true,
                name: None,
                tags: None,
            };
            users::update(store, tenant_id, email.as_str(), &vip, created_at).await?;
        }
        report.customers_created += 1;
    }
    found = existing().await?;
    Ok(found)
}

/// The tenant's active products with their stock rows, [`NEW_PRODUCTS`] created when it
/// has none.
async fn items(
    store: &Store,
    tenant_id: &str,
    plan: &Preload,
    report: &mut PreloadReport,
) -> Result<Vec<ItemRow>, HistoryError> {
    let existing = || async {
        with_pool!(store, pool => sqlx::query_as::<_, ItemRow>(
            "select p.id as product_id, s.id as stock_id, p.sku, p.unit_price, p.currency \
             from products p join stock_items s on s.product_id = p.id \
             where p.tenant_id = $1 and p.active order by p.sku limit 1000",
        )
        .bind(tenant_id)
        .fetch_all(pool)
        .await)
    };
    let found = existing().await?;
    if !found.is_empty() {
        return Ok(found);
    }
    let created_at = plan.now_ms - plan.span_ms - DAY_MS;
    for i in 0..NEW_PRODUCTS {
        let product = catalog::NewProduct {
            sku: catalog::Sku::parse(&format!("HIST-{i:03}"))?,
            name: format!("History product {i}"),
            description: String::new(),
            images: Vec::new(),
            price: catalog::Money {
                amount: catalog::MinorUnits::parse("unitPrice", 500 + 125 * i as i64)?,
                currency: catalog::Currency::parse("EUR")?,
            },
            active: true,
            initial_stock: 100_000,
            tags: crate::tags::Tags::default(),
            vendor: None,
            category: None,
        };
        catalog::create(store, tenant_id, &product, None, created_at).await?;
        report.products_created += 1;
    }
    Ok(existing().await?)
}

/// The built-ins, as an order placed without bindings records them.
fn components_used() -> Vec<ComponentUsed> {
    [
        (Hook::Validation, "builtin-validator"),
        (Hook::Pricing, "builtin-pricer"),
        (Hook::Prioritization, "builtin-prioritizer"),
    ]
    .into_iter()
    .map(|(hook, name)| ComponentUsed {
        hook: hook_name(hook).to_owned(),
        component: format!("{name}@1.0.0"),
        sha256: hex::encode(Sha256::digest(name.as_bytes())),
        revision: None,
        fell_back: false,
        overridden: false,
        served_by: Some(ServedBy::Stable),
    })
    .collect()
}

fn hook_name(hook: Hook) -> &'static str {
    match hook {
        Hook::Validation => "validation",
        Hook::Pricing => "pricing",
        Hook::Prioritization => "prioritization",
    }
}

/// A stock movement row.
struct Movement {
    stock_id: String,
    kind: &'static str,
    quantity: i64,
    reason: &'static str,
    actor_id: Option<String>,
    order_id: Option<String>,
    at: i64,
}

/// The rows of one chunk, column-ready.
#[derive(Default)]
struct Chunk {
    orders: Vec<(OrderRow, String)>,
    lines: Vec<(String, String, LineRow, i64)>,
    /// (order id, status, reason, at).
    events: Vec<(String, &'static str, Option<&'static str>, i64)>,
    movements: Vec<Movement>,
    /// (order id, decision JSON, at).
    decisions: Vec<(String, String, i64)>,
    /// (user id, key, request hash, response body, at).
    keys: Vec<(String, String, String, String, i64)>,
    /// Units still held per stock row (reserved and received by this chunk).
    received: BTreeMap<String, i64>,
    /// New orders per customer.
    per_user: BTreeMap<String, i64>,
    tenant_id: String,
    first_at: i64,
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call site, all of it context"
)]
fn generate(
    plan: &Preload,
    tenant_id: &str,
    slug: &str,
    customers: &[CustomerRow],
    items: &[ItemRow],
    (components, components_json): (&[ComponentUsed], &str),
    range: std::ops::Range<u64>,
    rng: &mut StdRng,
) -> Result<Chunk, HistoryError> {
    let mut chunk = Chunk {
        tenant_id: tenant_id.to_owned(),
        ..Default::default()
    };
    let total = plan.orders.max(1);
    let start = plan.now_ms - plan.span_ms;
    for i in range {
        // Evenly spread, oldest first, the last one a minute before `now`.
        let created_at = start
            + i64::try_from(u128::from(i) * (plan.span_ms - 60_000) as u128 / u128::from(total))
                .unwrap_or(0)
            + rng.gen_range(0..1_000);
        if chunk.first_at == 0 {
            chunk.first_at = created_at;
        }
        let id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            u64::try_from(created_at / 1_000).unwrap_or(0),
            u32::try_from(created_at % 1_000).unwrap_or(0) * 1_000_000,
        ))
        .to_string();
        let customer = &customers[rng.gen_range(0..customers.len())];
        let n_lines = match rng.gen_range(0..10) {
            0..=5 => 1,
            6..=8 => 2,
            _ => 3,
        }
        .min(items.len());
        let first = rng.gen_range(0..items.len());
        let step = if items.len() > 1 {
            rng.gen_range(1..items.len())
        } else {
            1
        };
        let picked: Vec<&ItemRow> = (0..n_lines)
            .map(|k| &items[(first + k * step) % items.len()])
            .collect();
        let mut lines = Vec::with_capacity(picked.len());
        let mut context_lines = Vec::with_capacity(picked.len());
        let mut prices = Vec::with_capacity(picked.len());
        for (k, item) in picked.iter().enumerate() {
            let quantity: u32 = rng.gen_range(1..=3);
            let subtotal = item.unit_price * i64::from(quantity);
            lines.push(LineRow {
                line_no: i32::try_from(k).unwrap_or(0),
                product_id: item.product_id.clone(),
                stock_id: item.stock_id.clone(),
                sku: item.sku.clone(),
                quantity: i64::from(quantity),
                unit_price: item.unit_price,
                subtotal,
            });
            context_lines.push(OrderLine {
                product_id: item.product_id.clone(),
                stock_id: item.stock_id.clone(),
                sku: item.sku.clone(),
                quantity,
                unit_price: item.unit_price,
                currency: item.currency.clone(),
                available: rng.gen_range(100..10_000),
                ..OrderLine::default()
            });
            prices.push(LinePrice {
                line: u32::try_from(k).unwrap_or(0),
                unit_price: item.unit_price,
                quantity,
                subtotal,
            });
        }
        let currency = picked
            .first()
            .map_or_else(|| "EUR".to_owned(), |i| i.currency.clone());
        let quote = Quote {
            total: prices.iter().map(|p| p.subtotal).sum(),
            lines: prices,
            discounts: Vec::new(),
            currency: currency.clone(),
            rejected_codes: Vec::new(),
        };
        let priority = u32::from(customer.vip);
        let order_count = chunk.per_user.get(&customer.id).copied().unwrap_or(0);
        let context = OrderContext {
            tenant: slug.to_owned(),
            customer: Customer {
                id: customer.id.clone(),
                vip: customer.vip,
                tags: Vec::new(),
                order_count: u32::try_from(order_count).unwrap_or(u32::MAX),
                account_age_days: u32::try_from((created_at - customer.created_at).max(0) / DAY_MS)
                    .unwrap_or(0),
                ..Customer::default()
            },
            lines: context_lines,
            expected_total: None,
            order_time_ms: created_at,
            ..OrderContext::default()
        };

        // Outcome and when it happened.
        let roll = rng.gen_range(0..100);
        let settled_at = created_at + rng.gen_range(20..800);
        let (status, reason, confirmed, cancelled_at) = match roll {
            0..=89 => (OrderStatus::Confirmed, None, true, None),
            90..=94 => (OrderStatus::Failed, Some("OUT_OF_STOCK"), false, None),
            95 => (OrderStatus::Failed, Some("PRODUCT_INACTIVE"), false, None),
            // Cancelled while PENDING: nothing was reserved.
            96 | 97 => (OrderStatus::Cancelled, None, false, Some(settled_at)),
            // Cancelled after its confirmation: reserved, then released.
            _ => (
                OrderStatus::Cancelled,
                None,
                true,
                Some(settled_at + rng.gen_range(60_000..DAY_MS / 2)),
            ),
        };
        let final_at = cancelled_at.unwrap_or(settled_at);
        let order = OrderRow {
            id: id.clone(),
            tenant_id: tenant_id.to_owned(),
            user_id: customer.id.clone(),
            status,
            reason: reason.map(str::to_owned),
            priority: i64::from(priority),
            total: quote.total,
            currency,
            expected_total: None,
            quote: serde_json::to_string(&quote)?,
            components: components_json.to_owned(),
            created_at,
            updated_at: final_at,
            final_at: Some(final_at),
        };

        chunk.events.push((id.clone(), "PENDING", None, created_at));
        if confirmed {
            chunk
                .events
                .push((id.clone(), "CONFIRMED", None, settled_at));
            for line in &lines {
                chunk.movements.push(Movement {
                    stock_id: line.stock_id.clone(),
                    kind: "reserve",
                    quantity: -line.quantity,
                    reason: "order confirmed",
                    actor_id: None,
                    order_id: Some(id.clone()),
                    at: settled_at,
                });
                if cancelled_at.is_none() {
                    *chunk.received.entry(line.stock_id.clone()).or_default() += line.quantity;
                }
            }
        } else if status == OrderStatus::Failed {
            chunk
                .events
                .push((id.clone(), "FAILED", reason, settled_at));
        }
        if let Some(at) = cancelled_at {
            chunk.events.push((id.clone(), "CANCELLED", None, at));
            if confirmed {
                for line in &lines {
                    chunk.movements.push(Movement {
                        stock_id: line.stock_id.clone(),
                        kind: "release",
                        quantity: line.quantity,
                        reason: "order cancelled",
                        actor_id: Some(customer.id.clone()),
                        order_id: Some(id.clone()),
                        at,
                    });
                }
            }
        }
        if created_at >= plan.now_ms - plan.decision_retention_ms {
            let log = decision::DecisionLog {
                order_id: id.clone(),
                decided_at: crate::clock::rfc3339(created_at),
                generation: 1,
                hooks: [Hook::Validation, Hook::Pricing, Hook::Prioritization]
                    .into_iter()
                    .zip(components)
                    .map(|(hook, used)| decision::HookDecision {
                        hook,
                        component: used.component.clone(),
                        sha256: used.sha256.clone(),
                        revision: None,
                        served_by: ServedBy::Stable,
                        config_sha256: hex::encode(Sha256::digest(b"{}")),
                        config: BTreeMap::new(),
                        fuel_used: rng.gen_range(20_000..90_000),
                        latency_us: rng.gen_range(30..400),
                        peak_memory_bytes: 1_114_112,
                        fault: None,
                        logs: Vec::new(),
                    })
                    .collect(),
                violations: Vec::new(),
                quote: quote.clone(),
                priority,
            };
            chunk
                .decisions
                .push((id.clone(), serde_json::to_string(&log)?, created_at));
        }
        if created_at >= plan.now_ms - plan.idempotency_ttl_ms && rng.gen_bool(0.5) {
            // The stored answer is the 202's body: the order as it was when accepted.
            let accepted = OrderRow {
                status: OrderStatus::Pending,
                reason: None,
                updated_at: created_at,
                final_at: None,
                ..order.clone()
            };
            let body = serde_json::to_string(&OrderView::from_rows(accepted, lines.clone()))?;
            chunk.keys.push((
                customer.id.clone(),
                format!("history-{}", uuid::Uuid::new_v4().simple()),
                hex::encode(Sha256::digest(body.as_bytes())),
                body,
                created_at,
            ));
        }
        *chunk.per_user.entry(customer.id.clone()).or_default() += 1;
        let context = serde_json::to_string(&context)?;
        for line in lines {
            chunk
                .lines
                .push((id.clone(), tenant_id.to_owned(), line, created_at));
        }
        chunk.orders.push((order, context));
    }
    Ok(chunk)
}

/// Writes one chunk in one transaction.
async fn write_chunk(store: &Store, chunk: &Chunk, now: i64) -> Result<(), sqlx::Error> {
    let orders = &chunk.orders;
    let text = |f: fn(&(OrderRow, String)) -> &str| Col::text(orders.iter().map(f));
    let int = |f: fn(&(OrderRow, String)) -> i64| Col::int(orders.iter().map(f));
    let tenant = |n: usize| Col::text(std::iter::repeat_n(chunk.tenant_id.as_str(), n));
    let received: Vec<(String, i64)> = chunk
        .received
        .iter()
        .map(|(s, q)| (s.clone(), *q))
        .collect();
    with_pool!(store, pool => {
        let mut tx = pool.begin_write().await?;
        let mut q = sqlx::QueryBuilder::new(
            "insert into orders (id, tenant_id, user_id, status, reason, priority, total, currency, \
             expected_total, quote, context, components, created_at, updated_at, final_at) ",
        );
        pool.push_rows(&mut q, vec![
            text(|(o, _)| &o.id),
            text(|(o, _)| &o.tenant_id),
            text(|(o, _)| &o.user_id),
            text(|(o, _)| o.status.as_str()),
            Col::Text(orders.iter().map(|(o, _)| o.reason.clone()).collect()),
            int(|(o, _)| o.priority),
            int(|(o, _)| o.total),
            text(|(o, _)| &o.currency),
            Col::Int(orders.iter().map(|(o, _)| o.expected_total).collect()),
            text(|(o, _)| &o.quote),
            text(|(_, context)| context),
            text(|(o, _)| &o.components),
            int(|(o, _)| o.created_at),
            int(|(o, _)| o.updated_at),
            Col::Int(orders.iter().map(|(o, _)| o.final_at).collect()),
        ]);
        q.build().execute(&mut *tx).await?;

        let lines = &chunk.lines;
        let mut q = sqlx::QueryBuilder::new(
            "insert into order_lines (order_id, line_no, tenant_id, product_id, stock_id, sku, quantity, \
             unit_price, subtotal, created_at, updated_at) ",
        );
        pool.push_rows(&mut q, vec![
            Col::text(lines.iter().map(|(o, ..)| o.as_str())),
            Col::int(lines.iter().map(|(_, _, l, _)| i64::from(l.line_no))),
            Col::text(lines.iter().map(|(_, t, ..)| t.as_str())),
            Col::text(lines.iter().map(|(_, _, l, _)| l.product_id.as_str())),
            Col::text(lines.iter().map(|(_, _, l, _)| l.stock_id.as_str())),
            Col::text(lines.iter().map(|(_, _, l, _)| l.sku.as_str())),
            Col::int(lines.iter().map(|(_, _, l, _)| l.quantity)),
            Col::int(lines.iter().map(|(_, _, l, _)| l.unit_price)),
            Col::int(lines.iter().map(|(_, _, l, _)| l.subtotal)),
            Col::int(lines.iter().map(|(.., at)| *at)),
            Col::int(lines.iter().map(|(.., at)| *at)),
        ]);
        q.build().execute(&mut *tx).await?;

        // Events in time order per order, as they were appended (`seq` orders them).
        let events = &chunk.events;
        let mut q = sqlx::QueryBuilder::new(
            "insert into order_events (order_id, tenant_id, status, reason, created_at, updated_at) ",
        );
        pool.push_rows(&mut q, vec![
            Col::text(events.iter().map(|(o, ..)| o.as_str())),
            tenant(events.len()),
            Col::text(events.iter().map(|(_, s, ..)| *s)),
            Col::Text(events.iter().map(|(_, _, r, _)| r.map(str::to_owned)).collect()),
            Col::int(events.iter().map(|(.., at)| *at)),
            Col::int(events.iter().map(|(.., at)| *at)),
        ]);
        q.build().execute(&mut *tx).await?;

        let moves = &chunk.movements;
        // Units held by history came in first: one `receive` per stock row and chunk.
        let receives: Vec<_> = chunk
            .received
            .iter()
            .map(|(stock, qty)| Movement {
                stock_id: stock.clone(),
                kind: "receive",
                quantity: *qty,
                reason: "history preload",
                actor_id: None,
                order_id: None,
                at: chunk.first_at,
            })
            .collect();
        let all: Vec<_> = receives.iter().chain(moves.iter()).collect();
        if !all.is_empty() {
            let mut q = sqlx::QueryBuilder::new(
                "insert into stock_movements (id, tenant_id, stock_id, kind, quantity, reason, actor_id, \
                 order_id, created_at, updated_at) ",
            );
            pool.push_rows(&mut q, vec![
                Col::text(all.iter().map(|m| {
                    uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
                        uuid::NoContext,
                        u64::try_from(m.at / 1_000).unwrap_or(0),
                        u32::try_from(m.at % 1_000).unwrap_or(0) * 1_000_000,
                    ))
                    .to_string()
                })),
                tenant(all.len()),
                Col::text(all.iter().map(|m| m.stock_id.as_str())),
                Col::text(all.iter().map(|m| m.kind)),
                Col::int(all.iter().map(|m| m.quantity)),
                Col::text(all.iter().map(|m| m.reason)),
                Col::Text(all.iter().map(|m| m.actor_id.clone()).collect()),
                Col::Text(all.iter().map(|m| m.order_id.clone()).collect()),
                Col::int(all.iter().map(|m| m.at)),
                Col::int(all.iter().map(|m| m.at)),
            ]);
            q.build().execute(&mut *tx).await?;
        }

        if !chunk.decisions.is_empty() {
            let d = &chunk.decisions;
            let mut q = sqlx::QueryBuilder::new(
                "insert into order_decisions (order_id, tenant_id, decision, created_at) ",
            );
            pool.push_rows(&mut q, vec![
                Col::text(d.iter().map(|(o, ..)| o.as_str())),
                tenant(d.len()),
                Col::text(d.iter().map(|(_, j, _)| j.as_str())),
                Col::int(d.iter().map(|(.., at)| *at)),
            ]);
            q.build().execute(&mut *tx).await?;
        }

        if !chunk.keys.is_empty() {
            let k = &chunk.keys;
            let mut q = sqlx::QueryBuilder::new(
                "insert into idempotency_keys (tenant_id, user_id, key, request_hash, state, \
                 response_status, response_body, created_at, updated_at) ",
            );
            pool.push_rows(&mut q, vec![
                tenant(k.len()),
                Col::text(k.iter().map(|(u, ..)| u.as_str())),
                Col::text(k.iter().map(|(_, key, ..)| key.as_str())),
                Col::text(k.iter().map(|(_, _, h, ..)| h.as_str())),
                Col::text(k.iter().map(|_| "done")),
                Col::int(k.iter().map(|_| 202)),
                Col::text(k.iter().map(|(_, _, _, b, _)| b.as_str())),
                Col::int(k.iter().map(|(.., at)| *at)),
                Col::int(k.iter().map(|(.., at)| *at)),
            ]);
            q.build().execute(&mut *tx).await?;
        }

        if !received.is_empty() {
            let mut q = sqlx::QueryBuilder::new(
                "update stock_items set reserved = reserved + v.qty, received = received + v.qty, \
                 version = version + 1, updated_at = ",
            );
            q.push_bind(now).push(" from ");
            pool.push_id_qty(&mut q, "v", received.clone());
            q.push(" where stock_items.id = v.id");
            q.build().execute(&mut *tx).await?;
        }

        // The customers' confirmed totals and units per SKU and hour, as the settlement
        // keeps them (units only within the 31 days the workers keep).
        let mut bought: BTreeMap<(&str, &str), (i64, i64)> = BTreeMap::new();
        let mut confirmed: HashMap<&str, (&str, i64)> = HashMap::new();
        for (o, _) in orders.iter().filter(|(o, _)| o.status == OrderStatus::Confirmed) {
            let entry = bought.entry((o.user_id.as_str(), o.currency.as_str())).or_default();
            entry.0 += 1;
            entry.1 = entry.1.saturating_add(o.total);
            if o.created_at >= now - super::SKU_HOURS_KEPT_MS {
                confirmed.insert(o.id.as_str(), (o.user_id.as_str(), o.created_at));
            }
        }
        let mut hours: BTreeMap<(&str, &str, i64), i64> = BTreeMap::new();
        for (order_id, _, line, _) in &chunk.lines {
            if let Some((user_id, created_at)) = confirmed.get(order_id.as_str()) {
                *hours
                    .entry((user_id, line.sku.as_str(), created_at / super::HOUR_MS))
                    .or_default() += line.quantity;
            }
        }
        if !hours.is_empty() {
            let mut q =
                sqlx::QueryBuilder::new("insert into customer_sku_hours (user_id, sku, hour, units) ");
            pool.push_rows(&mut q, vec![
                Col::text(hours.keys().map(|(user, _, _)| *user)),
                Col::text(hours.keys().map(|(_, sku, _)| *sku)),
                Col::int(hours.keys().map(|(_, _, hour)| *hour)),
                Col::int(hours.values().copied()),
            ]);
            q.push(
                " where true on conflict (user_id, sku, hour) do update set \
                 units = customer_sku_hours.units + excluded.units",
            );
            q.build().execute(&mut *tx).await?;
        }
        if !bought.is_empty() {
            let mut q = sqlx::QueryBuilder::new(
                "insert into customer_totals (user_id, currency, tenant_id, orders, spend) ",
            );
            pool.push_rows(&mut q, vec![
                Col::text(bought.keys().map(|(user, _)| *user)),
                Col::text(bought.keys().map(|(_, currency)| *currency)),
                tenant(bought.len()),
                Col::int(bought.values().map(|(n, _)| *n)),
                Col::int(bought.values().map(|(_, spend)| *spend)),
            ]);
            q.push(
                " where true on conflict (user_id, currency) do update set \
                 orders = customer_totals.orders + excluded.orders, \
                 spend = customer_totals.spend + excluded.spend",
            );
            q.build().execute(&mut *tx).await?;
        }

        let mut q = sqlx::QueryBuilder::new("update users set order_count = order_count + v.qty from ");
        pool.push_id_qty(&mut q, "v", chunk.per_user.iter().map(|(u, n)| (u.clone(), *n)).collect());
        q.push(" where users.id = v.id");
        q.build().execute(&mut *tx).await?;
        tx.commit().await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_tables_are_history_and_live_work() {
        for table in HISTORY_TABLES.iter().chain(&LIVE_WORK_TABLES) {
            assert!(GROWING_TABLES.contains(table), "{table}");
        }
        assert!(!HISTORY_TABLES.contains(&"jobs"));
    }

    #[test]
    fn a_history_id_is_ordered_by_its_creation_time() {
        let at = |ms: i64| {
            uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
                uuid::NoContext,
                u64::try_from(ms / 1_000).unwrap(),
                u32::try_from(ms % 1_000).unwrap() * 1_000_000,
            ))
            .to_string()
        };
        assert!(at(1_700_000_000_123) < at(1_700_000_000_124));
        assert!(at(1_700_000_000_999) < uuid::Uuid::now_v7().to_string());
    }
}
