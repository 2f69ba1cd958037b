//! What the order path needs from the catalog: the lines of an order resolved to their
//! product, stock item, catalog price and availability, in one query.

use serde::Deserialize;

use crate::{store::Store, with_pool};

/// How a client names an order line's item.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LineRef {
    /// By stock item id.
    Stock(String),
    /// By product sku.
    Sku(String),
}

/// An order line's item as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Deserialize)]
pub struct CatalogLine {
    /// Product id.
    pub product_id: String,
    /// Stock item id.
    pub stock_id: String,
    /// Sku.
    pub sku: String,
    /// Product name.
    pub name: String,
    /// Catalog unit price, minor units.
    pub unit_price: i64,
    /// Currency.
    pub currency: String,
    /// Whether the product is for sale.
    pub active: bool,
    /// Units available now.
    pub available: i64,
}

const SELECT_LINE: &str = "select p.id as product_id, s.id as stock_id, p.sku, p.name, p.unit_price, \
     p.currency, p.active, s.available \
     from products p join stock_items s on s.product_id = p.id";

/// Resolves each reference within `tenant_id`; `None` where nothing matches (including
/// items of another tenant).
pub async fn resolve(
    store: &Store,
    tenant_id: &str,
    refs: &[LineRef],
) -> Result<Vec<Option<CatalogLine>>, sqlx::Error> {
    let stock_ids: Vec<&str> = refs
        .iter()
        .filter_map(|r| match r {
            LineRef::Stock(id) => Some(id.as_str()),
            LineRef::Sku(_) => None,
        })
        .collect();
    let skus: Vec<&str> = refs
        .iter()
        .filter_map(|r| match r {
            LineRef::Sku(sku) => Some(sku.as_str()),
            LineRef::Stock(_) => None,
        })
        .collect();
    // One query for the whole order: `in (...)` lists built with numbered placeholders,
    // which both dialects accept.
    let mut sql = format!("{SELECT_LINE} where p.tenant_id = $1 and (");
    let mut n = 1;
    let mut clauses = Vec::new();
    if !stock_ids.is_empty() {
        let list: Vec<String> = stock_ids
            .iter()
            .map(|_| {
                n += 1;
                format!("${n}")
            })
            .collect();
        clauses.push(format!("s.id in ({})", list.join(", ")));
    }
    if !skus.is_empty() {
        let list: Vec<String> = skus
            .iter()
            .map(|_| {
                n += 1;
                format!("${n}")
            })
            .collect();
        clauses.push(format!("p.sku in ({})", list.join(", ")));
    }
    if clauses.is_empty() {
        return Ok(Vec::new());
    }
    sql.push_str(&clauses.join(" or "));
    sql.push(')');
    let rows: Vec<CatalogLine> = with_pool!(store, pool => {
        let mut query = sqlx::query_as::<_, CatalogLine>(&sql).bind(tenant_id);
        for id in &stock_ids {
            query = query.bind(*id);
        }
        for sku in &skus {
            query = query.bind(*sku);
        }
        query.fetch_all(pool).await?
    });
    Ok(refs
        .iter()
        .map(|r| {
            rows.iter()
                .find(|row| match r {
                    LineRef::Stock(id) => &row.stock_id == id,
                    LineRef::Sku(sku) => &row.sku == sku,
                })
                .cloned()
        })
        .collect())
}
