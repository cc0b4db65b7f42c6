//! What makes state durable (fsync, fsyncdir, or everything at once for test setup) and what a
//! power cut does with the rest.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;

use super::CutReport;
use super::model::{Body, DirBody, FileBody, PAGE, ROOT, Result, Tree};

/// What the durable entries reach from the root.
struct Reach {
    /// Inode → how many durable entries name it (the root counts once).
    links: HashMap<u64, u32>,
    /// Directory → the directory whose durable entry reached it first.
    parents: HashMap<u64, u64>,
}

impl Tree {
    /// `FSYNC`: the file's dirty pages and size become durable, unless the power is gone.
    pub(super) fn fsync(&mut self, ino: u64, datasync: bool) -> Result<()> {
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

    /// `FSYNCDIR`: the directory's entries become durable, unless the power is gone. Inodes
    /// that only the old durable entries kept are forgotten if nothing else holds them.
    pub(super) fn fsyncdir(&mut self, ino: u64) -> Result<()> {
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

    pub(super) fn sync_everything(&mut self) {
        for node in self.nodes.values_mut() {
            match &mut node.body {
                Body::File(f) => f.sync(),
                Body::Dir(d) => d.durable = d.now.clone(),
            }
        }
    }

    /// The power cut: drop what the durable entries do not reach, revert the rest to its
    /// durable state, and power up again.
    pub(super) fn cut(&mut self) -> CutReport {
        let reach = self.reachable();
        let mut report = self.drop_unreachable(&reach.links);
        for (ino, node) in &mut self.nodes {
            node.links = reach.links[ino];
            node.open = 0;
            match &mut node.body {
                Body::File(f) => {
                    let pages = f.revert();
                    report.dirty_pages += pages;
                    report.bytes += pages * PAGE;
                }
                Body::Dir(d) => {
                    report.entries += d.revert(&reach.links);
                    d.parent = reach.parents[ino];
                }
            }
        }
        self.powered = true;
        self.stats.cuts += 1;
        self.stats.last_cut = report;
        report
    }

    /// Walk the durable entries from the root.
    fn reachable(&self) -> Reach {
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
        Reach { links, parents }
    }

    /// Forget every inode not in `reached`; the report counts them and their files' sizes.
    fn drop_unreachable(&mut self, reached: &HashMap<u64, u32>) -> CutReport {
        let mut report = CutReport::default();
        self.nodes.retain(|ino, node| {
            let keep = reached.contains_key(ino);
            if !keep {
                report.inodes += 1;
                if let Body::File(f) = &node.body {
                    report.bytes += f.now.size;
                }
            }
            keep
        });
        report
    }
}

impl FileBody {
    /// Back to the durable data; returns how many dirty pages that reverted.
    fn revert(&mut self) -> u64 {
        let pages = self.dirty.len() as u64;
        self.now = self.durable.clone();
        self.dirty.clear();
        pages
    }
}

impl DirBody {
    /// Back to the durable entries, less those naming a dropped inode; returns how many names
    /// that changed.
    fn revert(&mut self, reached: &HashMap<u64, u32>) -> u64 {
        self.durable.retain(|_, child| reached.contains_key(child));
        let names: BTreeSet<&OsString> = self.now.keys().chain(self.durable.keys()).collect();
        let changed = names
            .into_iter()
            .filter(|n| self.now.get(*n) != self.durable.get(*n))
            .count() as u64;
        self.now = self.durable.clone();
        changed
    }
}
