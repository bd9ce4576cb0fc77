//! The schema: embedded, versioned migrations applied at connect.

use std::borrow::Cow;

use sqlx::PgPool;
use sqlx::SqlSafeStr;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};

/// Every migration, oldest first: (version, description, SQL). A released migration is never
/// edited (its checksum is recorded in the database); changes go into a new file.
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "schema", include_str!("../migrations/0001_schema.sql")),
    (2, "directory search", include_str!("../migrations/0002_directory_search.sql")),
    (3, "budgets", include_str!("../migrations/0003_budgets.sql")),
    (4, "device ids", include_str!("../migrations/0004_device_ids.sql")),
    (5, "call log", include_str!("../migrations/0005_call_log.sql")),
];

/// A migrator over `migrations` (a prefix of [`MIGRATIONS`]; tests use shorter ones to build
/// databases of older versions).
pub(crate) fn migrator(migrations: &'static [(i64, &'static str, &'static str)]) -> Migrator {
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
/// Supernodes of a cluster may start at the same time: sqlx holds a PostgreSQL advisory lock
/// (keyed by the database name) while it migrates, so one applies and the others then find
/// nothing to do. Fails if the database records a migration this build does not know (it was
/// written by a newer version) or one whose SQL differs from ours.
pub(crate) async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    migrator(MIGRATIONS).run(pool).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use peerline_store::Store;

    use super::*;
    use crate::PostgresStore;

    /// A database of version 3, whose device ids came from an identity sequence (with removed
    /// devices at the end and in the middle), keeps its devices' ids on upgrade, and no id the
    /// sequence handed out is issued again.
    #[tokio::test]
    async fn version_3_devices_keep_their_ids_and_old_ids_stay_retired() {
        let server = peerline_testkit::postgres::TestPostgres::start().expect("a PostgreSQL");
        let url = server.create_database("v3").unwrap();
        let pool = PgPool::connect(&url).await.unwrap();
        migrator(&MIGRATIONS[..3]).run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO accounts (username, display_name, display_name_lower, password_hash,
                                   created_at)
             VALUES ('bob', 'Bob', 'bob', '$argon2id$test', 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        for key in 1..=4_u8 {
            sqlx::query(
                "INSERT INTO devices (user_id, public_key, name, created_at, last_seen_at)
                 SELECT id, $1, 'old', 1, 1 FROM accounts WHERE username = 'bob'",
            )
            .bind(vec![key; 32])
            .execute(&pool)
            .await
            .unwrap();
        }
        sqlx::query("DELETE FROM devices WHERE id IN (2, 4)").execute(&pool).await.unwrap();
        pool.close().await;

        let store = PostgresStore::connect(&url).await.expect("connect to a version 3 database");
        let bob = store.account_by_username("bob").await.unwrap().unwrap().id;
        let ids: Vec<i64> = store.devices(bob).await.unwrap().iter().map(|d| d.id).collect();
        assert_eq!(ids, [1, 3], "existing devices keep their ids");
        let issued: Vec<i64> = sqlx::query_scalar("SELECT id FROM issued_device_ids ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert_eq!(issued, [1, 2, 3, 4], "every id the sequence handed out is retired");
        let known = store.upsert_device(bob, &[3; 32], "refreshed", 2).await.unwrap();
        assert_eq!(known.id, 3, "an existing device logging in keeps its id");
        let new = store.upsert_device(bob, &[4; 32], "again", 2).await.unwrap();
        assert!(new.id > 4, "a new device gets a fresh random id, not a retired one: {}", new.id);
        store.close().await;
    }
}
