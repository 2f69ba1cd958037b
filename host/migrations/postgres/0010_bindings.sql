-- Tenant bindings set over the API (module `registry::bindings`). Every change is one
-- append-only `binding_history` row with a revision that increases per tenant;
-- `bindings` points each (tenant, hook) at the revision that serves it. A history row
-- without a component means "no database binding": the TOML files or the built-in
-- serve that hook (what rolling back a tenant's first binding restores).
create table binding_history (
    id text primary key,
    tenant_id text not null references tenants (id),
    revision bigint not null,
    hook text not null check (hook in ('validation', 'pricing', 'prioritization')),
    action text not null check (action in ('bind', 'rollback')),
    component_name text,
    component_version text,
    sha256 text,
    config text not null, -- JSON object of strings
    fuel bigint not null,
    memory_bytes bigint not null,
    timeout_ms bigint not null,
    on_error text not null check (on_error in ('reject', 'fallback')),
    actor_id text not null,
    reason text not null,
    previous_revision bigint, -- what served the hook before (null: no database binding)
    restores_revision bigint, -- for a rollback: the revision it restored
    created_at bigint not null,
    updated_at bigint not null,
    constraint binding_history_tenant_revision_key unique (tenant_id, revision)
);

create index binding_history_tenant_hook_idx on binding_history (tenant_id, hook, revision);

-- The active database binding per (tenant, hook).
create table bindings (
    tenant_id text not null references tenants (id),
    hook text not null,
    revision bigint not null,
    created_at bigint not null,
    updated_at bigint not null,
    primary key (tenant_id, hook)
);

-- One row: bumped in the transaction of every binding change, so a process (or, later, a
-- replica) knows whether its snapshot is older than the database's.
create table bindings_revision (
    id integer primary key check (id = 1),
    revision bigint not null,
    updated_at bigint not null
);

insert into bindings_revision (id, revision, updated_at) values (1, 0, 0);
