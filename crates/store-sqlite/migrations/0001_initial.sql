-- Peerline supernode schema, version 1.
--
-- Times are milliseconds since the Unix epoch, passed in by the caller. Tables are STRICT so a
-- value of the wrong type cannot be stored; CHECK constraints keep enum strings and key lengths
-- valid (the code still treats anything it cannot parse on read as corruption, not a panic).

CREATE TABLE accounts (
    id                 INTEGER PRIMARY KEY,
    -- Canonical lower-case username; NOCASE makes uniqueness (and lookups) case-insensitive.
    username           TEXT    NOT NULL COLLATE NOCASE,
    display_name       TEXT    NOT NULL,
    -- display_name lower-cased in Rust (SQLite's lower() folds ASCII only), for search.
    display_name_lower TEXT    NOT NULL,
    password_hash      TEXT    NOT NULL,
    status             TEXT    NOT NULL DEFAULT 'online'
                               CHECK (status IN ('online', 'away', 'busy', 'invisible')),
    discoverable       INTEGER NOT NULL DEFAULT 1 CHECK (discoverable IN (0, 1)),
    created_at         INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX accounts_username ON accounts (username COLLATE NOCASE);

CREATE TABLE devices (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    public_key   BLOB    NOT NULL CHECK (length(public_key) = 32),
    name         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
) STRICT;

-- One device per (account, key); the same key under another account is another device.
CREATE UNIQUE INDEX devices_user_key ON devices (user_id, public_key);

CREATE TABLE sessions (
    -- SHA-256 of the token; the token itself is never stored.
    token_hash BLOB    PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id    INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    device_id  INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_device ON sessions (device_id);

CREATE TABLE contacts (
    owner      INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    peer       INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    state      TEXT    NOT NULL CHECK (state IN ('accepted', 'incoming', 'outgoing', 'blocked')),
    message    TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (owner, peer)
) STRICT, WITHOUT ROWID;

CREATE TABLE messages (
    -- AUTOINCREMENT: ids are never reused, even after the newest messages are purged, so a
    -- client that remembers ids never confuses an old message with a new one.
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    sender       INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    recipient    INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    text         TEXT    NOT NULL,
    sent_at      INTEGER NOT NULL,
    delivered_at INTEGER,
    read_at      INTEGER
) STRICT;

-- Offline queue pushed at login, and the inbox: small partial indexes over the pending rows only.
CREATE INDEX messages_undelivered ON messages (recipient, id) WHERE delivered_at IS NULL;
CREATE INDEX messages_unread ON messages (recipient, id) WHERE read_at IS NULL;
-- Conversation history, one direction per index range (history ORs both directions).
CREATE INDEX messages_conversation ON messages (sender, recipient, id);
-- Retention purge.
CREATE INDEX messages_sent_at ON messages (sent_at);
