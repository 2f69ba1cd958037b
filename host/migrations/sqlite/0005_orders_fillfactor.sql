-- PostgreSQL leaves free space on the orders table's pages for in-place status updates;
-- SQLite has no such setting. This file keeps the two migration histories in step.
select 1;
