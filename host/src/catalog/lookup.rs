//! What the order path needs from the catalog: how a client names an item, and the
//! catalog's view of it (product, stock item, price, availability, and the tags, vendor
//! and category the tenant's rules read). The order path reads these rows together with
//! the customer, for many orders at once (`orders::reader`).

/// How a client names an order line's item.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LineRef {
    /// By stock item id.
    Stock(String),
    /// By product sku.
    Sku(String),
}

impl LineRef {
    /// Whether this reference names `line`.
    pub fn names(&self, line: &CatalogLine) -> bool {
        match self {
            Self::Stock(id) => &line.stock_id == id,
            Self::Sku(sku) => &line.sku == sku,
        }
    }
}

/// An order line's item as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The product's tags (normalized, sorted; empty when none).
    pub tags: Vec<String>,
    /// The product's vendor.
    pub vendor: Option<String>,
    /// The product's category.
    pub category: Option<String>,
}

/// Pairs each reference with the row it names, `None` where no row matches.
pub fn match_refs(refs: &[LineRef], rows: &[CatalogLine]) -> Vec<Option<CatalogLine>> {
    refs.iter()
        .map(|r| rows.iter().find(|row| r.names(row)).cloned())
        .collect()
}
