//! `orderhost dry-run`: what a candidate would have done to a tenant's stored orders,
//! against a *running* server (`POST /admin/tenants/{tenant}/dry-run`, then
//! `GET …/dry-run/{id}` until it is done; see `registry::dryrun`). Progress goes to
//! stderr while it runs; the report is printed as tables, or as the server's JSON with
//! `--json`.

use std::time::Duration;

use clap::Args;
use reqwest::Method;
use serde_json::{Map, Value};

use super::ops::{self, Body, Client, OpsError, Server, key_values, table, text};

/// How often the run is polled.
const POLL: Duration = Duration::from_millis(250);

/// Arguments of `dry-run`.
#[derive(Debug, Args)]
pub struct DryRunArgs {
    /// Server, token, output.
    #[command(flatten)]
    pub server: Server,
    /// Tenant slug.
    #[arg(long)]
    pub tenant: String,
    /// Hook: `validation`, `pricing` or `prioritization`.
    #[arg(long)]
    pub hook: String,
    /// The candidate: `name@version` (or a semver range).
    #[arg(long)]
    pub candidate: String,
    /// How many of the newest stored orders to replay (1–100 000; server default 1 000).
    #[arg(long)]
    pub orders: Option<i64>,
    /// Only orders placed since: RFC 3339 or epoch milliseconds.
    #[arg(long)]
    pub since: Option<String>,
    /// A candidate config entry `key=value`; repeat for more (default: the config each
    /// order's call read).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_entry)]
    pub config: Vec<(String, String)>,
    /// Candidate fuel per call (default: the active binding's).
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Candidate linear memory ceiling, bytes.
    #[arg(long)]
    pub memory_bytes: Option<u64>,
    /// Candidate wall-clock deadline per call, ms.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Time budget of the run, ms (server default 60 000, at most 600 000).
    #[arg(long)]
    pub budget_ms: Option<i64>,
}

fn parse_entry(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{raw:?} is not KEY=VALUE")),
    }
}

/// The request body of `args`.
fn body(args: &DryRunArgs) -> Value {
    let mut body = Map::new();
    body.insert("hook".into(), args.hook.clone().into());
    body.insert("candidate".into(), args.candidate.clone().into());
    if !args.config.is_empty() {
        let config: Map<String, Value> = args
            .config
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        body.insert("config".into(), config.into());
    }
    let mut limits = Map::new();
    for (key, value) in [
        ("fuel", args.fuel),
        ("memoryBytes", args.memory_bytes),
        ("timeoutMs", args.timeout_ms),
    ] {
        if let Some(value) = value {
            limits.insert(key.into(), value.into());
        }
    }
    if !limits.is_empty() {
        body.insert("limits".into(), limits.into());
    }
    if let Some(orders) = args.orders {
        body.insert("orders".into(), orders.into());
    }
    if let Some(since) = &args.since {
        let since = since
            .parse::<i64>()
            .map_or_else(|_| Value::String(since.clone()), Value::from);
        body.insert("since".into(), since);
    }
    if let Some(budget) = args.budget_ms {
        body.insert("budgetMs".into(), budget.into());
    }
    body.into()
}

/// Runs `dry-run`: starts the run, polls until it is done, prints the report.
pub async fn run(args: DryRunArgs) -> Result<(), OpsError> {
    let client = Client::new(&args.server)?;
    let url = client.url(&["admin", "tenants", &args.tenant, "dry-run"], &[]);
    let (_, started) = client
        .send(Method::POST, url, Some(Body::Json(body(&args))))
        .await?;
    let id = text(&started["id"]);
    let url = client.url(&["admin", "tenants", &args.tenant, "dry-run", &id], &[]);
    // `--json` is for programs: no progress even on a terminal.
    let progress = if args.server.json {
        indicatif::ProgressBar::hidden()
    } else {
        super::progress::bar(0, "replaying orders")
    };
    let run = loop {
        let polled = client.send(Method::GET, url.clone(), None).await;
        let run = match polled {
            Ok((_, run)) => run,
            Err(error) => {
                progress.finish_and_clear();
                return Err(error);
            }
        };
        if run["status"] != "running" {
            break run;
        }
        progress.set_length(run["total"].as_u64().unwrap_or(0));
        progress.set_position(run["processed"].as_u64().unwrap_or(0));
        tokio::time::sleep(POLL).await;
    };
    progress.finish_and_clear();
    if run["status"] == "failed" {
        return Err(OpsError::Api {
            status: reqwest::StatusCode::OK,
            code: "DRY_RUN_FAILED".into(),
            message: format!("dry run {id} failed: {}", text(&run["error"])),
        });
    }
    ops::print(&args.server, &run, render);
    Ok(())
}

/// The report as tables.
fn render(run: &Value) -> String {
    let r = &run["report"];
    let mut out = key_values(&[
        ("dry run", text(&run["id"])),
        ("tenant", text(&run["tenant"])),
        ("hook", text(&r["hook"])),
        (
            "active",
            format!(
                "{} (on error: {})",
                text(&r["active"]["component"]),
                text(&r["active"]["onError"])
            ),
        ),
        (
            "candidate",
            format!(
                "{} (config: {})",
                text(&r["candidate"]["component"]),
                match r["candidate"]["config"].as_object() {
                    None => "each order's recorded".to_owned(),
                    Some(c) => c
                        .iter()
                        .map(|(k, v)| format!("{k}={}", text(v)))
                        .collect::<Vec<_>>()
                        .join(" "),
                }
            ),
        ),
        (
            "orders",
            format!(
                "{} replayed of {} found ({} asked); {} exact, {} inexact{}",
                text(&r["processed"]),
                text(&r["total"]),
                text(&r["requested"]),
                text(&r["exact"]),
                text(&r["inexact"]),
                if r["truncated"] == true {
                    "; TRUNCATED at the time budget"
                } else {
                    ""
                }
            ),
        ),
        (
            "speed",
            format!(
                "{} ms, {} orders/s",
                text(&r["elapsedMs"]),
                text(&r["ordersPerSecond"])
            ),
        ),
        ("changed", text(&r["changed"])),
    ]);

    let kinds = [
        ("accept → reject", "acceptToReject"),
        ("reject → accept", "rejectToAccept"),
        ("price changed", "priceChanges"),
        ("priority changed", "priorityChanges"),
        ("replay ≠ stored", "activeMismatches"),
    ];
    let mut rows = Vec::new();
    for (label, key) in kinds {
        let kind = &r[key];
        let by = kind["byOutcome"].as_object().cloned().unwrap_or_default();
        if by.is_empty() {
            rows.push(vec![
                label.to_owned(),
                text(&kind["count"]),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for (outcome, t) in by {
            rows.push(vec![
                label.to_owned(),
                text(&t["orders"]),
                outcome,
                text(&t["total"]),
                text(&t["delta"]),
            ]);
        }
    }
    out.push('\n');
    out += &table(&["CHANGE", "ORDERS", "REALLY", "MONEY", "DELTA"], rows);

    let d = &r["priceDeltas"];
    if d["increased"].as_u64().unwrap_or(0) + d["decreased"].as_u64().unwrap_or(0) > 0 {
        out.push('\n');
        out += &key_values(&[
            (
                "price deltas",
                format!(
                    "sum {}, {} up (max {}), {} down (max {}), largest |{}|",
                    text(&d["sum"]),
                    text(&d["increased"]),
                    text(&d["maxIncrease"]),
                    text(&d["decreased"]),
                    text(&d["maxDecrease"]),
                    text(&d["maxAbs"]),
                ),
            ),
            (
                "histogram",
                d["histogram"]
                    .as_array()
                    .map(|b| {
                        b.iter()
                            .filter(|b| b["count"] != 0)
                            .map(|b| {
                                let end = |v: &Value| match v {
                                    Value::Null => "…".to_owned(),
                                    v => text(v),
                                };
                                format!(
                                    "[{}, {}]: {}",
                                    end(&b["from"]),
                                    end(&b["to"]),
                                    text(&b["count"])
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("  ")
                    })
                    .unwrap_or_default(),
            ),
        ]);
    }

    let p = &r["performance"];
    let errors = |side: &str| {
        let e = r["errors"][side].as_object().cloned().unwrap_or_default();
        if e.is_empty() {
            "-".to_owned()
        } else {
            e.iter()
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    let perf_row = |side: &str| {
        let s = &p[side];
        vec![
            side.to_owned(),
            text(&s["fuel"]["p50"]),
            text(&s["fuel"]["p99"]),
            text(&s["latencyUs"]["p50"]),
            text(&s["latencyUs"]["p99"]),
            errors(side),
        ]
    };
    out.push('\n');
    out += &table(
        &[
            "SIDE",
            "FUEL P50",
            "FUEL P99",
            "LATENCY P50 µs",
            "LATENCY P99 µs",
            "ERRORS",
        ],
        vec![perf_row("active"), perf_row("candidate")],
    );

    let mut examples = Vec::new();
    for (label, key) in kinds {
        for e in r[key]["examples"].as_array().into_iter().flatten() {
            let really = match &e["reason"] {
                Value::String(reason) => format!("{} {reason}", text(&e["status"])),
                _ => text(&e["status"]),
            };
            examples.push(vec![
                label.to_owned(),
                text(&e["orderId"]),
                really,
                format!("{} {}", text(&e["total"]), text(&e["currency"])),
                text(&e["active"]),
                text(&e["candidate"]),
                text(&e["delta"]),
            ]);
        }
    }
    if !examples.is_empty() {
        out.push('\n');
        out += &table(
            &[
                "EXAMPLE",
                "ORDER",
                "REALLY",
                "TOTAL",
                "ACTIVE",
                "CANDIDATE",
                "DELTA",
            ],
            examples,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_report_reads_as_tables() {
        let run = json!({
            "id": "r1", "tenant": "default", "status": "done",
            "report": {
                "hook": "pricing",
                "active": { "component": "pricing-standard@1.0.0", "onError": "reject" },
                "candidate": { "component": "pricing-deeper@1.0.0", "config": null },
                "requested": 1000, "total": 2, "processed": 2, "exact": 2, "inexact": 0,
                "truncated": false, "elapsedMs": 3, "ordersPerSecond": 666, "changed": 2,
                "acceptToReject": { "count": 0, "byOutcome": {}, "examples": [] },
                "rejectToAccept": { "count": 0, "byOutcome": {}, "examples": [] },
                "priceChanges": { "count": 2,
                    "byOutcome": { "CONFIRMED": { "orders": 2, "total": 2950, "delta": -295 } },
                    "examples": [{ "orderId": "o1", "status": "FAILED", "reason": "OUT_OF_STOCK",
                        "total": 2000, "currency": "EUR", "active": "total 2000 EUR",
                        "candidate": "total 1800 EUR", "delta": -200 }] },
                "priceDeltas": { "increased": 0, "decreased": 2, "sum": -295, "maxIncrease": 0,
                    "maxDecrease": -200, "maxAbs": 200,
                    "histogram": [{ "from": -999, "to": -100, "count": 1 }] },
                "priorityChanges": { "count": 0, "byOutcome": {}, "examples": [] },
                "activeMismatches": { "count": 0, "byOutcome": {}, "examples": [] },
                "errors": { "active": {}, "candidate": { "Trap": 1 } },
                "performance": {
                    "active": { "fuel": { "p50": 10, "p99": 20 }, "latencyUs": { "p50": 30, "p99": 40 } },
                    "candidate": { "fuel": { "p50": 11, "p99": 21 }, "latencyUs": { "p50": 31, "p99": 41 } }
                }
            }
        });
        let out = render(&run);
        assert!(out.contains("each order's recorded"), "{out}");
        assert!(
            out.contains("price changed     2       CONFIRMED  2950   -295"),
            "{out}"
        );
        assert!(out.contains("[-999, -100]: 1"), "{out}");
        assert!(out.contains("Trap=1"), "{out}");
        assert!(out.contains("FAILED OUT_OF_STOCK"), "{out}");
        assert_eq!(
            body(&DryRunArgs {
                server: Server {
                    url: String::new(),
                    token: String::new(),
                    json: false
                },
                tenant: "t".into(),
                hook: "pricing".into(),
                candidate: "c@1.0.0".into(),
                orders: Some(5),
                since: Some("1000".into()),
                config: vec![("k".into(), "v".into())],
                fuel: Some(9),
                memory_bytes: None,
                timeout_ms: None,
                budget_ms: None,
            }),
            json!({ "hook": "pricing", "candidate": "c@1.0.0", "config": { "k": "v" },
                    "limits": { "fuel": 9 }, "orders": 5, "since": 1000 })
        );
    }
}
