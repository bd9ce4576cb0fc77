//! The client's home directory (`$PEERLINE_HOME`): device key, the networks it knows (hosts,
//! pinned certificate, saved session) and settings, written so that several CLI processes can
//! share one home safely.
//!
//! Layout:
//!
//! | file               | content                                                    | mode |
//! | ------------------ | ---------------------------------------------------------- | ---- |
//! | `device.key`       | the ed25519 device secret key, 64 hex digits               | 0600 |
//! | `networks.json`    | per network: its supernodes, pinned certificate, session   | 0600 |
//! | `peer_keys.json`   | contacts' device keys pinned on first use (see `peer_keys`) | 0600 |
//! | `settings.json`    | this user's [`Settings`] (e.g. `relay_only`)               | 0600 |
//! | `.lock`            | empty; serializes read-modify-write updates across processes | 0600 |
//!
//! Homes from before networks kept a session per URL (`sessions.json`) and a pin per
//! `host:port` (`known_supernodes`); they are read, as networks of one URL each, until the first
//! update writes `networks.json` (see `legacy`), and left in place.
//!
//! Every file is replaced atomically (temporary file in the same directory, then rename), so a
//! reader never sees half a file. Updates that read, modify and write a file (networks, pins)
//! hold an advisory lock on `.lock` so that two processes don't lose each other's changes. The
//! device key is never overwritten once it exists: a corrupt key is reported, not silently
//! replaced, because a new key is a new device identity.
//!
//! One child module per file: [`device_key`](Home::device_key), `networks`, `legacy` and
//! `settings` (each adds its methods to [`Home`]); `files` reads and atomically writes them,
//! `lock` is the advisory lock they share, `error` the [`HomeError`] they all return.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod device_key;
mod error;
mod files;
mod legacy;
mod lock;
mod networks;
mod settings;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use error::HomeError;
pub(crate) use files::{read_optional, write_atomic};
pub use networks::{SavedNetwork, SavedSession};
pub use settings::Settings;

/// The client's home directory. Cheap to open; every method reads the files afresh, so changes
/// made by another process sharing the directory are seen.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
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
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A fresh home in its own temporary directory, for the tests of every child module.
    pub(super) fn home() -> (tempfile::TempDir, Home) {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::open(&tmp.path().join("peerline")).unwrap();
        (tmp, home)
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
}
