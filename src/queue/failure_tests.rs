//! How the outbox fails: a dead writer, storage errors, a full disk. Faults are injected at the
//! writer's fault points ([`crate::faults`]), scoped to each test's directory.

use std::path::Path;
use std::time::Duration;

use tokio::sync::Mutex;

use super::*;
use crate::config::Settings;

/// Fault points are process-wide: tests that configure them take turns.
static FAULTS: Mutex<()> = Mutex::const_new(());

fn config(dir: &Path) -> StorageConfig {
    StorageConfig {
        data_dir: dir.to_path_buf(),
        ..Settings::default().storage
    }
}

fn one_event() -> Write {
    Write {
        events: vec![NewEvent::now("test.event", "t", "vehicle-1", None, &1)],
        records: vec![],
    }
}

/// Configure `point` to do `action` in `dir` only.
fn inject(point: &str, action: &str, dir: &Path) {
    fail::cfg(point, &format!("return({action}@{})", dir.display())).unwrap();
}

#[tokio::test]
async fn a_writer_thread_that_panics_makes_the_outbox_unhealthy_and_says_why() {
    let _turn = FAULTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), &config(dir.path()), &[]).unwrap();
    outbox.append(one_event()).await.unwrap();
    assert!(outbox.is_healthy());
    inject("outbox-writer", "panic", dir.path());
    let r = outbox.append(one_event()).await;
    fail::remove("outbox-writer");
    assert!(matches!(r, Err(Error::Closed)), "{r:?}");
    let reason = outbox.failure().expect("a dead writer is a failure");
    assert!(reason.contains("panicked"), "{reason}");
    assert_eq!(outbox.stats().failure, Some(reason));
    assert!(matches!(
        outbox.append(one_event()).await,
        Err(Error::Closed)
    ));
}

#[tokio::test]
async fn a_storage_error_is_latched_and_later_writes_are_refused_without_touching_storage() {
    let _turn = FAULTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), &config(dir.path()), &[]).unwrap();
    let mut failures = outbox.watch_failure();
    inject("outbox-commit", "eio", dir.path());
    let r = outbox.append(one_event()).await;
    fail::remove("outbox-commit");
    assert!(matches!(r, Err(Error::Storage(_))), "{r:?}");
    tokio::time::timeout(Duration::from_secs(5), failures.wait_for(Option::is_some))
        .await
        .expect("the failure is reported")
        .unwrap();
    let reason = outbox.failure().unwrap();
    assert!(reason.contains("restart"), "{reason}");
    // sled would fail every later operation anyway: they are refused with the reason instead.
    let r = outbox.append(one_event()).await;
    assert!(
        matches!(&r, Err(Error::Failed(why)) if *why == reason),
        "{r:?}"
    );
    assert!(matches!(outbox.ack(vec![1]).await, Err(Error::Failed(_))));
    assert_eq!(outbox.stats().pending_events, 0, "nothing was acknowledged");
    outbox.shutdown().await;
}

#[tokio::test]
async fn enospc_from_storage_answers_disk_full() {
    let _turn = FAULTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), &config(dir.path()), &[]).unwrap();
    inject("outbox-commit", "enospc", dir.path());
    let r = outbox.append(one_event()).await;
    fail::remove("outbox-commit");
    assert!(matches!(r, Err(Error::DiskFull { .. })), "{r:?}");
    outbox.shutdown().await;
}

#[tokio::test]
async fn appends_stop_at_the_free_space_reserve_while_acks_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), &config(dir.path()), &[]).unwrap();
    let sent = outbox.append(one_event()).await.unwrap();
    outbox.shutdown().await;
    drop(outbox);

    // The same store on a disk whose free space is all reserve.
    let reserve_all = StorageConfig {
        min_free_bytes: u64::MAX / 2,
        ..config(dir.path())
    };
    let outbox = Outbox::open(dir.path(), &reserve_all, &[]).unwrap();
    let r = outbox.append(one_event()).await;
    assert!(
        matches!(r, Err(Error::DiskFull { reserve_bytes, .. }) if reserve_bytes == u64::MAX / 2),
        "{r:?}"
    );
    assert_eq!(outbox.stats().pending_events, 1, "nothing written");
    outbox
        .ack(vec![sent[0].seq])
        .await
        .expect("acks run in the reserve");
    assert_eq!(outbox.stats().pending_events, 0);
    assert!(outbox.is_healthy(), "a full disk is not a storage failure");
    outbox.shutdown().await;
}

#[test]
fn an_append_holds_its_bytes_of_the_backlog_bound_and_a_huge_one_goes_alone() {
    let small = one_event();
    let cost = backlog_cost(&small) as usize;
    let e = &small.events[0];
    assert_eq!(cost, e.payload.len() + e.key.len() + e.topic.len());
    let huge = Write {
        events: vec![],
        records: vec![RecordOp {
            tree: "routes",
            key: b"k".to_vec(),
            value: Some(vec![0; BACKLOG_BYTES * 2]),
            expect: Expect::Any,
        }],
    };
    assert_eq!(
        backlog_cost(&huge) as usize,
        BACKLOG_BYTES,
        "never more than the bound"
    );
}
