//! Contact lists: one row per (owner, peer), each side of a pair written together.

use peerline_store::{ContactEntry, ContactRow, ContactSide, StoreResult, TimestampMs, UserId};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::decode::{self, column, failed};

/// Both rows of the pair, `(a about b, b about a)`, read in one statement (one snapshot).
pub(crate) async fn pair(
    pool: &SqlitePool,
    a: UserId,
    b: UserId,
) -> StoreResult<(Option<ContactRow>, Option<ContactRow>)> {
    let rows = sqlx::query(
        "SELECT owner, peer, state, message, updated_at FROM contacts
         WHERE (owner = ?1 AND peer = ?2) OR (owner = ?2 AND peer = ?1)",
    )
    .bind(a)
    .bind(b)
    .fetch_all(pool)
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
) -> StoreResult<()> {
    match side {
        Some((state, message)) => {
            sqlx::query(
                "INSERT INTO contacts (owner, peer, state, message, updated_at)
                 VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (owner, peer) DO UPDATE SET
                     state = excluded.state,
                     message = excluded.message,
                     updated_at = excluded.updated_at",
            )
            .bind(owner)
            .bind(peer)
            .bind(state.as_str())
            .bind(message)
            .bind(now)
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

/// Writes both sides of the pair in one transaction.
pub(crate) async fn write_pair(
    pool: &SqlitePool,
    a: UserId,
    b: UserId,
    a_side: ContactSide,
    b_side: ContactSide,
    now: TimestampMs,
) -> StoreResult<()> {
    let mut tx = pool.begin().await.map_err(failed("writing contact pair"))?;
    write_side(&mut tx, a, b, a_side, now).await?;
    write_side(&mut tx, b, a, b_side, now).await?;
    tx.commit().await.map_err(failed("writing contact pair"))
}

/// The owner's list, joined with each peer's names, ordered by username.
pub(crate) async fn list(pool: &SqlitePool, owner: UserId) -> StoreResult<Vec<ContactEntry>> {
    let rows = sqlx::query(
        "SELECT c.peer, a.username, a.display_name, c.state, c.message
         FROM contacts c JOIN accounts a ON a.id = c.peer
         WHERE c.owner = ?
         ORDER BY a.username",
    )
    .bind(owner)
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

/// Peers with an accepted row on both sides, by id.
pub(crate) async fn mutual(pool: &SqlitePool, owner: UserId) -> StoreResult<Vec<UserId>> {
    sqlx::query_scalar(
        "SELECT mine.peer FROM contacts mine
         JOIN contacts theirs ON theirs.owner = mine.peer AND theirs.peer = mine.owner
         WHERE mine.owner = ? AND mine.state = 'accepted' AND theirs.state = 'accepted'
         ORDER BY mine.peer",
    )
    .bind(owner)
    .fetch_all(pool)
    .await
    .map_err(failed("listing mutual contacts"))
}
