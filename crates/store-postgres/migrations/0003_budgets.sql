-- Peerline supernode schema for PostgreSQL, version 3: indexes for the per-account budgets and
-- the batched purges (the SQLite backend's 0004), so that each check reads only the few rows it
-- counts.
--
-- Plain CREATE INDEX: migrations run in a transaction, where CONCURRENTLY is not allowed. It
-- blocks writes to the table while it builds; on a large existing database, create these
-- indexes CONCURRENTLY by hand first (same names), and this migration then finds them.

-- The send rate counts a sender's messages of the last minute and day.
CREATE INDEX IF NOT EXISTS messages_sender_sent_at ON messages (sender, sent_at);
-- The mailbox cap counts a recipient's undelivered messages per sender: a small partial index
-- over the pending rows only (the total per recipient uses messages_undelivered).
CREATE INDEX IF NOT EXISTS messages_undelivered_sender ON messages (recipient, sender)
    WHERE delivered_at IS NULL;
-- The cap on pending contact requests counts a user's incoming rows.
CREATE INDEX IF NOT EXISTS contacts_incoming ON contacts (owner) WHERE state = 'incoming';
-- Expired sessions are purged in batches, oldest first.
CREATE INDEX IF NOT EXISTS sessions_expires_at ON sessions (expires_at);
