//! The operator plane from the command line: `component upload|list|inspect|delete`,
//! `bind`, `rollback`, `bindings show|history`, each one HTTP request to a *running*
//! orderhost (the registry and bindings routes of `registry/`), printed as a table or
//! `key: value` lines, or as the server's own JSON with `--json`.
//!
//! It lives under `cli/` rather than `registry/` because it is a client: it speaks only
//! HTTP and JSON and reads no table, so the server's types stay free to change behind
//! their documented JSON. Responses are read as `serde_json::Value` for the same reason:
//! `--json` prints exactly what the server said.

use std::{collections::BTreeMap, path::PathBuf};

use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

/// Where the server is and who is asking; shared by every operator-plane command.
///
/// Only these options read the environment: the others name one component or binding
/// and would be a trap if a stale variable filled them in.
#[derive(Debug, Args)]
pub struct Server {
    /// Base URL of the running orderhost.
    #[arg(long, env = "ORDERHOST_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Bearer token: the `accessToken` of `POST /auth/login` (an operator's for any
    /// tenant and platform components, a tenant admin's for its own tenant).
    #[arg(long, env = "ORDERHOST_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Print the server's JSON instead of a table.
    #[arg(long, env = "ORDERHOST_JSON", default_value_t = false)]
    pub json: bool,
}

/// `orderhost component …`.
#[derive(Debug, Subcommand)]
pub enum ComponentCommand {
    /// Upload a component (.wasm). The token decides the owner: an operator's upload is
    /// the platform's, a tenant admin's is its tenant's.
    Upload(UploadArgs),
    /// List components, with filters.
    List(ListArgs),
    /// Show one component: hash, world, exports, imports, which tenants bind it.
    Inspect(IdArgs),
    /// Delete a component nothing binds (refused with COMPONENT_IN_USE otherwise).
    Delete(IdArgs),
}

/// Arguments of `component upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// Server, token, output.
    #[command(flatten)]
    pub server: Server,
    /// The component file, e.g. `flash_sale.wasm`.
    pub file: PathBuf,
    /// Component name: 1–64 of `a-z`, `0-9`, `-`, starting with a letter.
    #[arg(long)]
    pub name: String,
    /// Semver version, e.g. `0.1.0`.
    #[arg(long)]
    pub version: String,
}

/// Arguments of `component list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Server, token, output.
    #[command(flatten)]
    pub server: Server,
    /// Exact name.
    #[arg(long)]
    pub name: Option<String>,
    /// World served: `validator`, `pricer`, `prioritizer` or `order-policy`.
    #[arg(long)]
    pub world: Option<String>,
    /// `platform` or a tenant slug.
    #[arg(long)]
    pub owner: Option<String>,
    /// Page and page size.
    #[command(flatten)]
    pub page: PageArgs,
}

/// Pagination of list commands.
#[derive(Debug, Args)]
pub struct PageArgs {
    /// 1-based page number.
    #[arg(long)]
    pub page: Option<u32>,
    /// Items per page (server default 20, at most 100).
    #[arg(long)]
    pub per_page: Option<u32>,
}

/// Arguments of `component inspect` and `component delete`.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// Server, token, output.
    #[command(flatten)]
    pub server: Server,
    /// Component name.
    pub name: String,
    /// Component version.
    pub version: String,
    /// `platform` or a tenant slug, when both own this name@version (default: the
    /// caller's tenant's own, else the platform's).
    #[arg(long)]
    pub owner: Option<String>,
}

/// Arguments of `bind`.
#[derive(Debug, Args)]
pub struct BindArgs {
    /// Server, token, output.
    #[command(flatten)]
    pub server: Server,
    /// Tenant slug.
    #[arg(long)]
    pub tenant: String,
    /// Hook: `validation`, `pricing` or `prioritization`.
    #[arg(long)]
    pub hook: String,
    /// `name@version`, or a semver range resolved now (e.g. `my-sale@^0.1`).
    #[arg(long)]
    pub component: String,
    /// A config entry `key=value`; repeat for more.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config_entry)]
    pub config: Vec<(String, String)>,
    /// Fuel (≈ wasm instructions) per call.
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Linear memory ceiling in bytes.
    #[arg(long)]
    pub memory_bytes: Option<u64>,
    /// Wall-clock deadline per call in milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// What a failing call does: `reject` the order or `fallback` to the built-in.
    #[arg(long, default_value = "reject", value_parser = ["reject", "fallback"])]
    pub on_error: String,
    /// Why: kept in the binding history.
    #[arg(long)]
    pub reason: String,
}

/// Arguments of `rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Server, token, output.
    #[command(flatten)]
    pub server: Server,
    /// Tenant slug.
    #[arg(long)]
    pub tenant: String,
    /// Hook: `validation`, `pricing` or `prioritization`.
    #[arg(long)]
    pub hook: String,
    /// The revision to restore (default: the one before the current).
    #[arg(long)]
    pub revision: Option<i64>,
    /// Why: kept in the binding history.
    #[arg(long)]
    pub reason: Option<String>,
}

/// `orderhost bindings …`.
#[derive(Debug, Subcommand)]
pub enum BindingsCommand {
    /// The effective binding of every hook, with its source and revision.
    Show(TenantArgs),
    /// Every binding change, newest first: revision, who, when, from, why.
    History(HistoryArgs),
}

/// Arguments of `bindings show`.
#[derive(Debug, Args)]
pub struct TenantArgs {
    /// Server, token, output.
    #[command(flatten)]
    pub server: Server,
    /// Tenant slug.
    #[arg(long)]
    pub tenant: String,
}

/// Arguments of `bindings history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Server, token, output.
    #[command(flatten)]
    pub server: Server,
    /// Tenant slug.
    #[arg(long)]
    pub tenant: String,
    /// Only this hook's changes.
    #[arg(long)]
    pub hook: Option<String>,
    /// Page and page size.
    #[command(flatten)]
    pub page: PageArgs,
}

fn parse_config_entry(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{raw:?} is not KEY=VALUE")),
    }
}

/// Why an operator-plane command failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The server refused: its error envelope.
    #[error("{status}: {code}: {message}")]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The envelope's stable `code`.
        code: String,
        /// The envelope's message.
        message: String,
    },
    /// The server could not be reached, or its answer not read.
    #[error("no answer from {url} (is orderhost serving at --url / ORDERHOST_URL?)")]
    Transport {
        /// The URL asked.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// `--url` is not a base URL.
    #[error("--url {0:?} is not an http(s) URL")]
    BadUrl(String),
    /// The component file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The answer was not what the API documents (not JSON, or no envelope).
    #[error("unexpected answer ({status}) from the server: {body}")]
    Unexpected {
        /// HTTP status.
        status: StatusCode,
        /// The start of the body.
        body: String,
    },
}

/// An HTTP client for one server and token.
pub(crate) struct Client {
    http: reqwest::Client,
    base: url::Url,
    token: String,
}

impl Client {
    pub(crate) fn new(server: &Server) -> Result<Self, OpsError> {
        let base = url::Url::parse(&server.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
            .ok_or_else(|| OpsError::BadUrl(server.url.clone()))?;
        Ok(Self {
            http: reqwest::Client::new(),
            base,
            token: server.token.clone(),
        })
    }

    /// The URL of these path segments (each percent-encoded) and query pairs.
    pub(crate) fn url(&self, segments: &[&str], query: &[(&str, Option<String>)]) -> url::Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in new")
            .pop_if_empty()
            .extend(segments);
        let pairs: Vec<_> = query
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
            .collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        url
    }

    /// Sends a request; a success's JSON body (`Null` when empty) with its status, or the
    /// error envelope as [`OpsError::Api`].
    pub(crate) async fn send(
        &self,
        method: Method,
        url: url::Url,
        body: Option<Body>,
    ) -> Result<(StatusCode, Value), OpsError> {
        let transport = |source| OpsError::Transport {
            url: url.to_string(),
            source,
        };
        let mut request = self
            .http
            .request(method, url.clone())
            .bearer_auth(&self.token);
        request = match body {
            Some(Body::Json(value)) => request.json(&value),
            Some(Body::Wasm(bytes)) => request
                .header(reqwest::header::CONTENT_TYPE, "application/wasm")
                .body(bytes),
            None => request,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        let unexpected = || OpsError::Unexpected {
            status,
            body: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
        };
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|_| unexpected())?
        };
        if status.is_success() {
            return Ok((status, value));
        }
        match value.get("error") {
            Some(error) => Err(OpsError::Api {
                status,
                code: text(&error["code"]),
                message: text(&error["message"]),
            }),
            None => Err(unexpected()),
        }
    }
}

/// A request body.
pub(crate) enum Body {
    /// JSON.
    Json(Value),
    /// A component's bytes.
    Wasm(Vec<u8>),
}

/// Runs `component …`.
pub async fn component(command: ComponentCommand) -> Result<(), OpsError> {
    match command {
        ComponentCommand::Upload(args) => {
            let client = Client::new(&args.server)?;
            let bytes = std::fs::read(&args.file).map_err(|source| OpsError::Read {
                path: args.file.clone(),
                source,
            })?;
            let url = client.url(
                &["admin", "components"],
                &[("name", Some(args.name)), ("version", Some(args.version))],
            );
            let (status, value) = client
                .send(Method::POST, url, Some(Body::Wasm(bytes)))
                .await?;
            print(&args.server, &value, |v| {
                let what = if status == StatusCode::CREATED {
                    "stored"
                } else {
                    "already stored (same bytes)"
                };
                format!("{what}\n{}", component_lines(v))
            });
        }
        ComponentCommand::List(args) => {
            let client = Client::new(&args.server)?;
            let url = client.url(
                &["admin", "components"],
                &[
                    ("name", args.name),
                    ("world", args.world),
                    ("owner", args.owner),
                    ("page", args.page.page.map(|p| p.to_string())),
                    ("perPage", args.page.per_page.map(|p| p.to_string())),
                ],
            );
            let (_, value) = client.send(Method::GET, url, None).await?;
            print(&args.server, &value, |v| {
                let rows = items(v)
                    .iter()
                    .map(|c| {
                        vec![
                            text(&c["name"]),
                            text(&c["version"]),
                            text(&c["owner"]),
                            text(&c["world"]),
                            text(&c["sizeBytes"]),
                            short_hash(&c["sha256"]),
                            text(&c["createdAt"]),
                        ]
                    })
                    .collect();
                let headers = [
                    "NAME", "VERSION", "OWNER", "WORLD", "BYTES", "SHA256", "CREATED",
                ];
                table(&headers, rows) + &page_footer(v)
            });
        }
        ComponentCommand::Inspect(args) => {
            let client = Client::new(&args.server)?;
            let url = client.url(
                &["admin", "components", &args.name, &args.version],
                &[("owner", args.owner.clone())],
            );
            let (_, value) = client.send(Method::GET, url, None).await?;
            print(&args.server, &value, component_lines);
        }
        ComponentCommand::Delete(args) => {
            let client = Client::new(&args.server)?;
            let url = client.url(
                &["admin", "components", &args.name, &args.version],
                &[("owner", args.owner.clone())],
            );
            let (_, value) = client.send(Method::DELETE, url, None).await?;
            print(&args.server, &value, |_| {
                format!("deleted {}@{}", args.name, args.version)
            });
        }
    }
    Ok(())
}

/// Runs `bind`.
pub async fn bind(args: BindArgs) -> Result<(), OpsError> {
    let client = Client::new(&args.server)?;
    let config: Map<String, Value> = args
        .config
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
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
    let body = json!({
        "component": args.component,
        "config": config,
        "limits": limits,
        "onError": args.on_error,
        "reason": args.reason,
    });
    let url = client.url(
        &["admin", "tenants", &args.tenant, "bindings", &args.hook],
        &[],
    );
    let (_, value) = client
        .send(Method::PUT, url, Some(Body::Json(body)))
        .await?;
    print(&args.server, &value, change_lines);
    Ok(())
}

/// Runs `rollback`.
pub async fn rollback(args: RollbackArgs) -> Result<(), OpsError> {
    let client = Client::new(&args.server)?;
    let mut body = Map::new();
    if let Some(revision) = args.revision {
        body.insert("revision".into(), revision.into());
    }
    if let Some(reason) = args.reason {
        body.insert("reason".into(), reason.into());
    }
    let url = client.url(
        &[
            "admin",
            "tenants",
            &args.tenant,
            "bindings",
            &args.hook,
            "rollback",
        ],
        &[],
    );
    let (_, value) = client
        .send(Method::POST, url, Some(Body::Json(Value::Object(body))))
        .await?;
    print(&args.server, &value, change_lines);
    Ok(())
}

/// Runs `bindings …`.
pub async fn bindings(command: BindingsCommand) -> Result<(), OpsError> {
    match command {
        BindingsCommand::Show(args) => {
            let client = Client::new(&args.server)?;
            let url = client.url(&["admin", "tenants", &args.tenant, "bindings"], &[]);
            let (_, value) = client.send(Method::GET, url, None).await?;
            print(&args.server, &value, |v| {
                let rows = v["bindings"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|b| {
                        vec![
                            text(&b["hook"]),
                            text(&b["component"]),
                            text(&b["source"]),
                            text(&b["revision"]),
                            text(&b["onError"]),
                            config_text(&b["config"]),
                        ]
                    })
                    .collect();
                format!(
                    "tenant: {}\nrevision: {}\n{}",
                    text(&v["tenant"]),
                    text(&v["revision"]),
                    table(
                        &[
                            "HOOK",
                            "COMPONENT",
                            "SOURCE",
                            "REVISION",
                            "ON-ERROR",
                            "CONFIG"
                        ],
                        rows
                    )
                )
            });
        }
        BindingsCommand::History(args) => {
            let client = Client::new(&args.server)?;
            let url = client.url(
                &["admin", "tenants", &args.tenant, "bindings", "history"],
                &[
                    ("hook", args.hook),
                    ("page", args.page.page.map(|p| p.to_string())),
                    ("perPage", args.page.per_page.map(|p| p.to_string())),
                ],
            );
            let (_, value) = client.send(Method::GET, url, None).await?;
            print(&args.server, &value, |v| {
                let rows = items(v)
                    .iter()
                    .map(|h| {
                        vec![
                            text(&h["revision"]),
                            text(&h["hook"]),
                            text(&h["action"]),
                            text(&h["component"]),
                            text(&h["fromRevision"]),
                            who(h),
                            text(&h["at"]),
                            text(&h["reason"]),
                        ]
                    })
                    .collect();
                let headers = [
                    "REV",
                    "HOOK",
                    "ACTION",
                    "COMPONENT",
                    "FROM",
                    "BY",
                    "AT",
                    "REASON",
                ];
                table(&headers, rows) + &page_footer(v)
            });
        }
    }
    Ok(())
}

/// Prints the server's JSON (`--json`) or the human rendering of it.
pub(crate) fn print(server: &Server, value: &Value, human: impl FnOnce(&Value) -> String) {
    if server.json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
        );
    } else {
        println!("{}", human(value).trim_end());
    }
}

/// A JSON value as a table cell: strings bare, null as `-`.
pub(crate) fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

fn short_hash(value: &Value) -> String {
    text(value).chars().take(12).collect()
}

fn config_text(value: &Value) -> String {
    let entries: BTreeMap<String, String> = value
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
        .unwrap_or_default();
    if entries.is_empty() {
        return "-".into();
    }
    entries
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn who(entry: &Value) -> String {
    match &entry["byEmail"] {
        Value::String(email) => email.clone(),
        _ => text(&entry["by"]),
    }
}

/// The items of a page.
pub(crate) fn items(page: &Value) -> &[Value] {
    page["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A note when the page does not show every item.
pub(crate) fn page_footer(page: &Value) -> String {
    let shown = items(page).len();
    let total = page["total"].as_i64().unwrap_or(shown as i64);
    if total as usize > shown {
        format!(
            "\n(page {} of {total} in all; --page for more)",
            text(&page["page"])
        )
    } else {
        String::new()
    }
}

/// `key: value` lines of one component.
fn component_lines(c: &Value) -> String {
    let mut lines = vec![
        ("name", text(&c["name"])),
        ("version", text(&c["version"])),
        ("owner", text(&c["owner"])),
        ("world", text(&c["world"])),
        ("hooks", text(&c["hooks"])),
        ("wit version", text(&c["witVersion"])),
        ("sha256", text(&c["sha256"])),
        ("size bytes", text(&c["sizeBytes"])),
        ("uploaded by", text(&c["uploadedBy"])),
        ("created at", text(&c["createdAt"])),
        ("exports", text(&c["exports"])),
        ("imports", text(&c["imports"])),
    ];
    if let Some(uses) = c["boundBy"].as_array() {
        let uses = uses
            .iter()
            .map(|u| {
                format!(
                    "{}/{} ({})",
                    text(&u["tenant"]),
                    text(&u["hook"]),
                    text(&u["source"])
                )
            })
            .collect::<Vec<_>>();
        let uses = if uses.is_empty() {
            "-".into()
        } else {
            uses.join(", ")
        };
        lines.push(("bound by", uses));
    }
    key_values(&lines)
}

/// `key: value` lines of a binding change.
fn change_lines(v: &Value) -> String {
    let c = &v["change"];
    key_values(&[
        ("revision", text(&c["revision"])),
        ("hook", text(&c["hook"])),
        ("action", text(&c["action"])),
        ("component", text(&c["component"])),
        ("sha256", text(&c["sha256"])),
        ("config", config_text(&c["config"])),
        ("on error", text(&c["onError"])),
        ("from revision", text(&c["fromRevision"])),
        ("restores revision", text(&c["restoresRevision"])),
        ("by", who(c)),
        ("at", text(&c["at"])),
        ("reason", text(&c["reason"])),
        ("generation", text(&v["generation"])),
    ])
}

/// Aligned `key: value` lines.
pub(crate) fn key_values(lines: &[(&str, String)]) -> String {
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    lines
        .iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect()
}

/// An aligned table: columns as wide as their widest cell (in characters).
pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let pad = width - cell.chars().count();
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
