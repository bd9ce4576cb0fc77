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
        assert_eq!(versions, [1, 2, 3, 4], "each migration recorded once");
        again.close().await;
    }
}
