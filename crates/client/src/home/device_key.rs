//! The device's ed25519 signing key in `device.key`: created once from OS randomness, never
//! overwritten (a new key is a new device identity), reported rather than replaced when corrupt.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io;
use std::path::Path;

use ed25519_dalek::SigningKey;
use rand::RngCore;
use rand::rngs::OsRng;

use super::files::{create_new_atomic, read_optional};
use super::{Home, HomeError};

const DEVICE_KEY_FILE: &str = "device.key";

impl Home {
    /// The device's signing key from `device.key`, created on first use from 32 bytes of OS
    /// randomness. An existing key is never overwritten: if two processes create one at the same
    /// time, both end up with the one that was stored first. A corrupt key file is an error and is
    /// left as it is.
    pub fn device_key(&self) -> Result<SigningKey, HomeError> {
        let path = self.dir.join(DEVICE_KEY_FILE);
        if let Some(key) = read_device_key(&path)? {
            return Ok(key);
        }
        let lock = self.lock()?;
        // Another process may have created it while we waited for the lock.
        if let Some(key) = read_device_key(&path)? {
            return Ok(key);
        }
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        // Hex-encode on the stack rather than in a String, so no copy of the secret is left in
        // freed heap memory; the buffers are cleared below (best effort: no zeroize crate here).
        let mut hex_key = [0u8; 64];
        let stored = hex::encode_to_slice(secret, &mut hex_key)
            .map_err(io::Error::other)
            .and_then(|()| create_new_atomic(&path, &hex_key));
        secret.fill(0);
        hex_key.fill(0);
        drop(lock);
        stored.map_err(|source| HomeError::Write { path: path.clone(), source })?;
        // Read back what is on disk: it is ours, or another process's that won the race.
        read_device_key(&path)?.ok_or_else(|| HomeError::Read {
            path,
            source: io::Error::new(io::ErrorKind::NotFound, "device key vanished after creation"),
        })
    }
}

/// Reads and parses `device.key`; `None` if it does not exist.
fn read_device_key(path: &Path) -> Result<Option<SigningKey>, HomeError> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    warn_if_readable_by_others(path);
    let corrupt = |reason: String| HomeError::CorruptDeviceKey { path: path.to_path_buf(), reason };
    let trimmed = text.trim();
    if trimmed.len() != 64 {
        return Err(corrupt(format!("expected 64 hex digits, found {} characters", trimmed.len())));
    }
    let mut secret = [0u8; 32];
    hex::decode_to_slice(trimmed, &mut secret)
        .map_err(|e| corrupt(format!("not hexadecimal: {e}")))?;
    let key = SigningKey::from_bytes(&secret);
    secret.fill(0);
    Ok(Some(key))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "device key is accessible to other users; run `chmod 600` on it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use std::fs;

    use super::*;
    use crate::home::tests::home;

    #[test]
    fn device_key_created_once_and_reloaded() {
        let (_tmp, home) = home();
        let first = home.device_key().unwrap();
        let second = home.device_key().unwrap();
        assert_eq!(first.to_bytes(), second.to_bytes());
        let again = Home::open(home.dir()).unwrap().device_key().unwrap();
        assert_eq!(first.to_bytes(), again.to_bytes());

        let path = home.dir().join(DEVICE_KEY_FILE);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim(), hex::encode(first.to_bytes()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(home.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn two_homes_get_different_keys() {
        let (_a, a) = home();
        let (_b, b) = home();
        assert_ne!(a.device_key().unwrap().to_bytes(), b.device_key().unwrap().to_bytes());
    }

    #[test]
    fn concurrent_first_use_agrees_on_one_key() {
        let (_tmp, home) = home();
        let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
            let handles: Vec<_> =
                (0..8).map(|_| s.spawn(|| home.device_key().unwrap().to_bytes())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
        assert_eq!(home.device_key().unwrap().to_bytes(), keys[0]);
    }

    #[test]
    fn corrupt_device_key_is_an_error_and_left_untouched() {
        let (_tmp, home) = home();
        let path = home.dir().join(DEVICE_KEY_FILE);
        for corrupt in ["not hex at all\n", "abcd\n", &"zz".repeat(32), ""] {
            fs::write(&path, corrupt).unwrap();
            let err = home.device_key().unwrap_err();
            assert!(matches!(err, HomeError::CorruptDeviceKey { .. }), "{err}");
            assert!(err.to_string().contains(&path.display().to_string()), "{err}");
            assert_eq!(fs::read_to_string(&path).unwrap(), corrupt);
        }
    }

    #[test]
    fn device_key_accepts_hand_written_uppercase_hex() {
        let (_tmp, home) = home();
        let secret = [0xABu8; 32];
        fs::write(home.dir().join(DEVICE_KEY_FILE), hex::encode_upper(secret)).unwrap();
        assert_eq!(home.device_key().unwrap().to_bytes(), secret);
    }
}
