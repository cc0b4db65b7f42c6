//! Model-based property test: random sequences of appends, peeks, acks, failures, dead-lettering,
//! requeues and reopens against an in-memory model of what the outbox must hold.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::config::Settings;

#[derive(Debug, Clone)]
enum Op {
    /// Append `n` events with payloads of this size.
    Append {
        n: usize,
        size: usize,
    },
    /// Append one event together with a record change guarded by `expect_absent`.
    AppendWithRecord {
        key: u8,
        expect_absent: bool,
    },
    /// Ack the pending events at these positions (modulo the pending count).
    Ack(Vec<usize>),
    Fail(Vec<usize>),
    DeadLetter(Vec<usize>),
    Requeue(usize),
    Purge(usize),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let positions = || proptest::collection::vec(0usize..64, 0..6);
    prop_oneof![
        4 => (1usize..8, 0usize..300).prop_map(|(n, size)| Op::Append { n, size }),
        1 => (0u8..4, any::<bool>()).prop_map(|(key, expect_absent)| Op::AppendWithRecord { key, expect_absent }),
        3 => positions().prop_map(Op::Ack),
        1 => positions().prop_map(Op::Fail),
        1 => positions().prop_map(Op::DeadLetter),
        1 => (0usize..8).prop_map(Op::Requeue),
        1 => (0usize..8).prop_map(Op::Purge),
        1 => Just(Op::Reopen),
    ]
}

/// What the outbox must contain.
#[derive(Debug, Default)]
struct Model {
    next_seq: u64,
    /// seq → (payload, attempts)
    pending: BTreeMap<u64, (Vec<u8>, u32)>,
    /// seq → payload of the dead event
    dead: BTreeMap<u64, Vec<u8>>,
    records: BTreeMap<u8, u64>,
    pending_bytes: BTreeMap<u64, u64>,
}

const MAX_EVENTS: u64 = 40;

fn config(dir: &Path) -> StorageConfig {
    StorageConfig {
        data_dir: dir.to_path_buf(),
        max_queue_events: MAX_EVENTS,
        ..Settings::default().storage
    }
}

fn open(dir: &Path) -> Outbox {
    Outbox::open(dir, &config(dir), &["records"]).expect("open outbox")
}

fn pick(model: &Model, positions: &[usize]) -> Vec<u64> {
    let seqs: Vec<u64> = model.pending.keys().copied().collect();
    if seqs.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<u64> = positions.iter().map(|p| seqs[p % seqs.len()]).collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn event(i: usize, size: usize) -> NewEvent {
    NewEvent::now(
        "test.event",
        "t",
        &format!("k{}", i % 3),
        None,
        &"x".repeat(size),
    )
}

async fn apply(outbox: &Outbox, model: &mut Model, op: Op) {
    match op {
        Op::Append { n, size } => {
            let events: Vec<_> = (0..n).map(|i| event(i, size)).collect();
            let payloads: Vec<_> = events.iter().map(|e| e.payload.clone()).collect();
            let result = outbox
                .append(Write {
                    events,
                    records: vec![],
                })
                .await;
            if model.pending.len() as u64 + n as u64 > MAX_EVENTS {
                assert!(
                    matches!(result, Err(Error::QuotaExceeded { .. })),
                    "{result:?}"
                );
                return;
            }
            let envs = result.expect("append within quota");
            for (env, payload) in envs.iter().zip(payloads) {
                assert_eq!(env.seq, model.next_seq, "sequence numbers have no gaps");
                assert_eq!(env.payload, payload);
                model
                    .pending_bytes
                    .insert(env.seq, codec::encode_envelope(env).len() as u64);
                model.pending.insert(env.seq, (payload, 0));
                model.next_seq += 1;
            }
        }
        Op::AppendWithRecord { key, expect_absent } => {
            let e = event(0, 10);
            let payload = e.payload.clone();
            let expect = if expect_absent {
                Expect::Absent
            } else {
                Expect::Any
            };
            let write = Write {
                events: vec![e],
                records: vec![RecordOp {
                    tree: "records",
                    key: vec![key],
                    value: Some(model.next_seq.to_be_bytes().to_vec()),
                    expect,
                }],
            };
            let result = outbox.append(write).await;
            let quota_full = model.pending.len() as u64 + 1 > MAX_EVENTS;
            if expect_absent && model.records.contains_key(&key) {
                assert!(matches!(result, Err(Error::Conflict { .. })), "{result:?}");
            } else if quota_full {
                assert!(
                    matches!(result, Err(Error::QuotaExceeded { .. })),
                    "{result:?}"
                );
            } else {
                let env = result.expect("append").remove(0);
                model
                    .pending_bytes
                    .insert(env.seq, codec::encode_envelope(&env).len() as u64);
                model.pending.insert(env.seq, (payload, 0));
                model.records.insert(key, env.seq);
                model.next_seq += 1;
            }
        }
        Op::Ack(p) => {
            let seqs = pick(model, &p);
            outbox.ack(seqs.clone()).await.expect("ack");
            for s in seqs {
                model.pending.remove(&s);
            }
        }
        Op::Fail(p) => {
            let seqs = pick(model, &p);
            outbox
                .record_failure(seqs.clone())
                .await
                .expect("record failure");
            for s in seqs {
                model.pending.get_mut(&s).expect("pending").1 += 1;
            }
        }
        Op::DeadLetter(p) => {
            let seqs = pick(model, &p);
            let items = seqs.iter().map(|&s| (s, format!("reason {s}"))).collect();
            outbox.dead_letter(items).await.expect("dead letter");
            for s in seqs {
                let (payload, _) = model.pending.remove(&s).expect("pending");
                model.dead.insert(s, payload);
            }
        }
        Op::Requeue(i) | Op::Purge(i) if model.dead.is_empty() => {
            let missing = 1_000_000 + i as u64;
            let r = outbox.purge(missing).await;
            assert!(matches!(r, Err(Error::NoDeadLetter(_))), "{r:?}");
        }
        Op::Requeue(i) => {
            let seq = *model.dead.keys().nth(i % model.dead.len()).expect("dead");
            let result = outbox.requeue(seq).await;
            if model.pending.len() as u64 + 1 > MAX_EVENTS {
                assert!(
                    matches!(result, Err(Error::QuotaExceeded { .. })),
                    "{result:?}"
                );
                return;
            }
            let env = result.expect("requeue");
            let payload = model.dead.remove(&seq).expect("dead");
            assert_eq!(env.seq, model.next_seq);
            model
                .pending_bytes
                .insert(env.seq, codec::encode_envelope(&env).len() as u64);
            model.pending.insert(env.seq, (payload, 0));
            model.next_seq += 1;
        }
        Op::Purge(i) => {
            let seq = *model.dead.keys().nth(i % model.dead.len()).expect("dead");
            outbox.purge(seq).await.expect("purge");
            model.dead.remove(&seq);
        }
        Op::Reopen => unreachable!("reopen is handled by the test loop"),
    }
}

fn check(outbox: &Outbox, model: &Model) {
    let peeked = outbox.peek(usize::MAX, u64::MAX).expect("peek");
    let got: Vec<(u64, Vec<u8>, u32)> = peeked
        .into_iter()
        .map(|p| match p {
            Peeked::Event(e) => (e.seq, e.payload, e.attempts),
            Peeked::Corrupt { seq, reason } => panic!("seq {seq} corrupt: {reason}"),
        })
        .collect();
    let want: Vec<(u64, Vec<u8>, u32)> = model
        .pending
        .iter()
        .map(|(s, (p, a))| (*s, p.clone(), *a))
        .collect();
    assert_eq!(got, want, "pending events, in order, with attempts");
    let stats = outbox.stats();
    assert_eq!(stats.pending_events, model.pending.len() as u64);
    let bytes: u64 = model.pending.keys().map(|s| model.pending_bytes[s]).sum();
    assert_eq!(stats.pending_bytes, bytes);
    assert_eq!(stats.dead_letters, model.dead.len() as u64);
    assert_eq!(stats.durable_seq, model.next_seq - 1);
    let dead: Vec<u64> = outbox
        .dead_letters(0, usize::MAX)
        .expect("dead letters")
        .iter()
        .map(|d| d.seq)
        .collect();
    assert_eq!(dead, model.dead.keys().copied().collect::<Vec<_>>());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn outbox_matches_its_model(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut outbox = open(dir.path());
            let mut model = Model { next_seq: 1, ..Model::default() };
            for op in ops {
                if let Op::Reopen = op {
                    outbox.shutdown().await;
                    drop(outbox);
                    outbox = open(dir.path());
                } else {
                    apply(&outbox, &mut model, op).await;
                }
                check(&outbox, &model);
            }
            outbox.shutdown().await;
        });
    }
}
