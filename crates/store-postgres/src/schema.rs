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
