//! The database and the files SQLite keeps beside it (-wal, -shm) hold password hashes, session
//! token hashes and messages: only their owner may read them, whatever the umask, and files left
//! with wider modes by an earlier version are narrowed when the store opens.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use peerline_store::{NewAccount, Store};
use peerline_store_sqlite::SqliteStore;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

/// Writes one row, so that the write-ahead log and its index exist while the store is open.
async fn write_account(store: &SqliteStore, username: &str) {
    let account = NewAccount {
        username: username.into(),
        display_name: username.into(),
        password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
    };
    store.create_account(account, 1).await.expect("account stored");
}

fn assert_private(db: &Path) {
    for file in [db.to_owned(), sidecar(db, "-wal"), sidecar(db, "-shm")] {
        assert_eq!(mode(&file), 0o600, "{} must be readable by its owner only", file.display());
    }
}

#[tokio::test]
async fn a_new_database_and_its_wal_and_shm_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("peerline.db");
    let store = SqliteStore::open(&db).await.unwrap();
    write_account(&store, "alice").await;
    assert_private(&db);
    assert_eq!(mode(db.parent().unwrap()), 0o700, "the directory made for the database");
    store.close().await;
}

#[tokio::test]
async fn files_left_readable_by_others_are_narrowed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("peerline.db");
    let store = SqliteStore::open(&db).await.unwrap();
    write_account(&store, "alice").await;
    // A crash leaves -wal and -shm behind; an old version or a restore left them all 0644.
    let files = [db.clone(), sidecar(&db, "-wal"), sidecar(&db, "-shm")];
    for file in &files {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let again = SqliteStore::open(&db).await.unwrap();
    write_account(&again, "bob").await;
    assert_private(&db);
    again.close().await;
    store.close().await;
}
