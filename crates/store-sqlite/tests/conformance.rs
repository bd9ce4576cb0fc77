//! The shared Store conformance suite run against [`SqliteStore`], plus what only SQLite has:
//! reopening a file, WAL mode, paths, corrupt rows and concurrent writers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;

use peerline_store::{Account, NewAccount, Status, Store, StoreError};
use peerline_store_sqlite::SqliteStore;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tempfile::TempDir;

/// A fresh store in its own temp dir; the dir lives as long as the guard.
async fn fresh() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("peerline.db")).await.expect("open store");
    (store, dir)
}

peerline_store::store_conformance_tests!(fresh);

/// `run_all` works too (and exercises every test once more on a fresh store each).
#[tokio::test]
async fn conformance_run_all() {
    peerline_store::conformance::run_all(fresh).await;
}

fn new_account(username: &str) -> NewAccount {
    NewAccount {
        username: username.to_owned(),
        display_name: format!("{username} display"),
        password_hash: "$argon2id$test".to_owned(),
    }
}

/// A raw connection to the database file, for looking under the store.
async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .expect("raw connection")
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peerline.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let alice = store.create_account(new_account("alice"), 1).await.unwrap();
    let bob = store.create_account(new_account("bob"), 2).await.unwrap();
    store.set_status(alice.id, Status::Busy).await.unwrap();
    let device = store.upsert_device(alice.id, &[3; 32], "laptop", 3).await.unwrap();
    store.create_session(&[4; 32], alice.id, device.id, 99).await.unwrap();
    let message = store.store_message(alice.id, bob.id, "persisted", 5).await.unwrap();
    store.close().await;
    store.close().await; // harmless twice
    assert!(
        matches!(store.account_by_id(alice.id).await, Err(StoreError::Backend(_))),
        "a closed store refuses calls"
    );

    let reopened = SqliteStore::open(&path).await.unwrap();
    let again = reopened.account_by_id(alice.id).await.unwrap().expect("alice after reopen");
    assert_eq!(again, Account { status: Status::Busy, ..alice });
    assert_eq!(reopened.devices(alice.id).await.unwrap(), std::slice::from_ref(&device));
    let session = reopened.session(&[4; 32]).await.unwrap().expect("session after reopen");
    assert_eq!((session.user_id, session.device_id), (again.id, device.id));
    assert_eq!(
        reopened.undelivered(bob.id, None, 10).await.unwrap(),
        std::slice::from_ref(&message)
    );
    let next = reopened.store_message(bob.id, alice.id, "after", 6).await.unwrap();
    assert!(next.id > message.id, "ids keep growing after a reopen");
    assert!(
        matches!(
            reopened.create_account(new_account("ALICE"), 7).await,
            Err(StoreError::UsernameTaken)
        ),
        "uniqueness holds after a reopen"
    );
    reopened.close().await;
}

#[tokio::test]
async fn database_file_is_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peerline.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.create_account(new_account("alice"), 1).await.unwrap();
    // While open, a second connection sees WAL mode (it is stored in the file).
    let mut conn = raw(&path).await;
    let mode: String =
        sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap();
    assert_eq!(mode, "wal");
    conn.close().await.unwrap();
    store.close().await;
    let wal = dir.path().join("peerline.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "close checkpoints the write-ahead log into the database file"
    );
}

#[tokio::test]
async fn open_creates_missing_nested_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("does/not/exist/yet/peerline.db");
    let store = SqliteStore::open(&path).await.expect("open in a missing nested dir");
    store.create_account(new_account("alice"), 1).await.unwrap();
    assert_eq!(store.path(), path);
    store.close().await;
    assert!(path.is_file(), "the database file was created");
}

#[tokio::test]
async fn open_on_a_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    match SqliteStore::open(dir.path()).await {
        Err(StoreError::Backend(msg)) => {
            assert!(msg.contains("directory"), "error should say the path is a directory: {msg}");
            assert!(msg.contains(&dir.path().display().to_string()), "error names the path: {msg}");
        }
        Err(other) => panic!("expected a Backend error, got {other:?}"),
        Ok(_) => panic!("opening a directory as a database must fail"),
    }
}

#[tokio::test]
async fn open_on_a_file_that_is_not_sqlite_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    std::fs::write(&path, vec![0x5a_u8; 8192]).unwrap();
    match SqliteStore::open(&path).await {
        Err(StoreError::Backend(msg)) => {
            assert!(msg.contains("garbage.db"), "names the file: {msg}")
        }
        Err(other) => panic!("expected a Backend error, got {other:?}"),
        Ok(_) => panic!("a file that is not a database must not open"),
    }
}

#[tokio::test]
async fn corrupt_rows_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peerline.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let alice = store.create_account(new_account("alice"), 1).await.unwrap();
    let device = store.upsert_device(alice.id, &[1; 32], "laptop", 1).await.unwrap();
    store.close().await;

    // Write values the schema's CHECK constraints would refuse, as a damaged file could hold.
    let mut conn = raw(&path).await;
    sqlx::query("PRAGMA ignore_check_constraints = ON").execute(&mut conn).await.unwrap();
    sqlx::query("UPDATE accounts SET status = 'dancing' WHERE id = ?")
        .bind(alice.id)
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE devices SET public_key = x'0102' WHERE id = ?")
        .bind(device.id)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let store = SqliteStore::open(&path).await.unwrap();
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

#[tokio::test]
async fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peerline.db");
    SqliteStore::open(&path).await.unwrap().close().await;
    let mut conn = raw(&path).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9999, 'from the future', 1, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    match SqliteStore::open(&path).await {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("migrating"), "{msg}"),
        Err(other) => panic!("expected a Backend error, got {other:?}"),
        Ok(_) => panic!("a database from a newer version must not be opened"),
    }
}

#[tokio::test]
async fn backend_errors_say_what_failed() {
    let (store, _dir) = fresh().await;
    // A message between accounts that do not exist violates a foreign key.
    match store.store_message(1, 2, "to nobody", 1).await {
        Err(StoreError::Backend(msg)) => assert!(msg.starts_with("storing message: "), "{msg}"),
        other => panic!("expected a Backend error, got {other:?}"),
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_and_readers_all_succeed() {
    let (store, _dir) = fresh().await;
    let store = std::sync::Arc::new(store);
    let alice = store.create_account(new_account("alice"), 1).await.unwrap();
    let bob = store.create_account(new_account("bob"), 1).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for j in 0..10 {
                let m =
                    store.store_message(alice.id, bob.id, &format!("{i}/{j}"), i).await.unwrap();
                ids.push(m.id);
                store.undelivered(bob.id, None, 1000).await.unwrap();
                store.history(alice.id, bob.id, 5, None).await.unwrap();
            }
            store.mark_delivered(bob.id, &ids, 100).await.unwrap().len()
        });
    }
    let mut delivered = 0;
    while let Some(done) = tasks.join_next().await {
        delivered += done.unwrap();
    }
    assert_eq!(delivered, 320, "every message stored once and delivered once");
    assert!(store.undelivered(bob.id, None, 1000).await.unwrap().is_empty());
    store.close().await;
}
