-- A job is its order's: one per order, found by the order id. Keying the table by
-- order_id leaves one unique index where there were two (id and order_id), one entry
-- less to write when a job is queued and when it is claimed. `id` stays as a plain
-- column (time-ordered, the last tie-break of the claim order). SQLite cannot change a
-- table's key in place: the table is rebuilt with its rows and partial indexes.
create table jobs_keyed (
    order_id text primary key references orders (id),
    id text not null,
    tenant_id text not null,
    priority bigint not null,
    status text not null check (status in ('queued', 'leased', 'done', 'dead')),
    attempts integer not null default 0,
    max_attempts integer not null,
    run_at bigint not null,
    lease_until bigint,
    leased_by text,
    last_error text,
    created_at bigint not null,
    updated_at bigint not null
);
insert into jobs_keyed (order_id, id, tenant_id, priority, status, attempts, max_attempts, run_at,
                        lease_until, leased_by, last_error, created_at, updated_at)
    select order_id, id, tenant_id, priority, status, attempts, max_attempts, run_at,
           lease_until, leased_by, last_error, created_at, updated_at from jobs;
drop table jobs;
alter table jobs_keyed rename to jobs;
create index jobs_queued_idx on jobs (priority desc, created_at, id) where status = 'queued';
create index jobs_leased_idx on jobs (lease_until) where status = 'leased';
