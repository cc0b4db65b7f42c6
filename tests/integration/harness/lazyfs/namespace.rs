//! Names and lifetimes: creating, removing and renaming entries (current state only: a
//! directory's durable entries change only with its fsync), open counts, and forgetting inodes
//! that nothing can reach any more.

use std::ffi::OsStr;
use std::time::SystemTime;

use fuser::{Errno, RenameFlags};

use super::model::{Body, DirBody, FileBody, Node, ROOT, Result, Tree};

impl Tree {
    /// A new file or directory named `name` in `parent`, owned by `owner` (uid, gid).
    pub(super) fn add(
        &mut self,
        parent: u64,
        name: &OsStr,
        dir: bool,
        perm: u16,
        owner: (u32, u32),
    ) -> Result<u64> {
        if self.dir(parent)?.now.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let body = if dir {
            Body::Dir(DirBody::new(parent))
        } else {
            Body::File(FileBody::default())
        };
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, Node::new(body, perm, owner));
        self.dir_mut(parent)?.now.insert(name.to_owned(), ino);
        self.touch(parent);
        Ok(ino)
    }

    /// `unlink` (`dir` false) or `rmdir` (`dir` true) of `name` in `parent`.
    pub(super) fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<()> {
        let ino = self.lookup(parent, name)?;
        self.removable(ino, dir)?;
        self.dir_mut(parent)?.now.remove(name);
        self.touch(parent);
        self.unlinked(ino);
        Ok(())
    }

    /// May `ino` go away as a file (`dir` false) or as a directory (`dir` true)?
    fn removable(&self, ino: u64, dir: bool) -> Result<()> {
        match (&self.node(ino)?.body, dir) {
            (Body::Dir(_), false) => Err(Errno::EISDIR),
            (Body::File(_), true) => Err(Errno::ENOTDIR),
            (Body::Dir(d), true) if !d.now.is_empty() => Err(Errno::ENOTEMPTY),
            _ => Ok(()),
        }
    }

    pub(super) fn rename(
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
            self.removable(target, moving_dir)?;
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
    pub(super) fn collect(&mut self, ino: u64) {
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

    /// A file handle was opened on `ino` (a file, not a directory).
    pub(super) fn opened(&mut self, ino: u64) -> Result<()> {
        self.file(ino)?;
        self.node_mut(ino)?.open += 1;
        Ok(())
    }

    pub(super) fn released(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.open = n.open.saturating_sub(1);
        }
        self.collect(ino);
    }
}
