//! Free space: appends stop while the data directory's filesystem still has room for sled to
//! work, so sled never meets `ENOSPC`.
//!
//! sled 0.34 latches its first I/O error: after one failed write every later operation fails
//! until the database is reopened, acks and deletes included, so a full disk used to stop the
//! drain for good. The writer therefore keeps a *reserve* free: an append whose estimated disk
//! use would eat into it is refused with [`Error::DiskFull`](super::Error::DiskFull) (a 503 with
//! `Retry-After`), while acks, dead-lettering and pruning — which free space — still run in the
//! reserve. Once the drain has made room, appends succeed again.
//!
//! sled writes more than the payload (the pending index, node copies, the log's own framing),
//! and its files grow a segment at a time, so the estimate multiplies the payload by
//! [`AMPLIFICATION`] and the reserve is generous: by default a quarter of the filesystem, at
//! least 8 MiB and at most 1 GiB (`storage.min_free_bytes` sets it outright).

use std::path::{Path, PathBuf};

const MIB: u64 = 1024 * 1024;
/// Disk bytes an append is assumed to cost per payload byte.
pub(super) const AMPLIFICATION: u64 = 3;

/// The reserve and where to measure it.
#[derive(Debug)]
pub(super) struct Space {
    dir: PathBuf,
    reserve: u64,
}

impl Space {
    /// `configured` 0 derives the reserve from the filesystem's size.
    pub(super) fn new(dir: &Path, configured: u64) -> std::io::Result<Space> {
        let reserve = match configured {
            0 => derived_reserve(fs2::total_space(dir)?),
            n => n,
        };
        Ok(Space {
            dir: dir.to_path_buf(),
            reserve,
        })
    }

    pub(super) fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Bytes available to unprivileged writers now (`statvfs`); unknown counts as plenty, since
    /// refusing every append because a `statvfs` failed would be the worse failure.
    pub(super) fn available(&self) -> u64 {
        fs2::available_space(&self.dir).unwrap_or(u64::MAX)
    }

    /// Bytes appends may still use before the reserve.
    pub(super) fn room(&self) -> u64 {
        self.available().saturating_sub(self.reserve)
    }
}

fn derived_reserve(total: u64) -> u64 {
    (total / 4).clamp(8 * MIB, 1024 * MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_derived_reserve_is_a_quarter_within_bounds() {
        assert_eq!(derived_reserve(24 * MIB), 8 * MIB);
        assert_eq!(derived_reserve(100 * MIB), 25 * MIB);
        assert_eq!(derived_reserve(100 * 1024 * MIB), 1024 * MIB);
    }

    #[test]
    fn room_is_what_is_available_above_the_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let space = Space::new(dir.path(), 4096).unwrap();
        assert_eq!(space.reserve(), 4096);
        assert_eq!(space.room(), space.available() - 4096);
        let all = Space::new(dir.path(), u64::MAX).unwrap();
        assert_eq!(all.room(), 0);
    }
}
