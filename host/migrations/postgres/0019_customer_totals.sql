-- What a customer has bought, for the order context of WIT 1.1 (issue 15). Both tables
-- are kept by the settlement that confirms orders (orders::process, in its one chain)
-- and by the cancellation of a confirmed order (orders::routes), so placement reads a
-- few rows by primary key instead of a history that only grows.

-- Confirmed orders and their spend, per customer and currency.
create table customer_totals (
    user_id text not null,
    currency text not null,
    tenant_id text not null,
    orders bigint not null,
    spend bigint not null,
    primary key (user_id, currency)
);

-- Confirmed units per customer, SKU and clock hour of the order's placement
-- (created_at / 3 600 000): the "last 24 hours / 30 days" figures sum at most 25 / 721
-- rows per SKU however often the customer orders. Rows older than 31 days are deleted by
-- the workers' housekeeping (hence the index on hour).
create table customer_sku_hours (
    user_id text not null,
    sku text not null,
    hour bigint not null,
    units bigint not null,
    -- `units` in the key's index: the read is an index-only scan.
    primary key (user_id, sku, hour) include (units)
);
create index customer_sku_hours_hour_idx on customer_sku_hours (hour);

-- The customer's orders still PENDING, for the same figures: confirmed units come from
-- the buckets, units of orders accepted but not settled yet from these (a partial index:
-- it holds only live work, however long the history).
create index orders_pending_user_idx on orders (user_id) where status = 'PENDING';

-- The orders confirmed before this migration.
insert into customer_totals (user_id, currency, tenant_id, orders, spend)
select user_id, currency, min(tenant_id), count(*), sum(total)
from orders where status = 'CONFIRMED'
group by user_id, currency;

insert into customer_sku_hours (user_id, sku, hour, units)
select o.user_id, l.sku, o.created_at / 3600000, sum(l.quantity)
from orders o join order_lines l on l.order_id = o.id
where o.status = 'CONFIRMED'
  and o.created_at >= (extract(epoch from now()) * 1000)::bigint - 31::bigint * 86400000
group by o.user_id, l.sku, o.created_at / 3600000;
