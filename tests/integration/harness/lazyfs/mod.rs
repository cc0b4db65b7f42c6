//! LazyFs: an in-memory FUSE filesystem that can lose power, after the filesystem Jepsen uses to
//! find missing fsyncs.
//!
//! # Model
//!
//! Every inode has a *current* state (what reads, `stat` and `readdir` see) and a *durable* state
//! (what a power cut leaves). Only the calls that POSIX says make something durable copy the
//! current state into the durable one:
//!
//! | call | FUSE request | becomes durable |
//! |---|---|---|
//! | `fsync`, `fdatasync` (`File::sync_all`, `sync_data`) on a file | `FSYNC` | the file's data and size |
//! | `fsync` on a directory (`File::open(dir)?.sync_all()`) | `FSYNCDIR` | the directory's entries |
//! | `write`, `pwrite`, `close`, `sync_file_range`, `rename`, `unlink`, `mkdir` … | | nothing |
//!
//! `sync_file_range` never reaches a FUSE daemon, so sled 0.34's `flush()` makes nothing durable
//! here: exactly the gap between "survives `kill -9`" (the page cache lives on) and "survives a
//! power cut". A new file, a rename or an unlink is durable only once its parent directory is
//! fsynced (the strict reading of POSIX; ext4 and XFS often persist more, but nothing promises it).
//!
//! [`LazyFs::cut`] replaces every inode's current state by its durable one and drops every inode
//! that the durable entries no longer reach from the root. Metadata other than size (mode,
//! owner, times) is not modelled: it keeps its current value.
//!
//! File data lives in 4 KiB pages shared (`Arc`) between the two states; a write copies the page
//! it changes and marks it dirty, an fsync copies only the dirty pages. sled fsyncs its log
//! thousands of times, so copying whole files would not do.
//!
//! # Invariants
//!
//! * **Only a sync makes anything durable**, and only while powered: between
//!   [`LazyFs::lose_power`] and the cut, syncs are answered but change nothing (`lost_syncs`).
//! * **A cut happens only while unmounted** ([`LazyFs::cut`] panics otherwise): an unmount drops
//!   every page and dentry the kernel cached, so no process can see data the cut dropped.
//!   Attributes and entries are replied with a TTL of 0, so the kernel never serves stale
//!   metadata either.
//! * **Between cuts, an inode is forgotten only when no cut could bring it back**: no current
//!   entry names it, no handle holds it open, and no durable entry names it.
//! * **Bytes past a file's size read as zeros**, in both states, so growing a file again (or
//!   a cut back to a longer durable size) never shows stale bytes.
//!
//! Locks (`flock`, `fcntl`) are left to the kernel, which handles them locally when the daemon
//! does not implement them; sled and the gateway lock their files.
//!
//! # Use
//!
//! ```text
//! let fs = LazyFs::new();
//! let mut mounted = fs.mount(dir.path());   // a background FUSE session
//! // … run a program on it, kill -9 it …
//! let report = mounted.power_cut();         // unmount, cut, mount again at the same place
//! ```
//!
//! # Layout
//!
//! * `model`: the inode table and file data (current and durable states), reads and writes.
//! * `namespace`: creating, removing, renaming, opening and forgetting inodes.
//! * `durability`: fsync, fsyncdir, and the power cut itself.
//! * `fuse`: the `fuser::Filesystem` impl; every request locks the tree, calls the model and
//!   replies.
//! * `mount`: mounting, unmounting, and detaching mounts left by killed test processes.
//!
//! # Mounting
//!
//! fuser without default features mounts in pure Rust: as root with `mount(2)` on `/dev/fuse`, as
//! another user through the `fusermount3` helper (Debian package `fuse3`). Dropping [`Mounted`]
//! unmounts, also while a test panics; an unmount that stays busy (a process still has files
//! open) falls back to a lazy one, so no mount is left behind. Mounts left by a test process that
//! was SIGKILLed (source `lazyfs-<pid>`) are detached by the next mount.

mod durability;
mod fuse;
mod model;
mod mount;
mod namespace;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use fuser::BackgroundSession;

use self::model::Tree;

/// Counts of what the filesystem was asked to do, for assertions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub writes: u64,
    pub bytes_written: u64,
    /// `FSYNC` without the datasync flag (`fsync`, `File::sync_all`).
    pub fsyncs: u64,
    /// `FSYNC` with the datasync flag (`fdatasync`, `File::sync_data`).
    pub fdatasyncs: u64,
    pub fsyncdirs: u64,
    /// fsyncs and fsyncdirs after [`LazyFs::lose_power`]: answered, but they made nothing durable.
    pub lost_syncs: u64,
    pub cuts: u64,
    pub last_cut: CutReport,
}

/// What a power cut threw away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Pages written (or truncated away) since their file's last fsync, reverted.
    pub dirty_pages: u64,
    /// `dirty_pages` × 4 KiB plus the size of every file that vanished: page granularity.
    pub bytes: u64,
    /// Files and directories that no durable entry reached any more.
    pub inodes: u64,
    /// Directory entries (names) whose creation, removal or change was undone.
    pub entries: u64,
}

/// The filesystem: its state lives here, in memory, and outlives any mount of it.
#[derive(Clone, Debug)]
pub struct LazyFs {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    tree: Mutex<Tree>,
    /// Set while a session serves the tree: [`LazyFs::cut`] refuses to run then.
    mounted: AtomicBool,
}

impl Default for LazyFs {
    fn default() -> Self {
        LazyFs::new()
    }
}

impl LazyFs {
    /// An empty filesystem: a root directory, durable.
    pub fn new() -> LazyFs {
        LazyFs {
            shared: Arc::new(Shared {
                tree: Mutex::new(Tree::new()),
                mounted: AtomicBool::new(false),
            }),
        }
    }

    /// Mount at `mountpoint` (an existing, empty directory) with a background session.
    pub fn mount(&self, mountpoint: &Path) -> Mounted {
        mount::detach_stale_mounts();
        assert!(
            !self.shared.mounted.swap(true, Ordering::SeqCst),
            "a LazyFs is mounted at one place at a time"
        );
        let session = mount::spawn_session(self, mountpoint);
        Mounted {
            fs: self.clone(),
            path: mountpoint.to_path_buf(),
            session: Some(session),
        }
    }

    /// Power cut: every inode falls back to its durable state; what no durable entry reaches
    /// from the root is gone. Only while unmounted (see the module docs).
    pub fn cut(&self) -> CutReport {
        assert!(
            !self.shared.mounted.load(Ordering::SeqCst),
            "cut a LazyFs only while it is unmounted: the kernel's page cache would show dropped data"
        );
        self.tree().cut()
    }

    /// The power fails now: from here until the next [`LazyFs::cut`] the filesystem goes on
    /// answering, but no fsync makes anything durable any more. For a process that cannot be
    /// killed before the cut (sled's `Drop` fsyncs its log, so drop the `Db` after this).
    pub fn lose_power(&self) {
        self.tree().powered = false;
    }

    /// Make the whole current tree durable, as if everything had been fsynced (test setup).
    pub fn sync_everything(&self) {
        self.tree().sync_everything();
    }

    pub fn stats(&self) -> Stats {
        self.tree().stats
    }

    fn tree(&self) -> MutexGuard<'_, Tree> {
        // A panic while holding the lock leaves a consistent enough tree for a test to go on.
        self.shared
            .tree
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A mounted [`LazyFs`]; dropping it unmounts and ends the session.
#[derive(Debug)]
pub struct Mounted {
    fs: LazyFs,
    path: PathBuf,
    /// `None` while unmounted: between the unmount and the remount of a power cut, and at drop.
    session: Option<BackgroundSession>,
}

impl Mounted {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// [`LazyFs::lose_power`], unmount, [`LazyFs::cut`], and mount again at the same place.
    /// Every process using the mount must be gone (killed) before: one that still had files
    /// open would go on writing into the cut state.
    pub fn power_cut(&mut self) -> CutReport {
        self.fs.lose_power();
        assert!(
            self.unmount(),
            "power cut: {} is still in use; kill what uses it first",
            self.path.display()
        );
        let report = self.fs.cut();
        self.shared_mounted(true);
        self.session = Some(mount::spawn_session(&self.fs, &self.path));
        report
    }

    fn shared_mounted(&self, mounted: bool) {
        self.fs.shared.mounted.store(mounted, Ordering::SeqCst);
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.unmount();
    }
}
