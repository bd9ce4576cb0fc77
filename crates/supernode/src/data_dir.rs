//! The data directory belongs to one supernode and must be writable by it: an exclusive lock
//! (held as long as the process runs) keeps a second supernode out, and a start on a directory
//! or database it cannot write fails at once with the path, instead of serving with a database
//! that SQLite silently opened read-only (every registration then failed "internal error").

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name in the data dir; it holds the locking supernode's pid.
pub const LOCK_FILE: &str = "supernode.lock";

/// What keeps the data dir from being used or written.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Another supernode holds the lock.
    #[error(
        "data dir {dir} is in use by another supernode (pid {pid}); stop it, or give this one \
         its own --data-dir"
    )]
    InUse {
        /// The data dir.
        dir: PathBuf,
        /// The pid the lock file names (`unknown` if unreadable).
        pid: String,
    },
    /// A file or directory the supernode must write is not writable.
    #[error(
        "{path} is not writable by this supernode ({error}); give the user it runs as write \
         access to it and to the data dir, or choose another --data-dir"
    )]
    NotWritable {
        /// What could not be written.
        path: PathBuf,
        /// Why (in the message rather than as its source: the message says it all).
        error: std::io::Error,
    },
}

/// The data dir's lock: held until dropped (the end of the process, in the binary).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Takes the data dir's lock, or says which process holds it.
pub fn lock(dir: &Path) -> Result<DataDirLock, DataDirError> {
    let path = dir.join(LOCK_FILE);
    let not_writable = |error| DataDirError::NotWritable { path: path.clone(), error };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(not_writable)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            let pid = if pid.is_empty() { "unknown".to_owned() } else { pid.to_owned() };
            return Err(DataDirError::InUse { dir: dir.to_owned(), pid });
        }
        Err(TryLockError::Error(e)) => return Err(not_writable(e)),
    }
    // The pid is for the message above, read by the next supernode that tries.
    file.set_len(0).map_err(not_writable)?;
    file.rewind().map_err(not_writable)?;
    writeln!(file, "{}", std::process::id()).map_err(not_writable)?;
    Ok(DataDirLock { _file: file })
}

/// Checks that the data dir takes new files (SQLite's journal and WAL files, the generated
/// certificate) and that the database and its WAL files, where they exist, open for writing.
pub fn check_writable(dir: &Path, database: Option<&Path>) -> Result<(), DataDirError> {
    let probe = dir.join(format!(".write-check-{}", std::process::id()));
    let created = OpenOptions::new().write(true).create_new(true).open(&probe);
    match created {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(error) => return Err(DataDirError::NotWritable { path: dir.to_owned(), error }),
    }
    let Some(db) = database else { return Ok(()) };
    let mut files = vec![db.to_owned()];
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    for file in files.iter().filter(|f| f.exists()) {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(file)
            .map_err(|error| DataDirError::NotWritable { path: file.clone(), error })?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_dir_names_the_holders_pid_and_a_released_one_is_taken_again() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        let err = lock(dir.path()).unwrap_err().to_string();
        let expected = format!(
            "data dir {} is in use by another supernode (pid {})",
            dir.path().display(),
            std::process::id()
        );
        assert!(err.starts_with(&expected), "{err}");
        drop(held);
        lock(dir.path()).unwrap();
    }

    #[test]
    fn a_missing_dir_is_not_writable_and_an_existing_one_is() {
        let dir = tempfile::tempdir().unwrap();
        check_writable(dir.path(), Some(&dir.path().join("peerline.db"))).unwrap();
        let gone = dir.path().join("missing");
        let err = check_writable(&gone, None).unwrap_err().to_string();
        assert!(err.contains(&gone.display().to_string()), "{err}");
    }
}
