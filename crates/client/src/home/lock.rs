//! The home's advisory lock on `.lock`, which serializes read-modify-write updates of its files
//! (sessions, pins) across processes sharing the directory.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fs::{File, OpenOptions};
use std::io;

use super::files::open_private;
use super::{Home, HomeError};

const LOCK_FILE: &str = ".lock";

impl Home {
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
