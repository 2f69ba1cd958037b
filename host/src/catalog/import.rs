//! `orderhost catalog import FILE`: bulk load products from CSV or JSON, idempotent by sku.
//!
//! The whole file is parsed and validated before the database is touched; any invalid
//! record stops the import with every problem listed by line (CSV) or record (JSON) and
//! field. The valid file is then written in one transaction: new skus are created with
//! their `stock` as initial stock, existing ones get their name, price, currency and, when
//! given, description, active flag, tags, vendor and category rewritten — their stock is
//! never touched, so importing the same file twice adds nothing.

use std::{collections::HashMap, fmt, path::Path};

use anyhow::Context as _;
use clap::Args;
use serde_json::{Map, Value};

use super::{
    Currency, FieldError, MinorUnits, Money, NewProduct, ProductPatch, Sku, Upsert,
    parse_attribute, parse_description, parse_name, parse_quantity,
};
use crate::{
    clock::{Clock, SystemClock},
    config::StoreConfig,
    store::Store,
    tags::Tags,
    tenants,
};

/// What separates the tags inside a CSV `tags` cell: `wholesale|b2b-gold`. Not a comma,
/// so a cell of several tags needs no quoting.
pub const CSV_TAG_SEPARATOR: char = '|';

/// Arguments of `catalog import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Database settings.
    #[command(flatten)]
    pub store: StoreConfig,
    /// The file: `.csv` or `.json`.
    pub file: std::path::PathBuf,
    /// Tenant slug.
    #[arg(long, env = "ORDERHOST_IMPORT_TENANT", default_value = crate::store::DEFAULT_TENANT_SLUG)]
    pub tenant: String,
}

/// Runs the import: parse and validate the whole file, apply migrations, then write it in
/// one transaction and print "N created, M updated".
pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    let reading = crate::cli::progress::spinner(&format!("reading {}", args.file.display()));
    let items = parse_file(&args.file);
    reading.finish_and_clear();
    let items = items?;
    let store = Store::open(&args.store, std::time::Duration::ZERO).await?;
    let tenant_id = tenants::resolve(&store, Some(&args.tenant)).await?;
    let bar = crate::cli::progress::bar(items.len() as u64, "importing");
    let written = super::upsert_by_sku_with_progress(
        &store,
        &tenant_id,
        &items,
        SystemClock.now_ms(),
        |done| bar.set_position(done),
    )
    .await;
    bar.finish_and_clear();
    let summary = written
        .with_context(|| format!("{}: import failed, nothing written", args.file.display()))?;
    store.close().await;
    tracing::info!(file = %args.file.display(), tenant = %args.tenant,
        created = summary.created, updated = summary.updated, "catalog imported");
    println!(
        "{} → tenant {}: {} created, {} updated",
        args.file.display(),
        args.tenant,
        summary.created,
        summary.updated
    );
    Ok(())
}

/// Why a file cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file cannot be read.
    #[error("{file}: cannot read it: {source}")]
    Read {
        /// The file.
        file: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Neither `.csv` nor `.json`.
    #[error("{0}: unknown format: the file name must end in .csv or .json")]
    Format(String),
    /// The file is not well-formed, or some records are invalid.
    #[error("{file}: {} problem(s), nothing imported:{}", .problems.len(), list(.problems))]
    Invalid {
        /// The file.
        file: String,
        /// Every problem found.
        problems: Vec<RecordError>,
    },
}

/// At most this many problems are printed.
const MAX_LISTED: usize = 20;

fn list(problems: &[RecordError]) -> String {
    let mut text: String = problems
        .iter()
        .take(MAX_LISTED)
        .map(|p| format!("\n  {p}"))
        .collect();
    if problems.len() > MAX_LISTED {
        text.push_str(&format!("\n  … and {} more", problems.len() - MAX_LISTED));
    }
    text
}

/// A problem in one record: where, which field, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// `line 3` (CSV) or `record 2` (JSON, 1-based).
    pub location: String,
    /// The field, as the file names it; empty for the record as a whole.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.location, self.problem)
        } else {
            write!(
                f,
                "{}, field {}: {}",
                self.location, self.field, self.problem
            )
        }
    }
}

impl RecordError {
    fn new(location: &str, field: &str, problem: impl Into<String>) -> Self {
        Self {
            location: location.to_owned(),
            field: field.to_owned(),
            problem: problem.into(),
        }
    }

    fn at(location: &str, err: FieldError) -> Self {
        Self::new(location, err.field, err.problem)
    }
}

/// Reads and validates a whole import file (format chosen by extension).
pub fn parse_file(path: &Path) -> Result<Vec<Upsert>, ImportError> {
    let file = path.display().to_string();
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let parse: fn(&str) -> Result<Vec<Upsert>, Vec<RecordError>> = match extension.as_deref() {
        Some("csv") => parse_csv,
        Some("json") => parse_json,
        _ => return Err(ImportError::Format(file)),
    };
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        file: file.clone(),
        source,
    })?;
    parse(&text).map_err(|problems| ImportError::Invalid { file, problems })
}

/// One record's values, before validation.
struct Fields {
    sku: String,
    name: String,
    unit_price: i64,
    currency: String,
    stock: Option<i64>,
    description: Option<String>,
    active: Option<bool>,
    tags: Option<Vec<String>>,
    vendor: Option<String>,
    category: Option<String>,
}

impl Fields {
    fn validate(self, price_field: &'static str) -> Result<Upsert, FieldError> {
        let sku = Sku::parse(&self.sku)?;
        let name = parse_name(&self.name)?;
        let amount = MinorUnits::parse(price_field, self.unit_price)?;
        let currency = Currency::parse(self.currency.trim())?;
        let stock = parse_quantity("stock", self.stock.unwrap_or(0), 0)?;
        let description = self
            .description
            .as_deref()
            .map(parse_description)
            .transpose()?;
        let tags = self
            .tags
            .as_deref()
            .map(|raw| Tags::parse("tags", raw))
            .transpose()?;
        let vendor = self
            .vendor
            .as_deref()
            .map(|raw| parse_attribute("vendor", raw))
            .transpose()?;
        let category = self
            .category
            .as_deref()
            .map(|raw| parse_attribute("category", raw))
            .transpose()?;
        Ok(Upsert {
            new: NewProduct {
                sku,
                name: name.clone(),
                description: description.clone().unwrap_or_default(),
                images: Vec::new(),
                price: Money {
                    amount,
                    currency: currency.clone(),
                },
                active: self.active.unwrap_or(true),
                initial_stock: stock,
                tags: tags.clone().unwrap_or_default(),
                vendor: vendor.clone().flatten(),
                category: category.clone().flatten(),
            },
            patch: ProductPatch {
                name: Some(name),
                description,
                images: None,
                unit_price: Some(amount),
                currency: Some(currency),
                active: self.active,
                tags,
                vendor,
                category,
            },
        })
    }
}

/// Collects the valid items, and a problem for each invalid one or repeated sku.
#[derive(Default)]
struct Collector {
    items: Vec<Upsert>,
    problems: Vec<RecordError>,
    seen: HashMap<String, String>,
}

impl Collector {
    fn push(&mut self, location: String, result: Result<Upsert, RecordError>) {
        match result {
            Ok(item) => {
                let sku = item.new.sku.as_str().to_owned();
                if let Some(first) = self.seen.get(&sku) {
                    self.problems.push(RecordError::new(
                        &location,
                        "sku",
                        format!("{sku:?} already appears at {first}"),
                    ));
                } else {
                    self.seen.insert(sku, location);
                    self.items.push(item);
                }
            }
            Err(problem) => self.problems.push(problem),
        }
    }

    fn finish(self) -> Result<Vec<Upsert>, Vec<RecordError>> {
        if self.problems.is_empty() {
            Ok(self.items)
        } else {
            Err(self.problems)
        }
    }
}

const CSV_COLUMNS: [&str; 10] = [
    "sku",
    "name",
    "unit_price",
    "currency",
    "stock",
    "description",
    "active",
    "tags",
    "vendor",
    "category",
];
const CSV_REQUIRED: [&str; 4] = ["sku", "name", "unit_price", "currency"];

/// CSV with a header row naming the columns (any order): `sku`, `name`, `unit_price`,
/// `currency` required; `stock`, `description`, `active`, `tags` (separated by
/// [`CSV_TAG_SEPARATOR`]), `vendor`, `category` optional. An empty optional cell is the
/// same as a missing column.
fn parse_csv(text: &str) -> Result<Vec<Upsert>, Vec<RecordError>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| vec![csv_error("line 1", &e)])?
        .clone();
    let mut columns: HashMap<&'static str, usize> = HashMap::new();
    let mut problems = Vec::new();
    for (index, header) in headers.iter().enumerate() {
        let header = header.to_ascii_lowercase();
        match CSV_COLUMNS.iter().find(|c| **c == header) {
            Some(column) if columns.insert(column, index).is_some() => problems.push(
                RecordError::new("line 1", column, "the column appears twice"),
            ),
            Some(_) => {}
            None => problems.push(RecordError::new(
                "line 1",
                &header,
                format!("unknown column; the columns are {}", CSV_COLUMNS.join(", ")),
            )),
        }
    }
    for required in CSV_REQUIRED {
        if !columns.contains_key(required) {
            problems.push(RecordError::new("line 1", required, "missing column"));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut collector = Collector::default();
    for (n, record) in reader.records().enumerate() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let line = e.position().map_or_else(
                    || format!("record {}", n + 1),
                    |p| format!("line {}", p.line()),
                );
                collector.problems.push(csv_error(&line, &e));
                continue;
            }
        };
        let location = record.position().map_or_else(
            || format!("record {}", n + 1),
            |p| format!("line {}", p.line()),
        );
        let cell = |name: &str| {
            columns
                .get(name)
                .and_then(|&i| record.get(i))
                .filter(|v| !v.is_empty())
        };
        let result = csv_fields(&cell)
            .and_then(|fields| fields.validate("unit_price"))
            .map_err(|e| RecordError::at(&location, e));
        collector.push(location, result);
    }
    collector.finish()
}

fn csv_fields<'a>(cell: &impl Fn(&str) -> Option<&'a str>) -> Result<Fields, FieldError> {
    let integer = |field: &'static str, value: &str| {
        value.parse::<i64>().map_err(|_| {
            FieldError::new(
                field,
                if value.contains(['.', ',']) {
                    format!(
                        "{value:?} is not an integer: amounts are minor units, e.g. 1250 for 12.50"
                    )
                } else {
                    format!("{value:?} is not an integer")
                },
            )
        })
    };
    Ok(Fields {
        sku: cell("sku").unwrap_or_default().to_owned(),
        name: cell("name").unwrap_or_default().to_owned(),
        unit_price: integer(
            "unit_price",
            cell("unit_price").ok_or_else(|| FieldError::new("unit_price", "required"))?,
        )?,
        currency: cell("currency").unwrap_or_default().to_owned(),
        stock: cell("stock").map(|v| integer("stock", v)).transpose()?,
        description: cell("description").map(str::to_owned),
        active: cell("active")
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(FieldError::new(
                    "active",
                    format!("{v:?} is not true/false, 1/0 or yes/no"),
                )),
            })
            .transpose()?,
        tags: cell("tags").map(|v| {
            v.split(CSV_TAG_SEPARATOR)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        }),
        vendor: cell("vendor").map(str::to_owned),
        category: cell("category").map(str::to_owned),
    })
}

fn csv_error(location: &str, err: &csv::Error) -> RecordError {
    let problem = match err.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
        _ => err.to_string(),
    };
    RecordError::new(location, "", problem)
}

const JSON_FIELDS: [&str; 10] = [
    "sku",
    "name",
    "unitPrice",
    "currency",
    "stock",
    "description",
    "active",
    "tags",
    "vendor",
    "category",
];

/// JSON: an array of objects `{sku, name, unitPrice, currency, stock?, description?,
/// active?, tags?, vendor?, category?}` (`tags` an array of strings); unknown fields are
/// refused, `null` is the same as absent.
fn parse_json(text: &str) -> Result<Vec<Upsert>, Vec<RecordError>> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        vec![RecordError::new(
            &format!("line {}, column {}", e.line(), e.column()),
            "",
            format!("not valid JSON: {e}"),
        )]
    })?;
    let Value::Array(records) = value else {
        return Err(vec![RecordError::new(
            "the document",
            "",
            "must be an array of product objects",
        )]);
    };
    let mut collector = Collector::default();
    for (n, record) in records.iter().enumerate() {
        let location = format!("record {}", n + 1);
        let result = match record {
            Value::Object(object) => json_fields(&location, object).and_then(|fields| {
                fields
                    .validate("unitPrice")
                    .map_err(|e| RecordError::at(&location, e))
            }),
            _ => Err(RecordError::new(&location, "", "not an object")),
        };
        collector.push(location, result);
    }
    collector.finish()
}

fn json_fields(location: &str, object: &Map<String, Value>) -> Result<Fields, RecordError> {
    if let Some(key) = object.keys().find(|k| !JSON_FIELDS.contains(&k.as_str())) {
        return Err(RecordError::new(
            location,
            key,
            format!("unknown field; the fields are {}", JSON_FIELDS.join(", ")),
        ));
    }
    let get = |key: &str| object.get(key).filter(|v| !v.is_null());
    let wrong =
        |key: &str, expected: &str| RecordError::new(location, key, format!("must be {expected}"));
    let required = |key: &str| RecordError::new(location, key, "required");
    let string = |key: &str, needed: bool| match get(key) {
        None if needed => Err(required(key)),
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(wrong(key, "a string")),
    };
    let integer = |key: &str, needed: bool| match get(key) {
        None if needed => Err(required(key)),
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| wrong(key, "an integer (amounts in minor units)")),
    };
    Ok(Fields {
        sku: string("sku", true)?.unwrap_or_default(),
        name: string("name", true)?.unwrap_or_default(),
        unit_price: integer("unitPrice", true)?.unwrap_or_default(),
        currency: string("currency", true)?.unwrap_or_default(),
        stock: integer("stock", false)?,
        description: string("description", false)?,
        active: match get("active") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(wrong("active", "true or false")),
        },
        tags: match get("tags") {
            None => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| wrong("tags", "an array of strings"))?,
            ),
            Some(_) => return Err(wrong("tags", "an array of strings")),
        },
        vendor: string("vendor", false)?,
        category: string("category", false)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(result: Result<Vec<Upsert>, Vec<RecordError>>) -> Vec<String> {
        result
            .expect_err("invalid")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn csv_with_optional_columns_and_quoting() {
        let items = parse_csv(
            "\u{feff}SKU,name,unit_price,currency,stock,description,active\n\
             A-1, Mug ,1250,EUR,5,\"Big, blue\",true\n\
             B-2,Plate,300,JPY,,,no\n",
        )
        .unwrap();
        assert_eq!(items.len(), 2);
        let mug = &items[0];
        assert_eq!(mug.new.sku.as_str(), "A-1");
        assert_eq!(mug.new.name, "Mug");
        assert_eq!(mug.new.description, "Big, blue");
        assert_eq!(mug.new.initial_stock, 5);
        assert_eq!(mug.new.price.to_string(), "12.50");
        let plate = &items[1];
        assert_eq!(plate.new.initial_stock, 0);
        assert!(!plate.new.active);
        // Absent optional cells leave an existing product's values alone.
        assert_eq!(plate.patch.description, None);
        assert_eq!(plate.patch.active, Some(false));
    }

    #[test]
    fn csv_problems_name_line_and_field() {
        let found = problems(parse_csv(
            "sku,name,unit_price,currency\n\
             A-1,Mug,12.50,EUR\n\
             A-2,,100,EUR\n\
             A-3,Cup,100,eur\n\
             A-2,Again,100,EUR\n\
             A-4,Short\n",
        ));
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(
            found[0].starts_with("line 2, field unit_price:"),
            "{found:?}"
        );
        assert!(found[0].contains("minor units"), "{found:?}");
        assert!(found[1].starts_with("line 3, field name:"), "{found:?}");
        assert!(found[2].starts_with("line 4, field currency:"), "{found:?}");
        assert!(found[3].starts_with("line 6:"), "{found:?}");
        // A-2 on line 5 is not a duplicate: line 3 was rejected before it was seen.
    }

    #[test]
    fn csv_header_must_name_known_and_required_columns() {
        let found = problems(parse_csv("sku,title,unit_price\nA,B,1\n"));
        assert!(
            found
                .iter()
                .any(|p| p.contains("field title: unknown column"))
        );
        assert!(
            found
                .iter()
                .any(|p| p.contains("field name: missing column"))
        );
        assert!(
            found
                .iter()
                .any(|p| p.contains("field currency: missing column"))
        );
    }

    #[test]
    fn repeated_skus_are_refused() {
        let found = problems(parse_csv(
            "sku,name,unit_price,currency\nA,x,1,EUR\nA,y,2,EUR\n",
        ));
        assert_eq!(
            found,
            ["line 3, field sku: \"A\" already appears at line 2"]
        );
    }

    #[test]
    fn json_records_and_their_problems() {
        let items = parse_json(
            r#"[{"sku": "A", "name": "Mug", "unitPrice": 1250, "currency": "KWD",
                 "stock": 3, "description": null, "active": false}]"#,
        )
        .unwrap();
        assert_eq!(items[0].new.price.to_string(), "1.250");
        assert!(!items[0].new.active);
        assert_eq!(items[0].patch.description, None);

        let found = problems(parse_json(
            r#"[{"sku": "A", "name": "Mug", "unitPrice": 1, "currency": "EUR"},
                {"sku": "B", "unitPrice": 1, "currency": "EUR"},
                {"sku": "C", "name": "x", "unitPrice": 12.5, "currency": "EUR"},
                {"sku": "D", "name": "x", "unitPrice": 1, "currency": "EUR", "colour": "red"},
                {"sku": "E", "name": "x", "unitPrice": 1, "currency": "EUR", "stock": -1},
                7]"#,
        ));
        assert_eq!(
            found,
            [
                "record 2, field name: required",
                "record 3, field unitPrice: must be an integer (amounts in minor units)",
                "record 4, field colour: unknown field; the fields are sku, name, unitPrice, currency, stock, description, active, tags, vendor, category",
                "record 5, field stock: an integer between 0 and 1000000000",
                "record 6: not an object",
            ]
        );
        assert!(problems(parse_json("{\"sku\": 1}"))[0].contains("array"));
        assert!(problems(parse_json("[{"))[0].starts_with("line 1, column 2"));
    }

    #[test]
    fn tags_vendor_and_category_are_optional_columns() {
        let items = parse_csv(
            "sku,name,unit_price,currency,tags,vendor,category\n\
             A,Mug,100,EUR,Sale | new|sale,Acme Co, Kitchen \n\
             B,Plate,100,EUR,,,\n",
        )
        .unwrap();
        let mug = &items[0];
        assert_eq!(mug.new.tags.as_slice(), ["new", "sale"]);
        assert_eq!(mug.new.vendor.as_deref(), Some("Acme Co"));
        assert_eq!(mug.patch.category, Some(Some("Kitchen".to_owned())));
        // Empty cells leave an existing product's values alone.
        let plate = &items[1];
        assert!(plate.new.tags.as_slice().is_empty());
        assert_eq!(plate.new.vendor, None);
        assert_eq!(
            (
                &plate.patch.tags,
                &plate.patch.vendor,
                &plate.patch.category
            ),
            (&None, &None, &None)
        );

        let found = problems(parse_csv(&format!(
            "sku,name,unit_price,currency,tags,vendor\n\
             A,x,1,EUR,ok|bad tag,\n\
             B,x,1,EUR,a||b,\n\
             C,x,1,EUR,,{}\n",
            "v".repeat(129)
        )));
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with("line 2, field tags: tag 2 (\"bad tag\")"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("line 3, field tags: tag 2 has 0 characters"),
            "{found:?}"
        );
        assert!(
            found[2].starts_with("line 4, field vendor: 1-128 characters"),
            "{found:?}"
        );

        let items = parse_json(
            r#"[{"sku": "A", "name": "Mug", "unitPrice": 1, "currency": "EUR",
                 "tags": ["B2B", "b2b"], "vendor": "", "category": null}]"#,
        )
        .unwrap();
        assert_eq!(items[0].new.tags.as_slice(), ["b2b"]);
        // `""` removes an existing product's vendor; `null` keeps its category.
        assert_eq!(items[0].patch.vendor, Some(None));
        assert_eq!(items[0].patch.category, None);
        let found = problems(parse_json(
            r#"[{"sku": "A", "name": "x", "unitPrice": 1, "currency": "EUR", "tags": "a|b"},
                {"sku": "B", "name": "x", "unitPrice": 1, "currency": "EUR", "tags": [1]}]"#,
        ));
        assert_eq!(
            found,
            [
                "record 1, field tags: must be an array of strings",
                "record 2, field tags: must be an array of strings",
            ]
        );
    }

    #[test]
    fn the_extension_chooses_the_format() {
        let err = parse_file(Path::new("products.xlsx")).unwrap_err();
        assert!(err.to_string().contains(".csv or .json"), "{err}");
        let err = parse_file(Path::new("/nonexistent/products.csv")).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
}
