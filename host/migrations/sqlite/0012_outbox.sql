-- Redis mode: the transactional outbox. An accepted order writes its row in the order's own
-- write; the relay (in every serve/worker process) claims unsent rows by moving
-- `next_try_at` past a short lease, pushes them to Redis and deletes them. A push that fails
-- moves `next_try_at` by a backoff. The table holds only what Redis has not got yet: the
-- order row is the record (`orderhost queue resync` re-pushes every PENDING order).
create table outbox (
    id text primary key,
    order_id text not null,
    tenant_id text not null,
    priority bigint not null,
    max_attempts integer not null,
    -- `new` (an accepted order, or a resync) or `retry` (a dead-letter retry: revives the
    -- dead job with fresh attempts; a `new` push leaves any job Redis holds alone).
    kind text not null default 'new',
    attempts integer not null default 0,
    next_try_at bigint not null,
    last_error text,
    created_at bigint not null
);
create index outbox_due_idx on outbox (next_try_at, id);

-- Dead-letter listings show when a job's first attempt started.
alter table jobs add column first_attempt_at bigint;
