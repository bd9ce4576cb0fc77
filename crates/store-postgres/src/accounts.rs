//! Accounts and the directory search.

use peerline_store::{Account, NewAccount, Status, StoreResult, TimestampMs, UserHit, UserId};
use sqlx::PgPool;

use crate::decode::{self, column};
use crate::error::failed;

/// `SELECT` of every column [`decode::account`] reads; queries append their `WHERE`. A macro, not
/// a `const`, so that `concat!` can build `&'static str` queries from it.
macro_rules! select_account {
    () => {
        "SELECT id, username, display_name, password_hash, status, discoverable, created_at \
         FROM accounts "
    };
}

/// The canonical form of a username: ASCII lower-case, exactly what the SQLite backend's NOCASE
/// collation compares (and what `peerline_wire::validate::username` produces), so that both
/// backends agree on which names are the same.
pub(crate) fn username_key(username: &str) -> String {
    username.to_ascii_lowercase()
}

/// Inserts a new account with status `online`, discoverable.
pub(crate) async fn create(
    pool: &PgPool,
    account: NewAccount,
    now: TimestampMs,
) -> StoreResult<Account> {
    // The caller passes the canonical name already; folding again costs nothing and keeps the
    // unique key canonical whatever a future caller does.
    let username = username_key(&account.username);
    let status = Status::Online;
    let discoverable = true;
    let id: UserId = sqlx::query_scalar(
        "INSERT INTO accounts
             (username, display_name, display_name_lower, password_hash, status, discoverable,
              created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING id",
    )
    .bind(&username)
    .bind(&account.display_name)
    .bind(account.display_name.to_lowercase())
    .bind(&account.password_hash)
    .bind(status.as_str())
    .bind(discoverable)
    .bind(now)
    .fetch_one(pool)
    .await
    // A violation of the username's unique constraint comes back as UsernameTaken.
    .map_err(failed("creating account"))?;
    Ok(Account {
        id,
        username,
        display_name: account.display_name,
        password_hash: account.password_hash,
        status,
        discoverable,
        created_at: now,
    })
}

/// The account with this username (folded like uniqueness, so any letter case finds it).
pub(crate) async fn by_username(pool: &PgPool, username: &str) -> StoreResult<Option<Account>> {
    sqlx::query(concat!(select_account!(), "WHERE username = $1"))
        .bind(username_key(username))
        .fetch_optional(pool)
        .await
        .map_err(failed("looking up account by username"))?
        .as_ref()
        .map(decode::account)
        .transpose()
}

/// The account with this id.
pub(crate) async fn by_id(pool: &PgPool, id: UserId) -> StoreResult<Option<Account>> {
    sqlx::query(concat!(select_account!(), "WHERE id = $1"))
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
    pool: &PgPool,
    id: UserId,
    password_hash: &str,
) -> StoreResult<()> {
    sqlx::query("UPDATE accounts SET password_hash = $1 WHERE id = $2")
        .bind(password_hash)
        .bind(id)
        .execute(pool)
        .await
        .map_err(failed("updating password hash"))?;
    Ok(())
}

/// Stores the chosen status.
pub(crate) async fn set_status(pool: &PgPool, id: UserId, status: Status) -> StoreResult<()> {
    sqlx::query("UPDATE accounts SET status = $1 WHERE id = $2")
        .bind(status.as_str())
        .bind(id)
        .execute(pool)
        .await
        .map_err(failed("updating status"))?;
    Ok(())
}

/// Updates the fields given; `None` keeps the stored value (one statement, so atomic).
pub(crate) async fn set_profile(
    pool: &PgPool,
    id: UserId,
    display_name: Option<&str>,
    discoverable: Option<bool>,
) -> StoreResult<()> {
    if display_name.is_none() && discoverable.is_none() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE accounts SET
             display_name = coalesce($1, display_name),
             display_name_lower = coalesce($2, display_name_lower),
             discoverable = coalesce($3, discoverable)
         WHERE id = $4",
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

/// The directory search. Parameters: `$1` the account to leave out, `$2` the lower-cased query,
/// `$3` the query followed by U+10FFFF, `$4` the query as a `LIKE` substring pattern, `$5` the
/// limit.
///
/// Each way of matching is its own branch, answered from its own index whatever the planner
/// makes of an `OR`, with plans for the values and generic plans alike (see the EXPLAIN test
/// below):
/// - username prefixes: a range scan of the username's btree (in the "C" collation, so in
///   username order, and the branch stops after `limit` rows). `starts_with` makes the test
///   exact; the range lets the index find the candidates (every string that starts with `q`
///   sorts between `q` and `q || U+10FFFF`, except ones continuing with U+10FFFF itself, which
///   no valid username does).
/// - display-name substrings: the trigram index. No `ORDER BY ... LIMIT` in this branch: with
///   one, the planner may walk the username index in order and filter every row, reading the
///   whole table when few names match. Without it, the branch reads the matching rows only (all
///   of them; a query shorter than three characters has no trigram to look up, and then
///   PostgreSQL reads every row or index entry: no index narrows such a substring).
pub(crate) const SEARCH: &str = r"
    SELECT id, username, display_name FROM (
        (SELECT id, username, display_name FROM accounts
         WHERE username >= $2 AND username < $3 AND starts_with(username, $2)
           AND discoverable AND id <> $1
         ORDER BY username
         LIMIT $5)
        UNION
        SELECT id, username, display_name FROM accounts
        WHERE display_name_lower LIKE $4 ESCAPE '\'
          AND discoverable AND id <> $1
    ) AS hits
    ORDER BY username
    LIMIT $5";

/// The parameters `$2`-`$4` of [`SEARCH`] for a query.
pub(crate) fn search_terms(query: &str) -> (String, String, String) {
    // The caller lower-cases the query already; doing it again keeps the comparison right with
    // `display_name_lower`, which Rust's `to_lowercase` computed (as on the SQLite backend).
    let query = query.to_lowercase();
    let upper = format!("{query}\u{10FFFF}");
    let contains = format!("%{}%", like_literal(&query));
    (query, upper, contains)
}

/// Discoverable accounts, other than `exclude`, whose username starts with `query` or whose
/// display name contains it, case-insensitively; ordered by username, at most `limit`.
pub(crate) async fn search(
    pool: &PgPool,
    query: &str,
    exclude: UserId,
    limit: u32,
) -> StoreResult<Vec<UserHit>> {
    let (prefix, upper, contains) = search_terms(query);
    let rows = sqlx::query(SEARCH)
        .bind(exclude)
        .bind(prefix)
        .bind(upper)
        .bind(contains)
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
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use peerline_testkit::postgres::TestPostgres;

    use super::{SEARCH, like_literal, search_terms, username_key};
    use crate::PostgresStore;

    #[test]
    fn like_literal_escapes_wildcards_and_the_escape_character() {
        assert_eq!(like_literal("a_b%c\\d"), r"a\_b\%c\\d");
        assert_eq!(like_literal("zoë"), "zoë");
    }

    #[test]
    fn search_terms_fold_and_bound_the_prefix() {
        let (prefix, upper, contains) = search_terms("Ab_%");
        assert_eq!(prefix, "ab_%");
        assert_eq!(upper, "ab_%\u{10FFFF}");
        assert_eq!(contains, r"%ab\_\%%");
    }

    #[test]
    fn username_key_folds_ascii_only_like_sqlite_nocase() {
        assert_eq!(username_key("ALICE"), "alice");
        assert_eq!(username_key("a.B_c-9"), "a.b_c-9");
        // SQLite's NOCASE folds ASCII only; so does this (non-ASCII names are invalid anyway).
        assert_eq!(username_key("ÄLICE"), "Älice");
    }

    /// The plan of [`SEARCH`] for `query` on database `db`, as `EXPLAIN EXECUTE` prints it
    /// under `plan_cache_mode` (`force_custom_plan`: planned for these values, as for a
    /// statement's first executions; `force_generic_plan`: one plan for any values, as sqlx's
    /// cached prepared statement may get after five).
    fn plan(server: &TestPostgres, db: &str, query: &str, mode: &str) -> String {
        let (prefix, upper, contains) = search_terms(query);
        assert!(!format!("{prefix}{contains}").contains('\''), "keep the test's SQL simple");
        let upper_sql = format!("'{prefix}' || chr({})", u32::from(upper.chars().last().unwrap()));
        let sql = format!(
            "SET plan_cache_mode = {mode};
             PREPARE search(bigint, text, text, text, bigint) AS {SEARCH};
             EXPLAIN (COSTS OFF) EXECUTE search(0, '{prefix}', {upper_sql}, '{contains}', 20);"
        );
        server.psql(db, &sql).unwrap()
    }

    /// 10,000 accounts with names made of syllables ("Gemige Kasuul", username
    /// "gemige.kasuul1"): varied trigrams, as real names have; every tenth not discoverable.
    const DIRECTORY: &str = "
        INSERT INTO accounts
            (username, display_name, display_name_lower, password_hash, discoverable, created_at)
        SELECT lower(first) || '.' || lower(last) || (i % 100), first || ' ' || last,
               lower(first || ' ' || last),
               '$argon2id$v=19$m=19456,t=2,p=1$' || md5(i::text) || '$' || md5((i * 7)::text),
               i % 10 <> 3, 0
        FROM generate_series(1, 10000) AS i,
             LATERAL (SELECT decode(md5(i::text), 'hex') AS h) AS hash,
             LATERAL (SELECT ARRAY['ka', 'lo', 'mi', 'ra', 'to', 'su', 'ne', 'ri', 'da', 'vo',
                                   'ba', 'el', 'an', 'or', 'is', 'ul', 'ge', 'po', 'ti', 'zé']
                             AS s) AS syllables,
             LATERAL (SELECT initcap(s[1 + get_byte(h, 0) % 20] || s[1 + get_byte(h, 1) % 20]
                                     || CASE WHEN get_byte(h, 2) % 2 = 0
                                             THEN s[1 + get_byte(h, 3) % 20] ELSE '' END)
                             AS first,
                             initcap(s[1 + get_byte(h, 4) % 20] || s[1 + get_byte(h, 5) % 20]
                                     || s[1 + get_byte(h, 6) % 20]
                                     || CASE WHEN get_byte(h, 7) % 3 = 0 THEN 'son' ELSE '' END)
                             AS last) AS names
        ON CONFLICT DO NOTHING;
        ANALYZE accounts;";

    /// On a directory of 10,000 accounts, search reads the username btree (a range scan) and
    /// the display name's trigram index, never the whole table, with plans for the values and
    /// generic plans alike; and finds what a plain scan finds.
    #[tokio::test]
    async fn search_uses_the_indexes_on_ten_thousand_accounts() {
        let server = TestPostgres::start().expect("starting a throwaway PostgreSQL");
        let url = server.create_database("directory").unwrap();
        let store = PostgresStore::connect(&url).await.unwrap();
        server.psql("directory", DIRECTORY).unwrap();
        let count = server.psql("directory", "SELECT count(*) FROM accounts").unwrap();
        let count: u32 = count.trim().parse().unwrap();
        assert!(count > 9_900, "about 10,000 accounts, got {count}");

        // Prefix of a username, substrings of names, one with a space, a common one.
        for query in ["gemige.k", "kasuul", "ka lo", "rason"] {
            for mode in ["force_custom_plan", "force_generic_plan"] {
                let plan = plan(&server, "directory", query, mode);
                println!("EXPLAIN search({query:?}) with {mode}:\n{plan}");
                assert!(!plan.contains("Seq Scan"), "{query:?}, {mode}: a table scan:\n{plan}");
                assert!(
                    plan.contains("Index Scan using accounts_username_key")
                        || plan.contains("Bitmap Index Scan on accounts_username_key"),
                    "{query:?}, {mode}: the username branch must scan the btree range:\n{plan}"
                );
                assert!(
                    plan.contains("Bitmap Index Scan on accounts_display_name_trgm"),
                    "{query:?}, {mode}: the display-name branch must use the trigram index:\n{plan}"
                );
            }
            // The indexes find what a plain scan of every row finds.
            let hits = crate::Store::search(&store, query, 0, 1000).await.unwrap();
            let found: Vec<&str> = hits.iter().map(|h| h.username.as_str()).collect();
            let scanned = server
                .psql(
                    "directory",
                    &format!(
                        "SET enable_indexscan = off; SET enable_bitmapscan = off;
                         SELECT username FROM accounts
                         WHERE discoverable AND (starts_with(username, '{query}')
                                                 OR strpos(display_name_lower, '{query}') > 0)
                         ORDER BY username LIMIT 1000"
                    ),
                )
                .unwrap();
            let scanned: Vec<&str> = scanned.lines().collect();
            assert!(!found.is_empty(), "{query:?} matches something");
            assert_eq!(found, scanned, "{query:?}: search and a plain scan disagree");
        }
        store.close().await;
    }
}
