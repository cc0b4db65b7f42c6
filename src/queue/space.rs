//! Free space: appends stop while the data directory's filesystem still has room for sled to
//! work, so sled never meets `ENOSPC`.
//!
//! sled 0.34 latches its first I/O error: after one failed write every later operation fails
//! until the database is reopened, acks and deletes included, so a full disk used to stop the
//! drain for good. sled also never shrinks its files: space freed by deletes is reused inside
//! them, but the filesystem never sees it again. So the outbox budgets the space sled may use:
//!
//! * **budget** = sled's size on disk + the filesystem's available bytes − the *reserve*
//!   (`storage.min_free_bytes`; by default a quarter of the filesystem, at least 8 MiB and at
//!   most 1 GiB). sled growing its files moves bytes from "available" to "size", so the budget
//!   only changes when something else uses or frees the disk.
//! * **used** = the event log's bytes (pending and delivered) × [`AMPLIFICATION`], sled's
//!   overhead for the pending index, node copies and its log framing.
//! * An append that would take *used* past the *budget* is refused with
//!   [`Error::DiskFull`](super::Error::DiskFull) (503 with `Retry-After`). Acks, dead-lettering
//!   and pruning still run: they free space and the reserve is theirs. There is deliberately no
//!   refusal on the filesystem's free space alone: sled grows its file while it deletes and
//!   never gives the space back, so such a check, once tripped, would refuse for good; another
//!   program filling the disk shrinks the budget instead.
//! * Under pressure (used past half the budget) the log's retention yields: delivered events
//!   are pruned down to a quarter of the budget, whatever `storage.log_retention_*` says, so a
//!   drained outbox accepts again even on a disk the outage filled.
//!
//! Both figures are measured at most every [`MEASURE_EVERY`]; the reserve absorbs what is
//! written in between.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
/// Disk bytes an event is assumed to cost per byte of its encoding.
pub(super) const AMPLIFICATION: u64 = 3;
/// How long a measurement of the filesystem and of sled's size is reused.
pub(super) const MEASURE_EVERY: Duration = Duration::from_millis(50);

/// The reserve, where to measure, and the last measurement.
#[derive(Debug)]
pub(super) struct Space {
    dir: PathBuf,
    reserve: u64,
    last: Mutex<Option<(Instant, Measured)>>,
}

/// One look at the disk.
#[derive(Debug, Clone, Copy)]
pub(super) struct Measured {
    /// Bytes the filesystem has for unprivileged writers.
    pub(super) available: u64,
    /// Bytes sled may occupy: its size now plus what is available, less the reserve.
    pub(super) budget: u64,
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
            last: Mutex::new(None),
        })
    }

    /// The disk as of at most [`MEASURE_EVERY`] ago; `sled_bytes` is asked only when measuring.
    pub(super) fn measure(&self, sled_bytes: impl FnOnce() -> u64) -> Measured {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, m)) = *last
            && at.elapsed() < MEASURE_EVERY
        {
            return m;
        }
        let available = self.available();
        let m = Measured {
            available,
            budget: sled_bytes()
                .saturating_add(available)
                .saturating_sub(self.reserve),
        };
        *last = Some((Instant::now(), m));
        m
    }

    pub(super) fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Bytes available to unprivileged writers now (`statvfs`); unknown counts as plenty, since
    /// refusing every append because a `statvfs` failed would be the worse failure.
    pub(super) fn available(&self) -> u64 {
        fs2::available_space(&self.dir).unwrap_or(u64::MAX)
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
    fn the_budget_is_sleds_size_plus_what_is_available_less_the_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let space = Space::new(dir.path(), 4096).unwrap();
        assert_eq!(space.reserve(), 4096);
        let m = space.measure(|| 1000);
        assert_eq!(m.budget, m.available + 1000 - 4096);
        let again = space.measure(|| panic!("measured again within {MEASURE_EVERY:?}"));
        assert_eq!(again.budget, m.budget);
        let all = Space::new(dir.path(), u64::MAX).unwrap().measure(|| 0);
        assert_eq!(all.budget, 0);
    }
}
