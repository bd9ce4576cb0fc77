-- Peerline supernode schema, version 6: call history.
--
-- One row per party of an ended call (caller and callee each get one when both are users here),
-- listed newest first and page by page, purged by retention.

CREATE TABLE call_log (
    -- AUTOINCREMENT: ids are never reused after a purge, so a page boundary a client remembers
    -- never skips or repeats a newer record.
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    owner       INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    peer        INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- The call's id from call setup; recording the same call twice keeps the first row.
    call_id     TEXT    NOT NULL,
    outgoing    INTEGER NOT NULL CHECK (outgoing IN (0, 1)),
    started_at  INTEGER NOT NULL,
    answered_at INTEGER,
    ended_at    INTEGER NOT NULL,
    end_reason  TEXT    NOT NULL,
    -- The media path the owner's client reported after the call, if it did.
    path        TEXT
) STRICT;

-- Idempotent recording, and set_call_path's lookup: one row per (owner, call).
CREATE UNIQUE INDEX call_log_owner_call ON call_log (owner, call_id);
-- The call log, newest first, page by page.
CREATE INDEX call_log_owner_id ON call_log (owner, id);
-- Missed calls only (incoming, never answered): a small partial index over those rows.
CREATE INDEX call_log_missed ON call_log (owner, id) WHERE outgoing = 0 AND answered_at IS NULL;
-- Retention purge.
CREATE INDEX call_log_ended_at ON call_log (ended_at);
