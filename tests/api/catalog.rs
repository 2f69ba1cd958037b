//! Catalog tests (products, stock, showcase, import).
