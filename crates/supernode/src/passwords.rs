//! Password hashing with Argon2id, off the async threads and bounded in concurrency, and a dummy
//! hash so that a login for an unknown user costs exactly what a wrong password costs.
//!
//! A hash waits for a slot behind a [`Gate`]: it is given up, never run, when its connection has
//! closed or its deadline has passed before a slot came free, so that requests abandoned by
//! their senders cannot keep the hash slots busy for everyone else.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use peerline_wire::{ErrorBody, ErrorCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::metrics as m;

/// When a queued hash is given up.
#[derive(Debug, Clone)]
pub struct Gate {
    /// Past this, the request is answered `rate_limited` instead of hashed.
    pub deadline: Instant,
    /// Becomes `true` when the connection closed.
    pub closed: watch::Receiver<bool>,
}

/// Hashes and verifies passwords on the blocking pool, at most `concurrency` at a time.
#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    dummy_hash: Arc<str>,
}

impl Passwords {
    /// Creates the hasher and its dummy hash (one Argon2 run at start).
    pub fn new(concurrency: usize) -> anyhow::Result<Self> {
        let salt = SaltString::generate(&mut OsRng);
        let dummy = Argon2::default()
            .hash_password(b"peerline-dummy-password-for-unknown-users", &salt)
            .map_err(|e| anyhow::anyhow!("argon2 self-test failed: {e}"))?
            .to_string();
        Ok(Self { permits: Arc::new(Semaphore::new(concurrency)), dummy_hash: dummy.into() })
    }

    /// Waits for a hash slot, unless the gate closes first.
    async fn slot(&self, gate: &Gate) -> Result<OwnedSemaphorePermit, ErrorBody> {
        let mut closed = gate.closed.clone();
        tokio::select! {
            permit = self.permits.clone().acquire_owned() => {
                permit.map_err(|_| ErrorBody::new(ErrorCode::ShuttingDown))
            }
            () = tokio::time::sleep_until(gate.deadline) => {
                metrics::counter!(m::HASHES_ABANDONED, "reason" => "deadline").increment(1);
                let mut body = ErrorBody::with_message(
                    ErrorCode::RateLimited,
                    "the supernode is busy checking passwords; try again shortly",
                );
                body.retry_after_secs = Some(1 + rand::random::<u64>() % 5);
                Err(body)
            }
            _ = closed.wait_for(|c| *c) => {
                metrics::counter!(m::HASHES_ABANDONED, "reason" => "closed").increment(1);
                Err(ErrorBody::new(ErrorCode::ShuttingDown))
            }
        }
    }

    /// Hashes a new password (PHC string).
    pub async fn hash(&self, password: String, gate: &Gate) -> Result<String, ErrorBody> {
        let _permit = self.slot(gate).await?;
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|_| ErrorBody::new(ErrorCode::Internal))
        })
        .await
        .map_err(|_| ErrorBody::new(ErrorCode::Internal))?
    }

    /// Verifies a password against a stored hash, or against the dummy hash when `stored` is
    /// `None` (unknown user): same work, always `false`.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
        gate: &Gate,
    ) -> Result<bool, ErrorBody> {
        let _permit = self.slot(gate).await?;
        let real = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        tokio::task::spawn_blocking(move || {
            let ok = PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
                })
                .unwrap_or(false);
            ok && real
        })
        .await
        .map_err(|_| ErrorBody::new(ErrorCode::Internal))
    }
}
