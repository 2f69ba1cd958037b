-- Every order row is updated once more when it settles (status, reason, final_at: no
-- index covers them). With free space left on each page that update is HOT — the new row
-- version stays on its page and no index gets a new entry; on full pages each settlement
-- added an entry to both of the table's indexes. Applies to pages written from now on.
alter table orders set (fillfactor = 85);
