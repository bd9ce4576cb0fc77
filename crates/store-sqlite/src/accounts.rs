//! Accounts and the directory search.

use peerline_store::{
    Account, NewAccount, Status, StoreError, StoreResult, TimestampMs, UserHit, UserId,
};
use sqlx::SqlitePool;
use sqlx::error::ErrorKind;

use crate::decode::{self, column, failed};

/// `SELECT` of every column [`decode::account`] reads; queries append their `WHERE`. A macro, not
/// a `const`, so that `concat!` can build `&'static str` queries from it.
macro_rules! select_account {
    () => {
        "SELECT id, username, display_name, password_hash, status, discoverable, created_at \
         FROM accounts "
    };
}

/// Inserts a new account with status `online`, discoverable.
pub(crate) async fn create(
    pool: &SqlitePool,
    account: NewAccount,
    now: TimestampMs,
) -> StoreResult<Account> {
    // The caller passes the canonical name already; folding again costs nothing and keeps the
    // stored form canonical whatever a future caller does. ASCII folding matches NOCASE exactly.
    let username = account.username.to_ascii_lowercase();
    let status = Status::Online;
    let discoverable = true;
    let result = sqlx::query(
        "INSERT INTO accounts
             (username, display_name, display_name_lower, password_hash, status, discoverable,
              created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&username)
    .bind(&account.display_name)
    .bind(account.display_name.to_lowercase())
    .bind(&account.password_hash)
    .bind(status.as_str())
    .bind(discoverable)
    .bind(now)
    .execute(pool)
    .await;
    match result {
        Ok(done) => Ok(Account {
            id: done.last_insert_rowid(),
            username,
            display_name: account.display_name,
            password_hash: account.password_hash,
            status,
            discoverable,
            created_at: now,
        }),
        // The only unique index on accounts is the username's.
        Err(sqlx::Error::Database(e)) if e.kind() == ErrorKind::UniqueViolation => {
            Err(StoreError::UsernameTaken)
        }
        Err(e) => Err(failed("creating account")(e)),
    }
}

/// The account with this username (compared case-insensitively, like uniqueness).
pub(crate) async fn by_username(pool: &SqlitePool, username: &str) -> StoreResult<Option<Account>> {
    sqlx::query(concat!(select_account!(), "WHERE username = ?"))
        .bind(username)
        .fetch_optional(pool)
        .await
        .map_err(failed("looking up account by username"))?
        .as_ref()
        .map(decode::account)
        .transpose()
}

/// The account with this id.
pub(crate) async fn by_id(pool: &SqlitePool, id: UserId) -> StoreResult<Option<Account>> {
    sqlx::query(concat!(select_account!(), "WHERE id = ?"))
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(failed("looking up account by id"))?
        .as_ref()
        .map(decode::account)
        .transpose()
}

/// Replaces the password hash.
pub(crate) async fn set_password_hash(
    pool: &SqlitePool,
    id: UserId,
    password_hash: &str,
) -> StoreResult<()> {
    sqlx::query("UPDATE accounts SET password_hash = ? WHERE id = ?")
        .bind(password_hash)
        .bind(id)
        .execute(pool)
        .await
        .map_err(failed("updating password hash"))?;
    Ok(())
}

/// Stores the chosen status.
pub(crate) async fn set_status(pool: &SqlitePool, id: UserId, status: Status) -> StoreResult<()> {
    sqlx::query("UPDATE accounts SET status = ? WHERE id = ?")
        .bind(status.as_str())
        .bind(id)
        .execute(pool)
        .await
        .map_err(failed("updating status"))?;
    Ok(())
}

/// Updates the fields given; `None` keeps the stored value (one statement, so atomic).
pub(crate) async fn set_profile(
    pool: &SqlitePool,
    id: UserId,
    display_name: Option<&str>,
    discoverable: Option<bool>,
) -> StoreResult<()> {
    if display_name.is_none() && discoverable.is_none() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE accounts SET
             display_name = coalesce(?1, display_name),
             display_name_lower = coalesce(?2, display_name_lower),
             discoverable = coalesce(?3, discoverable)
         WHERE id = ?4",
    )
    .bind(display_name)
    .bind(display_name.map(str::to_lowercase))
    .bind(discoverable)
    .bind(id)
    .execute(pool)
    .await
    .map_err(failed("updating profile"))?;
    Ok(())
}

/// Escapes `text` for a `LIKE ... ESCAPE '\'` pattern, so that `%`, `_` and `\` in what a user
/// typed match themselves instead of acting as wildcards.
fn like_literal(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Discoverable accounts, other than `exclude`, whose username starts with `query` or whose
/// display name contains it, case-insensitively; ordered by username, at most `limit`.
pub(crate) async fn search(
    pool: &SqlitePool,
    query: &str,
    exclude: UserId,
    limit: u32,
) -> StoreResult<Vec<UserHit>> {
    // The caller lower-cases the query already; doing it again keeps the comparison right with
    // `display_name_lower`, which Rust's `to_lowercase` computed (full Unicode folding, where
    // SQLite's own lower() and LIKE fold ASCII only).
    let literal = like_literal(&query.to_lowercase());
    let rows = sqlx::query(
        r"SELECT id, username, display_name FROM accounts
          WHERE discoverable = 1 AND id <> ?1
            AND (username LIKE ?2 ESCAPE '\' OR display_name_lower LIKE ?3 ESCAPE '\')
          ORDER BY username
          LIMIT ?4",
    )
    .bind(exclude)
    .bind(format!("{literal}%"))
    .bind(format!("%{literal}%"))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(failed("searching accounts"))?;
    rows.iter()
        .map(|row| {
            Ok(UserHit {
                id: column(row, "accounts", "id")?,
                username: column(row, "accounts", "username")?,
                display_name: column(row, "accounts", "display_name")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::like_literal;

    #[test]
    fn like_literal_escapes_wildcards_and_the_escape_character() {
        assert_eq!(like_literal("a_b%c\\d"), r"a\_b\%c\\d");
        assert_eq!(like_literal("zoë"), "zoë");
    }
}
