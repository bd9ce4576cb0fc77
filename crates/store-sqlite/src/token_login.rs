//! The one read of a token login: a session joined with its account and its device.

use peerline_store::{Device, StoreError, StoreResult, TokenLogin};
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteRow;

use crate::decode::{self, column, failed};

/// The account's columns under their own names (as `decode::account` reads them), the
/// session's as `decode::session` reads them, and the device's under names of their own.
const SELECT: &str = "
    SELECT s.user_id, s.device_id, s.expires_at,
           a.id, a.username, a.display_name, a.password_hash, a.status, a.discoverable,
           a.created_at,
           d.public_key, d.name, d.created_at AS device_created_at, d.last_seen_at
    FROM sessions s
    JOIN accounts a ON a.id = s.user_id
    JOIN devices d ON d.id = s.device_id AND d.user_id = s.user_id
    WHERE s.token_hash = ?";

/// The session with this token hash, its account and its device; `None` without a session.
pub(crate) async fn read(
    pool: &SqlitePool,
    token_hash: &[u8; 32],
) -> StoreResult<Option<TokenLogin>> {
    sqlx::query(SELECT)
        .bind(token_hash.as_slice())
        .fetch_optional(pool)
        .await
        .map_err(failed("looking up session for a token login"))?
        .as_ref()
        .map(decode_row)
        .transpose()
}

fn decode_row(row: &SqliteRow) -> Result<TokenLogin, StoreError> {
    let session = decode::session(row)?;
    let account = decode::account(row)?;
    let device = Device {
        id: session.device_id,
        user_id: session.user_id,
        public_key: decode::key32(row, "devices", "public_key")?,
        name: column(row, "devices", "name")?,
        created_at: column(row, "devices", "device_created_at")?,
        last_seen_at: column(row, "devices", "last_seen_at")?,
    };
    Ok(TokenLogin { session, account, device })
}
