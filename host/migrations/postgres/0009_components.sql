-- The component registry (module `registry`): uploaded WebAssembly components, stored by
-- content (SHA-256) with what validation learnt from the component itself. `owner` is
-- 'platform' (uploaded by an operator, bindable by every tenant) or the id of the one
-- tenant that owns it (uploaded by its admin, visible only there). A name@version is
-- unique per owner.
create table components (
    id text primary key,
    owner text not null,
    name text not null,
    version text not null,
    sha256 text not null,
    bytes bytea not null,
    size_bytes bigint not null,
    world text not null,
    wit_version text not null,
    exports text not null,
    imports text not null,
    uploaded_by text not null,
    created_at bigint not null,
    updated_at bigint not null,
    constraint components_owner_name_version_key unique (owner, name, version)
);

create index components_sha256_idx on components (sha256);
create index components_name_idx on components (name, created_at);

-- Per-tenant component quotas set by an operator; a tenant without a row has the
-- configured defaults (ORDERHOST_COMPONENT_QUOTA_COUNT / _BYTES).
create table component_quotas (
    tenant_id text primary key references tenants (id),
    max_count bigint not null,
    max_bytes bigint not null,
    created_at bigint not null,
    updated_at bigint not null
);
