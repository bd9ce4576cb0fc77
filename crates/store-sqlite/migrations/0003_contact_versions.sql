-- Contact changes are ordered: every write of a pair takes the next value of one counter, kept
-- in both rows, so that listeners that hear of changes out of order keep the newest.
ALTER TABLE contacts ADD COLUMN version INTEGER NOT NULL DEFAULT 0;

CREATE TABLE contact_version (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
) STRICT;
INSERT INTO contact_version (id, value) VALUES (1, 0);

-- contact_links reads the rows others have about a user.
CREATE INDEX contacts_peer ON contacts (peer);
