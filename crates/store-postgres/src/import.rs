//! Bulk import: many accounts (with devices and sessions) or contact pairs per transaction, each
//! table written by one `INSERT ... SELECT FROM unnest(arrays)` statement, storing the same rows
//! the one-at-a-time methods store.

use std::collections::{HashMap, HashSet};

use peerline_store::{
    DeviceId, ImportAccount, ImportedAccount, StoreError, StoreResult, TimestampMs, UserId,
    random_device_id,
};
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::accounts::username_key;
use crate::contacts::pair_lock_key;
use crate::error::failed;

/// How many rounds of random draws a batch of new devices gets before giving up (see
/// `devices::ID_DRAWS`: a collision is astronomically rare; the bound only stops a broken
/// random source from looping forever).
const ID_DRAWS: usize = 16;

/// Usernames that are accounts, with their ids.
pub(crate) async fn user_ids(
    pool: &PgPool,
    usernames: &[String],
) -> StoreResult<Vec<(String, UserId)>> {
    let keys: Vec<String> = usernames.iter().map(|u| username_key(u)).collect();
    let rows = sqlx::query("SELECT id, username FROM accounts WHERE username = ANY($1::text[])")
        .bind(&keys)
        .fetch_all(pool)
        .await
        .map_err(failed("looking up usernames"))?;
    rows.iter()
        .map(|row| {
            let id: UserId = row.try_get("id").map_err(failed("looking up usernames"))?;
            let name: String = row.try_get("username").map_err(failed("looking up usernames"))?;
            Ok((name, id))
        })
        .collect()
}

/// Creates the accounts, their devices and sessions in one transaction.
pub(crate) async fn import_accounts(
    pool: &PgPool,
    accounts: &[ImportAccount],
    now: TimestampMs,
) -> StoreResult<Vec<Option<ImportedAccount>>> {
    let usernames: Vec<String> =
        accounts.iter().map(|a| username_key(&a.account.username)).collect();
    check_input(accounts, &usernames)?;
    let display: Vec<&str> = accounts.iter().map(|a| a.account.display_name.as_str()).collect();
    let display_lower: Vec<String> =
        accounts.iter().map(|a| a.account.display_name.to_lowercase()).collect();
    let hashes: Vec<&str> = accounts.iter().map(|a| a.account.password_hash.as_str()).collect();

    let mut tx = pool.begin().await.map_err(failed("importing accounts"))?;
    // An existing name (also one a supernode registers meanwhile) is skipped, not an error.
    let inserted = sqlx::query(
        "INSERT INTO accounts
             (username, display_name, display_name_lower, password_hash, status, discoverable,
              created_at)
         SELECT u, d, l, h, 'online', TRUE, $5
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t (u, d, l, h)
         ON CONFLICT (username) DO NOTHING
         RETURNING id, username",
    )
    .bind(&usernames)
    .bind(&display)
    .bind(&display_lower)
    .bind(&hashes)
    .bind(now)
    .fetch_all(&mut *tx)
    .await
    .map_err(failed("importing accounts"))?;
    let mut created: HashMap<String, UserId> = HashMap::with_capacity(inserted.len());
    for row in &inserted {
        let id: UserId = row.try_get("id").map_err(failed("importing accounts"))?;
        let name: String = row.try_get("username").map_err(failed("importing accounts"))?;
        created.insert(name, id);
    }

    let wanted: usize = accounts
        .iter()
        .zip(&usernames)
        .filter(|(_, name)| created.contains_key(*name))
        .map(|(a, _)| a.devices.len())
        .sum();
    let mut ids = issue_device_ids(&mut tx, wanted).await?.into_iter();

    let mut result = Vec::with_capacity(accounts.len());
    let (mut dev_ids, mut dev_users, mut dev_keys, mut dev_names) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut s_hashes, mut s_users, mut s_devices, mut s_expires) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
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
            dev_ids.push(id);
            dev_users.push(user);
            dev_keys.push(device.public_key.to_vec());
            dev_names.push(device.name.as_str());
        }
        for session in &account.sessions {
            let device = device_ids.get(session.device).copied().ok_or_else(|| {
                StoreError::Backend("importing accounts: a session names no device".into())
            })?;
            s_hashes.push(session.token_hash.to_vec());
            s_users.push(user);
            s_devices.push(device);
            s_expires.push(session.expires_at);
        }
        result.push(Some(ImportedAccount { id: user, username: name.clone(), device_ids }));
    }

    sqlx::query(
        "INSERT INTO devices (id, user_id, public_key, name, created_at, last_seen_at)
         SELECT i, u, k, n, $5, $5
         FROM unnest($1::int8[], $2::int8[], $3::bytea[], $4::text[]) AS t (i, u, k, n)",
    )
    .bind(&dev_ids)
    .bind(&dev_users)
    .bind(&dev_keys)
    .bind(&dev_names)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(failed("importing devices"))?;
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, device_id, expires_at)
         SELECT * FROM unnest($1::bytea[], $2::int8[], $3::int8[], $4::int8[])",
    )
    .bind(&s_hashes)
    .bind(&s_users)
    .bind(&s_devices)
    .bind(&s_expires)
    .execute(&mut *tx)
    .await
    .map_err(failed("importing sessions"))?;
    tx.commit().await.map_err(failed("importing accounts"))?;
    Ok(result)
}

/// Refuses input the transaction could not store as promised: a username twice, a session
/// naming no device.
fn check_input(accounts: &[ImportAccount], usernames: &[String]) -> StoreResult<()> {
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

/// Issues `n` new device ids in the transaction: random, never issued before, distinct. A
/// supernode drawing the same id at the same moment makes one of the two inserts wait for the
/// other and then find it taken, as in `devices::upsert`.
async fn issue_device_ids(
    tx: &mut Transaction<'_, Postgres>,
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
        let got: Vec<DeviceId> = sqlx::query_scalar(
            "INSERT INTO issued_device_ids (id) SELECT unnest($1::int8[])
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(&draw)
        .fetch_all(&mut **tx)
        .await
        .map_err(failed("issuing device ids"))?;
        issued.extend(got);
    }
    if issued.len() == n {
        return Ok(issued);
    }
    Err(StoreError::Backend(format!(
        "issuing device ids: {ID_DRAWS} rounds of random ids were taken; the random source is \
         broken"
    )))
}

/// Writes each pair's two `accepted` rows in one transaction, each pair with its own version.
///
/// Every pair's advisory lock is taken first (in a fixed order, so two imports cannot deadlock),
/// as `contacts::write_pair` takes it: a supernode changing one of these pairs at the same
/// moment waits for the import, or the import for it.
pub(crate) async fn import_contacts(
    pool: &PgPool,
    pairs: &[(UserId, UserId)],
    now: TimestampMs,
) -> StoreResult<u64> {
    let mut distinct: Vec<(UserId, UserId)> = Vec::with_capacity(pairs.len());
    for &(a, b) in pairs {
        if a == b {
            return Err(StoreError::Backend(format!(
                "importing contacts: account {a} cannot be its own contact"
            )));
        }
        distinct.push((a.min(b), a.max(b)));
    }
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.is_empty() {
        return Ok(0);
    }
    let mut locks: Vec<(i32, i32)> = distinct.iter().map(|&(a, b)| pair_lock_key(a, b)).collect();
    locks.sort_unstable();
    locks.dedup();
    let (k1, k2): (Vec<i32>, Vec<i32>) = locks.into_iter().unzip();
    let (a, b): (Vec<UserId>, Vec<UserId>) = distinct.iter().copied().unzip();

    let mut tx = pool.begin().await.map_err(failed("importing contacts"))?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k1, k2)
         FROM unnest($1::int4[], $2::int4[]) AS t (k1, k2)",
    )
    .bind(&k1)
    .bind(&k2)
    .execute(&mut *tx)
    .await
    .map_err(failed("locking contact pairs"))?;
    // The locks are sorted and a function scan returns them in array order.
    // One version per pair, shared by its two rows: the CTE is materialized (it is used twice
    // and calls a volatile function), so nextval runs once per pair.
    sqlx::query(
        "WITH pairs AS MATERIALIZED (
             SELECT a, b, nextval('contact_version') AS v
             FROM unnest($1::int8[], $2::int8[]) AS t (a, b))
         INSERT INTO contacts (owner, peer, state, message, updated_at, version)
         SELECT a, b, 'accepted', NULL, $3, v FROM pairs
         UNION ALL
         SELECT b, a, 'accepted', NULL, $3, v FROM pairs
         ON CONFLICT (owner, peer) DO UPDATE SET
             state = excluded.state,
             message = NULL,
             updated_at = excluded.updated_at,
             version = excluded.version",
    )
    .bind(&a)
    .bind(&b)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(failed("importing contacts"))?;
    tx.commit().await.map_err(failed("importing contacts"))?;
    Ok(distinct.len() as u64)
}
