//! Contact lists: one row per (owner, peer), each side of a pair written together.

use peerline_store::{
    ContactEntry, ContactLink, ContactRow, ContactSide, ContactStates, ContactVersion, StoreResult,
    TimestampMs, UserId,
};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::decode::{self, column, failed};

/// Both rows of the pair, `(a about b, b about a)`, read in one statement (one snapshot).
pub(crate) async fn pair<'e, E>(
    executor: E,
    a: UserId,
    b: UserId,
) -> StoreResult<(Option<ContactRow>, Option<ContactRow>)>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let rows = sqlx::query(
        "SELECT owner, peer, state, message, updated_at, version FROM contacts
         WHERE (owner = ?1 AND peer = ?2) OR (owner = ?2 AND peer = ?1)",
    )
    .bind(a)
    .bind(b)
    .fetch_all(executor)
    .await
    .map_err(failed("reading contact pair"))?;
    let (mut a_row, mut b_row) = (None, None);
    for row in &rows {
        let contact = ContactRow {
            owner: column(row, "contacts", "owner")?,
            peer: column(row, "contacts", "peer")?,
            state: decode::contact_state(row)?,
            message: column(row, "contacts", "message")?,
            updated_at: column(row, "contacts", "updated_at")?,
            version: column(row, "contacts", "version")?,
        };
        if contact.owner == a && contact.peer == b {
            a_row = Some(contact.clone());
        }
        if contact.owner == b && contact.peer == a {
            b_row = Some(contact);
        }
    }
    Ok((a_row, b_row))
}

/// Writes `owner`'s row about `peer`, or deletes it for `None`.
async fn write_side(
    tx: &mut Transaction<'_, Sqlite>,
    owner: UserId,
    peer: UserId,
    side: ContactSide,
    now: TimestampMs,
    version: ContactVersion,
) -> StoreResult<()> {
    match side {
        Some((state, message)) => {
            sqlx::query(
                "INSERT INTO contacts (owner, peer, state, message, updated_at, version)
                 VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT (owner, peer) DO UPDATE SET
                     state = excluded.state,
                     message = excluded.message,
                     updated_at = excluded.updated_at,
                     version = excluded.version",
            )
            .bind(owner)
            .bind(peer)
            .bind(state.as_str())
            .bind(message)
            .bind(now)
            .bind(version)
            .execute(&mut **tx)
            .await
            .map_err(failed("writing contact"))?;
        }
        None => {
            sqlx::query("DELETE FROM contacts WHERE owner = ? AND peer = ?")
                .bind(owner)
                .bind(peer)
                .execute(&mut **tx)
                .await
                .map_err(failed("deleting contact"))?;
        }
    }
    Ok(())
}

/// Writes both sides of the pair in one transaction, if they are in the `expected` states (any
/// states without `expected`); returns the change's version, or `None` if a row changed.
///
/// The writer pool has one connection, so the read, the comparison and the write run with no
/// other write in between.
pub(crate) async fn write_pair(
    pool: &SqlitePool,
    a: UserId,
    b: UserId,
    expected: Option<ContactStates>,
    (a_side, b_side): (ContactSide, ContactSide),
    now: TimestampMs,
) -> StoreResult<Option<ContactVersion>> {
    let mut tx = pool.begin().await.map_err(failed("writing contact pair"))?;
    if let Some(expected) = expected {
        let (a_row, b_row) = pair(&mut *tx, a, b).await?;
        let state = |row: &Option<ContactRow>| row.as_ref().map(|r| r.state);
        if (state(&a_row), state(&b_row)) != expected {
            return Ok(None);
        }
    }
    let version: ContactVersion =
        sqlx::query_scalar("UPDATE contact_version SET value = value + 1 RETURNING value")
            .fetch_one(&mut *tx)
            .await
            .map_err(failed("numbering a contact change"))?;
    write_side(&mut tx, a, b, a_side, now, version).await?;
    write_side(&mut tx, b, a, b_side, now, version).await?;
    tx.commit().await.map_err(failed("writing contact pair"))?;
    Ok(Some(version))
}

/// A page of the owner's list, joined with each peer's names, ordered by username: the first
/// `limit` entries whose username sorts after `after`.
pub(crate) async fn list(
    pool: &SqlitePool,
    owner: UserId,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<ContactEntry>> {
    let rows = sqlx::query(
        "SELECT c.peer, a.username, a.display_name, c.state, c.message
         FROM contacts c JOIN accounts a ON a.id = c.peer
         WHERE c.owner = ?1 AND (?2 IS NULL OR a.username > ?2)
         ORDER BY a.username
         LIMIT ?3",
    )
    .bind(owner)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(failed("listing contacts"))?;
    rows.iter()
        .map(|row| {
            Ok(ContactEntry {
                peer: column(row, "contacts", "peer")?,
                username: column(row, "accounts", "username")?,
                display_name: column(row, "accounts", "display_name")?,
                state: decode::contact_state(row)?,
                message: column(row, "contacts", "message")?,
            })
        })
        .collect()
}

/// Counts the `incoming` rows of an owner (`?1`), up to `?2`.
pub(crate) const INCOMING_REQUESTS: &str = "SELECT COUNT(*) FROM (
     SELECT 1 FROM contacts WHERE owner = ? AND state = 'incoming' LIMIT ?)";

/// How many `incoming` rows the owner has, counted up to `limit`.
pub(crate) async fn incoming_requests(
    pool: &SqlitePool,
    owner: UserId,
    limit: u32,
) -> StoreResult<u64> {
    let n: i64 = sqlx::query_scalar(INCOMING_REQUESTS)
        .bind(owner)
        .bind(i64::from(limit))
        .fetch_one(pool)
        .await
        .map_err(failed("counting pending contact requests"))?;
    Ok(crate::messages::count(n))
}

/// Every peer with a row about or from the owner: mutual or not, and the newest version.
pub(crate) async fn links(pool: &SqlitePool, owner: UserId) -> StoreResult<Vec<ContactLink>> {
    let rows = sqlx::query(
        "SELECT peer, MAX(version) AS version,
                SUM(state = 'accepted') = 2 AS mutual
         FROM (SELECT peer, state, version FROM contacts WHERE owner = ?1
               UNION ALL
               SELECT owner AS peer, state, version FROM contacts WHERE peer = ?1)
         GROUP BY peer
         ORDER BY peer",
    )
    .bind(owner)
    .fetch_all(pool)
    .await
    .map_err(failed("listing contact links"))?;
    rows.iter()
        .map(|row| {
            Ok(ContactLink {
                peer: column(row, "contacts", "peer")?,
                mutual: column(row, "contacts", "mutual")?,
                version: column(row, "contacts", "version")?,
            })
        })
        .collect()
}
