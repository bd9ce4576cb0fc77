//! Bulk import: many accounts (with devices and sessions) or contact pairs per transaction,
//! written with multi-row `INSERT`s, storing the same rows the one-at-a-time methods store.

use std::collections::{HashMap, HashSet};

use peerline_store::{
    DeviceId, ImportAccount, ImportedAccount, StoreError, StoreResult, TimestampMs, UserId,
    random_device_id,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};

use crate::decode::failed;

/// Rows per `INSERT` statement: at most 7 bound values each, far below SQLite's limit of 32,766
/// variables per statement, and the same SQL text for every full chunk (one prepared statement).
const ROWS_PER_STATEMENT: usize = 500;

/// How many rounds of random draws a batch of new devices gets before giving up (see
/// `devices::ID_DRAWS`: a collision is astronomically rare; the bound only stops a broken
/// random source from looping forever).
const ID_DRAWS: usize = 16;

/// Usernames that are accounts, with their ids.
pub(crate) async fn user_ids(
    pool: &SqlitePool,
    usernames: &[String],
) -> StoreResult<Vec<(String, UserId)>> {
    let mut found = Vec::new();
    for chunk in usernames.chunks(ROWS_PER_STATEMENT) {
        let mut query =
            QueryBuilder::<Sqlite>::new("SELECT id, username FROM accounts WHERE username IN (");
        let mut names = query.separated(", ");
        for name in chunk {
            names.push_bind(name.to_ascii_lowercase());
        }
        query.push(")");
        let rows = query.build().fetch_all(pool).await.map_err(failed("looking up usernames"))?;
        for row in rows {
            let id: UserId = row.try_get("id").map_err(failed("looking up usernames"))?;
            let name: String = row.try_get("username").map_err(failed("looking up usernames"))?;
            found.push((name, id));
        }
    }
    Ok(found)
}

/// Creates the accounts, their devices and sessions in one transaction (on the only writer).
pub(crate) async fn import_accounts(
    pool: &SqlitePool,
    accounts: &[ImportAccount],
    now: TimestampMs,
) -> StoreResult<Vec<Option<ImportedAccount>>> {
    let usernames: Vec<String> =
        accounts.iter().map(|a| a.account.username.to_ascii_lowercase()).collect();
    check_input(accounts, &usernames)?;
    let mut tx = pool.begin().await.map_err(failed("importing accounts"))?;

    // Accounts: an existing name conflicts with the unique (NOCASE) index and is skipped.
    let mut created: HashMap<String, UserId> = HashMap::with_capacity(accounts.len());
    let rows: Vec<(&ImportAccount, &String)> = accounts.iter().zip(&usernames).collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO accounts (username, display_name, display_name_lower, password_hash, \
             status, discoverable, created_at) ",
        );
        query.push_values(chunk, |mut row, (a, username)| {
            row.push_bind(username.as_str())
                .push_bind(a.account.display_name.as_str())
                .push_bind(a.account.display_name.to_lowercase())
                .push_bind(a.account.password_hash.as_str())
                .push_bind("online")
                .push_bind(true)
                .push_bind(now);
        });
        query.push(" ON CONFLICT DO NOTHING RETURNING id, username");
        let inserted =
            query.build().fetch_all(&mut *tx).await.map_err(failed("importing accounts"))?;
        for row in inserted {
            let id: UserId = row.try_get("id").map_err(failed("importing accounts"))?;
            let name: String = row.try_get("username").map_err(failed("importing accounts"))?;
            created.insert(name, id);
        }
    }

    // Device ids: drawn at random and retired in issued_device_ids, as upsert_device does.
    let wanted: usize = accounts
        .iter()
        .zip(&usernames)
        .filter(|(_, name)| created.contains_key(*name))
        .map(|(a, _)| a.devices.len())
        .sum();
    let mut ids = issue_device_ids(&mut tx, wanted).await?.into_iter();

    let mut result = Vec::with_capacity(accounts.len());
    let mut devices = Vec::with_capacity(wanted);
    let mut sessions = Vec::new();
    for (account, name) in accounts.iter().zip(&usernames) {
        let Some(&user) = created.get(name) else {
            result.push(None);
            continue;
        };
        let mut device_ids = Vec::with_capacity(account.devices.len());
        for device in &account.devices {
            let id = ids.next().ok_or_else(|| {
                StoreError::Backend("importing accounts: fewer device ids than devices".into())
            })?;
            device_ids.push(id);
            devices.push((id, user, device));
        }
        for session in &account.sessions {
            let device = device_ids.get(session.device).copied().ok_or_else(|| {
                StoreError::Backend("importing accounts: a session names no device".into())
            })?;
            sessions.push((session, user, device));
        }
        result.push(Some(ImportedAccount { id: user, username: name.clone(), device_ids }));
    }

    for chunk in devices.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO devices (id, user_id, public_key, name, created_at, last_seen_at) ",
        );
        query.push_values(chunk, |mut row, (id, user, device)| {
            row.push_bind(*id)
                .push_bind(*user)
                .push_bind(device.public_key.as_slice())
                .push_bind(device.name.as_str())
                .push_bind(now)
                .push_bind(now);
        });
        query.build().execute(&mut *tx).await.map_err(failed("importing devices"))?;
    }
    for chunk in sessions.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO sessions (token_hash, user_id, device_id, expires_at) ",
        );
        query.push_values(chunk, |mut row, (session, user, device)| {
            row.push_bind(session.token_hash.as_slice())
                .push_bind(*user)
                .push_bind(*device)
                .push_bind(session.expires_at);
        });
        query.build().execute(&mut *tx).await.map_err(failed("importing sessions"))?;
    }
    tx.commit().await.map_err(failed("importing accounts"))?;
    Ok(result)
}

/// Refuses input the transaction could not store as promised: a username twice, a session
/// naming no device.
pub(crate) fn check_input(accounts: &[ImportAccount], usernames: &[String]) -> StoreResult<()> {
    let mut seen = HashSet::with_capacity(usernames.len());
    for name in usernames {
        if !seen.insert(name.as_str()) {
            return Err(StoreError::Backend(format!(
                "importing accounts: username {name:?} given twice"
            )));
        }
    }
    for account in accounts {
        if account.sessions.iter().any(|s| s.device >= account.devices.len()) {
            return Err(StoreError::Backend(format!(
                "importing accounts: a session of {:?} names no device of it",
                account.account.username
            )));
        }
    }
    Ok(())
}

/// Issues `n` new device ids in the transaction: random, never issued before, distinct.
async fn issue_device_ids(
    tx: &mut Transaction<'_, Sqlite>,
    n: usize,
) -> StoreResult<Vec<DeviceId>> {
    let mut issued: Vec<DeviceId> = Vec::with_capacity(n);
    for _ in 0..ID_DRAWS {
        let missing = n - issued.len();
        if missing == 0 {
            return Ok(issued);
        }
        // Distinct within the draw, so that one statement never claims a value twice.
        let mut draw = HashSet::with_capacity(missing);
        while draw.len() < missing {
            draw.insert(random_device_id());
        }
        let draw: Vec<DeviceId> = draw.into_iter().collect();
        for chunk in draw.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::<Sqlite>::new("INSERT INTO issued_device_ids (id) ");
            query.push_values(chunk, |mut row, id| {
                row.push_bind(*id);
            });
            query.push(" ON CONFLICT DO NOTHING RETURNING id");
            let rows =
                query.build().fetch_all(&mut **tx).await.map_err(failed("issuing device ids"))?;
            for row in rows {
                issued.push(row.try_get("id").map_err(failed("issuing device ids"))?);
            }
        }
    }
    if issued.len() == n {
        return Ok(issued);
    }
    Err(StoreError::Backend(format!(
        "issuing device ids: {ID_DRAWS} rounds of random ids were taken; the random source is \
         broken"
    )))
}

/// The pairs to write: each unordered pair once, as `(lower id, higher id)`; a pair of an
/// account with itself is refused.
pub(crate) fn distinct_pairs(pairs: &[(UserId, UserId)]) -> StoreResult<Vec<(UserId, UserId)>> {
    let mut out: Vec<(UserId, UserId)> = Vec::with_capacity(pairs.len());
    for &(a, b) in pairs {
        if a == b {
            return Err(StoreError::Backend(format!(
                "importing contacts: account {a} cannot be its own contact"
            )));
        }
        out.push((a.min(b), a.max(b)));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Writes each pair's two `accepted` rows in one transaction, each pair with its own version.
pub(crate) async fn import_contacts(
    pool: &SqlitePool,
    pairs: &[(UserId, UserId)],
    now: TimestampMs,
) -> StoreResult<u64> {
    let pairs = distinct_pairs(pairs)?;
    if pairs.is_empty() {
        return Ok(0);
    }
    let count = i64::try_from(pairs.len())
        .map_err(|_| StoreError::Backend("importing contacts: too many pairs".into()))?;
    let mut tx = pool.begin().await.map_err(failed("importing contacts"))?;
    // One step of the counter per pair, taken at once: versions last-count+1 ..= last.
    let last: i64 =
        sqlx::query_scalar("UPDATE contact_version SET value = value + ? RETURNING value")
            .bind(count)
            .fetch_one(&mut *tx)
            .await
            .map_err(failed("numbering contact changes"))?;
    let first = last - count + 1;
    let mut rows = Vec::with_capacity(2 * pairs.len());
    for (version, &(a, b)) in (first..).zip(&pairs) {
        rows.push((a, b, version));
        rows.push((b, a, version));
    }
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO contacts (owner, peer, state, message, updated_at, version) ",
        );
        query.push_values(chunk, |mut row, (owner, peer, version)| {
            row.push_bind(*owner)
                .push_bind(*peer)
                .push("'accepted'")
                .push("NULL")
                .push_bind(now)
                .push_bind(*version);
        });
        query.push(
            " ON CONFLICT (owner, peer) DO UPDATE SET state = excluded.state, message = NULL, \
             updated_at = excluded.updated_at, version = excluded.version",
        );
        query.build().execute(&mut *tx).await.map_err(failed("importing contacts"))?;
    }
    tx.commit().await.map_err(failed("importing contacts"))?;
    Ok(pairs.len() as u64)
}
