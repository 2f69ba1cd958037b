-- What a customer has bought, for the order context of WIT 1.1 (issue 15): the count
-- and the spend of its CONFIRMED orders, per currency. Kept up to date by the
-- settlement that confirms the orders (orders::process, one upsert per settled batch),
-- so placement reads one row per currency instead of counting a history that only grows.
create table customer_totals (
    user_id text not null,
    currency text not null,
    tenant_id text not null,
    orders integer not null,
    spend integer not null,
    primary key (user_id, currency)
);

-- The orders confirmed before this migration.
insert into customer_totals (user_id, currency, tenant_id, orders, spend)
select user_id, currency, min(tenant_id), count(*), sum(total)
from orders where status = 'CONFIRMED'
group by user_id, currency;
