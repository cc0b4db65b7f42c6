//! The in-memory state: an inode table whose files and directories each hold a current and a
//! durable state, and the file data operations (read, write, truncate). Pure: no FUSE session,
//! only fuser's `Errno` for answers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{Errno, INodeNo};

use super::Stats;

/// The page size of file data, and the granularity of what an fsync copies and a cut reverts.
pub(super) const PAGE: u64 = 4096;
pub(super) const ROOT: u64 = INodeNo::ROOT.0;

type Page = [u8; PAGE as usize];

pub(super) type Result<T> = std::result::Result<T, Errno>;

/// One state of a file's content.
#[derive(Clone, Debug, Default)]
pub(super) struct Data {
    /// Page index → content; a missing page reads as zeros (sparse). Bytes past `size` are zero.
    pub(super) pages: BTreeMap<u64, Arc<Page>>,
    pub(super) size: u64,
}

#[derive(Debug, Default)]
pub(super) struct FileBody {
    pub(super) now: Data,
    pub(super) durable: Data,
    /// Pages of `now` changed (or dropped) since the last fsync.
    pub(super) dirty: BTreeSet<u64>,
}

impl FileBody {
    /// fsync: the dirty pages and the size become durable.
    pub(super) fn sync(&mut self) {
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
pub(super) struct DirBody {
    pub(super) now: BTreeMap<OsString, u64>,
    pub(super) durable: BTreeMap<OsString, u64>,
    /// For `..` and for refusing to move a directory below itself.
    pub(super) parent: u64,
}

impl DirBody {
    pub(super) fn new(parent: u64) -> DirBody {
        DirBody {
            now: BTreeMap::new(),
            durable: BTreeMap::new(),
            parent,
        }
    }
}

#[derive(Debug)]
pub(super) enum Body {
    File(FileBody),
    Dir(DirBody),
}

#[derive(Debug)]
pub(super) struct Node {
    pub(super) body: Body,
    pub(super) perm: u16,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) atime: SystemTime,
    pub(super) mtime: SystemTime,
    pub(super) ctime: SystemTime,
    /// Current entries naming this inode (no hard links: 0 or 1 but for the root).
    pub(super) links: u32,
    /// Open file handles; an unlinked file lives on while open.
    pub(super) open: u32,
}

impl Node {
    pub(super) fn new(body: Body, perm: u16, (uid, gid): (u32, u32)) -> Node {
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
}

/// The whole filesystem: every inode, in both its states.
#[derive(Debug)]
pub(super) struct Tree {
    pub(super) nodes: HashMap<u64, Node>,
    pub(super) next_ino: u64,
    /// False between [`LazyFs::lose_power`](super::LazyFs::lose_power) and the cut: syncs have
    /// no effect.
    pub(super) powered: bool,
    pub(super) stats: Stats,
}

impl Tree {
    pub(super) fn new() -> Tree {
        let root = Node::new(Body::Dir(DirBody::new(ROOT)), 0o755, (0, 0));
        Tree {
            nodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            powered: true,
            stats: Stats::default(),
        }
    }

    pub(super) fn node(&self, ino: u64) -> Result<&Node> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    pub(super) fn node_mut(&mut self, ino: u64) -> Result<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    pub(super) fn dir(&self, ino: u64) -> Result<&DirBody> {
        match &self.node(ino)?.body {
            Body::Dir(d) => Ok(d),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    pub(super) fn dir_mut(&mut self, ino: u64) -> Result<&mut DirBody> {
        match &mut self.node_mut(ino)?.body {
            Body::Dir(d) => Ok(d),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    pub(super) fn file(&self, ino: u64) -> Result<&FileBody> {
        match &self.node(ino)?.body {
            Body::File(f) => Ok(f),
            Body::Dir(_) => Err(Errno::EISDIR),
        }
    }

    pub(super) fn file_mut(&mut self, ino: u64) -> Result<&mut FileBody> {
        match &mut self.node_mut(ino)?.body {
            Body::File(f) => Ok(f),
            Body::Dir(_) => Err(Errno::EISDIR),
        }
    }

    pub(super) fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64> {
        self.dir(parent)?
            .now
            .get(name)
            .copied()
            .ok_or(Errno::ENOENT)
    }

    pub(super) fn touch(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            let now = SystemTime::now();
            (n.mtime, n.ctime) = (now, now);
        }
    }

    /// Blocks (a 4 KiB page per started page of a file, one per directory) and inodes in use.
    pub(super) fn usage(&self) -> (u64, u64) {
        let blocks = self
            .nodes
            .values()
            .map(|n| match &n.body {
                Body::File(f) => f.now.size.div_ceil(PAGE),
                Body::Dir(_) => 1,
            })
            .sum();
        (blocks, self.nodes.len() as u64)
    }

    pub(super) fn read(&self, ino: u64, offset: u64, len: u32) -> Result<Vec<u8>> {
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

    pub(super) fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Result<()> {
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

    pub(super) fn truncate(&mut self, ino: u64, size: u64) -> Result<()> {
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
}
