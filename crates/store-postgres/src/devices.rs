//! Devices registered to accounts, and the resumable sessions issued to them.

use peerline_store::{
    Device, DeviceId, SessionRecord, StoreError, StoreResult, TimestampMs, UserId, random_device_id,
};
use sqlx::PgPool;

use crate::decode;
use crate::error::failed;

/// How many random ids a new device draws before giving up. Each draw collides with an issued id
/// with a probability of (devices ever issued) / 2^53, so a second draw is already astronomically
/// rare; the bound only keeps a broken random source from looping forever.
const ID_DRAWS: usize = 16;

/// Registers the key for the account, or refreshes the name and last-seen time of the device that
/// already has it. A new device gets a random id that was never issued before (see
/// `issued_device_ids` in migrations/0004_device_ids.sql).
///
/// Two logins of the same new device at once (on two supernodes) make one row: both draw an id,
/// the second insert waits for the first to commit and then refreshes the first's row instead,
/// and its own id stays issued, unused. Two supernodes drawing the same id: the second
/// `issued_device_ids` insert waits for the first and then finds the id taken, and draws again.
pub(crate) async fn upsert(
    pool: &PgPool,
    user: UserId,
    public_key: &[u8; 32],
    name: &str,
    now: TimestampMs,
) -> StoreResult<Device> {
    let mut tx = pool.begin().await.map_err(failed("registering device"))?;
    let known = sqlx::query(
        "UPDATE devices SET name = $3, last_seen_at = $4
         WHERE user_id = $1 AND public_key = $2
         RETURNING id, user_id, public_key, name, created_at, last_seen_at",
    )
    .bind(user)
    .bind(public_key.as_slice())
    .bind(name)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await
    .map_err(failed("refreshing device"))?;
    if let Some(row) = known {
        let device = decode::device(&row)?;
        tx.commit().await.map_err(failed("refreshing device"))?;
        return Ok(device);
    }

    let mut id = None;
    for _ in 0..ID_DRAWS {
        let candidate = random_device_id();
        let issued =
            sqlx::query("INSERT INTO issued_device_ids (id) VALUES ($1) ON CONFLICT DO NOTHING")
                .bind(candidate)
                .execute(&mut *tx)
                .await
                .map_err(failed("issuing device id"))?
                .rows_affected();
        if issued == 1 {
            id = Some(candidate);
            break;
        }
    }
    let id = id.ok_or_else(|| {
        StoreError::Backend(format!(
            "issuing device id: {ID_DRAWS} random ids in a row were taken; the random source \
             is broken"
        ))
    })?;
    let row = sqlx::query(
        "INSERT INTO devices (id, user_id, public_key, name, created_at, last_seen_at)
         VALUES ($1, $2, $3, $4, $5, $5)
         ON CONFLICT (user_id, public_key)
             DO UPDATE SET name = excluded.name, last_seen_at = excluded.last_seen_at
         RETURNING id, user_id, public_key, name, created_at, last_seen_at",
    )
    .bind(id)
    .bind(user)
    .bind(public_key.as_slice())
    .bind(name)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(failed("registering device"))?;
    let device = decode::device(&row)?;
    tx.commit().await.map_err(failed("registering device"))?;
    Ok(device)
}

/// The account's devices, oldest first.
pub(crate) async fn of_user(pool: &PgPool, user: UserId) -> StoreResult<Vec<Device>> {
    sqlx::query(
        "SELECT id, user_id, public_key, name, created_at, last_seen_at FROM devices
         WHERE user_id = $1
         ORDER BY created_at, id",
    )
    .bind(user)
    .fetch_all(pool)
    .await
    .map_err(failed("listing devices"))?
    .iter()
    .map(decode::device)
    .collect()
}

/// Deletes the account's device and its sessions; `false` if the account has no such device. The
/// id stays in `issued_device_ids`, so it is never issued again.
pub(crate) async fn remove(pool: &PgPool, user: UserId, device: DeviceId) -> StoreResult<bool> {
    let mut tx = pool.begin().await.map_err(failed("removing device"))?;
    // Sessions first: the foreign key would cascade, but this does not depend on it.
    sqlx::query("DELETE FROM sessions WHERE device_id = $1 AND user_id = $2")
        .bind(device)
        .bind(user)
        .execute(&mut *tx)
        .await
        .map_err(failed("removing device's sessions"))?;
    let removed = sqlx::query("DELETE FROM devices WHERE id = $1 AND user_id = $2")
        .bind(device)
        .bind(user)
        .execute(&mut *tx)
        .await
        .map_err(failed("removing device"))?
        .rows_affected();
    tx.commit().await.map_err(failed("removing device"))?;
    Ok(removed > 0)
}

/// Stores a session under its token hash.
pub(crate) async fn create_session(
    pool: &PgPool,
    token_hash: &[u8; 32],
    user: UserId,
    device: DeviceId,
    expires_at: TimestampMs,
) -> StoreResult<()> {
    // A plain INSERT: a second session under the same hash is an error, never a silent takeover.
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, device_id, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash.as_slice())
    .bind(user)
    .bind(device)
    .bind(expires_at)
    .execute(pool)
    .await
    .map_err(failed("creating session"))?;
    Ok(())
}

/// The session with this token hash, expired or not.
pub(crate) async fn session(
    pool: &PgPool,
    token_hash: &[u8; 32],
) -> StoreResult<Option<SessionRecord>> {
    sqlx::query("SELECT user_id, device_id, expires_at FROM sessions WHERE token_hash = $1")
        .bind(token_hash.as_slice())
        .fetch_optional(pool)
        .await
        .map_err(failed("looking up session"))?
        .as_ref()
        .map(decode::session)
        .transpose()
}

/// Deletes one session (nothing if there is none).
pub(crate) async fn delete_session(pool: &PgPool, token_hash: &[u8; 32]) -> StoreResult<()> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash.as_slice())
        .execute(pool)
        .await
        .map_err(failed("deleting session"))?;
    Ok(())
}

/// Deletes every session of the account but `keep`.
pub(crate) async fn delete_sessions_except(
    pool: &PgPool,
    user: UserId,
    keep: Option<&[u8; 32]>,
) -> StoreResult<()> {
    sqlx::query(
        "DELETE FROM sessions WHERE user_id = $1 AND ($2::bytea IS NULL OR token_hash <> $2)",
    )
    .bind(user)
    .bind(keep.map(<[u8; 32]>::as_slice))
    .execute(pool)
    .await
    .map_err(failed("deleting other sessions"))?;
    Ok(())
}

/// Deletes the (at most `$2`) sessions that expired first among those that expired before `$1`.
pub(crate) const PURGE_EXPIRED_SESSIONS: &str = "DELETE FROM sessions WHERE token_hash IN (
     SELECT token_hash FROM sessions WHERE expires_at < $1 ORDER BY expires_at LIMIT $2
     FOR UPDATE SKIP LOCKED)";
