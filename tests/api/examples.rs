//! The five example tenant components of `components/` (coupon-codes, price-list-by-tag,
//! purchase-limit, tiered-volume, buy-x-get-y) end to end: uploaded, bound for the
//! default tenant with the config their doc comments describe, and driven through
//! `POST /order/quote` and `POST /order` from tables of cases. Each case states the
//! total, the discounts (code, amount, line, discount code, a fragment of the reason) and
//! the rejected codes, or the violations of a refusal; the quote and the 202 must both
//! say so and agree with each other, the lines must carry the catalog prices (every
//! example prices a line at its catalog price and puts its saving in a discount), and
//! one case per component is followed to CONFIRMED through `GET /order/{id}`.

use std::collections::HashMap;

use orderhost::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    backend_tests,
    helpers::{Backend, TestApp, spawn_app},
    rules::{bind, get, patch, post, settled, upload},
};

backend_tests!(
    coupon_codes_redeem_or_reject_each_code_alike_in_quote_and_order,
    price_list_by_tag_charges_the_lowest_list_price_of_the_customers_tags,
    purchase_limit_counts_confirmed_units_per_sku_and_window,
    tiered_volume_discounts_each_line_by_its_highest_tier,
    buy_x_get_y_discounts_the_get_units_of_each_offer,
    a_malformed_example_config_is_refused_at_bind_and_the_old_binding_stays,
);

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// A discount a case expects.
#[derive(Debug, Clone, Copy)]
struct Off {
    code: &'static str,
    amount: i64,
    /// The line it lands on; `None` = order-wide.
    line: Option<u32>,
    /// The discount code it redeems.
    discount_code: Option<&'static str>,
    /// A fragment of its reason.
    reason: &'static str,
}

/// An order-wide `COUPON` discount redeeming `code`.
fn coupon(code: &'static str, amount: i64, reason: &'static str) -> Off {
    Off {
        code: "COUPON",
        amount,
        line: None,
        discount_code: Some(code),
        reason,
    }
}

/// An automatic discount `code` on `line`.
fn on_line(code: &'static str, line: u32, amount: i64, reason: &'static str) -> Off {
    Off {
        code,
        amount,
        line: Some(line),
        discount_code: None,
        reason,
    }
}

/// What a case expects of the quote and the order.
enum Outcome {
    /// 200 quote and 202 order: the total, the discounts and the rejected codes
    /// (`discountCode`, `reason`), each in order.
    Placed {
        total: i64,
        discounts: Vec<Off>,
        rejected: Vec<(&'static str, &'static str)>,
    },
    /// 422 `ORDER_REJECTED` for both, with these violations (code, line, a fragment of
    /// the message), in order.
    Refused(Vec<(&'static str, Option<u32>, &'static str)>),
}

fn placed(total: i64, discounts: Vec<Off>, rejected: Vec<(&'static str, &'static str)>) -> Outcome {
    Outcome::Placed {
        total,
        discounts,
        rejected,
    }
}

fn refused(violations: Vec<(&'static str, Option<u32>, &'static str)>) -> Outcome {
    Outcome::Refused(violations)
}

/// One row of a table.
struct Case {
    name: &'static str,
    /// The e-mail of the customer placing it.
    customer: &'static str,
    body: Value,
    outcome: Outcome,
    /// Whether to wait for the order to settle and check it CONFIRMED as placed.
    settle: bool,
}

fn case(name: &'static str, customer: &'static str, body: Value, outcome: Outcome) -> Case {
    Case {
        name,
        customer,
        body,
        outcome,
        settle: false,
    }
}

impl Case {
    /// Follows this case's order to CONFIRMED.
    fn settled(mut self) -> Self {
        self.settle = true;
        self
    }
}

/// `{"lines": [...]}` of (sku, quantity).
fn order(lines: &[(&str, u32)]) -> Value {
    json!({
        "lines": lines
            .iter()
            .map(|(sku, quantity)| json!({ "sku": sku, "quantity": quantity }))
            .collect::<Vec<_>>()
    })
}

/// `order(lines)` with `discountCodes`.
fn with_codes(lines: &[(&str, u32)], codes: &[&str]) -> Value {
    let mut body = order(lines);
    body["discountCodes"] = json!(codes);
    body
}

/// Reads a body after asserting the status, naming the case on failure.
async fn body_of(response: reqwest::Response, status: StatusCode, what: &str) -> Value {
    let actual = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "{what}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"))
}

/// (code, amount, line, discountCode) of each discount of a quote or an order view.
fn discounts_of(view: &Value) -> Vec<(String, i64, Option<u32>, Option<String>)> {
    view["discounts"]
        .as_array()
        .unwrap_or_else(|| panic!("discounts in {view}"))
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap_or_default().to_owned(),
                d["amount"].as_i64().unwrap_or(-1),
                d["line"]
                    .as_u64()
                    .map(|l| u32::try_from(l).unwrap_or(u32::MAX)),
                d.get("discountCode")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            )
        })
        .collect()
}

/// (discountCode, reason) of each rejected code.
fn rejected_of(view: &Value) -> Vec<(String, String)> {
    view["rejectedCodes"]
        .as_array()
        .unwrap_or_else(|| panic!("rejectedCodes in {view}"))
        .iter()
        .map(|r| {
            (
                r["discountCode"].as_str().unwrap_or_default().to_owned(),
                r["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A running app with the example shop's catalog and customers.
struct Shop {
    app: TestApp,
    operator: String,
    admin: String,
    /// Customer e-mail → access token.
    tokens: HashMap<&'static str, String>,
    /// SKU → (catalog unit price, product id).
    catalog: HashMap<&'static str, (i64, String)>,
}

impl Shop {
    /// Spawns an app on `backend` with an operator, an admin, `products` (sku, unit
    /// price; 10 000 units each) and `customers` (e-mail, tags).
    async fn open(
        backend: Backend,
        products: &[(&'static str, i64)],
        customers: &[(&'static str, &[&str])],
    ) -> Self {
        let app = spawn_app(backend).await;
        let operator = app
            .user_with_role("ops@example.com", Role::Operator, None)
            .await;
        let admin = app
            .user_with_role("boss@example.com", Role::Admin, None)
            .await;
        let mut catalog = HashMap::new();
        for &(sku, price) in products {
            let (product, _) = app.seed_product(None, sku, price, 10_000).await;
            catalog.insert(sku, (price, product));
        }
        let mut tokens = HashMap::new();
        for &(email, tags) in customers {
            let token = app.user_with_role(email, Role::Customer, None).await;
            if !tags.is_empty() {
                patch(
                    &app,
                    &admin,
                    &format!("/users/{email}"),
                    &json!({ "tags": tags }),
                )
                .await;
            }
            tokens.insert(email, token);
        }
        Self {
            app,
            operator,
            admin,
            tokens,
            catalog,
        }
    }

    /// `PATCH /products/{id}` of `sku` as the admin.
    async fn describe(&self, sku: &str, body: Value) {
        let product = &self.catalog[sku].1;
        patch(
            &self.app,
            &self.admin,
            &format!("/products/{product}"),
            &body,
        )
        .await;
    }

    /// Binds `component@1.0.0` to `hook` of the default tenant with `config`: 200.
    async fn bind(&self, component: &str, hook: &str, config: Value) {
        let response = bind(
            &self.app,
            &self.operator,
            "default",
            hook,
            json!({ "component": format!("{component}@1.0.0"), "config": config }),
        )
        .await;
        body_of(response, StatusCode::OK, &format!("bind {component}")).await;
    }

    /// Uploads the example `component` (as `component@1.0.0`) and binds it.
    async fn install(&self, component: &str, hook: &str, config: Value) {
        let file = format!("{}.wasm", component.replace('-', "_"));
        upload(&self.app, &self.operator, component, "1.0.0", &file).await;
        self.bind(component, hook, config).await;
    }

    /// Signs every customer in again (after the clock moved past the tokens' life).
    async fn sign_in_again(&mut self) {
        let emails: Vec<&'static str> = self.tokens.keys().copied().collect();
        for email in emails {
            let token = self.app.login_as(email, None).await.1;
            self.tokens.insert(email, token);
        }
    }

    /// Quotes and places `case`, asserting its outcome on both; the 202 body when placed
    /// (followed to CONFIRMED if the case says so).
    async fn run(&self, case: &Case) -> Option<Value> {
        let name = case.name;
        let token = &self.tokens[case.customer];
        let quoted = post(&self.app, token, "/order/quote", &case.body).await;
        let placed = post(&self.app, token, "/order", &case.body).await;
        match &case.outcome {
            Outcome::Placed {
                total,
                discounts,
                rejected,
            } => {
                let quote = body_of(quoted, StatusCode::OK, &format!("{name}: quote")).await;
                let quote = &quote["quote"];
                let order = body_of(placed, StatusCode::ACCEPTED, &format!("{name}: order")).await;
                let expected: Vec<_> = discounts
                    .iter()
                    .map(|d| {
                        (
                            d.code.to_owned(),
                            d.amount,
                            d.line,
                            d.discount_code.map(str::to_owned),
                        )
                    })
                    .collect();
                let rejected: Vec<_> = rejected
                    .iter()
                    .map(|(c, r)| ((*c).to_owned(), (*r).to_owned()))
                    .collect();
                for (what, view) in [("quote", quote), ("order", &order)] {
                    assert_eq!(view["total"], json!(total), "{name}: {what} total: {view}");
                    assert_eq!(
                        discounts_of(view),
                        expected,
                        "{name}: {what} discounts: {view}"
                    );
                    for (actual, wanted) in
                        view["discounts"].as_array().unwrap().iter().zip(discounts)
                    {
                        let reason = actual["reason"].as_str().unwrap_or_default();
                        assert!(
                            reason.contains(wanted.reason),
                            "{name}: {what} reason {reason:?} lacks {:?}",
                            wanted.reason
                        );
                    }
                    assert_eq!(
                        rejected_of(view),
                        rejected,
                        "{name}: {what} rejected codes: {view}"
                    );
                    assert_eq!(view["currency"], "EUR", "{name}: {what}: {view}");
                }
                // The quote is what the order charged, to the messages.
                for field in ["discounts", "rejectedCodes"] {
                    assert_eq!(quote[field], order[field], "{name}: {field}");
                }
                // Every line at its catalog price; the savings are discounts.
                let requested = case.body["lines"].as_array().unwrap();
                for (what, view, is_order) in [("quote", quote, false), ("order", &order, true)] {
                    let lines = view["lines"].as_array().unwrap();
                    assert_eq!(lines.len(), requested.len(), "{name}: {what} lines: {view}");
                    for (i, (line, asked)) in lines.iter().zip(requested).enumerate() {
                        if is_order {
                            assert_eq!(line["sku"], asked["sku"], "{name}: line {i}: {view}");
                        } else {
                            assert_eq!(line["line"], json!(i), "{name}: line {i}: {view}");
                        }
                        let sku = asked["sku"].as_str().unwrap();
                        let quantity = asked["quantity"].as_i64().unwrap();
                        let price = self.catalog[sku].0;
                        assert_eq!(line["unitPrice"], json!(price), "{name}: {what}: {view}");
                        assert_eq!(line["quantity"], json!(quantity), "{name}: {what}: {view}");
                        assert_eq!(
                            line["subtotal"],
                            json!(price * quantity),
                            "{name}: {what}: {view}"
                        );
                    }
                }
                if case.settle {
                    let id = order["id"].as_str().expect("order id");
                    let done = settled(&self.app, token, id).await;
                    assert_eq!(done["status"], "CONFIRMED", "{name}: {done}");
                    for field in ["total", "discounts", "rejectedCodes", "lines"] {
                        assert_eq!(done[field], order[field], "{name}: settled {field}");
                    }
                }
                Some(order)
            }
            Outcome::Refused(expected) => {
                for (what, response) in [("quote", quoted), ("order", placed)] {
                    let body = body_of(
                        response,
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &format!("{name}: {what}"),
                    )
                    .await;
                    assert_eq!(body["error"]["code"], "ORDER_REJECTED", "{name}: {body}");
                    let violations = body["error"]["details"]["violations"]
                        .as_array()
                        .unwrap_or_else(|| panic!("{name}: violations in {body}"));
                    let actual: Vec<(&str, Option<u64>)> = violations
                        .iter()
                        .map(|v| (v["code"].as_str().unwrap_or_default(), v["line"].as_u64()))
                        .collect();
                    let wanted: Vec<(&str, Option<u64>)> = expected
                        .iter()
                        .map(|(code, line, _)| (*code, line.map(u64::from)))
                        .collect();
                    assert_eq!(actual, wanted, "{name}: {what} violations: {body}");
                    for (v, (_, _, fragment)) in violations.iter().zip(expected) {
                        let message = v["message"].as_str().unwrap_or_default();
                        assert!(
                            message.contains(fragment),
                            "{name}: {what} message {message:?} lacks {fragment:?}"
                        );
                    }
                }
                None
            }
        }
    }

    /// Runs every case of `table`, in order.
    async fn run_all(&self, table: &[Case]) {
        assert!(
            table.iter().any(|c| c.settle),
            "each table follows one order to CONFIRMED"
        );
        for case in table {
            self.run(case).await;
        }
    }
}

async fn coupon_codes_redeem_or_reject_each_code_alike_in_quote_and_order(backend: Backend) {
    let shop = Shop::open(
        backend,
        &[("MUG", 1_200), ("LAMP", 4_999)],
        &[
            ("buyer@example.com", &[]),
            ("member@example.com", &["club"]),
        ],
    )
    .await;
    // Windows around the app's clock, which moves only when told to.
    let now = shop.app.state.clock.now_ms();
    let codes = json!({
        "SAVE10":  { "percent-bps": 1000, "min-spend": 5000 },
        "odd":     { "percent-bps": 333 },
        "FIVEOFF": { "amount": 500 },
        "BIG":     { "amount": 5000 },
        "TINY":    { "percent-bps": 1 },
        "EARLY":   { "amount": 300, "starts-at-ms": now + HOUR_MS, "ends-at-ms": now + 2 * HOUR_MS },
        "OLD":     { "amount": 300, "starts-at-ms": now - 2 * HOUR_MS, "ends-at-ms": now - HOUR_MS },
        "GONE":    { "amount": 300, "ends-at-ms": now },
        "NOW":     { "amount": 250, "starts-at-ms": now - HOUR_MS, "ends-at-ms": now + HOUR_MS },
        "CLUB":    { "percent-bps": 1500, "customer-tag": "Club" },
    });
    shop.install(
        "coupon-codes",
        "pricing",
        json!({ "codes": codes.clone(), "max-codes": 1 }),
    )
    .await;

    let (buyer, member) = ("buyer@example.com", "member@example.com");
    let table = [
        case(
            "percent of the subtotal, rounded down",
            buyer,
            with_codes(&[("LAMP", 2)], &["SAVE10"]),
            // 9 998 × 1000 / 10 000 = 999.8.
            placed(
                8_999,
                vec![coupon(
                    "SAVE10",
                    999,
                    "discount code SAVE10: 10 % off the subtotal",
                )],
                vec![],
            ),
        )
        .settled(),
        case(
            "a lower-case config code, odd basis points",
            buyer,
            with_codes(&[("MUG", 1)], &["Odd"]),
            // 1 200 × 333 / 10 000 = 39.96.
            placed(1_161, vec![coupon("ODD", 39, "3.33 % off")], vec![]),
        ),
        case(
            "a fixed amount",
            buyer,
            with_codes(&[("MUG", 1)], &["FIVEOFF"]),
            placed(
                700,
                vec![coupon("FIVEOFF", 500, "500 EUR minor units off")],
                vec![],
            ),
        ),
        case(
            "a fixed amount above the total is capped at it",
            buyer,
            with_codes(&[("MUG", 1)], &["BIG"]),
            placed(
                0,
                vec![coupon("BIG", 1_200, "capped at what was left to pay")],
                vec![],
            ),
        ),
        case(
            "an unknown code",
            buyer,
            with_codes(&[("MUG", 1)], &["NOPE"]),
            placed(1_200, vec![], vec![("NOPE", "CODE_UNKNOWN")]),
        ),
        case(
            "below the minimum spend",
            buyer,
            with_codes(&[("MUG", 4)], &["SAVE10"]),
            placed(4_800, vec![], vec![("SAVE10", "MIN_SPEND_NOT_MET")]),
        ),
        case(
            "exactly the minimum spend",
            buyer,
            with_codes(&[("MUG", 5), ("LAMP", 1)], &["SAVE10"]),
            // 10 999 × 10 % = 1 099.9.
            placed(9_900, vec![coupon("SAVE10", 1_099, "10 %")], vec![]),
        ),
        case(
            "a window that has ended",
            buyer,
            with_codes(&[("MUG", 1)], &["OLD"]),
            placed(1_200, vec![], vec![("OLD", "CODE_EXPIRED")]),
        ),
        case(
            "a window that ends now (the end is exclusive)",
            buyer,
            with_codes(&[("MUG", 1)], &["GONE"]),
            placed(1_200, vec![], vec![("GONE", "CODE_EXPIRED")]),
        ),
        case(
            "a window that has not started",
            buyer,
            with_codes(&[("MUG", 1)], &["EARLY"]),
            placed(1_200, vec![], vec![("EARLY", "CODE_NOT_YET_VALID")]),
        ),
        case(
            "inside its window",
            buyer,
            with_codes(&[("MUG", 1)], &["NOW"]),
            placed(950, vec![coupon("NOW", 250, "NOW")], vec![]),
        ),
        case(
            "a tagged code for an untagged customer",
            buyer,
            with_codes(&[("LAMP", 1)], &["CLUB"]),
            placed(4_999, vec![], vec![("CLUB", "CODE_NOT_ELIGIBLE")]),
        ),
        case(
            "a tagged code for a customer with the tag",
            member,
            with_codes(&[("LAMP", 1)], &["CLUB"]),
            // 4 999 × 15 % = 749.85.
            placed(4_250, vec![coupon("CLUB", 749, "15 %")], vec![]),
        ),
        case(
            "two valid codes with max-codes 1",
            buyer,
            with_codes(&[("LAMP", 2)], &["SAVE10", "FIVEOFF"]),
            placed(
                8_999,
                vec![coupon("SAVE10", 999, "SAVE10")],
                vec![("FIVEOFF", "CODE_NOT_COMBINABLE")],
            ),
        ),
        case(
            "the client's order decides which code is applied",
            buyer,
            with_codes(&[("LAMP", 2)], &["FIVEOFF", "SAVE10"]),
            placed(
                9_498,
                vec![coupon("FIVEOFF", 500, "FIVEOFF")],
                vec![("SAVE10", "CODE_NOT_COMBINABLE")],
            ),
        ),
        case(
            "a rejected code does not use up the one allowed",
            buyer,
            with_codes(&[("LAMP", 1)], &["CLUB", "TINY", "FIVEOFF"]),
            // TINY: 4 999 × 1 / 10 000 rounds down to 0.
            placed(
                4_499,
                vec![coupon("FIVEOFF", 500, "FIVEOFF")],
                vec![("CLUB", "CODE_NOT_ELIGIBLE"), ("TINY", "CODE_NO_EFFECT")],
            ),
        ),
        case(
            "input trimmed and upper-cased",
            buyer,
            with_codes(&[("LAMP", 2)], &[" save10 "]),
            placed(8_999, vec![coupon("SAVE10", 999, "SAVE10")], vec![]),
        ),
        case(
            "every rejection keeps the client's order",
            buyer,
            with_codes(&[("MUG", 1)], &["nope", "OLD", "FIVEOFF", "EARLY"]),
            placed(
                700,
                vec![coupon("FIVEOFF", 500, "FIVEOFF")],
                vec![
                    ("NOPE", "CODE_UNKNOWN"),
                    ("OLD", "CODE_EXPIRED"),
                    ("EARLY", "CODE_NOT_YET_VALID"),
                ],
            ),
        ),
        case(
            "no codes",
            buyer,
            order(&[("LAMP", 1), ("MUG", 2)]),
            placed(7_399, vec![], vec![]),
        ),
    ];
    shop.run_all(&table).await;

    // The messages a client shows, as the quote gives them.
    let quote = body_of(
        post(
            &shop.app,
            &shop.tokens[buyer],
            "/order/quote",
            &with_codes(&[("MUG", 1)], &["SAVE10", "CLUB"]),
        )
        .await,
        StatusCode::OK,
        "messages",
    )
    .await;
    let messages: Vec<&str> = quote["quote"]["rejectedCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        messages,
        [
            "SAVE10 needs a minimum spend of 5000 EUR minor units; the subtotal is 1200",
            "CLUB is only for customers tagged \"club\"",
        ],
        "{quote}"
    );
    assert_eq!(
        quote["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["hook"] == "pricing")
            .map(|c| c["component"].clone()),
        Some(json!("coupon-codes@1.0.0")),
        "{quote}"
    );

    // Two codes per order: percentages each take their share of the subtotal, a fixed
    // amount is capped at what the codes before it left.
    shop.bind(
        "coupon-codes",
        "pricing",
        json!({ "codes": codes, "max-codes": 2 }),
    )
    .await;
    let table = [
        case(
            "two percentages do not compound",
            buyer,
            with_codes(&[("LAMP", 2)], &["SAVE10", "ODD"]),
            // 9 998 × 10 % = 999.8; 9 998 × 3.33 % = 332.93.
            placed(
                8_667,
                vec![coupon("SAVE10", 999, "10 %"), coupon("ODD", 332, "3.33 %")],
                vec![],
            ),
        )
        .settled(),
        case(
            "the second code capped, a third not combinable",
            buyer,
            with_codes(&[("MUG", 1)], &["FIVEOFF", "BIG", "NOW"]),
            placed(
                0,
                vec![
                    coupon("FIVEOFF", 500, "500 EUR minor units off"),
                    coupon("BIG", 700, "capped at what was left to pay"),
                ],
                vec![("NOW", "CODE_NOT_COMBINABLE")],
            ),
        ),
    ];
    shop.run_all(&table).await;
}

async fn price_list_by_tag_charges_the_lowest_list_price_of_the_customers_tags(backend: Backend) {
    let shop = Shop::open(
        backend,
        &[("TEE", 2_400), ("MUG", 1_250), ("CAP", 1_500), ("PEN", 199)],
        &[
            ("buyer@example.com", &[]),
            ("retail@example.com", &["retail"]),
            ("wholesale@example.com", &["wholesale"]),
            ("both@example.com", &["wholesale", "reseller"]),
            ("tie@example.com", &["wholesale", "vip-club"]),
        ],
    )
    .await;
    shop.install(
        "price-list-by-tag",
        "pricing",
        json!({ "price-lists": {
            "wholesale": { "TEE": 1800, "MUG": 1300, "PEN": 150 },
            // Tags match case-insensitively.
            "Reseller": { "TEE": 1700, "CAP": 1000 },
            "vip-club": { "TEE": 1800 },
        } }),
    )
    .await;

    let wholesale = "wholesale@example.com";
    let table = [
        case(
            "an untagged customer pays catalog prices",
            "buyer@example.com",
            order(&[("TEE", 10), ("CAP", 1)]),
            placed(25_500, vec![], vec![]),
        ),
        case(
            "a tag without a list pays catalog prices",
            "retail@example.com",
            order(&[("TEE", 1)]),
            placed(2_400, vec![], vec![]),
        ),
        case(
            "a tagged customer pays the list price",
            wholesale,
            order(&[("TEE", 10)]),
            placed(
                18_000,
                vec![on_line(
                    "PRICE_LIST",
                    0,
                    6_000,
                    "price list \"wholesale\": 1800 instead of 2400 per unit",
                )],
                vec![],
            ),
        )
        .settled(),
        case(
            "a SKU absent from the list keeps the catalog price",
            wholesale,
            order(&[("CAP", 2), ("TEE", 1)]),
            placed(
                4_800,
                vec![on_line("PRICE_LIST", 1, 600, "wholesale")],
                vec![],
            ),
        ),
        case(
            "a list price above the catalog price is ignored",
            wholesale,
            order(&[("MUG", 2)]),
            placed(2_500, vec![], vec![]),
        ),
        case(
            "two tags with lists: the lowest price per SKU wins",
            "both@example.com",
            order(&[("TEE", 3), ("CAP", 1), ("PEN", 4), ("MUG", 1)]),
            // 7 200 + 1 500 + 796 + 1 250 − (2 100 + 500 + 196).
            placed(
                7_950,
                vec![
                    on_line(
                        "PRICE_LIST",
                        0,
                        2_100,
                        "price list \"reseller\": 1700 instead of 2400",
                    ),
                    on_line(
                        "PRICE_LIST",
                        1,
                        500,
                        "price list \"reseller\": 1000 instead of 1500",
                    ),
                    on_line(
                        "PRICE_LIST",
                        2,
                        196,
                        "price list \"wholesale\": 150 instead of 199",
                    ),
                ],
                vec![],
            ),
        ),
        case(
            "a tie goes to the tag first in the sorted tags",
            "tie@example.com",
            order(&[("TEE", 1)]),
            placed(
                1_800,
                vec![on_line("PRICE_LIST", 0, 600, "price list \"vip-club\"")],
                vec![],
            ),
        ),
        case(
            "discount codes are left to the host: CODE_UNKNOWN",
            wholesale,
            with_codes(&[("TEE", 1)], &["spring"]),
            placed(
                1_800,
                vec![on_line("PRICE_LIST", 0, 600, "wholesale")],
                vec![("SPRING", "CODE_UNKNOWN")],
            ),
        ),
    ];
    shop.run_all(&table).await;

    // Tags changed by the admin count from the next order on.
    patch(
        &shop.app,
        &shop.admin,
        "/users/wholesale@example.com",
        &json!({ "tags": [] }),
    )
    .await;
    shop.run(&case(
        "the tag removed: catalog prices again",
        wholesale,
        order(&[("TEE", 10)]),
        placed(24_000, vec![], vec![]),
    ))
    .await;
}

/// One step of the purchase-limit story.
enum Step {
    /// Quote and place a case; a placed case's order becomes the last placed.
    Order(Case),
    /// Move the app's clock (and sign in again).
    Advance(i64),
    /// Cancel the last placed order (confirmed by then).
    CancelLast,
}

async fn purchase_limit_counts_confirmed_units_per_sku_and_window(backend: Backend) {
    let mut shop = Shop::open(
        backend,
        &[("LAMP", 3_000), ("GPU", 150_000), ("TEE", 2_000)],
        &[("buyer@example.com", &[]), ("other@example.com", &[])],
    )
    .await;
    shop.install(
        "purchase-limit",
        "validation",
        json!({
            "limits": {
                "LAMP": { "max-units": 2, "window": "24h" },
                "GPU": { "max-units": 1, "window": "30d" },
            },
            "default": { "max-units": 5, "window": "30d" },
        }),
    )
    .await;

    let (buyer, other) = ("buyer@example.com", "other@example.com");
    let steps = vec![
        Step::Order(
            case(
                "within every limit",
                buyer,
                order(&[("LAMP", 2), ("GPU", 1)]),
                placed(156_000, vec![], vec![]),
            )
            .settled(),
        ),
        Step::Order(case(
            "one more lamp within 24 hours",
            buyer,
            order(&[("LAMP", 1)]),
            refused(vec![(
                "PURCHASE_LIMIT_EXCEEDED",
                Some(0),
                "at most 2 of LAMP per 24 hours; you bought 2, this order asks for 1",
            )]),
        )),
        Step::Order(case(
            "the GPU on the second line, within 30 days",
            buyer,
            order(&[("TEE", 1), ("GPU", 1)]),
            refused(vec![(
                "PURCHASE_LIMIT_EXCEEDED",
                Some(1),
                "at most 1 of GPU per 30 days; you bought 1, this order asks for 1",
            )]),
        )),
        Step::Order(case(
            "the default limit for an unlisted SKU, violations in line order",
            buyer,
            order(&[("GPU", 1), ("TEE", 6), ("LAMP", 1)]),
            refused(vec![
                ("PURCHASE_LIMIT_EXCEEDED", Some(0), "GPU"),
                (
                    "PURCHASE_LIMIT_EXCEEDED",
                    Some(1),
                    "at most 5 of TEE per 30 days; you bought 0, this order asks for 6",
                ),
                ("PURCHASE_LIMIT_EXCEEDED", Some(2), "LAMP"),
            ]),
        )),
        Step::Order(case(
            "another customer's purchases do not count",
            other,
            order(&[("LAMP", 2), ("GPU", 1), ("TEE", 5)]),
            placed(166_000, vec![], vec![]),
        )),
        Step::Advance(25 * HOUR_MS),
        Step::Order(case(
            "25 hours later the 30-day limit still refuses",
            buyer,
            order(&[("GPU", 1)]),
            refused(vec![(
                "PURCHASE_LIMIT_EXCEEDED",
                Some(0),
                "at most 1 of GPU per 30 days; you bought 1, this order asks for 1",
            )]),
        )),
        Step::Order(
            case(
                "25 hours later the 24-hour limit allows again",
                buyer,
                order(&[("LAMP", 2)]),
                placed(6_000, vec![], vec![]),
            )
            .settled(),
        ),
        Step::Order(case(
            "and counts the new order",
            buyer,
            order(&[("LAMP", 1)]),
            refused(vec![(
                "PURCHASE_LIMIT_EXCEEDED",
                Some(0),
                "you bought 2, this order asks for 1",
            )]),
        )),
        Step::CancelLast,
        Step::Order(case(
            "two lines of one SKU are summed: the line that crosses the limit",
            buyer,
            order(&[("LAMP", 2), ("TEE", 1), ("LAMP", 1)]),
            refused(vec![(
                "PURCHASE_LIMIT_EXCEEDED",
                Some(2),
                "at most 2 of LAMP per 24 hours; you bought 0, this order asks for 3",
            )]),
        )),
        Step::Order(
            case(
                "a cancelled order no longer counts; two lines within the limit",
                buyer,
                order(&[("LAMP", 1), ("LAMP", 1)]),
                placed(6_000, vec![], vec![]),
            )
            .settled(),
        ),
        Step::Order(case(
            "both lines counted once confirmed",
            buyer,
            order(&[("LAMP", 1)]),
            refused(vec![(
                "PURCHASE_LIMIT_EXCEEDED",
                Some(0),
                "you bought 2, this order asks for 1",
            )]),
        )),
        Step::Advance(30 * DAY_MS),
        Step::Order(
            case(
                "31 days after the first GPU the 30-day limit allows again",
                buyer,
                order(&[("GPU", 1), ("LAMP", 2), ("TEE", 5)]),
                placed(166_000, vec![], vec![]),
            )
            .settled(),
        ),
    ];
    let mut last: Option<String> = None;
    for step in steps {
        match step {
            Step::Order(case) => {
                if let Some(order) = shop.run(&case).await {
                    last = order["id"].as_str().map(str::to_owned);
                }
            }
            Step::Advance(ms) => {
                shop.app.advance(ms);
                shop.sign_in_again().await;
            }
            Step::CancelLast => {
                let id = last.take().expect("an order to cancel");
                let token = &shop.tokens[buyer];
                let before = get(&shop.app, token, &format!("/order/{id}")).await;
                assert_eq!(before["status"], "CONFIRMED", "{before}");
                let cancelled = body_of(
                    post(&shop.app, token, &format!("/order/{id}/cancel"), &json!({})).await,
                    StatusCode::OK,
                    "cancel",
                )
                .await;
                assert_eq!(cancelled["status"], "CANCELLED", "{cancelled}");
            }
        }
    }
}

async fn tiered_volume_discounts_each_line_by_its_highest_tier(backend: Backend) {
    let shop = Shop::open(
        backend,
        &[("STICKER", 199), ("MUG", 1_250), ("TEE", 2_400), ("PIN", 1)],
        &[("buyer@example.com", &[])],
    )
    .await;
    shop.describe("STICKER", json!({ "category": "Stationery" }))
        .await;
    shop.describe("MUG", json!({ "category": "mugs" })).await;
    shop.describe("PIN", json!({ "category": "stationery" }))
        .await;
    // Tiers in any order: sorted by the component.
    shop.install(
        "tiered-volume",
        "pricing",
        json!({ "tiers": [
            { "min-units": 50, "percent-bps": 1000 },
            { "min-units": 10, "percent-bps": 500 },
            { "min-units": 25, "percent-bps": 750 },
        ] }),
    )
    .await;

    let buyer = "buyer@example.com";
    let table = [
        case(
            "below the first tier",
            buyer,
            order(&[("STICKER", 9)]),
            placed(1_791, vec![], vec![]),
        ),
        case(
            "the first tier",
            buyer,
            order(&[("STICKER", 10)]),
            // 1 990 × 5 % = 99.5.
            placed(
                1_891,
                vec![on_line("VOLUME_TIER", 0, 99, "10+ units: 5 % off")],
                vec![],
            ),
        )
        .settled(),
        case(
            "the middle tier",
            buyer,
            order(&[("STICKER", 25)]),
            // 4 975 × 7.5 % = 373.125.
            placed(
                4_602,
                vec![on_line("VOLUME_TIER", 0, 373, "25+ units: 7.5 % off")],
                vec![],
            ),
        ),
        case(
            "just below the top tier",
            buyer,
            order(&[("STICKER", 49)]),
            // 9 751 × 7.5 % = 731.325.
            placed(
                9_020,
                vec![on_line("VOLUME_TIER", 0, 731, "25+ units: 7.5 % off")],
                vec![],
            ),
        ),
        case(
            "the top tier on its line only",
            buyer,
            order(&[("MUG", 2), ("STICKER", 60)]),
            // 11 940 × 10 % = 1 194.
            placed(
                13_246,
                vec![on_line("VOLUME_TIER", 1, 1_194, "50+ units: 10 % off")],
                vec![],
            ),
        ),
        case(
            "each line by its own quantity",
            buyer,
            order(&[("STICKER", 10), ("MUG", 30), ("TEE", 3)]),
            // 1 990 × 5 % = 99.5; 37 500 × 7.5 % = 2 812.5.
            placed(
                43_779,
                vec![
                    on_line("VOLUME_TIER", 0, 99, "10+ units: 5 % off"),
                    on_line("VOLUME_TIER", 1, 2_812, "25+ units: 7.5 % off"),
                ],
                vec![],
            ),
        ),
        case(
            "a discount that rounds down to 0 is left out",
            buyer,
            order(&[("PIN", 10)]),
            placed(10, vec![], vec![]),
        ),
        case(
            "discount codes are left to the host: CODE_UNKNOWN",
            buyer,
            with_codes(&[("STICKER", 10)], &["BULK"]),
            placed(
                1_891,
                vec![on_line("VOLUME_TIER", 0, 99, "10+")],
                vec![("BULK", "CODE_UNKNOWN")],
            ),
        ),
    ];
    shop.run_all(&table).await;

    // Only some categories: compared case-insensitively, spaces ignored; a line without
    // a category gets no tier.
    shop.bind(
        "tiered-volume",
        "pricing",
        json!({
            "tiers": [{ "min-units": 10, "percent-bps": 500 }],
            "categories": [" STATIONERY "],
        }),
    )
    .await;
    let table = [
        case(
            "only the lines of the category",
            buyer,
            order(&[("MUG", 10), ("STICKER", 10), ("TEE", 10)]),
            // 12 500 + 1 990 + 24 000 − 99.
            placed(
                38_391,
                vec![on_line("VOLUME_TIER", 1, 99, "10+ units: 5 % off")],
                vec![],
            ),
        )
        .settled(),
        case(
            "another category: no tier",
            buyer,
            order(&[("MUG", 50)]),
            placed(62_500, vec![], vec![]),
        ),
        case(
            "no category: no tier",
            buyer,
            order(&[("TEE", 20)]),
            placed(48_000, vec![], vec![]),
        ),
    ];
    shop.run_all(&table).await;
}

async fn buy_x_get_y_discounts_the_get_units_of_each_offer(backend: Backend) {
    let shop = Shop::open(
        backend,
        &[
            ("TEE", 2_000),
            ("CAP", 1_800),
            ("SOCK", 500),
            ("CAMERA", 45_000),
            ("SD", 2_999),
        ],
        &[("buyer@example.com", &[])],
    )
    .await;
    shop.install(
        "buy-x-get-y",
        "pricing",
        json!({ "offers": [
            { "buy-sku": "TEE", "buy-quantity": 2, "get-sku": "CAP", "get-quantity": 1 },
            { "buy-sku": "SOCK", "buy-quantity": 2, "get-sku": "SOCK", "get-quantity": 1 },
            { "buy-sku": "CAMERA", "buy-quantity": 1, "get-sku": "SD", "get-quantity": 1,
              "percent-bps": 5000, "max-applications": 2 },
        ] }),
    )
    .await;

    let buyer = "buyer@example.com";
    let table = [
        case(
            "buy 2 get 1 free on another SKU",
            buyer,
            order(&[("TEE", 2), ("CAP", 1)]),
            placed(
                4_000,
                vec![on_line(
                    "BUY_X_GET_Y",
                    1,
                    1_800,
                    "buy 2 × TEE, get 1 × CAP free (1 unit)",
                )],
                vec![],
            ),
        )
        .settled(),
        case(
            "not enough bought",
            buyer,
            order(&[("TEE", 1), ("CAP", 1)]),
            placed(3_800, vec![], vec![]),
        ),
        case(
            "two applications, one unit to get",
            buyer,
            order(&[("CAP", 1), ("TEE", 4)]),
            placed(
                8_000,
                vec![on_line("BUY_X_GET_Y", 0, 1_800, "(1 unit)")],
                vec![],
            ),
        ),
        case(
            "two applications, two of three units free",
            buyer,
            order(&[("TEE", 5), ("CAP", 3)]),
            placed(
                11_800,
                vec![on_line("BUY_X_GET_Y", 1, 3_600, "(2 units)")],
                vec![],
            ),
        ),
        case(
            "the get SKU absent: no discount",
            buyer,
            order(&[("TEE", 4)]),
            placed(8_000, vec![], vec![]),
        ),
        case(
            "same SKU, 2 units: none free",
            buyer,
            order(&[("SOCK", 2)]),
            placed(1_000, vec![], vec![]),
        ),
        case(
            "same SKU, 3 units: 1 free",
            buyer,
            order(&[("SOCK", 3)]),
            placed(
                1_000,
                vec![on_line(
                    "BUY_X_GET_Y",
                    0,
                    500,
                    "buy 2 × SOCK, get 1 × SOCK free (1 unit)",
                )],
                vec![],
            ),
        ),
        case(
            "same SKU, 5 units: 1 free",
            buyer,
            order(&[("SOCK", 5)]),
            placed(
                2_000,
                vec![on_line("BUY_X_GET_Y", 0, 500, "(1 unit)")],
                vec![],
            ),
        ),
        case(
            "same SKU, 6 units: 2 free",
            buyer,
            order(&[("SOCK", 6)]),
            placed(
                2_000,
                vec![on_line("BUY_X_GET_Y", 0, 1_000, "(2 units)")],
                vec![],
            ),
        ),
        case(
            "half price, rounded down",
            buyer,
            order(&[("CAMERA", 1), ("SD", 1)]),
            // 2 999 × 50 % = 1 499.5.
            placed(
                46_500,
                vec![on_line(
                    "BUY_X_GET_Y",
                    1,
                    1_499,
                    "buy 1 × CAMERA, get 1 × SD at 50 % off (1 unit)",
                )],
                vec![],
            ),
        ),
        case(
            "max-applications caps the units",
            buyer,
            order(&[("CAMERA", 3), ("SD", 3)]),
            // 135 000 + 8 997 − 2 × 2 999 × 50 %.
            placed(
                140_998,
                vec![on_line("BUY_X_GET_Y", 1, 2_999, "(2 units)")],
                vec![],
            ),
        ),
        case(
            "a camera alone",
            buyer,
            order(&[("CAMERA", 1)]),
            placed(45_000, vec![], vec![]),
        ),
        case(
            "two offers in one order, each on its line",
            buyer,
            order(&[("SOCK", 3), ("TEE", 2), ("CAP", 1)]),
            // 1 500 + 4 000 + 1 800 − (1 800 + 500).
            placed(
                5_000,
                vec![
                    on_line("BUY_X_GET_Y", 2, 1_800, "CAP"),
                    on_line("BUY_X_GET_Y", 0, 500, "SOCK"),
                ],
                vec![],
            ),
        ),
        case(
            "discount codes are left to the host: CODE_UNKNOWN",
            buyer,
            with_codes(&[("SOCK", 3)], &["FREESOCK"]),
            placed(
                1_000,
                vec![on_line("BUY_X_GET_Y", 0, 500, "SOCK")],
                vec![("FREESOCK", "CODE_UNKNOWN")],
            ),
        ),
    ];
    shop.run_all(&table).await;
}

async fn a_malformed_example_config_is_refused_at_bind_and_the_old_binding_stays(backend: Backend) {
    let shop = Shop::open(backend, &[("MUG", 1_200)], &[("buyer@example.com", &[])]).await;
    for component in [
        "coupon-codes",
        "price-list-by-tag",
        "purchase-limit",
        "tiered-volume",
        "buy-x-get-y",
    ] {
        let file = format!("{}.wasm", component.replace('-', "_"));
        upload(&shop.app, &shop.operator, component, "1.0.0", &file).await;
    }
    shop.bind(
        "coupon-codes",
        "pricing",
        json!({ "codes": { "SAVE10": { "percent-bps": 1000 } } }),
    )
    .await;

    // Each component's own config check runs in the bind's smoke call: a config it
    // refuses (an internal pricing error, an INVALID_CONFIG violation) is a 422
    // SMOKE_CALL_FAILED of kind INVALID_CONFIG, its message the component's.
    for (component, hook, config, problem) in [
        (
            "coupon-codes",
            "pricing",
            json!({ "codes": { "A": { "percent-bps": 10, "amount": 5 } } }),
            "config `codes`: code \"A\": give `percent-bps` or `amount`, not both",
        ),
        (
            "coupon-codes",
            "pricing",
            json!({ "codes": { "SAVE10": { "percent-bps": 1000 } }, "max-codes": 0 }),
            "config `max-codes`: \"0\" is not an integer >= 1",
        ),
        (
            "coupon-codes",
            "pricing",
            json!({ "codes": "SAVE10=10%" }),
            "config `codes`: not a JSON object",
        ),
        (
            "price-list-by-tag",
            "pricing",
            json!({ "price-lists": { "wholesale": { "MUG": -1 } } }),
            "config `price-lists`: tag \"wholesale\": SKU \"MUG\" has a negative price -1",
        ),
        (
            "purchase-limit",
            "validation",
            json!({ "limits": { "MUG": { "max-units": 1, "window": "1w" } } }),
            "config `limits`: not a JSON object",
        ),
        (
            "purchase-limit",
            "validation",
            json!({ "default": { "max-units": 1 } }),
            "config `default`",
        ),
        (
            "tiered-volume",
            "pricing",
            json!({ "tiers": [{ "min-units": 10, "percent-bps": 500 }], "categories": [] }),
            "config `categories`: the list is empty",
        ),
        (
            "tiered-volume",
            "pricing",
            json!({ "tiers": [
                { "min-units": 10, "percent-bps": 500 },
                { "min-units": 10, "percent-bps": 700 },
            ] }),
            "config `tiers`: two tiers start at 10 units",
        ),
        (
            "buy-x-get-y",
            "pricing",
            json!({ "offers": [{ "buy-sku": "MUG", "buy-quantity": 2, "get-sku": "MUG" }] }),
            "config `offers`: not a JSON array",
        ),
        (
            "buy-x-get-y",
            "pricing",
            json!({ "offers": [{ "buy-sku": "MUG", "buy-quantity": 1, "get-sku": "MUG",
                                 "get-quantity": 1, "max-applications": 0 }] }),
            "config `offers`: offer 0: `max-applications` must be >= 1",
        ),
    ] {
        let response = bind(
            &shop.app,
            &shop.operator,
            "default",
            hook,
            json!({ "component": format!("{component}@1.0.0"), "config": config }),
        )
        .await;
        let what = format!("{component} with {config}");
        let body = body_of(response, StatusCode::UNPROCESSABLE_ENTITY, &what).await;
        assert_eq!(body["error"]["code"], "SMOKE_CALL_FAILED", "{what}: {body}");
        let details = &body["error"]["details"];
        assert_eq!(details["kind"], "INVALID_CONFIG", "{what}: {body}");
        assert_eq!(details["hook"], hook, "{what}: {body}");
        assert_eq!(
            details["component"],
            format!("{component}@1.0.0"),
            "{what}: {body}"
        );
        let text = details["problem"].as_str().unwrap_or_default();
        assert!(text.starts_with(problem), "{what}: {text:?} vs {problem:?}");
    }

    // What the host itself refuses before any call: 422 CONFIG_INVALID naming the key.
    let response = bind(
        &shop.app,
        &shop.operator,
        "default",
        "pricing",
        json!({ "component": "tiered-volume@1.0.0",
                "config": { "tiers": [{ "min-units": 10, "percent-bps": 5.5 }] } }),
    )
    .await;
    let body = body_of(response, StatusCode::UNPROCESSABLE_ENTITY, "a float").await;
    assert_eq!(body["error"]["code"], "CONFIG_INVALID", "{body}");
    assert_eq!(body["error"]["details"]["key"], "tiers", "{body}");

    // Nothing of it was published: the coupons still price, the built-in still validates.
    shop.run_all(&[case(
        "the earlier binding still serves",
        "buyer@example.com",
        with_codes(&[("MUG", 1)], &["save10"]),
        placed(1_080, vec![coupon("SAVE10", 120, "10 %")], vec![]),
    )
    .settled()])
        .await;
    shop.run(&case(
        "the built-in validation still bound",
        "buyer@example.com",
        order(&[("MUG", 101)]),
        refused(vec![("QUANTITY_TOO_LARGE", Some(0), "above 100")]),
    ))
    .await;
    let bindings = get(&shop.app, &shop.operator, "/admin/tenants/default/bindings").await;
    let text = bindings.to_string();
    for absent in [
        "purchase-limit",
        "tiered-volume",
        "buy-x-get-y",
        "price-list-by-tag",
    ] {
        assert!(!text.contains(absent), "{absent} bound: {bindings}");
    }
}
