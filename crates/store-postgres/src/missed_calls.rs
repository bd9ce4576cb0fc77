//! Missed calls: recorded when a call rings out unanswered, pushed to the callee's devices until
//! one acknowledges them, purged by retention.

use peerline_store::{StoreResult, StoredMissedCall, TimestampMs, UserId};
use sqlx::PgPool;

use crate::decode;
use crate::error::failed;

/// `SELECT` of the columns [`decode::missed_call`] reads from `$source` (the table, or the row a
/// `WITH` clause wrote) aliased `c`, with the caller's username joined in; queries append their
/// `WHERE`. A macro so that `concat!` can build `&'static str` queries.
macro_rules! select_missed_call {
    ($source:literal) => {
        concat!(
            "SELECT c.id, c.call_id, c.caller, f.username AS caller_name, c.callee, c.at FROM ",
            $source,
            " c JOIN accounts f ON f.id = c.caller "
        )
    };
}

/// Records a missed call, or returns the row already recorded for (callee, call_id) unchanged.
///
/// One statement: `DO UPDATE` of the call id to itself changes nothing in the existing row but,
/// unlike `DO NOTHING`, returns it, also when another supernode recorded it a moment ago (the
/// statement waits for that insert to commit). A separate read-back could miss a row that a
/// concurrent purge deleted in between.
pub(crate) async fn record(
    pool: &PgPool,
    callee: UserId,
    caller: UserId,
    call_id: &str,
    at: TimestampMs,
) -> StoreResult<StoredMissedCall> {
    let row = sqlx::query(concat!(
        "WITH recorded AS (
             INSERT INTO missed_calls (callee, caller, call_id, at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (callee, call_id) DO UPDATE SET call_id = excluded.call_id
             RETURNING id, call_id, caller, callee, at) ",
        select_missed_call!("recorded")
    ))
    .bind(callee)
    .bind(caller)
    .bind(call_id)
    .bind(at)
    .fetch_one(pool)
    .await
    .map_err(failed("recording missed call"))?;
    decode::missed_call(&row)
}

/// The callee's unacknowledged missed calls, oldest first.
pub(crate) async fn undelivered(
    pool: &PgPool,
    callee: UserId,
    limit: u32,
) -> StoreResult<Vec<StoredMissedCall>> {
    let rows = sqlx::query(concat!(
        select_missed_call!("missed_calls"),
        "WHERE c.callee = $1 AND NOT c.acked ORDER BY c.at, c.id LIMIT $2"
    ))
    .bind(callee)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(failed("listing missed calls"))?;
    rows.iter().map(decode::missed_call).collect()
}

/// Acknowledges the callee's missed calls among `ids`; returns how many were not acknowledged
/// before. One statement, so it commits on its own.
pub(crate) async fn ack(pool: &PgPool, callee: UserId, ids: &[i64]) -> StoreResult<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "UPDATE missed_calls SET acked = TRUE
         WHERE callee = $1 AND NOT acked AND id = ANY($2)",
    )
    .bind(callee)
    .bind(ids)
    .execute(pool)
    .await
    .map_err(failed("acknowledging missed calls"))?;
    Ok(done.rows_affected())
}

/// Deletes the oldest (at most `$2`) missed calls that rang before `$1`.
pub(crate) const PURGE: &str = "DELETE FROM missed_calls WHERE id IN (
     SELECT id FROM missed_calls WHERE at < $1 ORDER BY at LIMIT $2
     FOR UPDATE SKIP LOCKED)";
