//! Self-tests: each durability rule of the model, seen through a real mount, and the sled
//! behaviour the outbox relies on (a flush alone does not survive a cut; fdatasync does).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{CutReport, LazyFs, Mounted};

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
