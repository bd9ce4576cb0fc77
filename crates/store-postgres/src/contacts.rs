//! Contact lists: one row per (owner, peer), each side of a pair written together, the changes of
//! a pair serialized across every process that shares the database.

use peerline_store::{
    ContactEntry, ContactLink, ContactRow, ContactSide, ContactStates, ContactVersion, StoreResult,
    TimestampMs, UserId,
};
use sqlx::{PgPool, Postgres, Transaction};

use crate::decode::{self, column};
use crate::error::failed;

/// Both rows of the pair, `(a about b, b about a)`, read in one statement (one snapshot).
pub(crate) async fn pair<'e, E>(
    executor: E,
    a: UserId,
    b: UserId,
) -> StoreResult<(Option<ContactRow>, Option<ContactRow>)>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let rows = sqlx::query(
        "SELECT owner, peer, state, message, updated_at, version FROM contacts
         WHERE (owner = $1 AND peer = $2) OR (owner = $2 AND peer = $1)",
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

/// The key of the pair's transaction-scoped advisory lock: the same for `(a, b)` and `(b, a)`.
///
/// PostgreSQL's two-key form (two `int4`s) keeps these locks apart from single-`bigint` advisory
/// locks (sqlx takes one while migrating). Each id keeps its low 32 bits: exact for the first
/// four billion accounts; beyond that two pairs may share a lock, which only makes their changes
/// wait for each other.
pub(crate) fn pair_lock_key(a: UserId, b: UserId) -> (i32, i32) {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    // Truncation is the point: see above.
    #[allow(clippy::cast_possible_truncation)]
    (low as i32, high as i32)
}

/// Writes `owner`'s row about `peer`, or deletes it for `None`.
async fn write_side(
    tx: &mut Transaction<'_, Postgres>,
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
                 VALUES ($1, $2, $3, $4, $5, $6)
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
            sqlx::query("DELETE FROM contacts WHERE owner = $1 AND peer = $2")
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
/// The transaction first takes the pair's advisory lock, which every change of the pair takes,
/// from any connection of any supernode; it is held until commit or rollback. So the rows read
/// after it are the result of every earlier change (each statement of a READ COMMITTED
/// transaction sees everything committed before it started), nobody changes them before this
/// commits, and the version taken after the lock is larger than that of any earlier change of the
/// pair.
pub(crate) async fn write_pair(
    pool: &PgPool,
    a: UserId,
    b: UserId,
    expected: Option<ContactStates>,
    (a_side, b_side): (ContactSide, ContactSide),
    now: TimestampMs,
) -> StoreResult<Option<ContactVersion>> {
    let mut tx = pool.begin().await.map_err(failed("writing contact pair"))?;
    let (key1, key2) = pair_lock_key(a, b);
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(key1)
        .bind(key2)
        .execute(&mut *tx)
        .await
        .map_err(failed("locking contact pair"))?;
    if let Some(expected) = expected {
        let (a_row, b_row) = pair(&mut *tx, a, b).await?;
        let state = |row: &Option<ContactRow>| row.as_ref().map(|r| r.state);
        if (state(&a_row), state(&b_row)) != expected {
            // Release the lock now rather than when the pool gets to the dropped transaction.
            // Nothing was written, so a failed rollback changes nothing about the answer.
            if let Err(e) = tx.rollback().await {
                tracing::debug!(error = %e, "rolling back a refused contact change");
            }
            return Ok(None);
        }
    }
    let version: ContactVersion = sqlx::query_scalar("SELECT nextval('contact_version')")
        .fetch_one(&mut *tx)
        .await
        .map_err(failed("numbering a contact change"))?;
    write_side(&mut tx, a, b, a_side, now, version).await?;
    write_side(&mut tx, b, a, b_side, now, version).await?;
    tx.commit().await.map_err(failed("writing contact pair"))?;
    Ok(Some(version))
}

/// A page of the owner's list, joined with each peer's names, ordered by username: the first
/// `limit` entries whose username sorts after `after` (bytewise, as the "C" collation of the
/// column orders them).
pub(crate) async fn list(
    pool: &PgPool,
    owner: UserId,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<ContactEntry>> {
    let rows = sqlx::query(
        "SELECT c.peer, a.username, a.display_name, c.state, c.message
         FROM contacts c JOIN accounts a ON a.id = c.peer
         WHERE c.owner = $1 AND ($2::text IS NULL OR a.username > $2)
         ORDER BY a.username
         LIMIT $3",
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

/// How many `incoming` rows the owner has, counted up to `limit`.
pub(crate) async fn incoming_requests(
    pool: &PgPool,
    owner: UserId,
    limit: u32,
) -> StoreResult<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (
             SELECT 1 FROM contacts WHERE owner = $1 AND state = 'incoming' LIMIT $2) AS pending",
    )
    .bind(owner)
    .bind(i64::from(limit))
    .fetch_one(pool)
    .await
    .map_err(failed("counting pending contact requests"))?;
    Ok(crate::messages::count(n))
}

/// Every peer with a row about or from the owner: mutual or not, and the newest version.
pub(crate) async fn links(pool: &PgPool, owner: UserId) -> StoreResult<Vec<ContactLink>> {
    let rows = sqlx::query(
        "SELECT peer, MAX(version) AS version,
                COUNT(*) FILTER (WHERE state = 'accepted') = 2 AS mutual
         FROM (SELECT peer, state, version FROM contacts WHERE owner = $1
               UNION ALL
               SELECT owner AS peer, state, version FROM contacts WHERE peer = $1) AS sides
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

#[cfg(test)]
mod tests {
    use super::pair_lock_key;

    #[test]
    fn pair_lock_key_ignores_the_order_of_the_pair() {
        assert_eq!(pair_lock_key(7, 3), (3, 7));
        assert_eq!(pair_lock_key(3, 7), (3, 7));
        assert_ne!(pair_lock_key(3, 7), pair_lock_key(3, 8));
        // Large ids wrap instead of panicking.
        assert_eq!(pair_lock_key(i64::MAX, 1), (1, -1));
    }
}
