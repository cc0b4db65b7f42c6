//! Making what sled wrote survive a power cut.
//!
//! sled 0.34's `flush()` writes its log with `pwrite` and then calls `sync_file_range`, which
//! persists neither the file's metadata (its size, new extents) nor the device's write cache, and
//! sled never syncs the blob files it creates nor the directories it adds files to. A `flush()`
//! therefore survives a killed process (the page cache lives on) but not an OS crash or a power
//! cut. [`Stable`] closes that gap from outside: it holds its own descriptors on sled's files —
//! an `fdatasync` through any descriptor syncs the inode — and after every flush it
//!
//! 1. `fdatasync`s every blob file created since the last sync, then fsyncs `blobs/` if its
//!    entries changed (a log record must never point to a blob that a cut can take away);
//! 2. fsyncs the database directory if its entries changed (snapshots are renamed into place);
//! 3. `fdatasync`s the log file `db` (data and size).
//!
//! On open it syncs everything already there (sled's `conf` is written without a sync, too) and
//! the directories above it, so a freshly created store is durable before the first append.
//!
//! The directory listings are compared by name on every sync: a handful of entries, so a
//! `readdir` is cheaper than being clever with modification times (whose kernel clock is coarse
//! enough to miss two changes in a row).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Descriptors and listings of one sled directory.
#[derive(Debug)]
pub(super) struct Stable {
    dir: PathBuf,
    log: File,
    /// Entries of the database directory as of the last directory sync.
    entries: BTreeSet<OsString>,
    /// Entries of `blobs/` whose files and directory entry are synced.
    blobs: BTreeSet<OsString>,
    /// Syncs performed, for metrics and tests.
    pub(super) syncs: u64,
}

const LOG_FILE: &str = "db";
const BLOB_DIR: &str = "blobs";

impl Stable {
    /// Sync everything sled has created under `dir` so far, and `dir`'s own entry in its parent.
    pub(super) fn open(dir: &Path) -> io::Result<Stable> {
        let log = File::options().read(true).open(dir.join(LOG_FILE))?;
        let entries = list(dir)?;
        for name in &entries {
            let path = dir.join(name);
            if path.is_file() {
                File::open(&path)?.sync_all()?;
            }
        }
        let blobs = list(&dir.join(BLOB_DIR))?;
        for name in &blobs {
            File::open(dir.join(BLOB_DIR).join(name))?.sync_all()?;
        }
        sync_dir(&dir.join(BLOB_DIR))?;
        sync_dir(dir)?;
        // The data directory that holds the database, and its own parent: a store created a
        // moment ago must not vanish with its directory entry.
        let mut up = dir.parent();
        for _ in 0..2 {
            match up {
                Some(p) if !p.as_os_str().is_empty() => {
                    sync_dir(p)?;
                    up = p.parent();
                }
                _ => break,
            }
        }
        Ok(Stable {
            dir: dir.to_path_buf(),
            log,
            entries,
            blobs,
            syncs: 0,
        })
    }

    /// Make everything sled's last `flush()` wrote stable. Call after every flush whose writes
    /// are about to be acknowledged.
    pub(super) fn sync(&mut self) -> io::Result<()> {
        let blob_dir = self.dir.join(BLOB_DIR);
        let blobs = list(&blob_dir)?;
        if blobs != self.blobs {
            for name in blobs.difference(&self.blobs) {
                match File::open(blob_dir.join(name)) {
                    Ok(f) => f.sync_data()?,
                    // Written and collected again between two syncs: nothing to keep.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            sync_dir(&blob_dir)?;
            self.blobs = blobs;
        }
        let entries = list(&self.dir)?;
        if entries != self.entries {
            sync_dir(&self.dir)?;
            self.entries = entries;
        }
        self.log.sync_data()?;
        self.syncs += 1;
        Ok(())
    }
}

fn list(dir: &Path) -> io::Result<BTreeSet<OsString>> {
    std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_needs_a_sled_directory_and_sync_tracks_new_blobs() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Stable::open(dir.path()).is_err(), "no log file yet");
        std::fs::write(dir.path().join(LOG_FILE), b"log").unwrap();
        std::fs::create_dir(dir.path().join(BLOB_DIR)).unwrap();
        let mut stable = Stable::open(dir.path()).unwrap();
        stable.sync().unwrap();
        assert!(stable.blobs.is_empty());
        std::fs::write(dir.path().join(BLOB_DIR).join("17"), b"blob").unwrap();
        std::fs::write(dir.path().join("snap.0000000000000001"), b"snap").unwrap();
        stable.sync().unwrap();
        assert_eq!(stable.blobs.len(), 1);
        assert!(
            stable
                .entries
                .contains(&OsString::from("snap.0000000000000001"))
        );
        assert_eq!(stable.syncs, 2);
    }
}
