-- Catalog, orders and the database-backed job queue. Money is bigint minor units;
-- timestamps bigint epoch milliseconds; ids UUIDv7 text (time-ordered).
create table products (
    id text primary key,
    tenant_id text not null references tenants (id),
    sku text not null,
    name text not null,
    description text not null default '',
    images text not null default '[]', -- JSON array of URLs
    unit_price bigint not null check (unit_price >= 0),
    currency text not null,
    active boolean not null default true,
    created_at bigint not null,
    updated_at bigint not null,
    constraint products_tenant_sku_key unique (tenant_id, sku)
);

-- One stock item per product. `received` counts every unit ever received (net of
-- adjustments): confirmed quantities can never exceed it.
create table stock_items (
    id text primary key,
    tenant_id text not null references tenants (id),
    product_id text not null references products (id),
    available bigint not null check (available >= 0),
    reserved bigint not null default 0 check (reserved >= 0),
    received bigint not null default 0,
    version bigint not null default 0,
    created_at bigint not null,
    updated_at bigint not null,
    constraint stock_items_product_key unique (product_id)
);

-- Audit trail of every stock change.
create table stock_movements (
    id text primary key,
    tenant_id text not null references tenants (id),
    stock_id text not null references stock_items (id),
    kind text not null check (kind in ('receive', 'adjust', 'reserve', 'release')),
    quantity bigint not null,
    reason text not null default '',
    actor_id text,
    order_id text,
    created_at bigint not null,
    updated_at bigint not null
);
create index stock_movements_stock_idx on stock_movements (stock_id, created_at);

create table orders (
    id text primary key,
    tenant_id text not null references tenants (id),
    user_id text not null,
    status text not null check (status in ('PENDING', 'CONFIRMED', 'FAILED', 'CANCELLED')),
    reason text,
    priority bigint not null,
    total bigint not null,
    currency text not null,
    expected_total bigint,
    quote text not null,      -- JSON: the pricing component's quote
    context text not null,    -- JSON: the order-context the hooks saw
    components text not null, -- JSON: hook -> component name@version and sha256
    created_at bigint not null,
    updated_at bigint not null,
    final_at bigint
);
create index orders_user_idx on orders (tenant_id, user_id, created_at);

create table order_lines (
    order_id text not null references orders (id),
    line_no integer not null,
    tenant_id text not null,
    product_id text not null,
    stock_id text not null,
    sku text not null,
    quantity bigint not null check (quantity > 0),
    unit_price bigint not null,
    subtotal bigint not null,
    created_at bigint not null,
    updated_at bigint not null,
    primary key (order_id, line_no)
);

-- Status changes, in order, for GET /order/:id/events.
create table order_events (
    seq integer primary key autoincrement,
    order_id text not null references orders (id),
    tenant_id text not null,
    status text not null,
    reason text,
    created_at bigint not null,
    updated_at bigint not null
);
create index order_events_order_idx on order_events (order_id, seq);

-- The queue: one job per order. Claimed highest priority first, FIFO within a priority
-- (created_at, then the time-ordered id), with a lease; a job whose lease ran out is
-- claimable again.
create table jobs (
    id text primary key,
    tenant_id text not null,
    order_id text not null references orders (id),
    priority bigint not null,
    status text not null check (status in ('queued', 'leased', 'done', 'dead')),
    attempts integer not null default 0,
    max_attempts integer not null,
    run_at bigint not null,
    lease_until bigint,
    leased_by text,
    last_error text,
    created_at bigint not null,
    updated_at bigint not null,
    constraint jobs_order_key unique (order_id)
);
create index jobs_claim_idx on jobs (status, priority desc, created_at, id);

create table idempotency_keys (
    tenant_id text not null,
    user_id text not null,
    key text not null,
    request_hash text not null,
    state text not null check (state in ('in_flight', 'done')),
    response_status integer,
    response_body text,
    created_at bigint not null,
    updated_at bigint not null,
    primary key (tenant_id, user_id, key)
);
