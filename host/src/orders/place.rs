//! `POST /order` (and `/orders`): parse at the edge, resolve the lines in the catalog,
//! run validate → price → prioritize through the tenant's bindings (one snapshot), and
//! either reject (422 with the violations) or write the order, its lines, its first event
//! and its job in one transaction (202). `POST /order/quote` runs the same hooks and
//! writes nothing.

use std::collections::BTreeMap;

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{ComponentUsed, LineRow, OrderRow, OrderStatus, OrderView, reader::ReadRequest};
use crate::{
    auth::AuthUser,
    catalog::{
        Decimal, Sku,
        lookup::{CatalogLine, LineRef},
    },
    http::{
        error::{ApiError, ErrorEnvelope},
        extract::Json,
    },
    idempotency::{self, Begun, HeldKey},
    policy::{
        EvalMode, Evaluation, Override,
        types::{Attribute, Customer, Money, OrderContext, OrderLine, Quote, Violation},
    },
    registry::bindings::{OVERRIDE_HEADER, override_forbidden, read_overrides},
    state::AppState,
};

/// The routes of this file.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(place_order))
        .routes(routes!(place_order_alias))
        .routes(routes!(quote_order))
}

/// Largest quantity of one line.
pub const MAX_QUANTITY: i64 = 1_000_000;
/// Most lines in one order.
pub const MAX_LINES: usize = 100;
/// Most discount codes in one order.
pub const MAX_DISCOUNT_CODES: usize = 10;
/// Longest discount code, characters.
pub const MAX_DISCOUNT_CODE_CHARS: usize = 64;
/// Most attributes in one order.
pub const MAX_ATTRIBUTES: usize = 20;
/// Longest attribute key, characters.
pub const MAX_ATTRIBUTE_KEY_CHARS: usize = 64;
/// Longest attribute value, characters.
pub const MAX_ATTRIBUTE_VALUE_CHARS: usize = 256;
/// Largest order context handed to the hooks, as JSON bytes (Shopify Functions allow
/// 128 kB of input): an order whose context is larger is refused with
/// `CONTEXT_TOO_LARGE`, never truncated.
pub const MAX_CONTEXT_BYTES: usize = 128 * 1024;

/// One requested line: a stock item or a sku, and a quantity.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LineRequest {
    /// Stock item id (give this or `sku`).
    pub stock_id: Option<String>,
    /// Product sku (give this or `stockId`).
    pub sku: Option<String>,
    /// Units, 1 to 1 000 000.
    pub quantity: i64,
}

/// Body of `POST /order`. Either `lines` (with an optional `expectedTotal`) or the
/// original single-line shape `{stockId, quantity, priceAtPurchase}`. A client's price is
/// only a ceiling — the most it agreed to pay: the charged price is always the pricing
/// component's, and an order priced above the ceiling is refused (`PRICE_MISMATCH`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceOrderRequest {
    /// The lines.
    pub lines: Option<Vec<LineRequest>>,
    /// The most the client agreed to pay in total, minor units; a higher priced total →
    /// 422 `PRICE_MISMATCH`, a lower one is charged.
    pub expected_total: Option<i64>,
    /// Single-line shape: the stock item.
    pub stock_id: Option<String>,
    /// Single-line shape: the quantity.
    pub quantity: Option<i64>,
    /// Single-line shape: the most the client agreed to pay per unit, as the original
    /// service took it — a decimal in the currency's major unit (`999.99`, or the string
    /// `"999.99"`), read exactly from the JSON text, never through a float. A ceiling like
    /// `expectedTotal`, never the charged price.
    #[schema(value_type = Option<f64>, example = 999.99)]
    pub price_at_purchase: Option<Box<serde_json::value::RawValue>>,
    /// Discount codes to redeem (at most 10, each 1-64 visible characters; trimmed,
    /// upper-cased, duplicates dropped). The quote lists each code as applied (a
    /// discount with its `discountCode`) or in `rejectedCodes` with a reason.
    #[schema(example = json!(["SAVE10"]))]
    pub discount_codes: Option<Vec<String>>,
    /// Free key/value attributes for the shop's rules (at most 20; keys 1-64 of a-z,
    /// 0-9, `-`, `_`, `.`, lower-cased; values at most 256 characters), e.g.
    /// `{"channel": "pos", "country": "DE"}`.
    #[schema(value_type = Option<Object>, example = json!({"channel": "web"}))]
    pub attributes: Option<BTreeMap<String, String>>,
}

/// The client's price ceiling, as sent.
#[derive(Debug, Clone, Copy)]
enum Ceiling {
    /// `expectedTotal`, minor units.
    Total(i64),
    /// `priceAtPurchase` per unit, major units; converted once the currency is known.
    UnitPrice(Decimal),
}

/// A parsed, bounded order request.
#[derive(Debug, Clone)]
struct ParsedOrder {
    refs: Vec<LineRef>,
    quantities: Vec<u32>,
    ceiling: Option<Ceiling>,
    discount_codes: Vec<String>,
    attributes: Vec<Attribute>,
}

/// Normalises the discount codes: trimmed, upper-cased, duplicates dropped, order kept.
fn parse_discount_codes(raw: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_DISCOUNT_CODES {
        return Err(ApiError::validation(
            "discountCodes",
            format!("at most {MAX_DISCOUNT_CODES} codes"),
        ));
    }
    let mut codes: Vec<String> = Vec::with_capacity(raw.len());
    for (i, code) in raw.iter().enumerate() {
        let code = code.trim().to_uppercase();
        if code.is_empty()
            || code.chars().count() > MAX_DISCOUNT_CODE_CHARS
            || !code.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(ApiError::validation(
                &format!("discountCodes[{i}]"),
                format!("1-{MAX_DISCOUNT_CODE_CHARS} visible ASCII characters"),
            ));
        }
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    Ok(codes)
}

/// Checks the attributes: bounded, keys lower-cased (two keys equal then are refused),
/// sorted by key (the map's order).
fn parse_attributes(raw: Option<BTreeMap<String, String>>) -> Result<Vec<Attribute>, ApiError> {
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_ATTRIBUTES {
        return Err(ApiError::validation(
            "attributes",
            format!("at most {MAX_ATTRIBUTES} attributes"),
        ));
    }
    let mut attributes: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in raw {
        let field = format!(
            "attributes.{}",
            key.chars()
                .take(MAX_ATTRIBUTE_KEY_CHARS)
                .collect::<String>()
        );
        let folded = key.to_ascii_lowercase();
        if !(1..=MAX_ATTRIBUTE_KEY_CHARS).contains(&folded.len())
            || !folded.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
            })
        {
            return Err(ApiError::validation(
                &field,
                format!("keys are 1-{MAX_ATTRIBUTE_KEY_CHARS} of a-z, 0-9, '-', '_', '.'"),
            ));
        }
        if value.chars().count() > MAX_ATTRIBUTE_VALUE_CHARS {
            return Err(ApiError::validation(
                &field,
                format!("values are at most {MAX_ATTRIBUTE_VALUE_CHARS} characters"),
            ));
        }
        // A value is a single-line field: the project's one rule for those.
        crate::text::single_line(&value)
            .map_err(|e| ApiError::validation(&field, e.to_string()))?;
        if attributes.insert(folded, value).is_some() {
            return Err(ApiError::validation(
                &field,
                "the same key twice (keys are case-insensitive)",
            ));
        }
    }
    Ok(attributes
        .into_iter()
        .map(|(key, value)| Attribute { key, value })
        .collect())
}

/// `priceAtPurchase`: a JSON number's own text, or a string holding one.
fn parse_unit_price(raw: &serde_json::value::RawValue) -> Result<Decimal, ApiError> {
    let text = match serde_json::from_str::<String>(raw.get()) {
        Ok(text) => text,
        Err(_)
            if raw
                .get()
                .starts_with(|c: char| c == '-' || c.is_ascii_digit()) =>
        {
            raw.get().to_owned()
        }
        Err(_) => {
            return Err(ApiError::validation(
                "priceAtPurchase",
                "a decimal number such as 999.99",
            ));
        }
    };
    Decimal::parse(&text).map_err(|e| ApiError::validation("priceAtPurchase", e.to_string()))
}

fn line_error(index: usize, field: &str, problem: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
        format!("lines[{index}].{field}: {problem}"),
    )
    .with_details(serde_json::json!({ "line": index, "field": field, "problem": problem }))
}

fn parse(body: PlaceOrderRequest) -> Result<ParsedOrder, ApiError> {
    let discount_codes = parse_discount_codes(body.discount_codes)?;
    let attributes = parse_attributes(body.attributes)?;
    let (lines, ceiling) = match (body.lines, body.stock_id) {
        (Some(lines), None) if body.quantity.is_none() && body.price_at_purchase.is_none() => {
            (lines, body.expected_total.map(Ceiling::Total))
        }
        (None, Some(stock_id)) => {
            let quantity = body
                .quantity
                .ok_or_else(|| ApiError::validation("quantity", "required with stockId"))?;
            let expected = match (body.expected_total, body.price_at_purchase) {
                (Some(total), _) => Some(Ceiling::Total(total)),
                (None, Some(price)) => Some(Ceiling::UnitPrice(parse_unit_price(&price)?)),
                (None, None) => None,
            };
            (
                vec![LineRequest {
                    stock_id: Some(stock_id),
                    sku: None,
                    quantity,
                }],
                expected,
            )
        }
        _ => {
            return Err(ApiError::validation(
                "lines",
                "send either `lines` or the single-line `stockId` + `quantity`",
            ));
        }
    };
    if lines.is_empty() {
        return Err(ApiError::validation("lines", "at least one line"));
    }
    if lines.len() > MAX_LINES {
        return Err(ApiError::validation(
            "lines",
            format!("at most {MAX_LINES} lines"),
        ));
    }
    if matches!(ceiling, Some(Ceiling::Total(t)) if t < 0) {
        return Err(ApiError::validation(
            "expectedTotal",
            "must not be negative",
        ));
    }
    let mut refs = Vec::with_capacity(lines.len());
    let mut quantities = Vec::with_capacity(lines.len());
    for (i, line) in lines.into_iter().enumerate() {
        let reference = match (line.stock_id, line.sku) {
            (Some(id), None) if valid_ref(&id) => LineRef::Stock(id),
            (None, Some(sku)) => match Sku::parse(&sku) {
                Ok(sku) => LineRef::Sku(sku.as_str().to_owned()),
                Err(e) => return Err(line_error(i, "sku", &e.problem)),
            },
            (Some(_), None) => return Err(line_error(i, "stockId", "1-128 visible characters")),
            _ => {
                return Err(line_error(
                    i,
                    "stockId",
                    "give exactly one of stockId and sku",
                ));
            }
        };
        if !(1..=MAX_QUANTITY).contains(&line.quantity) {
            return Err(line_error(
                i,
                "quantity",
                &format!("between 1 and {MAX_QUANTITY}"),
            ));
        }
        refs.push(reference);
        quantities.push(
            u32::try_from(line.quantity).map_err(|_| line_error(i, "quantity", "too large"))?,
        );
    }
    Ok(ParsedOrder {
        refs,
        quantities,
        ceiling,
        discount_codes,
        attributes,
    })
}

fn valid_ref(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.chars().all(|c| c.is_ascii_graphic())
}

fn rejected(violations: Vec<Violation>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "ORDER_REJECTED",
        "the order breaks this shop's rules; see details.violations",
    )
    .with_details(serde_json::json!({ "violations": violations }))
}

/// Everything decided before writing: the context, the catalog lines, the evaluation.
struct Decision {
    ctx: OrderContext,
    /// `ctx` as stored with the order.
    context_json: String,
    catalog: Vec<CatalogLine>,
    evaluation: Evaluation,
    quote: Quote,
    priority: u32,
}

/// Resolves and evaluates an order; `Err` is the answer to give (422/503).
#[tracing::instrument(level = "debug", skip_all, fields(lines = order.refs.len()))]
async fn decide(
    state: &AppState,
    actor: &AuthUser,
    order: &ParsedOrder,
    overrides: &[Override],
) -> Result<Decision, ApiError> {
    // The order time, taken before the read: the recent-units windows end here.
    let now = state.clock.now_ms();
    let (customer, resolved) = state
        .order_reader
        .read(ReadRequest {
            user_id: actor.user_id.clone(),
            tenant_id: actor.tenant_id.clone(),
            refs: order.refs.clone(),
            now_ms: now,
        })
        .await?;
    let mut violations = Vec::new();
    let mut catalog = Vec::with_capacity(resolved.len());
    for (i, line) in resolved.into_iter().enumerate() {
        let line_no = u32::try_from(i).unwrap_or(u32::MAX);
        match line {
            None => violations.push(Violation {
                code: "UNKNOWN_ITEM".into(),
                message: "no such product or stock item in this shop".into(),
                line: Some(line_no),
            }),
            Some(line) if !line.active => {
                violations.push(Violation {
                    code: "PRODUCT_INACTIVE".into(),
                    message: format!("{} is not for sale", line.sku),
                    line: Some(line_no),
                });
                catalog.push(line);
            }
            Some(line) => catalog.push(line),
        }
    }
    if !violations.is_empty() {
        return Err(rejected(violations));
    }
    let expected_total = match order.ceiling {
        None => None,
        Some(Ceiling::Total(total)) => Some(total),
        Some(Ceiling::UnitPrice(price)) => {
            // The single-line shape: one line, priced in its product's currency.
            let unit = price
                .to_minor(&catalog[0].currency)
                .map_err(|e| ApiError::validation("priceAtPurchase", e.to_string()))?;
            Some(unit.saturating_mul(i64::from(order.quantities[0])))
        }
    };
    let count = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
    let ctx = OrderContext {
        tenant: customer.tenant_slug,
        customer: Customer {
            id: actor.user_id.clone(),
            vip: customer.vip,
            order_count: count(customer.order_count),
            account_age_days: u32::try_from((now - customer.created_at).max(0) / 86_400_000)
                .unwrap_or(u32::MAX),
            tags: customer.tags,
            lifetime_orders: count(customer.confirmed.iter().map(|(_, n, _)| n).sum()),
            lifetime_spend: customer
                .confirmed
                .into_iter()
                .map(|(currency, _, amount)| Money { amount, currency })
                .collect(),
        },
        lines: catalog
            .iter()
            .zip(&order.quantities)
            .map(|(c, q)| OrderLine {
                product_id: c.product_id.clone(),
                stock_id: c.stock_id.clone(),
                sku: c.sku.clone(),
                quantity: *q,
                unit_price: c.unit_price,
                currency: c.currency.clone(),
                available: c.available,
                tags: c.tags.clone(),
                vendor: c.vendor.clone(),
                category: c.category.clone(),
                units_last24h: count(customer.recent_units.get(&c.sku).map_or(0, |u| u.0)),
                units_last30d: count(customer.recent_units.get(&c.sku).map_or(0, |u| u.1)),
            })
            .collect(),
        expected_total,
        order_time_ms: now,
        discount_codes: order.discount_codes.clone(),
        attributes: order.attributes.clone(),
    };
    // Serialized once: measured here against the input limit, stored with the order.
    let context_json = serde_json::to_string(&ctx).map_err(ApiError::internal)?;
    if context_json.len() > MAX_CONTEXT_BYTES {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "CONTEXT_TOO_LARGE",
            format!(
                "the order's context for the shop's rules is {} bytes; at most {MAX_CONTEXT_BYTES} (fewer lines, tags or attributes)",
                context_json.len()
            ),
        )
        .with_details(serde_json::json!({ "bytes": context_json.len(), "limit": MAX_CONTEXT_BYTES })));
    }
    let evaluation = state
        .policy
        .evaluate_with_overrides(ctx.clone(), EvalMode::Order, overrides)
        .await
        .map_err(|fault| crate::policy::unavailable(&fault))?;
    if !evaluation.violations.is_empty() {
        return Err(rejected(evaluation.violations));
    }
    if let Some(refusal) = &evaluation.pricing_refusal {
        return Err(rejected(vec![Violation {
            code: "PRICING_REFUSED".into(),
            message: format!("{refusal:?}"),
            line: None,
        }]));
    }
    let (Some(quote), Some(priority)) = (evaluation.quote.clone(), evaluation.priority) else {
        return Err(ApiError::internal(
            "evaluation finished without a quote or a priority",
        ));
    };
    // The client's price is a ceiling: a VIP discount or a price drop is charged, never
    // more than the client agreed to.
    if let Some(expected) = expected_total
        && quote.total > expected
    {
        let message = format!(
            "the order costs {} {}, more than the {expected} agreed",
            quote.total, quote.currency
        );
        return Err(rejected(vec![Violation {
            code: "PRICE_MISMATCH".into(),
            message: message.clone(),
            line: None,
        }])
        .with_details(serde_json::json!({
            "violations": [{ "code": "PRICE_MISMATCH", "message": message, "line": null }],
            "expectedTotal": expected,
            "total": quote.total,
            "currency": quote.currency,
        })));
    }
    Ok(Decision {
        ctx,
        context_json,
        catalog,
        evaluation,
        quote,
        priority,
    })
}

fn components_used(evaluation: &Evaluation) -> Vec<ComponentUsed> {
    evaluation
        .hooks
        .iter()
        .map(|h| ComponentUsed {
            hook: h.hook.as_str().to_owned(),
            component: h.component.clone(),
            sha256: h.sha256.clone(),
            revision: h.revision,
            fell_back: h.fell_back,
            overridden: h.overridden,
            served_by: Some(h.served_by),
        })
        .collect()
}

/// Writes the order, its lines, its first event and its job in one transaction, and
/// marks the idempotency key done with the response in the same transaction.
async fn insert_order(
    state: &AppState,
    actor: &AuthUser,
    decision: &Decision,
    key: Option<&HeldKey>,
) -> Result<OrderView, ApiError> {
    let now = state.clock.now_ms();
    let id = uuid::Uuid::now_v7().to_string();
    let quote_json = serde_json::to_string(&decision.quote).map_err(ApiError::internal)?;
    let components_json = serde_json::to_string(&components_used(&decision.evaluation))
        .map_err(ApiError::internal)?;
    let order = OrderRow {
        id: id.clone(),
        tenant_id: actor.tenant_id.clone(),
        user_id: actor.user_id.clone(),
        status: OrderStatus::Pending,
        reason: None,
        priority: i64::from(decision.priority),
        total: decision.quote.total,
        currency: decision.quote.currency.clone(),
        expected_total: decision.ctx.expected_total,
        quote: quote_json,
        components: components_json,
        created_at: now,
        updated_at: now,
        final_at: None,
    };
    let lines: Vec<LineRow> = decision
        .quote
        .lines
        .iter()
        .map(|lp| {
            let c = &decision.catalog[lp.line as usize];
            LineRow {
                line_no: i32::try_from(lp.line).unwrap_or(i32::MAX),
                product_id: c.product_id.clone(),
                stock_id: c.stock_id.clone(),
                sku: c.sku.clone(),
                quantity: i64::from(lp.quantity),
                unit_price: lp.unit_price,
                subtotal: lp.subtotal,
            }
        })
        .collect();
    let view = OrderView::from_rows(order.clone(), lines.clone());
    // The response is stored only under an idempotency key: no second serialization of
    // the order on the common path.
    let idempotency = match key {
        Some(held) => Some(idempotency::Done {
            key: held.key.clone(),
            response_body: serde_json::to_string(&view).map_err(ApiError::internal)?,
        }),
        None => None,
    };
    let max_attempts = i32::try_from(state.config.queue.max_attempts).unwrap_or(5);
    let decision_log: std::sync::Arc<str> =
        serde_json::to_string(&super::decision::DecisionLog::of(
            &id,
            now,
            &decision.evaluation,
            &decision.quote,
            decision.priority,
        ))
        .map_err(ApiError::internal)?
        .into();
    state
        .order_writer
        .write(super::writer::NewOrder {
            order,
            context: decision.context_json.clone(),
            lines,
            max_attempts,
            idempotency,
            decision: decision_log.clone(),
        })
        .await?;
    super::decision::export(&decision_log, &view.id, &decision.ctx.tenant);
    // Shadow candidates run now, off this order's path.
    state.policy.shadow_after(
        &decision.ctx,
        &crate::policy::shadow::Decided {
            order_id: view.id.clone(),
            violations: decision.evaluation.violations.clone(),
            quote: decision.quote.clone(),
            priority: decision.priority,
        },
    );
    tracing::debug!(order = %view.id, total = view.total, priority = view.priority, "order written");
    match &state.relay {
        // Redis mode: the relay pushes the outbox row, then wakes the workers.
        Some(relay) => relay.wake.notify_waiters(),
        None => state.work.notify_waiters(),
    }
    crate::observability::order_metrics().accepted(i64::from(decision.priority));
    Ok(view)
}

async fn place(
    state: AppState,
    actor: AuthUser,
    headers: HeaderMap,
    request: PlaceOrderRequest,
) -> Result<Response, ApiError> {
    // A real order never runs on a candidate: refusing the header (rather than ignoring
    // it) keeps an operator from believing an order was priced by the override.
    if headers.contains_key(OVERRIDE_HEADER) {
        return Err(override_forbidden(
            "X-Policy-Override is honoured on POST /order/quote and POST /admin/policy/evaluate only, never on a real order",
        ));
    }
    // The key is bound to the request as parsed, so formatting differences between two
    // sends of the same order do not count as a different body.
    // Only requests that carry a key pay for it.
    let canonical = headers
        .contains_key(idempotency::HEADER)
        .then(|| serde_json::to_vec(&request))
        .transpose()
        .map_err(ApiError::internal)?;
    // Parse first: a malformed body never takes an idempotency key.
    let parsed = parse(request)?;
    let key = match canonical {
        None => None,
        Some(canonical) => match idempotency::begin(&state, &actor, &headers, &canonical).await? {
            Begun::Replay(response) => return Ok(response),
            Begun::Proceed(held) => Some(held),
        },
    };
    let result = match decide(&state, &actor, &parsed, &[]).await {
        Ok(decision) => insert_order(&state, &actor, &decision, key.as_ref()).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(view) => {
            let location = format!("/order/{}", view.id);
            let mut response = (StatusCode::ACCEPTED, Json(view)).into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            Ok(response)
        }
        Err(error) => {
            if let Some(held) = &key {
                idempotency::finish(&state, &actor, held, &error).await;
            }
            Err(error)
        }
    }
}

/// Place an order. Prices come from the tenant's pricing component, never from the
/// client; `Idempotency-Key` makes retries safe.
#[utoipa::path(post, path = "/order", tag = "orders", request_body = PlaceOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "same key + same body → the first response")),
    responses((status = 202, body = OrderView, headers(("Location" = String))),
              (status = 409, description = "same key still in flight", body = ErrorEnvelope),
              (status = 422, description = "invalid, rejected by the shop's rules, or key reused", body = ErrorEnvelope),
              (status = 503, description = "a policy component failed", body = ErrorEnvelope)))]
async fn place_order(
    State(state): State<AppState>,
    actor: AuthUser,
    headers: HeaderMap,
    Json(body): Json<PlaceOrderRequest>,
) -> Result<Response, ApiError> {
    place(state, actor, headers, body).await
}

/// Same as `POST /order`.
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = PlaceOrderRequest,
    responses((status = 202, body = OrderView)))]
async fn place_order_alias(
    State(state): State<AppState>,
    actor: AuthUser,
    headers: HeaderMap,
    Json(body): Json<PlaceOrderRequest>,
) -> Result<Response, ApiError> {
    place(state, actor, headers, body).await
}

/// A price preview through the same hooks; nothing is written.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuoteResponse {
    /// The quote.
    pub quote: Quote,
    /// The priority the order would get.
    pub priority: u32,
    /// The components that decided.
    pub components: Vec<ComponentUsed>,
}

/// Preview the price of an order (same parsing and hooks as `POST /order`, no write).
/// An operator may send `X-Policy-Override: hook=name@version[?config], …` to run a
/// candidate component instead of the binding for this one request.
#[utoipa::path(post, path = "/order/quote", tag = "orders", request_body = PlaceOrderRequest,
    params(("X-Policy-Override" = Option<String>, Header, description = "operators only: hook=name@version[?key=value&…], comma-separated")),
    responses((status = 200, body = QuoteResponse),
              (status = 400, description = "OVERRIDE_INVALID", body = ErrorEnvelope),
              (status = 403, description = "OVERRIDE_FORBIDDEN", body = ErrorEnvelope),
              (status = 422, description = "rejected; COMPONENT_NOT_FOUND, HOOK_NOT_EXPORTED, CONFIG_INVALID", body = ErrorEnvelope)))]
async fn quote_order(
    State(state): State<AppState>,
    actor: AuthUser,
    headers: HeaderMap,
    Json(body): Json<PlaceOrderRequest>,
) -> Result<Json<QuoteResponse>, ApiError> {
    let overrides = read_overrides(&state, &actor, &actor.tenant_id, &headers).await?;
    let parsed = parse(body)?;
    let decision = decide(&state, &actor, &parsed, &overrides).await?;
    Ok(Json(QuoteResponse {
        components: components_used(&decision.evaluation),
        quote: decision.quote,
        priority: decision.priority,
    }))
}
