//! Scenario tests of the outbox: group commit, atomic records, retention, corruption, restarts.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::config::Settings;

fn config(dir: &Path) -> StorageConfig {
    StorageConfig {
        data_dir: dir.to_path_buf(),
        ..Settings::default().storage
    }
}

fn ev(route: Option<&str>, n: usize) -> NewEvent {
    NewEvent::now("test.event", "t", "vehicle-1", route, &n)
}

async fn append(outbox: &Outbox, events: Vec<NewEvent>) -> Vec<Arc<Envelope>> {
    outbox
        .append(Write {
            events,
            records: vec![],
        })
        .await
        .expect("append")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_flushes_and_get_distinct_gap_free_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), &config(dir.path()), &[]).unwrap();
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let o = outbox.clone();
            tokio::spawn(async move { append(&o, vec![ev(None, i)]).await[0].seq })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
    let stats = outbox.stats();
    assert!(
        stats.flushes < 300,
        "group commit: {} flushes",
        stats.flushes
    );
    assert_eq!(stats.pending_events, 300);
    outbox.shutdown().await;
}

#[tokio::test]
async fn sequence_keeps_rising_across_restarts_and_a_lost_meta_state_is_recounted() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), &config(dir.path()), &[]).unwrap();
    append(&outbox, vec![ev(None, 1), ev(None, 2), ev(None, 3)]).await;
    outbox.ack(vec![1]).await.unwrap();
    outbox.shutdown().await;
    drop(outbox);

    let db = sled::open(dir.path()).unwrap();
    db.open_tree("meta").unwrap().remove("state").unwrap();
    db.flush().unwrap();
    drop(db);

    let outbox = Outbox::open(dir.path(), &config(dir.path()), &[]).unwrap();
    let stats = outbox.stats();
    // The outbox floor went with the meta state: the delivered event 1 is pending again (sent
    // twice, never lost).
    assert_eq!(
        (stats.pending_events, stats.log_events, stats.durable_seq),
        (3, 3, 3)
    );
    assert_eq!(append(&outbox, vec![ev(None, 4)]).await[0].seq, 4);
    outbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_right_after_shutdown_waits_for_the_previous_instances_lock() {
    let dir = tempfile::tempdir().unwrap();
    for n in 1..=30u64 {
        let outbox = Outbox::open(dir.path(), &config(dir.path()), &[]).expect("reopen");
        assert_eq!(append(&outbox, vec![ev(None, 0)]).await[0].seq, n);
        outbox.shutdown().await;
    }
}

#[tokio::test]
async fn a_record_and_its_event_commit_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), &config(dir.path()), &["routes"]).unwrap();
    let put = |expect| Write {
        events: vec![ev(Some("r1"), 0)],
        records: vec![RecordOp {
            tree: "routes",
            key: b"r1".to_vec(),
            value: Some(b"v2".to_vec()),
            expect,
        }],
    };
    outbox.append(put(Expect::Absent)).await.unwrap();
    let conflict = outbox.append(put(Expect::Equals(b"v1".to_vec()))).await;
    assert!(matches!(conflict, Err(Error::Conflict { .. })));
    assert_eq!(
        outbox.stats().pending_events,
        1,
        "the conflicting event was not written"
    );
    outbox
        .append(put(Expect::Equals(b"v2".to_vec())))
        .await
        .unwrap();
    let tree = outbox.domain_tree("routes").unwrap();
    assert_eq!(tree.get("r1").unwrap().unwrap().as_ref(), b"v2");
    assert_eq!(outbox.route_events("r1", 10).unwrap().len(), 2);
    outbox.shutdown().await;
}

#[tokio::test]
async fn full_quota_refuses_new_events_and_keeps_the_old_ones_until_acked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig {
        max_queue_events: 3,
        ..config(dir.path())
    };
    let outbox = Outbox::open(dir.path(), &cfg, &[]).unwrap();
    append(&outbox, vec![ev(None, 1), ev(None, 2), ev(None, 3)]).await;
    let full = outbox
        .append(Write {
            events: vec![ev(None, 4)],
            records: vec![],
        })
        .await;
    assert!(matches!(
        full,
        Err(Error::QuotaExceeded {
            pending_events: 3,
            ..
        })
    ));
    assert_eq!(outbox.peek(10, u64::MAX).unwrap().len(), 3);
    outbox.ack(vec![1]).await.unwrap();
    assert_eq!(
        append(&outbox, vec![ev(None, 4)]).await[0].seq,
        4,
        "no gap after a refusal"
    );
    outbox.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_record_is_reported_by_peek_and_dead_letters_with_its_raw_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), &config(dir.path()), &[]).unwrap();
    append(&outbox, vec![ev(None, 1), ev(None, 2), ev(None, 3)]).await;
    outbox.shutdown().await;
    drop(outbox);

    let mut raw = Vec::new();
    let damaged = damage_stored_event(dir.path(), 2, |frame| {
        let last = frame.len() - 1;
        frame[last] ^= 0x40;
        raw = frame.clone();
    })
    .unwrap();
    assert!(damaged);

    let outbox = Outbox::open(dir.path(), &config(dir.path()), &[]).unwrap();
    let peeked = outbox.peek(10, u64::MAX).unwrap();
    let Peeked::Corrupt { seq: 2, reason } = &peeked[1] else {
        panic!("expected seq 2 corrupt, got {peeked:?}");
    };
    assert!(reason.contains("checksum"), "{reason}");
    outbox.dead_letter(vec![(2, reason.clone())]).await.unwrap();
    let dead = outbox.dead_letter_by_seq(2).unwrap().unwrap();
    assert_eq!((dead.raw_len, dead.event.is_none()), (raw.len(), true));
    let requeue = outbox.requeue(2).await;
    assert!(matches!(requeue, Err(Error::Unrequeueable { seq: 2, .. })));
    let left: Vec<u64> = outbox
        .peek(10, u64::MAX)
        .unwrap()
        .iter()
        .map(Peeked::seq)
        .collect();
    assert_eq!(left, vec![1, 3]);
    outbox.shutdown().await;
}

#[tokio::test]
async fn retention_prunes_delivered_events_only_and_replay_from_before_it_asks_for_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig {
        log_retention_bytes: 0,
        ..config(dir.path())
    };
    let outbox = Outbox::open(dir.path(), &cfg, &[]).unwrap();
    // One append at a time: a chunk each, so retention can take them one by one.
    for i in 0..6 {
        append(&outbox, vec![ev(Some("r"), i)]).await;
    }
    outbox.ack(vec![1, 2, 4]).await.unwrap();
    outbox.prune().await.unwrap();
    let stats = outbox.stats();
    assert_eq!(
        (stats.log_events, stats.pending_events),
        (3, 3),
        "{stats:?}"
    );
    assert!(matches!(
        outbox.replay(0, 6, 100).unwrap(),
        Replay::Reset { .. }
    ));
    let seqs: Vec<u64> = outbox
        .route_events("r", 10)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, vec![3, 5, 6], "pending events survive retention");
    outbox.ack(vec![3]).await.unwrap();
    assert_eq!(
        outbox.stats().log_events,
        2,
        "acked below the floor: deleted at once"
    );

    // Events appended together share a chunk, which goes once none of them is pending.
    append(&outbox, (7..10).map(|i| ev(Some("r"), i)).collect()).await;
    outbox.ack(vec![7, 9]).await.unwrap();
    outbox.prune().await.unwrap();
    assert_eq!(outbox.stats().log_events, 5, "event 8 keeps its chunk");
    outbox.ack(vec![5, 6, 8]).await.unwrap();
    assert_eq!(outbox.stats().log_events, 0, "{:?}", outbox.stats());
    outbox.shutdown().await;
}

#[tokio::test]
async fn replay_then_live_has_no_gap_and_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), &config(dir.path()), &[]).unwrap();
    append(&outbox, (0..5).map(|i| ev(None, i)).collect()).await;
    let mut live = outbox.subscribe();
    let upto = outbox.durable_seq();
    let writer = {
        let o = outbox.clone();
        tokio::spawn(async move { append(&o, (5..10).map(|i| ev(None, i)).collect()).await })
    };
    let Replay::Events(replayed) = outbox.replay(2, upto, 100).unwrap() else {
        panic!("no reset expected");
    };
    let mut seen: Vec<u64> = replayed.iter().map(|e| e.seq).collect();
    writer.await.unwrap();
    while let Ok(e) = live.try_recv() {
        if e.seq > upto {
            seen.push(e.seq);
        }
    }
    assert_eq!(seen, (3..=10).collect::<Vec<_>>());
    outbox.shutdown().await;
}

#[tokio::test]
async fn appends_after_shutdown_fail_as_closed() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path(), &config(dir.path()), &[]).unwrap();
    outbox.shutdown().await;
    let r = outbox
        .append(Write {
            events: vec![ev(None, 0)],
            records: vec![],
        })
        .await;
    assert!(matches!(r, Err(Error::Closed)));
    assert!(!outbox.is_healthy());
}

#[tokio::test]
async fn interval_durability_flushes_and_syncs_on_its_own_timer() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig {
        durability: crate::config::Durability::Interval,
        flush_interval_ms: 20,
        ..config(dir.path())
    };
    let outbox = Outbox::open(dir.path(), &cfg, &[]).unwrap();
    append(&outbox, vec![ev(None, 1)]).await;
    assert_eq!(outbox.stats().flushes, 0, "the append itself does not sync");
    for _ in 0..100 {
        if outbox.stats().flushes > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(outbox.stats().flushes > 0, "no periodic flush and sync");
    outbox.shutdown().await;
}

/// A store as the first format wrote it: events 1..=6 in `events`; 1 and 3 delivered, 2, 4, 5, 6
/// pending (4 failed twice), 3 delivered out of order.
fn write_first_format(dir: &Path) -> Vec<Envelope> {
    let db = sled::open(dir).unwrap();
    let (events, pending) = (
        db.open_tree("events").unwrap(),
        db.open_tree("pending").unwrap(),
    );
    let envs: Vec<Envelope> = (1..=6)
        .map(|seq| Envelope::sequenced(seq, ev(Some("r"), seq as usize)))
        .collect();
    let mut pending_bytes = 0;
    for e in &envs {
        let raw = codec::encode_envelope(e);
        if ![1, 3].contains(&e.seq) {
            let attempts: u32 = if e.seq == 4 { 2 } else { 0 };
            let mut v = attempts.to_be_bytes().to_vec();
            v.extend_from_slice(&(raw.len() as u32).to_be_bytes());
            pending.insert(codec::key(e.seq), v).unwrap();
            pending_bytes += raw.len() as u64;
        }
        events.insert(codec::key(e.seq), raw).unwrap();
        let trail = writer::route_index_key("r", e.seq);
        db.open_tree("route_events")
            .unwrap()
            .insert(trail, &[])
            .unwrap();
    }
    let old = writer::MetaV1 {
        next_seq: 7,
        pending_events: 4,
        pending_bytes,
        log_events: 6,
        log_bytes: 0,
        dead_letters: 0,
        prune_floor: 1,
    };
    let body = bincode::serde::encode_to_vec(&old, bincode::config::standard()).unwrap();
    let mut meta = vec![writer::META_V1];
    meta.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    meta.extend_from_slice(&body);
    db.open_tree("meta").unwrap().insert("state", meta).unwrap();
    db.flush().unwrap();
    envs
}

#[tokio::test]
async fn a_store_of_the_first_format_is_migrated_with_nothing_lost_or_resent() {
    let dir = tempfile::tempdir().unwrap();
    let envs = write_first_format(dir.path());
    for next in [7, 8] {
        // The second open finds the migrated store as it was left.
        let outbox = Outbox::open(dir.path(), &config(dir.path()), &[]).unwrap();
        let peeked: Vec<(u64, u32)> = outbox
            .peek(10, u64::MAX)
            .unwrap()
            .into_iter()
            .map(|p| match p {
                Peeked::Event(e) => (e.seq, e.attempts),
                Peeked::Corrupt { seq, reason } => panic!("{seq} corrupt: {reason}"),
            })
            .collect();
        assert_eq!(peeked, vec![(2, 0), (4, 2), (5, 0), (6, 0)]);
        let stats = outbox.stats();
        assert_eq!((stats.pending_events, stats.log_events), (4, 6 + next - 7));
        let trail: Vec<u64> = outbox
            .route_events("r", 10)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(trail, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(append(&outbox, vec![ev(None, 7)]).await[0].seq, next);
        outbox.ack(vec![next]).await.unwrap();
        outbox.shutdown().await;
    }
    let db = sled::open(dir.path()).unwrap();
    let names: Vec<_> = db.tree_names();
    assert!(
        !names
            .iter()
            .any(|n| n.as_ref() == b"events" || n.as_ref() == b"pending")
    );
    assert_eq!(envs.len(), 6);
}

#[tokio::test]
async fn an_interrupted_migration_starts_over_and_the_leftovers_of_a_finished_one_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    write_first_format(dir.path());
    // Opening migrates (again); the outbox then holds what the first format held.
    let reopen_holds_the_same = async || {
        let outbox = Outbox::open(dir.path(), &config(dir.path()), &[]).unwrap();
        let pending: Vec<u64> = outbox
            .peek(10, u64::MAX)
            .unwrap()
            .iter()
            .map(Peeked::seq)
            .collect();
        assert_eq!(pending, vec![2, 4, 5, 6]);
        assert_eq!(outbox.stats().log_events, 6);
        outbox.shutdown().await;
    };
    {
        // Cut short before its new meta: part of the new trees written, the old meta in charge.
        let db = sled::open(dir.path()).unwrap();
        let stray = log::into_chunks(&[(40, b"stray".to_vec())]).remove(0);
        db.open_tree("log")
            .unwrap()
            .insert(codec::key(40), stray.1)
            .unwrap();
        db.open_tree("done")
            .unwrap()
            .insert(codec::key(2), &[])
            .unwrap();
        db.flush().unwrap();
    }
    reopen_holds_the_same().await;
    {
        // Cut short after its new meta: an old tree is still there.
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("events")
            .unwrap()
            .insert(codec::key(99), &b"stale"[..])
            .unwrap();
        db.flush().unwrap();
    }
    reopen_holds_the_same().await;
    let names = sled::open(dir.path()).unwrap().tree_names();
    assert!(!names.iter().any(|n| n.as_ref() == b"events"));
}

/// A read racing an ack that closes a gap: the ack removes the `done` entries of events already
/// out and raises the floor past them. A read must never see the old floor together with the
/// removed entries (it would hand out events that already left: duplicates in Kafka).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_racing_an_ack_never_returns_events_that_left_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig {
        durability: crate::config::Durability::Interval,
        ..config(dir.path())
    };
    let outbox = Outbox::open(dir.path(), &cfg, &[]).unwrap();
    for _ in 0..300 {
        let seqs: Vec<u64> = append(&outbox, (0..4).map(|i| ev(None, i)).collect())
            .await
            .iter()
            .map(|e| e.seq)
            .collect();
        let s = seqs[0];
        // Out of order: `done` entries for s+1 and s+3.
        outbox.ack(vec![s + 1, s + 3]).await.unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (outbox, stop) = (outbox.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    for p in outbox.peek_after(s - 1, 100, u64::MAX).unwrap() {
                        seen.push(p.seq());
                    }
                }
                seen
            })
        };
        // Closes the gap: the floor moves past s+3 and the `done` entries go.
        outbox.ack(vec![s, s + 2]).await.unwrap();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let seen = reader.join().unwrap();
        assert!(
            !seen.contains(&(s + 1)) && !seen.contains(&(s + 3)),
            "events acked before the read began came back: {seen:?} (batch {seqs:?})"
        );
    }
    assert_eq!(outbox.stats().pending_events, 0);
    outbox.shutdown().await;
}

/// A local event (no topic) is in the log for live clients and `since`, never in the outbox:
/// it is not pending, not counted against the quota, never peeked, and interleaved with
/// outgoing events it does not hold the outbox floor back across a restart.
#[tokio::test]
async fn local_events_are_logged_and_replayed_but_never_pending() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig {
        max_queue_events: 2,
        ..config(dir.path())
    };
    let outbox = Outbox::open(dir.path(), &cfg, &[]).unwrap();
    let local = |n| NewEvent::now("test.local", "", "vehicle-1", None, &n);
    let seqs: Vec<u64> = append(&outbox, vec![ev(None, 1), local(2), local(3), ev(None, 4)])
        .await
        .iter()
        .map(|e| e.seq)
        .collect();
    append(&outbox, vec![local(5)]).await;
    assert_eq!(
        outbox.stats().pending_events,
        2,
        "the quota counts outgoing events only"
    );
    let peeked: Vec<u64> = outbox
        .peek(100, u64::MAX)
        .unwrap()
        .iter()
        .map(Peeked::seq)
        .collect();
    assert_eq!(peeked, [seqs[0], seqs[3]]);
    let Replay::Events(logged) = outbox.replay(0, u64::MAX, 100).unwrap() else {
        panic!("nothing was pruned");
    };
    assert_eq!(logged.len(), 5);
    assert!(logged[1].is_local() && !logged[0].is_local());

    outbox.ack(vec![seqs[3]]).await.unwrap();
    outbox.ack(vec![seqs[0]]).await.unwrap();
    assert_eq!(outbox.stats().pending_events, 0);
    append(&outbox, vec![local(6)]).await;
    outbox.shutdown().await;
    drop(outbox);
    let outbox = Outbox::open(dir.path(), &cfg, &[]).unwrap();
    assert_eq!(outbox.stats().pending_events, 0);
    assert!(outbox.peek(100, u64::MAX).unwrap().is_empty());
    outbox.shutdown().await;
}
