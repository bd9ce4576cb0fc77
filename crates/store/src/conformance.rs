//! The shared conformance suite: the contract of [`Store`], as test functions every backend runs
//! against itself.
//!
//! Each `pub async fn` here takes a fresh, empty store and panics with a message naming the
//! broken promise. A backend runs them all either with [`store_conformance_tests!`] (one
//! `#[tokio::test]` per function, so failures are reported one by one) or with [`run_all`]:
//!
//! ```ignore
//! async fn fresh() -> (SqliteStore, tempfile::TempDir) { /* open a store in a new temp dir */ }
//! peerline_store::store_conformance_tests!(fresh);
//! ```
//!
//! [`store_conformance_tests!`]: crate::store_conformance_tests
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::future::Future;

use crate::{
    Account, ContactEntry, ContactRow, ContactSide, ContactState, MessageId, NewAccount, Status,
    Store, StoreError, StoreResult, StoredMessage, StoredMissedCall, TimestampMs, UserHit, UserId,
};

/// Calls `$callback!` (a macro of this crate) with `$args` followed by `;` and the name of every
/// test function in the suite: the one list of tests, so the macro and [`run_all`] cannot differ.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_conformance_tests {
    ($callback:ident ! ($($args:tt)*)) => {
        $crate::$callback! { $($args)* ;
            create_account_and_look_up,
            username_unique_regardless_of_case,
            set_password_hash_replaces_hash,
            set_status_round_trips,
            set_profile_updates_only_given_fields,
            upsert_device_same_key_updates_device,
            upsert_device_new_key_adds_device,
            upsert_device_same_key_other_user_is_separate,
            devices_oldest_first,
            remove_device_deletes_its_sessions,
            remove_device_unknown_or_foreign_is_false,
            sessions_create_find_delete,
            delete_sessions_except_keeps_one,
            contact_pair_write_read_delete,
            contacts_ordered_by_username_with_names,
            mutual_contacts_only_both_accepted,
            search_by_username_prefix,
            search_display_name_substring_ignores_case,
            search_filters_orders_and_limits,
            search_treats_wildcards_literally,
            store_message_ids_increase,
            message_ids_not_reused_after_purge,
            undelivered_oldest_first_with_limit,
            mark_delivered_returns_only_newly_delivered,
            mark_read_returns_only_newly_read,
            unread_oldest_first_with_limit,
            history_both_directions_with_paging,
            purge_messages_before_cutoff,
            record_missed_call_is_idempotent,
            undelivered_missed_calls_oldest_first_with_limit,
            ack_missed_calls_only_own_newly_acked,
            purge_missed_calls_before_cutoff,
        }
    };
}

/// Defines one `#[tokio::test]` per conformance test function, each on a fresh store.
///
/// `$make` names an `async fn() -> (S, G)` where `S: Store` is a fresh, empty store and `G` is
/// anything that must outlive it (a temp dir, a container handle; `()` if nothing). The calling
/// crate needs `tokio` (with the `macros` and `rt` features) as a dev-dependency.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path) => {
        $crate::__with_conformance_tests!(__conformance_test_fns!($make));
    };
}

/// Expands to the `#[tokio::test]` functions of [`store_conformance_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test_fns {
    ($make:path ; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test]
            async fn $name() {
                let (store, guard) = $make().await;
                $crate::conformance::$name(&store).await;
                drop(store);
                drop(guard);
            }
        )*
    };
}

/// Expands to the body of [`run_all`].
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_run_all {
    ($make:ident ; $($name:ident),* $(,)?) => {
        $(
            {
                let (store, guard) = $make().await;
                $crate::conformance::$name(&store).await;
                drop(store);
                drop(guard);
            }
        )*
    };
}

/// Runs every test of the suite in turn, each on a fresh store from `make`.
///
/// `make` returns the store and a guard that must outlive it (a temp dir; `()` if nothing). Panics
/// at the first broken contract. Prefer [`store_conformance_tests!`](crate::store_conformance_tests),
/// which reports each test separately.
pub async fn run_all<F, Fut, S, G>(mut make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = (S, G)>,
    S: Store,
{
    __with_conformance_tests!(__conformance_run_all!(make));
}

// ---- helpers ----

/// A time that is plainly not "now", so a backend that reads the clock gets caught.
const T0: TimestampMs = 1_000_000;

fn new_account(username: &str, display_name: &str) -> NewAccount {
    NewAccount {
        username: username.to_owned(),
        display_name: display_name.to_owned(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$hash-of-{username}"),
    }
}

async fn account(store: &dyn Store, username: &str, display_name: &str) -> Account {
    store
        .create_account(new_account(username, display_name), T0)
        .await
        .unwrap_or_else(|e| panic!("create_account({username:?}) failed: {e}"))
}

async fn reload(store: &dyn Store, id: UserId) -> Account {
    store
        .account_by_id(id)
        .await
        .unwrap_or_else(|e| panic!("account_by_id({id}) failed: {e}"))
        .unwrap_or_else(|| panic!("account_by_id({id}) found nothing for an existing account"))
}

async fn send(
    store: &dyn Store,
    from: UserId,
    to: UserId,
    text: &str,
    now: TimestampMs,
) -> StoredMessage {
    store
        .store_message(from, to, text, now)
        .await
        .unwrap_or_else(|e| panic!("store_message({from} -> {to}, {text:?}) failed: {e}"))
}

async fn search(store: &dyn Store, query: &str, exclude: UserId, limit: u32) -> Vec<String> {
    store
        .search(query, exclude, limit)
        .await
        .unwrap_or_else(|e| panic!("search({query:?}) failed: {e}"))
        .into_iter()
        .map(|hit| hit.username)
        .collect()
}

fn ids(messages: &[StoredMessage]) -> Vec<MessageId> {
    messages.iter().map(|m| m.id).collect()
}

fn sorted(mut ids: Vec<MessageId>) -> Vec<MessageId> {
    ids.sort_unstable();
    ids
}

/// An id no account has: larger than every id handed out.
fn unknown_user(accounts: &[&Account]) -> UserId {
    accounts.iter().map(|a| a.id).max().unwrap_or(0) + 1000
}

/// An empty list of ids, typed (a bare `[]` is ambiguous next to serde_json's `PartialEq` impls).
const NO_IDS: [i64; 0] = [];

/// Unwraps a store call's result, naming the call in the panic.
fn ok<T>(call: &str, result: StoreResult<T>) -> T {
    result.unwrap_or_else(|e| panic!("{call} failed: {e}"))
}

/// Writes both rows of a pair at `T0`.
async fn link(store: &dyn Store, a: UserId, b: UserId, a_side: ContactSide, b_side: ContactSide) {
    ok("write_contact_pair", store.write_contact_pair(a, b, a_side, b_side, T0).await);
}

/// One side of a contact pair.
fn side(state: ContactState, greeting: Option<&str>) -> ContactSide {
    Some((state, greeting.map(str::to_owned)))
}

/// `mutual_contacts`, sorted (the trait promises no order).
async fn mutual(store: &dyn Store, owner: UserId) -> Vec<UserId> {
    let mut ids = ok("mutual_contacts", store.mutual_contacts(owner).await);
    ids.sort_unstable();
    ids
}

/// Ids of `undelivered(user, limit)`.
async fn undelivered_ids(store: &dyn Store, user: UserId, limit: u32) -> Vec<MessageId> {
    ids(&ok("undelivered", store.undelivered(user, limit).await))
}

/// Ids of `unread(user, limit)`.
async fn unread_ids(store: &dyn Store, user: UserId, limit: u32) -> Vec<MessageId> {
    ids(&ok("unread", store.unread(user, limit).await))
}

/// `history(a, b, limit, before)`.
async fn history(
    store: &dyn Store,
    a: UserId,
    b: UserId,
    limit: u32,
    before: Option<MessageId>,
) -> Vec<StoredMessage> {
    ok("history", store.history(a, b, limit, before).await)
}

/// `mark_delivered`, sorted by id (the trait promises no order).
async fn delivered(
    store: &dyn Store,
    to: UserId,
    ids: &[MessageId],
    now: TimestampMs,
) -> Vec<StoredMessage> {
    let mut marked = ok("mark_delivered", store.mark_delivered(to, ids, now).await);
    marked.sort_by_key(|m| m.id);
    marked
}

/// `mark_read`, sorted by id (the trait promises no order).
async fn read(
    store: &dyn Store,
    to: UserId,
    ids: &[MessageId],
    now: TimestampMs,
) -> Vec<StoredMessage> {
    let mut marked = ok("mark_read", store.mark_read(to, ids, now).await);
    marked.sort_by_key(|m| m.id);
    marked
}

/// `record_missed_call(callee, caller, call_id, at)`.
async fn miss(
    store: &dyn Store,
    callee: UserId,
    caller: UserId,
    call_id: &str,
    at: TimestampMs,
) -> StoredMissedCall {
    ok("record_missed_call", store.record_missed_call(callee, caller, call_id, at).await)
}

/// Ids of `undelivered_missed_calls(callee, limit)`.
async fn missed_ids(store: &dyn Store, callee: UserId, limit: u32) -> Vec<i64> {
    let calls = ok("undelivered_missed_calls", store.undelivered_missed_calls(callee, limit).await);
    calls.iter().map(|c| c.id).collect()
}

/// `ack_missed_calls(callee, ids)`.
async fn ack(store: &dyn Store, callee: UserId, ids: &[i64]) -> u64 {
    ok("ack_missed_calls", store.ack_missed_calls(callee, ids).await)
}

/// The message with this id in `messages`.
fn find(messages: &[StoredMessage], id: MessageId) -> &StoredMessage {
    messages.iter().find(|m| m.id == id).unwrap_or_else(|| panic!("message {id} missing"))
}

// ---- accounts ----

/// `create_account` returns the stored account (online and discoverable by default), and both
/// lookups find exactly it; unknown names and ids find nothing.
pub async fn create_account_and_look_up(store: &dyn Store) {
    let bob = store
        .create_account(new_account("bob", "Bob Builder"), T0)
        .await
        .expect("create_account(\"bob\") on an empty store");
    assert_eq!(bob.username, "bob", "created account's username");
    assert_eq!(bob.display_name, "Bob Builder", "created account's display name");
    assert_eq!(bob.password_hash, new_account("bob", "").password_hash, "created password hash");
    assert_eq!(bob.created_at, T0, "created_at must be the `now` passed in");
    assert_eq!(bob.status, Status::Online, "a new account's status is online");
    assert!(bob.discoverable, "a new account is discoverable");

    let by_name = store.account_by_username("bob").await.expect("account_by_username");
    assert_eq!(by_name.as_ref(), Some(&bob), "account_by_username(\"bob\") finds the account");
    assert_eq!(reload(store, bob.id).await, bob, "account_by_id finds the same account");

    let carol = account(store, "carol", "Carol").await;
    assert_ne!(carol.id, bob.id, "two accounts have distinct ids");
    assert_eq!(reload(store, carol.id).await, carol);
    assert_eq!(reload(store, bob.id).await, bob, "creating carol left bob unchanged");

    assert_eq!(store.account_by_username("nobody").await.expect("lookup"), None);
    assert_eq!(store.account_by_username("bo").await.expect("lookup"), None, "no prefix match");
    let unknown = unknown_user(&[&bob, &carol]);
    assert_eq!(store.account_by_id(unknown).await.expect("lookup"), None, "unknown id");
}

/// A second account with an existing username, in any letter case, is `UsernameTaken` and
/// changes nothing.
pub async fn username_unique_regardless_of_case(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await;
    for name in ["alice", "ALICE", "Alice", "aLiCe"] {
        match store.create_account(new_account(name, "Impostor"), T0 + 1).await {
            Err(StoreError::UsernameTaken) => {}
            other => panic!(
                "create_account({name:?}) after \"alice\" exists must fail with UsernameTaken, \
                 got {other:?}"
            ),
        }
    }
    assert_eq!(
        store.account_by_username("alice").await.expect("lookup"),
        Some(alice.clone()),
        "rejected duplicates must not change the existing account"
    );
    let other = account(store, "alice2", "Alice Two").await;
    assert_ne!(other.id, alice.id, "a different name is still free");
}

/// `set_password_hash` replaces the hash of that account only.
pub async fn set_password_hash_replaces_hash(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await;
    let bob = account(store, "bob", "Bob").await;
    store.set_password_hash(alice.id, "$argon2id$new").await.expect("set_password_hash");
    let reloaded = reload(store, alice.id).await;
    assert_eq!(reloaded.password_hash, "$argon2id$new", "password hash after set_password_hash");
    assert_eq!(reloaded, Account { password_hash: "$argon2id$new".into(), ..alice });
    assert_eq!(reload(store, bob.id).await, bob, "another account's hash is untouched");
}

/// Every status survives a write and a read, and only for that account.
pub async fn set_status_round_trips(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await;
    let bob = account(store, "bob", "Bob").await;
    for status in [Status::Away, Status::Busy, Status::Invisible, Status::Online, Status::Busy] {
        store.set_status(alice.id, status).await.expect("set_status");
        assert_eq!(reload(store, alice.id).await.status, status, "status after set_status");
        let by_name = store.account_by_username("alice").await.expect("lookup").expect("alice");
        assert_eq!(by_name.status, status, "account_by_username sees the status too");
    }
    assert_eq!(reload(store, bob.id).await.status, Status::Online, "bob's status is untouched");
}

/// `set_profile` changes the fields given and keeps the others; search follows the new name.
pub async fn set_profile_updates_only_given_fields(store: &dyn Store) {
    let alice = account(store, "alice", "Alice Liddell").await;
    let bob = account(store, "bob", "Bob").await;

    store.set_profile(alice.id, Some("Queen Alice"), None).await.expect("set_profile name");
    let a = reload(store, alice.id).await;
    assert_eq!(a.display_name, "Queen Alice", "display name after set_profile(Some, None)");
    assert!(a.discoverable, "set_profile(Some(name), None) must keep discoverable");

    store.set_profile(alice.id, None, Some(false)).await.expect("set_profile discoverable");
    let a = reload(store, alice.id).await;
    assert!(!a.discoverable, "discoverable after set_profile(None, Some(false))");
    assert_eq!(a.display_name, "Queen Alice", "set_profile(None, Some) must keep the name");

    store.set_profile(alice.id, None, None).await.expect("set_profile(None, None)");
    assert_eq!(reload(store, alice.id).await, a, "set_profile(None, None) changes nothing");

    store.set_profile(alice.id, Some("Alice L."), Some(true)).await.expect("set_profile both");
    let a = reload(store, alice.id).await;
    assert_eq!((a.display_name.as_str(), a.discoverable), ("Alice L.", true), "both fields set");
    assert_eq!(
        a,
        Account { display_name: "Alice L.".into(), ..alice.clone() },
        "set_profile touches nothing else"
    );
    assert_eq!(reload(store, bob.id).await, bob, "another account is untouched");

    // Search matches the current display name, not an old one.
    assert_eq!(search(store, "l.", bob.id, 10).await, ["alice"], "search by the new name");
    assert!(search(store, "liddell", bob.id, 10).await.is_empty(), "old name must not match");
    assert!(search(store, "queen", bob.id, 10).await.is_empty(), "old name must not match");
}

// ---- devices and sessions ----

/// Upserting a key the account already has keeps the device id and creation time and updates
/// the name and last-seen time.
pub async fn upsert_device_same_key_updates_device(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await;
    let key = [7u8; 32];
    let first = store.upsert_device(alice.id, &key, "laptop", T0 + 10).await.expect("upsert");
    assert_eq!(first.user_id, alice.id, "device owner");
    assert_eq!(first.public_key, key, "device key");
    assert_eq!(first.name, "laptop", "device name");
    assert_eq!((first.created_at, first.last_seen_at), (T0 + 10, T0 + 10), "device times");

    let again = store.upsert_device(alice.id, &key, "work laptop", T0 + 99).await.expect("upsert");
    assert_eq!(again.id, first.id, "the same key for the same account is the same device");
    assert_eq!(again.name, "work laptop", "upsert updates the name");
    assert_eq!(again.last_seen_at, T0 + 99, "upsert updates last_seen_at");
    assert_eq!(again.created_at, T0 + 10, "upsert keeps created_at");
    assert_eq!(again.public_key, key);
    assert_eq!(store.devices(alice.id).await.expect("devices"), [again], "one device, updated");
}

/// A key the account does not have yet is a new device.
pub async fn upsert_device_new_key_adds_device(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await;
    let laptop = store.upsert_device(alice.id, &[1; 32], "laptop", T0).await.expect("upsert");
    let phone = store.upsert_device(alice.id, &[2; 32], "laptop", T0 + 1).await.expect("upsert");
    assert_ne!(phone.id, laptop.id, "a different key is a different device, even with one name");
    assert_eq!(phone.public_key, [2; 32]);
    assert_eq!(store.devices(alice.id).await.expect("devices"), [laptop, phone]);
}

/// The same key registered by two accounts makes two devices, one per account.
pub async fn upsert_device_same_key_other_user_is_separate(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await;
    let bob = account(store, "bob", "Bob").await;
    let key = [9u8; 32];
    let hers = store.upsert_device(alice.id, &key, "shared", T0).await.expect("upsert");
    let his = store.upsert_device(bob.id, &key, "shared too", T0 + 5).await.expect("upsert");
    assert_ne!(his.id, hers.id, "the same key under another account is a separate device");
    assert_eq!(his.user_id, bob.id, "bob's device belongs to bob");
    assert_eq!(store.devices(alice.id).await.expect("devices"), [hers], "alice's device unchanged");
    assert_eq!(store.devices(bob.id).await.expect("devices"), [his]);
}

/// `devices` lists the account's devices only, oldest first, and re-upserting an old device
/// does not move it.
pub async fn devices_oldest_first(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await;
    let bob = account(store, "bob", "Bob").await;
    assert!(store.devices(alice.id).await.expect("devices").is_empty(), "no devices yet");
    let first = store.upsert_device(alice.id, &[1; 32], "a", T0 + 10).await.expect("upsert");
    store.upsert_device(bob.id, &[4; 32], "bob's", T0 + 15).await.expect("upsert");
    let b = store.upsert_device(alice.id, &[2; 32], "b", T0 + 20).await.expect("upsert");
    let c = store.upsert_device(alice.id, &[3; 32], "c", T0 + 30).await.expect("upsert");
    let a = store.upsert_device(alice.id, &[1; 32], "a2", T0 + 40).await.expect("upsert");
    assert_eq!(a.id, first.id, "re-upsert keeps the device");
    assert_eq!(
        store.devices(alice.id).await.expect("devices"),
        [a, b, c],
        "devices oldest first (by first login), other accounts' devices excluded"
    );
}

/// Removing a device deletes its sessions and no others.
pub async fn remove_device_deletes_its_sessions(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await;
    let laptop = store.upsert_device(alice.id, &[1; 32], "laptop", T0).await.expect("upsert");
    let phone = store.upsert_device(alice.id, &[2; 32], "phone", T0).await.expect("upsert");
    let expires = T0 + 1_000_000;
    store.create_session(&[0xa1; 32], alice.id, laptop.id, expires).await.expect("session");
    store.create_session(&[0xa2; 32], alice.id, laptop.id, expires).await.expect("session");
    store.create_session(&[0xb1; 32], alice.id, phone.id, expires).await.expect("session");

    assert!(store.remove_device(alice.id, laptop.id).await.expect("remove_device"), "removed");
    assert_eq!(store.devices(alice.id).await.expect("devices"), [phone]);
    for hash in [[0xa1; 32], [0xa2; 32]] {
        assert_eq!(
            store.session(&hash).await.expect("session"),
            None,
            "a removed device's sessions are deleted"
        );
    }
    assert!(
        store.session(&[0xb1; 32]).await.expect("session").is_some(),
        "another device's session survives"
    );
    assert!(
        !store.remove_device(alice.id, laptop.id).await.expect("remove_device"),
        "removing it again finds nothing"
    );
}

/// Removing an unknown device, or another account's, returns `false` and deletes nothing.
pub async fn remove_device_unknown_or_foreign_is_false(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await;
    let bob = account(store, "bob", "Bob").await;
    let his = store.upsert_device(bob.id, &[5; 32], "bob's", T0).await.expect("upsert");
    store.create_session(&[0x55; 32], bob.id, his.id, T0 + 1000).await.expect("session");

    assert!(
        !store.remove_device(alice.id, his.id).await.expect("remove_device"),
        "alice cannot remove bob's device"
    );
    let his_id = his.id;
    assert_eq!(store.devices(bob.id).await.expect("devices"), [his], "bob's device stays");
    assert!(store.session(&[0x55; 32]).await.expect("session").is_some(), "bob's session stays");
    assert!(
        !store.remove_device(alice.id, his_id + 1000).await.expect("remove_device"),
        "an unknown device id is false"
    );
}

/// Sessions are found by token hash (expired ones too) until deleted.
pub async fn sessions_create_find_delete(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await;
    let laptop = store.upsert_device(alice.id, &[1; 32], "laptop", T0).await.expect("upsert");
    let live = [0x11; 32];
    let expired = [0x22; 32];
    store.create_session(&live, alice.id, laptop.id, T0 + 5000).await.expect("create_session");
    store.create_session(&expired, alice.id, laptop.id, T0 - 1).await.expect("create_session");

    let found = store.session(&live).await.expect("session").expect("the session just created");
    assert_eq!(
        (found.user_id, found.device_id, found.expires_at),
        (alice.id, laptop.id, T0 + 5000),
        "session record"
    );
    let old = store.session(&expired).await.expect("session");
    assert_eq!(old.map(|s| s.expires_at), Some(T0 - 1), "an expired session is still returned");
    assert_eq!(store.session(&[0x33; 32]).await.expect("session"), None, "unknown hash");

    store.delete_session(&live).await.expect("delete_session");
    assert_eq!(store.session(&live).await.expect("session"), None, "deleted session is gone");
    assert!(store.session(&expired).await.expect("session").is_some(), "the other one stays");
    store.delete_session(&live).await.expect("deleting a missing session is not an error");
}

/// `delete_sessions_except` deletes the account's sessions but `keep`, and only its own.
pub async fn delete_sessions_except_keeps_one(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await;
    let bob = account(store, "bob", "Bob").await;
    let a1 = store.upsert_device(alice.id, &[1; 32], "a1", T0).await.expect("upsert");
    let a2 = store.upsert_device(alice.id, &[2; 32], "a2", T0).await.expect("upsert");
    let b1 = store.upsert_device(bob.id, &[3; 32], "b1", T0).await.expect("upsert");
    let far = T0 + 1_000_000;
    for (hash, user, device) in [
        ([0xa1; 32], alice.id, a1.id),
        ([0xa2; 32], alice.id, a2.id),
        ([0xa3; 32], alice.id, a2.id),
        ([0xb1; 32], bob.id, b1.id),
    ] {
        store.create_session(&hash, user, device, far).await.expect("create_session");
    }
    let exists = |hash: [u8; 32]| async move { store.session(&hash).await.unwrap().is_some() };

    store.delete_sessions_except(alice.id, Some(&[0xa2; 32])).await.expect("delete_except");
    assert!(exists([0xa2; 32]).await, "the kept session survives");
    assert!(!exists([0xa1; 32]).await && !exists([0xa3; 32]).await, "the others are deleted");
    assert!(exists([0xb1; 32]).await, "another account's sessions are untouched");

    store.delete_sessions_except(alice.id, None).await.expect("delete_except(None)");
    assert!(!exists([0xa2; 32]).await, "keep = None deletes every session of the account");
    assert!(exists([0xb1; 32]).await, "another account's sessions are untouched");
}

// ---- contacts ----

/// Both rows of a pair are written, read and deleted together.
pub async fn contact_pair_write_read_delete(store: &dyn Store) {
    use ContactState::*;
    let (a, b) = (account(store, "alice", "A").await.id, account(store, "bob", "B").await.id);
    let carol = account(store, "carol", "C").await.id;
    let pair = |x, y| async move { ok("contact_pair", store.contact_pair(x, y).await) };
    let row = |owner, peer, state, message: Option<&str>, updated_at| ContactRow {
        owner,
        peer,
        state,
        message: message.map(str::to_owned),
        updated_at,
    };
    assert_eq!(pair(a, b).await, (None, None), "no rows yet");

    let hi = Some("hi, it's alice");
    let written = store.write_contact_pair(a, b, side(Outgoing, hi), side(Incoming, hi), T0 + 1);
    ok("write_contact_pair", written.await);
    let a_row = row(a, b, Outgoing, hi, T0 + 1);
    let b_row = row(b, a, Incoming, hi, T0 + 1);
    assert_eq!(
        pair(a, b).await,
        (Some(a_row.clone()), Some(b_row.clone())),
        "contact_pair(a, b) is (a's row about b, b's row about a), updated_at = now"
    );
    assert_eq!(pair(b, a).await, (Some(b_row), Some(a_row)), "contact_pair(b, a) swaps them");
    assert_eq!(pair(a, carol).await, (None, None), "another pair is empty");

    let written =
        store.write_contact_pair(b, a, side(Accepted, None), side(Accepted, None), T0 + 2);
    ok("write_contact_pair", written.await);
    assert_eq!(
        pair(a, b).await,
        (Some(row(a, b, Accepted, None, T0 + 2)), Some(row(b, a, Accepted, None, T0 + 2))),
        "rewriting a pair replaces state, greeting and updated_at"
    );

    let written = store.write_contact_pair(a, b, None, side(Blocked, None), T0 + 3);
    ok("write_contact_pair", written.await);
    assert_eq!(
        pair(a, b).await,
        (None, Some(row(b, a, Blocked, None, T0 + 3))),
        "None deletes that side only"
    );

    ok("write_contact_pair", store.write_contact_pair(a, b, None, None, T0 + 4).await);
    assert_eq!(pair(a, b).await, (None, None), "both sides deleted");
    let again = store.write_contact_pair(a, b, None, None, T0 + 5).await;
    ok("deleting rows that do not exist", again);
}

/// `contacts` lists the owner's rows only, joined with the peers' names, ordered by username.
pub async fn contacts_ordered_by_username_with_names(store: &dyn Store) {
    use ContactState::*;
    let owner = account(store, "owner", "The Owner").await;
    let zed = account(store, "zed", "Zed Zebra").await;
    let amy = account(store, "amy", "Amy Ant").await;
    let mike = account(store, "mike", "Mike Moose").await;
    let other = account(store, "other", "Someone Else").await;
    let contacts = |owner| async move { ok("contacts", store.contacts(owner).await) };
    assert_eq!(contacts(owner.id).await, [], "empty list");

    link(store, owner.id, zed.id, side(Accepted, None), side(Accepted, None)).await;
    link(store, owner.id, amy.id, side(Incoming, Some("hello")), side(Outgoing, Some("hello")))
        .await;
    link(store, owner.id, mike.id, side(Blocked, None), None).await;
    link(store, other.id, zed.id, side(Accepted, None), side(Accepted, None)).await;

    let entry = |who: &Account, state, message: Option<&str>| ContactEntry {
        peer: who.id,
        username: who.username.clone(),
        display_name: who.display_name.clone(),
        state,
        message: message.map(str::to_owned),
    };
    assert_eq!(
        contacts(owner.id).await,
        [
            entry(&amy, Incoming, Some("hello")),
            entry(&mike, Blocked, None),
            entry(&zed, Accepted, None)
        ],
        "contacts ordered by username, with names, state and greeting; no other owner's rows"
    );
    assert_eq!(contacts(mike.id).await, [], "the owner's row about mike is not mike's row");

    ok("set_profile", store.set_profile(zed.id, Some("Zed Renamed"), None).await);
    let list = contacts(owner.id).await;
    assert_eq!(
        list.last().map(|e| e.display_name.as_str()),
        Some("Zed Renamed"),
        "contacts joins the peer's current display name"
    );
}

/// `mutual_contacts` returns only peers with an accepted row on both sides.
pub async fn mutual_contacts_only_both_accepted(store: &dyn Store) {
    use ContactState::*;
    let me = account(store, "me", "Me").await.id;
    let both = account(store, "both", "Both").await.id;
    let both2 = account(store, "both2", "Both Two").await.id;
    let mine_only = account(store, "mineonly", "Mine Only").await.id;
    let theirs_only = account(store, "theirsonly", "Theirs Only").await.id;
    let pending = account(store, "pending", "Pending").await.id;
    let blocked = account(store, "blocked", "Blocked").await.id;
    let _no_rows = account(store, "norows", "No Rows").await.id;
    let accepted = || side(Accepted, None);

    link(store, me, both, accepted(), accepted()).await;
    link(store, both2, me, accepted(), accepted()).await;
    link(store, me, mine_only, accepted(), None).await;
    link(store, me, theirs_only, None, accepted()).await;
    link(store, me, pending, side(Outgoing, None), side(Incoming, None)).await;
    link(store, me, blocked, accepted(), side(Blocked, None)).await;
    link(store, both, both2, accepted(), accepted()).await; // not involving `me`

    assert_eq!(mutual(store, me).await, sorted(vec![both, both2]), "accepted on both sides only");
    assert_eq!(mutual(store, both).await, sorted(vec![me, both2]), "seen from the other side");
    assert_eq!(mutual(store, pending).await, NO_IDS, "a pending request is not mutual");
    assert_eq!(mutual(store, mine_only).await, NO_IDS, "a one-sided row is not mutual");
}

// ---- directory ----

/// A query matches usernames that start with it, not ones that merely contain it.
pub async fn search_by_username_prefix(store: &dyn Store) {
    let me = account(store, "me", "Me").await;
    account(store, "alice", "Wonderland").await;
    account(store, "alfred", "Butler").await;
    account(store, "malice", "Villain").await;
    account(store, "bob", "Builder").await;
    assert_eq!(search(store, "al", me.id, 10).await, ["alfred", "alice"], "username prefix");
    assert_eq!(search(store, "alic", me.id, 10).await, ["alice"], "longer prefix");
    assert!(
        search(store, "lic", me.id, 10).await.is_empty(),
        "a username that contains the query but does not start with it does not match"
    );
    assert_eq!(search(store, "bob", me.id, 10).await, ["bob"], "the whole username");
    assert!(search(store, "bobby", me.id, 10).await.is_empty(), "longer than any name");
}

/// A query matches display names that contain it anywhere, ignoring case, Unicode included.
pub async fn search_display_name_substring_ignores_case(store: &dyn Store) {
    let me = account(store, "me", "Me").await;
    account(store, "zoe", "Zoë ÅNGSTRÖM").await;
    account(store, "kate", "Kate Bishop").await;
    account(store, "hawkeye", "Clint BARTON").await;
    assert_eq!(search(store, "bish", me.id, 10).await, ["kate"], "display name substring");
    assert_eq!(search(store, "barton", me.id, 10).await, ["hawkeye"], "upper-case display name");
    assert_eq!(search(store, "clint b", me.id, 10).await, ["hawkeye"], "with a space");
    assert_eq!(search(store, "ångström", me.id, 10).await, ["zoe"], "non-ASCII folded");
    assert_eq!(search(store, "zoë", me.id, 10).await, ["zoe"], "non-ASCII substring");
    assert_eq!(search(store, "ngstr", me.id, 10).await, ["zoe"], "middle of a word");
    assert!(search(store, "angstrom", me.id, 10).await.is_empty(), "no accent folding");
}

/// Search leaves out non-discoverable accounts and `exclude`, orders by username and stops at
/// `limit`.
pub async fn search_filters_orders_and_limits(store: &dyn Store) {
    let me = account(store, "sam", "Sam Searcher").await;
    for name in ["sara", "sabine", "sal", "saoirse", "sasha"] {
        account(store, name, "Sailor").await;
    }
    let hidden = account(store, "sandy", "Hidden Sailor").await;
    store.set_profile(hidden.id, None, Some(false)).await.expect("set_profile");

    let all = search(store, "sa", me.id, 100).await;
    assert_eq!(
        all,
        ["sabine", "sal", "saoirse", "sara", "sasha"],
        "ordered by username, without the asker or the non-discoverable account"
    );
    assert_eq!(
        search(store, "sa", me.id, 2).await,
        ["sabine", "sal"],
        "at most `limit`, first by username"
    );
    assert_eq!(
        search(store, "sailor", me.id, 3).await,
        ["sabine", "sal", "saoirse"],
        "limit on name matches"
    );
    // Hits carry id, username and display name; excluding someone else brings the asker back.
    let sara = store.account_by_username("sara").await.expect("lookup").expect("sara exists");
    let hits = store.search("sam", sara.id, 100).await.expect("search");
    assert_eq!(
        hits,
        [UserHit { id: me.id, username: "sam".into(), display_name: "Sam Searcher".into() }],
        "a hit carries the account's id, username and display name"
    );
    assert_eq!(
        search(store, "sa", sara.id, 100).await,
        ["sabine", "sal", "sam", "saoirse", "sasha"],
        "`exclude` leaves out only that account"
    );
    assert!(search(store, "sandy", me.id, 100).await.is_empty(), "hidden by username too");
    assert!(search(store, "hidden", me.id, 100).await.is_empty(), "hidden by display name too");
    store.set_profile(hidden.id, None, Some(true)).await.expect("set_profile");
    assert_eq!(search(store, "sandy", me.id, 100).await, ["sandy"], "discoverable again");
}

/// `%`, `_` and `\` in a query match only themselves, never act as wildcards.
pub async fn search_treats_wildcards_literally(store: &dyn Store) {
    let me = account(store, "me", "Me").await;
    account(store, "a_b1", "Snake_Case").await;
    account(store, "axb1", "Axe").await;
    account(store, "percent", "100% sure").await;
    account(store, "plain", "Plain Jane").await;
    account(store, "bslash", r"back\slash").await;
    assert_eq!(
        search(store, "a_", me.id, 10).await,
        ["a_b1"],
        "`_` is not a one-character wildcard"
    );
    assert_eq!(search(store, "_", me.id, 10).await, ["a_b1"], "`_` matches only an underscore");
    assert_eq!(search(store, "%", me.id, 10).await, ["percent"], "`%` matches only a percent sign");
    assert_eq!(search(store, "0% s", me.id, 10).await, ["percent"], "literal `%` inside a query");
    assert!(
        search(store, "1%e", me.id, 10).await.is_empty(),
        "`%` is not a many-character wildcard"
    );
    assert_eq!(search(store, "\\", me.id, 10).await, ["bslash"], "a backslash matches itself");
    assert_eq!(search(store, "k\\s", me.id, 10).await, ["bslash"], "a backslash inside a query");
    assert!(search(store, "\\%", me.id, 10).await.is_empty(), "backslash-percent is literal too");
}

// ---- messages ----

/// Stored messages carry both parties' ids and names, the store time and no receipts; ids grow
/// in storage order.
pub async fn store_message_ids_increase(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let first = send(store, alice, bob, "hello bob", T0 + 1).await;
    let expected = StoredMessage {
        id: first.id,
        from_id: alice,
        from: "alice".into(),
        to_id: bob,
        to: "bob".into(),
        text: "hello bob".into(),
        sent_at: T0 + 1,
        delivered_at: None,
        read_at: None,
    };
    assert_eq!(first, expected, "stored message");
    let mut last = first.id;
    for (i, (from, to)) in [(bob, alice), (alice, bob), (alice, alice)].into_iter().enumerate() {
        let text = format!("message {i} ✓ ünïcödé");
        let m = send(store, from, to, &text, T0 + 2).await;
        assert!(m.id > last, "message ids increase in storage order ({} after {last})", m.id);
        assert_eq!(m.text, text, "text round-trips");
        last = m.id;
    }
}

/// Purging the newest messages does not let their ids be handed out again.
pub async fn message_ids_not_reused_after_purge(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    send(store, alice, bob, "one", T0).await;
    let newest = send(store, alice, bob, "two", T0).await;
    assert_eq!(ok("purge", store.purge_messages_before(T0 + 1).await), 2, "both purged");
    let next = send(store, alice, bob, "three", T0 + 2).await;
    assert!(
        next.id > newest.id,
        "a message stored after a purge gets a new, larger id ({} after {})",
        next.id,
        newest.id
    );
}

/// `undelivered` returns the user's undelivered messages, oldest first, at most `limit`.
pub async fn undelivered_oldest_first_with_limit(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let carol = account(store, "carol", "Carol").await.id;
    let m1 = send(store, alice, bob, "1", T0).await;
    send(store, alice, carol, "to carol", T0).await;
    let m2 = send(store, carol, bob, "2", T0 + 1).await;
    send(store, bob, alice, "from bob", T0 + 1).await;
    let m3 = send(store, alice, bob, "3", T0 + 2).await;

    let all = ok("undelivered", store.undelivered(bob, 10).await);
    assert_eq!(all, [m1.clone(), m2.clone(), m3.clone()], "bob's messages only, oldest first");
    assert_eq!(undelivered_ids(store, bob, 2).await, [m1.id, m2.id], "limit keeps the oldest");
    delivered(store, bob, &[m1.id], T0 + 5).await;
    assert_eq!(undelivered_ids(store, bob, 10).await, [m2.id, m3.id], "delivered ones drop out");
    read(store, bob, &[m3.id], T0 + 6).await;
    assert_eq!(undelivered_ids(store, bob, 10).await, [m2.id], "read implies delivered");
    assert_eq!(undelivered_ids(store, carol + 1000, 10).await, NO_IDS, "unknown user");
}

/// `mark_delivered` stamps the recipient's messages once and returns only those it changed;
/// other users' messages are ignored.
pub async fn mark_delivered_returns_only_newly_delivered(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let m1 = send(store, alice, bob, "1", T0).await.id;
    let m2 = send(store, alice, bob, "2", T0).await.id;
    let m3 = send(store, alice, bob, "3", T0).await.id;
    let to_alice = send(store, bob, alice, "to alice", T0).await.id;

    assert_eq!(delivered(store, bob, &[], T0 + 1).await, [], "no ids, nothing marked");
    let first = delivered(store, bob, &[m2, m1], T0 + 10).await;
    assert_eq!(ids(&first), [m1, m2], "both newly delivered");
    for m in &first {
        assert_eq!(m.delivered_at, Some(T0 + 10), "delivered_at is the `now` passed in");
        assert_eq!(m.read_at, None, "delivery does not mark read");
        assert_eq!((m.from.as_str(), m.to.as_str()), ("alice", "bob"), "names joined in");
    }

    let unknown = to_alice + 1000;
    let second = delivered(store, bob, &[m1, m3, to_alice, unknown, m3], T0 + 20).await;
    assert_eq!(ids(&second), [m3], "only the newly delivered one, once; others' ids ignored");
    assert_eq!(second.first().and_then(|m| m.delivered_at), Some(T0 + 20));

    let now = history(store, alice, bob, 10, None).await;
    assert_eq!(find(&now, m1).delivered_at, Some(T0 + 10), "a second mark keeps the first time");
    assert_eq!(find(&now, to_alice).delivered_at, None, "bob cannot mark alice's message");
    assert_eq!(undelivered_ids(store, alice, 10).await, [to_alice], "alice's queue untouched");
}

/// `mark_read` stamps read (and delivered, where missing) once and returns only the messages
/// newly read; other users' messages are ignored.
pub async fn mark_read_returns_only_newly_read(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let early = send(store, alice, bob, "delivered earlier", T0).await.id;
    let fresh = send(store, alice, bob, "never delivered", T0).await.id;
    let later = send(store, alice, bob, "later", T0).await.id;
    let to_alice = send(store, bob, alice, "to alice", T0).await.id;
    delivered(store, bob, &[early], T0 + 5).await;

    assert_eq!(read(store, bob, &[], T0 + 1).await, [], "no ids, nothing marked");
    let first = read(store, bob, &[fresh, early], T0 + 10).await;
    assert_eq!(ids(&first), sorted(vec![early, fresh]), "both newly read");
    assert_eq!(find(&first, fresh).read_at, Some(T0 + 10), "read_at is the `now` passed in");
    assert_eq!(find(&first, fresh).delivered_at, Some(T0 + 10), "read sets a missing delivery");
    assert_eq!(find(&first, early).delivered_at, Some(T0 + 5), "an earlier delivery is kept");
    assert_eq!(find(&first, early).read_at, Some(T0 + 10));

    let second = read(store, bob, &[fresh, later, to_alice, later], T0 + 20).await;
    assert_eq!(ids(&second), [later], "only the newly read one, once; others' ids ignored");
    assert_eq!(unread_ids(store, alice, 10).await, [to_alice], "alice's message untouched");
    assert_eq!(unread_ids(store, bob, 10).await, NO_IDS, "all of bob's read");
    let now = history(store, alice, bob, 10, None).await;
    assert_eq!(find(&now, fresh).read_at, Some(T0 + 10), "a second mark keeps the first time");
    assert_eq!(delivered(store, bob, &[fresh], T0 + 30).await, [], "read is already delivered");
}

/// `unread` returns the user's unread messages, oldest first, at most `limit`, delivered or not.
pub async fn unread_oldest_first_with_limit(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let m1 = send(store, alice, bob, "1", T0).await.id;
    let m2 = send(store, alice, bob, "2", T0 + 1).await.id;
    send(store, bob, alice, "from bob", T0 + 1).await;
    let m3 = send(store, alice, bob, "3", T0 + 2).await.id;
    delivered(store, bob, &[m1, m2], T0 + 3).await;

    let unread = ok("unread", store.unread(bob, 10).await);
    assert_eq!(ids(&unread), [m1, m2, m3], "delivered-but-unread messages are unread");
    assert_eq!(find(&unread, m1).delivered_at, Some(T0 + 3), "with their receipts");
    assert_eq!(unread_ids(store, bob, 2).await, [m1, m2], "limit keeps the oldest");
    read(store, bob, &[m2], T0 + 4).await;
    assert_eq!(unread_ids(store, bob, 10).await, [m1, m3], "read ones drop out");
}

/// `history` returns both directions of one conversation: the newest `limit` below `before`,
/// oldest first.
pub async fn history_both_directions_with_paging(store: &dyn Store) {
    let a = account(store, "alice", "Alice").await.id;
    let b = account(store, "bob", "Bob").await.id;
    let c = account(store, "carol", "Carol").await.id;
    let m1 = send(store, a, b, "1", T0).await;
    let m2 = send(store, b, a, "2", T0 + 1).await;
    let m3 = send(store, a, c, "other conversation", T0 + 2).await;
    let m4 = send(store, a, b, "4", T0 + 3).await;
    let m5 = send(store, b, a, "5", T0 + 4).await;
    send(store, c, b, "other conversation", T0 + 5).await;
    let page = |x, y, limit, before| async move { ids(&history(store, x, y, limit, before).await) };
    let (m1, m2, m3, m4, m5) = (m1.id, m2.id, m3.id, m4.id, m5.id);

    assert_eq!(page(a, b, 10, None).await, [m1, m2, m4, m5], "both directions, oldest first");
    assert_eq!(page(b, a, 10, None).await, [m1, m2, m4, m5], "the same from b's side");
    assert_eq!(page(a, b, 2, None).await, [m4, m5], "the newest `limit`, oldest first");
    assert_eq!(page(a, b, 2, Some(m4)).await, [m1, m2], "`before` pages back");
    assert_eq!(page(a, b, 10, Some(m5)).await, [m1, m2, m4], "`before` itself is excluded");
    assert_eq!(page(a, b, 1, Some(m2)).await, [m1], "the last page");
    assert_eq!(page(a, b, 10, Some(m1)).await, NO_IDS, "nothing before the first");
    assert_eq!(page(c, a, 10, None).await, [m3], "another conversation");
    let full = history(store, a, b, 1, None).await;
    assert_eq!(full.first().map(|m| (m.from.as_str(), m.to.as_str())), Some(("bob", "alice")));
}

/// `purge_messages_before` deletes messages stored strictly before the cutoff and counts them.
pub async fn purge_messages_before_cutoff(store: &dyn Store) {
    let a = account(store, "alice", "Alice").await.id;
    let b = account(store, "bob", "Bob").await.id;
    send(store, a, b, "old", T0).await;
    let m2 = send(store, b, a, "at cutoff", T0 + 10).await.id;
    let m3 = send(store, a, b, "new", T0 + 20).await.id;
    let purge = |cutoff| async move { ok("purge", store.purge_messages_before(cutoff).await) };

    assert_eq!(purge(T0).await, 0, "nothing stored before T0");
    assert_eq!(purge(T0 + 10).await, 1, "one message stored strictly before the cutoff");
    let left = ids(&history(store, a, b, 10, None).await);
    assert_eq!(left, [m2, m3], "a message stored at the cutoff is kept");
    assert_eq!(undelivered_ids(store, b, 10).await, [m3], "purged from the offline queue too");
    assert_eq!(purge(T0 + 10).await, 0, "purging again finds nothing");
    assert_eq!(purge(T0 + 1000).await, 2, "the rest");
    assert_eq!(history(store, a, b, 10, None).await, [], "all gone");
}

// ---- missed calls ----

/// A recorded missed call carries the call id, both parties' ids, the caller's username and the
/// time passed in; recording the same call for the same callee again returns that row unchanged.
pub async fn record_missed_call_is_idempotent(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let carol = account(store, "carol", "Carol").await.id;
    let first = miss(store, bob, alice, "call-7f3a", T0 + 1).await;
    let expected = StoredMissedCall {
        id: first.id,
        call_id: "call-7f3a".into(),
        caller_id: alice,
        caller: "alice".into(),
        callee_id: bob,
        at: T0 + 1,
    };
    assert_eq!(first, expected, "stored missed call, with the caller's username");

    let again = miss(store, bob, alice, "call-7f3a", T0 + 1).await;
    assert_eq!(again, first, "recording the same call again returns the same row");
    let other_args = miss(store, bob, carol, "call-7f3a", T0 + 50).await;
    assert_eq!(other_args, first, "a repeat keeps the first row's caller and time");
    assert_eq!(missed_ids(store, bob, 10).await, [first.id], "recorded once");

    assert_eq!(ack(store, bob, &[first.id]).await, 1);
    let after_ack = miss(store, bob, alice, "call-7f3a", T0 + 60).await;
    assert_eq!(after_ack, first, "a repeat after acknowledgement returns the row unchanged");
    assert_eq!(missed_ids(store, bob, 10).await, NO_IDS, "and does not queue it again");

    // The same call id is another row for another callee (a call that rang several users).
    let for_carol = miss(store, carol, alice, "call-7f3a", T0 + 1).await;
    assert_ne!(for_carol.id, first.id, "one row per (callee, call id)");
    assert_eq!((for_carol.callee_id, for_carol.caller.as_str()), (carol, "alice"));
    let next = miss(store, bob, carol, "call-8b21", T0 + 2).await;
    assert!(next.id > for_carol.id, "ids increase in storage order");
    assert_eq!(next.caller, "carol", "caller username joined in");
}

/// `undelivered_missed_calls` returns the callee's unacknowledged calls, oldest first, at most
/// `limit`.
pub async fn undelivered_missed_calls_oldest_first_with_limit(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let carol = account(store, "carol", "Carol").await.id;
    let c2 = miss(store, bob, alice, "c2", T0 + 2).await;
    miss(store, carol, alice, "to carol", T0).await;
    let c1 = miss(store, bob, carol, "c1", T0 + 1).await;
    miss(store, alice, bob, "to alice", T0).await;
    let c3 = miss(store, bob, alice, "c3", T0 + 3).await;

    let all = ok("undelivered_missed_calls", store.undelivered_missed_calls(bob, 10).await);
    assert_eq!(all, [c1.clone(), c2.clone(), c3.clone()], "bob's calls only, oldest first");
    assert_eq!(missed_ids(store, bob, 2).await, [c1.id, c2.id], "limit keeps the oldest");
    assert_eq!(missed_ids(store, bob, 0).await, NO_IDS, "limit 0");
    assert_eq!(missed_ids(store, carol + 1000, 10).await, NO_IDS, "unknown user");
}

/// `ack_missed_calls` acknowledges only the callee's own calls, each once, and counts only those
/// newly acknowledged; acknowledged calls are no longer listed.
pub async fn ack_missed_calls_only_own_newly_acked(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let c1 = miss(store, bob, alice, "c1", T0).await.id;
    let c2 = miss(store, bob, alice, "c2", T0 + 1).await.id;
    let c3 = miss(store, bob, alice, "c3", T0 + 2).await.id;
    let to_alice = miss(store, alice, bob, "to alice", T0).await.id;

    assert_eq!(ack(store, bob, &[]).await, 0, "no ids, nothing acknowledged");
    assert_eq!(ack(store, bob, &[c2, c1, c2]).await, 2, "both newly acknowledged, each once");
    assert_eq!(missed_ids(store, bob, 10).await, [c3], "acknowledged calls drop out");
    let unknown = to_alice.max(c3) + 1000;
    assert_eq!(
        ack(store, bob, &[c1, c3, to_alice, unknown]).await,
        1,
        "only the one newly acknowledged; others' and unknown ids ignored"
    );
    assert_eq!(missed_ids(store, bob, 10).await, NO_IDS, "all of bob's acknowledged");
    assert_eq!(missed_ids(store, alice, 10).await, [to_alice], "bob cannot ack alice's call");
    assert_eq!(ack(store, alice, &[c1, to_alice]).await, 1, "alice acks her own only");
    assert_eq!(missed_ids(store, alice, 10).await, NO_IDS);
}

/// `purge_missed_calls_before` deletes calls that rang strictly before the cutoff, acknowledged
/// or not, and counts them; ids are not handed out again.
pub async fn purge_missed_calls_before_cutoff(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let old_acked = miss(store, bob, alice, "old acked", T0).await.id;
    miss(store, bob, alice, "old", T0 + 1).await;
    let at_cutoff = miss(store, bob, alice, "at cutoff", T0 + 10).await.id;
    let newest = miss(store, alice, bob, "new", T0 + 20).await.id;
    ack(store, bob, &[old_acked]).await;
    let purge = |cutoff| async move { ok("purge", store.purge_missed_calls_before(cutoff).await) };

    assert_eq!(purge(T0).await, 0, "nothing rang before T0");
    assert_eq!(purge(T0 + 10).await, 2, "both calls before the cutoff, acknowledged or not");
    assert_eq!(missed_ids(store, bob, 10).await, [at_cutoff], "a call at the cutoff is kept");
    assert_eq!(ack(store, bob, &[old_acked]).await, 0, "a purged call cannot be acknowledged");
    assert_eq!(purge(T0 + 10).await, 0, "purging again finds nothing");
    assert_eq!(purge(T0 + 1000).await, 2, "the rest");
    assert_eq!(missed_ids(store, alice, 10).await, NO_IDS, "all gone");
    let next = miss(store, bob, alice, "after purge", T0 + 30).await;
    assert!(next.id > newest, "ids are not reused after a purge ({} after {newest})", next.id);
}
