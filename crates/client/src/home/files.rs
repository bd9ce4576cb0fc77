//! Reading and atomically writing the home's files: every file is written to a private
//! temporary file in the same directory and then renamed (or hard-linked, when an existing file
//! must never be replaced), so a reader never sees half a file.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rand::RngCore;
use rand::rngs::OsRng;

use super::HomeError;

/// Reads a UTF-8 file; `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, HomeError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HomeError::Read { path: path.to_path_buf(), source }),
    }
}

/// Opens with mode 0600 on unix when the file is created.
pub(super) fn open_private(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
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
pub(super) fn create_new_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
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
