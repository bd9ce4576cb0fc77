//! Call history: one record per party of an ended call, listed newest first page by page, with
//! the media path the client reports afterwards, purged by retention.

use peerline_store::{CallRecord, NewCallRecord, StoreResult, UserId};
use sqlx::SqlitePool;

use crate::decode::{self, failed};

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

/// The owner's records below an id (`?2`; the largest id when NULL), newest first.
const LOG: &str = concat!(
    select_call!(),
    "WHERE c.owner = ?1 AND c.id < coalesce(?2, 9223372036854775807) ORDER BY c.id DESC LIMIT ?3"
);

/// As [`LOG`], incoming calls never answered only (served by the partial index `call_log_missed`).
const MISSED: &str = concat!(
    select_call!(),
    "WHERE c.owner = ?1 AND c.outgoing = 0 AND c.answered_at IS NULL \
     AND c.id < coalesce(?2, 9223372036854775807) ORDER BY c.id DESC LIMIT ?3"
);

/// Records an ended call for its owner, or returns the id of the record already there for
/// (owner, call_id), unchanged. One statement: the no-op `DO UPDATE` makes `RETURNING` give the
/// existing row's id too.
pub(crate) async fn record(pool: &SqlitePool, record: NewCallRecord) -> StoreResult<i64> {
    sqlx::query_scalar(
        "INSERT INTO call_log (owner, peer, call_id, outgoing, started_at, answered_at, ended_at,
                               end_reason, path)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
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
    pool: &SqlitePool,
    owner: UserId,
    call_id: &str,
    path: &str,
) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE call_log SET path = ? WHERE owner = ? AND call_id = ?")
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
    pool: &SqlitePool,
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

/// Deletes the oldest (at most `?2`) call records that ended before `?1`.
pub(crate) const PURGE: &str = "DELETE FROM call_log WHERE id IN (
     SELECT id FROM call_log WHERE ended_at < ? ORDER BY ended_at LIMIT ?)";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::{LOG, MISSED};
    use crate::SqliteStore;

    /// Both listings are answered from an index in id order, without a sort step.
    #[tokio::test]
    async fn call_log_queries_use_the_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("peerline.db")).await.unwrap();
        for (sql, index) in [(LOG, "call_log_owner_id"), (MISSED, "call_log_missed")] {
            let plan: Vec<(i64, i64, i64, String)> =
                // Test-only text built from the two constant queries above.
                sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                    .bind(1_i64)
                    .bind(Option::<i64>::None)
                    .bind(10_i64)
                    .fetch_all(&store.reader)
                    .await
                    .unwrap();
            let detail: Vec<&str> = plan.iter().map(|(_, _, _, d)| d.as_str()).collect();
            assert!(
                detail.iter().any(|d| d.contains(index)),
                "plan should use {index}: {detail:?}"
            );
            assert!(!detail.iter().any(|d| d.contains("TEMP B-TREE")), "no sort step: {detail:?}");
        }
        store.close().await;
    }
}
