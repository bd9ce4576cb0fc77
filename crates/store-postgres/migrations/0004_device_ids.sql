-- Peerline supernode schema for PostgreSQL, version 4: device ids are random and never reused
-- (the SQLite backend's 0005).
--
-- Until now a device took the next value of an identity sequence, so its id counted every device
-- of the network. New devices now get a random id in [1, 2^53) (2^53: a JavaScript client holds
-- it exactly), drawn by the store, and every id ever issued is kept here for good, removed device
-- or not: the primary key refuses a second issue, also to supernodes of a cluster drawing at the
-- same moment.

CREATE TABLE issued_device_ids (
    id BIGINT PRIMARY KEY CHECK (id >= 1 AND id < 9007199254740992)
);

-- Existing devices keep their ids. The sequence handed out every id up to its last value (gaps
-- are removed devices), so all of them are retired.
DO $$
DECLARE
    last_issued BIGINT;
BEGIN
    EXECUTE format('SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM %s',
                   pg_get_serial_sequence('devices', 'id'))
        INTO last_issued;
    INSERT INTO issued_device_ids (id)
        SELECT generate_series(1, greatest(last_issued, (SELECT coalesce(max(id), 0) FROM devices)));
END
$$;

-- From now on the store always gives the id; every device's id is an issued one.
ALTER TABLE devices ALTER COLUMN id DROP IDENTITY;
ALTER TABLE devices ADD CONSTRAINT devices_id_issued
    FOREIGN KEY (id) REFERENCES issued_device_ids (id);
