-- Tenants, users and refresh tokens. Timestamps are unix epoch milliseconds (bigint) on
-- both backends so one query text serves SQLite and PostgreSQL and tests can inject time.
create table tenants (
    id text primary key,
    slug text not null,
    name text not null,
    created_at bigint not null,
    updated_at bigint not null,
    constraint tenants_slug_key unique (slug)
);

insert into tenants (id, slug, name, created_at, updated_at)
values ('00000000-0000-0000-0000-000000000001', 'default', 'Default tenant', 0, 0);

create table users (
    id text primary key,
    tenant_id text not null references tenants (id),
    email text not null,
    password_hash text not null,
    role text not null check (role in ('customer', 'admin', 'operator')),
    vip boolean not null default false,
    created_at bigint not null,
    updated_at bigint not null,
    constraint users_tenant_email_key unique (tenant_id, email)
);

create table refresh_tokens (
    id text primary key,
    tenant_id text not null references tenants (id),
    user_id text not null references users (id) on delete cascade,
    family_id text not null,
    token_hash text not null,
    expires_at bigint not null,
    rotated_at bigint,
    revoked_at bigint,
    created_at bigint not null,
    updated_at bigint not null,
    constraint refresh_tokens_hash_key unique (token_hash)
);

create index refresh_tokens_family_idx on refresh_tokens (family_id);
create index refresh_tokens_user_idx on refresh_tokens (user_id);
