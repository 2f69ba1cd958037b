-- A job is its order's: one per order, found by the order id. Keying the table by
-- order_id leaves one unique index where there were two (id and order_id), one entry
-- less to write when a job is queued and when it is claimed. `id` stays as a plain
-- column (time-ordered, the last tie-break of the claim order).
alter table jobs drop constraint jobs_pkey;
alter table jobs drop constraint jobs_order_key;
alter table jobs add primary key (order_id);
