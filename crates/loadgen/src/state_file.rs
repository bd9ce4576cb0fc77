//! The state file: what `register` learned (each user's session token and device key) so that
//! `login` and `hold` log in with a token and never pay for an Argon2 hash.
//!
//! Format: one JSON object, username → `{"token": "...", "device_key": "<64 hex>"}`, where
//! `device_key` is the Ed25519 secret key the token is bound to. Test credentials only.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

/// One user's saved login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedUser {
    /// The session token from a password login of this device.
    pub token: String,
    /// The device's Ed25519 secret key, 32 bytes as hex.
    pub device_key: String,
}

impl SavedUser {
    /// The device key, parsed.
    pub fn signing_key(&self) -> anyhow::Result<SigningKey> {
        let bytes: [u8; 32] = hex::decode(&self.device_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .context("device_key in the state file is not 64 hex characters")?;
        Ok(SigningKey::from_bytes(&bytes))
    }
}

/// Every saved user, by username.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StateFile {
    users: BTreeMap<String, SavedUser>,
}

/// Sort key that puts `load2` before `load10`: the name without its trailing digits, then the
/// digits as a number.
fn natural_key(name: &str) -> (&str, u64, &str) {
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let digits = name.get(stem.len()..).unwrap_or("");
    (stem, digits.parse().unwrap_or(0), name)
}

impl StateFile {
    /// Reads the file; a missing file is an empty state.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("state file {} is not valid", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading state file {}", path.display())),
        }
    }

    /// Writes the file atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_vec_pretty(self).context("encoding the state file")?;
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Records (or replaces) a user.
    pub fn insert(&mut self, username: String, user: SavedUser) {
        self.users.insert(username, user);
    }

    /// Whether a user is saved.
    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// How many users are saved.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no user is saved.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Users `skip..skip + count` in natural order (`load0, load1, …, load10`), or an error that
    /// says how many there are.
    pub fn take(&self, skip: usize, count: usize) -> anyhow::Result<Vec<(String, SavedUser)>> {
        let mut all: Vec<(&String, &SavedUser)> = self.users.iter().collect();
        all.sort_by(|a, b| natural_key(a.0).cmp(&natural_key(b.0)));
        if skip.saturating_add(count) > all.len() {
            bail!(
                "the state file holds {} users; {count} starting at {skip} were asked for \
                 (run `register` with more --users first)",
                all.len()
            );
        }
        Ok(all
            .into_iter()
            .skip(skip)
            .take(count)
            .map(|(name, user)| (name.clone(), user.clone()))
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn user(t: &str) -> SavedUser {
        SavedUser { token: t.into(), device_key: "11".repeat(32) }
    }

    #[test]
    fn round_trips_and_takes_in_natural_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(StateFile::load(&path).unwrap().len(), 0);
        let mut s = StateFile::default();
        for i in [10, 2, 1, 0] {
            s.insert(format!("load{i}"), user(&format!("t{i}")));
        }
        s.save(&path).unwrap();
        let back = StateFile::load(&path).unwrap();
        assert_eq!(back, s);
        let names: Vec<String> = back.take(1, 3).unwrap().into_iter().map(|u| u.0).collect();
        assert_eq!(names, ["load1", "load2", "load10"]);
        assert!(back.take(2, 3).is_err());
        assert!(back.take(0, 1).unwrap()[0].1.signing_key().is_ok());
    }

    #[test]
    fn a_bad_device_key_is_an_error_not_a_panic() {
        let mut u = user("t");
        u.device_key = "zz".into();
        assert!(u.signing_key().is_err());
    }
}
