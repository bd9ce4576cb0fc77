-- Peerline supernode schema for PostgreSQL, version 5: call history (the SQLite backend's 0006).
--
-- One row per party of an ended call (caller and callee each get one when both are users here),
-- listed newest first and page by page, purged by retention.

CREATE TABLE call_log (
    -- An identity never hands out a value twice: ids are not reused after a purge, so a page
    -- boundary a client remembers never skips or repeats a newer record.
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner       BIGINT  NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    peer        BIGINT  NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- The call's id from call setup; recording the same call twice keeps the first row.
    call_id     TEXT    NOT NULL,
    outgoing    BOOLEAN NOT NULL,
    started_at  BIGINT  NOT NULL,
    answered_at BIGINT,
    ended_at    BIGINT  NOT NULL,
    end_reason  TEXT    NOT NULL,
    -- The media path the owner's client reported after the call, if it did.
    path        TEXT,
    -- Idempotent recording, and set_call_path's lookup: one row per (owner, call).
    CONSTRAINT call_log_owner_call UNIQUE (owner, call_id)
);

-- The call log, newest first, page by page.
CREATE INDEX call_log_owner_id ON call_log (owner, id);
-- Missed calls only (incoming, never answered): a small partial index over those rows.
CREATE INDEX call_log_missed ON call_log (owner, id) WHERE NOT outgoing AND answered_at IS NULL;
-- Retention purge.
CREATE INDEX call_log_ended_at ON call_log (ended_at);
