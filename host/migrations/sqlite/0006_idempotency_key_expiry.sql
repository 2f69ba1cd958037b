-- Idempotency keys expire (ORDERHOST_IDEMPOTENCY_TTL_SECS, default 24 h); the workers
-- sweep the expired ones by age.
create index idempotency_keys_created_idx on idempotency_keys (created_at);
