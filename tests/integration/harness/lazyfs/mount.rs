//! Mounting and unmounting: a background FUSE session per mount, an unmount that waits out a
//! busy mount and then detaches it, and cleanup of mounts whose test process was SIGKILLed.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, Config, MountOption};

use super::fuse::Daemon;
use super::{LazyFs, Mounted};

impl Mounted {
    /// Unmount and end the session; false if the mount stayed busy and was only detached.
    pub(super) fn unmount(&mut self) -> bool {
        let Some(session) = self.session.take() else {
            return true;
        };
        let unmounted = self.unmount_or_detach();
        end_session(session, &self.path, !unmounted);
        self.shared_mounted(false);
        unmounted
    }

    /// Unmount as long as it is busy (a killed process's files close a moment after its death;
    /// sled's threads close theirs a moment after the `Db` drops), for up to 5 s, then lazily.
    /// True if the plain unmount worked.
    fn unmount_or_detach(&self) -> bool {
        let path = self.path.as_os_str();
        let deadline = Instant::now() + Duration::from_secs(5);
        while is_mounted(&self.path)
            && !run("umount", &[path])
            && !run("fusermount3", &[OsStr::new("-u"), path])
        {
            if Instant::now() > deadline {
                eprintln!(
                    "lazyfs: {} stays busy; detaching it (lazy unmount)",
                    self.path.display()
                );
                detach(&self.path);
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }
}

/// The session ends once the kernel closes the connection: at once after an unmount, after a
/// lazy one only when the last open file closes (so do not wait for that).
fn end_session(session: BackgroundSession, path: &Path, detached: bool) {
    let (done, ended) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(session.join());
    });
    let wait = Duration::from_secs(if detached { 1 } else { 10 });
    if ended.recv_timeout(wait).is_err() && !detached {
        eprintln!("lazyfs: the session of {} did not end", path.display());
    }
}

/// The mount's source, which names the test process so that a later one can tell it is stale.
fn fsname() -> String {
    format!("lazyfs-{}", std::process::id())
}

pub(super) fn spawn_session(fs: &LazyFs, mountpoint: &Path) -> BackgroundSession {
    let mut config = Config::default();
    config.mount_options = vec![MountOption::FSName(fsname()), MountOption::RW];
    fuser::spawn_mount(Daemon::new(fs), mountpoint, &config).unwrap_or_else(|e| {
        panic!(
            "mount LazyFs at {}: {e}. It needs /dev/fuse and root (or the fusermount3 helper from \
             the fuse3 package)",
            mountpoint.display()
        )
    })
}

/// Lazy unmount: gone from the namespace now, the filesystem ends when its last file closes.
fn detach(path: &Path) {
    let path = path.as_os_str();
    let _ = run("umount", &[OsStr::new("-l"), path])
        || run("fusermount3", &[OsStr::new("-u"), OsStr::new("-z"), path]);
}

/// Run a command quietly; true if it exited with 0.
fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `(mount point, source)` of every FUSE mount, from `/proc/self/mountinfo`.
fn fuse_mounts() -> Vec<(PathBuf, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines().filter_map(fuse_mount).collect()
}

/// One line of mountinfo: `… mount-point … - fstype source …`, if a FUSE mount.
fn fuse_mount(line: &str) -> Option<(PathBuf, String)> {
    let (left, right) = line.split_once(" - ")?;
    let mountpoint = left.split(' ').nth(4)?;
    let mut right = right.split(' ');
    let (fstype, source) = (right.next()?, right.next()?);
    fstype.starts_with("fuse").then(|| {
        // mountinfo escapes space, tab, newline and backslash as octal.
        let unescaped = mountpoint
            .replace("\\040", " ")
            .replace("\\011", "\t")
            .replace("\\012", "\n")
            .replace("\\134", "\\");
        (PathBuf::from(unescaped), source.to_string())
    })
}

fn is_mounted(path: &Path) -> bool {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    fuse_mounts().iter().any(|(m, _)| *m == path)
}

/// Detach LazyFs mounts whose test process is gone (SIGKILLed before its `Drop` ran).
pub(super) fn detach_stale_mounts() {
    for (mountpoint, source) in fuse_mounts() {
        let Some(pid) = source.strip_prefix("lazyfs-") else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            eprintln!(
                "lazyfs: detaching {} left by process {pid}",
                mountpoint.display()
            );
            detach(&mountpoint);
        }
    }
}
