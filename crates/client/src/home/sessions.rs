//! Saved logins in `sessions.json`: one [`SavedSession`] per supernode URL, updated under the
//! home's lock so that processes sharing the home keep each other's sessions.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::PathBuf;

use super::files::{read_optional, write_atomic};
use super::{Home, HomeError};

const SESSIONS_FILE: &str = "sessions.json";

/// A login that can be resumed without the password: what the supernode returned at login.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedSession {
    /// The account name.
    pub username: String,
    /// The session token (a secret: never log it).
    pub token: String,
    /// The device id the supernode assigned to this home's device key.
    pub device_id: i64,
}

/// Redacts the token, so a session can be logged or printed in an assertion without leaking it.
impl fmt::Debug for SavedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SavedSession")
            .field("username", &self.username)
            .field("token", &"<redacted>")
            .field("device_id", &self.device_id)
            .finish()
    }
}

impl Home {
    /// The session saved for `supernode_url`, if any.
    pub fn session(&self, supernode_url: &str) -> Result<Option<SavedSession>, HomeError> {
        Ok(self.read_sessions()?.remove(supernode_url))
    }

    /// Saves (or replaces) the session for `supernode_url`; sessions for other supernodes are
    /// kept.
    pub fn save_session(&self, supernode_url: &str, s: &SavedSession) -> Result<(), HomeError> {
        let _lock = self.lock()?;
        let mut sessions = self.read_sessions()?;
        sessions.insert(supernode_url.to_owned(), s.clone());
        self.write_sessions(&sessions)
    }

    /// Removes the session for `supernode_url`, if there is one (logout).
    pub fn clear_session(&self, supernode_url: &str) -> Result<(), HomeError> {
        let _lock = self.lock()?;
        let mut sessions = self.read_sessions()?;
        if sessions.remove(supernode_url).is_some() {
            self.write_sessions(&sessions)?;
        }
        Ok(())
    }

    fn sessions_path(&self) -> PathBuf {
        self.dir.join(SESSIONS_FILE)
    }

    fn read_sessions(&self) -> Result<BTreeMap<String, SavedSession>, HomeError> {
        let path = self.sessions_path();
        match read_optional(&path)? {
            None => Ok(BTreeMap::new()),
            Some(text) => serde_json::from_str(&text)
                .map_err(|source| HomeError::CorruptSessions { path, source }),
        }
    }

    fn write_sessions(&self, sessions: &BTreeMap<String, SavedSession>) -> Result<(), HomeError> {
        let path = self.sessions_path();
        let mut json = serde_json::to_string_pretty(sessions)
            .map_err(|e| HomeError::Write { path: path.clone(), source: io::Error::other(e) })?;
        json.push('\n');
        write_atomic(&path, json.as_bytes()).map_err(|source| HomeError::Write { path, source })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use std::fs;

    use super::*;
    use crate::home::tests::home;

    fn session(name: &str, device_id: i64) -> SavedSession {
        SavedSession { username: name.into(), token: format!("tok-{name}"), device_id }
    }

    #[test]
    fn sessions_save_load_clear_for_two_urls() {
        let (_tmp, home) = home();
        let a = "wss://a.example:7443";
        let b = "wss://b.example:7443";
        assert_eq!(home.session(a).unwrap(), None);
        home.clear_session(a).unwrap(); // clearing nothing is fine

        home.save_session(a, &session("alice", 1)).unwrap();
        home.save_session(b, &session("bob", 2)).unwrap();
        assert_eq!(home.session(a).unwrap(), Some(session("alice", 1)));
        assert_eq!(home.session(b).unwrap(), Some(session("bob", 2)));

        home.save_session(a, &session("alice2", 3)).unwrap();
        assert_eq!(home.session(a).unwrap(), Some(session("alice2", 3)));

        home.clear_session(a).unwrap();
        assert_eq!(home.session(a).unwrap(), None);
        assert_eq!(home.session(b).unwrap(), Some(session("bob", 2)));

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(home.dir().join(SESSIONS_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn corrupt_sessions_file_names_the_file() {
        let (_tmp, home) = home();
        let path = home.dir().join(SESSIONS_FILE);
        fs::write(&path, "{not json").unwrap();
        let err = home.session("wss://x").unwrap_err();
        assert!(matches!(err, HomeError::CorruptSessions { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
        // A save does not clobber the file the user may want to repair.
        assert!(home.save_session("wss://x", &session("a", 1)).is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), "{not json");
    }

    #[test]
    fn concurrent_saves_keep_every_session() {
        let (_tmp, home) = home();
        std::thread::scope(|s| {
            for i in 0..8 {
                let home = home.clone();
                s.spawn(move || {
                    home.save_session(&format!("wss://n{i}"), &session("u", i)).unwrap();
                });
            }
        });
        for i in 0..8 {
            assert_eq!(home.session(&format!("wss://n{i}")).unwrap(), Some(session("u", i)));
        }
    }

    #[test]
    fn debug_redacts_the_token() {
        let text = format!("{:?}", session("alice", 1));
        assert!(text.contains("alice"));
        assert!(!text.contains("tok-alice"), "{text}");
    }
}
