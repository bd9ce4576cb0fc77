-- Peerline supernode schema, version 4: indexes for the per-account budgets and the batched
-- purges, so that each check reads only the few rows it counts.

-- The send rate counts a sender's messages of the last minute and day.
CREATE INDEX messages_sender_sent_at ON messages (sender, sent_at);
-- The mailbox cap counts a recipient's undelivered messages per sender: a small partial index
-- over the pending rows only (the total per recipient uses messages_undelivered).
CREATE INDEX messages_undelivered_sender ON messages (recipient, sender)
    WHERE delivered_at IS NULL;
-- The cap on pending contact requests counts a user's incoming rows.
CREATE INDEX contacts_incoming ON contacts (owner) WHERE state = 'incoming';
-- Expired sessions are purged in batches, oldest first.
CREATE INDEX sessions_expires_at ON sessions (expires_at);
