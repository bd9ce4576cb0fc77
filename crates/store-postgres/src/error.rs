//! Turning sqlx errors into [`StoreError`]s a caller can act on, and URLs into text that is safe
//! to show.
//!
//! The split that matters is [`StoreError::Retryable`] (the server is briefly unreachable, busy
//! or in the way of a concurrent transaction: the same call may succeed in a moment) against
//! [`StoreError::Backend`] (retrying will not help). SQLSTATE codes are PostgreSQL's
//! (<https://www.postgresql.org/docs/15/errcodes-appendix.html>).

use peerline_store::StoreError;

/// The unique constraint on `accounts.username` (migrations/0001_schema.sql).
pub(crate) const USERNAME_CONSTRAINT: &str = "accounts_username_key";

/// SQLSTATE `unique_violation`.
const UNIQUE_VIOLATION: &str = "23505";

/// Whether an error with this SQLSTATE may go away if the same call is made again shortly.
pub(crate) fn sqlstate_is_retryable(code: &str) -> bool {
    // Class 08, connection exception: the connection broke or could not be made.
    code.starts_with("08")
        || matches!(
            code,
            // serialization_failure, deadlock_detected: a concurrent transaction won; redo.
            "40001" | "40P01"
            // lock_not_available: lock_timeout ran out behind another transaction.
            | "55P03"
            // admin_shutdown, crash_shutdown, cannot_connect_now: the server is stopping,
            // restarting after a crash, or still starting up.
            | "57P01" | "57P02" | "57P03"
            // too_many_connections: others hold every slot for now.
            | "53300"
        )
}

/// Maps a failed statement to a [`StoreError`] that says what was being done.
pub(crate) fn failed(doing: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| classify(doing, e)
}

/// Runs one batch of a purge: `sql` deletes at most `$2` rows older than `$1`, skipping rows
/// another supernode's purge is deleting at the same moment. Returns how many it deleted; the
/// caller repeats until a batch comes back short.
pub(crate) async fn delete_batch(
    pool: &sqlx::PgPool,
    sql: &'static str,
    cutoff: i64,
    limit: u32,
    doing: &'static str,
) -> Result<u64, StoreError> {
    let done = sqlx::query(sql)
        .bind(cutoff)
        .bind(i64::from(limit))
        .execute(pool)
        .await
        .map_err(failed(doing))?;
    Ok(done.rows_affected())
}

/// The [`StoreError`] for `error`, met while `doing` something.
pub(crate) fn classify(doing: &str, error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            if code == UNIQUE_VIOLATION && db.constraint() == Some(USERNAME_CONSTRAINT) {
                StoreError::UsernameTaken
            } else if sqlstate_is_retryable(code) {
                StoreError::Retryable(format!("{doing}: {error} (SQLSTATE {code})"))
            } else if code.is_empty() {
                StoreError::Backend(format!("{doing}: {error}"))
            } else {
                StoreError::Backend(format!("{doing}: {error} (SQLSTATE {code})"))
            }
        }
        // No free connection within the acquire timeout (all busy, or the server unreachable),
        // or the connection failed underneath: the server may be back in a moment.
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => {
            StoreError::Retryable(format!("{doing}: {error}"))
        }
        // Only `close` closes the pool; the trait says calls after it fail with Backend.
        sqlx::Error::PoolClosed => StoreError::Backend(format!("{doing}: the store is closed")),
        _ => StoreError::Backend(format!("{doing}: {error}")),
    }
}

/// A `Backend` error for a stored value that cannot be what the schema says.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("corrupt {what}"))
}

/// `url` with any password replaced by `***`, for messages and logs: both the user-info form
/// (`postgres://user:secret@host/db`) and the `password=` query parameter.
pub(crate) fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut shown = match base.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            // The last '@' ends the user info (a password may contain '@'), the first ':' in it
            // ends the user name.
            let authority = match authority.rsplit_once('@') {
                Some((user_info, host)) => match user_info.split_once(':') {
                    Some((user, _password)) => format!("{user}:***@{host}"),
                    None => authority.to_owned(),
                },
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        shown = format!("{shown}?{}", pairs.join("&"));
    }
    shown
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::borrow::Cow;
    use std::error::Error as StdError;

    use sqlx::error::{DatabaseError, ErrorKind};

    use super::*;

    /// A database error as the server would send it: a SQLSTATE and maybe a constraint name.
    #[derive(Debug)]
    struct ServerError {
        code: &'static str,
        constraint: Option<&'static str>,
    }

    impl std::fmt::Display for ServerError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "server said no")
        }
    }

    impl StdError for ServerError {}

    impl DatabaseError for ServerError {
        fn message(&self) -> &str {
            "server said no"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.code))
        }
        fn constraint(&self) -> Option<&str> {
            self.constraint
        }
        fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn StdError + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn StdError + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> ErrorKind {
            match self.code {
                "23505" => ErrorKind::UniqueViolation,
                _ => ErrorKind::Other,
            }
        }
    }

    fn server(code: &'static str, constraint: Option<&'static str>) -> StoreError {
        classify("doing it", sqlx::Error::Database(Box::new(ServerError { code, constraint })))
    }

    #[test]
    fn retryable_sqlstates() {
        for code in [
            "08000", "08003", "08006", "08001", "08004", "08P01", // connection exceptions
            "40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300",
        ] {
            assert!(sqlstate_is_retryable(code), "{code} should be retryable");
            let mapped = server(code, None);
            assert!(mapped.is_retryable(), "{code} maps to {mapped:?}");
            assert!(mapped.to_string().contains(code), "the message names the SQLSTATE: {mapped}");
        }
    }

    #[test]
    fn other_sqlstates_are_backend_errors() {
        for code in [
            "23503", // foreign_key_violation
            "23514", // check_violation
            "42P01", // undefined_table: a broken schema
            "28P01", // invalid_password
            "3D000", // invalid_catalog_name: no such database
            "53100", // disk_full: not over in a moment
            "57014", // query_canceled
            "40002", // integrity constraint violation at commit
            "XX000", // internal_error
        ] {
            assert!(!sqlstate_is_retryable(code), "{code} should not be retryable");
            assert!(matches!(server(code, None), StoreError::Backend(_)), "{code}");
        }
    }

    #[test]
    fn unique_violation_of_the_username_key_is_username_taken() {
        assert!(matches!(server("23505", Some(USERNAME_CONSTRAINT)), StoreError::UsernameTaken));
        // Any other unique violation (a session token hash twice) is not about usernames.
        assert!(matches!(server("23505", Some("sessions_pkey")), StoreError::Backend(_)));
        assert!(matches!(server("23505", None), StoreError::Backend(_)));
    }

    #[test]
    fn connection_and_pool_failures_are_retryable_a_closed_store_is_not() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(classify("x", sqlx::Error::Io(refused)).is_retryable());
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(classify("x", sqlx::Error::Io(reset)).is_retryable());
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert!(classify("x", sqlx::Error::Io(eof)).is_retryable());
        assert!(classify("x", sqlx::Error::PoolTimedOut).is_retryable());
        match classify("listing devices", sqlx::Error::PoolClosed) {
            StoreError::Backend(msg) => assert_eq!(msg, "listing devices: the store is closed"),
            other => panic!("PoolClosed must be Backend, got {other:?}"),
        }
        assert!(matches!(classify("x", sqlx::Error::RowNotFound), StoreError::Backend(_)));
        let protocol = sqlx::Error::Protocol("garbage".into());
        assert!(matches!(classify("x", protocol), StoreError::Backend(_)));
    }

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("postgres://peerline:s3cr@t@db.example:5432/peerline"),
            "postgres://peerline:***@db.example:5432/peerline"
        );
        assert_eq!(
            redact("postgres://peerline@127.0.0.1:5/x"),
            "postgres://peerline@127.0.0.1:5/x"
        );
        assert_eq!(redact("postgresql://h/db"), "postgresql://h/db");
        assert_eq!(
            redact("postgres://u@h/db?sslmode=require&password=hunter2&application_name=a"),
            "postgres://u@h/db?sslmode=require&password=***&application_name=a"
        );
        assert_eq!(
            redact("postgres://u:pw@h/db?PASSWORD=pw"),
            "postgres://u:***@h/db?PASSWORD=***"
        );
        assert_eq!(redact("not a url"), "not a url");
    }
}
