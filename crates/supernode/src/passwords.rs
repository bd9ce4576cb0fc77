//! Password hashing with Argon2id, off the async threads and bounded in concurrency, and a dummy
//! hash so that a login for an unknown user costs exactly what a wrong password costs.
//!
//! A hash waits for a slot behind a [`Gate`]: it is given up, never run, when its connection has
//! closed or its deadline has passed before a slot came free, so that requests abandoned by
//! their senders cannot keep the hash slots busy for everyone else.
//!
//! Each slot owns one Argon2 block buffer (19 MiB with the default parameters), allocated at
//! start and reused by every hash and check in that slot. Letting the `argon2` crate allocate
//! one per hash made glibc keep the freed 19 MiB blocks in its heap: the supernode's RSS grew by
//! hundreds of MiB after a few hundred password logins and never came back. With the buffers
//! owned here it stays at its base (which includes the buffers) however many hashes run.

use std::sync::{Arc, Mutex, PoisonError};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use peerline_wire::{ErrorBody, ErrorCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::metrics as m;

/// The password of the dummy hash: nobody's, never accepted (an unknown user's check ignores
/// the result).
const DUMMY_PASSWORD: &[u8] = b"peerline-dummy-password-for-unknown-users";

/// The largest salt a stored hash may have, decoded (the PHC format's limit, as the `argon2`
/// crate's own check uses).
const MAX_SALT_LEN: usize = 64;

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The stored hash is not a PHC string of an Argon2 hash this code can recompute.
    #[error("the stored password hash is malformed: {0}")]
    Malformed(argon2::password_hash::Error),
    /// Argon2 refused its inputs (a password or salt out of its bounds).
    #[error("argon2 failed: {0}")]
    Argon2(argon2::Error),
    /// A stored hash asks for more memory than could be allocated.
    #[error("the stored password hash needs {blocks} KiB of memory, more than is available")]
    TooMuchMemory {
        /// Blocks of 1 KiB it needs.
        blocks: usize,
    },
}

impl From<argon2::password_hash::Error> for PasswordError {
    fn from(e: argon2::password_hash::Error) -> Self {
        PasswordError::Malformed(e)
    }
}

impl From<argon2::Error> for PasswordError {
    fn from(e: argon2::Error) -> Self {
        PasswordError::Argon2(e)
    }
}

/// The memory of one hash slot: Argon2's blocks, reused from hash to hash.
#[derive(Debug)]
pub struct Scratch {
    blocks: Vec<Block>,
}

impl Scratch {
    /// A buffer for hashes with `params` (every block written now, so the memory is resident
    /// from the start and RSS does not move when the first password is checked).
    pub fn new(params: &Params) -> Self {
        Self { blocks: vec![Block::default(); params.block_count()] }
    }

    /// Argon2 `hasher` of `password` and `salt` into `out`: in this buffer when it is large
    /// enough (always, for hashes made with the parameters it was sized for), else in a
    /// buffer of this call's own, so that a stored hash with larger parameters still verifies
    /// without growing the slot for good.
    fn run(
        &mut self,
        hasher: &Argon2<'_>,
        params: &Params,
        password: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> Result<(), PasswordError> {
        let needed = params.block_count();
        if needed <= self.blocks.len() {
            return Ok(hasher.hash_password_into_with_memory(
                password,
                salt,
                out,
                &mut self.blocks,
            )?);
        }
        // Parsed from storage: an absurd m must fail, not abort the process.
        let mut once = Vec::new();
        once.try_reserve_exact(needed)
            .map_err(|_| PasswordError::TooMuchMemory { blocks: needed })?;
        once.resize(needed, Block::default());
        Ok(hasher.hash_password_into_with_memory(password, salt, out, &mut once)?)
    }

    /// A new Argon2id hash (default parameters, random salt) of `password`, as a PHC string:
    /// the same string `argon2`'s `PasswordHasher::hash_password` makes.
    pub fn hash(&mut self, password: &[u8]) -> Result<String, PasswordError> {
        let salt = SaltString::generate(&mut OsRng);
        self.hash_with_salt(password, &salt)
    }

    fn hash_with_salt(
        &mut self,
        password: &[u8],
        salt: &SaltString,
    ) -> Result<String, PasswordError> {
        let params = Params::DEFAULT;
        let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut salt_bytes = [0u8; MAX_SALT_LEN];
        let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        self.run(&hasher, &params, password, salt_bytes, &mut out)?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params)?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out)?),
        };
        Ok(phc.to_string())
    }

    /// Whether `password` matches the PHC string `stored`: recomputed with the algorithm,
    /// version, parameters and salt written in it (whatever they are, as `argon2`'s
    /// `PasswordVerifier` does) and compared in constant time.
    pub fn verify(&mut self, password: &[u8], stored: &str) -> Result<bool, PasswordError> {
        use argon2::password_hash::Error as Phc;
        let parsed = PasswordHash::new(stored)?;
        let algorithm = Algorithm::try_from(parsed.algorithm)?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).map_err(|_| Phc::Version)?,
            None => Version::default(),
        };
        // Also takes the output length from the stored hash.
        let params = Params::try_from(&parsed)?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Err(Phc::PhcStringField.into());
        };
        let mut salt_bytes = [0u8; MAX_SALT_LEN];
        let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
        let hasher = Argon2::new(algorithm, version, params.clone());
        // A parsed `Output` is at most `Output::MAX_LENGTH` bytes long.
        let mut out = [0u8; Output::MAX_LENGTH];
        let out = out.get_mut(..expected.len()).ok_or(Phc::PhcStringField)?;
        self.run(&hasher, &params, password, salt_bytes, out)?;
        // `Output`'s equality is constant-time.
        Ok(Output::new(out)? == expected)
    }
}

/// When a queued hash is given up.
#[derive(Debug, Clone)]
pub struct Gate {
    /// Past this, the request is answered `rate_limited` instead of hashed.
    pub deadline: Instant,
    /// Becomes `true` when the connection closed.
    pub closed: watch::Receiver<bool>,
}

/// A hash slot in use: the right to hash (a permit) and the slot's buffer. Dropped when the hash
/// is done, on the blocking thread that ran it, so the slot stays taken while Argon2 runs even
/// if the request that asked for it was cancelled.
struct Slot {
    _permit: OwnedSemaphorePermit,
    scratch: Option<Scratch>,
    pool: Arc<Mutex<Vec<Scratch>>>,
}

impl Slot {
    fn scratch(&mut self) -> &mut Scratch {
        // A buffer lost to a panicking hash is replaced (the pool holds one per permit
        // otherwise, so this allocates only then).
        self.scratch.get_or_insert_with(|| Scratch::new(&Params::DEFAULT))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(scratch) = self.scratch.take() {
            self.pool.lock().unwrap_or_else(PoisonError::into_inner).push(scratch);
        }
    }
}

/// Hashes and verifies passwords on the blocking pool, at most `concurrency` at a time, each in
/// one of `concurrency` preallocated buffers.
#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// One buffer per permit not taken.
    pool: Arc<Mutex<Vec<Scratch>>>,
    dummy_hash: Arc<str>,
}

impl Passwords {
    /// Creates the hasher with `concurrency` slots of Argon2 memory (about 19 MiB each, kept
    /// for the life of the process) and its dummy hash (one Argon2 run at start, which also
    /// checks that hashing works here).
    pub fn new(concurrency: usize) -> anyhow::Result<Self> {
        let mut pool: Vec<Scratch> =
            (0..concurrency).map(|_| Scratch::new(&Params::DEFAULT)).collect();
        let dummy = match pool.first_mut() {
            Some(scratch) => scratch.hash(DUMMY_PASSWORD),
            None => anyhow::bail!("password hashing needs at least one slot"),
        }
        .map_err(|e| anyhow::anyhow!("argon2 self-test failed: {e}"))?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            pool: Arc::new(Mutex::new(pool)),
            dummy_hash: dummy.into(),
        })
    }

    /// Waits for a hash slot, unless the gate closes first.
    async fn slot(&self, gate: &Gate) -> Result<Slot, ErrorBody> {
        let mut closed = gate.closed.clone();
        let permit = tokio::select! {
            permit = self.permits.clone().acquire_owned() => {
                permit.map_err(|_| ErrorBody::new(ErrorCode::ShuttingDown))?
            }
            () = tokio::time::sleep_until(gate.deadline) => {
                metrics::counter!(m::HASHES_ABANDONED, "reason" => "deadline").increment(1);
                let mut body = ErrorBody::with_message(
                    ErrorCode::RateLimited,
                    "the supernode is busy checking passwords; try again shortly",
                );
                body.retry_after_secs = Some(1 + rand::random::<u64>() % 5);
                return Err(body);
            }
            _ = closed.wait_for(|c| *c) => {
                metrics::counter!(m::HASHES_ABANDONED, "reason" => "closed").increment(1);
                return Err(ErrorBody::new(ErrorCode::ShuttingDown));
            }
        };
        let scratch = self.pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
        Ok(Slot { _permit: permit, scratch, pool: self.pool.clone() })
    }

    /// Hashes a new password (PHC string).
    pub async fn hash(&self, password: String, gate: &Gate) -> Result<String, ErrorBody> {
        let mut slot = self.slot(gate).await?;
        tokio::task::spawn_blocking(move || {
            slot.scratch().hash(password.as_bytes()).map_err(|e| {
                tracing::error!(error = %e, "hashing a password failed");
                ErrorBody::new(ErrorCode::Internal)
            })
        })
        .await
        .map_err(|_| ErrorBody::new(ErrorCode::Internal))?
    }

    /// Verifies a password against a stored hash, or against the dummy hash when `stored` is
    /// `None` (unknown user): same work, always `false`. A stored hash that cannot be checked
    /// (corrupt) is an internal error, logged, never a match.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
        gate: &Gate,
    ) -> Result<bool, ErrorBody> {
        let mut slot = self.slot(gate).await?;
        let real = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        tokio::task::spawn_blocking(move || {
            match slot.scratch().verify(password.as_bytes(), &hash) {
                Ok(ok) => Ok(ok && real),
                Err(e) => {
                    tracing::error!(error = %e, "a stored password hash could not be checked");
                    Err(ErrorBody::new(ErrorCode::Internal))
                }
            }
        })
        .await
        .map_err(|_| ErrorBody::new(ErrorCode::Internal))?
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    use super::*;

    fn scratch() -> Scratch {
        Scratch::new(&Params::DEFAULT)
    }

    /// What `argon2` itself says of `password` against `phc`.
    fn argon2_accepts(password: &[u8], phc: &str) -> bool {
        Argon2::default().verify_password(password, &PasswordHash::new(phc).unwrap()).is_ok()
    }

    #[test]
    fn a_new_hash_verifies_with_argon2_itself_and_has_its_format() {
        let phc = scratch().hash(b"correct horse").unwrap();
        assert!(argon2_accepts(b"correct horse", &phc));
        assert!(!argon2_accepts(b"correct horse!", &phc));
        // The format argon2's own hash_password writes, so existing databases keep working.
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default().hash_password(b"x", &salt).unwrap().to_string();
        let ours = scratch().hash_with_salt(b"x", &salt).unwrap();
        assert_eq!(ours, theirs);
        assert!(ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }

    #[test]
    fn an_argon2_hash_verifies_here_and_a_wrong_password_does_not() {
        let salt = SaltString::generate(&mut OsRng);
        let phc = Argon2::default().hash_password(b"hunter2 hunter2", &salt).unwrap().to_string();
        let mut s = scratch();
        assert!(s.verify(b"hunter2 hunter2", &phc).unwrap());
        assert!(!s.verify(b"hunter2 hunter3", &phc).unwrap());
        assert!(!s.verify(b"", &phc).unwrap());
        // The same buffer, reused, still gives the right answers.
        assert!(s.verify(b"hunter2 hunter2", &phc).unwrap());
    }

    /// Every hash argon2's verifier accepts is accepted here: other algorithms, the old
    /// version, other costs, key ids, associated data, other output and salt lengths.
    #[test]
    fn hashes_with_other_parameters_verify() {
        let mut s = scratch();
        let cases = [
            (Algorithm::Argon2id, Version::V0x13, Params::new(64, 1, 1, None).unwrap()),
            (Algorithm::Argon2i, Version::V0x13, Params::new(256, 3, 2, Some(16)).unwrap()),
            (Algorithm::Argon2d, Version::V0x10, Params::new(128, 2, 1, Some(64)).unwrap()),
            (
                Algorithm::Argon2id,
                Version::V0x13,
                argon2::ParamsBuilder::new()
                    .m_cost(64)
                    .t_cost(1)
                    .keyid(argon2::KeyId::new(b"key1").unwrap())
                    .data(argon2::AssociatedData::new(b"peerline").unwrap())
                    .build()
                    .unwrap(),
            ),
        ];
        for (algorithm, version, params) in cases {
            let hasher = Argon2::new(algorithm, version, params);
            let salt = SaltString::encode_b64(&[7u8; 32]).unwrap();
            let phc = hasher.hash_password(b"pw-pw-pw", &salt).unwrap().to_string();
            assert!(s.verify(b"pw-pw-pw", &phc).unwrap(), "{phc}");
            assert!(!s.verify(b"pw-pw-pX", &phc).unwrap(), "{phc}");
        }
        // Without a version: argon2 takes 0x13.
        let salt = SaltString::encode_b64(&[9u8; 16]).unwrap();
        let phc =
            Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(64, 1, 1, None).unwrap())
                .hash_password(b"pw-pw-pw", &salt)
                .unwrap()
                .to_string()
                .replace("$v=19", "");
        assert!(argon2_accepts(b"pw-pw-pw", &phc));
        assert!(s.verify(b"pw-pw-pw", &phc).unwrap());
    }

    /// A stored hash needing more memory than the slot has is checked in a buffer of its own,
    /// and the slot keeps its size.
    #[test]
    fn a_hash_larger_than_the_slot_verifies() {
        let mut small = Scratch::new(&Params::new(64, 1, 1, None).unwrap());
        let phc = scratch().hash(b"big memory").unwrap();
        assert!(small.verify(b"big memory", &phc).unwrap());
        assert!(!small.verify(b"big memorY", &phc).unwrap());
        assert_eq!(small.blocks.len(), 64);
    }

    #[test]
    fn a_malformed_stored_hash_is_an_error() {
        let good = scratch().hash(b"pw").unwrap();
        let no_hash = good.rsplit_once('$').unwrap().0.to_owned();
        let bad_b64 = format!("{good}!!");
        let malformed = [
            "",
            "plaintext-password",
            "$argon2id$test",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            no_hash.as_str(),
            bad_b64.as_str(),
            "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E",
            "$argon2id$v=99$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$argon2id$v=19$m=1,t=2,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$argon2id$v=19$m=19456,t=0,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$argon2id$v=19$m=19456,t=2,p=1,x=3$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ];
        let mut s = scratch();
        for stored in malformed {
            assert!(s.verify(b"pw", stored).is_err(), "{stored:?} was not refused");
            // The current code never accepted any of them either.
            assert!(
                PasswordHash::new(stored)
                    .map(|h| Argon2::default().verify_password(b"pw", &h).is_err())
                    .unwrap_or(true)
            );
        }
        assert!(s.verify(b"pw", &good).unwrap(), "the buffer survives the refusals");
    }

    fn open_gate() -> (Gate, watch::Sender<bool>) {
        let (tx, closed) = watch::channel(false);
        (Gate { deadline: Instant::now() + std::time::Duration::from_secs(60), closed }, tx)
    }

    #[tokio::test]
    async fn passwords_hash_verify_and_dummy() {
        let passwords = Passwords::new(2).unwrap();
        let (gate, _tx) = open_gate();
        let phc = passwords.hash("s3cret-s3cret".into(), &gate).await.unwrap();
        assert!(argon2_accepts(b"s3cret-s3cret", &phc));
        let check = |pw: &str, stored: Option<&str>| {
            passwords.verify(pw.to_owned(), stored.map(str::to_owned), &gate)
        };
        assert!(check("s3cret-s3cret", Some(&phc)).await.unwrap());
        assert!(!check("s3cret-s3creT", Some(&phc)).await.unwrap());
        // Unknown user: the dummy hash's own password does not log anyone in.
        let dummy = std::str::from_utf8(DUMMY_PASSWORD).unwrap();
        assert!(!check(dummy, None).await.unwrap());
        assert!(!check("s3cret-s3cret", None).await.unwrap());
        assert_eq!(check("x", Some("garbage")).await.unwrap_err().code, ErrorCode::Internal);
        // The dummy costs what a real check costs: same algorithm and parameters.
        let dummy = PasswordHash::new(&passwords.dummy_hash).unwrap();
        let real = PasswordHash::new(&phc).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        // Every buffer came back to the pool.
        assert_eq!(passwords.pool.lock().unwrap().len(), 2);
    }
}
