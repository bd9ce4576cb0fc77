//! The PostgreSQL backend of the Peerline [`Store`]: one database shared by every supernode of a
//! cluster.
//!
//! Every method is one statement or one transaction on a pooled connection and returns only
//! after PostgreSQL committed it durably (see [`PostgresStore::connect`]).
//! What must not interleave across processes is serialized in the database, never in memory:
//! changes of one contact pair take the pair's advisory lock (see `contacts.rs`), recording a
//! missed call is an atomic upsert, message receipts are conditional updates.
//!
//! Behaviour matches the SQLite backend exactly (the shared conformance suite checks it):
//! usernames are folded to ASCII lower case by the store and kept unique by a plain unique
//! constraint on the folded name; display names are lower-cased in Rust for search; ids come
//! from sequences and are never reused.
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
mod error;
mod import;
mod messages;
mod missed_calls;
mod schema;
mod token_login;

use std::time::Duration;

use async_trait::async_trait;
use peerline_store::{
    Account, CallRecord, ContactEntry, ContactLink, ContactRow, ContactSide, ContactStates,
    ContactVersion, Device, DeviceId, MessageId, NewAccount, NewCallRecord, RecentSends,
    SessionRecord, Status, Store, StoreError, StoreResult, StoredMessage, StoredMissedCall,
    TimestampMs, UndeliveredCounts, UserHit, UserId,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

/// How a [`PostgresStore`] connects. The defaults suit one supernode of a small cluster.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Most connections the pool keeps open. Calls beyond it wait for a free connection.
    /// Default 16: plenty for a supernode's short statements, and a cluster of several
    /// supernodes stays well within PostgreSQL's default `max_connections` of 100.
    pub max_connections: u32,
    /// How long connecting may take: the first connection in [`PostgresStore::connect`], and a
    /// call's wait for a pooled connection (all busy, or the server unreachable) before it fails
    /// with [`StoreError::Retryable`]. Default 5 s.
    pub connect_timeout: Duration,
    /// How long a statement waits for a lock another transaction holds (a contact pair's, a row
    /// being updated) before it fails with [`StoreError::Retryable`] instead of hanging the
    /// caller. Default 5 s.
    pub lock_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(5),
        }
    }
}

/// A pooled connection idle for longer than this is pinged before use, so that one left over
/// from before a server restart is replaced instead of failing a call. Connections in steady use
/// skip the round trip (sqlx already pings each one when it goes back to the pool).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// A [`Store`] in a PostgreSQL database.
///
/// Cheap to share behind an `Arc`; every method may be called concurrently, from any number of
/// processes sharing the database.
#[derive(Debug)]
pub struct PostgresStore {
    /// The connections.
    pool: PgPool,
    /// The URL without its password, for messages.
    shown_url: String,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) with
    /// the default [`PostgresOptions`], and brings its schema up to date.
    ///
    /// Fails with [`StoreError::Retryable`] if the server cannot be reached within the connect
    /// timeout (refused, unreachable, starting up, out of connections), and with
    /// [`StoreError::Backend`] if the URL is invalid, the server refuses the login or the
    /// database, or the schema cannot be migrated (for example, a database written by a newer
    /// version). Messages name the URL, never its password.
    ///
    /// Every session runs with `synchronous_commit` on even where the server, database or role
    /// says `off` (see `prepare_session`), so an `Ok` from the store means the commit is on disk.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect_with(url, &PostgresOptions::default()).await
    }

    /// [`PostgresStore::connect`] with explicit options.
    pub async fn connect_with(
        url: &str,
        options: &PostgresOptions,
    ) -> Result<PostgresStore, StoreError> {
        let shown_url = error::redact(url);
        // sqlx parses any scheme as PostgreSQL; a URL meant for another database is a mistake
        // better named here than as a failed login.
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Backend(format!(
                "invalid PostgreSQL URL {shown_url}: expected \
                 postgres://user:password@host:port/database"
            )));
        }
        let mut connect_options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL {shown_url}: {e}")))?;
        if connect_options.get_application_name().is_none() {
            connect_options = connect_options.application_name("peerline");
        }
        let lock_timeout = format!("{}ms", options.lock_timeout.as_millis());
        connect_options = connect_options.options([("lock_timeout", lock_timeout)]);

        // One connection first, outside the pool: the pool would retry a refused connection
        // until its timeout and then report only "timed out", where this fails at once with the
        // cause (refused, no such database, wrong password).
        let connecting = PgConnection::connect_with(&connect_options);
        let conn = match tokio::time::timeout(options.connect_timeout, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(error::classify(
                    &format!("connecting to PostgreSQL at {shown_url}"),
                    e,
                ));
            }
            Err(_) => {
                return Err(StoreError::Retryable(format!(
                    "connecting to PostgreSQL at {shown_url}: no answer within {:?}",
                    options.connect_timeout
                )));
            }
        };
        if let Err(e) = conn.close().await {
            tracing::debug!(error = %e, "closing the first connection");
        }

        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.connect_timeout)
            // Instead of a ping before every use, a ping only for connections that sat idle.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > PING_IF_IDLE_FOR {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(|conn, _meta| Box::pin(prepare_session(conn)))
            .connect_lazy_with(connect_options);
        if let Err(e) = schema::migrate(&pool).await {
            pool.close().await;
            let doing = format!("migrating database at {shown_url}");
            return Err(match e {
                // The server failed underneath (connection lost, lock timeout): may be worth
                // another try.
                sqlx::migrate::MigrateError::Execute(e) => error::classify(&doing, e),
                e => StoreError::Backend(format!("{doing}: {e}")),
            });
        }
        tracing::debug!(url = %shown_url, "connected to PostgreSQL store");
        Ok(PostgresStore { pool, shown_url })
    }

    /// Closes every connection. Calls made after `close` fail with [`StoreError::Backend`];
    /// calling `close` twice is harmless.
    pub async fn close(&self) {
        self.pool.close().await;
        tracing::debug!(url = %self.shown_url, "closed PostgreSQL store");
    }

    /// Whether the database answers now (for health checks): one round trip that reads
    /// nothing. `Retryable` while the server is unreachable.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(error::failed("checking the database"))
    }

    /// The database URL this store was connected to, without its password.
    pub fn url(&self) -> &str {
        &self.shown_url
    }
}

/// Sets up a new connection so that every commit is durable before it is acknowledged.
///
/// A server (or role, or database) configured with `synchronous_commit = off` acknowledges a
/// commit before its log reaches the disk, and a crash then loses writes the store reported
/// done. Turned back on for our sessions only; the stronger settings (`remote_write`,
/// `remote_apply` for replicas) and `local` are left as configured.
async fn prepare_session(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT set_config('synchronous_commit', 'on', false)
         WHERE current_setting('synchronous_commit') = 'off'",
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        PostgresStore::ping(self).await
    }

    async fn close(&self) {
        PostgresStore::close(self).await;
    }

    async fn create_account(&self, account: NewAccount, now: TimestampMs) -> StoreResult<Account> {
        accounts::create(&self.pool, account, now).await
    }

    async fn account_by_username(&self, username: &str) -> StoreResult<Option<Account>> {
        accounts::by_username(&self.pool, username).await
    }

    async fn account_by_id(&self, id: UserId) -> StoreResult<Option<Account>> {
        accounts::by_id(&self.pool, id).await
    }

    async fn set_password_hash(&self, id: UserId, password_hash: &str) -> StoreResult<()> {
        accounts::set_password_hash(&self.pool, id, password_hash).await
    }

    async fn set_status(&self, id: UserId, status: Status) -> StoreResult<()> {
        accounts::set_status(&self.pool, id, status).await
    }

    async fn set_profile(
        &self,
        id: UserId,
        display_name: Option<&str>,
        discoverable: Option<bool>,
    ) -> StoreResult<()> {
        accounts::set_profile(&self.pool, id, display_name, discoverable).await
    }

    async fn upsert_device(
        &self,
        user: UserId,
        public_key: &[u8; 32],
        name: &str,
        now: TimestampMs,
    ) -> StoreResult<Device> {
        devices::upsert(&self.pool, user, public_key, name, now).await
    }

    async fn devices(&self, user: UserId) -> StoreResult<Vec<Device>> {
        devices::of_user(&self.pool, user).await
    }

    async fn remove_device(&self, user: UserId, device: DeviceId) -> StoreResult<bool> {
        devices::remove(&self.pool, user, device).await
    }

    async fn create_session(
        &self,
        token_hash: &[u8; 32],
        user: UserId,
        device: DeviceId,
        expires_at: TimestampMs,
    ) -> StoreResult<()> {
        devices::create_session(&self.pool, token_hash, user, device, expires_at).await
    }

    async fn session(&self, token_hash: &[u8; 32]) -> StoreResult<Option<SessionRecord>> {
        devices::session(&self.pool, token_hash).await
    }

    async fn delete_session(&self, token_hash: &[u8; 32]) -> StoreResult<()> {
        devices::delete_session(&self.pool, token_hash).await
    }

    async fn delete_sessions_except(
        &self,
        user: UserId,
        keep: Option<&[u8; 32]>,
    ) -> StoreResult<()> {
        devices::delete_sessions_except(&self.pool, user, keep).await
    }

    async fn purge_expired_sessions(&self, cutoff: TimestampMs, limit: u32) -> StoreResult<u64> {
        error::delete_batch(
            &self.pool,
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
        contacts::pair(&self.pool, a, b).await
    }

    async fn write_contact_pair(
        &self,
        a: UserId,
        b: UserId,
        a_side: ContactSide,
        b_side: ContactSide,
        now: TimestampMs,
    ) -> StoreResult<ContactVersion> {
        let written = contacts::write_pair(&self.pool, a, b, None, (a_side, b_side), now).await?;
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
        contacts::write_pair(&self.pool, a, b, Some(expected), (a_side, b_side), now).await
    }

    async fn contacts(
        &self,
        owner: UserId,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ContactEntry>> {
        contacts::list(&self.pool, owner, after, limit).await
    }

    async fn incoming_requests(&self, owner: UserId, limit: u32) -> StoreResult<u64> {
        contacts::incoming_requests(&self.pool, owner, limit).await
    }

    async fn contact_links(&self, owner: UserId) -> StoreResult<Vec<ContactLink>> {
        contacts::links(&self.pool, owner).await
    }

    async fn search(&self, query: &str, exclude: UserId, limit: u32) -> StoreResult<Vec<UserHit>> {
        accounts::search(&self.pool, query, exclude, limit).await
    }

    async fn store_message(
        &self,
        from: UserId,
        to: UserId,
        text: &str,
        now: TimestampMs,
    ) -> StoreResult<StoredMessage> {
        messages::store(&self.pool, from, to, text, now).await
    }

    async fn undelivered(
        &self,
        user: UserId,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        messages::undelivered(&self.pool, user, after, limit).await
    }

    async fn undelivered_counts(
        &self,
        from: UserId,
        to: UserId,
        limit: u32,
    ) -> StoreResult<UndeliveredCounts> {
        messages::undelivered_counts(&self.pool, from, to, limit).await
    }

    async fn recent_sends(
        &self,
        from: UserId,
        since: TimestampMs,
        limit: u32,
    ) -> StoreResult<RecentSends> {
        messages::recent_sends(&self.pool, from, since, limit).await
    }

    async fn mark_delivered(
        &self,
        recipient: UserId,
        ids: &[MessageId],
        now: TimestampMs,
    ) -> StoreResult<Vec<StoredMessage>> {
        messages::mark_delivered(&self.pool, recipient, ids, now).await
    }

    async fn mark_read(
        &self,
        recipient: UserId,
        ids: &[MessageId],
        now: TimestampMs,
    ) -> StoreResult<Vec<StoredMessage>> {
        messages::mark_read(&self.pool, recipient, ids, now).await
    }

    async fn unread(
        &self,
        user: UserId,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        messages::unread(&self.pool, user, after, limit).await
    }

    async fn history(
        &self,
        a: UserId,
        b: UserId,
        limit: u32,
        before: Option<MessageId>,
    ) -> StoreResult<Vec<StoredMessage>> {
        messages::history(&self.pool, a, b, limit, before).await
    }

    async fn purge_messages_before(&self, cutoff: TimestampMs, limit: u32) -> StoreResult<u64> {
        error::delete_batch(&self.pool, messages::PURGE, cutoff, limit, "purging old messages")
            .await
    }

    async fn record_missed_call(
        &self,
        callee: UserId,
        caller: UserId,
        call_id: &str,
        at: TimestampMs,
    ) -> StoreResult<StoredMissedCall> {
        missed_calls::record(&self.pool, callee, caller, call_id, at).await
    }

    async fn undelivered_missed_calls(
        &self,
        callee: UserId,
        limit: u32,
    ) -> StoreResult<Vec<StoredMissedCall>> {
        missed_calls::undelivered(&self.pool, callee, limit).await
    }

    async fn ack_missed_calls(&self, callee: UserId, ids: &[i64]) -> StoreResult<u64> {
        missed_calls::ack(&self.pool, callee, ids).await
    }

    async fn purge_missed_calls_before(&self, cutoff: TimestampMs, limit: u32) -> StoreResult<u64> {
        error::delete_batch(
            &self.pool,
            missed_calls::PURGE,
            cutoff,
            limit,
            "purging old missed calls",
        )
        .await
    }

    async fn record_call(&self, record: NewCallRecord) -> StoreResult<i64> {
        call_log::record(&self.pool, record).await
    }

    async fn set_call_path(&self, owner: UserId, call_id: &str, path: &str) -> StoreResult<bool> {
        call_log::set_path(&self.pool, owner, call_id, path).await
    }

    async fn call_log(
        &self,
        owner: UserId,
        missed_only: bool,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<CallRecord>> {
        call_log::list(&self.pool, owner, missed_only, before, limit).await
    }

    async fn purge_call_log_before(&self, cutoff: TimestampMs, limit: u32) -> StoreResult<u64> {
        error::delete_batch(&self.pool, call_log::PURGE, cutoff, limit, "purging old call log")
            .await
    }

    async fn user_ids(&self, usernames: &[String]) -> StoreResult<Vec<(String, UserId)>> {
        import::user_ids(&self.pool, usernames).await
    }

    async fn import_accounts(
        &self,
        accounts: &[peerline_store::ImportAccount],
        now: TimestampMs,
    ) -> StoreResult<Vec<Option<peerline_store::ImportedAccount>>> {
        import::import_accounts(&self.pool, accounts, now).await
    }

    async fn import_contacts(
        &self,
        pairs: &[(UserId, UserId)],
        now: TimestampMs,
    ) -> StoreResult<u64> {
        import::import_contacts(&self.pool, pairs, now).await
    }

    async fn token_login(
        &self,
        token_hash: &[u8; 32],
    ) -> StoreResult<Option<peerline_store::TokenLogin>> {
        token_login::read(&self.pool, token_hash).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// A database (or server, or role) configured with `synchronous_commit = off` would
    /// acknowledge commits before they are on disk: the store's sessions turn it back on.
    #[tokio::test]
    async fn sessions_commit_durably_whatever_the_database_says() {
        #![allow(clippy::unwrap_used, clippy::expect_used)]
        let server = peerline_testkit::postgres::TestPostgres::start().expect("a PostgreSQL");
        let url = server.create_database("lazy").unwrap();
        server.psql("lazy", "ALTER DATABASE lazy SET synchronous_commit = off").unwrap();
        let store = PostgresStore::connect(&url).await.unwrap();
        for _ in 0..3 {
            let setting: String =
                sqlx::query_scalar("SHOW synchronous_commit").fetch_one(&store.pool).await.unwrap();
            assert_eq!(setting, "on");
        }
        store.close().await;
    }

    /// The supernode connects from spawned tasks, so the future must be `Send` (sqlx's
    /// migrator over a single connection is not, for every lifetime; over the pool it is).
    #[test]
    fn connect_can_run_in_a_spawned_task() {
        let connecting = PostgresStore::connect("postgres://nobody@127.0.0.1:1/none");
        assert_send(&connecting);
    }
}
