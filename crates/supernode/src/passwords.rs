//! Password hashing with Argon2id, off the async threads and bounded in concurrency, and a dummy
//! hash so that a login for an unknown user costs exactly what a wrong password costs.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use peerline_wire::{ErrorBody, ErrorCode};
use tokio::sync::Semaphore;

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

    /// Hashes a new password (PHC string).
    pub async fn hash(&self, password: String) -> Result<String, ErrorBody> {
        let _permit = self.permits.acquire().await.map_err(|_| ErrorCode::ShuttingDown)?;
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
    ) -> Result<bool, ErrorBody> {
        let _permit = self.permits.acquire().await.map_err(|_| ErrorCode::ShuttingDown)?;
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
