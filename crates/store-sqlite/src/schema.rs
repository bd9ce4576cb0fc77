//! The schema: embedded, versioned migrations applied at open.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::SqlitePool;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};

/// Every migration, oldest first: (version, description, SQL). A released migration is never
/// edited (its checksum is recorded in the database); changes go into a new file.
const MIGRATIONS: &[(i64, &str, &str)] =
    &[(1, "initial", include_str!("../migrations/0001_initial.sql"))];

/// Applies the migrations the database lacks, each in its own transaction.
///
/// Fails if the database records a migration this build does not know (it was written by a
/// newer version) or one whose SQL differs from ours.
pub(crate) async fn migrate(pool: &SqlitePool) -> Result<(), MigrateError> {
    let migrations = MIGRATIONS
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
    Migrator::with_migrations(migrations).run(pool).await
}
