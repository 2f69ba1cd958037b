-- The per-order decision log (`orders/decision.rs`): per hook the component, why it
-- served, the configuration it read, fuel, latency, its log lines; the quote and the
-- priority. Written with the order; deleted after ORDERHOST_DECISION_RETENTION_DAYS by the
-- workers' housekeeping (oldest first, through the index below). No foreign key: the
-- record outlives nothing and costs the order's write no lookup.
create table order_decisions (
    order_id text primary key,
    tenant_id text not null,
    decision text not null,
    created_at bigint not null
);
create index order_decisions_created_idx on order_decisions (created_at);
