-- Directory search without a table scan.
--
-- Username prefixes need nothing more: the unique index on accounts.username is a btree in the
-- "C" collation, which serves the range `username >= q AND username < q || U+10FFFF` the store
-- searches with. Display-name substrings need a trigram index: pg_trgm answers
-- `LIKE '%...%'` from a GIN index (for queries of three characters or more; no index can narrow
-- a shorter substring). pg_trgm ships with PostgreSQL and is a trusted extension, so the
-- database's owner may create it.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- fastupdate = off: new names go straight into the index instead of a pending list that only
-- (auto)vacuum merges. Accounts are created and renamed rarely, so the slower insert costs
-- little, and search never has to read a long unsorted pending list (with which the planner
-- rightly prefers a table scan).
CREATE INDEX accounts_display_name_trgm ON accounts USING gin (display_name_lower gin_trgm_ops)
    WITH (fastupdate = off);
