//! Fuzz harness: arbitrary rows in a supernode's SQLite database, read back through the `Store`
//! API, so every row decoder (`peerline-store-sqlite`'s `decode` module and the queries around
//! it) meets values of any type.
//!
//! The schema's STRICT tables, NOT NULL and CHECK constraints keep such values out of a database
//! the supernode wrote; a file edited by hand, restored from elsewhere or damaged is another
//! matter. So the fuzz database is the real schema with those guards taken out of the stored
//! table definitions (as a tampered file would have them), and each input fills the tables with
//! values of every SQLite type (NULL, integer, real, text, blob), or with valid ones.
//!
//! Beyond "no panic", it checks that every failure is `StoreError::Backend` (corruption is
//! reported, never a panic or a wrong error kind) and that what decodes is what was asked for:
//! the requested id, rows of the requested user, no more than `limit` rows, undelivered and unread
//! lists holding only undelivered and unread messages.

use std::path::PathBuf;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use peerline_store::{Store, StoreError, StoreResult};
use peerline_store_sqlite::SqliteStore;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteSynchronous};
// Table and column names below are constants of this file, never input.
use sqlx::{AssertSqlSafe, Sqlite, SqlitePool};

/// Rows per table; enough for joins and ordering, small enough to stay fast.
const MAX_ROWS: usize = 6;

const STATUSES: [&str; 4] = ["online", "away", "busy", "invisible"];
const STATES: [&str; 4] = ["accepted", "incoming", "outgoing", "blocked"];

/// One stored value: any SQLite type, or a value the schema would accept, so the fuzzer reaches
/// both the valid rows and the corrupt ones.
#[derive(Arbitrary, Debug)]
enum Value {
    Null,
    /// A user, device or message id that exists in most inputs (1..=4).
    Id(u8),
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    /// A 32-byte key or token hash filled with one byte.
    Key(u8),
    /// A valid status or contact state.
    Word(u8),
}

/// The rows of every table, and what to ask the store for.
#[derive(Arbitrary, Debug)]
pub struct Input {
    accounts: Vec<[Value; 8]>,
    devices: Vec<[Value; 6]>,
    sessions: Vec<[Value; 4]>,
    contacts: Vec<[Value; 6]>,
    messages: Vec<[Value; 7]>,
    missed_calls: Vec<[Value; 6]>,
    user: u8,
    other: u8,
    limit: u8,
    key: u8,
    query: String,
}

/// Each table with the columns an input row fills, in order.
const TABLES: [(&str, &str); 6] = [
    (
        "accounts",
        "id, username, display_name, display_name_lower, password_hash, status, discoverable, \
         created_at",
    ),
    ("devices", "id, user_id, public_key, name, created_at, last_seen_at"),
    ("sessions", "token_hash, user_id, device_id, expires_at"),
    ("contacts", "owner, peer, state, message, updated_at, version"),
    ("messages", "id, sender, recipient, text, sent_at, delivered_at, read_at"),
    ("missed_calls", "id, callee, caller, call_id, at, acked"),
];

struct Fixture {
    runtime: tokio::runtime::Runtime,
    store: SqliteStore,
    /// A second connection that writes the rows, with checks and foreign keys off.
    tamper: SqlitePool,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
        // tmpfs where there is one: the store syncs every write.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }
            .unwrap_or_else(|e| panic!("temporary directory: {e}"));
        let path = dir.path().join("peerline.db");
        let (store, tamper) = runtime.block_on(open(path));
        Fixture { runtime, store, tamper, _dir: dir }
    })
}

/// Creates the database with the real migrations, strips the guards from its table definitions,
/// and opens the store on the result.
async fn open(path: PathBuf) -> (SqliteStore, SqlitePool) {
    let fresh = SqliteStore::open(&path).await.unwrap_or_else(|e| panic!("create: {e}"));
    fresh.close().await;
    let tamper = tamper_connection(&path).await;
    for statement in [
        "PRAGMA writable_schema = ON",
        "UPDATE sqlite_schema SET sql = replace(replace(replace(sql, \
             ') STRICT, WITHOUT ROWID', ') WITHOUT ROWID'), ') STRICT', ')'), 'NOT NULL', '') \
         WHERE type = 'table'",
        "PRAGMA writable_schema = OFF",
    ] {
        sqlx::query(statement)
            .execute(&tamper)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    // Reconnect, so the connection reads the changed schema.
    tamper.close().await;
    let tamper = tamper_connection(&path).await;
    let store = SqliteStore::open(&path).await.unwrap_or_else(|e| panic!("open: {e}"));
    (store, tamper)
}

/// The connection that writes the rows: no checks, no foreign keys, no syncs.
async fn tamper_connection(path: &std::path::Path) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .foreign_keys(false)
        .synchronous(SqliteSynchronous::Off)
        .pragma("ignore_check_constraints", "ON");
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap_or_else(|e| panic!("tamper connection: {e}"))
}

fn bind<'q>(
    query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>,
    value: &'q Value,
) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments> {
    match value {
        Value::Null => query.bind(None::<i64>),
        Value::Id(n) => query.bind(i64::from(n % 4) + 1),
        Value::Int(n) => query.bind(*n),
        Value::Real(x) => query.bind(*x),
        Value::Text(s) => query.bind(s.as_str()),
        Value::Blob(b) => query.bind(b.as_slice()),
        Value::Key(b) => query.bind(vec![*b; 32]),
        Value::Word(n) => {
            let words = if n % 2 == 0 { STATUSES } else { STATES };
            query.bind(words[usize::from(n / 2) % words.len()])
        }
    }
}

async fn fill(tamper: &SqlitePool, input: &Input) {
    // One transaction for the whole input: a commit per row would dominate the run time.
    let Ok(mut tx) = tamper.begin().await else { return };
    for (table, _) in TABLES {
        let _ = sqlx::query(AssertSqlSafe(format!("DELETE FROM {table}"))).execute(&mut *tx).await;
    }
    let rows: [Vec<&[Value]>; 6] = [
        input.accounts.iter().map(|r| &r[..]).collect(),
        input.devices.iter().map(|r| &r[..]).collect(),
        input.sessions.iter().map(|r| &r[..]).collect(),
        input.contacts.iter().map(|r| &r[..]).collect(),
        input.messages.iter().map(|r| &r[..]).collect(),
        input.missed_calls.iter().map(|r| &r[..]).collect(),
    ];
    for ((table, columns), rows) in TABLES.iter().zip(&rows) {
        for row in rows.iter().take(MAX_ROWS) {
            let marks = vec!["?"; row.len()].join(", ");
            let sql = format!("INSERT OR IGNORE INTO {table} ({columns}) VALUES ({marks})");
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for value in *row {
                query = bind(query, value);
            }
            // A value SQLite itself refuses (text as an INTEGER PRIMARY KEY) just leaves the row
            // out.
            let _ = query.execute(&mut *tx).await;
        }
    }
    let _ = tx.commit().await;
}

/// The only error corruption may cause is `Backend`; the value, when there is one.
fn ok<T>(result: StoreResult<T>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(StoreError::Backend(_)) => None,
        Err(other) => panic!("corrupt data gave {other:?}, not Backend"),
    }
}

async fn read_back(store: &SqliteStore, input: &Input) {
    let user = i64::from(input.user % 4) + 1;
    let other = i64::from(input.other % 4) + 1;
    let limit = u32::from(input.limit % 8);
    let within = |n: usize| n <= limit as usize;

    if let Some(Some(account)) = ok(store.account_by_id(user).await) {
        assert_eq!(account.id, user);
        if let Some(Some(again)) = ok(store.account_by_username(&account.username).await) {
            assert!(again.username.eq_ignore_ascii_case(&account.username));
        }
    }
    if let Some(Some(account)) = ok(store.account_by_username(&input.query).await) {
        assert!(account.username.eq_ignore_ascii_case(&input.query));
    }
    if let Some(devices) = ok(store.devices(user).await) {
        assert!(devices.iter().all(|d| d.user_id == user), "{devices:?}");
    }
    let _ = ok(store.session(&[input.key; 32]).await);
    if let Some((mine, theirs)) = ok(store.contact_pair(user, other).await) {
        assert!(mine.is_none_or(|r| (r.owner, r.peer) == (user, other)));
        assert!(theirs.is_none_or(|r| (r.owner, r.peer) == (other, user)));
    }
    if let Some(contacts) = ok(store.contacts(user, None, limit).await) {
        assert!(within(contacts.len()));
        // The next page starts after the last name of this one.
        if let Some(last) = contacts.last()
            && let Some(next) = ok(store.contacts(user, Some(&last.username), limit).await)
        {
            assert!(within(next.len()));
        }
    }
    if let Some(count) = ok(store.incoming_requests(user, limit).await) {
        assert!(count <= u64::from(limit));
    }
    let _ = ok(store.contact_links(user).await);
    if let Some(hits) = ok(store.search(&input.query, other, limit).await) {
        assert!(within(hits.len()) && hits.iter().all(|h| h.id != other), "{hits:?}");
    }
    for after in [None, Some(2)] {
        if let Some(messages) = ok(store.undelivered(user, after, limit).await) {
            assert!(within(messages.len()));
            assert!(messages.iter().all(|m| m.to_id == user && m.delivered_at.is_none()));
            assert!(messages.iter().all(|m| after.is_none_or(|a| m.id > a)));
        }
        if let Some(messages) = ok(store.unread(user, after, limit).await) {
            assert!(within(messages.len()));
            assert!(messages.iter().all(|m| m.to_id == user && m.read_at.is_none()));
            assert!(messages.iter().all(|m| after.is_none_or(|a| m.id > a)));
        }
    }
    if let Some(counts) = ok(store.undelivered_counts(other, user, limit).await) {
        assert!(counts.from_sender <= u64::from(limit) && counts.total <= u64::from(limit));
    }
    if let Some(sends) = ok(store.recent_sends(user, 0, limit).await) {
        assert!(sends.count <= u64::from(limit));
        assert!(sends.count > 0 || sends.oldest.is_none(), "{sends:?}");
    }
    if let Some(messages) = ok(store.history(user, other, limit, None).await) {
        assert!(within(messages.len()));
        let pair = |m: &peerline_store::StoredMessage| {
            (m.from_id, m.to_id) == (user, other) || (m.from_id, m.to_id) == (other, user)
        };
        assert!(messages.iter().all(pair), "{messages:?}");
    }
    if let Some(calls) = ok(store.undelivered_missed_calls(user, limit).await) {
        assert!(within(calls.len()) && calls.iter().all(|c| c.callee_id == user));
    }
    // Writes that return decoded rows.
    if let Some(messages) = ok(store.mark_read(user, &[1, 2, 3, 4], 1).await) {
        assert!(messages.iter().all(|m| m.to_id == user));
    }
    if let Some(call) = ok(store.record_missed_call(user, other, "fuzz-call", 1).await) {
        assert_eq!((call.callee_id, call.call_id.as_str()), (user, "fuzz-call"));
    }
    let _ = ok(store.ack_missed_calls(user, &[1, 2, 3, 4]).await);
    if let Some(device) = ok(store.upsert_device(user, &[input.key; 32], "fuzz", 1).await) {
        assert_eq!((device.user_id, device.public_key), (user, [input.key; 32]));
    }
}

/// Decodes an [`Input`] from one input the way a typed cargo-fuzz target does, and runs it.
pub fn store_records(data: &[u8]) {
    if let Some(input) = crate::structured::<Input>(data) {
        fill_and_read(&input);
    }
}

/// Fills the tampered database with the input's rows and reads them back through the `Store`
/// API; panics when a check fails.
pub fn fill_and_read(input: &Input) {
    let fixture = fixture();
    fixture.runtime.block_on(async {
        fill(&fixture.tamper, input).await;
        read_back(&fixture.store, input).await;
    });
}
