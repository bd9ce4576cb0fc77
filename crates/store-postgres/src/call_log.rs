//! Call history: one record per party of an ended call, listed newest first page by page, with
//! the media path the client reports afterwards, purged by retention.

use peerline_store::{CallRecord, NewCallRecord, StoreResult, UserId};
use sqlx::PgPool;

use crate::decode;
use crate::error::failed;

/// `SELECT` of the columns [`decode::call_record`] reads, with the peer's username joined in;
/// queries append their `WHERE`. A macro so that `concat!` can build `&'static str` queries.
macro_rules! select_call {
    () => {
        "SELECT c.id, c.call_id, c.peer, p.username AS peer_name, c.outgoing, c.started_at, \
         c.answered_at, c.ended_at, c.end_reason, c.path \
         FROM call_log c \
         JOIN accounts p ON p.id = c.peer "
    };
}

/// The owner's records below an id (`$2`; the largest id when NULL), newest first.
const LOG: &str = concat!(
    select_call!(),
    "WHERE c.owner = $1 AND c.id < coalesce($2, 9223372036854775807) ORDER BY c.id DESC LIMIT $3"
);

/// As [`LOG`], incoming calls never answered only (served by the partial index `call_log_missed`).
const MISSED: &str = concat!(
    select_call!(),
    "WHERE c.owner = $1 AND NOT c.outgoing AND c.answered_at IS NULL \
     AND c.id < coalesce($2, 9223372036854775807) ORDER BY c.id DESC LIMIT $3"
);

/// Records an ended call for its owner, or returns the id of the record already there for
/// (owner, call_id), unchanged.
///
/// One statement: `DO UPDATE` of the call id to itself changes nothing in the existing row but,
/// unlike `DO NOTHING`, returns it, also when another supernode recorded it a moment ago (the
/// statement waits for that insert to commit).
pub(crate) async fn record(pool: &PgPool, record: NewCallRecord) -> StoreResult<i64> {
    sqlx::query_scalar(
        "INSERT INTO call_log (owner, peer, call_id, outgoing, started_at, answered_at, ended_at,
                               end_reason, path)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (owner, call_id) DO UPDATE SET call_id = excluded.call_id
         RETURNING id",
    )
    .bind(record.owner)
    .bind(record.peer)
    .bind(&record.call_id)
    .bind(record.outgoing)
    .bind(record.started_at)
    .bind(record.answered_at)
    .bind(record.ended_at)
    .bind(&record.end_reason)
    .bind(&record.path)
    .fetch_one(pool)
    .await
    .map_err(failed("recording call"))
}

/// Sets the media path of the owner's record of a call; `false` if there is no such record.
pub(crate) async fn set_path(
    pool: &PgPool,
    owner: UserId,
    call_id: &str,
    path: &str,
) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE call_log SET path = $1 WHERE owner = $2 AND call_id = $3")
        .bind(path)
        .bind(owner)
        .bind(call_id)
        .execute(pool)
        .await
        .map_err(failed("setting call path"))?;
    Ok(done.rows_affected() > 0)
}

/// The owner's call log, newest first.
pub(crate) async fn list(
    pool: &PgPool,
    owner: UserId,
    missed_only: bool,
    before: Option<i64>,
    limit: u32,
) -> StoreResult<Vec<CallRecord>> {
    let rows = sqlx::query(if missed_only { MISSED } else { LOG })
        .bind(owner)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(failed("listing call log"))?;
    rows.iter().map(decode::call_record).collect()
}

/// Deletes the oldest (at most `$2`) call records that ended before `$1`.
pub(crate) const PURGE: &str = "DELETE FROM call_log WHERE id IN (
     SELECT id FROM call_log WHERE ended_at < $1 ORDER BY ended_at LIMIT $2
     FOR UPDATE SKIP LOCKED)";
