//! Instant messages: the offline queue, delivery and read receipts, history, retention.

use peerline_store::{
    MessageId, RecentSends, StoreResult, StoredMessage, TimestampMs, UndeliveredCounts, UserId,
};
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

/// Messages to `user` not yet delivered with an id above `after`, oldest first.
pub(crate) async fn undelivered(
    pool: &SqlitePool,
    user: UserId,
    after: Option<MessageId>,
    limit: u32,
) -> StoreResult<Vec<StoredMessage>> {
    let rows = sqlx::query(concat!(
        select_message!(),
        "WHERE m.recipient = ? AND m.delivered_at IS NULL AND m.id > ? ORDER BY m.id LIMIT ?"
    ))
    .bind(user)
    .bind(after.unwrap_or(0))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(failed("listing undelivered messages"))?;
    messages(&rows)
}

/// Messages to `user` not yet read with an id above `after`, oldest first.
pub(crate) async fn unread(
    pool: &SqlitePool,
    user: UserId,
    after: Option<MessageId>,
    limit: u32,
) -> StoreResult<Vec<StoredMessage>> {
    let rows = sqlx::query(concat!(
        select_message!(),
        "WHERE m.recipient = ? AND m.read_at IS NULL AND m.id > ? ORDER BY m.id LIMIT ?"
    ))
    .bind(user)
    .bind(after.unwrap_or(0))
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

/// Counts a recipient's (`?1`) undelivered messages from one sender (`?2`) and from anyone, each
/// up to `?3`: from the partial indexes over pending rows.
pub(crate) const UNDELIVERED_COUNTS: &str = "SELECT
     (SELECT COUNT(*) FROM (SELECT 1 FROM messages
          WHERE recipient = ?1 AND sender = ?2 AND delivered_at IS NULL LIMIT ?3)),
     (SELECT COUNT(*) FROM (SELECT 1 FROM messages
          WHERE recipient = ?1 AND delivered_at IS NULL LIMIT ?3))";

/// The newest (at most `?3`) messages of a sender (`?1`) stored at or after `?2`: how many, and
/// the oldest one's time.
pub(crate) const RECENT_SENDS: &str = "SELECT COUNT(*), MIN(sent_at) FROM (
     SELECT sent_at FROM messages WHERE sender = ? AND sent_at >= ?
     ORDER BY sent_at DESC LIMIT ?)";

/// Deletes the oldest (at most `?2`) messages stored before `?1`.
pub(crate) const PURGE: &str = "DELETE FROM messages WHERE id IN (
     SELECT id FROM messages WHERE sent_at < ? ORDER BY sent_at LIMIT ?)";

/// Undelivered messages to `to`: from `from`, and from anyone, each counted up to `limit`.
pub(crate) async fn undelivered_counts(
    pool: &SqlitePool,
    from: UserId,
    to: UserId,
    limit: u32,
) -> StoreResult<UndeliveredCounts> {
    let (from_sender, total): (i64, i64) = sqlx::query_as(UNDELIVERED_COUNTS)
        .bind(to)
        .bind(from)
        .bind(i64::from(limit))
        .fetch_one(pool)
        .await
        .map_err(failed("counting undelivered messages"))?;
    Ok(UndeliveredCounts { from_sender: count(from_sender), total: count(total) })
}

/// The newest messages of `from` stored at or after `since`, at most `limit`: how many, and the
/// oldest one's time.
pub(crate) async fn recent_sends(
    pool: &SqlitePool,
    from: UserId,
    since: TimestampMs,
    limit: u32,
) -> StoreResult<RecentSends> {
    let (counted, oldest): (i64, Option<TimestampMs>) = sqlx::query_as(RECENT_SENDS)
        .bind(from)
        .bind(since)
        .bind(i64::from(limit))
        .fetch_one(pool)
        .await
        .map_err(failed("counting recent messages"))?;
    Ok(RecentSends { count: count(counted), oldest })
}

/// A `COUNT(*)`, which is never negative.
pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use crate::SqliteStore;

    /// The budget checks run at every send, login or contact request, and the purges in
    /// batches: each must be served by its index (no table scan, no sort), or its cost would
    /// grow with the table.
    #[tokio::test]
    async fn budget_counts_and_purges_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("peerline.db")).await.unwrap();
        let cases = [
            (super::UNDELIVERED_COUNTS, "messages_undelivered_sender"),
            (super::RECENT_SENDS, "messages_sender_sent_at"),
            (super::PURGE, "messages_sent_at"),
            (crate::contacts::INCOMING_REQUESTS, "contacts_incoming"),
            (crate::devices::PURGE_EXPIRED_SESSIONS, "sessions_expires_at"),
            (crate::missed_calls::PURGE, "missed_calls_at"),
        ];
        for (query, index) in cases {
            let plan: Vec<(i64, i64, i64, String)> =
                // Only this test's own constants go into the text.
                sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {query}")))
                    .bind(1_i64)
                    .bind(2_i64)
                    .bind(3_i64)
                    .fetch_all(&store.reader)
                    .await
                    .unwrap();
            let detail: Vec<String> = plan.into_iter().map(|(_, _, _, d)| d).collect();
            let shown = format!("{query}\n{detail:#?}");
            assert!(detail.iter().any(|d| d.contains(index)), "should use {index}: {shown}");
            assert!(!detail.iter().any(|d| d.contains("TEMP B-TREE")), "no sort step: {shown}");
            let tables = ["messages", "contacts", "sessions", "missed_calls"];
            let scans_a_table = |d: &String| {
                tables.iter().any(|t| d.starts_with(&format!("SCAN {t}")) && !d.contains("INDEX"))
            };
            assert!(!detail.iter().any(scans_a_table), "no table scan: {shown}");
        }
        store.close().await;
    }
}
