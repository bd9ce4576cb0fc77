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

mod call_log;
mod contacts;
mod device_ids;
mod directory;
mod import;
mod messages;
mod token_login;

use std::future::Future;

pub use call_log::*;
pub use contacts::*;
pub use device_ids::*;
pub use directory::*;
pub use import::*;
pub use messages::*;
pub use token_login::*;

use crate::{
    Account, ContactEntry, ContactRow, ContactSide, ContactState, MessageId, NewAccount,
    RecentSends, Status, Store, StoreError, StoreResult, StoredMessage, StoredMissedCall,
    TimestampMs, UndeliveredCounts, UserHit, UserId,
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
            purge_expired_sessions_in_batches,
            removed_device_ids_are_never_issued_again,
            device_ids_are_within_53_bits,
            device_ids_say_nothing_about_other_accounts,
            contact_pair_write_read_delete,
            contacts_ordered_by_username_with_names,
            contacts_page_after_a_username,
            incoming_requests_counted_up_to_the_limit,
            contact_links_say_who_is_mutual_as_of_which_change,
            update_contact_pair_is_a_compare_and_set,
            concurrent_block_and_re_add_the_block_always_wins,
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
            undelivered_and_unread_page_after_an_id,
            undelivered_counts_per_sender_and_in_total,
            recent_sends_count_a_senders_window,
            history_both_directions_with_paging,
            purge_messages_before_cutoff,
            purge_messages_in_batches,
            record_missed_call_is_idempotent,
            undelivered_missed_calls_oldest_first_with_limit,
            ack_missed_calls_only_own_newly_acked,
            purge_missed_calls_before_cutoff,
            purge_missed_calls_in_batches,
            record_call_is_idempotent,
            call_log_newest_first_with_paging,
            call_log_missed_only,
            set_call_path_only_own_record,
            call_log_ids_not_reused_after_purge,
            purge_call_log_in_batches,
            import_accounts_stores_what_registration_and_login_store,
            import_contacts_stores_accepted_pairs,
            token_login_reads_session_account_and_device,
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

/// Ids of `undelivered(user, None, limit)`.
async fn undelivered_ids(store: &dyn Store, user: UserId, limit: u32) -> Vec<MessageId> {
    ids(&ok("undelivered", store.undelivered(user, None, limit).await))
}

/// Ids of `unread(user, None, limit)`.
async fn unread_ids(store: &dyn Store, user: UserId, limit: u32) -> Vec<MessageId> {
    ids(&ok("unread", store.unread(user, None, limit).await))
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

/// `purge_expired_sessions` deletes sessions that expired strictly before the cutoff, at most
/// `limit` per call, and nothing else.
pub async fn purge_expired_sessions_in_batches(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await;
    let laptop = store.upsert_device(alice.id, &[1; 32], "laptop", T0).await.expect("upsert");
    for i in 0..5u8 {
        let expires = T0 + i64::from(i);
        store.create_session(&[i; 32], alice.id, laptop.id, expires).await.expect("session");
    }
    store.create_session(&[0xee; 32], alice.id, laptop.id, T0 + 1000).await.expect("session");
    let purge = |cutoff, limit| async move {
        ok("purge_expired_sessions", store.purge_expired_sessions(cutoff, limit).await)
    };
    let exists = |hash: [u8; 32]| async move { store.session(&hash).await.unwrap().is_some() };

    assert_eq!(purge(T0, 10).await, 0, "nothing expired before T0");
    assert_eq!(purge(T0 + 4, 3).await, 3, "at most `limit` per call");
    assert_eq!(purge(T0 + 4, 3).await, 1, "the last one expired before the cutoff");
    assert_eq!(purge(T0 + 4, 3).await, 0, "then nothing");
    assert!(exists([4; 32]).await, "a session expiring at the cutoff is kept");
    assert!(exists([0xee; 32]).await, "a live session is kept");
    for i in 0..4u8 {
        assert!(!exists([i; 32]).await, "expired session {i} is gone");
    }
    assert_eq!(store.devices(alice.id).await.expect("devices").len(), 1, "devices stay");
}
