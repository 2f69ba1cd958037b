-- Dry runs (`registry/dryrun.rs`): a candidate component replayed on a tenant's stored
-- orders beside the active binding. One row per run: its request, its progress while it
-- runs (updated by the replica running it, at least every second), then its report. Any
-- replica answers `GET …/dry-run/{id}` from here, and a restart loses no finished report;
-- a run whose replica stopped is seen as failed once its row stops moving.
create table dry_runs (
    id text primary key,
    tenant_id text not null,
    hook text not null,
    candidate text not null,
    status text not null check (status in ('running', 'done', 'failed')),
    processed bigint not null default 0,
    total bigint not null default 0,
    request text not null, -- JSON: the request as accepted
    report text,           -- JSON: the report, once done (partial when truncated)
    error text,
    actor_id text not null,
    created_at bigint not null,
    updated_at bigint not null
);
create index dry_runs_tenant_idx on dry_runs (tenant_id, created_at);
