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
//! # Use
//!
//! ```text
//! let fs = LazyFs::new();
//! let mut mounted = fs.mount(dir.path());   // a background FUSE session
//! // … run a program on it, kill -9 it …
//! let report = mounted.power_cut();         // unmount, cut, mount again at the same place
//! ```
//!
//! The kernel's page cache must not show data that the cut dropped, so a cut happens only while
//! the filesystem is unmounted ([`LazyFs::cut`] panics otherwise): an unmount drops every cached
//! page and dentry. Attributes and entries are replied with a TTL of 0, so the kernel never serves
//! stale metadata either. Locks (`flock`, `fcntl`) are left to the kernel, which handles them
//! locally when the daemon does not implement them; sled and the gateway lock their files.
//!
//! # Mounting
//!
//! fuser without default features mounts in pure Rust: as root with `mount(2)` on `/dev/fuse`, as
//! another user through the `fusermount3` helper (Debian package `fuse3`). Dropping [`Mounted`]
//! unmounts, also while a test panics; an unmount that stays busy (a process still has files
//! open) falls back to a lazy one, so no mount is left behind. Mounts left by a test process that
//! was SIGKILLed (source `lazyfs-<pid>`) are detached by the next mount.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    AccessFlags, BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};

const PAGE: u64 = 4096;
const ROOT: u64 = INodeNo::ROOT.0;
/// The kernel caches no attribute and no entry: every `stat` and path walk asks the daemon.
const TTL: Duration = Duration::ZERO;

type Page = [u8; PAGE as usize];

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
        detach_stale_mounts();
        assert!(
            !self.shared.mounted.swap(true, Ordering::SeqCst),
            "a LazyFs is mounted at one place at a time"
        );
        let session = spawn_session(self, mountpoint);
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
        self.session = Some(spawn_session(&self.fs, &self.path));
        report
    }

    fn shared_mounted(&self, mounted: bool) {
        self.fs.shared.mounted.store(mounted, Ordering::SeqCst);
    }

    /// Unmount and end the session; false if the mount stayed busy and was only detached.
    fn unmount(&mut self) -> bool {
        let Some(session) = self.session.take() else {
            return true;
        };
        // Unmount as long as it is busy (a killed process's files close a moment after its
        // death; sled's threads close theirs a moment after the `Db` drops), then lazily.
        let path = self.path.as_os_str();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut detached = false;
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
                detached = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The session ends once the kernel closes the connection: at once after an unmount,
        // after a lazy one only when the last open file closes (so do not wait for that).
        let (done, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(session.join());
        });
        let wait = Duration::from_secs(if detached { 1 } else { 10 });
        if ended.recv_timeout(wait).is_err() && !detached {
            eprintln!("lazyfs: the session of {} did not end", self.path.display());
        }
        self.shared_mounted(false);
        !detached
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn fsname() -> String {
    format!("lazyfs-{}", std::process::id())
}

fn spawn_session(fs: &LazyFs, mountpoint: &Path) -> BackgroundSession {
    let mut config = Config::default();
    config.mount_options = vec![MountOption::FSName(fsname()), MountOption::RW];
    let daemon = Daemon { fs: fs.clone() };
    fuser::spawn_mount(daemon, mountpoint, &config).unwrap_or_else(|e| {
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
    info.lines()
        .filter_map(|line| {
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
        })
        .collect()
}

fn is_mounted(path: &Path) -> bool {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    fuse_mounts().iter().any(|(m, _)| *m == path)
}

/// Detach LazyFs mounts whose test process is gone (SIGKILLed before its `Drop` ran).
fn detach_stale_mounts() {
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

// ---------------------------------------------------------------------------------------------
// The model: pure, no FUSE.

#[derive(Clone, Debug, Default)]
struct Data {
    /// Page index → content; a missing page reads as zeros (sparse). Bytes past `size` are zero.
    pages: BTreeMap<u64, Arc<Page>>,
    size: u64,
}

#[derive(Debug, Default)]
struct FileBody {
    now: Data,
    durable: Data,
    /// Pages of `now` changed (or dropped) since the last fsync.
    dirty: BTreeSet<u64>,
}

impl FileBody {
    /// fsync: the dirty pages and the size become durable.
    fn sync(&mut self) {
        for idx in std::mem::take(&mut self.dirty) {
            match self.now.pages.get(&idx) {
                Some(page) => self.durable.pages.insert(idx, page.clone()),
                None => self.durable.pages.remove(&idx),
            };
        }
        self.durable.size = self.now.size;
    }
}

#[derive(Debug)]
struct DirBody {
    now: BTreeMap<OsString, u64>,
    durable: BTreeMap<OsString, u64>,
    /// For `..` and for refusing to move a directory below itself.
    parent: u64,
}

#[derive(Debug)]
enum Body {
    File(FileBody),
    Dir(DirBody),
}

#[derive(Debug)]
struct Node {
    body: Body,
    perm: u16,
    uid: u32,
    gid: u32,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
    /// Current entries naming this inode (no hard links: 0 or 1 but for the root).
    links: u32,
    /// Open file handles; an unlinked file lives on while open.
    open: u32,
}

impl Node {
    fn new(body: Body, perm: u16, uid: u32, gid: u32) -> Node {
        let now = SystemTime::now();
        Node {
            body,
            perm,
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
            links: 1,
            open: 0,
        }
    }

    fn attr(&self, ino: u64) -> FileAttr {
        let (kind, size, nlink) = match &self.body {
            Body::File(f) => (FileType::RegularFile, f.now.size, self.links),
            Body::Dir(d) => (FileType::Directory, d.now.len() as u64, 2),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.atime,
            mtime: self.mtime,
            ctime: self.ctime,
            crtime: self.ctime,
            kind,
            perm: self.perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: PAGE as u32,
            flags: 0,
        }
    }
}

#[derive(Debug)]
struct Tree {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// False between [`LazyFs::lose_power`] and the cut: syncs have no effect.
    powered: bool,
    stats: Stats,
}

type Result<T> = std::result::Result<T, Errno>;

impl Tree {
    fn new() -> Tree {
        let root = DirBody {
            now: BTreeMap::new(),
            durable: BTreeMap::new(),
            parent: ROOT,
        };
        Tree {
            nodes: HashMap::from([(ROOT, Node::new(Body::Dir(root), 0o755, 0, 0))]),
            next_ino: ROOT + 1,
            powered: true,
            stats: Stats::default(),
        }
    }

    fn node(&self, ino: u64) -> Result<&Node> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, ino: u64) -> Result<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn dir(&self, ino: u64) -> Result<&DirBody> {
        match &self.node(ino)?.body {
            Body::Dir(d) => Ok(d),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut DirBody> {
        match &mut self.node_mut(ino)?.body {
            Body::Dir(d) => Ok(d),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn file(&self, ino: u64) -> Result<&FileBody> {
        match &self.node(ino)?.body {
            Body::File(f) => Ok(f),
            Body::Dir(_) => Err(Errno::EISDIR),
        }
    }

    fn file_mut(&mut self, ino: u64) -> Result<&mut FileBody> {
        match &mut self.node_mut(ino)?.body {
            Body::File(f) => Ok(f),
            Body::Dir(_) => Err(Errno::EISDIR),
        }
    }

    fn attr(&self, ino: u64) -> Result<FileAttr> {
        Ok(self.node(ino)?.attr(ino))
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64> {
        self.dir(parent)?
            .now
            .get(name)
            .copied()
            .ok_or(Errno::ENOENT)
    }

    fn touch(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            let now = SystemTime::now();
            (n.mtime, n.ctime) = (now, now);
        }
    }

    /// A new file or directory named `name` in `parent`.
    fn add(
        &mut self,
        parent: u64,
        name: &OsStr,
        dir: bool,
        perm: u16,
        req: &Request,
    ) -> Result<u64> {
        if self.dir(parent)?.now.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let body = if dir {
            Body::Dir(DirBody {
                now: BTreeMap::new(),
                durable: BTreeMap::new(),
                parent,
            })
        } else {
            Body::File(FileBody::default())
        };
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes
            .insert(ino, Node::new(body, perm, req.uid(), req.gid()));
        self.dir_mut(parent)?.now.insert(name.to_owned(), ino);
        self.touch(parent);
        Ok(ino)
    }

    fn read(&self, ino: u64, offset: u64, len: u32) -> Result<Vec<u8>> {
        let data = &self.file(ino)?.now;
        let end = offset.saturating_add(len.into()).min(data.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut out = vec![0; (end - offset) as usize];
        for (&idx, page) in data.pages.range(offset / PAGE..=(end - 1) / PAGE) {
            let start = idx * PAGE;
            let (from, to) = (offset.max(start), end.min(start + PAGE));
            out[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&page[(from - start) as usize..(to - start) as usize]);
        }
        Ok(out)
    }

    fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Result<()> {
        let f = self.file_mut(ino)?;
        let end = offset + bytes.len() as u64;
        let mut pos = offset;
        while pos < end {
            let (idx, start) = (pos / PAGE, pos / PAGE * PAGE);
            let to = end.min(start + PAGE);
            let page = f
                .now
                .pages
                .entry(idx)
                .or_insert_with(|| Arc::new([0; PAGE as usize]));
            Arc::make_mut(page)[(pos - start) as usize..(to - start) as usize]
                .copy_from_slice(&bytes[(pos - offset) as usize..(to - offset) as usize]);
            f.dirty.insert(idx);
            pos = to;
        }
        f.now.size = f.now.size.max(end);
        self.stats.writes += 1;
        self.stats.bytes_written += bytes.len() as u64;
        self.touch(ino);
        Ok(())
    }

    fn truncate(&mut self, ino: u64, size: u64) -> Result<()> {
        let f = self.file_mut(ino)?;
        if size < f.now.size {
            let gone: Vec<u64> = f
                .now
                .pages
                .range(size.div_ceil(PAGE)..)
                .map(|(&i, _)| i)
                .collect();
            for idx in gone {
                f.now.pages.remove(&idx);
                f.dirty.insert(idx);
            }
            // Keep "bytes past the size are zero", so that growing again reads zeros.
            if let Some(page) = f.now.pages.get_mut(&(size / PAGE)) {
                Arc::make_mut(page)[(size % PAGE) as usize..].fill(0);
                f.dirty.insert(size / PAGE);
            }
        }
        f.now.size = size;
        self.touch(ino);
        Ok(())
    }

    fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<()> {
        let ino = self.lookup(parent, name)?;
        match (&self.node(ino)?.body, dir) {
            (Body::Dir(_), false) => return Err(Errno::EISDIR),
            (Body::File(_), true) => return Err(Errno::ENOTDIR),
            (Body::Dir(d), true) if !d.now.is_empty() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        self.dir_mut(parent)?.now.remove(name);
        self.touch(parent);
        self.unlinked(ino);
        Ok(())
    }

    fn rename(
        &mut self,
        (parent, name): (u64, &OsStr),
        (newparent, newname): (u64, &OsStr),
        flags: RenameFlags,
    ) -> Result<()> {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        let ino = self.lookup(parent, name)?;
        self.dir(newparent)?;
        let moving_dir = matches!(self.node(ino)?.body, Body::Dir(_));
        if moving_dir && self.is_ancestor(ino, newparent) {
            return Err(Errno::EINVAL);
        }
        if let Ok(target) = self.lookup(newparent, newname) {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            if target == ino {
                return Ok(());
            }
            match (&self.node(target)?.body, moving_dir) {
                (Body::Dir(_), false) => return Err(Errno::EISDIR),
                (Body::File(_), true) => return Err(Errno::ENOTDIR),
                (Body::Dir(d), true) if !d.now.is_empty() => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
            self.dir_mut(newparent)?.now.remove(newname);
            self.unlinked(target);
        }
        self.dir_mut(parent)?.now.remove(name);
        self.dir_mut(newparent)?.now.insert(newname.to_owned(), ino);
        if let Ok(d) = self.dir_mut(ino) {
            d.parent = newparent;
        }
        self.touch(parent);
        self.touch(newparent);
        Ok(())
    }

    /// Is `a` the directory `b` or one of its ancestors?
    fn is_ancestor(&self, a: u64, mut b: u64) -> bool {
        loop {
            if a == b {
                return true;
            }
            match self.dir(b) {
                Ok(d) if b != ROOT => b = d.parent,
                _ => return false,
            }
        }
    }

    fn unlinked(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.links = n.links.saturating_sub(1);
            n.ctime = SystemTime::now();
        }
        self.collect(ino);
    }

    /// Forget an inode that nothing names or holds open any more, and that a cut cannot bring
    /// back (no durable entry names it).
    fn collect(&mut self, ino: u64) {
        let unused = self
            .nodes
            .get(&ino)
            .is_some_and(|n| n.links == 0 && n.open == 0);
        let durably_named = || {
            self.nodes.values().any(|n| match &n.body {
                Body::Dir(d) => d.durable.values().any(|&i| i == ino),
                Body::File(_) => false,
            })
        };
        if unused && ino != ROOT && !durably_named() {
            self.nodes.remove(&ino);
        }
    }

    fn opened(&mut self, ino: u64) -> Result<()> {
        self.file(ino)?;
        self.node_mut(ino)?.open += 1;
        Ok(())
    }

    fn released(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.open = n.open.saturating_sub(1);
        }
        self.collect(ino);
    }

    fn fsync(&mut self, ino: u64, datasync: bool) -> Result<()> {
        let powered = self.powered;
        let f = self.file_mut(ino)?;
        if !powered {
            self.stats.lost_syncs += 1;
            return Ok(());
        }
        f.sync();
        if datasync {
            self.stats.fdatasyncs += 1;
        } else {
            self.stats.fsyncs += 1;
        }
        Ok(())
    }

    fn fsyncdir(&mut self, ino: u64) -> Result<()> {
        let powered = self.powered;
        let d = self.dir_mut(ino)?;
        if !powered {
            self.stats.lost_syncs += 1;
            return Ok(());
        }
        let dropped: Vec<u64> = d
            .durable
            .iter()
            .filter(|(name, i)| d.now.get(*name) != Some(i))
            .map(|(_, &i)| i)
            .collect();
        d.durable = d.now.clone();
        self.stats.fsyncdirs += 1;
        for i in dropped {
            self.collect(i);
        }
        Ok(())
    }

    fn sync_everything(&mut self) {
        for node in self.nodes.values_mut() {
            match &mut node.body {
                Body::File(f) => f.sync(),
                Body::Dir(d) => d.durable = d.now.clone(),
            }
        }
    }

    fn cut(&mut self) -> CutReport {
        let mut report = CutReport::default();
        // Which inodes the durable entries reach, how often, and from which directory.
        let mut links: HashMap<u64, u32> = HashMap::from([(ROOT, 1)]);
        let mut parents: HashMap<u64, u64> = HashMap::from([(ROOT, ROOT)]);
        let mut stack = vec![ROOT];
        while let Some(dir) = stack.pop() {
            let Ok(d) = self.dir(dir) else { continue };
            for &child in d.durable.values() {
                let Some(node) = self.nodes.get(&child) else {
                    continue;
                };
                let count = links.entry(child).or_insert(0);
                *count += 1;
                if *count == 1 && matches!(node.body, Body::Dir(_)) {
                    parents.insert(child, dir);
                    stack.push(child);
                }
            }
        }
        self.nodes.retain(|ino, node| {
            let keep = links.contains_key(ino);
            if !keep {
                report.inodes += 1;
                if let Body::File(f) = &node.body {
                    report.bytes += f.now.size;
                }
            }
            keep
        });
        for (ino, node) in &mut self.nodes {
            node.links = links[ino];
            node.open = 0;
            match &mut node.body {
                Body::File(f) => {
                    report.dirty_pages += f.dirty.len() as u64;
                    report.bytes += f.dirty.len() as u64 * PAGE;
                    f.now = f.durable.clone();
                    f.dirty.clear();
                }
                Body::Dir(d) => {
                    d.durable.retain(|_, child| links.contains_key(child));
                    let names: BTreeSet<&OsString> = d.now.keys().chain(d.durable.keys()).collect();
                    report.entries += names
                        .into_iter()
                        .filter(|n| d.now.get(*n) != d.durable.get(*n))
                        .count() as u64;
                    d.now = d.durable.clone();
                    d.parent = parents[ino];
                }
            }
        }
        self.powered = true;
        self.stats.cuts += 1;
        self.stats.last_cut = report;
        report
    }
}

// ---------------------------------------------------------------------------------------------
// FUSE: every request locks the tree, calls the model and replies.

#[derive(Debug)]
struct Daemon {
    fs: LazyFs,
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

fn perm(mode: u32, umask: u32) -> u16 {
    (mode & !umask & 0o7777) as u16
}

impl fuser::Filesystem for Daemon {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let tree = self.fs.tree();
        match tree.lookup(parent.0, name).and_then(|i| tree.attr(i)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.tree().attr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut tree = self.fs.tree();
        let result = (|| {
            if let Some(size) = size {
                tree.truncate(ino.0, size)?;
            }
            let node = tree.node_mut(ino.0)?;
            if let Some(mode) = mode {
                node.perm = perm(mode, 0);
            }
            node.uid = uid.unwrap_or(node.uid);
            node.gid = gid.unwrap_or(node.gid);
            node.atime = atime.map(time).unwrap_or(node.atime);
            node.mtime = mtime.map(time).unwrap_or(node.mtime);
            node.ctime = SystemTime::now();
            tree.attr(ino.0)
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut tree = self.fs.tree();
        match tree
            .add(parent.0, name, true, perm(mode, umask), req)
            .and_then(|i| tree.attr(i))
        {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(self.fs.tree().remove(parent.0, name, false), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(self.fs.tree().remove(parent.0, name, true), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = self
            .fs
            .tree()
            .rename((parent.0, name), (newparent.0, newname), flags);
        empty(result, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut tree = self.fs.tree();
        let result = (|| {
            if flags.0 & libc::O_TRUNC != 0 {
                tree.truncate(ino.0, 0)?;
            }
            tree.opened(ino.0)
        })();
        match result {
            Ok(()) => reply.opened(FileHandle(ino.0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut tree = self.fs.tree();
        let result = (|| {
            let ino = match tree.lookup(parent.0, name) {
                Ok(_) if flags & libc::O_EXCL != 0 => return Err(Errno::EEXIST),
                Ok(ino) => {
                    if flags & libc::O_TRUNC != 0 {
                        tree.truncate(ino, 0)?;
                    }
                    ino
                }
                Err(_) => tree.add(parent.0, name, false, perm(mode, umask), req)?,
            };
            tree.opened(ino)?;
            Ok((ino, tree.attr(ino)?))
        })();
        match result {
            Ok((ino, attr)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(ino),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.fs.tree().read(ino.0, offset, size) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut tree = self.fs.tree();
        let result = (|| {
            let offset = if flags.0 & libc::O_APPEND != 0 {
                tree.file(ino.0)?.now.size
            } else {
                offset
            };
            tree.write(ino.0, offset, data)
        })();
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.fs.tree().released(ino.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(self.fs.tree().fsync(ino.0, datasync), reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.tree().dir(ino.0) {
            Ok(_) => reply.opened(FileHandle(ino.0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let tree = self.fs.tree();
        let dir = match tree.dir(ino.0) {
            Ok(d) => d,
            Err(e) => return reply.error(e),
        };
        let dots = [
            (ino.0, FileType::Directory, OsStr::new(".")),
            (dir.parent, FileType::Directory, OsStr::new("..")),
        ];
        let entries = dir.now.iter().map(|(name, &i)| {
            let kind = match tree.nodes.get(&i).map(|n| &n.body) {
                Some(Body::Dir(_)) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            (i, kind, name.as_os_str())
        });
        // An entry's offset is the position of the next one.
        for (pos, (i, kind, name)) in dots
            .into_iter()
            .chain(entries)
            .enumerate()
            .skip(offset as usize)
        {
            if reply.add(INodeNo(i), pos as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(self.fs.tree().fsyncdir(ino.0), reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let tree = self.fs.tree();
        let used: u64 = tree
            .nodes
            .values()
            .map(|n| match &n.body {
                Body::File(f) => f.now.size.div_ceil(PAGE),
                Body::Dir(_) => 1,
            })
            .sum();
        let blocks = 1 << 24; // 64 GiB of 4 KiB blocks: plenty, and not a real limit.
        let free = blocks - used.min(blocks);
        let files = 1 << 20;
        let free_files = files - (tree.nodes.len() as u64).min(files);
        reply.statfs(
            blocks,
            free,
            free,
            files,
            free_files,
            PAGE as u32,
            255,
            PAGE as u32,
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Everyone may do everything: the tests run as one user.
        empty(self.fs.tree().node(ino.0).map(|_| ()), reply);
    }
}

fn empty(result: Result<()>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File, OpenOptions};
    use std::io::{Read, Write};
    use std::os::unix::fs::FileExt;

    use super::*;

    /// A mounted LazyFs on a temporary directory. Fields drop in order: unmount, then remove.
    struct Scratch {
        mounted: Mounted,
        fs: LazyFs,
        _dir: tempfile::TempDir,
    }

    impl Scratch {
        fn new() -> Scratch {
            let dir = tempfile::tempdir().expect("mount point");
            let fs = LazyFs::new();
            Scratch {
                mounted: fs.mount(dir.path()),
                fs,
                _dir: dir,
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.mounted.path().join(name)
        }

        fn cut(&mut self) -> CutReport {
            self.mounted.power_cut()
        }
    }

    fn sync_dir(path: &Path) {
        File::open(path).unwrap().sync_all().unwrap();
    }

    fn written(path: &Path, bytes: &[u8]) -> File {
        let mut f = File::create(path).unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn a_file_whose_creation_was_not_dir_synced_vanishes_in_a_power_cut() {
        let mut s = Scratch::new();
        written(&s.path("a"), b"hello");
        assert_eq!(fs::read(s.path("a")).unwrap(), b"hello");
        let report = s.cut();
        assert!(!s.path("a").exists());
        assert_eq!((report.inodes, report.entries), (1, 1), "{report:?}");
        assert_eq!(report.bytes, 5);
    }

    #[test]
    fn a_dir_synced_file_survives_a_power_cut_without_its_unsynced_data() {
        let mut s = Scratch::new();
        written(&s.path("a"), b"hello");
        sync_dir(s.mounted.path());
        let report = s.cut();
        assert_eq!(
            fs::read(s.path("a")).unwrap(),
            b"",
            "data was never fsynced"
        );
        assert_eq!(report.dirty_pages, 1);
        assert_eq!(s.fs.stats().fsyncdirs, 1);
    }

    #[test]
    fn fsync_and_a_directory_fsync_make_writes_survive_a_power_cut() {
        let mut s = Scratch::new();
        written(&s.path("full"), b"fsynced").sync_all().unwrap();
        written(&s.path("data"), &[7; 10_000]).sync_data().unwrap();
        sync_dir(s.mounted.path());
        // Later writes at an offset, not synced, are undone.
        let f = OpenOptions::new().write(true).open(s.path("data")).unwrap();
        f.write_all_at(b"lost", 9_000).unwrap();
        f.write_all_at(b"lost too", 20_000).unwrap();
        drop(f);
        assert_eq!(fs::metadata(s.path("data")).unwrap().len(), 20_008);
        let stats = s.fs.stats();
        assert_eq!((stats.fsyncs, stats.fdatasyncs, stats.fsyncdirs), (1, 1, 1));
        s.cut();
        assert_eq!(fs::read(s.path("full")).unwrap(), b"fsynced");
        assert_eq!(fs::read(s.path("data")).unwrap(), vec![7; 10_000]);
    }

    #[test]
    fn a_rename_is_undone_by_a_power_cut_until_its_directory_is_fsynced() {
        let mut s = Scratch::new();
        written(&s.path("a"), b"first").sync_all().unwrap();
        written(&s.path("c"), b"target").sync_all().unwrap();
        sync_dir(s.mounted.path());

        fs::rename(s.path("a"), s.path("b")).unwrap();
        s.cut();
        assert!(s.path("a").exists() && !s.path("b").exists());

        // Replacing a target: both names keep their old files until the directory is synced.
        fs::rename(s.path("a"), s.path("c")).unwrap();
        assert_eq!(fs::read(s.path("c")).unwrap(), b"first");
        s.cut();
        assert_eq!(fs::read(s.path("a")).unwrap(), b"first");
        assert_eq!(fs::read(s.path("c")).unwrap(), b"target");

        fs::rename(s.path("a"), s.path("c")).unwrap();
        sync_dir(s.mounted.path());
        s.cut();
        assert!(!s.path("a").exists());
        assert_eq!(fs::read(s.path("c")).unwrap(), b"first");
    }

    #[test]
    fn truncate_and_extend_read_zeros_and_become_durable_with_fdatasync() {
        let mut s = Scratch::new();
        let pattern: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8 + 1).collect();
        written(&s.path("f"), &pattern).sync_all().unwrap();
        sync_dir(s.mounted.path());

        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(s.path("f"))
            .unwrap();
        f.set_len(5_000).unwrap();
        f.set_len(9_000).unwrap();
        let mut expected = pattern[..5_000].to_vec();
        expected.resize(9_000, 0);
        assert_eq!(fs::read(s.path("f")).unwrap(), expected);
        // A sparse write far past the end reads back zeros in between.
        f.write_all_at(b"end", 1 << 20).unwrap();
        let mut gap = [1u8; 16];
        f.read_exact_at(&mut gap, 600_000).unwrap();
        assert_eq!(gap, [0; 16]);
        drop(f);
        s.cut();
        assert_eq!(
            fs::read(s.path("f")).unwrap(),
            pattern,
            "truncation was not synced"
        );

        let f = OpenOptions::new().write(true).open(s.path("f")).unwrap();
        f.set_len(3_000).unwrap();
        f.sync_data().unwrap();
        drop(f);
        s.cut();
        assert_eq!(fs::read(s.path("f")).unwrap(), pattern[..3_000]);
    }

    #[test]
    fn directories_and_open_flags_behave_as_posix_says() {
        let s = Scratch::new();
        fs::create_dir(s.path("d")).unwrap();
        fs::create_dir_all(s.path("d/e/f")).unwrap();
        written(&s.path("d/x"), b"1");
        let mut names: Vec<_> = fs::read_dir(s.path("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["e", "x"]);
        assert!(fs::remove_dir(s.path("d/e")).is_err(), "not empty");
        fs::remove_dir(s.path("d/e/f")).unwrap();
        fs::remove_dir(s.path("d/e")).unwrap();
        assert!(
            fs::rename(s.path("d"), s.path("d/y")).is_err(),
            "into itself"
        );

        let err = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(s.path("d/x"));
        assert_eq!(err.unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
        let mut f = OpenOptions::new().append(true).open(s.path("d/x")).unwrap();
        f.write_all(b"23").unwrap();
        drop(f);
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(s.path("d/x"))
            .unwrap();
        f.write_all(b"456").unwrap();
        let mut text = String::new();
        File::open(s.path("d/x"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "456");
        // An unlinked file stays readable through an open descriptor.
        let f = File::open(s.path("d/x")).unwrap();
        fs::remove_file(s.path("d/x")).unwrap();
        let mut buf = [0; 3];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"456");
        // flock is handled by the kernel: a second exclusive lock on the same file is refused.
        let a = File::create(s.path("lock")).unwrap();
        let b = File::open(s.path("lock")).unwrap();
        a.try_lock().unwrap();
        assert!(b.try_lock().is_err());
    }

    fn open_sled(dir: &Path) -> sled::Db {
        // No periodic flusher: its fsync would make the data durable behind the test's back.
        sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .open()
            .unwrap()
    }

    /// A sled database on the mount with one flushed key, and its directory.
    fn flushed_sled(s: &Scratch) -> (sled::Db, PathBuf) {
        let dir = s.path("db");
        fs::create_dir(&dir).unwrap();
        s.fs.sync_everything();
        let db = open_sled(&dir);
        db.insert("key", "value").unwrap();
        db.flush().unwrap();
        (db, dir)
    }

    #[test]
    fn a_sled_flush_without_fsync_is_lost_in_a_power_cut() {
        let mut s = Scratch::new();
        let (db, dir) = flushed_sled(&s);
        // Even with its files' directory entries durable, the flushed data is not.
        sync_dir(&dir);
        s.fs.lose_power();
        drop(db);
        let report = s.cut();
        assert!(report.bytes > 0, "{report:?}");
        assert!(dir.join("db").exists());
        let db = open_sled(&dir);
        assert_eq!(
            db.get("key").unwrap(),
            None,
            "sled's flush ends in sync_file_range"
        );
    }

    #[test]
    fn a_sled_flush_followed_by_fdatasync_and_directory_fsyncs_survives_a_power_cut() {
        let mut s = Scratch::new();
        let (db, dir) = flushed_sled(&s);
        // What the outbox does after each flush: sync sled's files, then the directories.
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                File::open(&path).unwrap().sync_data().unwrap();
            } else {
                sync_dir(&path);
            }
        }
        sync_dir(&dir);
        s.fs.lose_power();
        drop(db);
        s.cut();
        let db = open_sled(&dir);
        assert_eq!(db.get("key").unwrap().as_deref(), Some(&b"value"[..]));
    }
}
