//! The client's home directory (`$PEERLINE_HOME`): device key, saved sessions and pinned supernode
//! certificates, written so that several CLI processes can share one home safely.
//!
//! Layout:
//!
//! | file               | content                                                    | mode |
//! | ------------------ | ---------------------------------------------------------- | ---- |
//! | `device.key`       | the ed25519 device secret key, 64 hex digits               | 0600 |
//! | `sessions.json`    | JSON object: supernode URL → [`SavedSession`]              | 0600 |
//! | `known_supernodes` | one `host:port FINGERPRINT` per line, `#` comments allowed | 0600 |
//! | `peer_keys.json`   | contacts' device keys pinned on first use (see `peer_keys`) | 0600 |
//! | `settings.json`    | this user's [`Settings`] (e.g. `relay_only`)               | 0600 |
//! | `.lock`            | empty; serializes read-modify-write updates across processes | 0600 |
//!
//! Every file is replaced atomically (temporary file in the same directory, then rename), so a
//! reader never sees half a file. Updates that read, modify and write a file (sessions, pins) hold an
//! advisory lock on `.lock` so that two processes don't lose each other's changes. The device key
//! is never overwritten once it exists: a corrupt key is reported, not silently replaced, because
//! a new key is a new device identity.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use rand::RngCore;
use rand::rngs::OsRng;

use crate::tls::{format_fingerprint, parse_fingerprint};

const DEVICE_KEY_FILE: &str = "device.key";
const SESSIONS_FILE: &str = "sessions.json";
const KNOWN_SUPERNODES_FILE: &str = "known_supernodes";
const LOCK_FILE: &str = ".lock";
const SETTINGS_FILE: &str = "settings.json";

/// The user's settings on this device (`peerline settings`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Calls offer only TURN relay candidates, so peers never learn this user's IP address
    /// (like Signal's "always relay calls"). Costs some latency; needs a relay.
    pub relay_only: bool,
}

/// Written at the top of a `known_supernodes` file this module creates, so a user who opens it
/// knows what the lines mean.
const KNOWN_SUPERNODES_HEADER: &str = "\
# Peerline known supernodes: one `host:port FINGERPRINT` per line.
# FINGERPRINT is the SHA-256 of the supernode's TLS certificate. It is recorded the first time
# you connect (trust on first use); if a supernode's certificate legitimately changes, delete
# its line (or run the CLI's forget command) and connect again.
";

/// The client's home directory. Cheap to open; every method reads the files afresh, so changes
/// made by another process sharing the directory are seen.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

/// What went wrong with a file in the home directory. Every variant names the file, so the user
/// knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// The home directory could not be created.
    #[error("cannot create the Peerline home directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The home path exists but is not a directory.
    #[error("{path} is not a directory; set PEERLINE_HOME to a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `device.key` exists but does not hold a key. It is left untouched.
    #[error(
        "device key file {path} is corrupt ({reason}); restore it from a backup, or move it away \
         to create a new device identity (other devices and the supernode will see a new device)"
    )]
    CorruptDeviceKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `sessions.json` is not a valid sessions file.
    #[error("{path} is corrupt ({source}); fix it, or delete it and log in again")]
    CorruptSessions {
        /// The sessions file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// `settings.json` is not a valid settings file.
    #[error("{path} is not valid settings ({source}); fix it or delete it")]
    CorruptSettings {
        /// The settings file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A line of `known_supernodes` for the requested supernode cannot be parsed. It is not
    /// ignored: skipping it would silently turn a pinned supernode into an unpinned one.
    #[error("{path} line {line}: {reason}; fix or delete that line")]
    BadPinLine {
        /// The `known_supernodes` file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },
    /// `peer_keys.json` is not a valid pins file.
    #[error("{path} is corrupt ({reason}); fix it, or delete it to pin contacts' keys anew")]
    CorruptPeerKeys {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A `host:port` argument that cannot be stored in `known_supernodes`.
    #[error("invalid supernode address {0:?}: expected host:port, without spaces or '#'")]
    InvalidHostPort(String),
}

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
    /// Opens the home directory at `dir`, creating it (and its parents) if missing. On unix a
    /// directory created here gets mode 0700; an existing directory keeps its mode.
    pub fn open(dir: &Path) -> Result<Home, HomeError> {
        match fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(HomeError::NotADirectory { path: dir.to_path_buf() });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut builder = fs::DirBuilder::new();
                builder.recursive(true);
                #[cfg(unix)]
                std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
                builder
                    .create(dir)
                    .map_err(|source| HomeError::CreateDir { path: dir.to_path_buf(), source })?;
            }
            Err(source) => {
                return Err(HomeError::Read { path: dir.to_path_buf(), source });
            }
        }
        Ok(Home { dir: dir.to_path_buf() })
    }

    /// The home directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

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

    /// The certificate fingerprint pinned for `host_port` in `known_supernodes`, if any. Host
    /// names compare case-insensitively. A malformed line for this supernode is an error (see
    /// [`HomeError::BadPinLine`]); malformed lines for other supernodes don't matter here.
    pub fn pinned_fingerprint(&self, host_port: &str) -> Result<Option<[u8; 32]>, HomeError> {
        check_host_port(host_port)?;
        let path = self.known_supernodes_path();
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        for (index, line) in text.lines().enumerate() {
            match PinLine::parse(line) {
                PinLine::Entry { host, fingerprint } if same_host(host, host_port) => {
                    return fingerprint.map(Some).map_err(|reason| HomeError::BadPinLine {
                        path: path.clone(),
                        line: index + 1,
                        reason,
                    });
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Pins `fingerprint` for `host_port`: replaces its line in `known_supernodes` (keeping its
    /// position) or appends one. Comments and other lines are kept as they are.
    pub fn pin_fingerprint(
        &self,
        host_port: &str,
        fingerprint: &[u8; 32],
    ) -> Result<(), HomeError> {
        check_host_port(host_port)?;
        let path = self.known_supernodes_path();
        let _lock = self.lock()?;
        let text = read_optional(&path)?.unwrap_or_else(|| KNOWN_SUPERNODES_HEADER.to_owned());
        let new_line = format!("{host_port} {}", format_fingerprint(fingerprint));
        let mut lines = Vec::new();
        let mut placed = false;
        for line in text.lines() {
            if line_is_for(line, host_port) {
                // The first line for this host is replaced in place; any duplicates are dropped
                // so that the file can't hold two different answers.
                if !placed {
                    lines.push(new_line.as_str());
                    placed = true;
                }
            } else {
                lines.push(line);
            }
        }
        if !placed {
            lines.push(&new_line);
        }
        write_atomic(&path, join_lines(&lines).as_bytes())
            .map_err(|source| HomeError::Write { path, source })
    }

    /// Removes every line for `host_port` from `known_supernodes` (also a malformed one, so this
    /// is how a user recovers from a bad line). Returns whether there was one.
    pub fn forget_fingerprint(&self, host_port: &str) -> Result<bool, HomeError> {
        check_host_port(host_port)?;
        let path = self.known_supernodes_path();
        let _lock = self.lock()?;
        let Some(text) = read_optional(&path)? else {
            return Ok(false);
        };
        let kept: Vec<&str> = text.lines().filter(|line| !line_is_for(line, host_port)).collect();
        if kept.len() == text.lines().count() {
            return Ok(false);
        }
        write_atomic(&path, join_lines(&kept).as_bytes())
            .map_err(|source| HomeError::Write { path, source })?;
        Ok(true)
    }

    /// The user's settings (defaults when none were saved).
    pub fn settings(&self) -> Result<Settings, HomeError> {
        let path = self.dir.join(SETTINGS_FILE);
        match read_optional(&path)? {
            None => Ok(Settings::default()),
            Some(text) => serde_json::from_str(&text)
                .map_err(|source| HomeError::CorruptSettings { path, source }),
        }
    }

    /// Saves the user's settings.
    pub fn save_settings(&self, settings: &Settings) -> Result<(), HomeError> {
        let path = self.dir.join(SETTINGS_FILE);
        let mut json = serde_json::to_string_pretty(settings)
            .map_err(|e| HomeError::Write { path: path.clone(), source: io::Error::other(e) })?;
        json.push('\n');
        write_atomic(&path, json.as_bytes()).map_err(|source| HomeError::Write { path, source })
    }

    /// The path of the `known_supernodes` file, for messages that tell the user where to look.
    pub fn known_supernodes_path(&self) -> PathBuf {
        self.dir.join(KNOWN_SUPERNODES_FILE)
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

    /// Takes the home's advisory lock until the returned guard is dropped. Blocks while another
    /// process holds it. Where the file system has no locks, goes on unlocked: writes stay
    /// atomic, only concurrent updates of the same file may lose one of them.
    pub(crate) fn lock(&self) -> Result<HomeLock, HomeError> {
        let path = self.dir.join(LOCK_FILE);
        let file = open_private(&path, OpenOptions::new().read(true).write(true).create(true))
            .map_err(|source| HomeError::Lock { path: path.clone(), source })?;
        match file.lock() {
            Ok(()) => Ok(HomeLock { file: Some(file) }),
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                tracing::debug!(path = %path.display(), "file locking unsupported; updating unlocked");
                Ok(HomeLock { file: None })
            }
            Err(source) => Err(HomeError::Lock { path, source }),
        }
    }
}

/// Holds the home's advisory lock; unlocks on drop.
pub(crate) struct HomeLock {
    file: Option<File>,
}

impl Drop for HomeLock {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            // Closing the file releases the lock anyway; unlocking first just makes it prompt.
            let _ = file.unlock();
        }
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

/// One line of `known_supernodes`.
enum PinLine<'a> {
    /// Blank or a `#` comment.
    Ignored,
    /// A line for `host`, with its fingerprint or what is wrong with it.
    Entry { host: &'a str, fingerprint: Result<[u8; 32], String> },
}

impl<'a> PinLine<'a> {
    fn parse(line: &'a str) -> PinLine<'a> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return PinLine::Ignored;
        }
        let mut fields = line.split_whitespace();
        let Some(host) = fields.next() else {
            return PinLine::Ignored;
        };
        let fingerprint = match fields.next() {
            None => Err(format!("no fingerprint after {host:?}")),
            Some(fp) => match fields.next() {
                // A trailing `# comment` is allowed.
                Some(extra) if !extra.starts_with('#') => {
                    Err(format!("unexpected {extra:?} after the fingerprint"))
                }
                _ => parse_fingerprint(fp).ok_or_else(|| {
                    format!(
                        "{fp:?} is not a SHA-256 fingerprint (32 hex byte pairs, ':'-separated)"
                    )
                }),
            },
        };
        PinLine::Entry { host, fingerprint }
    }
}

/// Whether `line` is a (possibly malformed) line for `host_port`.
fn line_is_for(line: &str, host_port: &str) -> bool {
    matches!(PinLine::parse(line), PinLine::Entry { host, .. } if same_host(host, host_port))
}

/// DNS names are case-insensitive; so is the hex of an IPv6 address.
fn same_host(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn check_host_port(host_port: &str) -> Result<(), HomeError> {
    if host_port.is_empty()
        || host_port.starts_with('#')
        || host_port.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(HomeError::InvalidHostPort(host_port.to_owned()));
    }
    Ok(())
}

fn join_lines(lines: &[&str]) -> String {
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    text
}

/// Reads a UTF-8 file; `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, HomeError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HomeError::Read { path: path.to_path_buf(), source }),
    }
}

/// Opens with mode 0600 on unix when the file is created.
fn open_private(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
    options.open(path)
}

/// Writes `contents` to a new private temporary file next to `path` and returns its path. The
/// temporary file is removed again on error.
fn write_temp(path: &Path, contents: &[u8]) -> io::Result<PathBuf> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.{:016x}.tmp", std::process::id(), OsRng.next_u64()));
    let result = open_private(&temp, OpenOptions::new().write(true).create_new(true)).and_then(
        |mut file| {
            file.write_all(contents)?;
            file.sync_all()
        },
    );
    match result {
        Ok(()) => Ok(temp),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// Replaces `path` with `contents` atomically (mode 0600 on unix).
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let temp = write_temp(path, contents)?;
    fs::rename(&temp, path).inspect_err(|_| {
        let _ = fs::remove_file(&temp);
    })
}

/// Creates `path` with `contents` atomically, unless it already exists (then it is left alone and
/// this still succeeds). A hard link is used because, unlike rename, it never replaces an existing
/// file; where the file system has no hard links, falls back to rename (callers hold the lock).
fn create_new_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let temp = write_temp(path, contents)?;
    let result = match fs::hard_link(&temp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(_) if path.exists() => Ok(()),
        Err(_) => {
            return fs::rename(&temp, path).inspect_err(|_| {
                let _ = fs::remove_file(&temp);
            });
        }
    };
    let _ = fs::remove_file(&temp);
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn home() -> (tempfile::TempDir, Home) {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::open(&tmp.path().join("peerline")).unwrap();
        (tmp, home)
    }

    fn session(name: &str, device_id: i64) -> SavedSession {
        SavedSession { username: name.into(), token: format!("tok-{name}"), device_id }
    }

    #[test]
    fn open_creates_nested_private_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join("b");
        let home = Home::open(&dir).unwrap();
        assert_eq!(home.dir(), dir);
        assert!(dir.is_dir());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
        }
        // Opening again is fine.
        Home::open(&dir).unwrap();
    }

    #[test]
    fn open_rejects_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        fs::write(&file, "x").unwrap();
        let err = Home::open(&file).unwrap_err();
        assert!(matches!(err, HomeError::NotADirectory { .. }), "{err}");
        assert!(err.to_string().contains(&file.display().to_string()));
    }

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

    #[test]
    fn pins_add_replace_forget() {
        let (_tmp, home) = home();
        let host = "sn.example:7443";
        assert_eq!(home.pinned_fingerprint(host).unwrap(), None);
        assert!(!home.forget_fingerprint(host).unwrap());

        home.pin_fingerprint(host, &[1; 32]).unwrap();
        home.pin_fingerprint("other.example:7443", &[2; 32]).unwrap();
        assert_eq!(home.pinned_fingerprint(host).unwrap(), Some([1; 32]));
        assert_eq!(home.pinned_fingerprint("SN.Example:7443").unwrap(), Some([1; 32]));
        assert_eq!(home.pinned_fingerprint("sn.example:443").unwrap(), None);

        home.pin_fingerprint(host, &[3; 32]).unwrap();
        assert_eq!(home.pinned_fingerprint(host).unwrap(), Some([3; 32]));
        let text = fs::read_to_string(home.known_supernodes_path()).unwrap();
        assert_eq!(text.matches(host).count(), 1, "{text}");
        assert!(text.contains(&format!("{host} {}", format_fingerprint(&[3; 32]))));

        assert!(home.forget_fingerprint(host).unwrap());
        assert_eq!(home.pinned_fingerprint(host).unwrap(), None);
        assert!(!home.forget_fingerprint(host).unwrap());
        assert_eq!(home.pinned_fingerprint("other.example:7443").unwrap(), Some([2; 32]));
    }

    #[test]
    fn hand_edited_file_comments_are_kept() {
        let (_tmp, home) = home();
        let path = home.known_supernodes_path();
        let fp1 = format_fingerprint(&[0xAA; 32]).to_lowercase();
        let fp2 = hex::encode([0xBB; 32]);
        let original = format!(
            "# my supernodes\n\n  a.example:1 {fp1}   # office\nb.example:2\t{fp2}\n# trailing\n"
        );
        fs::write(&path, &original).unwrap();
        assert_eq!(home.pinned_fingerprint("a.example:1").unwrap(), Some([0xAA; 32]));
        assert_eq!(home.pinned_fingerprint("b.example:2").unwrap(), Some([0xBB; 32]));

        home.pin_fingerprint("b.example:2", &[0xCC; 32]).unwrap();
        home.pin_fingerprint("c.example:3", &[0xDD; 32]).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let expected = format!(
            "# my supernodes\n\n  a.example:1 {fp1}   # office\nb.example:2 {}\n# trailing\n\
             c.example:3 {}\n",
            format_fingerprint(&[0xCC; 32]),
            format_fingerprint(&[0xDD; 32]),
        );
        assert_eq!(text, expected);

        assert!(home.forget_fingerprint("a.example:1").unwrap());
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# my supernodes\n\nb.example:2 "), "{text}");
        assert!(text.contains("# trailing\n"));
    }

    #[test]
    fn new_file_starts_with_an_explaining_comment() {
        let (_tmp, home) = home();
        home.pin_fingerprint("a:1", &[0; 32]).unwrap();
        let text = fs::read_to_string(home.known_supernodes_path()).unwrap();
        assert!(text.starts_with("# Peerline known supernodes"), "{text}");
        assert_eq!(home.pinned_fingerprint("a:1").unwrap(), Some([0; 32]));
    }

    #[test]
    fn malformed_line_for_the_host_is_an_error_not_a_missing_pin() {
        let (_tmp, home) = home();
        let path = home.known_supernodes_path();
        let good = format_fingerprint(&[7; 32]);
        fs::write(&path, format!("bad.example:1 ZZ:ZZ\nshort.example:1\ngood.example:1 {good}\n"))
            .unwrap();
        let err = home.pinned_fingerprint("bad.example:1").unwrap_err();
        assert!(matches!(err, HomeError::BadPinLine { line: 1, .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
        let err = home.pinned_fingerprint("short.example:1").unwrap_err();
        assert!(matches!(err, HomeError::BadPinLine { line: 2, .. }), "{err}");
        // Other hosts are unaffected.
        assert_eq!(home.pinned_fingerprint("good.example:1").unwrap(), Some([7; 32]));
        // Re-pinning or forgetting repairs the line.
        home.pin_fingerprint("bad.example:1", &[8; 32]).unwrap();
        assert_eq!(home.pinned_fingerprint("bad.example:1").unwrap(), Some([8; 32]));
        assert!(home.forget_fingerprint("short.example:1").unwrap());
        assert_eq!(home.pinned_fingerprint("short.example:1").unwrap(), None);
    }

    #[test]
    fn host_port_that_would_break_the_file_is_rejected() {
        let (_tmp, home) = home();
        for bad in ["", "a b:1", "#x:1", "a:1\nb:2"] {
            let err = home.pin_fingerprint(bad, &[0; 32]).unwrap_err();
            assert!(matches!(err, HomeError::InvalidHostPort(_)), "{bad:?}: {err}");
        }
        assert!(!home.known_supernodes_path().exists());
    }
}
