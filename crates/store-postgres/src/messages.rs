//! Instant messages: the offline queue, delivery and read receipts, history, retention.
//!
//! Every write is one statement (a data-modifying `WITH` that also joins the usernames in), so it
//! commits on its own and needs one round trip.

use peerline_store::{
    MessageId, RecentSends, StoreResult, StoredMessage, TimestampMs, UndeliveredCounts, UserId,
};
use sqlx::PgPool;
use sqlx::postgres::PgRow;

use crate::decode;
use crate::error::failed;

/// `SELECT` of the columns [`decode::message`] reads from `$source` (the table, or the rows a
/// `WITH` clause changed) aliased `m`, with both usernames joined in; queries append their
/// `WHERE`. A macro so that `concat!` can build `&'static str` queries from it.
macro_rules! select_message {
    ($source:literal) => {
        concat!(
            "SELECT m.id, m.sender, f.username AS sender_name, m.recipient, \
                    t.username AS recipient_name, m.text, m.sent_at, m.delivered_at, m.read_at \
             FROM ",
            $source,
            " m \
             JOIN accounts f ON f.id = m.sender \
             JOIN accounts t ON t.id = m.recipient "
        )
    };
}

/// Every column of `messages`, for `RETURNING` into [`select_message!`].
macro_rules! message_columns {
    () => {
        "id, sender, recipient, text, sent_at, delivered_at, read_at"
    };
}

/// Decodes every row of a message select.
fn messages(rows: &[PgRow]) -> StoreResult<Vec<StoredMessage>> {
    rows.iter().map(decode::message).collect()
}

/// Stores a message, not yet delivered or read.
pub(crate) async fn store(
    pool: &PgPool,
    from: UserId,
    to: UserId,
    text: &str,
    now: TimestampMs,
) -> StoreResult<StoredMessage> {
    let row = sqlx::query(concat!(
        "WITH stored AS (
             INSERT INTO messages (sender, recipient, text, sent_at) VALUES ($1, $2, $3, $4)
             RETURNING ",
        message_columns!(),
        ") ",
        select_message!("stored")
    ))
    .bind(from)
    .bind(to)
    .bind(text)
    .bind(now)
    .fetch_one(pool)
    .await
    .map_err(failed("storing message"))?;
    decode::message(&row)
}

/// Messages to `user` not yet delivered with an id above `after`, oldest first.
pub(crate) async fn undelivered(
    pool: &PgPool,
    user: UserId,
    after: Option<MessageId>,
    limit: u32,
) -> StoreResult<Vec<StoredMessage>> {
    let rows = sqlx::query(concat!(
        select_message!("messages"),
        "WHERE m.recipient = $1 AND m.delivered_at IS NULL AND m.id > $2 ORDER BY m.id LIMIT $3"
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
    pool: &PgPool,
    user: UserId,
    after: Option<MessageId>,
    limit: u32,
) -> StoreResult<Vec<StoredMessage>> {
    let rows = sqlx::query(concat!(
        select_message!("messages"),
        "WHERE m.recipient = $1 AND m.read_at IS NULL AND m.id > $2 ORDER BY m.id LIMIT $3"
    ))
    .bind(user)
    .bind(after.unwrap_or(0))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(failed("listing unread messages"))?;
    messages(&rows)
}

/// Marks the recipient's messages delivered; returns those that were not delivered before.
///
/// Two concurrent calls for the same message cannot both return it: the second waits for the
/// first's row lock, then finds `delivered_at` set and skips the row.
pub(crate) async fn mark_delivered(
    pool: &PgPool,
    recipient: UserId,
    ids: &[MessageId],
    now: TimestampMs,
) -> StoreResult<Vec<StoredMessage>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        "WITH changed AS (
             UPDATE messages SET delivered_at = $1
             WHERE recipient = $2 AND delivered_at IS NULL AND id = ANY($3)
             RETURNING ",
        message_columns!(),
        ") ",
        select_message!("changed"),
        "ORDER BY m.id"
    ))
    .bind(now)
    .bind(recipient)
    .bind(ids)
    .fetch_all(pool)
    .await
    .map_err(failed("marking messages delivered"))?;
    messages(&rows)
}

/// Marks the recipient's messages read, and delivered where they were not; returns those that
/// were not read before.
pub(crate) async fn mark_read(
    pool: &PgPool,
    recipient: UserId,
    ids: &[MessageId],
    now: TimestampMs,
) -> StoreResult<Vec<StoredMessage>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        "WITH changed AS (
             UPDATE messages SET read_at = $1, delivered_at = coalesce(delivered_at, $1)
             WHERE recipient = $2 AND read_at IS NULL AND id = ANY($3)
             RETURNING ",
        message_columns!(),
        ") ",
        select_message!("changed"),
        "ORDER BY m.id"
    ))
    .bind(now)
    .bind(recipient)
    .bind(ids)
    .fetch_all(pool)
    .await
    .map_err(failed("marking messages read"))?;
    messages(&rows)
}

/// The newest `limit` messages between `a` and `b` (either direction) with id below `before`,
/// returned oldest first.
pub(crate) async fn history(
    pool: &PgPool,
    a: UserId,
    b: UserId,
    limit: u32,
    before: Option<MessageId>,
) -> StoreResult<Vec<StoredMessage>> {
    let rows = sqlx::query(concat!(
        select_message!("messages"),
        "WHERE ((m.sender = $1 AND m.recipient = $2) OR (m.sender = $2 AND m.recipient = $1))
           AND m.id < $3
         ORDER BY m.id DESC
         LIMIT $4"
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

/// Undelivered messages to `to`: from `from`, and from anyone, each counted up to `limit`
/// (from the partial indexes over pending rows).
pub(crate) async fn undelivered_counts(
    pool: &PgPool,
    from: UserId,
    to: UserId,
    limit: u32,
) -> StoreResult<UndeliveredCounts> {
    let (from_sender, total): (i64, i64) = sqlx::query_as(
        "SELECT
             (SELECT COUNT(*) FROM (SELECT 1 FROM messages
                  WHERE recipient = $1 AND sender = $2 AND delivered_at IS NULL LIMIT $3) AS p),
             (SELECT COUNT(*) FROM (SELECT 1 FROM messages
                  WHERE recipient = $1 AND delivered_at IS NULL LIMIT $3) AS t)",
    )
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
    pool: &PgPool,
    from: UserId,
    since: TimestampMs,
    limit: u32,
) -> StoreResult<RecentSends> {
    let (counted, oldest): (i64, Option<TimestampMs>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(sent_at) FROM (
             SELECT sent_at FROM messages WHERE sender = $1 AND sent_at >= $2
             ORDER BY sent_at DESC LIMIT $3) AS recent",
    )
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

/// Deletes the oldest (at most `$2`) messages stored before `$1`.
pub(crate) const PURGE: &str = "DELETE FROM messages WHERE id IN (
     SELECT id FROM messages WHERE sent_at < $1 ORDER BY sent_at LIMIT $2
     FOR UPDATE SKIP LOCKED)";
