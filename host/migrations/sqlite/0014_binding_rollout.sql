-- Safe rollout (issue 11): a database binding may carry a canary candidate (served to a
-- sticky share of customers, in per-mille) and a shadow candidate (run beside the stable
-- one on a sample of orders, off the order's path). Each change is a history row like
-- any other: `canary` (set or ramp), `promote` (the candidate becomes stable),
-- `auto-rollback` (the service took the canary to 0 ‰ by itself; `reason` says why),
-- `shadow`. SQLite cannot change a check constraint in place: the table is rebuilt.
create table binding_history_new (
    id text primary key,
    tenant_id text not null references tenants (id),
    revision bigint not null,
    hook text not null check (hook in ('validation', 'pricing', 'prioritization')),
    action text not null check (action in ('bind', 'rollback', 'canary', 'promote', 'auto-rollback', 'shadow')),
    component_name text,
    component_version text,
    sha256 text,
    config text not null,
    fuel bigint not null,
    memory_bytes bigint not null,
    timeout_ms bigint not null,
    on_error text not null check (on_error in ('reject', 'fallback')),
    actor_id text not null,
    reason text not null,
    previous_revision bigint,
    restores_revision bigint,
    created_at bigint not null,
    updated_at bigint not null,
    canary_name text,
    canary_version text,
    canary_sha256 text,
    canary_config text,
    canary_permille integer not null default 0,
    shadow_name text,
    shadow_version text,
    shadow_sha256 text,
    shadow_config text,
    shadow_permille integer not null default 0,
    constraint binding_history_tenant_revision_key unique (tenant_id, revision)
);
insert into binding_history_new (id, tenant_id, revision, hook, action, component_name,
    component_version, sha256, config, fuel, memory_bytes, timeout_ms, on_error, actor_id,
    reason, previous_revision, restores_revision, created_at, updated_at)
select id, tenant_id, revision, hook, action, component_name, component_version, sha256,
    config, fuel, memory_bytes, timeout_ms, on_error, actor_id, reason, previous_revision,
    restores_revision, created_at, updated_at
from binding_history;
drop table binding_history;
alter table binding_history_new rename to binding_history;
create index binding_history_tenant_hook_idx on binding_history (tenant_id, hook, revision);
