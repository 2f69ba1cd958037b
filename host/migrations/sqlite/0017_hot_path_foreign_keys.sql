-- PostgreSQL drops the order path's foreign keys that lock the tenant's row or the order
-- row just inserted (see migrations/postgres/0017). SQLite keeps them: a check there is an
-- index probe in the same process, with no lock and no multixact. Nothing to change; the
-- file keeps both backends' migration versions in step.
select 1;
