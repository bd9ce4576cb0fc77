//! Missed calls: recorded when a call rings out unanswered, pushed to the callee's devices until
//! one acknowledges them, purged by retention.

use peerline_store::{StoreResult, StoredMissedCall, TimestampMs, UserId};
use sqlx::SqlitePool;

use crate::decode::{self, failed};
use crate::messages::id_list;

/// `SELECT` of the columns [`decode::missed_call`] reads, with the caller's username joined in;
/// queries append their `WHERE`. A macro so that `concat!` can build `&'static str` queries.
macro_rules! select_missed_call {
    () => {
        "SELECT c.id, c.call_id, c.caller, f.username AS caller_name, c.callee, c.at \
         FROM missed_calls c \
         JOIN accounts f ON f.id = c.caller "
    };
}

/// Records a missed call, or returns the row already recorded for (callee, call_id) unchanged.
pub(crate) async fn record(
    pool: &SqlitePool,
    callee: UserId,
    caller: UserId,
    call_id: &str,
    at: TimestampMs,
) -> StoreResult<StoredMissedCall> {
    let mut tx = pool.begin().await.map_err(failed("recording missed call"))?;
    sqlx::query(
        "INSERT INTO missed_calls (callee, caller, call_id, at) VALUES (?, ?, ?, ?)
         ON CONFLICT (callee, call_id) DO NOTHING",
    )
    .bind(callee)
    .bind(caller)
    .bind(call_id)
    .bind(at)
    .execute(&mut *tx)
    .await
    .map_err(failed("recording missed call"))?;
    // Read back in the same transaction: the new row, or the one a first recording left.
    let row = sqlx::query(concat!(select_missed_call!(), "WHERE c.callee = ? AND c.call_id = ?"))
        .bind(callee)
        .bind(call_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(failed("reading recorded missed call"))?;
    let call = decode::missed_call(&row)?;
    tx.commit().await.map_err(failed("recording missed call"))?;
    Ok(call)
}

/// The callee's unacknowledged missed calls, oldest first.
pub(crate) async fn undelivered(
    pool: &SqlitePool,
    callee: UserId,
    limit: u32,
) -> StoreResult<Vec<StoredMissedCall>> {
    let rows = sqlx::query(concat!(
        select_missed_call!(),
        "WHERE c.callee = ? AND c.acked = 0 ORDER BY c.at, c.id LIMIT ?"
    ))
    .bind(callee)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(failed("listing missed calls"))?;
    rows.iter().map(decode::missed_call).collect()
}

/// Acknowledges the callee's missed calls among `ids`; returns how many were not acknowledged
/// before. One statement, so it commits (durably) on its own.
pub(crate) async fn ack(pool: &SqlitePool, callee: UserId, ids: &[i64]) -> StoreResult<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "UPDATE missed_calls SET acked = 1
         WHERE callee = ? AND acked = 0 AND id IN (SELECT value FROM json_each(?))",
    )
    .bind(callee)
    .bind(id_list(ids))
    .execute(pool)
    .await
    .map_err(failed("acknowledging missed calls"))?;
    Ok(done.rows_affected())
}

/// Deletes the oldest (at most `?2`) missed calls that rang before `?1`.
pub(crate) const PURGE: &str = "DELETE FROM missed_calls WHERE id IN (
     SELECT id FROM missed_calls WHERE at < ? ORDER BY at LIMIT ?)";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use peerline_store::{NewAccount, Store};

    use crate::SqliteStore;

    fn new_account(username: &str) -> NewAccount {
        NewAccount {
            username: username.to_owned(),
            display_name: username.to_owned(),
            password_hash: "$argon2id$test".to_owned(),
        }
    }

    /// Recorded and acknowledged state is in the file, not only in the open store.
    #[tokio::test]
    async fn missed_calls_survive_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peerline.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let alice = store.create_account(new_account("alice"), 1).await.unwrap().id;
        let bob = store.create_account(new_account("bob"), 1).await.unwrap().id;
        let first = store.record_missed_call(bob, alice, "call-1", 10).await.unwrap();
        let second = store.record_missed_call(bob, alice, "call-2", 20).await.unwrap();
        assert_eq!(store.ack_missed_calls(bob, &[first.id]).await.unwrap(), 1);
        store.close().await;

        let reopened = SqliteStore::open(&path).await.unwrap();
        assert_eq!(
            reopened.undelivered_missed_calls(bob, 10).await.unwrap(),
            std::slice::from_ref(&second),
            "the unacknowledged call is still queued, the acknowledged one is not"
        );
        assert_eq!(
            reopened.record_missed_call(bob, alice, "call-1", 99).await.unwrap(),
            first,
            "idempotency holds after a reopen"
        );
        assert_eq!(reopened.ack_missed_calls(bob, &[first.id]).await.unwrap(), 0);
        let third = reopened.record_missed_call(bob, alice, "call-3", 30).await.unwrap();
        assert!(third.id > second.id, "ids keep growing after a reopen");
        reopened.close().await;
    }

    /// The undelivered query is answered from the partial index, not by scanning the table.
    #[tokio::test]
    async fn undelivered_query_uses_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("peerline.db")).await.unwrap();
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(concat!(
            "EXPLAIN QUERY PLAN ",
            select_missed_call!(),
            "WHERE c.callee = ? AND c.acked = 0 ORDER BY c.at, c.id LIMIT ?"
        ))
        .bind(1_i64)
        .bind(10_i64)
        .fetch_all(&store.reader)
        .await
        .unwrap();
        let detail: Vec<&str> = plan.iter().map(|(_, _, _, d)| d.as_str()).collect();
        assert!(
            detail.iter().any(|d| d.contains("missed_calls_unacked")),
            "plan should use missed_calls_unacked: {detail:?}"
        );
        assert!(!detail.iter().any(|d| d.contains("TEMP B-TREE")), "no sort step: {detail:?}");
        store.close().await;
    }
}
