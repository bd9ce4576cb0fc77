//! Storage for a supernode: accounts, devices, session tokens, contacts, messages, missed calls
//! and call history.
//!
//! [`Store`] is the one interface the supernode uses; each backend (SQLite now, PostgreSQL for
//! clustering later) implements it and runs the same [`conformance`] suite. Every method that
//! returns `Ok` has made its write durable: the supernode acknowledges a client only after that.
//!
//! Times are passed in by the caller (milliseconds since the Unix epoch) so that backends never
//! read a clock and tests control time.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[cfg(feature = "conformance")]
pub mod conformance;

use async_trait::async_trait;
pub use peerline_wire::{ContactState, DeviceId, MessageId, Status, TimestampMs};

/// An account's numeric id.
pub type UserId = i64;

/// Device ids are drawn from `[1, DEVICE_ID_END)`: 2<sup>53</sup>, so that a JavaScript client can
/// hold any of them in a `Number` exactly.
pub const DEVICE_ID_END: DeviceId = 1 << 53;

/// A new device id, uniformly random in `[1, DEVICE_ID_END)`.
///
/// Device ids are random rather than counted so that an id says nothing about how many devices
/// (of anyone) exist, and two accounts' consecutive devices do not get neighbouring ids. The
/// backend retries with another draw if the id was ever issued before (which at 2<sup>53</sup>
/// values is astronomically rare), so an id, once issued, is never issued again.
pub fn random_device_id() -> DeviceId {
    use rand::Rng;
    rand::rngs::OsRng.gen_range(1..DEVICE_ID_END)
}

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create_account` with a username that exists (compared case-insensitively).
    #[error("username already taken")]
    UsernameTaken,
    /// The backend failed (I/O, corruption, a broken schema). The write did not happen.
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// The backend is briefly unable to answer (connection lost or refused, pool exhausted,
    /// lock or serialization conflict, server shutting down). The write did not happen; the
    /// same call may succeed if retried after a short wait.
    #[error("storage backend unavailable, try again: {0}")]
    Retryable(String),
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Retryable(_))
    }
}

/// Result alias for storage calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Id.
    pub id: UserId,
    /// Canonical lower-case username.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// PHC string of the Argon2id hash.
    pub password_hash: String,
    /// The status the user chose (kept across logins); `online` for a new account.
    pub status: Status,
    /// Whether directory search may return this account; `true` for a new account.
    pub discoverable: bool,
    /// Creation time.
    pub created_at: TimestampMs,
}

/// What `create_account` needs.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Canonical lower-case username (already validated).
    pub username: String,
    /// Display name (already validated).
    pub display_name: String,
    /// PHC string of the Argon2id hash.
    pub password_hash: String,
}

/// A device registered to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Id.
    pub id: DeviceId,
    /// Owner.
    pub user_id: UserId,
    /// Ed25519 public key.
    pub public_key: [u8; 32],
    /// Name it gave.
    pub name: String,
    /// First login.
    pub created_at: TimestampMs,
    /// Last login.
    pub last_seen_at: TimestampMs,
}

/// A resumable session, found by the SHA-256 of its token (the token itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Owner.
    pub user_id: UserId,
    /// The device it was issued to.
    pub device_id: DeviceId,
    /// After this the token is refused.
    pub expires_at: TimestampMs,
}

/// The order of contact changes: every write of a pair takes a version larger than any version
/// the store gave before (to any pair), so of two changes of one pair the later one has the
/// larger version. Listeners that hear of changes out of order keep the newest.
pub type ContactVersion = i64;

/// One row of a user's contact list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRow {
    /// The list owner.
    pub owner: UserId,
    /// The other user.
    pub peer: UserId,
    /// State from the owner's point of view.
    pub state: ContactState,
    /// The greeting of a pending request.
    pub message: Option<String>,
    /// When the row was last written.
    pub updated_at: TimestampMs,
    /// The version of the pair change that wrote the row.
    pub version: ContactVersion,
}

/// What one user's rows say about a peer, for presence: whether the two are mutual contacts,
/// as of which change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactLink {
    /// The other user.
    pub peer: UserId,
    /// Both rows are `accepted`.
    pub mutual: bool,
    /// The version of the newest change of the pair.
    pub version: ContactVersion,
}

/// The states a pair is expected to be in for a conditional write: `(a about b, b about a)`,
/// `None` for a missing row.
pub type ContactStates = (Option<ContactState>, Option<ContactState>);

/// A contact list entry joined with the peer's names, for listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactEntry {
    /// The other user's id.
    pub peer: UserId,
    /// Their username.
    pub username: String,
    /// Their display name.
    pub display_name: String,
    /// State from the owner's point of view.
    pub state: ContactState,
    /// Greeting of a pending request.
    pub message: Option<String>,
}

/// What to write for one side of a contact pair: `None` deletes that side's row.
pub type ContactSide = Option<(ContactState, Option<String>)>;

/// A stored instant message, with both parties' usernames joined in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Id, increasing in storage order.
    pub id: MessageId,
    /// Sender id.
    pub from_id: UserId,
    /// Sender username.
    pub from: String,
    /// Recipient id.
    pub to_id: UserId,
    /// Recipient username.
    pub to: String,
    /// Text.
    pub text: String,
    /// Store time.
    pub sent_at: TimestampMs,
    /// First delivery acknowledgement by a recipient device.
    pub delivered_at: Option<TimestampMs>,
    /// Read time.
    pub read_at: Option<TimestampMs>,
}

/// A missed call as stored: a call that rang a user and was not answered, kept until one of the
/// user's devices acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMissedCall {
    /// Id, increasing in storage order and never reused.
    pub id: i64,
    /// The call's id from call setup; unique per callee.
    pub call_id: String,
    /// Caller id.
    pub caller_id: UserId,
    /// Caller username.
    pub caller: String,
    /// Callee id (the user who missed the call).
    pub callee_id: UserId,
    /// When the call rang.
    pub at: TimestampMs,
}

/// One party's record of a call that ended, as the supernode writes it (both caller and callee
/// get a row when both are users of the network).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCallRecord {
    /// The call's id from call setup; one record per (owner, call_id).
    pub call_id: String,
    /// Whose call log the record is in.
    pub owner: UserId,
    /// The other party.
    pub peer: UserId,
    /// Whether the owner placed the call.
    pub outgoing: bool,
    /// When the call was placed (the invite).
    pub started_at: TimestampMs,
    /// When it was answered; `None` if it never was.
    pub answered_at: Option<TimestampMs>,
    /// When it ended.
    pub ended_at: TimestampMs,
    /// Why it ended (`hangup`, `declined`, `no_answer`, ...), as the supernode names it.
    pub end_reason: String,
    /// The media path the owner's client reported (`direct`, `relay`, ...), if known yet.
    pub path: Option<String>,
}

/// A row of a user's call log, with the other party's username joined in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// Id, increasing in storage order and never reused (the paging key of
    /// [`Store::call_log`]).
    pub id: i64,
    /// The call's id from call setup.
    pub call_id: String,
    /// The other party's username.
    pub peer: String,
    /// The other party's id.
    pub peer_id: UserId,
    /// Whether the owner placed the call.
    pub outgoing: bool,
    /// When the call was placed.
    pub started_at: TimestampMs,
    /// When it was answered; `None` if it never was.
    pub answered_at: Option<TimestampMs>,
    /// When it ended.
    pub ended_at: TimestampMs,
    /// Why it ended.
    pub end_reason: String,
    /// The media path the owner's client reported, if it did.
    pub path: Option<String>,
}

/// A sender's recent messages, as [`Store::recent_sends`] counts them for a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecentSends {
    /// How many were counted (at most the `limit` asked for).
    pub count: u64,
    /// When the oldest of those counted was stored; `None` when none was.
    pub oldest: Option<TimestampMs>,
}

/// Messages waiting for a recipient's devices, as [`Store::undelivered_counts`] counts them for
/// the mailbox caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UndeliveredCounts {
    /// From the one sender asked about.
    pub from_sender: u64,
    /// From anyone.
    pub total: u64,
}

/// A directory search hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserHit {
    /// Id.
    pub id: UserId,
    /// Username.
    pub username: String,
    /// Display name.
    pub display_name: String,
}

/// Accounts one [`Store::import_accounts`] call should take at most: one transaction of a few
/// thousand rows, short enough not to hold a database's writer for long.
pub const IMPORT_BATCH_ACCOUNTS: usize = 1_000;

/// Pairs one [`Store::import_contacts`] call should take at most (PostgreSQL takes one advisory
/// lock per pair in the transaction, and its lock table is shared by every session).
pub const IMPORT_BATCH_PAIRS: usize = 1_000;

/// A device of an account being imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportDevice {
    /// Ed25519 public key.
    pub public_key: [u8; 32],
    /// Name, as a login would have stored it (no control characters, at most 64 characters).
    pub name: String,
}

/// A session of an account being imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSession {
    /// SHA-256 of the token's text.
    pub token_hash: [u8; 32],
    /// The device it is bound to: an index into the account's [`ImportAccount::devices`].
    pub device: usize,
    /// After this the token is refused.
    pub expires_at: TimestampMs,
}

/// An account to import with its devices and sessions, as a registration and logins would have
/// stored them.
#[derive(Debug, Clone)]
pub struct ImportAccount {
    /// The account (canonical username, validated display name, Argon2id PHC string).
    pub account: NewAccount,
    /// Its devices, distinct keys.
    pub devices: Vec<ImportDevice>,
    /// Its sessions.
    pub sessions: Vec<ImportSession>,
}

/// What [`Store::import_accounts`] created for one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedAccount {
    /// The new account's id.
    pub id: UserId,
    /// Its canonical username.
    pub username: String,
    /// The ids its devices got, in the order of [`ImportAccount::devices`].
    pub device_ids: Vec<DeviceId>,
}

/// Durable state of a supernode. All methods are atomic; a returned `Ok` means durable.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- accounts ----

    /// Creates an account; `UsernameTaken` if the name exists in any letter case.
    async fn create_account(&self, account: NewAccount, now: TimestampMs) -> StoreResult<Account>;
    /// Looks an account up by canonical username.
    async fn account_by_username(&self, username: &str) -> StoreResult<Option<Account>>;
    /// Looks an account up by id.
    async fn account_by_id(&self, id: UserId) -> StoreResult<Option<Account>>;
    /// Replaces the password hash.
    async fn set_password_hash(&self, id: UserId, password_hash: &str) -> StoreResult<()>;
    /// Stores the chosen presence status.
    async fn set_status(&self, id: UserId, status: Status) -> StoreResult<()>;
    /// Updates display name and/or discoverability; `None` leaves a field as it is.
    async fn set_profile(
        &self,
        id: UserId,
        display_name: Option<&str>,
        discoverable: Option<bool>,
    ) -> StoreResult<()>;

    // ---- devices and sessions ----

    /// Registers a device key for the account, or, if that key is already registered to it,
    /// updates its name and `last_seen_at`. Returns the device.
    ///
    /// A new device gets a random id in `[1, DEVICE_ID_END)` (see [`random_device_id`]) that no
    /// device of any account ever had: ids are never reused, not even after
    /// [`Store::remove_device`], so a contact's key pinned for an id can never be confused with
    /// a later device's.
    async fn upsert_device(
        &self,
        user: UserId,
        public_key: &[u8; 32],
        name: &str,
        now: TimestampMs,
    ) -> StoreResult<Device>;
    /// The account's devices, oldest first.
    async fn devices(&self, user: UserId) -> StoreResult<Vec<Device>>;
    /// Deletes a device of the account and all its sessions; `false` if there was none. Its id
    /// stays retired: it is never given to another device.
    async fn remove_device(&self, user: UserId, device: DeviceId) -> StoreResult<bool>;
    /// Stores a session, keyed by the SHA-256 of its token.
    async fn create_session(
        &self,
        token_hash: &[u8; 32],
        user: UserId,
        device: DeviceId,
        expires_at: TimestampMs,
    ) -> StoreResult<()>;
    /// Finds a session by token hash (expired ones too; the caller checks `expires_at`).
    async fn session(&self, token_hash: &[u8; 32]) -> StoreResult<Option<SessionRecord>>;
    /// Deletes one session.
    async fn delete_session(&self, token_hash: &[u8; 32]) -> StoreResult<()>;
    /// Deletes every session of the account except `keep`.
    async fn delete_sessions_except(
        &self,
        user: UserId,
        keep: Option<&[u8; 32]>,
    ) -> StoreResult<()>;
    /// Deletes at most `limit` sessions that expired before `cutoff`; returns how many. One
    /// short statement per call, so that a large purge, called until it returns less than
    /// `limit`, leaves room for other writes in between.
    async fn purge_expired_sessions(&self, cutoff: TimestampMs, limit: u32) -> StoreResult<u64>;

    // ---- contacts ----

    /// Both rows of a pair: `(a's row about b, b's row about a)`.
    async fn contact_pair(
        &self,
        a: UserId,
        b: UserId,
    ) -> StoreResult<(Option<ContactRow>, Option<ContactRow>)>;
    /// Writes both rows of a pair in one transaction (`None` deletes that row), whatever they
    /// were; returns the change's version. For imports and tests: request handlers use
    /// [`Store::update_contact_pair`].
    async fn write_contact_pair(
        &self,
        a: UserId,
        b: UserId,
        a_side: ContactSide,
        b_side: ContactSide,
        now: TimestampMs,
    ) -> StoreResult<ContactVersion>;
    /// Compare-and-set of a pair: writes both rows in one transaction only if they are still in
    /// the `expected` states, and returns the change's version; `None` (nothing written) if
    /// either row changed since it was read. Concurrent calls on one pair, from any number of
    /// processes, behave as if they ran one after the other.
    async fn update_contact_pair(
        &self,
        a: UserId,
        b: UserId,
        expected: ContactStates,
        a_side: ContactSide,
        b_side: ContactSide,
        now: TimestampMs,
    ) -> StoreResult<Option<ContactVersion>>;
    /// The owner's contact list, ordered by username: the first `limit` entries whose username
    /// sorts after `after` (all from the start without it), so a long list is read page by page.
    async fn contacts(
        &self,
        owner: UserId,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ContactEntry>>;
    /// How many users have a request pending with the owner (rows of the owner's in state
    /// `incoming`), counted up to `limit`: the cost of the count stays bounded however many
    /// there are.
    async fn incoming_requests(&self, owner: UserId, limit: u32) -> StoreResult<u64>;
    /// For every user the owner has a row about, or who has a row about the owner: whether the
    /// two are mutual contacts, and the version of the pair's newest change. Ordered by peer.
    async fn contact_links(&self, owner: UserId) -> StoreResult<Vec<ContactLink>>;

    // ---- directory ----

    /// Discoverable accounts whose username starts with `query` or whose display name contains
    /// it (case-insensitive; `query` is already lower-case), excluding `exclude`, ordered by
    /// username, at most `limit`.
    async fn search(&self, query: &str, exclude: UserId, limit: u32) -> StoreResult<Vec<UserHit>>;

    // ---- messages ----

    /// Stores a message and returns it with its id.
    async fn store_message(
        &self,
        from: UserId,
        to: UserId,
        text: &str,
        now: TimestampMs,
    ) -> StoreResult<StoredMessage>;
    /// Messages to `user` that no device has acknowledged, oldest first, at most `limit`; with
    /// `after`, only those with a larger id (the next page).
    async fn undelivered(
        &self,
        user: UserId,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>>;
    /// Messages to `to` that no device of `to` acknowledged: from `from`, and from anyone. Each
    /// count stops at `limit`, so its cost stays bounded however many there are.
    async fn undelivered_counts(
        &self,
        from: UserId,
        to: UserId,
        limit: u32,
    ) -> StoreResult<UndeliveredCounts>;
    /// The newest messages `from` stored at or after `since` (to anyone), at most `limit` of
    /// them: how many, and when the oldest of those was stored. With `limit` the most a rate
    /// allows in the window, `count == limit` means the window is full, and it has room again
    /// once `oldest` leaves it.
    async fn recent_sends(
        &self,
        from: UserId,
        since: TimestampMs,
        limit: u32,
    ) -> StoreResult<RecentSends>;
    /// Marks messages to `recipient` delivered; returns only those that were not delivered before.
    /// Ids of messages to other users are ignored.
    async fn mark_delivered(
        &self,
        recipient: UserId,
        ids: &[MessageId],
        now: TimestampMs,
    ) -> StoreResult<Vec<StoredMessage>>;
    /// Marks messages to `recipient` read (and delivered, if they were not); returns only those
    /// newly marked read. Ids of messages to other users are ignored.
    async fn mark_read(
        &self,
        recipient: UserId,
        ids: &[MessageId],
        now: TimestampMs,
    ) -> StoreResult<Vec<StoredMessage>>;
    /// Messages to `user` not yet read, oldest first, at most `limit`; with `after`, only those
    /// with a larger id (the next page).
    async fn unread(
        &self,
        user: UserId,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>>;
    /// The conversation between `a` and `b` (both directions): the newest `limit` messages with
    /// id below `before` (if given), returned oldest first.
    async fn history(
        &self,
        a: UserId,
        b: UserId,
        limit: u32,
        before: Option<MessageId>,
    ) -> StoreResult<Vec<StoredMessage>>;
    /// Deletes at most `limit` messages stored before `cutoff` (delivered or not: this is
    /// retention); returns how many. One short statement per call: the caller repeats it until
    /// it returns less than `limit`, and other writes get their turn in between.
    async fn purge_messages_before(&self, cutoff: TimestampMs, limit: u32) -> StoreResult<u64>;

    // ---- missed calls ----

    /// Records a missed call for `callee`. Idempotent per (callee, call_id): recording the same
    /// call again returns the existing row unchanged (acknowledged or not).
    async fn record_missed_call(
        &self,
        callee: UserId,
        caller: UserId,
        call_id: &str,
        at: TimestampMs,
    ) -> StoreResult<StoredMissedCall>;
    /// Missed calls of `callee` that no device acknowledged yet, oldest first (by `at`, then by
    /// id), at most `limit`.
    async fn undelivered_missed_calls(
        &self,
        callee: UserId,
        limit: u32,
    ) -> StoreResult<Vec<StoredMissedCall>>;
    /// Acknowledges missed calls of `callee` (ids of other users' calls are ignored). Returns how
    /// many were newly acknowledged.
    async fn ack_missed_calls(&self, callee: UserId, ids: &[i64]) -> StoreResult<u64>;
    /// Deletes at most `limit` missed calls that rang before `cutoff` (acknowledged or not: this
    /// is retention, as for messages); returns how many. Batched like
    /// [`Store::purge_messages_before`].
    async fn purge_missed_calls_before(&self, cutoff: TimestampMs, limit: u32) -> StoreResult<u64>;

    // ---- call history ----

    /// Adds a record of an ended call to `record.owner`'s call log and returns its id.
    /// Idempotent per (owner, call_id): recording the same call again changes nothing and
    /// returns the existing record's id.
    async fn record_call(&self, record: NewCallRecord) -> StoreResult<i64>;
    /// Stores the media path the owner's client reports it used for the call (replacing an
    /// earlier report); `false` if the owner has no record of that call.
    async fn set_call_path(&self, owner: UserId, call_id: &str, path: &str) -> StoreResult<bool>;
    /// The owner's call log, newest first (by id), at most `limit` records; with `missed_only`,
    /// only incoming calls that were never answered; with `before`, only records with an id below
    /// it (the next page).
    async fn call_log(
        &self,
        owner: UserId,
        missed_only: bool,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<CallRecord>>;
    /// Deletes at most `limit` call records that ended before `cutoff`; returns how many.
    /// Batched like [`Store::purge_messages_before`].
    async fn purge_call_log_before(&self, cutoff: TimestampMs, limit: u32) -> StoreResult<u64>;

    /// Whether the backend answers now (for health checks): a round trip that reads nothing.
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Flushes and releases the backend at shutdown. Calls after it fail with `Backend`.
    async fn close(&self) {}

    // ---- bulk import (an operator's `peerline-supernode import`, the load generator) ----

    /// The ids of those `usernames` (canonical) that are accounts, in no particular order;
    /// names without an account are left out.
    async fn user_ids(&self, usernames: &[String]) -> StoreResult<Vec<(String, UserId)>>;

    /// Creates accounts with their devices and sessions in one transaction, storing exactly
    /// what [`Store::create_account`], [`Store::upsert_device`] and [`Store::create_session`]
    /// would (online, discoverable, `created_at`/`last_seen_at` = `now`; device ids drawn and
    /// retired as `upsert_device` draws them). An account whose username exists already (in any
    /// letter case) is skipped with its devices and sessions: `None` in its place of the result.
    ///
    /// Usernames must be distinct within `accounts` and every session's `device` must index one
    /// of its account's devices; otherwise, or if any row cannot be written, nothing is written
    /// and the error is `Backend`. Take at most [`IMPORT_BATCH_ACCOUNTS`] per call.
    async fn import_accounts(
        &self,
        accounts: &[ImportAccount],
        now: TimestampMs,
    ) -> StoreResult<Vec<Option<ImportedAccount>>>;

    /// Makes each pair mutual contacts in one transaction: both rows `accepted` without a
    /// greeting, as [`Store::write_contact_pair`] with two accepted sides would (whatever the
    /// rows were), each pair with a version of its own. `(a, b)` and `(b, a)` are the same
    /// pair and written once. Returns how many pairs were written. A pair of an account with
    /// itself or with an unknown id is a `Backend` error and nothing is written. Take at most
    /// [`IMPORT_BATCH_PAIRS`] per call.
    async fn import_contacts(
        &self,
        pairs: &[(UserId, UserId)],
        now: TimestampMs,
    ) -> StoreResult<u64>;

    // ---- token login ----

    /// The session with this token hash together with its account and the device it was issued
    /// to, in one read: what [`Store::session`], [`Store::account_by_id`] and [`Store::devices`]
    /// would say between them, for the reconnect path, where each round trip to the backend
    /// counts. `None` if no session has this hash (or its device does not belong to its
    /// account). Expired sessions are returned too: the caller checks `expires_at`.
    async fn token_login(&self, token_hash: &[u8; 32]) -> StoreResult<Option<TokenLogin>>;
}

/// What a token login needs to know, read at once by [`Store::token_login`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLogin {
    /// The session, found by its token hash.
    pub session: SessionRecord,
    /// The session's account.
    pub account: Account,
    /// The device the session was issued to (one of the account's).
    pub device: Device,
}
