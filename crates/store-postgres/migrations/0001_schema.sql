-- Peerline supernode schema for PostgreSQL, version 1: the tables of the SQLite backend
-- (crates/store-sqlite/migrations 0001-0003) in PostgreSQL's types.
--
-- Times are milliseconds since the Unix epoch, passed in by the caller. CHECK constraints keep
-- enum strings and key lengths valid (the code still treats anything it cannot parse on read as
-- corruption, not a panic). Ids come from identity sequences, which never hand out a value twice:
-- ids are never reused, even after the newest rows are purged.

CREATE TABLE accounts (
    id                 BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The canonical username, ASCII lower-case: the store folds every name it writes or looks
    -- up (as the SQLite backend's NOCASE column does), so the unique constraint below is what
    -- makes names unique regardless of case; no lower() or collation is involved. COLLATE "C":
    -- bytewise comparison whatever the database's locale, so names sort as on SQLite and the
    -- prefix range of the directory search is exact and served by the unique index.
    username           TEXT    COLLATE "C" NOT NULL CHECK (username !~ '[A-Z]'),
    display_name       TEXT    NOT NULL,
    -- display_name lower-cased in Rust (full Unicode folding, the same on both backends; lower()
    -- here would depend on the database's LC_CTYPE), for search.
    display_name_lower TEXT    NOT NULL,
    password_hash      TEXT    NOT NULL,
    status             TEXT    NOT NULL DEFAULT 'online'
                               CHECK (status IN ('online', 'away', 'busy', 'invisible')),
    discoverable       BOOLEAN NOT NULL DEFAULT TRUE,
    created_at         BIGINT  NOT NULL,
    -- The store maps a violation of this constraint (by name) to "username already taken".
    CONSTRAINT accounts_username_key UNIQUE (username)
);

CREATE TABLE devices (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    public_key   BYTEA  NOT NULL CHECK (octet_length(public_key) = 32),
    name         TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    -- One device per (account, key); the same key under another account is another device.
    CONSTRAINT devices_user_key UNIQUE (user_id, public_key)
);

CREATE TABLE sessions (
    -- SHA-256 of the token; the token itself is never stored.
    token_hash BYTEA  PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    user_id    BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    device_id  BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL
);

CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_device ON sessions (device_id);

CREATE TABLE contacts (
    owner      BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    peer       BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    state      TEXT   NOT NULL CHECK (state IN ('accepted', 'incoming', 'outgoing', 'blocked')),
    message    TEXT,
    updated_at BIGINT NOT NULL,
    -- The change of the pair that wrote the row (from contact_version).
    version    BIGINT NOT NULL,
    PRIMARY KEY (owner, peer)
);

-- contact_links reads the rows others have about a user.
CREATE INDEX contacts_peer ON contacts (peer);

-- Contact changes are ordered: every write of a pair takes the next value, kept in both rows.
-- CACHE 1 (no per-session preallocation), so values are handed out in the order nextval() is
-- called across all connections and processes: a change that takes its value after another
-- change's commit always gets a larger one.
CREATE SEQUENCE contact_version AS BIGINT CACHE 1;

CREATE TABLE messages (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sender       BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    recipient    BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    text         TEXT   NOT NULL,
    sent_at      BIGINT NOT NULL,
    delivered_at BIGINT,
    read_at      BIGINT
);

-- Offline queue pushed at login, and the inbox: small partial indexes over the pending rows only.
CREATE INDEX messages_undelivered ON messages (recipient, id) WHERE delivered_at IS NULL;
CREATE INDEX messages_unread ON messages (recipient, id) WHERE read_at IS NULL;
-- Conversation history, one direction per index range (history ORs both directions).
CREATE INDEX messages_conversation ON messages (sender, recipient, id);
-- Retention purge.
CREATE INDEX messages_sent_at ON messages (sent_at);

-- A call that rang a user and was not answered, kept until one of the callee's devices
-- acknowledges it (after which it only waits for the retention purge).
CREATE TABLE missed_calls (
    id      BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    callee  BIGINT  NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    caller  BIGINT  NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- The call's id from call setup; recording the same call twice keeps the first row.
    call_id TEXT    NOT NULL,
    at      BIGINT  NOT NULL,
    acked   BOOLEAN NOT NULL DEFAULT FALSE,
    -- Idempotent recording: one row per (callee, call).
    CONSTRAINT missed_calls_callee_call UNIQUE (callee, call_id)
);

-- Missed calls pushed at login: a small partial index over the unacknowledged rows only, in the
-- order they are listed.
CREATE INDEX missed_calls_unacked ON missed_calls (callee, at, id) WHERE NOT acked;
-- Retention purge.
CREATE INDEX missed_calls_at ON missed_calls (at);
