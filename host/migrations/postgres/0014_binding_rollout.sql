-- Safe rollout (issue 11): a database binding may carry a canary candidate (served to a
-- sticky share of customers, in per-mille) and a shadow candidate (run beside the stable
-- one on a sample of orders, off the order's path). Each change is a history row like
-- any other: `canary` (set or ramp), `promote` (the candidate becomes stable),
-- `auto-rollback` (the service took the canary to 0 ‰ by itself; `reason` says why),
-- `shadow`.
alter table binding_history add column canary_name text;
alter table binding_history add column canary_version text;
alter table binding_history add column canary_sha256 text;
alter table binding_history add column canary_config text;
alter table binding_history add column canary_permille integer not null default 0;
alter table binding_history add column shadow_name text;
alter table binding_history add column shadow_version text;
alter table binding_history add column shadow_sha256 text;
alter table binding_history add column shadow_config text;
alter table binding_history add column shadow_permille integer not null default 0;
alter table binding_history drop constraint binding_history_action_check;
alter table binding_history add constraint binding_history_action_check
    check (action in ('bind', 'rollback', 'canary', 'promote', 'auto-rollback', 'shadow'));
