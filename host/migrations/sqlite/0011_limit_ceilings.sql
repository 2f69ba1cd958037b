-- Per-tenant ceilings on the limits a binding may set, chosen by an operator; a missing
-- row or column means the engine's own maximum.
create table limit_ceilings (
    tenant_id text primary key references tenants (id),
    max_fuel bigint,
    max_memory_bytes bigint,
    max_timeout_ms bigint,
    created_at bigint not null,
    updated_at bigint not null
);
