-- The order path's foreign keys that cost more than they guard (issue 14).
--
-- Each of these was checked by PostgreSQL on every accepted or settled order with a
-- `select … for key share` of the parent row. Two of them lock the tenant's ONE row for
-- every order (orders.tenant_id, stock_movements.tenant_id): under concurrency every
-- order then shares a lock on the same row, which PostgreSQL records as a multixact (a
-- write to that row and to the multixact files). The three on orders(id) lock the order
-- row the same statement has just inserted. Measured at 300 orders/s, the placement's
-- statement took 0.51 ms with them and 0.36 ms without.
--
-- What they guarded is guaranteed by the code that writes these rows: an order's lines,
-- first event and job are inserted by the same statement as the order (orders::writer),
-- later events and jobs only for an order read under its row lock, and an order's tenant
-- is its customer's (users.tenant_id keeps its foreign key; tenants are never deleted).
-- The foreign keys of rows written off the hot path stay (users, products, stock items,
-- stock_movements.stock_id, whose row the settlement holds locked anyway). SQLite keeps
-- all of them: there, a check is an index probe in the same process, with no lock.
alter table orders drop constraint if exists orders_tenant_id_fkey;
alter table order_lines drop constraint if exists order_lines_order_id_fkey;
alter table order_events drop constraint if exists order_events_order_id_fkey;
alter table jobs drop constraint if exists jobs_order_id_fkey;
alter table stock_movements drop constraint if exists stock_movements_tenant_id_fkey;
