-- The claim reads queued jobs in claim order (priority, then FIFO) straight off a partial
-- index and stops after one batch; expired leases are found through their own partial
-- index. The former single index on (status, priority, created_at, id) made the claim's
-- `queued or expired` condition a scan and a sort of the whole backlog on every claim.
-- A settled job is deleted rather than kept as 'done' (the order row and its events are
-- the record; dead jobs stay, with their last error), so the table holds only live work.
drop index jobs_claim_idx;
delete from jobs where status = 'done';
create index jobs_queued_idx on jobs (priority desc, created_at, id) where status = 'queued';
create index jobs_leased_idx on jobs (lease_until) where status = 'leased';
