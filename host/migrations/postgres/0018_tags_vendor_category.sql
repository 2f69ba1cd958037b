-- What tenant rules read about a customer and a product beyond price and stock (issue 15):
-- customer tags ("wholesale", "b2b-gold"), and product tags, vendor and category. Tags are
-- a text[] here (a JSON array in text on SQLite), at most 32 normalized tags, validated by
-- the service (host/src/tags.rs). No index: nothing selects rows by tag; the order path
-- reads them with the rows it already reads by key.
--
-- A constant default is stored in the catalog, not written into every row (PostgreSQL
-- 11+): adding these columns rewrites neither table, and old rows read as no tags.
alter table users add column tags text[] not null default '{}';

alter table products add column tags text[] not null default '{}';
alter table products add column vendor text;
alter table products add column category text;
