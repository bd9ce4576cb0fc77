-- Peerline supernode schema, version 5: device ids are random and never reused.
--
-- Until now a device took the next rowid (the largest id + 1), so removing the newest device let
-- the next login take its id, and a contact's key pinned for that id then looked like an identity
-- change; the ids also counted every device of the network. New devices now get a random id in
-- [1, 2^53) (2^53: a JavaScript client holds it exactly), drawn by the store, and every id ever
-- issued is kept here for good, removed device or not: the primary key refuses a second issue.

CREATE TABLE issued_device_ids (
    id INTEGER PRIMARY KEY CHECK (id >= 1 AND id < 9007199254740992)
) STRICT;

-- Existing devices keep their ids. Every id up to the largest one may have been issued (gaps are
-- removed devices), so all of them are retired.
WITH RECURSIVE issued (id) AS (
    SELECT 1 WHERE EXISTS (SELECT 1 FROM devices)
    UNION ALL
    SELECT id + 1 FROM issued WHERE id < (SELECT max(id) FROM devices)
)
INSERT INTO issued_device_ids (id) SELECT id FROM issued;
