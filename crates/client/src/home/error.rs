//! [`HomeError`]: what went wrong with a file in the home directory, naming the file so the user
//! knows what to fix.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io;
use std::path::PathBuf;

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
    /// `sessions.json` (sessions per URL, from before networks) is not a valid sessions file.
    #[error("{path} is corrupt ({source}); fix it, or delete it and log in again")]
    CorruptSessions {
        /// The sessions file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// `networks.json` is not a valid networks file.
    #[error("{path} is corrupt ({reason}); fix it, or delete it and log in again")]
    CorruptNetworks {
        /// The networks file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `settings.json` is not a valid settings file.
    #[error("{path} is not valid settings ({source}); fix it or delete it")]
    CorruptSettings {
        /// The settings file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A line of `known_supernodes` (pins per `host:port`, from before networks) cannot be
    /// parsed. It is not ignored: skipping it would silently turn a pinned supernode into an
    /// unpinned one.
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
}
