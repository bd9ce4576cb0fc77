//! The shared Store conformance suite run against [`PostgresStore`] on a throwaway PostgreSQL
//! server (crates/testkit/src/postgres.rs).
//!
//! cargo-nextest runs every test in its own process, so the whole suite is one test: it starts
//! one server and runs every conformance function in turn, each on a fresh database, printing
//! each test's name as it starts (a failure shows the output, so the last name printed is the
//! broken contract).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::cell::Cell;
use std::time::{Duration, Instant};

use peerline_store::{NewAccount, Store, StoreError};
use peerline_store_postgres::PostgresStore;
use peerline_testkit::postgres::TestPostgres;

/// The suite's tests in the order `run_all` runs them (the list in
/// `peerline_store::__with_conformance_tests!`), to name each as it starts. `run_all` itself
/// decides what runs, so a test missing here still runs; the count check at the end and
/// [`names_match_the_suite`] catch this list going stale.
const SUITE: &[&str] = &[
    "create_account_and_look_up",
    "username_unique_regardless_of_case",
    "set_password_hash_replaces_hash",
    "set_status_round_trips",
    "set_profile_updates_only_given_fields",
    "upsert_device_same_key_updates_device",
    "upsert_device_new_key_adds_device",
    "upsert_device_same_key_other_user_is_separate",
    "devices_oldest_first",
    "remove_device_deletes_its_sessions",
    "remove_device_unknown_or_foreign_is_false",
    "sessions_create_find_delete",
    "delete_sessions_except_keeps_one",
    "purge_expired_sessions_in_batches",
    "removed_device_ids_are_never_issued_again",
    "device_ids_are_within_53_bits",
    "device_ids_say_nothing_about_other_accounts",
    "contact_pair_write_read_delete",
    "contacts_ordered_by_username_with_names",
    "contacts_page_after_a_username",
    "incoming_requests_counted_up_to_the_limit",
    "contact_links_say_who_is_mutual_as_of_which_change",
    "update_contact_pair_is_a_compare_and_set",
    "concurrent_block_and_re_add_the_block_always_wins",
    "search_by_username_prefix",
    "search_display_name_substring_ignores_case",
    "search_filters_orders_and_limits",
    "search_treats_wildcards_literally",
    "store_message_ids_increase",
    "message_ids_not_reused_after_purge",
    "undelivered_oldest_first_with_limit",
    "mark_delivered_returns_only_newly_delivered",
    "mark_read_returns_only_newly_read",
    "unread_oldest_first_with_limit",
    "undelivered_and_unread_page_after_an_id",
    "undelivered_counts_per_sender_and_in_total",
    "recent_sends_count_a_senders_window",
    "history_both_directions_with_paging",
    "purge_messages_before_cutoff",
    "purge_messages_in_batches",
    "record_missed_call_is_idempotent",
    "undelivered_missed_calls_oldest_first_with_limit",
    "ack_missed_calls_only_own_newly_acked",
    "purge_missed_calls_before_cutoff",
    "purge_missed_calls_in_batches",
    "record_call_is_idempotent",
    "call_log_newest_first_with_paging",
    "call_log_missed_only",
    "set_call_path_only_own_record",
    "call_log_ids_not_reused_after_purge",
    "purge_call_log_in_batches",
    "import_accounts_stores_what_registration_and_login_store",
    "import_contacts_stores_accepted_pairs",
    "token_login_reads_session_account_and_device",
];

/// Every conformance test, each on a fresh database of one server.
#[tokio::test]
async fn conformance_suite() {
    let server = TestPostgres::start().expect("starting a throwaway PostgreSQL");
    let started = Cell::new(0_usize);
    let server = &server;
    let started_ref = &started;
    peerline_store::conformance::run_all(|| async move {
        let n = started_ref.get();
        started_ref.set(n + 1);
        let name = SUITE.get(n).copied().unwrap_or("(a test missing from SUITE)");
        println!("conformance test {}/{}: {name}", n + 1, SUITE.len());
        let url = server.create_database(&format!("t_{n}")).expect("creating a fresh database");
        let store = PostgresStore::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{name}: connecting to a fresh database: {e}"));
        (store, ())
    })
    .await;
    assert_eq!(
        started.get(),
        SUITE.len(),
        "the suite ran {} tests, SUITE names {}: update SUITE from \
         peerline_store::__with_conformance_tests!",
        started.get(),
        SUITE.len()
    );
}

/// [`SUITE`] is the suite's own list, in its order (read from the suite's source, the one place
/// the names are written down).
#[test]
fn names_match_the_suite() {
    let source = include_str!("../../store/src/conformance/mod.rs");
    let marker = "$crate::$callback! { $($args)* ;";
    let start = source.find(marker).expect("the list in __with_conformance_tests!") + marker.len();
    let end = start + source[start..].find('}').expect("end of the list");
    let names: Vec<&str> =
        source[start..end].split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    assert_eq!(names, SUITE, "SUITE must list the conformance tests in the suite's order");
}

fn new_account(username: &str) -> NewAccount {
    NewAccount {
        username: username.to_owned(),
        display_name: format!("{username} display"),
        password_hash: "$argon2id$test".to_owned(),
    }
}

/// Connecting again to a migrated database applies nothing and keeps the data; so do several
/// supernodes connecting to a new database at once (one migrates, the others wait for it).
#[tokio::test]
async fn reconnecting_to_a_migrated_database_changes_nothing() {
    let server = TestPostgres::start().expect("starting a throwaway PostgreSQL");
    let url = server.create_database("reopen").unwrap();
    let connect = || PostgresStore::connect(&url);
    let (a, b, c, d) = tokio::join!(connect(), connect(), connect(), connect());
    let stores = [a, b, c, d];
    for store in &stores {
        assert!(store.is_ok(), "concurrent first connects all succeed: {store:?}");
    }
    let store = PostgresStore::connect(&url).await.unwrap();
    let alice = store.create_account(new_account("alice"), 1).await.unwrap();
    let bob = store.create_account(new_account("bob"), 1).await.unwrap();
    let message = store.store_message(alice.id, bob.id, "persisted", 5).await.unwrap();
    let schema_before = server.psql("reopen", SCHEMA_SUMMARY).unwrap();
    store.close().await;
    store.close().await; // harmless twice
    assert!(
        matches!(store.account_by_id(alice.id).await, Err(StoreError::Backend(_))),
        "a closed store refuses calls"
    );
    for store in stores.into_iter().flatten() {
        store.close().await;
    }

    let reopened = PostgresStore::connect(&url).await.expect("connecting again");
    assert_eq!(reopened.account_by_id(alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(
        reopened.undelivered(bob.id, None, 10).await.unwrap(),
        std::slice::from_ref(&message)
    );
    let next = reopened.store_message(bob.id, alice.id, "after", 6).await.unwrap();
    assert!(next.id > message.id, "ids keep growing after a reconnect");
    assert!(matches!(
        reopened.create_account(new_account("ALICE"), 7).await,
        Err(StoreError::UsernameTaken)
    ));
    reopened.close().await;

    let applied = server.psql("reopen", "SELECT version FROM _sqlx_migrations ORDER BY 1").unwrap();
    assert_eq!(
        applied.split_whitespace().collect::<Vec<_>>(),
        ["1", "2", "3", "4", "5"],
        "each applied once"
    );
    assert_eq!(server.psql("reopen", SCHEMA_SUMMARY).unwrap(), schema_before, "schema unchanged");
}

/// Tables, indexes and sequences, for comparing a schema before and after.
const SCHEMA_SUMMARY: &str = "SELECT relname, relkind FROM pg_class
     WHERE relnamespace = 'public'::regnamespace ORDER BY relname";

/// A database migrated by a newer version (a migration this build does not know) is refused,
/// not written to.
#[tokio::test]
async fn database_from_a_newer_version_is_refused() {
    let server = TestPostgres::start().expect("starting a throwaway PostgreSQL");
    let url = server.create_database("future").unwrap();
    PostgresStore::connect(&url).await.unwrap().close().await;
    server
        .psql(
            "future",
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (9999, 'from the future', true, '\\x00', 0)",
        )
        .unwrap();
    match PostgresStore::connect(&url).await {
        Err(StoreError::Backend(msg)) => {
            assert!(msg.contains("migrating") && msg.contains("9999"), "{msg}")
        }
        other => panic!("a database from a newer version must be refused, got {other:?}"),
    }
}

/// Values the schema's constraints would refuse, as a damaged or hand-edited database could
/// hold, are `Backend` errors naming the value, not panics.
#[tokio::test]
async fn corrupt_rows_are_errors_not_panics() {
    let server = TestPostgres::start().expect("starting a throwaway PostgreSQL");
    let store = PostgresStore::connect(&server.create_database("corrupt").unwrap()).await.unwrap();
    let alice = store.create_account(new_account("alice"), 1).await.unwrap();
    let device = store.upsert_device(alice.id, &[1; 32], "laptop", 1).await.unwrap();
    server
        .psql(
            "corrupt",
            &format!(
                "ALTER TABLE accounts DROP CONSTRAINT accounts_status_check;
                 ALTER TABLE devices DROP CONSTRAINT devices_public_key_check;
                 UPDATE accounts SET status = 'dancing' WHERE id = {};
                 UPDATE devices SET public_key = '\\x0102' WHERE id = {};",
                alice.id, device.id
            ),
        )
        .unwrap();
    match store.account_by_id(alice.id).await {
        Err(StoreError::Backend(msg)) => {
            assert!(msg.contains("corrupt") && msg.contains("dancing"), "unknown status: {msg}")
        }
        other => panic!("an unknown stored status must be a Backend error, got {other:?}"),
    }
    match store.devices(alice.id).await {
        Err(StoreError::Backend(msg)) => {
            assert!(msg.contains("corrupt") && msg.contains("2 bytes"), "short key: {msg}")
        }
        other => panic!("a 2-byte stored key must be a Backend error, got {other:?}"),
    }
    store.close().await;
}

/// A server that is not there fails `connect` at once, as retryable, naming the URL but not
/// its password.
#[tokio::test]
async fn unreachable_server_fails_fast_with_a_clear_message() {
    // A port nobody listens on: bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://peerline:hunter2@127.0.0.1:{port}/peerline");
    let started = Instant::now();
    let result = PostgresStore::connect(&url).await;
    let took = started.elapsed();
    match result {
        Err(StoreError::Retryable(msg)) => {
            let shown = format!("postgres://peerline:***@127.0.0.1:{port}/peerline");
            assert!(msg.contains(&shown), "the message names the URL: {msg}");
            assert!(!msg.contains("hunter2"), "the message must not show the password: {msg}");
            assert!(msg.to_lowercase().contains("refused"), "the message says why: {msg}");
        }
        other => panic!("expected a Retryable error, got {other:?}"),
    }
    assert!(took < Duration::from_secs(2), "a refused connection fails at once, took {took:?}");

    match PostgresStore::connect("mysql://nope").await {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("invalid PostgreSQL URL"), "{msg}"),
        other => panic!("expected a Backend error for a bad URL, got {other:?}"),
    }
}

/// What `create_account` and `account_by_username` make of a name, for comparing backends.
async fn username_outcomes(store: &dyn Store) -> Vec<String> {
    let mut outcomes = Vec::new();
    for name in ["alice", "ALICE", "Alice", "ÄLICE", "äLICE", "älice", "bob.b_1", "BOB.B_1"] {
        let created = match store.create_account(new_account(name), 1).await {
            Ok(account) => format!("created {:?}", account.username),
            Err(StoreError::UsernameTaken) => "taken".to_owned(),
            Err(e) => panic!("create_account({name:?}): {e}"),
        };
        outcomes.push(format!("create {name:?}: {created}"));
    }
    for name in ["alice", "ALICE", "aLiCe", "Älice", "ÄLICE", "älice", "ÄlIcE", "bob.B_1", "bo"]
    {
        let found = store.account_by_username(name).await.unwrap().map(|a| a.username);
        outcomes.push(format!("look up {name:?}: {found:?}"));
    }
    outcomes
}

/// Both backends fold usernames the same way (ASCII letters only, as NOCASE does on SQLite), for
/// uniqueness and lookups alike, so a cluster can move from one to the other.
#[tokio::test]
async fn usernames_fold_exactly_as_on_sqlite() {
    let server = TestPostgres::start().expect("starting a throwaway PostgreSQL");
    let postgres =
        PostgresStore::connect(&server.create_database("folding").unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite =
        peerline_store_sqlite::SqliteStore::open(&dir.path().join("peerline.db")).await.unwrap();
    let on_postgres = username_outcomes(&postgres).await;
    let on_sqlite = username_outcomes(&sqlite).await;
    assert_eq!(on_postgres, on_sqlite, "PostgreSQL (left) and SQLite (right) disagree");
    assert!(on_postgres.contains(&"create \"ALICE\": taken".to_owned()), "{on_postgres:#?}");
    postgres.close().await;
    sqlite.close().await;
}
