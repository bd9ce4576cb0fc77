//! `seed`: thousands of users at once for a cluster benchmark or test, written straight into the
//! cluster's PostgreSQL through the same `Store` code the supernodes use: for each user an
//! account, a device key and a session token bound to it, saved in the state file as `register`
//! saves them. What it skips is only the cost of creating them (two Argon2id hashes per user
//! through the protocol, about 25 users per second on the development machine); every later
//! login is a real token login, signed by the device key, checked by the supernode.
//!
//! All seeded accounts share one Argon2id hash of the one password (hashed once here, with the
//! supernode's parameters), so a password login of a seeded user works too. Only a database on
//! a loopback address is accepted: this is a load-test tool.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use ed25519_dalek::SigningKey;
use peerline_store::{NewAccount, Store, StoreError};
use peerline_store_postgres::PostgresStore;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::dial::Tally;
use crate::state_file::SavedUser;
use crate::workers;

/// The device name seeded devices get: the light client's and `hold`'s, so that their token
/// logins find the device as it is and write nothing.
pub const DEVICE_NAME: &str = "peerline-loadgen";

/// What `seed` was asked to do.
#[derive(Debug, Clone)]
pub struct SeedPlan {
    /// `postgres://user@127.0.0.1:port/database` of the cluster.
    pub database_url: String,
    /// Username prefix; user `i` is `{prefix}{first + i}`.
    pub prefix: String,
    /// Number of the first user.
    pub first: usize,
    /// How many users.
    pub users: usize,
    /// The password every user gets.
    pub password: String,
    /// Users written at once.
    pub concurrency: usize,
    /// How long the session tokens stay valid (the supernode's default is 30 days).
    pub token_lifetime: Duration,
}

/// The result of `seed`.
#[derive(Debug, Serialize)]
pub struct SeedReport {
    /// Always `seed`.
    pub command: &'static str,
    /// Users asked for.
    pub users: usize,
    /// Accounts created.
    pub created: usize,
    /// Accounts that existed already (each got a new device and token).
    pub existing: usize,
    /// Failed, by kind.
    pub failures: Tally,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Users per second.
    pub per_second: f64,
}

/// Refuses a database that is not on a loopback address; `tool` (`seed`, `provision`) names
/// the subcommand in the error.
pub(crate) fn check_loopback(database_url: &str, tool: &str) -> anyhow::Result<()> {
    let url = url::Url::parse(database_url)
        .with_context(|| format!("{database_url:?} is not a postgres:// URL"))?;
    let loopback = match url.host() {
        // `postgres:` is not a scheme the URL parser knows, so an IP literal stays a string.
        Some(url::Host::Domain(d)) => {
            d == "localhost" || d.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if !loopback {
        bail!("{tool} only writes to a database on a loopback address (a load-test cluster)");
    }
    Ok(())
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// One user: its account (created, or found), a fresh device key and a token bound to it.
/// Returns the saved login and whether the account existed.
async fn seed_one(
    store: &PostgresStore,
    username: String,
    password_hash: String,
    lifetime_ms: i64,
) -> Result<(String, SavedUser, bool), StoreError> {
    let now = now_ms();
    let new =
        NewAccount { username: username.clone(), display_name: username.clone(), password_hash };
    let (account, existed) = match store.create_account(new, now).await {
        Ok(account) => (account, false),
        Err(StoreError::UsernameTaken) => {
            let found = store.account_by_username(&username).await?;
            (found.ok_or_else(|| StoreError::Backend(format!("{username} vanished")))?, true)
        }
        Err(e) => return Err(e),
    };
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let public = key.verifying_key().to_bytes();
    let device = store.upsert_device(account.id, &public, DEVICE_NAME, now).await?;
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    // The supernode's format: 64 hex characters, stored as the SHA-256 of their text.
    let token = hex::encode(secret);
    let token_hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    store.create_session(&token_hash, account.id, device.id, now + lifetime_ms).await?;
    let saved = SavedUser { token, device_key: hex::encode(key.to_bytes()) };
    Ok((account.username, saved, existed))
}

/// Runs `seed`: returns the saved logins (to add to a state file) and the report.
pub async fn run(plan: SeedPlan) -> anyhow::Result<(Vec<(String, SavedUser)>, SeedReport)> {
    check_loopback(&plan.database_url, "seed")?;
    let store = PostgresStore::connect(&plan.database_url)
        .await
        .map_err(|e| anyhow!("connecting to the cluster's database: {e}"))?;
    let store = Arc::new(store);
    let password = plan.password.clone();
    let password_hash = tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await?
    .map_err(|e| anyhow!("hashing the password: {e}"))?;
    let lifetime_ms = i64::try_from(plan.token_lifetime.as_millis()).unwrap_or(i64::MAX / 2);

    eprintln!("seeding {} users into the database…", plan.users);
    let started = Instant::now();
    let outcome = {
        let (prefix, first) = (plan.prefix.clone(), plan.first);
        let store = store.clone();
        let deadline = Instant::now() + Duration::from_secs(3600);
        workers::run(plan.concurrency, plan.users, deadline, move |i| {
            let (store, hash) = (store.clone(), password_hash.clone());
            let username = format!("{prefix}{}", first + i);
            async move { seed_one(&store, username, hash, lifetime_ms).await }
        })
        .await
    };
    let seconds = started.elapsed().as_secs_f64();
    store.close().await;
    let mut report = SeedReport {
        command: "seed",
        users: plan.users,
        created: 0,
        existing: 0,
        failures: Tally::default(),
        seconds,
        per_second: 0.0,
    };
    let mut saved = Vec::with_capacity(outcome.results.len());
    for (_, result) in outcome.results {
        match result {
            Ok((username, user, existed)) => {
                if existed {
                    report.existing += 1;
                } else {
                    report.created += 1;
                }
                saved.push((username, user));
            }
            Err(e) => report.failures.add(&crate::dial::Failure::new("store", e)),
        }
    }
    report.per_second = saved.len() as f64 / seconds.max(1e-9);
    Ok((saved, report))
}

impl std::fmt::Display for SeedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seeded {} users in {:.1} s ({:.0}/s): {} created, {} existed (new device and token); \
             failed: {}",
            self.created + self.existing,
            self.seconds,
            self.per_second,
            self.created,
            self.existing,
            self.failures
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_databases() {
        assert!(check_loopback("postgres://peerline@127.0.0.1:5432/peerline", "seed").is_ok());
        assert!(check_loopback("postgres://u:p@localhost/peerline", "seed").is_ok());
        assert!(check_loopback("postgres://peerline@db.example.org/peerline", "seed").is_err());
        assert!(check_loopback("not a url", "seed").is_err());
    }
}
