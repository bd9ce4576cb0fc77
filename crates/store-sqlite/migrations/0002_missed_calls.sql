-- Peerline supernode schema, version 2: missed calls.
--
-- A call that rang a user and was not answered is kept here until one of the callee's devices
-- acknowledges it (after which it only waits for the retention purge).

CREATE TABLE missed_calls (
    -- AUTOINCREMENT: ids are never reused after a purge, so a client acknowledging an id it
    -- remembers can never acknowledge a newer call by mistake.
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    callee  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    caller  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- The call's id from call setup; recording the same call twice keeps the first row.
    call_id TEXT    NOT NULL,
    at      INTEGER NOT NULL,
    acked   INTEGER NOT NULL DEFAULT 0 CHECK (acked IN (0, 1))
) STRICT;

-- Idempotent recording: one row per (callee, call).
CREATE UNIQUE INDEX missed_calls_callee_call ON missed_calls (callee, call_id);
-- Missed calls pushed at login: a small partial index over the unacknowledged rows only, in the
-- order they are listed.
CREATE INDEX missed_calls_unacked ON missed_calls (callee, at, id) WHERE acked = 0;
-- Retention purge.
CREATE INDEX missed_calls_at ON missed_calls (at);
