//! The schema: embedded, versioned migrations applied at open.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::SqlitePool;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};

/// Every migration, oldest first: (version, description, SQL). A released migration is never
/// edited (its checksum is recorded in the database); changes go into a new file.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (2, "missed calls", include_str!("../migrations/0002_missed_calls.sql")),
    (3, "contact versions", include_str!("../migrations/0003_contact_versions.sql")),
    (4, "budgets", include_str!("../migrations/0004_budgets.sql")),
    (5, "device ids", include_str!("../migrations/0005_device_ids.sql")),
    (6, "call log", include_str!("../migrations/0006_call_log.sql")),
];

/// A migrator over `migrations` (a prefix of [`MIGRATIONS`]; tests use shorter ones to build
/// databases of older versions).
fn migrator(migrations: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    let migrations = migrations
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

/// Applies the migrations the database lacks, each in its own transaction.
///
/// Fails if the database records a migration this build does not know (it was written by a
/// newer version) or one whose SQL differs from ours.
pub(crate) async fn migrate(pool: &SqlitePool) -> Result<(), MigrateError> {
    migrator(MIGRATIONS).run(pool).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use peerline_store::{NewAccount, Store};
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    use super::*;
    use crate::SqliteStore;

    /// A database written by the first release (schema version 1) gets the missed-call table
    /// when opened, keeps its data, and opening it again changes nothing.
    #[tokio::test]
    async fn version_1_database_is_upgraded_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peerline.db");
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::new().filename(&path).create_if_missing(true))
            .await
            .unwrap();
        migrator(&MIGRATIONS[..1]).run(&pool).await.unwrap();
        pool.close().await;

        let store = SqliteStore::open(&path).await.expect("open a version 1 database");
        let new_account = |username: &str| NewAccount {
            username: username.to_owned(),
            display_name: username.to_owned(),
            password_hash: "$argon2id$test".to_owned(),
        };
        let alice = store.create_account(new_account("alice"), 1).await.unwrap().id;
        let bob = store.create_account(new_account("bob"), 1).await.unwrap().id;
        let call = store.record_missed_call(bob, alice, "call-1", 5).await.unwrap();
        store.close().await;

        let again = SqliteStore::open(&path).await.expect("open the upgraded database again");
        assert_eq!(again.undelivered_missed_calls(bob, 10).await.unwrap(), [call]);
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&again.reader)
                .await
                .unwrap();
        assert_eq!(versions, [1, 2, 3, 4, 5, 6], "each migration recorded once");
        again.close().await;
    }

    /// A database of version 4, with counted device ids and a gap where a device was removed,
    /// keeps its devices' ids on upgrade, and no id up to the largest one (live or removed) is
    /// issued again.
    #[tokio::test]
    async fn version_4_devices_keep_their_ids_and_old_ids_stay_retired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peerline.db");
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::new().filename(&path).create_if_missing(true))
            .await
            .unwrap();
        migrator(&MIGRATIONS[..4]).run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO accounts (id, username, display_name, display_name_lower, password_hash,
                                   created_at)
             VALUES (1, 'bob', 'Bob', 'bob', '$argon2id$test', 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        for (id, key) in [(1_i64, 1_u8), (2, 2), (3, 3)] {
            sqlx::query(
                "INSERT INTO devices (id, user_id, public_key, name, created_at, last_seen_at)
                 VALUES (?, 1, ?, 'old', 1, 1)",
            )
            .bind(id)
            .bind(vec![key; 32])
            .execute(&pool)
            .await
            .unwrap();
        }
        sqlx::query("DELETE FROM devices WHERE id = 2").execute(&pool).await.unwrap();
        pool.close().await;

        let store = SqliteStore::open(&path).await.expect("open a version 4 database");
        let ids: Vec<i64> = store.devices(1).await.unwrap().iter().map(|d| d.id).collect();
        assert_eq!(ids, [1, 3], "existing devices keep their ids");
        let issued: Vec<i64> = sqlx::query_scalar("SELECT id FROM issued_device_ids ORDER BY id")
            .fetch_all(&store.reader)
            .await
            .unwrap();
        assert_eq!(issued, [1, 2, 3], "every id up to the largest is retired, the gap too");
        let known = store.upsert_device(1, &[3; 32], "refreshed", 2).await.unwrap();
        assert_eq!(known.id, 3, "an existing device logging in keeps its id");
        let new = store.upsert_device(1, &[2; 32], "again", 2).await.unwrap();
        assert!(new.id > 3, "a new device gets a fresh random id, not a retired one: {}", new.id);
        store.close().await;
    }
}
