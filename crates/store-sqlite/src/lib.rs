//! The SQLite backend of the Peerline [`Store`]: one database file in WAL mode, written with
//! `synchronous = FULL` so that every acknowledged write survives a crash or `kill -9`.
//!
//! Writes go through a pool of one connection, so they are serialized and a transaction never
//! has to upgrade a read lock while another writer holds the database (which SQLite answers with
//! `SQLITE_BUSY` at once, whatever the busy timeout). Reads use a separate small pool; in WAL
//! mode they never block the writer and always see every committed write.
//!
//! Queries are checked at run time (no `DATABASE_URL` at build time); the schema is applied by
//! the embedded migrations in `migrations/`.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod accounts;
mod call_log;
mod contacts;
mod decode;
mod devices;
mod import;
mod messages;
mod missed_calls;
mod schema;
mod token_login;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use peerline_store::{
    Account, CallRecord, ContactEntry, ContactLink, ContactRow, ContactSide, ContactStates,
    ContactVersion, Device, DeviceId, MessageId, NewAccount, NewCallRecord, RecentSends,
    SessionRecord, Status, Store, StoreError, StoreResult, StoredMessage, StoredMissedCall,
    TimestampMs, UndeliveredCounts, UserHit, UserId,
};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// How long a statement waits for a lock held by another connection (or process) before it
/// fails with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections for reads. Reads in WAL mode run in parallel with each other and with the writer.
const READ_CONNECTIONS: u32 = 4;

/// A [`Store`] in one SQLite database file.
///
/// Cheap to share behind an `Arc`; every method may be called concurrently.
#[derive(Debug)]
pub struct SqliteStore {
    /// The only connection that writes: serializes writes and transactions.
    writer: SqlitePool,
    /// Connections for plain reads.
    reader: SqlitePool,
    /// The database file, for error messages.
    path: PathBuf,
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file (and its parent directories) if missing,
    /// and brings its schema up to date.
    ///
    /// Fails with [`StoreError::Backend`] if the path cannot be opened as a database (it is a
    /// directory, the directory is not writable, the file is not SQLite) or if the schema cannot
    /// be migrated (for example, a database written by a newer version).
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let shown = path.display();
        match tokio::fs::metadata(path).await {
            Ok(meta) if meta.is_dir() => {
                return Err(StoreError::Backend(format!(
                    "opening database {shown}: the path is a directory; give a file path"
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    let mut dirs = tokio::fs::DirBuilder::new();
                    dirs.recursive(true);
                    #[cfg(unix)]
                    dirs.mode(0o700);
                    dirs.create(parent).await.map_err(|e| {
                        StoreError::Backend(format!(
                            "creating directory {} for database {shown}: {e}",
                            parent.display()
                        ))
                    })?;
                }
                create_private_file(path).await?;
            }
            Err(e) => {
                return Err(StoreError::Backend(format!("opening database {shown}: {e}")));
            }
        }

        // SQLite gives the -wal and -shm files it creates the database file's mode, so a
        // private database file keeps them private too.
        restrict_to_owner(path).await;

        let options = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: the WAL is synced at every commit, so an acknowledged write survives power
            // loss and kill -9 (NORMAL would only protect against application crashes).
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);

        // No ping before each use: a connection is a file handle in this process, not a socket
        // that can go stale, and the ping is one more hand-off to the connection's worker thread
        // on every statement (sqlx still pings each one as it goes back to the pool).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone().create_if_missing(true))
            .await
            .map_err(|e| StoreError::Backend(format!("opening database {shown}: {e}")))?;

        if let Err(e) = schema::migrate(&writer).await {
            writer.close().await;
            return Err(StoreError::Backend(format!("migrating database {shown}: {e}")));
        }
        // -wal and -shm files left by an earlier run keep whatever mode they were made with.
        for sidecar in [sidecar_path(path, "-wal"), sidecar_path(path, "-shm")] {
            restrict_to_owner(&sidecar).await;
        }

        let reader = match SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .test_before_acquire(false)
            .connect_with(options.create_if_missing(false))
            .await
        {
            Ok(reader) => reader,
            Err(e) => {
                writer.close().await;
                return Err(StoreError::Backend(format!(
                    "opening read connections to {shown}: {e}"
                )));
            }
        };

        tracing::debug!(path = %shown, "opened SQLite store");
        Ok(SqliteStore { writer, reader, path: path.to_owned() })
    }

    /// Closes every connection, after checkpointing the write-ahead log into the database file
    /// (so the file alone holds all data). Calls made after `close` fail with
    /// [`StoreError::Backend`]; calling `close` twice is harmless.
    pub async fn close(&self) {
        self.reader.close().await;
        if self.writer.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.writer).await {
            // Not fatal: SQLite checkpoints again when the last connection closes, and replays
            // the log on the next open otherwise.
            tracing::warn!(path = %self.path.display(), error = %e, "WAL checkpoint at close failed");
        }
        self.writer.close().await;
        tracing::debug!(path = %self.path.display(), "closed SQLite store");
    }

    /// The database file this store was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map(|_| ())
            .map_err(decode::failed("checking the database"))
    }

    async fn close(&self) {
        SqliteStore::close(self).await;
    }

    async fn create_account(&self, account: NewAccount, now: TimestampMs) -> StoreResult<Account> {
        accounts::create(&self.writer, account, now).await
    }

    async fn account_by_username(&self, username: &str) -> StoreResult<Option<Account>> {
        accounts::by_username(&self.reader, username).await
    }

    async fn account_by_id(&self, id: UserId) -> StoreResult<Option<Account>> {
        accounts::by_id(&self.reader, id).await
    }

    async fn set_password_hash(&self, id: UserId, password_hash: &str) -> StoreResult<()> {
        accounts::set_password_hash(&self.writer, id, password_hash).await
    }

    async fn set_status(&self, id: UserId, status: Status) -> StoreResult<()> {
        accounts::set_status(&self.writer, id, status).await
    }

    async fn set_profile(
        &self,
        id: UserId,
        display_name: Option<&str>,
        discoverable: Option<bool>,
    ) -> StoreResult<()> {
        accounts::set_profile(&self.writer, id, display_name, discoverable).await
    }

    async fn upsert_device(
        &self,
        user: UserId,
        public_key: &[u8; 32],
        name: &str,
        now: TimestampMs,
    ) -> StoreResult<Device> {
        devices::upsert(&self.writer, user, public_key, name, now).await
    }

    async fn devices(&self, user: UserId) -> StoreResult<Vec<Device>> {
        devices::of_user(&self.reader, user).await
    }

    async fn remove_device(&self, user: UserId, device: DeviceId) -> StoreResult<bool> {
        devices::remove(&self.writer, user, device).await
    }

    async fn create_session(
        &self,
        token_hash: &[u8; 32],
        user: UserId,
        device: DeviceId,
        expires_at: TimestampMs,
    ) -> StoreResult<()> {
        devices::create_session(&self.writer, token_hash, user, device, expires_at).await
    }

    async fn session(&self, token_hash: &[u8; 32]) -> StoreResult<Option<SessionRecord>> {
        devices::session(&self.reader, token_hash).await
    }

    async fn delete_session(&self, token_hash: &[u8; 32]) -> StoreResult<()> {
        devices::delete_session(&self.writer, token_hash).await
    }

    async fn delete_sessions_except(
        &self,
        user: UserId,
        keep: Option<&[u8; 32]>,
    ) -> StoreResult<()> {
        devices::delete_sessions_except(&self.writer, user, keep).await
    }

    async fn purge_expired_sessions(&self, cutoff: TimestampMs, limit: u32) -> StoreResult<u64> {
        decode::delete_batch(
            &self.writer,
            devices::PURGE_EXPIRED_SESSIONS,
            cutoff,
            limit,
            "purging expired sessions",
        )
        .await
    }

    async fn contact_pair(
        &self,
        a: UserId,
        b: UserId,
    ) -> StoreResult<(Option<ContactRow>, Option<ContactRow>)> {
        contacts::pair(&self.reader, a, b).await
    }

    async fn write_contact_pair(
        &self,
        a: UserId,
        b: UserId,
        a_side: ContactSide,
        b_side: ContactSide,
        now: TimestampMs,
    ) -> StoreResult<ContactVersion> {
        let written = contacts::write_pair(&self.writer, a, b, None, (a_side, b_side), now).await?;
        written.ok_or_else(|| StoreError::Backend("an unconditional write was refused".into()))
    }

    async fn update_contact_pair(
        &self,
        a: UserId,
        b: UserId,
        expected: ContactStates,
        a_side: ContactSide,
        b_side: ContactSide,
        now: TimestampMs,
    ) -> StoreResult<Option<ContactVersion>> {
        contacts::write_pair(&self.writer, a, b, Some(expected), (a_side, b_side), now).await
    }

    async fn contacts(
        &self,
        owner: UserId,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ContactEntry>> {
        contacts::list(&self.reader, owner, after, limit).await
    }

    async fn incoming_requests(&self, owner: UserId, limit: u32) -> StoreResult<u64> {
        contacts::incoming_requests(&self.reader, owner, limit).await
    }

    async fn contact_links(&self, owner: UserId) -> StoreResult<Vec<ContactLink>> {
        contacts::links(&self.reader, owner).await
    }

    async fn search(&self, query: &str, exclude: UserId, limit: u32) -> StoreResult<Vec<UserHit>> {
        accounts::search(&self.reader, query, exclude, limit).await
    }

    async fn store_message(
        &self,
        from: UserId,
        to: UserId,
        text: &str,
        now: TimestampMs,
    ) -> StoreResult<StoredMessage> {
        messages::store(&self.writer, from, to, text, now).await
    }

    async fn undelivered(
        &self,
        user: UserId,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        messages::undelivered(&self.reader, user, after, limit).await
    }

    async fn undelivered_counts(
        &self,
        from: UserId,
        to: UserId,
        limit: u32,
    ) -> StoreResult<UndeliveredCounts> {
        messages::undelivered_counts(&self.reader, from, to, limit).await
    }

    async fn recent_sends(
        &self,
        from: UserId,
        since: TimestampMs,
        limit: u32,
    ) -> StoreResult<RecentSends> {
        messages::recent_sends(&self.reader, from, since, limit).await
    }

    async fn mark_delivered(
        &self,
        recipient: UserId,
        ids: &[MessageId],
        now: TimestampMs,
    ) -> StoreResult<Vec<StoredMessage>> {
        messages::mark_delivered(&self.writer, recipient, ids, now).await
    }

    async fn mark_read(
        &self,
        recipient: UserId,
        ids: &[MessageId],
        now: TimestampMs,
    ) -> StoreResult<Vec<StoredMessage>> {
        messages::mark_read(&self.writer, recipient, ids, now).await
    }

    async fn unread(
        &self,
        user: UserId,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        messages::unread(&self.reader, user, after, limit).await
    }

    async fn history(
        &self,
        a: UserId,
        b: UserId,
        limit: u32,
        before: Option<MessageId>,
    ) -> StoreResult<Vec<StoredMessage>> {
        messages::history(&self.reader, a, b, limit, before).await
    }

    async fn purge_messages_before(&self, cutoff: TimestampMs, limit: u32) -> StoreResult<u64> {
        decode::delete_batch(&self.writer, messages::PURGE, cutoff, limit, "purging old messages")
            .await
    }

    async fn record_missed_call(
        &self,
        callee: UserId,
        caller: UserId,
        call_id: &str,
        at: TimestampMs,
    ) -> StoreResult<StoredMissedCall> {
        missed_calls::record(&self.writer, callee, caller, call_id, at).await
    }

    async fn undelivered_missed_calls(
        &self,
        callee: UserId,
        limit: u32,
    ) -> StoreResult<Vec<StoredMissedCall>> {
        missed_calls::undelivered(&self.reader, callee, limit).await
    }

    async fn ack_missed_calls(&self, callee: UserId, ids: &[i64]) -> StoreResult<u64> {
        missed_calls::ack(&self.writer, callee, ids).await
    }

    async fn purge_missed_calls_before(&self, cutoff: TimestampMs, limit: u32) -> StoreResult<u64> {
        decode::delete_batch(
            &self.writer,
            missed_calls::PURGE,
            cutoff,
            limit,
            "purging old missed calls",
        )
        .await
    }

    async fn record_call(&self, record: NewCallRecord) -> StoreResult<i64> {
        call_log::record(&self.writer, record).await
    }

    async fn set_call_path(&self, owner: UserId, call_id: &str, path: &str) -> StoreResult<bool> {
        call_log::set_path(&self.writer, owner, call_id, path).await
    }

    async fn call_log(
        &self,
        owner: UserId,
        missed_only: bool,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<CallRecord>> {
        call_log::list(&self.reader, owner, missed_only, before, limit).await
    }

    async fn purge_call_log_before(&self, cutoff: TimestampMs, limit: u32) -> StoreResult<u64> {
        decode::delete_batch(&self.writer, call_log::PURGE, cutoff, limit, "purging old call log")
            .await
    }

    async fn user_ids(&self, usernames: &[String]) -> StoreResult<Vec<(String, UserId)>> {
        import::user_ids(&self.reader, usernames).await
    }

    async fn import_accounts(
        &self,
        accounts: &[peerline_store::ImportAccount],
        now: TimestampMs,
    ) -> StoreResult<Vec<Option<peerline_store::ImportedAccount>>> {
        import::import_accounts(&self.writer, accounts, now).await
    }

    async fn import_contacts(
        &self,
        pairs: &[(UserId, UserId)],
        now: TimestampMs,
    ) -> StoreResult<u64> {
        import::import_contacts(&self.writer, pairs, now).await
    }

    async fn token_login(
        &self,
        token_hash: &[u8; 32],
    ) -> StoreResult<Option<peerline_store::TokenLogin>> {
        token_login::read(&self.reader, token_hash).await
    }
}

/// `path` with `suffix` appended to its file name (`peerline.db` → `peerline.db-wal`).
fn sidecar_path(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates an empty database file that only its owner can read or write (SQLite treats an empty
/// file as an empty database). Creating it here rather than letting SQLite do it keeps it from
/// ever existing with the umask's wider mode (SQLite creates files 0644).
async fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    match options.open(path).await {
        // Someone else created it first: it is checked like any existing file.
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Backend(format!("creating database {}: {e}", path.display()))),
    }
}

/// Takes group and other permissions off `path`, if it exists: the database holds password
/// hashes, session token hashes and messages. Best effort: a file this user does not own, or a
/// file system without Unix permissions, is reported and left as it is.
async fn restrict_to_owner(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = tokio::fs::metadata(path).await else { return };
        let mode = meta.permissions().mode();
        if mode & 0o077 == 0 {
            return;
        }
        let private = std::fs::Permissions::from_mode(mode & 0o700);
        if let Err(e) = tokio::fs::set_permissions(path, private).await {
            tracing::warn!(
                file = %path.display(),
                error = %e,
                "the database file is readable by other users and could not be narrowed; \
                 chmod 600 it or run the supernode as its owner"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// The durability settings are per connection, so they can only be seen from inside.
    #[tokio::test]
    async fn connections_use_full_sync_foreign_keys_and_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).await.unwrap();
        for (name, pool) in [("writer", &store.writer), ("reader", &store.reader)] {
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(pool).await.unwrap();
            assert_eq!(sync, 2, "{name}: synchronous must be FULL (2)");
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(pool).await.unwrap();
            assert_eq!(fk, 1, "{name}: foreign keys must be on");
            let busy: i64 =
                sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(pool).await.unwrap();
            assert_eq!(busy, 5000, "{name}: busy timeout");
            let mode: String =
                sqlx::query_scalar("PRAGMA journal_mode").fetch_one(pool).await.unwrap();
            assert_eq!(mode, "wal", "{name}: journal mode");
        }
        store.close().await;
    }
}
