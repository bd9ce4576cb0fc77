//! Instant messages: the offline queue, delivery and read receipts, history, retention.

use peerline_store::{MessageId, StoreResult, StoredMessage, TimestampMs, UserId};
use sqlx::sqlite::SqliteRow;
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::decode::{self, failed};

/// `SELECT` of the columns [`decode::message`] reads, with both usernames joined in; queries
/// append their `WHERE`. A macro so that `concat!` can build `&'static str` queries from it.
macro_rules! select_message {
    () => {
        "SELECT m.id, m.sender, f.username AS sender_name, m.recipient, \
                t.username AS recipient_name, m.text, m.sent_at, m.delivered_at, m.read_at \
         FROM messages m \
         JOIN accounts f ON f.id = m.sender \
         JOIN accounts t ON t.id = m.recipient "
    };
}

/// Decodes every row of a message select.
fn messages(rows: &[SqliteRow]) -> StoreResult<Vec<StoredMessage>> {
    rows.iter().map(decode::message).collect()
}

/// A JSON array of ids, bound as one parameter and read back with `json_each`: any number of ids
/// in one statement, without building SQL text from input.
pub(crate) fn id_list(ids: &[i64]) -> String {
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("[{}]", list.join(","))
}

/// Stores a message, not yet delivered or read.
pub(crate) async fn store(
    pool: &SqlitePool,
    from: UserId,
    to: UserId,
    text: &str,
    now: TimestampMs,
) -> StoreResult<StoredMessage> {
    let mut tx = pool.begin().await.map_err(failed("storing message"))?;
    let id: MessageId = sqlx::query_scalar(
        "INSERT INTO messages (sender, recipient, text, sent_at) VALUES (?, ?, ?, ?) RETURNING id",
    )
    .bind(from)
    .bind(to)
    .bind(text)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(failed("storing message"))?;
    // Read back in the same transaction for the joined usernames.
    let row = sqlx::query(concat!(select_message!(), "WHERE m.id = ?"))
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(failed("reading stored message"))?;
    let message = decode::message(&row)?;
    tx.commit().await.map_err(failed("storing message"))?;
    Ok(message)
}

/// Messages to `user` not yet delivered, oldest first.
pub(crate) async fn undelivered(
    pool: &SqlitePool,
    user: UserId,
    limit: u32,
) -> StoreResult<Vec<StoredMessage>> {
    let rows = sqlx::query(concat!(
        select_message!(),
        "WHERE m.recipient = ? AND m.delivered_at IS NULL ORDER BY m.id LIMIT ?"
    ))
    .bind(user)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(failed("listing undelivered messages"))?;
    messages(&rows)
}

/// Messages to `user` not yet read, oldest first.
pub(crate) async fn unread(
    pool: &SqlitePool,
    user: UserId,
    limit: u32,
) -> StoreResult<Vec<StoredMessage>> {
    let rows = sqlx::query(concat!(
        select_message!(),
        "WHERE m.recipient = ? AND m.read_at IS NULL ORDER BY m.id LIMIT ?"
    ))
    .bind(user)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(failed("listing unread messages"))?;
    messages(&rows)
}

/// Reads back, in the transaction that changed them, the messages whose ids an
/// `UPDATE ... RETURNING id` gave, oldest first.
async fn changed(
    tx: &mut Transaction<'_, Sqlite>,
    ids: &[MessageId],
    doing: &'static str,
) -> StoreResult<Vec<StoredMessage>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        select_message!(),
        "WHERE m.id IN (SELECT value FROM json_each(?)) ORDER BY m.id"
    ))
    .bind(id_list(ids))
    .fetch_all(&mut **tx)
    .await
    .map_err(failed(doing))?;
    messages(&rows)
}

/// Marks the recipient's messages delivered; returns those that were not delivered before.
pub(crate) async fn mark_delivered(
    pool: &SqlitePool,
    recipient: UserId,
    ids: &[MessageId],
    now: TimestampMs,
) -> StoreResult<Vec<StoredMessage>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin().await.map_err(failed("marking messages delivered"))?;
    let newly: Vec<MessageId> = sqlx::query_scalar(
        "UPDATE messages SET delivered_at = ?1
         WHERE recipient = ?2 AND delivered_at IS NULL
           AND id IN (SELECT value FROM json_each(?3))
         RETURNING id",
    )
    .bind(now)
    .bind(recipient)
    .bind(id_list(ids))
    .fetch_all(&mut *tx)
    .await
    .map_err(failed("marking messages delivered"))?;
    let changed = changed(&mut tx, &newly, "reading messages marked delivered").await?;
    tx.commit().await.map_err(failed("marking messages delivered"))?;
    Ok(changed)
}

/// Marks the recipient's messages read, and delivered where they were not; returns those that
/// were not read before.
pub(crate) async fn mark_read(
    pool: &SqlitePool,
    recipient: UserId,
    ids: &[MessageId],
    now: TimestampMs,
) -> StoreResult<Vec<StoredMessage>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin().await.map_err(failed("marking messages read"))?;
    let newly: Vec<MessageId> = sqlx::query_scalar(
        "UPDATE messages SET read_at = ?1, delivered_at = coalesce(delivered_at, ?1)
         WHERE recipient = ?2 AND read_at IS NULL
           AND id IN (SELECT value FROM json_each(?3))
         RETURNING id",
    )
    .bind(now)
    .bind(recipient)
    .bind(id_list(ids))
    .fetch_all(&mut *tx)
    .await
    .map_err(failed("marking messages read"))?;
    let changed = changed(&mut tx, &newly, "reading messages marked read").await?;
    tx.commit().await.map_err(failed("marking messages read"))?;
    Ok(changed)
}

/// The newest `limit` messages between `a` and `b` (either direction) with id below `before`,
/// returned oldest first.
pub(crate) async fn history(
    pool: &SqlitePool,
    a: UserId,
    b: UserId,
    limit: u32,
    before: Option<MessageId>,
) -> StoreResult<Vec<StoredMessage>> {
    let rows = sqlx::query(concat!(
        select_message!(),
        "WHERE ((m.sender = ?1 AND m.recipient = ?2) OR (m.sender = ?2 AND m.recipient = ?1))
           AND m.id < ?3
         ORDER BY m.id DESC
         LIMIT ?4"
    ))
    .bind(a)
    .bind(b)
    .bind(before.unwrap_or(MessageId::MAX))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(failed("reading conversation history"))?;
    let mut newest_first = messages(&rows)?;
    newest_first.reverse();
    Ok(newest_first)
}

/// Deletes messages stored before `cutoff`; returns how many.
pub(crate) async fn purge_before(pool: &SqlitePool, cutoff: TimestampMs) -> StoreResult<u64> {
    let done = sqlx::query("DELETE FROM messages WHERE sent_at < ?")
        .bind(cutoff)
        .execute(pool)
        .await
        .map_err(failed("purging old messages"))?;
    Ok(done.rows_affected())
}
