//! [`Update`]: read-modify-write on the writer thread.

use std::path::Path;

use super::*;
use crate::config::Settings;

fn config(dir: &Path) -> StorageConfig {
    StorageConfig {
        data_dir: dir.to_path_buf(),
        ..Settings::default().storage
    }
}

/// Add one to a big-endian counter record and announce it.
fn increment(key: &[u8]) -> Update {
    Update::one("counters", key.to_vec(), |current| {
        let n = current.map_or(0, |c| u64::from_be_bytes(c.try_into().unwrap())) + 1;
        Some(Write {
            events: vec![NewEvent::now("test.counted", "t", "k", None, &n)],
            records: vec![RecordOp {
                tree: "counters",
                key: b"c".to_vec(),
                value: Some(n.to_be_bytes().to_vec()),
                expect: Expect::Any,
            }],
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_of_one_record_all_apply_in_order_without_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), &config(dir.path()), &["counters"]).unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let o = outbox.clone();
            tokio::spawn(async move { o.update(increment(b"c")).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("an update never conflicts");
    }
    let tree = outbox.domain_tree("counters").unwrap();
    let stored = tree.get(b"c").unwrap().unwrap();
    assert_eq!(u64::from_be_bytes(stored.as_ref().try_into().unwrap()), 200);
    assert_eq!(outbox.stats().pending_events, 200);
    outbox.shutdown().await;
}

#[tokio::test]
async fn a_declined_or_panicking_update_writes_nothing_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), &config(dir.path()), &["counters"]).unwrap();
    let declined = Update::one("counters", b"c".to_vec(), |_| None);
    assert!(matches!(outbox.update(declined).await, Err(Error::Aborted)));
    let panics = Update::one("counters", b"c".to_vec(), |_| {
        panic!("a bug in the closure")
    });
    assert!(matches!(outbox.update(panics).await, Err(Error::Aborted)));
    assert!(outbox.is_healthy(), "the writer survived");
    assert_eq!(outbox.stats().pending_events, 0);
    outbox
        .update(increment(b"c"))
        .await
        .expect("later updates run");
    assert_eq!(outbox.stats().pending_events, 1);
    outbox.shutdown().await;
}
