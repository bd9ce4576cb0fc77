//! Turning rows into store types and sqlx errors into [`StoreError`]s.
//!
//! Nothing read from disk is trusted: a value of the wrong type, an unknown enum string or a key
//! of the wrong length becomes `StoreError::Backend("corrupt ...")`, never a panic.

use peerline_store::{
    Account, CallRecord, ContactState, Device, SessionRecord, Status, StoreError, StoredMessage,
    StoredMissedCall,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Row, Sqlite, Type};

/// Maps a failed statement to a `Backend` error that says what was being done.
pub(crate) fn failed(doing: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| StoreError::Backend(format!("{doing}: {e}"))
}

/// Runs one batch of a purge: `sql` deletes at most `?2` rows older than `?1` (oldest first,
/// through its index). Returns how many it deleted; the caller repeats until a batch comes back
/// short, so that no single statement holds the only writer for long.
pub(crate) async fn delete_batch(
    pool: &sqlx::SqlitePool,
    sql: &'static str,
    cutoff: i64,
    limit: u32,
    doing: &'static str,
) -> Result<u64, StoreError> {
    let done = sqlx::query(sql)
        .bind(cutoff)
        .bind(i64::from(limit))
        .execute(pool)
        .await
        .map_err(failed(doing))?;
    Ok(done.rows_affected())
}

/// A `Backend` error for a stored value that cannot be what the schema says.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("corrupt {what}"))
}

/// One column of a row; a missing column or a value of the wrong type is corruption.
pub(crate) fn column<'r, T>(row: &'r SqliteRow, table: &str, name: &str) -> Result<T, StoreError>
where
    T: Decode<'r, Sqlite> + Type<Sqlite>,
{
    row.try_get(name).map_err(|e| corrupt(format!("{table}.{name}: {e}")))
}

/// A 32-byte key or hash stored as a BLOB.
pub(crate) fn key32(row: &SqliteRow, table: &str, name: &str) -> Result<[u8; 32], StoreError> {
    let bytes: Vec<u8> = column(row, table, name)?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| corrupt(format!("{table}.{name}: {len} bytes, expected 32")))
}

/// A row of `accounts` (all columns of [`Account`]).
pub(crate) fn account(row: &SqliteRow) -> Result<Account, StoreError> {
    let id = column(row, "accounts", "id")?;
    let status: String = column(row, "accounts", "status")?;
    let status = Status::parse(&status)
        .ok_or_else(|| corrupt(format!("accounts.status {status:?} of account {id}")))?;
    Ok(Account {
        id,
        username: column(row, "accounts", "username")?,
        display_name: column(row, "accounts", "display_name")?,
        password_hash: column(row, "accounts", "password_hash")?,
        status,
        discoverable: column(row, "accounts", "discoverable")?,
        created_at: column(row, "accounts", "created_at")?,
    })
}

/// A row of `devices`.
pub(crate) fn device(row: &SqliteRow) -> Result<Device, StoreError> {
    Ok(Device {
        id: column(row, "devices", "id")?,
        user_id: column(row, "devices", "user_id")?,
        public_key: key32(row, "devices", "public_key")?,
        name: column(row, "devices", "name")?,
        created_at: column(row, "devices", "created_at")?,
        last_seen_at: column(row, "devices", "last_seen_at")?,
    })
}

/// A row of `sessions` (without the token hash, which the caller already has).
pub(crate) fn session(row: &SqliteRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        user_id: column(row, "sessions", "user_id")?,
        device_id: column(row, "sessions", "device_id")?,
        expires_at: column(row, "sessions", "expires_at")?,
    })
}

/// The `state` column of a `contacts` row.
pub(crate) fn contact_state(row: &SqliteRow) -> Result<ContactState, StoreError> {
    let state: String = column(row, "contacts", "state")?;
    ContactState::parse(&state).ok_or_else(|| corrupt(format!("contacts.state {state:?}")))
}

/// A row of the message select (see `messages::SELECT`), with both usernames joined in.
pub(crate) fn message(row: &SqliteRow) -> Result<StoredMessage, StoreError> {
    Ok(StoredMessage {
        id: column(row, "messages", "id")?,
        from_id: column(row, "messages", "sender")?,
        from: column(row, "messages", "sender_name")?,
        to_id: column(row, "messages", "recipient")?,
        to: column(row, "messages", "recipient_name")?,
        text: column(row, "messages", "text")?,
        sent_at: column(row, "messages", "sent_at")?,
        delivered_at: column(row, "messages", "delivered_at")?,
        read_at: column(row, "messages", "read_at")?,
    })
}

/// A row of the missed-call select (see `missed_calls::select_missed_call!`), with the caller's
/// username joined in.
pub(crate) fn missed_call(row: &SqliteRow) -> Result<StoredMissedCall, StoreError> {
    Ok(StoredMissedCall {
        id: column(row, "missed_calls", "id")?,
        call_id: column(row, "missed_calls", "call_id")?,
        caller_id: column(row, "missed_calls", "caller")?,
        caller: column(row, "missed_calls", "caller_name")?,
        callee_id: column(row, "missed_calls", "callee")?,
        at: column(row, "missed_calls", "at")?,
    })
}

/// A row of the call-log select (see `call_log::select_call!`), with the peer's username joined
/// in.
pub(crate) fn call_record(row: &SqliteRow) -> Result<CallRecord, StoreError> {
    Ok(CallRecord {
        id: column(row, "call_log", "id")?,
        call_id: column(row, "call_log", "call_id")?,
        peer: column(row, "call_log", "peer_name")?,
        peer_id: column(row, "call_log", "peer")?,
        outgoing: column(row, "call_log", "outgoing")?,
        started_at: column(row, "call_log", "started_at")?,
        answered_at: column(row, "call_log", "answered_at")?,
        ended_at: column(row, "call_log", "ended_at")?,
        end_reason: column(row, "call_log", "end_reason")?,
        path: column(row, "call_log", "path")?,
    })
}
