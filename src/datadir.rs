//! The data directory: where all runtime state lives, owned by exactly one process.
//!
//! # Layout
//!
//! ```text
//! <data_dir>/
//!   routegate.lock   exclusive advisory lock (flock) held for the life of the owner; holds its pid
//!   gateway.addr     address of the running gateway's HTTP API, for the operator CLI
//!   db/              the sled database (outbox, event log, route store)
//! ```
//!
//! # Invariants
//!
//! * While a [`DataDir`] value lives, its process holds the lock; no other routegate, in this or
//!   another process, can acquire the same directory. The lock is taken *before* anything inside
//!   is opened, so a second gateway refuses to start without touching the first one's state.
//! * The kernel releases the lock when the process dies, even on `kill -9`: a crash never leaves a
//!   stale lock behind. The pid written inside is informational only.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Why the data directory could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create data directory {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock data directory {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "data directory {path} is in use by another routegate{}; stop it or pass a different --data-dir",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    InUse { path: PathBuf, pid: Option<u32> },
}

/// An exclusively owned data directory.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    /// Held open for the lock; dropping it releases the directory.
    _lock: File,
}

const LOCK_FILE: &str = "routegate.lock";
const ADDR_FILE: &str = "gateway.addr";

impl DataDir {
    /// Create the directory if needed and take it, or fail with [`DataDirError::InUse`].
    pub fn acquire(path: &Path) -> Result<DataDir, DataDirError> {
        std::fs::create_dir_all(path).map_err(|source| DataDirError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        let lock_path = path.join(LOCK_FILE);
        let lock_err = |source| DataDirError::Lock {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(lock_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(DataDirError::InUse {
                    path: path.to_path_buf(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(lock_err(e)),
        }
        file.set_len(0).map_err(lock_err)?;
        file.rewind().map_err(lock_err)?;
        writeln!(file, "{}", std::process::id()).map_err(lock_err)?;
        let _ = std::fs::remove_file(path.join(ADDR_FILE));
        Ok(DataDir {
            path: path.to_path_buf(),
            _lock: file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the sled database lives.
    pub fn db_path(&self) -> PathBuf {
        self.path.join("db")
    }

    /// Record the HTTP address so that the operator CLI can find the running gateway.
    pub fn publish_address(&self, addr: SocketAddr) -> std::io::Result<()> {
        let tmp = self.path.join(format!("{ADDR_FILE}.tmp"));
        std::fs::write(&tmp, format!("{addr}\n"))?;
        std::fs::rename(tmp, self.path.join(ADDR_FILE))
    }

    /// Remove the published address (on graceful shutdown).
    pub fn retract_address(&self) {
        let _ = std::fs::remove_file(self.path.join(ADDR_FILE));
    }

    /// The address a running gateway published in `path`, if one holds the lock right now.
    pub fn running_gateway(path: &Path) -> Option<SocketAddr> {
        let lock = File::open(path.join(LOCK_FILE)).ok()?;
        match lock.try_lock_shared() {
            Ok(()) => None,
            Err(_) => std::fs::read_to_string(path.join(ADDR_FILE))
                .ok()?
                .trim()
                .parse()
                .ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_owner_is_refused_with_the_first_owners_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::acquire(dir.path()).unwrap();
        let err = DataDir::acquire(dir.path()).unwrap_err();
        match err {
            DataDirError::InUse { pid, .. } => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected InUse, got {other}"),
        }
        drop(first);
        DataDir::acquire(dir.path()).expect("released on drop");
    }

    #[test]
    fn published_address_is_found_only_while_the_owner_lives() {
        let dir = tempfile::tempdir().unwrap();
        let owner = DataDir::acquire(dir.path()).unwrap();
        let addr: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        owner.publish_address(addr).unwrap();
        assert_eq!(DataDir::running_gateway(dir.path()), Some(addr));
        drop(owner);
        assert_eq!(DataDir::running_gateway(dir.path()), None);
    }

    #[test]
    fn missing_directories_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/state");
        let d = DataDir::acquire(&nested).unwrap();
        assert!(d.path().join(LOCK_FILE).exists());
    }
}
