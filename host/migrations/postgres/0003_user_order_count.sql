-- Orders placed per customer, kept with the order insert: the order-context's order-count
-- without counting a customer's orders on every placement.
alter table users add column order_count bigint not null default 0;
